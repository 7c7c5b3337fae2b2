-- S9: more than max_tables existing tables locked at SHARE or above in one
-- transaction: the longer the list, the likelier a lock queue forms.
return {
  id = "S9",
  title = "many existing tables locked in one transaction",
  default_severity = "warning",
  check = function(s, ctx)
    local max = ctx.settings.max_tables
    -- existing tables locked against writes in this transaction, up to s
    local count_before, through = s.write_locked_before, s.write_locked_through
    if count_before <= max and through > max then
      local locked, names = ctx.segment_facts(s).write_locked, {}
      for i = 1, through do names[i] = ctx.name(locked[i]) end
      return { { lock = s.lock,
        why = ("%d existing tables are now locked against writes in one transaction (%s); each lock is held until commit, and waiting on any of them stalls the others"):format(#names, table.concat(names, ", ")),
        alternative = ("split the migration so that each one locks at most %d existing tables"):format(max) } }
    end
    return nil
  end,
}
