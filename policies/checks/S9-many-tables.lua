-- S9: more than max_tables existing tables locked at SHARE or above in one
-- transaction: the longer the list, the likelier a lock queue forms.
return {
  id = "S9",
  title = "many existing tables locked in one transaction",
  default_severity = "warning",
  check = function(s, ctx)
    local max = ctx.settings.max_tables
    local seen, count_before, names = {}, 0, {}
    local function walk(x)
      for _, t in ipairs(x.tables) do
        if not t.new and t.exists ~= false and t.lock and ctx.locks.blocks_writes(t.lock) and not seen[t.key] then
          seen[t.key] = true
          names[#names + 1] = ctx.name(t)
          if x.index < s.index then count_before = count_before + 1 end
        end
      end
    end
    for _, p in ipairs(ctx.before(s)) do walk(p) end
    walk(s)
    if count_before <= max and #names > max then
      return { { lock = s.lock,
        why = ("%d existing tables are now locked against writes in one transaction (%s); each lock is held until commit, and waiting on any of them stalls the others"):format(#names, table.concat(names, ", ")),
        alternative = ("split the migration so that each one locks at most %d existing tables"):format(max) } }
    end
    return nil
  end,
}
