-- drop-invalid-indexes.lua — find the INVALID indexes an interrupted or failed
-- CREATE INDEX CONCURRENTLY leaves behind, and drop them.
--
--   migfix exec scripts/examples/drop-invalid-indexes.lua          # list only (exit 1 if any)
--   migfix exec scripts/examples/drop-invalid-indexes.lua --yes    # DROP INDEX CONCURRENTLY each
--
-- Looks in the ledger schema (the URL's ?schema=, default public). Each drop is
-- migfix.act(conn, "drop_invalid_index", ...): the action `migfix run` executes
-- (DROP INDEX CONCURRENTLY IF EXISTS, refused if the index became valid, journaled),
-- so the environment's forbid list, confirmation and required backup apply;
-- printed before it runs. The ledger is not touched: afterwards run
-- `migfix diagnose` and resolve the migration (e.g. redeploy the fixed file).
local yes = false
for _, a in ipairs(arg) do
  if a == "--yes" or a == "-y" then yes = true
  else io.stderr:write("usage: migfix exec drop-invalid-indexes.lua [--yes]\n") return 2 end
end

local conn = migfix.connect { readonly = not yes }
local schema = migfix.schema()
local rows = assert(conn:query([[
  SELECT n.nspname AS schema, c.relname AS index, t.relname AS tbl
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE NOT i.indisvalid AND n.nspname = $1
   ORDER BY 2]], schema))

if #rows == 0 then
  print(("no INVALID indexes in schema \"%s\""):format(schema))
  return 0
end
for _, r in ipairs(rows) do
  local sql = ("DROP INDEX CONCURRENTLY IF EXISTS %s.%s"):format(conn:quote_ident(r.schema), conn:quote_ident(r.index))
  if yes then
    print(sql .. ";")
    local ok, msg = migfix.act(conn, "drop_invalid_index", { schema = r.schema, name = r.index })
    if not ok then
      io.stderr:write(("could not drop %s: %s\n"):format(r.index, tostring(msg)))
      return 4
    end
  else
    print(("INVALID index %s on %s (would run: %s)"):format(r.index, r.tbl, sql))
  end
end
if not yes then
  print("run again with --yes to drop them")
  return 1
end
print(("dropped %d INVALID index(es)"):format(#rows))
return 0
