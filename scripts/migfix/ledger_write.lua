--- Writing Prisma's `_prisma_migrations` exactly as Prisma writes it
--- (deploy, resolve --applied, resolve --rolled-back): the one write boundary of the ledger. Every
--- write is first built as a list of statements ({sql, params, what,
--- expect}) so that `migfix plan` prints exactly the SQL that `migfix run`
--- executes; `execute` then runs them in one transaction together with the
--- journal entry that describes them. Each UPDATE names the row state it
--- was decided from (id, finished_at IS NULL, rolled_back_at IS NULL) and
--- must change exactly `expect` rows, or the whole transaction rolls back:
--- a write never lands on rows another session changed since migfix read them.
local db = require "migfix.db"
local crypto = require "migfix.crypto"
local mig = require "migfix.migrations"
local ledger = require "migfix.ledger"
local ui = require "migfix.ui"
local txn = require "migfix.txn"

local M = {}

M.LOCK_KEY = ledger.LOCK_KEY

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
function M.now() return require("migfix.sys").utc_now() end

local function refuse(code, message, hint)
  ui.fail { message = message, hint = hint, code = ui.EXIT.ATTENTION, prisma_code = code }
end

local function rows_of(st_entry) return st_entry and st_entry.rows or {} end

-- Prisma's `SET rolled_back_at` of one failed row, only while it is failed.
local function roll_back(q, now, r)
  return { sql = ("UPDATE %s SET rolled_back_at = $1::timestamptz WHERE id = $2 AND finished_at IS NULL AND rolled_back_at IS NULL"):format(q),
           params = { now, r.id }, what = "mark the failed row rolled back", id = r.id, expect = 1 }
end

--- Statements for `resolve --applied NAME`: rolled_back_at on every
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
    if ledger.is_failed(r) then stmts[#stmts + 1] = roll_back(q, now, r) end
  end
  local id = opts.id or crypto.uuid4()
  -- Prisma takes a fresh Utc::now() for the new row, after the rolled_back_at
  -- updates (markMigrationApplied: mark_migration_rolled_back_by_id per failed
  -- row, then record_migration_applied with its own now): started_at =
  -- finished_at, later than the rolled_back_at it just wrote.
  local applied_at = opts.now or M.now()
  stmts[#stmts + 1] = {
    sql = ("INSERT INTO %s (id, checksum, logs, started_at, finished_at, migration_name) SELECT $1::varchar, $2::varchar, $3::text, $4::timestamptz, $5::timestamptz, $6::varchar "
      .. "WHERE NOT EXISTS (SELECT 1 FROM %s WHERE migration_name = $6::varchar AND finished_at IS NOT NULL)"):format(q, q),
    params = { id, mig.checksum(text), "", applied_at, applied_at, entry.name },
    what = "insert the applied row (logs '', applied_steps_count 0, started_at = finished_at)", id = id, expect = 1,
  }
  return stmts
end

--- Statements for `resolve --rolled-back NAME`.
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
    if ledger.is_failed(r) then stmts[#stmts + 1] = roll_back(q, now, r) end
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
  local rows, err, info = conn:query(("SELECT %s FROM %s WHERE migration_name = $1 ORDER BY started_at ASC"):format(
    ledger.select_list(), ledger.qualified(conn, schema)), name)
  if not rows then return nil, err, info end
  return rows
end
M.read_rows = read_rows

-- One row by its id (the primary key: an index lookup, whatever the ledger's size).
local function read_row(conn, schema, id)
  local rows, err, info = conn:query(("SELECT %s FROM %s WHERE id = $1"):format(
    table.concat(ledger.COLUMNS, ", "), ledger.qualified(conn, schema)), id)
  if not rows then return nil, err, info end
  return rows
end

--- Hold Prisma's advisory lock for fn(); a bounded wait, then a clear
--- error naming the holder. The lock is session-level, as Prisma's.
function M.with_lock(conn, timeout_ms, fn)
  local ok, err, info = ledger.acquire_lock(conn, M.LOCK_KEY, timeout_ms or 10000)
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

--- Run one statement of a write; a row count other than s.expect means the
--- ledger changed since the decision: raise (the transaction rolls back).
local function run_stmt(conn, s)
  local rows, cols_or_err, affected_or_info = conn:query(s.sql, table.unpack(s.params, 1, #s.params))
  if not rows then
    local info = affected_or_info
    ui.fail { message = ("could not write the ledger (%s): %s"):format(s.what or "statement", cols_or_err),
              detail = info and info.detail, hint = "the transaction was rolled back: the ledger is as it was", code = ui.EXIT.FAILURE }
  end
  local affected = affected_or_info
  if s.expect and affected ~= s.expect then
    ui.fail { message = ("the ledger changed since migfix read it: \"%s\" touched %s row(s), not %d"):format(
                s.what or "statement", tostring(affected), s.expect),
              detail = s.id and ("row " .. tostring(s.id)) or nil,
              hint = "another session wrote _prisma_migrations meanwhile; nothing was written: run migfix again",
              code = ui.EXIT.ATTENTION, changed = true }
  end
  return rows
end
M.run_stmt = run_stmt

--- Run statements in ONE transaction, with `journal_fn(before, after)` called
--- inside it (it records the journal entry); opts.check(before, after) may
--- raise to refuse the result. Any failure rolls back all of it.
---@return table result {before, after}
function M.execute(conn, schema, name, stmts, journal_fn, opts)
  opts = opts or {}
  return txn.run(conn, function()
    local before = assert(read_rows(conn, schema, name))
    for _, s in ipairs(stmts) do run_stmt(conn, s) end
    local after = assert(read_rows(conn, schema, name))
    if opts.check then opts.check(before, after) end
    if journal_fn then journal_fn(before, after) end
    return { before = before, after = after }
  end, opts.what or "write the ledger")
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

--- Deploy one migration as `prisma migrate deploy` does: insert the started row, run
--- the file (as ONE simple-protocol query unless opts.runner says otherwise),
--- then applied_steps_count + 1 and finished_at, or logs on failure. The
--- final updates and the journal entry share one transaction.
---   opts.runner(conn, text)  how the script is sent (lockwait, the tracer)
---   opts.attempt(id)         called (and must commit its journal entry) before
---                            the started row is written: an interrupted run
---                            leaves an attempt with no outcome
---   opts.verify(conn)        called after the script succeeded, before the
---                            final updates; its result is res.verification
---   opts.prelude             {stmts, journal(before, after), what}: ledger writes
---                            committed in one transaction with the started row
---   opts.before              the migration's rows as the caller read them
---                            under Prisma's lock (a deploy reads the ledger
---                            once): not read again; when there are none, the
---                            rows after are the new row, read by its id, so
---                            the cost of a deploy does not grow with the ledger
---@return boolean ok, table result {id, error, info, before, after, ms, verification}
function M.deploy_one(conn, schema, name, text, journal_fn, opts)
  opts = opts or {}
  local sys = require "migfix.sys"
  local q = ledger.qualified(conn, schema)
  local before = opts.before or assert(read_rows(conn, schema, name))
  local id = crypto.uuid4()
  if opts.attempt then opts.attempt(id) end
  local start = { sql = ("INSERT INTO %s (id, checksum, started_at, migration_name) VALUES ($1, $2, $3::timestamptz, $4)"):format(q),
                  params = { id, mig.checksum(text), M.now(), name }, what = "record the start of " .. name, expect = 1 }
  if opts.prelude then
    -- e.g. a redeploy's mark rolled back: in the same transaction as the
    -- started row, so an interruption leaves one failed row, never a
    -- rolled-back migration with no attempt
    local p = opts.prelude
    txn.run(conn, function()
      local pb = assert(read_rows(conn, schema, name))
      for _, st in ipairs(p.stmts) do run_stmt(conn, st) end
      local pa = assert(read_rows(conn, schema, name))
      if p.journal then p.journal(pb, pa) end
      run_stmt(conn, start)
    end, p.what or ("start " .. name))
    before = assert(read_rows(conn, schema, name))
    for i = #before, 1, -1 do if before[i].id == id then table.remove(before, i) end end
  else
    run_stmt(conn, start)
  end
  local t0 = sys.now_ms()
  local runner = opts.runner or opts.run_script or function(c, t) return c:exec(t) end
  local sok, serr, sinfo = runner(conn, text)
  local res = { id = id, before = before, ms = sys.now_ms() - t0 }
  res.seconds = res.ms / 1000
  if sok and opts.verify then res.verification = opts.verify(conn) end
  txn.run(conn, function()
    if sok then
      run_stmt(conn, { sql = ("UPDATE %s SET applied_steps_count = applied_steps_count + $1 WHERE id = $2 AND finished_at IS NULL"):format(q),
                       params = { 1, id }, what = "count the applied step", id = id, expect = 1 })
      run_stmt(conn, { sql = ("UPDATE %s SET finished_at = $1::timestamptz WHERE id = $2 AND finished_at IS NULL"):format(q),
                       params = { M.now(), id }, what = "record the migration finished", id = id, expect = 1 })
    else
      res.error, res.info = serr, sinfo
      run_stmt(conn, { sql = ("UPDATE %s SET logs = $1 WHERE id = $2 AND finished_at IS NULL"):format(q),
                       params = { M.p3018_logs(name, serr, sinfo), id }, what = "record the error", id = id, expect = 1 })
    end
    if #before == 0 then
      res.after = assert(read_row(conn, schema, id))
    else
      res.after = assert(read_rows(conn, schema, name))
    end
    if journal_fn then journal_fn(res.before, res.after, sok and true or false, res) end
  end, "record the outcome of " .. name)
  return sok and true or false, res
end

--- Create Prisma's ledger table where deploy would (P3005 first: a non-empty
--- schema without a ledger is refused).
function M.ensure_table(conn, schema)
  local l = assert(ledger.read(conn, schema))
  if l.exists then return false end
  M.check_empty_schema(conn, schema)
  assert(conn:exec("CREATE SCHEMA IF NOT EXISTS " .. conn:quote_ident(schema)))
  assert(conn:exec(M.create_table_sql(conn, schema)))
  return true
end

-- ------------------------------------------------------------ undo

local ROW_COLS = "id text, checksum text, finished_at timestamptz, migration_name text, logs text, " ..
                 "rolled_back_at timestamptz, started_at timestamptz, applied_steps_count integer, logs_sha256 text"
-- a journaled row may hold only an excerpt of a long logs and its SHA-256
-- (journal.LOGS_EXCERPT): then the hashes are compared, and the text is kept
local LOGS_W = "(CASE WHEN w.logs_sha256 IS NULL THEN w.logs ELSE 'sha256:' || w.logs_sha256 END)"
local LOGS_H = "(CASE WHEN w.logs_sha256 IS NULL THEN h.logs ELSE 'sha256:' || encode(sha256(convert_to(h.logs, 'UTF8')), 'hex') END)"
local DATA_COLS = { "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count" }

local function rows_json(rows) return require("migfix.json").encode(require("migfix.json").array(rows or {})) end
local function names_json(names) return require("migfix.json").encode(require("migfix.json").array(names or {})) end

--- Rows of the given migrations that differ from `want` (by id, every column
--- compared as PostgreSQL values): {id, name, kind = extra|missing|changed, cols}
function M.diff_rows(conn, schema, names, want)
  local q = ledger.qualified(conn, schema)
  local distinct = {}
  for _, c in ipairs(DATA_COLS) do
    local wc, hc = "w." .. c, "h." .. c
    if c == "logs" then wc, hc = LOGS_W, LOGS_H end
    distinct[#distinct + 1] = ("CASE WHEN %s IS DISTINCT FROM %s THEN '%s' END"):format(wc, hc, c)
  end
  return conn:query(([[
    WITH want AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS w(%s)),
         have AS (SELECT id::text, checksum::text, finished_at, migration_name::text, logs, rolled_back_at, started_at,
                         applied_steps_count FROM %s
                   WHERE migration_name::text = ANY (ARRAY(SELECT jsonb_array_elements_text($2::jsonb))))
    SELECT coalesce(w.id, h.id) AS id, coalesce(w.migration_name, h.migration_name) AS name,
           CASE WHEN w.id IS NULL THEN 'extra' WHEN h.id IS NULL THEN 'missing' ELSE 'changed' END AS kind,
           concat_ws(', ', %s) AS cols
      FROM want w FULL JOIN have h ON h.id = w.id
     WHERE w.id IS NULL OR h.id IS NULL
        OR (w.checksum, w.finished_at, w.migration_name, %s, w.rolled_back_at, w.started_at, w.applied_steps_count)
           IS DISTINCT FROM
           (h.checksum, h.finished_at, h.migration_name, %s, h.rolled_back_at, h.started_at, h.applied_steps_count)
     ORDER BY 2, 1]]):format(ROW_COLS, q, table.concat(distinct, ", "), LOGS_W, LOGS_H), rows_json(want), names_json(names))
end

--- Rows of other migrations written after time `at` (deploys since).
function M.newer_rows(conn, schema, names, at)
  return conn:query(([[
    SELECT id::text AS id, migration_name::text AS name FROM %s
     WHERE NOT (migration_name::text = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb))))
       AND greatest(started_at, finished_at, rolled_back_at) > $2::timestamptz
     ORDER BY started_at, id]]):format(ledger.qualified(conn, schema)), names_json(names), at)
end

--- Statements that turn the rows `after` back into `before` (undo): delete
--- what was inserted, restore what changed, re-insert what was removed.
function M.restore(conn, schema, before, after)
  local q = ledger.qualified(conn, schema)
  local sets = {}
  for _, c in ipairs(DATA_COLS) do
    sets[#sets + 1] = c == "logs" and "logs = CASE WHEN w.logs_sha256 IS NULL THEN w.logs ELSE t.logs END"
                      or ("%s = w.%s"):format(c, c)
  end
  return {
    { sql = ([[DELETE FROM %s WHERE id IN (SELECT id FROM jsonb_to_recordset($1::jsonb) AS a(id text))
                 AND id NOT IN (SELECT id FROM jsonb_to_recordset($2::jsonb) AS b(id text))]]):format(q),
      params = { rows_json(after), rows_json(before) }, what = "delete the rows the repair inserted" },
    { sql = ([[UPDATE %s t SET %s FROM jsonb_to_recordset($1::jsonb) AS w(%s) WHERE t.id = w.id]]):format(
        q, table.concat(sets, ", "), ROW_COLS),
      params = { rows_json(before) }, what = "restore the changed rows" },
    { sql = ([[INSERT INTO %s (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
               SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count
                 FROM jsonb_to_recordset($1::jsonb) AS w(%s)
                WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE t.id = w.id)]]):format(q, ROW_COLS, q),
      params = { rows_json(before) }, what = "re-insert the rows the repair removed" },
  }
end

--- Lock the ledger table against other writers for the open transaction.
function M.lock_table(conn, schema)
  return run_stmt(conn, { sql = "LOCK TABLE " .. ledger.qualified(conn, schema) .. " IN SHARE ROW EXCLUSIVE MODE",
                          params = {}, what = "lock the ledger" })
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
