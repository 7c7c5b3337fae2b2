-- S5: SET NOT NULL scans the whole table under ACCESS EXCLUSIVE.
return {
  id = "S5",
  title = "SET NOT NULL scans a large table under ACCESS EXCLUSIVE",
  default_severity = "error",
  check = function(s, ctx)
    local out = {}
    for _, a in ipairs(s.actions) do
      local t = a.info
      if t and a.key == "alter_table.set_not_null" and not a.proven then
        local band = ctx.band(t)
        if band then
          out[#out + 1] = { table_info = t, lock = a.lock, band = band,
            why = ("SET NOT NULL on %s.%s reads every row of %s (%s) under ACCESS EXCLUSIVE: reads and writes wait"):format(
              ctx.name(t), a.column or "?", ctx.name(t), ctx.size_text(t)),
            alternative = ("ADD CONSTRAINT c CHECK (\"%s\" IS NOT NULL) NOT VALID; next migration VALIDATE CONSTRAINT c; then SET NOT NULL (PostgreSQL 12+ skips the scan) and DROP CONSTRAINT c"):format(a.column or "col") }
        end
      end
    end
    return out
  end,
}
