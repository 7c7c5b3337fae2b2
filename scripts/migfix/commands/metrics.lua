--- migfix metrics: the ledger's health in the Prometheus text format (node_exporter's
--- textfile collector, a push gateway), plus migfix's own last run from its journal file.
local ui = require "migfix.ui"
local health = require "migfix.health"
local prom = require "migfix.prometheus"
local journal = require "migfix.journal"

local C = {
  name = "metrics",
  summary = "print Prometheus metrics: migrations by state, failed/pending counts, durations, running age, last run",
  usage = "metrics [--last N] [--max-pending N] [--max-age DURATION] [--label NAME=VALUE...] [--output FILE]",
  description = [[Text exposition format 0.0.4; every sample has the label environment (migfix.lua's environment,
or "default") plus the --label pairs. Families (all gauges):
  migfix_up                              1 when the ledger was read, 0 when the database could not be reached
  migfix_migrations{state}               migrations by state: applied, failed, running, stuck, rolled_back, pending, missing
  migfix_failed_migrations               failed migrations (P3009), running ones excluded
  migfix_pending_migrations              migrations prisma migrate deploy would apply
  migfix_modified_migrations             applied migrations whose local file changed
  migfix_deploy_blocked                  1 while prisma migrate deploy would refuse (P3009)
  migfix_migration_duration_seconds{migration}  finished_at - started_at of the last N applied (default 10;
                                         rows written by resolve --applied ran nothing and are left out)
  migfix_running_migration_age_seconds{migration}  how long each running or stuck migration has been running
  migfix_last_apply_timestamp_seconds    the newest finished_at (Unix time)
  migfix_check_status{status}            1 for the status `migfix check` reports, 0 for the others
  migfix_check_exit_code                 the exit code `migfix check` would return with the same limits
  migfix_last_run_timestamp_seconds      the newest entry of this environment in the journal file (.migfix/journal.jsonl)
  migfix_last_run_outcome{outcome}       1 for that entry's outcome (ok, failed, refused, planned, skipped)
  migfix_last_run_info{action,command}   1, naming that entry's action and command
  migfix_metrics_timestamp_seconds       when these metrics were made
With --output FILE the text is written to FILE.tmp and renamed over FILE (atomic for the textfile
collector), e.g. */5 * * * * migfix -e production metrics --output /var/lib/node_exporter/textfile/migfix.prom
When the database cannot be reached the metrics are still written (migfix_up 0) and the exit code is 3.]],
  options = {
    { long = "last", arg = "N", help = "durations of the last N applied migrations (default 10)" },
    { long = "max-pending", arg = "N", help = "as for check: pending migrations allowed before check_status is pending (default 0)" },
    { long = "max-age", arg = "DURATION", help = "as for check: a running migration older than this is stuck (e.g. 30m)" },
    { long = "label", arg = "NAME=VALUE", repeatable = true, help = "add a label to every sample (repeatable), e.g. --label cluster=eu-1" },
    { long = "output", arg = "FILE", help = "write the metrics to FILE atomically instead of standard output", values = "@files" },
  },
  exit_help = [[Exit codes:
  0  the metrics were written (whatever the ledger's health: see migfix_check_status)
  2  usage or configuration error
  3  the database cannot be reached (the metrics were written all the same, with migfix_up 0)
  4  the output file could not be written, or an internal error]],
}

local STATES = { "applied", "failed", "running", "stuck", "rolled_back", "pending", "missing" }
local CHECK_STATUSES = { "healthy", "running", "empty", "failed", "stuck", "ledger", "modified", "missing", "pending", "unreachable" }
local RESERVED = { environment = true, migration = true, state = true, status = true, outcome = true, action = true, command = true }

local function parse_int(v, what, min)
  local n = tonumber(v)
  if not n or math.type(n) ~= "integer" or n < min then
    ui.fail { message = ("invalid %s \"%s\": expected an integer >= %d"):format(what, tostring(v), min), code = ui.EXIT.USAGE }
  end
  return n
end

local function labels(opts)
  local out = {}
  for _, kv in ipairs(opts.label or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k or not prom.valid_label(k) then
      ui.fail { message = ("invalid --label \"%s\": expected NAME=VALUE with NAME of letters, digits and _"):format(kv), code = ui.EXIT.USAGE }
    end
    if RESERVED[k] then
      ui.fail { message = ("--label %s: \"%s\" is a label migfix sets itself"):format(kv, k), code = ui.EXIT.USAGE }
    end
    out[k] = v
  end
  return out
end

--- the newest journal-file entry of this environment (nil when there is none)
local function last_run(path, env_name)
  local entries = journal.read_file(path)
  if not entries then return nil end
  for i = #entries, 1, -1 do
    local e = entries[i]
    if not e._malformed and e.environment == env_name then return e end
  end
  return nil
end

--- Build the exposition. rep: health report or nil (database unreachable).
function C.exposition(env_name, const, rep, last, opts)
  local w = prom.writer(const)
  local env = { environment = env_name }
  local function with(extra)
    local t = { environment = env_name }
    for k, v in pairs(extra) do t[k] = v end
    return t
  end
  w:family("migfix_up", "gauge", "1 when migfix read the Prisma ledger, 0 when the database could not be reached")
  w:sample("migfix_up", env, rep and 1 or 0)
  if rep then
    local c = rep.counts
    w:family("migfix_migrations", "gauge", "migrations by state (running: no error recorded and Prisma's migration lock held)")
    for _, s in ipairs(STATES) do w:sample("migfix_migrations", with { state = s }, c[s] or 0) end
    w:family("migfix_failed_migrations", "gauge", "failed migrations that make prisma migrate deploy refuse (P3009), running ones excluded")
    w:sample("migfix_failed_migrations", env, c.failed)
    w:family("migfix_pending_migrations", "gauge", "migrations prisma migrate deploy would apply")
    w:sample("migfix_pending_migrations", env, c.pending)
    w:family("migfix_modified_migrations", "gauge", "applied migrations whose local migration.sql changed since")
    w:sample("migfix_modified_migrations", env, c.modified)
    w:family("migfix_deploy_blocked", "gauge", "1 while prisma migrate deploy would refuse with P3009")
    w:sample("migfix_deploy_blocked", env, (c.failed + c.running + c.stuck) > 0 and 1 or 0)
    w:family("migfix_migration_duration_seconds", "gauge", "finished_at - started_at of the last applied migrations")
    for i, a in ipairs(rep.applied) do
      if i > opts.last then break end
      if a.duration_s then w:sample("migfix_migration_duration_seconds", with { migration = a.name }, a.duration_s) end
    end
    w:family("migfix_running_migration_age_seconds", "gauge", "seconds since a running (or stuck) migration started")
    for _, r in ipairs(rep.running) do
      if r.age_s then w:sample("migfix_running_migration_age_seconds", with { migration = r.name }, r.age_s) end
    end
    w:family("migfix_last_apply_timestamp_seconds", "gauge", "the newest finished_at in the ledger, Unix time")
    if rep.last_applied_at then w:sample("migfix_last_apply_timestamp_seconds", env, rep.last_applied_at) end
  end
  local status = rep and rep.status or "unreachable"
  w:family("migfix_check_status", "gauge", "1 for the status migfix check reports, 0 for the others")
  for _, s in ipairs(CHECK_STATUSES) do w:sample("migfix_check_status", with { status = s }, s == status and 1 or 0) end
  w:family("migfix_check_exit_code", "gauge", "the exit code migfix check would return with the same limits")
  w:sample("migfix_check_exit_code", env, health.CODES[status])
  if last then
    w:family("migfix_last_run_timestamp_seconds", "gauge", "Unix time of this environment's newest entry in migfix's journal file")
    local at = health.epoch(last.at)
    if at then w:sample("migfix_last_run_timestamp_seconds", env, at) end
    w:family("migfix_last_run_outcome", "gauge", "1 for the outcome of this environment's newest journal entry")
    for _, o in ipairs({ "ok", "failed", "refused", "planned", "skipped" }) do
      w:sample("migfix_last_run_outcome", with { outcome = o }, last.outcome == o and 1 or 0)
    end
    w:family("migfix_last_run_info", "gauge", "the action and command of this environment's newest journal entry")
    w:sample("migfix_last_run_info", with { action = tostring(last.action), command = tostring(last.command or "") }, 1)
  end
  w:family("migfix_metrics_timestamp_seconds", "gauge", "when migfix made these metrics, Unix time")
  w:sample("migfix_metrics_timestamp_seconds", env, opts.now)
  return w:text()
end

local function write_atomic(path, text)
  local tmp = ("%s.tmp.%d"):format(path, require("posix.unistd").getpid())
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then os.remove(tmp) return nil, werr or cerr end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp) return nil, rerr end
  return true
end

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  local lim = {}
  if opts["max-pending"] then lim.max_pending = parse_int(opts["max-pending"], "--max-pending", 0) end
  if opts["max-age"] then
    local s, err = health.duration(opts["max-age"])
    if not s then ui.fail { message = "invalid --max-age: " .. err, code = ui.EXIT.USAGE } end
    lim.max_age = s
  end
  local o = { last = opts.last and parse_int(opts.last, "--last", 0) or 10 }
  local const = labels(opts)
  local p = ctx:project()
  ctx:migrations()
  local rep, conn_err
  local ok, conn = pcall(ctx.connect, ctx, { readonly = true })
  if ok then
    local st = ctx:state(conn)
    local facts, ferr = health.facts(conn)
    if not facts then ui.fail { message = "could not read the server clock and locks: " .. tostring(ferr), code = ui.EXIT.FAILURE } end
    rep = health.evaluate(st, facts, lim)
    o.now = facts.now
  elseif ui.is_error(conn) and conn.code == ui.EXIT.CONNECT then
    conn_err = conn
  else
    error(conn, 0)
  end
  if not o.now then
    local t = require("posix.sys.time").gettimeofday()
    o.now = t.tv_sec + t.tv_usec / 1e6
  end
  local text = C.exposition(p.env_name, const, rep, last_run(p.journal_file, p.env_name), o)
  if opts.output then
    local wok, werr = write_atomic(opts.output, text)
    if not wok then
      ui.fail { message = ("could not write metrics file \"%s\": %s"):format(opts.output, tostring(werr)), code = ui.EXIT.FAILURE }
    end
  else
    io.stdout:write(text)
  end
  if conn_err then
    ui.print_error(conn_err)
    return ui.EXIT.CONNECT
  end
  return ui.EXIT.OK
end

return C
