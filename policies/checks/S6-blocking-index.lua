-- S6: an index built without CONCURRENTLY on an existing large table
-- (CREATE INDEX: SHARE, writes wait; UNIQUE/PRIMARY KEY/EXCLUDE constraint:
-- ACCESS EXCLUSIVE, reads wait too; REINDEX).
local KEYS = {
  create_index = "CREATE INDEX", ["alter_table.add_constraint_unique"] = "ADD CONSTRAINT ... UNIQUE",
  ["alter_table.add_constraint_primary_key"] = "ADD CONSTRAINT ... PRIMARY KEY",
  ["alter_table.add_constraint_exclusion"] = "ADD CONSTRAINT ... EXCLUDE", reindex = "REINDEX",
}
return {
  id = "S6",
  title = "blocking index build on an existing large table",
  default_severity = "error",
  check = function(s, ctx)
    local out = {}
    for _, a in ipairs(s.actions) do
      local t = a.info
      if t and KEYS[a.key] then
        local band = ctx.band(t)
        if band then
          local alt = "CREATE INDEX CONCURRENTLY IF NOT EXISTS in a migration of its own (alone in the file)"
          if a.key:find("unique") or a.key:find("primary") then
            alt = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS in a migration of its own, then ADD CONSTRAINT ... " ..
                  (a.key:find("primary") and "PRIMARY KEY" or "UNIQUE") .. " USING INDEX in the next"
          elseif a.key == "reindex" then
            alt = "REINDEX ... CONCURRENTLY in a migration of its own"
          elseif a.key:find("exclusion") then
            alt = "there is no concurrent build of an exclusion constraint: run it in a maintenance window"
          end
          out[#out + 1] = { table_info = t, lock = a.lock, band = band,
            why = ("%s builds an index over %s (%s) holding %s: %s until it finishes"):format(KEYS[a.key], ctx.name(t),
              ctx.size_text(t), a.lock, ctx.locks.blocks_reads(a.lock) and "reads and writes wait" or "writes wait"),
            alternative = alt }
        end
      end
    end
    return out
  end,
}
