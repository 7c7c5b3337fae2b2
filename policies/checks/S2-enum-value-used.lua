-- S2: ALTER TYPE ... ADD VALUE, then the new label used in the same
-- transaction: PostgreSQL refuses with 55P04 (unsafe use of new value).
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
      if s.text:find("'" .. v.label .. "'", 1, true) then
        out[#out + 1] = {
          why = ("uses '%s', added to enum \"%s\" at line %d in the same transaction: PostgreSQL fails with 55P04 (unsafe use of new value) until the ADD VALUE commits"):format(v.label, v.enum, v.stmt.line),
          alternative = "add the value in one migration and use it in the next one (each migration commits on its own)",
        }
      end
    end
    return out
  end,
}
