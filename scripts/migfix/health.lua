--- The ledger's health, as the runbook watches it: failed, stuck or running
--- migrations, modified and missing ones, pending ones, and how long each took.
--- Shared by `migfix check`, `migfix metrics` and `migfix status`.
---
---   health.epoch(iso)                    -> seconds since 1970 (UTC) | nil
---   health.duration(text)                -> seconds | nil, err     ("30m", "1h30m", "45s", "500ms", "2d", 90)
---   health.fmt_duration(seconds)         -> "1.2s", "3m04s", "2h05m"
---   health.facts(conn)                   -> {now, lock_held, lock_holders} | nil, err, info
---   health.evaluate(st, facts, limits)   -> report (see below)
---   health.CODES, health.ORDER           the exit codes of `migfix check`
---
--- A ledger row with finished_at and rolled_back_at NULL is "failed" for Prisma (P3009).
--- It is *running* only with evidence: no error recorded (logs NULL) and Prisma's
--- advisory lock 72707369 held by a session right now (deploy holds it while it
--- applies). It is *stuck* when it has been running longer than limits.max_age.
--- Without that evidence (logs set, or nobody holds the lock: the deploy died),
--- it is failed. A deploy run with PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK takes no
--- lock, so its running migration shows as failed: a false alarm, never a missed one.
local ledger = require "migfix.ledger"

local M = {}

M.MIGRATE_LOCK_KEY = ledger.LOCK_KEY

--- `migfix check` exit codes; they extend the global table (0 ok, 2 usage,
--- 3 cannot connect, 4 internal error) and never reuse 1: one code per finding.
M.CODES = { healthy = 0, running = 0, empty = 0, unreachable = 3,
            failed = 10, stuck = 11, ledger = 12, modified = 13, missing = 14, pending = 15 }
--- the order in which findings decide the exit code (the first present wins)
M.ORDER = { "failed", "stuck", "ledger", "modified", "missing", "pending" }

M.EXIT_HELP = [[Exit codes (the first that applies, in this order):
  10  failed: a migration failed (P3009: prisma migrate deploy refuses), or was interrupted
  11  stuck: a migration has been running longer than --max-age
  12  ledger: _prisma_migrations has rows Prisma cannot read (NULL in a required column)
  13  modified: an applied migration's local migration.sql changed since it was applied
  14  missing: an applied migration has no local folder
  15  pending: more than --max-pending migrations wait for prisma migrate deploy
   0  healthy (also: nothing to do, or a migration running for less than --max-age)
   2  usage or configuration error (bad option, unknown environment, no URL, bad migrations folder)
   3  cannot reach the database (unreachable server, authentication failed, missing database)
   4  internal error]]

-- ------------------------------------------------------------ time

--- Seconds since the epoch of an ISO-8601 timestamp as migfix.db returns them
--- ("2026-11-24T22:12:09.052Z", "...+05:30", or without zone: UTC).
---@param s any
---@return number|nil
local iso_ms
function M.epoch(s)
  iso_ms = iso_ms or require("migfix.sys").iso_ms -- (status: twice per ledger row)
  local ms = iso_ms(s)
  return ms and ms / 1000
end

local UNITS = { ms = 0.001, s = 1, sec = 1, m = 60, min = 60, h = 3600, d = 86400 }

--- Parse a duration: "30m", "1h30m", "45s", "500ms", "2d", "90" (seconds) or a number.
---@param v string|number
---@return number|nil seconds
---@return string? err
function M.duration(v)
  if type(v) == "number" then return v >= 0 and v or nil, "a duration cannot be negative" end
  local s = tostring(v or ""):gsub("%s+", "")
  if s:match("^%d+%.?%d*$") then return tonumber(s) end
  local total, pos = 0, 1
  while pos <= #s do
    local num, unit, e = s:match("^(%d+%.?%d*)(%a+)()", pos)
    if not num or not UNITS[unit] then
      return nil, ("invalid duration \"%s\" (expected e.g. 30s, 30m, 1h30m, 2d, 500ms)"):format(tostring(v))
    end
    total = total + tonumber(num) * UNITS[unit]
    pos = e
  end
  if s == "" then return nil, "empty duration (expected e.g. 30s, 30m, 1h30m)" end
  return total
end

--- "37ms", "1.4s", "12s", "3m04s", "2h05m", "3d04h"
---@param sec number
---@return string
function M.fmt_duration(sec)
  if sec == nil then return "" end
  if sec < 1 then return ("%dms"):format(math.floor(sec * 1000 + 0.5)) end
  if sec < 10 then return ("%.1fs"):format(sec) end
  if sec < 60 then return ("%ds"):format(math.floor(sec + 0.5)) end
  local s = math.floor(sec + 0.5)
  if s < 3600 then return ("%dm%02ds"):format(s // 60, s % 60) end
  if s < 86400 then return ("%dh%02dm"):format(s // 3600, (s % 3600) // 60) end
  return ("%dd%02dh"):format(s // 86400, (s % 86400) // 3600)
end

-- ------------------------------------------------------------ facts

--- The server's clock and who holds Prisma's migration lock (one round trip).
---@param conn table migfix.db connection
---@return table|nil facts {now = epoch seconds, lock_held = boolean, lock_holders = {{pid, application_name, since}}}
---@return string? err
---@return table? info
function M.facts(conn)
  local rows, err, info = conn:query([[
    SELECT extract(epoch FROM clock_timestamp())::float8 AS now, a.pid, a.application_name,
           extract(epoch FROM a.backend_start)::float8 AS since
      FROM (SELECT 1) one
      LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1::bigint::oid
                          AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     ORDER BY a.backend_start]], M.MIGRATE_LOCK_KEY)
  if not rows then return nil, err, info end
  local f = { now = tonumber(rows[1].now), lock_held = false, lock_holders = {} }
  for _, r in ipairs(rows) do
    if type(r.pid) == "number" or type(r.pid) == "string" then
      if tonumber(r.pid) then
        f.lock_held = true
        f.lock_holders[#f.lock_holders + 1] = { pid = tonumber(r.pid), application_name = r.application_name, since = tonumber(r.since) }
      end
    end
  end
  return f
end

-- ------------------------------------------------------------ evaluation

local null = ledger.null

--- duration of an applied row (finished - started), nil for others
local function row_duration(r)
  if null(r.finished_at) or null(r.started_at) then return nil end
  local a, b = M.epoch(r.started_at), M.epoch(r.finished_at)
  if not a or not b then return nil end
  return math.max(0, math.floor((b - a) * 1e6 + 0.5) / 1e6)
end
M.row_duration = row_duration

--- true for a row written by `migrate resolve --applied` (or a baseline): nothing ran
local function stamped(r)
  return not null(r.finished_at) and (tonumber(r.applied_steps_count) or 0) == 0
end
M.stamped = stamped

--- Evaluate a classified state (ctx:state) against the server facts and limits.
--- Returns {
---   status = "healthy"|"running"|"empty"|"failed"|"stuck"|"ledger"|"modified"|"missing"|"pending",
---   code, headline,
---   counts = {failed, running, stuck, modified, missing, pending, ledger, applied, rolled_back, total},
---   findings = {{kind, migration?, message}},
---   running = {{name, id, started_at, age_s, stuck}},
---   migrations = { [name] = {state, duration_s, stamped, age_s} },  -- state: applied|failed|running|stuck|rolled_back|pending|missing
---   last_applied_at = epoch | nil,
---   applied = {{name, started_at, finished_at, duration_s}} newest first (rows that ran: not stamped) }
---@param st table from ctx:state
---@param facts table from M.facts (or {now = os.time()})
---@param limits? {max_pending?: integer, max_age?: number}
---@return table
function M.evaluate(st, facts, limits)
  limits = limits or {}
  local max_pending = limits.max_pending or 0
  local now = facts.now or os.time()
  local counts = { failed = 0, running = 0, stuck = 0, modified = 0, missing = 0, pending = 0, ledger = #st.problems,
                   applied = 0, rolled_back = 0, total = #st.migrations }
  local findings, running, per, applied = {}, {}, {}, {}
  local last_applied
  for _, e in ipairs(st.migrations) do
    local info = { state = e.state }
    per[e.name] = info
    local live = false
    for _, r in ipairs(e.rows) do
      if null(r.rolled_back_at) then live = true end
      if ledger.is_applied(r) then
        local d = row_duration(r)
        local fin = M.epoch(r.finished_at)
        if fin and (not last_applied or fin > last_applied) then last_applied = fin end
        if not stamped(r) then
          applied[#applied + 1] = { name = e.name, started_at = r.started_at, finished_at = r.finished_at, duration_s = d, finished = fin or 0 }
        end
        info.duration_s, info.stamped = d, stamped(r)
      elseif ledger.is_failed(r) then
        local started = M.epoch(r.started_at)
        local age = started and math.max(0, math.floor((now - started) * 1000 + 0.5) / 1000) or nil
        info.age_s = age
        if null(r.logs) and facts.lock_held then
          local is_stuck = limits.max_age ~= nil and age ~= nil and age > limits.max_age
          running[#running + 1] = { name = e.name, id = r.id, started_at = r.started_at, age_s = age, stuck = is_stuck }
          if is_stuck then
            counts.stuck = counts.stuck + 1
            info.state = "stuck"
            findings[#findings + 1] = { kind = "stuck", migration = e.name,
              message = ("migration \"%s\" has been running for %s (more than --max-age %s) while a session holds Prisma's migration lock")
                :format(e.name, M.fmt_duration(age), M.fmt_duration(limits.max_age)) }
          else
            counts.running = counts.running + 1
            info.state = "running"
          end
        else
          counts.failed = counts.failed + 1
          info.state = "failed"
          local why = null(r.logs) and "interrupted: no error recorded and no session holds Prisma's migration lock"
                                    or "failed"
          findings[#findings + 1] = { kind = "failed", migration = e.name,
            message = ("migration \"%s\" %s (started %s): prisma migrate deploy refuses with P3009"):format(
              e.name, why, tostring(r.started_at)) }
        end
      end
    end
    if e.state == "applied" then counts.applied = counts.applied + 1 end
    if e.state == "rolled_back" then counts.rolled_back = counts.rolled_back + 1 end
    if e.modified then
      counts.modified = counts.modified + 1
      findings[#findings + 1] = { kind = "modified", migration = e.name,
        message = ("migration \"%s\" was modified after it was applied (its local migration.sql has another checksum)"):format(e.name) }
    end
    if e.state == "missing" then
      counts.missing = counts.missing + 1
      findings[#findings + 1] = { kind = "missing", migration = e.name,
        message = ("migration \"%s\" is applied in the database but has no local folder"):format(e.name) }
    end
    if e["local"] and not live then
      counts.pending = counts.pending + 1
      if info.state ~= "pending" then info.pending = true end
    end
  end
  for _, pr in ipairs(st.problems) do findings[#findings + 1] = { kind = "ledger", message = pr } end
  if counts.pending > max_pending then
    local names = {}
    for _, e in ipairs(st.migrations) do
      if per[e.name].state == "pending" or per[e.name].pending then names[#names + 1] = e.name end
    end
    findings[#findings + 1] = { kind = "pending",
      message = ("%d pending migration%s (more than --max-pending %d): %s"):format(counts.pending,
        counts.pending == 1 and "" or "s", max_pending, table.concat(names, ", ")) }
  end
  table.sort(applied, function(a, b)
    if a.finished ~= b.finished then return a.finished > b.finished end
    return a.name > b.name
  end)
  for _, a in ipairs(applied) do a.finished = nil end

  -- findings in the order that decides the exit code (stable within a kind)
  local rank = {}
  for i, k in ipairs(M.ORDER) do rank[k] = i end
  for i, f in ipairs(findings) do f._i = i end
  table.sort(findings, function(a, b)
    if rank[a.kind] ~= rank[b.kind] then return rank[a.kind] < rank[b.kind] end
    return a._i < b._i
  end)
  for _, f in ipairs(findings) do f._i = nil end
  local status
  for _, k in ipairs(M.ORDER) do
    for _, f in ipairs(findings) do
      if f.kind == k then status = k break end
    end
    if status then break end
  end
  local headline
  if status then
    local first
    for _, f in ipairs(findings) do if f.kind == status then first = f break end end
    headline = first.message
    if #findings > 1 then headline = headline .. (" (and %d more finding%s)"):format(#findings - 1, #findings == 2 and "" or "s") end
  elseif counts.running > 0 then
    status = "running"
    headline = ("migration \"%s\" is running (for %s; Prisma's migration lock is held)"):format(running[1].name, M.fmt_duration(running[1].age_s or 0))
  elseif not st.exists and #st.migrations == 0 then
    status = "empty"
    headline = "no migrations, and no Prisma ledger in the database"
  else
    status = "healthy"
    headline = ("healthy: %d migration%s applied%s"):format(counts.applied, counts.applied == 1 and "" or "s",
      counts.pending > 0 and (", %d pending (at most %d allowed)"):format(counts.pending, max_pending) or "")
  end
  return { status = status, code = M.CODES[status], headline = headline, counts = counts, findings = findings,
           running = running, migrations = per, last_applied_at = last_applied, applied = applied,
           limits = { max_pending = max_pending, max_age = limits.max_age } }
end

return M
