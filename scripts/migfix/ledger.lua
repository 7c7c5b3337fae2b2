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

local function null(v) return v == nil or db.isnull(v) end
M.null = null

--- "schema"."_prisma_migrations", quoted
function M.qualified(conn, schema)
  return conn:quote_ident(schema) .. "." .. conn:quote_ident(M.TABLE)
end

--- Read the ledger. A missing table means nothing applied yet (exists=false).
---@return table|nil ledger {exists, rows, schema}
---@return string|nil err
---@return table|nil info
function M.read(conn, schema)
  local r, err, info = conn:query([[
    SELECT c.oid IS NOT NULL AS table_exists,
           EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema_exists
      FROM (SELECT 1) one
      LEFT JOIN pg_class c ON c.relname = $2 AND c.relkind IN ('r', 'p')
       AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)]], schema, M.TABLE)
  if not r then return nil, err, info end
  local out = { schema = schema, exists = r[1].table_exists, schema_exists = r[1].schema_exists, rows = {} }
  if not out.exists then return out end
  local rows
  rows, err, info = conn:query(("SELECT %s FROM %s ORDER BY started_at ASC"):format(
    table.concat(M.COLUMNS, ", "), M.qualified(conn, schema)))
  if not rows then return nil, err, info end
  out.rows = rows
  return out
end

--- Other sessions holding Prisma's migration lock on this database (a
--- deploy or resolve in progress, or an orphaned pooler session).
---@return table[]|nil holders {pid, application_name, usename, client_addr, since, query}
---@return string? err
function M.lock_holders(conn)
  local key = M.LOCK_KEY
  local rows, err, info = conn:query([[
    SELECT a.pid, a.usename, a.application_name, host(a.client_addr) AS client_addr,
           to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since, a.query
      FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 1
       AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
       AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
     ORDER BY a.backend_start, a.pid]], tostring(key >> 32), tostring(key & 0xffffffff))
  if not rows then return nil, err, info end
  return rows
end

local function is_failed(r) return null(r.finished_at) and null(r.rolled_back_at) end
local function is_rolled_back(r) return not null(r.rolled_back_at) end
local function is_applied(r) return not null(r.finished_at) and null(r.rolled_back_at) end
M.is_failed, M.is_rolled_back, M.is_applied = is_failed, is_rolled_back, is_applied

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
  local problems = {}
  for i, r in ipairs(ledger.rows or {}) do
    for _, col in ipairs(M.REQUIRED) do
      if null(r[col]) then
        problems[#problems + 1] = ("row %d of _prisma_migrations (%s) has NULL in %s: Prisma stops with \"Failed to extract `%s` from `_prisma_migrations` row\""):format(
          i, null(r.migration_name) and "no name" or r.migration_name, col, col)
      end
    end
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
         and not require("migfix.migrations").matches(loc.text, last_applied.checksum) then
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
      e.prisma_edited = not require("migfix.migrations").matches(loc.text, e.rows[1].checksum)
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
           problems = problems, exists = ledger.exists, schema = ledger.schema }
end

--- Prisma's P3009 text for the failed rows (started_at as chrono prints it).
function M.p3009_lines(failed)
  local lines = {}
  for _, f in ipairs(failed) do
    local t = tostring(f.row.started_at):gsub("T", " "):gsub("Z$", " UTC")
    lines[#lines + 1] = ("The `%s` migration started at %s failed"):format(f.name, t)
  end
  return lines
end

return M
