-- S4: a FOREIGN KEY or CHECK added without NOT VALID checks every existing
-- row under the lock; VALIDATE in the same transaction as the NOT VALID add
-- gains nothing.
return {
  id = "S4",
  title = "constraint validated under lock",
  default_severity = "error",
  check = function(s, ctx)
    local out = {}
    for _, a in ipairs(s.actions) do
      local t = a.info
      if t and (a.key == "alter_table.add_constraint_fk" or a.key == "alter_table.add_constraint_check") then
        local band = ctx.band(t)
        if band then
          local fk = a.key == "alter_table.add_constraint_fk"
          local locked = fk and a.ref_info and a.ref_info.key ~= t.key and (("%s on %s and %s"):format(a.lock, ctx.name(t), ctx.name(a.ref_info)))
                         or ("%s on %s"):format(a.lock, ctx.name(t))
          out[#out + 1] = { table_info = t, lock = a.lock, band = band,
            why = ("ADD CONSTRAINT %s checks every row of %s (%s) while holding %s: %s"):format(
              a.effect and a.effect.name or "", ctx.name(t), ctx.size_text(t), locked,
              ctx.locks.blocks_reads(a.lock) and "reads and writes wait" or "writes wait"),
            alternative = ("ADD CONSTRAINT ... %s NOT VALID here (no scan), then ALTER TABLE %s VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)"):format(
              fk and "FOREIGN KEY ..." or "CHECK (...)", ctx.name(t)) }
        end
      elseif t and a.key == "alter_table.validate_constraint" then
        -- the NOT VALID adds of that constraint earlier in this transaction
        for _, nv in ipairs(ctx.segment_facts(s).not_valid[a.constraint] or {}) do
          local p, b = nv.stmt, nv.action
          if p.index < s.index and ctx.band(t) then
            out[#out + 1] = { table_info = t, lock = p.lock, band = ctx.band(t),
              why = ("VALIDATE CONSTRAINT %s runs in the transaction that added it NOT VALID (line %d), which still holds %s on %s: the scan happens under that lock"):format(
                a.constraint, p.line, b.lock, ctx.name(t)),
              alternative = "validate in a later migration, so only SHARE UPDATE EXCLUSIVE is held during the scan" }
          end
        end
      end
    end
    return out
  end,
}
