-- S2: ALTER TYPE ... ADD VALUE, then the new label used in the same
-- transaction: PostgreSQL refuses with 55P04 (unsafe use of new value).
return {
  id = "S2",
  title = "new enum value used in the transaction that adds it",
  default_severity = "error",
  check = function(s, ctx)
    local out = {}
    for _, p in ipairs(ctx.before(s)) do
      for _, a in ipairs(p.actions) do
        if a.key == "alter_type_add_value" and a.label and s.text:find("'" .. a.label .. "'", 1, true) then
          out[#out + 1] = {
            why = ("uses '%s', added to enum \"%s\" at line %d in the same transaction: PostgreSQL fails with 55P04 (unsafe use of new value) until the ADD VALUE commits"):format(a.label, a.enum, p.line),
            alternative = "add the value in one migration and use it in the next one (each migration commits on its own)",
          }
        end
      end
    end
    return out
  end,
}
