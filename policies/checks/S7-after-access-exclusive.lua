-- S7: work done after an ACCESS EXCLUSIVE lock on an existing table in the
-- same transaction: the lock is held until commit, so that table's readers
-- and writers wait for everything that follows.
return {
  id = "S7",
  title = "long statement while an earlier ACCESS EXCLUSIVE lock is held",
  default_severity = "warning",
  check = function(s, ctx)
    -- the first ACCESS EXCLUSIVE lock on an existing table earlier in this transaction
    local ex = s.held_exclusive
    if not ex then return nil end
    local held = { p = ex.stmt, t = ex.table }
    local order = { error = 3, warning = 2, unknown = 1 }
    local best, band
    for _, t in ipairs(s.tables) do
      if (t.scan or t.rewrite or t.dml) and not t.new then
        local b = ctx.band(t, ctx.settings.dml_rows)
        if b and (not band or order[b] > order[band]) then best, band = t, b end
      end
    end
    if not best then return nil end
    return { { table_info = best, band = band, lock = s.lock,
      why = ("ACCESS EXCLUSIVE on %s, taken at line %d, is held while this statement works through %s (%s): every query on %s waits meanwhile"):format(
        ctx.name(held.t), held.p.line, ctx.name(best), ctx.size_text(best), ctx.name(held.t)),
      alternative = "cut the migration after the ACCESS EXCLUSIVE statement (or put that statement last), and merge ALTERs of one table into one ALTER TABLE" } }
  end,
}
