-- S10: a destructive change (drop or rename of an existing table or column,
-- TRUNCATE) in the same migration as additive changes: the contract step
-- should ship later, once no running code needs the old shape.
local DESTRUCTIVE = { drop_table = "DROP TABLE", ["alter_table.drop_column"] = "DROP COLUMN", rename = "RENAME",
                      truncate = "TRUNCATE" }
return {
  id = "S10",
  title = "destructive change beside additive changes",
  default_severity = "warning",
  check = function(s, ctx)
    local out = {}
    for _, a in ipairs(s.actions) do
      local t = a.info
      if DESTRUCTIVE[a.key] and t and not t.new then
        local add = ctx.first_additive
        if add then
          out[#out + 1] = { table_info = t, lock = a.lock,
            why = ("%s of %s ships with additive changes (line %d): code still running during the deploy needs the old shape, and rolling back the additive part means losing data"):format(
              DESTRUCTIVE[a.key], ctx.name(t), add.line),
            alternative = "expand now, contract later: keep this migration additive and drop or rename in a later migration, after the code stops using the old name" }
        end
      end
    end
    return out
  end,
}
