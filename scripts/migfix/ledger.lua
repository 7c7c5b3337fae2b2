--- Prisma's `_prisma_migrations` ledger: read it and classify every migration
--- exactly as Prisma does (prisma migrate deploy and status; README "status --json").
local db = require "migfix.db"

local M = {}

M.TABLE = "_prisma_migrations"
--- Prisma's migration lock: pg_advisory_lock(72707369), session level
--- (Prisma's schema engine, advisory_lock in its PostgreSQL flavour). The one place the key is written.
M.LOCK_KEY = 72707369
M.COLUMNS = { "id", "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count" }
M.REQUIRED = { "id", "checksum", "migration_name", "started_at", "applied_steps_count" }

local NULL = db.NULL
-- db.isnull(v) without the call into C (db.NULL is one light userdata)
local function null(v) return v == nil or v == NULL end
M.null = null

--- "schema"."_prisma_migrations", quoted
function M.qualified(conn, schema)
  return conn:quote_ident(schema) .. "." .. conn:quote_ident(M.TABLE)
end

-- ------------------------------------------------------------ shape

--- Prisma's DDL of each column (the CREATE TABLE of migrate deploy), and the type
--- families Prisma 6.19.3 reads (checked with the real CLI in
--- tests/compat/test_ledger_prisma.lua): text, varchar and char read as
--- strings; timestamptz and timestamp as times; int4 and int8 as the count.
--- `uuid` for id or `text` for applied_steps_count make Prisma fail with
--- "Failed to extract `id` from `_prisma_migrations` row."
M.DDL = {
  id = "VARCHAR(36)", checksum = "VARCHAR(64)", finished_at = "TIMESTAMPTZ", migration_name = "VARCHAR(255)",
  logs = "TEXT", rolled_back_at = "TIMESTAMPTZ", started_at = "TIMESTAMPTZ", applied_steps_count = "INTEGER",
}
local STRING = { varchar = true, text = true, bpchar = true }
local TIME = { timestamptz = true, timestamp = true }
local COUNT = { int4 = true, int8 = true }
M.FAMILY = {
  id = STRING, checksum = STRING, migration_name = STRING, logs = STRING,
  finished_at = TIME, rolled_back_at = TIME, started_at = TIME, applied_steps_count = COUNT,
}

--- `logs` is never read whole (Prisma never reads it back at all): rows
--- carry at most LOGS_EXCERPT characters of it, with logs_bytes (its size)
--- and, when cut, logs_sha256 (of the whole text). A 50 MB `logs` value
--- stays on the server.
M.LOGS_EXCERPT = 16384

--- The select list of the 8 columns with `logs` bounded (plus logs_bytes and,
--- unless opts.hash == false, logs_sha256 of a cut logs: the journal needs it,
--- status does not). cols: the table's columns as M.read found them (a
--- missing column reads as NULL, one of another type as text); default: Prisma's.
function M.select_list(cols, opts)
  local out = {}
  for _, c in ipairs(M.COLUMNS) do
    local col = cols and cols[c]
    local expr = c
    if cols and not col then expr = "NULL"
    elseif col and not col.ok then expr = c .. "::text" end
    if c == "logs" then
      local n = M.LOGS_EXCERPT
      out[#out + 1] = ("CASE WHEN octet_length(%s) > %d THEN left(%s, %d) ELSE %s END AS logs"):format(expr, n, expr, n, expr)
      out[#out + 1] = ("octet_length(%s) AS logs_bytes"):format(expr)
      if not (opts and opts.hash == false) then
        out[#out + 1] = ("CASE WHEN octet_length(%s) > %d THEN encode(sha256(convert_to(%s, 'UTF8')), 'hex') END AS logs_sha256"):format(expr, n, expr)
      end
    else
      out[#out + 1] = expr == c and c or (expr .. " AS " .. c)
    end
  end
  return table.concat(out, ", ")
end

local function read_columns(conn, oid)
  local rows, err, info = conn:query([[
    SELECT a.attname, t.typname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, a.atthasdef
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum]], oid)
  if not rows then return nil, err, info end
  local cols, extra = {}, {}
  for _, r in ipairs(rows) do
    local fam = M.FAMILY[r.attname]
    if fam then
      cols[r.attname] = { type = r.type, typname = r.typname, ok = fam[r.typname] == true }
    else
      extra[#extra + 1] = { name = r.attname, type = r.type, not_null = r.attnotnull == true, has_default = r.atthasdef == true }
    end
  end
  return cols, extra
end

--- Read the ledger. A missing table means nothing applied yet (exists=false).
--- The table's columns are read first: a missing column reads as NULL, one
--- of another type as text, and both (and extra columns) are reported by
--- M.classify as problems, so that a ledger Prisma cannot read is shown,
--- never written over.
---@return table|nil ledger {exists, rows, schema, columns, extra}
---@return string|nil err
---@return table|nil info
function M.read(conn, schema)
  local r, err, info = conn:query([[
    SELECT c.oid::text AS oid,
           EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema_exists
      FROM (SELECT 1) one
      LEFT JOIN pg_class c ON c.relname = $2 AND c.relkind IN ('r', 'p')
       AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)]], schema, M.TABLE)
  if not r then return nil, err, info end
  local oid = not null(r[1].oid) and r[1].oid or nil
  local out = { schema = schema, exists = oid ~= nil, schema_exists = r[1].schema_exists, rows = {} }
  if not out.exists then return out end
  local cols, extra = read_columns(conn, oid)
  if not cols then return nil, extra, info end
  out.columns, out.extra = cols, extra
  local rows
  rows, err, info = conn:query(("SELECT ctid::text AS ctid, %s FROM %s ORDER BY %s"):format(
    M.select_list(cols, { hash = false }), M.qualified(conn, schema), cols.started_at and "started_at ASC, ctid" or "ctid"))
  if not rows then return nil, err, info end
  out.rows = rows
  return out
end

--- Other sessions holding an advisory lock (default Prisma's migration lock)
--- on this database: a deploy or resolve in progress, or an orphaned pooler
--- session.
---@param key integer? default M.LOCK_KEY
---@return table[]|nil holders {pid, application_name, usename, client_addr, since, backend_start, query}
---@return string? err
function M.lock_holders(conn, key)
  key = key or M.LOCK_KEY
  local rows, err, info = conn:query([[
    SELECT a.pid, a.usename, a.application_name, host(a.client_addr) AS client_addr,
           to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since, a.backend_start, a.query
      FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 1
       AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
       AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
     ORDER BY a.backend_start, a.pid]], tostring((key >> 32) & 0xffffffff), tostring(key & 0xffffffff))
  if not rows then return nil, err, info end
  return rows
end

--- Session-level pg_advisory_lock(key) with a bounded wait: polls
--- pg_try_advisory_lock (so no session setting changes and an open
--- transaction is not disturbed), backing off from 25 to 250 ms; timeout_ms
--- 0 tries once. On timeout: nil, a message naming the holders, and
--- {sqlstate = "55P03", message, hint, holders, key, timeout_ms}.
---@param conn migfix.db.Conn
---@param key integer? default M.LOCK_KEY
---@param timeout_ms integer? default 10000 (Prisma's bound)
function M.acquire_lock(conn, key, timeout_ms)
  key, timeout_ms = key or M.LOCK_KEY, timeout_ms or 10000
  if math.type(key) ~= "integer" then error("bad argument #2 to 'acquire_lock' (integer key expected)", 2) end
  if type(timeout_ms) ~= "number" or timeout_ms < 0 then error("bad argument #3 to 'acquire_lock' (timeout must be >= 0 ms)", 2) end
  local sys = require "migfix.sys"
  local deadline, wait = sys.now_ms() + timeout_ms, 25
  while true do
    local got, err, info = conn:try_advisory_lock(key)
    if got == nil then return nil, err, info end
    if got then return true end
    local left = deadline - sys.now_ms()
    if left <= 0 then break end
    sys.sleep_ms(math.min(wait, left))
    wait = math.min(wait * 2, 250)
  end
  local holders = M.lock_holders(conn, key) or {}
  local who = {}
  for i, h in ipairs(holders) do
    who[i] = ('pid %s (application "%s", user "%s", since %s)'):format(tostring(h.pid), tostring(h.application_name),
      tostring(h.usename), tostring(h.backend_start))
  end
  local msg = ("could not acquire the %s pg_advisory_lock(%d) within %d ms: held by %s"):format(
    key == M.LOCK_KEY and "migration lock" or "advisory lock", key, math.floor(timeout_ms),
    #who > 0 and table.concat(who, ", ") or "another session")
  return nil, msg, { sqlstate = "55P03", message = msg, holders = holders, key = key, timeout_ms = timeout_ms,
                     hint = "Another session holds the lock, e.g. a migration still running; "
                       .. "if it is a stale session, end it with pg_terminate_backend(pid)." }
end

--- Whether a local migration's text has the stored checksum (Prisma's
--- comparison, CRLF variants and the legacy format included). The file's own
--- checksum, computed once when it was read (Ctx:state), settles the usual
--- case without hashing the text again.
---@param loc table a local migration {text, checksum?}
---@param stored string the ledger row's checksum
function M.matches(loc, stored)
  if loc.checksum and loc.checksum == stored then return true end
  return require("migfix.migrations").matches(loc.prisma_text or loc.text, stored)
end

local function is_failed(r) return null(r.finished_at) and null(r.rolled_back_at) end
local function is_rolled_back(r) return not null(r.rolled_back_at) end
local function is_applied(r) return not null(r.finished_at) and null(r.rolled_back_at) end
M.is_failed, M.is_rolled_back, M.is_applied = is_failed, is_rolled_back, is_applied

-- ------------------------------------------------------------ problems

local NONE = {}
local PRISMA_EXTRACT = "Prisma stops every command on this ledger with \"Failed to extract `%s` from `_prisma_migrations` row.\""

--- Which row: its position (started_at order), migration name and id.
local function which(i, r)
  local parts = {}
  parts[#parts + 1] = null(r.migration_name) and "no migration_name" or ("migration \"" .. tostring(r.migration_name) .. "\"")
  parts[#parts + 1] = null(r.id) and "no id" or ("id \"" .. tostring(r.id) .. "\"")
  return ("row %d (%s)"):format(i, table.concat(parts, ", "))
end

--- What Prisma cannot read, and what migfix cannot write on, in a ledger
--- (M.read): the table's shape (missing columns, extra columns, columns of
--- a type Prisma does not read) and its rows (NULL in a column Prisma
--- requires, ids shared by several rows). One record per problem:
---   {kind = "missing_column"|"extra_column"|"type"|"null"|"duplicate_id",
---    row = n|nil (1-based, started_at order), ctid, id, migration_name,
---    column, message (one line: row and column, what Prisma does), fix (SQL)}
---@param ledger table from M.read
---@param locals table? local migrations (for the checksum a NULL one should have)
---@return table[] problems
function M.problems(ledger, locals)
  local out = {}
  if not ledger.exists then return out end
  local q = ('"%s"."%s"'):format((tostring(ledger.schema):gsub('"', '""')), M.TABLE)
  local cols = ledger.columns
  local function add(p) out[#out + 1] = p end
  if cols then
    for _, c in ipairs(M.COLUMNS) do
      local col = cols[c]
      if not col then
        add { kind = "missing_column", column = c,
              message = ("%s has no column %s: Prisma fails on it with \"column \"%s\" does not exist\""):format(q, c, c),
              fix = ("ALTER TABLE %s ADD COLUMN %s %s;"):format(q, c, M.DDL[c]) }
      elseif not col.ok then
        add { kind = "type", column = c,
              message = ("column %s of %s is %s, not %s: %s"):format(c, q, col.type, M.DDL[c]:lower(), PRISMA_EXTRACT:format(c)),
              fix = ("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::text::%s;"):format(q, c, M.DDL[c], c, M.DDL[c]:lower()) }
      end
    end
    for _, x in ipairs(ledger.extra or {}) do
      local prisma = (x.not_null and not x.has_default)
        and "Prisma's deploy fails on its INSERT (NOT NULL without a default)"
        or "Prisma ignores it"
      add { kind = "extra_column", column = x.name,
            message = ("%s has a column %s (%s) that Prisma does not create: %s, and migfix's journal and undo keep only Prisma's 8 columns"):format(
              q, x.name, x.type, prisma),
            fix = ("ALTER TABLE %s DROP COLUMN %s;  -- after saving what it holds"):format(q, x.name) }
    end
  end
  local checksum_of = {}
  for _, m in ipairs(locals or {}) do if m.checksum then checksum_of[m.name] = m.checksum end end
  local ids = {}
  for i, r in ipairs(ledger.rows or {}) do
    -- M.REQUIRED, the usual case (none NULL) in one test
    local id, sum, name, started, steps = r.id, r.checksum, r.migration_name, r.started_at, r.applied_steps_count
    local some_null = id == nil or id == NULL or sum == nil or sum == NULL or name == nil or name == NULL
      or started == nil or started == NULL or steps == nil or steps == NULL
    for _, c in ipairs(some_null and M.REQUIRED or NONE) do
      if (not cols or cols[c]) and null(r[c]) then
        local where = ("WHERE ctid = '%s'"):format(tostring(r.ctid))
        local fix
        if c == "id" then fix = ("UPDATE %s SET id = gen_random_uuid()::text %s;"):format(q, where)
        elseif c == "checksum" then
          local sum = not null(r.migration_name) and checksum_of[r.migration_name]
          fix = sum and ("UPDATE %s SET checksum = '%s' %s;  -- the local migration.sql's"):format(q, sum, where)
                     or ("DELETE FROM %s %s;  -- or set checksum to the SHA-256 of its migration.sql"):format(q, where)
        elseif c == "migration_name" then fix = ("UPDATE %s SET migration_name = '<folder name>' %s;  -- or DELETE the row"):format(q, where)
        elseif c == "started_at" then fix = ("UPDATE %s SET started_at = coalesce(finished_at, rolled_back_at, now()) %s;"):format(q, where)
        else fix = ("UPDATE %s SET applied_steps_count = 0 %s;  -- Prisma's default"):format(q, where) end
        add { kind = "null", row = i, ctid = r.ctid, id = not null(r.id) and r.id or nil,
              migration_name = not null(r.migration_name) and r.migration_name or nil, column = c,
              message = ("%s of %s has NULL in %s: %s"):format(which(i, r), q, c, PRISMA_EXTRACT:format(c)), fix = fix }
      end
    end
    if not null(r.id) then
      local first = ids[r.id]
      if first then
        local where = ("WHERE ctid = '%s'"):format(tostring(r.ctid))
        add { kind = "duplicate_id", row = i, ctid = r.ctid, id = r.id,
              migration_name = not null(r.migration_name) and r.migration_name or nil, column = "id",
              message = ("%s of %s has the same id as row %d: a write by id (Prisma's resolve, migfix's conditional writes) would change both rows"):format(
                which(i, r), q, first),
              fix = ("UPDATE %s SET id = gen_random_uuid()::text %s;"):format(q, where) }
      else
        ids[r.id] = i
      end
    end
  end
  return out
end

--- Refuse a write on a ledger with problems (M.problems): exit 1, nothing
--- written, every problem named by row and column with the SQL that fixes
--- it. Every writing command calls it right after reading the ledger under
--- Prisma's lock. `x` is a state (M.classify, ctx:state) or a connection
--- (then the ledger of `schema` is read here).
function M.refuse_if_bad(x, schema)
  local problems
  if type(x) == "table" then
    problems = x.ledger_problems or {}
    schema = schema or x.schema
  else
    local l, err = M.read(x, schema)
    if not l then
      local ui = require "migfix.ui"
      ui.fail { message = "could not read the Prisma ledger: " .. tostring(err), code = ui.EXIT.FAILURE }
    end
    problems = M.problems(l)
  end
  if #problems == 0 then return end
  local ui = require "migfix.ui"
  local lines = {}
  for _, p in ipairs(problems) do
    lines[#lines + 1] = p.message
    if p.fix then lines[#lines + 1] = "  fix: " .. p.fix end
  end
  ui.fail { message = ("the Prisma ledger \"%s\".%s has %d problem%s Prisma or migfix cannot work with: nothing was written"):format(
              tostring(schema), M.TABLE, #problems, #problems == 1 and "" or "s"),
            detail = table.concat(lines, "\n"),
            hint = "fix the table with the SQL above (in psql, while no deploy runs), then check with migfix status",
            code = ui.EXIT.ATTENTION, ledger_problems = problems }
end

--- Join local folders with ledger rows and classify each migration.
--- states: applied | failed | rolled_back | pending | missing (rows, no folder)
--- flags: modified (applied, local file differs), missing_locally, reapplied
---@param locals table list from migfix.migrations.list, each with .checksum (or nil when unreadable)
---@param ledger table from M.read
function M.classify(locals, ledger)
  local by_name, order = {}, {}
  local function entry(name)
    local e = by_name[name]
    if not e then
      e = { name = name, rows = {} }
      by_name[name] = e
      order[#order + 1] = e
    end
    return e
  end
  for _, m in ipairs(locals) do
    local e = entry(m.name)
    e["local"] = m
  end
  local problems = M.problems(ledger, locals)
  local texts = {}
  for i, p in ipairs(problems) do texts[i] = p.message end
  for _, r in ipairs(ledger.rows or {}) do
    if not null(r.migration_name) then table.insert(entry(r.migration_name).rows, r) end
  end

  local s = { applied = 0, failed = 0, rolled_back = 0, pending = 0, missing = 0, modified = 0, failed_rows = 0 }
  local deploy_pending, failed_rows = {}, {}
  for _, e in ipairs(order) do
    local n_failed, n_applied, n_rb = 0, 0, 0
    local last_applied
    for _, r in ipairs(e.rows) do
      if is_failed(r) then
        n_failed = n_failed + 1
        failed_rows[#failed_rows + 1] = { name = e.name, row = r }
      elseif is_applied(r) then
        n_applied = n_applied + 1
        last_applied = r
      elseif is_rolled_back(r) then
        n_rb = n_rb + 1
      end
    end
    local loc = e["local"]
    e.missing_locally = loc == nil
    e.local_checksum = loc and loc.checksum or nil
    if n_failed > 0 then
      e.state = "failed"
    elseif n_applied > 0 then
      e.state = e.missing_locally and "missing" or "applied"
      e.reapplied = n_rb > 0
      -- a NULL checksum is reported in problems (Prisma cannot read the row), not compared
      if loc and loc.text and not null(last_applied.checksum)
         and not M.matches(loc, last_applied.checksum) then
        e.modified = true
      end
    elseif n_rb > 0 then
      -- only rolled-back rows: deploy will run it again; with no folder
      -- (e.g. after migfix split) nothing will, and Prisma ignores it
      e.state = "rolled_back"
    else
      e.state = "pending"
    end
    -- deploy's view: pending = local folder without any row that is not rolled back
    if loc then
      local live = false
      for _, r in ipairs(e.rows) do if null(r.rolled_back_at) then live = true end end
      if not live then deploy_pending[#deploy_pending + 1] = e.name end
    end
    -- Prisma's dev/status checksum check uses the OLDEST row of the name
    if loc and loc.text and e.rows[1] and not null(e.rows[1].checksum) then
      e.prisma_edited = not M.matches(loc, e.rows[1].checksum)
    end
    s[e.state] = (s[e.state] or 0) + 1
    if e.modified then s.modified = s.modified + 1 end
  end
  s.failed_rows = #failed_rows
  s.total = #order

  -- what `prisma migrate status` would say (its MigrateStatus command)
  local status
  local not_in_db = {}
  for _, e in ipairs(order) do
    if e["local"] and #e.rows == 0 then not_in_db[#not_in_db + 1] = e.name end
  end
  if not ledger.exists and #locals == 0 then
    status = { exit = 1, says = "The current database is not managed by Prisma Migrate" }
  elseif #not_in_db > 0 then
    local db_only = 0
    for _, e in ipairs(order) do if e.missing_locally then db_only = db_only + 1 end end
    status = { exit = 1, says = db_only > 0 and "Your local migration history and the migrations table from your database are different"
                               or "Following migration(s) have not yet been applied" }
  elseif #failed_rows > 0 then
    status = { exit = 1, says = "Following migration(s) have failed" }
  else
    status = { exit = 0, says = "Database schema is up to date!" }
  end

  local deploy
  if #failed_rows > 0 then
    deploy = { refuses = true, code = "P3009", failed = failed_rows }
  else
    deploy = { refuses = false, pending = deploy_pending }
  end
  return { migrations = order, by_name = by_name, summary = s, deploy = deploy, prisma_status = status,
           problems = texts, ledger_problems = problems, exists = ledger.exists, schema = ledger.schema }
end

--- Prisma's P3009 text for the failed rows (started_at as chrono prints it).
function M.p3009_lines(failed)
  local lines = {}
  for _, f in ipairs(failed) do
    local t = null(f.row.started_at) and "(NULL)" or tostring(f.row.started_at):gsub("T", " "):gsub("Z$", " UTC")
    lines[#lines + 1] = ("The `%s` migration started at %s failed"):format(f.name, t)
  end
  return lines
end

return M
