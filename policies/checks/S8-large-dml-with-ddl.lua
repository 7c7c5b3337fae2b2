-- S8: INSERT/UPDATE/DELETE over many rows in the same transaction as DDL:
-- the DDL locks are held for the whole data change.
-- the rows an INSERT brings (VALUES lists), or the table it selects from
local function source_rows(s)
  local src = s.insert_source
  if not src then return nil end
  if src.rows then return src.rows end
  return { schemaname = src.schema, relname = src.table }
end
return {
  id = "S8",
  title = "large data change beside DDL",
  default_severity = "error",
  check = function(s, ctx)
    if not s.dml then return nil end
    local ddl = ctx.segment_facts(s).first_ddl -- before or after s, in this transaction
    if not ddl then return nil end
    local target
    for _, t in ipairs(s.tables) do if t.dml then target = t end end
    if not target then return nil end
    local rows, band, info = nil, nil, target
    local src = source_rows(s)
    if type(src) == "number" then
      rows = src
      if rows >= ctx.settings.large_rows then band = "error" elseif rows >= ctx.settings.dml_rows then band = "warning" end
    elseif type(src) == "table" then
      local st = ctx.lookup(src.schemaname, src.relname)
      if ctx.created_before(s, src.schemaname, src.relname) then st.new = true end
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
