-- S2: ALTER TYPE ... ADD VALUE, then the new label used in the same
-- transaction: PostgreSQL refuses with 55P04 (unsafe use of new value).
-- A use is a literal of the label not shown to belong to another enum: adding
-- or defining the label in another enum is not a use, nor is a literal cast
-- to another type or the default of a column of another type.
local function bare(t) -- format_type spelling -> the type's own name
  if type(t) ~= "string" then return nil end
  return (t:gsub("%[%]", ""):gsub('"', ""):match("([^%.]+)$"))
end

-- the type a column of this file has (its own statement first, then earlier ones)
local function column_type(ctx, s, e)
  if e.type then return e.type end
  for i = #ctx.statements, 1, -1 do
    local x = ctx.statements[i]
    if x.index <= s.index then
      for _, f in ipairs(x.effects or {}) do
        if f.kind == "column" and f.table == e.table and f.name == e.name and (f.type or (f.set and f.set.type)) then
          return f.type or f.set.type
        end
        if f.kind == "table" and f.name == e.table then
          for _, c in ipairs(f.columns or {}) do if c.name == e.name then return c.type end end
        end
      end
    end
  end
  return nil
end

local function uses(ctx, s, enum, label)
  if s.kind == "AlterEnumStmt" or s.kind == "CreateEnumStmt" then return false end
  local lit = "'" .. label:gsub("'", "''") .. "'"
  local init = 1
  while true do
    local i, j = s.text:find(lit, init, true)
    if not i then return false end
    local cast = s.text:match('^%s*::%s*([%w_%."]+)', j + 1)
    local owner = cast and bare(cast)
    if not owner then
      for _, e in ipairs(s.effects or {}) do
        local d = e.kind == "column" and (e.default or (e.set and e.set.default))
        if d and d:find(lit, 1, true) then owner = bare(column_type(ctx, s, e)) end
      end
    end
    if owner == nil or owner == enum then return true end
    init = j + 1
  end
end

return {
  id = "S2",
  title = "new enum value used in the transaction that adds it",
  default_severity = "error",
  check = function(s, ctx)
    local out = {}
    if s.values_before == 0 then return out end
    -- the values added earlier in this transaction, in order
    local added = ctx.segment_facts(s).added_values
    for i = 1, s.values_before do
      local v = added[i]
      if v.label and uses(ctx, s, v.enum, v.label) then
        out[#out + 1] = {
          why = ("uses '%s', added to enum \"%s\" at line %d in the same transaction: PostgreSQL fails with 55P04 (unsafe use of new value) until the ADD VALUE commits"):format(v.label, v.enum, v.stmt.line),
          alternative = "add the value in one migration and use it in the next one (each migration commits on its own)",
        }
      end
    end
    return out
  end,
}
