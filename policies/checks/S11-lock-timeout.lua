-- S11: a lock that blocks writes on an existing table, taken without
-- lock_timeout: behind one long transaction the ALTER waits forever, and
-- every query on the table queues behind the ALTER.
local function sets_timeout(x)
  return x.set and x.set.name == "lock_timeout" and x.set.value ~= nil and x.set.value ~= "0"
end
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
    for _, x in ipairs(ctx.statements) do
      if x.index < s.index then
        if sets_timeout(x) and (not x.set.is_local or x.segment == s.segment) then return nil end
        -- report once per file: an earlier statement already qualified
        for _, y in ipairs(x.tables) do
          if not y.new and y.exists ~= false and y.lock and ctx.locks.blocks_writes(y.lock) then return nil end
        end
      end
    end
    local set = ctx.unit_mode == "file" and "SET LOCAL lock_timeout = '2s';" or "SET lock_timeout = '2s';"
    return { { table_info = t, lock = t.lock,
      why = ("%s on %s is taken with no lock_timeout: if a long transaction holds the table, this statement waits without limit and every query on %s queues behind it"):format(
        t.lock, ctx.name(t), ctx.name(t)),
      alternative = ("start the migration with %s and retry the deploy on 55P03 (lock_not_available)"):format(set) } }
  end,
}
