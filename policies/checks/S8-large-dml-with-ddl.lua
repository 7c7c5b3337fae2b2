-- S8: INSERT/UPDATE/DELETE over many rows in the same transaction as DDL:
-- the DDL locks are held for the whole data change.
local function source_rows(s, ctx)
  local n = s.node and s.node.InsertStmt
  if not n then return nil end
  local sel = n.selectStmt and n.selectStmt.SelectStmt
  if not sel then return nil end
  if sel.valuesLists then return #sel.valuesLists end
  local from = sel.fromClause and sel.fromClause[1] and sel.fromClause[1].RangeVar
  if not from then return nil end
  return from
end
return {
  id = "S8",
  title = "large data change beside DDL",
  default_severity = "error",
  check = function(s, ctx)
    if not s.dml then return nil end
    local ddl
    for _, x in ipairs(ctx.segment(s)) do
      if x.ddl and x.lock then ddl = ddl or x end
    end
    if not ddl then return nil end
    local target
    for _, t in ipairs(s.tables) do if t.dml then target = t end end
    if not target then return nil end
    local rows, band, info = nil, nil, target
    local src = source_rows(s, ctx)
    if type(src) == "number" then
      rows = src
      if rows >= ctx.settings.large_rows then band = "error" elseif rows >= ctx.settings.dml_rows then band = "warning" end
    elseif type(src) == "table" then
      local key = (src.schemaname or ctx.schema) .. "." .. src.relname
      local st = ctx.lookup(src.schemaname, src.relname)
      for _, x in ipairs(ctx.statements) do
        if x.index < s.index then
          for _, t in ipairs(x.tables) do if t.key == key and t.new then st.new = true end end
        end
      end
      if not st.new then band = ctx.band(st, ctx.settings.dml_rows) end
      rows = st.rows
      info = st
    else
      band = ctx.band(target, ctx.settings.dml_rows)
      rows = target.rows
    end
    if not band then return nil end
    return { { table_info = target, band = band, lock = target.lock,
      why = ("%s on %s (%s) runs in the same transaction as %s at line %d: the DDL's locks stay held for the whole data change"):format(
        s.kind:gsub("Stmt$", ""):upper(), ctx.name(target), rows and ctx.human_rows(rows) or ctx.size_text(info), ddl.kind, ddl.line),
      alternative = ("move the data change to a migration of its own, in batches of about %d rows (outside the DDL transaction)"):format(ctx.settings.dml_rows) } }
  end,
}
