-- S3: an ALTER that rewrites an existing large table (volatile default,
-- identity or stored generated column, SET EXPRESSION, type change that is not
-- binary-coercible, VACUUM FULL, CLUSTER) holds ACCESS EXCLUSIVE for the
-- whole rewrite and needs up to twice the disk.
local ALT = {
  ["alter_table.alter_type"] = "expand/contract: add a column of the new type, keep both written (trigger), backfill in batches, switch readers, drop the old column in a later migration",
  ["alter_table.add_column_volatile_default"] = "add the column without the default, SET DEFAULT afterwards (it applies to new rows only), backfill existing rows in batches outside this migration",
  ["alter_table.add_column_identity"] = "add a plain column, backfill it in batches, then attach a sequence or identity on the filled column",
  ["alter_table.add_column_generated"] = "add a plain column maintained by a trigger, backfill in batches",
  ["alter_table.set_expression"] = "add a new generated column (or a plain one kept by a trigger) beside the old, backfill, switch readers, drop the old column later",
  ["vacuum_full"] = "use pg_repack (or pg_squeeze), which holds ACCESS EXCLUSIVE only briefly",
  ["cluster"] = "use pg_repack --order-by, which holds ACCESS EXCLUSIVE only briefly",
}
return {
  id = "S3",
  title = "table rewrite under ACCESS EXCLUSIVE on a large table",
  default_severity = "error",
  check = function(s, ctx)
    local out = {}
    for _, a in ipairs(s.actions) do
      local t = a.info
      if t and a.rewrite and ALT[a.key] then
        local band = ctx.band(t)
        if band then
          local maybe = a.rewrite ~= true
          local why = ("%s %s %s (%s) under %s: reads and writes wait for the whole rewrite, which needs up to twice the table's disk"):format(
            a.key:gsub("^alter_table%.", "ALTER TABLE "):gsub("_", " "), maybe and "may rewrite" or "rewrites",
            ctx.name(t), ctx.size_text(t), a.lock)
          if a.key == "alter_table.alter_type" then
            why = why .. (a.old_type and (" (%s -> %s is not binary-coercible)"):format(a.old_type, a.new_type)
                                      or (" (to %s; a rewrite unless binary-coercible: the old type is not known without a database)"):format(a.new_type))
          end
          out[#out + 1] = { table_info = t, lock = a.lock, band = maybe and "unknown" or band, why = why, alternative = ALT[a.key] }
        end
      end
    end
    return out
  end,
}
