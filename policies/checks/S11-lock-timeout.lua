-- S11: a lock that blocks writes on an existing table, taken without
-- lock_timeout: behind one long transaction the ALTER waits forever, and
-- every query on the table queues behind the ALTER.
return {
  id = "S11",
  title = "no lock_timeout before a blocking lock",
  default_severity = "warning",
  check = function(s, ctx)
    local t
    for _, x in ipairs(s.tables) do
      if not x.new and x.exists ~= false and x.lock and ctx.locks.blocks_writes(x.lock) then t = t or x end
    end
    if not t then return nil end
    -- a lock_timeout in force (SET earlier in the file, SET LOCAL earlier in
    -- this transaction), or reported already: an earlier statement qualified
    if s.timeout_before or s.first_blocking then return nil end
    local set = ctx.unit_mode == "file" and "SET LOCAL lock_timeout = '2s';" or "SET lock_timeout = '2s';"
    return { { table_info = t, lock = t.lock,
      why = ("%s on %s is taken with no lock_timeout: if a long transaction holds the table, this statement waits without limit and every query on %s queues behind it"):format(
        t.lock, ctx.name(t), ctx.name(t)),
      alternative = ("start the migration with %s and retry the deploy on 55P03 (lock_not_available)"):format(set) } }
  end,
}
