--- Writing Prisma's `_prisma_migrations` exactly as Prisma writes it
--- (prisma-migrate.md §4–§6). Every write is first built as a list of
--- statements ({sql, params, what}) so that `migfix plan` prints exactly
--- the SQL that `migfix run` executes; `execute` then runs them in one
--- transaction together with the journal entry that describes them.
local db = require "migfix.db"
local crypto = require "migfix.crypto"
local mig = require "migfix.migrations"
local ledger = require "migfix.ledger"
local ui = require "migfix.ui"

local M = {}

M.LOCK_KEY = 72707369

-- Prisma's exact DDL (prisma-engines create_migrations_table), qualified
-- with the ledger schema instead of relying on search_path.
function M.create_table_sql(conn, schema)
  return ([[CREATE TABLE %s (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)]]):format(ledger.qualified(conn, schema))
end

--- Client-side UTC time with microseconds, as Prisma's chrono::Utc::now().
function M.now()
  local ok, ptime = pcall(require, "posix.time")
  if ok then
    local ts = ptime.clock_gettime(ptime.CLOCK_REALTIME)
    return os.date("!%Y-%m-%dT%H:%M:%S", ts.tv_sec) .. (".%06dZ"):format(ts.tv_nsec // 1000)
  end
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function refuse(code, message, hint)
  ui.fail { message = message, hint = hint, code = ui.EXIT.ATTENTION, prisma_code = code }
end

local function rows_of(st_entry) return st_entry and st_entry.rows or {} end

--- Statements for `resolve --applied NAME` (§5): rolled_back_at on every
--- failed row of NAME, then a new row with the local file's checksum.
---@param entry table classification entry of the migration (ledger.classify)
---@param text string the local migration.sql
function M.mark_applied(conn, schema, entry, text, opts)
  opts = opts or {}
  if text == nil then
    refuse("P3017", ("the migration %s could not be found locally"):format(entry.name),
      "give the whole folder name of a migration in the migrations directory (Prisma: P3017)")
  end
  for _, r in ipairs(rows_of(entry)) do
    if not ledger.null(r.finished_at) then
      refuse("P3008", ("the migration `%s` is already recorded as applied in the database"):format(entry.name),
        "nothing to do; migfix status shows the rows (Prisma: P3008)")
    end
  end
  local q = ledger.qualified(conn, schema)
  local now = opts.now or M.now()
  local stmts = {}
  if opts.create_table then stmts[#stmts + 1] = { sql = M.create_table_sql(conn, schema), params = {}, what = "create the ledger table (as Prisma's baseline does)" } end
  for _, r in ipairs(rows_of(entry)) do
    if ledger.is_failed(r) then
      stmts[#stmts + 1] = { sql = ("UPDATE %s SET rolled_back_at = $1::timestamptz WHERE id = $2"):format(q),
                            params = { now, r.id }, what = "mark the failed row rolled back", id = r.id }
    end
  end
  local id = opts.id or crypto.uuid4()
  -- Prisma takes a fresh Utc::now() for the new row, after the rolled_back_at
  -- updates (markMigrationApplied: mark_migration_rolled_back_by_id per failed
  -- row, then record_migration_applied with its own now): started_at =
  -- finished_at, later than the rolled_back_at it just wrote.
  local applied_at = opts.now or M.now()
  stmts[#stmts + 1] = {
    sql = ("INSERT INTO %s (id, checksum, logs, started_at, finished_at, migration_name) VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6)"):format(q),
    params = { id, mig.checksum(text), "", applied_at, applied_at, entry.name },
    what = "insert the applied row (logs '', applied_steps_count 0, started_at = finished_at)", id = id,
  }
  return stmts
end

--- Statements for `resolve --rolled-back NAME` (§6).
function M.mark_rolled_back(conn, schema, entry, opts)
  opts = opts or {}
  local rows = rows_of(entry)
  if opts.ledger_exists == false then
    refuse(nil, "cannot mark a migration rolled back: the database has no _prisma_migrations table", "nothing was ever applied here")
  end
  if #rows == 0 then
    refuse("P3011", ("migration `%s` cannot be rolled back because it was never applied to the database"):format(entry.name),
      "give the whole migration name, e.g. 20201207184859_initial_migration (Prisma: P3011)")
  end
  local any_unfinished = false
  for _, r in ipairs(rows) do if ledger.null(r.finished_at) then any_unfinished = true end end
  if not any_unfinished then
    refuse("P3012", ("migration `%s` cannot be rolled back because it is not in a failed state"):format(entry.name),
      "it is recorded as applied (Prisma: P3012)")
  end
  local q = ledger.qualified(conn, schema)
  local now = opts.now or M.now()
  local stmts = {}
  for _, r in ipairs(rows) do
    if ledger.is_failed(r) then
      stmts[#stmts + 1] = { sql = ("UPDATE %s SET rolled_back_at = $1::timestamptz WHERE id = $2"):format(q),
                            params = { now, r.id }, what = "mark the failed row rolled back", id = r.id }
    end
  end
  return stmts
end

--- Render statements with their parameters inlined, for plans and journals.
function M.render(conn, stmts)
  local out = {}
  for _, s in ipairs(stmts) do
    local sql = s.sql:gsub("%$(%d+)", function(n)
      local v = s.params[tonumber(n)]
      if v == nil or db.isnull(v) then return "NULL" end
      if math.type(v) == "integer" then return tostring(v) end
      return conn:quote_literal(tostring(v))
    end)
    out[#out + 1] = sql .. ";"
  end
  return out
end

local function read_rows(conn, schema, name)
  local l, err = ledger.read(conn, schema)
  if not l then return nil, err end
  local out = {}
  for _, r in ipairs(l.rows) do if r.migration_name == name then out[#out + 1] = r end end
  return out
end
M.read_rows = read_rows

--- Hold Prisma's advisory lock for fn(); a bounded wait, then a clear
--- error naming the holder. The lock is session-level, as Prisma's.
function M.with_lock(conn, timeout_ms, fn)
  local ok, err, info = conn:advisory_lock(M.LOCK_KEY, timeout_ms or 10000)
  if not ok then
    ui.fail { message = err,
              detail = "another `prisma migrate deploy/resolve` or migfix holds Prisma's migration lock; nothing was written",
              hint = "wait for it to finish, or find it in pg_stat_activity; a pooler in transaction mode can leave an orphaned lock",
              code = ui.EXIT.ATTENTION, holders = info and info.holders }
  end
  local res = table.pack(pcall(fn))
  conn:advisory_unlock(M.LOCK_KEY)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- Run statements in ONE transaction, with `journal_fn(before_rows)` called
--- inside it (it appends the journal entry); a failure rolls back both.
---@return table result {before, after}
function M.execute(conn, schema, name, stmts, journal_fn)
  local tx <close> = conn:begin()
  local before = assert(read_rows(conn, schema, name))
  for _, s in ipairs(stmts) do
    local ok, err, info = conn:query(s.sql, table.unpack(s.params, 1, #s.params))
    if not ok then
      ui.fail { message = ("could not write the ledger (%s): %s"):format(s.what or "statement", err),
                detail = info and info.detail, hint = "the transaction was rolled back: the ledger is as it was", code = ui.EXIT.FAILURE }
    end
  end
  local after = assert(read_rows(conn, schema, name))
  if journal_fn then journal_fn(before, after) end
  local ok, err = tx:commit()
  if not ok then
    ui.fail { message = "could not commit the ledger change: " .. tostring(err), hint = "the ledger is as it was", code = ui.EXIT.FAILURE }
  end
  return { before = before, after = after }
end

--- The `logs` text Prisma's native engine writes for a failed script (P3018).
function M.p3018_logs(name, msg, info)
  info = info or {}
  local dberr = "ERROR: " .. tostring(info.message or msg)
  if info.detail then dberr = dberr .. "\nDETAIL: " .. info.detail end
  if info.hint then dberr = dberr .. "\nHINT: " .. info.hint end
  return ("A migration failed to apply. New migrations cannot be applied before the error is recovered from. "
    .. "Read more about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve\n\n"
    .. "Migration name: %s\n\nDatabase error code: %s\n\nDatabase error:\n%s\n"):format(name, info.sqlstate or "none", dberr)
end

--- Deploy one migration as Prisma does (§4): insert the started row, run
--- the file as ONE simple-protocol query (one implicit transaction), then
--- applied_steps_count + 1 and finished_at, or logs on failure. The final
--- updates and the journal entry share one transaction.
---@return boolean ok, table result {id, error, info, before, after}
function M.deploy_one(conn, schema, name, text, journal_fn, opts)
  opts = opts or {}
  local q = ledger.qualified(conn, schema)
  local before = assert(read_rows(conn, schema, name))
  local id = crypto.uuid4()
  local ok, err, info = conn:query(("INSERT INTO %s (id, checksum, started_at, migration_name) VALUES ($1, $2, $3::timestamptz, $4)"):format(q),
    id, mig.checksum(text), M.now(), name)
  if not ok then
    ui.fail { message = "could not record the start of " .. name .. ": " .. err, code = ui.EXIT.FAILURE }
  end
  local t0 = os.clock()
  local sok, serr, sinfo
  if opts.run_script then
    sok, serr, sinfo = opts.run_script(conn, text)
  else
    sok, serr, sinfo = conn:exec(text)
  end
  local res = { id = id, before = before, seconds = os.clock() - t0 }
  local tx <close> = conn:begin()
  if sok then
    assert(conn:query(("UPDATE %s SET applied_steps_count = applied_steps_count + $1 WHERE id = $2"):format(q), 1, id))
    assert(conn:query(("UPDATE %s SET finished_at = $1::timestamptz WHERE id = $2"):format(q), M.now(), id))
  else
    res.error, res.info = serr, sinfo
    assert(conn:query(("UPDATE %s SET logs = $1 WHERE id = $2"):format(q), M.p3018_logs(name, serr, sinfo), id))
  end
  res.after = assert(read_rows(conn, schema, name))
  if journal_fn then journal_fn(res.before, res.after, sok and true or false, res) end
  assert(tx:commit())
  return sok and true or false, res
end

--- P3005: a deploy into a non-empty schema with no ledger table.
function M.check_empty_schema(conn, schema)
  local rows = assert(conn:query([[SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind = 'r'
       AND c.relname NOT IN ('spatial_ref_sys', 'geometry_columns', 'geography_columns', 'raster_columns', 'raster_overviews')
     ORDER BY 1 LIMIT 5]], schema))
  if #rows > 0 then
    local names = {}
    for _, r in ipairs(rows) do names[#names + 1] = r.relname end
    refuse("P3005", ("the database schema \"%s\" is not empty and has no _prisma_migrations table (tables: %s)"):format(schema, table.concat(names, ", ")),
      "baseline it first: migfix resolve --applied NAME for the migrations already in the database (Prisma: P3005)")
  end
end

return M
