--- migfix check: one exit code per kind of trouble, for cron, CI and Kubernetes probes.
local ui = require "migfix.ui"
local json = require "migfix.json"
local health = require "migfix.health"

local C = {
  name = "check",
  summary = "exit 0 when the ledger is healthy, else a distinct code per problem (for cron, CI and probes)",
  usage = "check [--max-pending N] [--max-age DURATION] [--json]",
  description = [[Reads the ledger on a read-only connection and judges it as the runbook watches it:
failed migrations (P3009), migrations started and not finished, applied migrations whose file changed
or whose folder is gone, rows Prisma cannot read, and pending migrations. A migration without a
recorded error is "running" only while a session holds Prisma's migration lock (pg_advisory_lock
72707369); longer than --max-age it is "stuck"; with nobody holding the lock it was interrupted and
counts as failed. Every finding is printed (one a line, or in --json); the exit code names the first
in the order below. Over a fleet (--targets, --targets-query, --schemas) each target is checked
and the exit code is the most severe: a target that could not be checked (2, 3, 4), else the
first finding in the order below.
JSON: {status, code, headline, environment, schema, limits: {max_pending, max_age_s},
counts: {failed, running, stuck, ledger, modified, missing, pending, applied, rolled_back, total},
findings: [{kind, migration, message}], running: [{name, id, started_at, age_s, stuck}], error}.]],
  options = {
    { long = "max-pending", arg = "N", help = "allow up to N pending migrations (default 0)" },
    { long = "max-age", arg = "DURATION", help = "a migration running longer than this is stuck (e.g. 30m, 1h; default: no limit)" },
    { long = "json", help = "print a JSON document (also when the database cannot be reached)" },
  },
  exit_help = health.EXIT_HELP,
}

local function limits(opts)
  local l = {}
  if opts["max-pending"] then
    local n = tonumber(opts["max-pending"])
    if not n or math.type(n) ~= "integer" or n < 0 then
      ui.fail { message = ("invalid --max-pending \"%s\": expected a non-negative integer"):format(opts["max-pending"]),
                code = ui.EXIT.USAGE }
    end
    l.max_pending = n
  end
  if opts["max-age"] then
    local s, err = health.duration(opts["max-age"])
    if not s then ui.fail { message = "invalid --max-age: " .. err, code = ui.EXIT.USAGE } end
    l.max_age = s
  end
  return l
end

local function jv(v) if v == nil then return json.null end return v end

function C.document(ctx, rep, st)
  local p = ctx:project()
  local running = {}
  for _, r in ipairs(rep.running) do
    running[#running + 1] = { name = r.name, id = r.id, started_at = r.started_at, age_s = jv(r.age_s), stuck = r.stuck }
  end
  local findings = {}
  for _, f in ipairs(rep.findings) do findings[#findings + 1] = { kind = f.kind, migration = jv(f.migration), message = f.message } end
  return {
    status = rep.status, code = rep.code, headline = rep.headline,
    environment = p.env_name, schema = st and st.schema or jv(nil),
    limits = { max_pending = rep.limits.max_pending, max_age_s = jv(rep.limits.max_age) },
    counts = rep.counts, findings = json.array(findings), running = json.array(running),
    error = jv(rep.error),
  }
end

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  local lim = limits(opts)
  ctx:project()
  ctx:migrations() -- a bad migrations folder is a usage error (2), before any connection
  local ok, conn = pcall(ctx.connect, ctx, { readonly = true })
  if not ok then
    local e = conn
    if ui.is_error(e) and e.code == ui.EXIT.CONNECT then
      if opts.json then
        local rep = { status = "unreachable", code = health.CODES.unreachable, headline = "cannot reach the database",
                      counts = {}, findings = {}, running = {},
                      limits = { max_pending = lim.max_pending or 0, max_age = lim.max_age }, error = ui.redact(e.message) }
        ui.print_error(e)
        ui.json(C.document(ctx, rep, nil))
        return health.CODES.unreachable
      end
    end
    error(e, 0)
  end
  local st = ctx:state(conn)
  local facts, ferr = health.facts(conn)
  if not facts then
    ui.fail { message = "could not read the server clock and locks: " .. tostring(ferr), code = ui.EXIT.FAILURE }
  end
  local rep = health.evaluate(st, facts, lim)
  if opts.json then
    ui.json(C.document(ctx, rep, st))
    return rep.code
  end
  local color = rep.code == 0 and "green" or "red"
  ui.out(ui.paint(rep.headline, color))
  local p = ctx:project()
  ui.out(ui.paint(("environment %s · schema \"%s\" · %d migration%s · exit %d (%s)"):format(p.env_name, st.schema,
    rep.counts.total, rep.counts.total == 1 and "" or "s", rep.code, rep.status), "dim"))
  if #rep.findings > 1 then
    for _, f in ipairs(rep.findings) do ui.out(("  %-8s %s"):format(f.kind, f.message)) end
  end
  for _, r in ipairs(rep.running) do
    if not r.stuck then
      ui.out(("  running  \"%s\" for %s"):format(r.name, health.fmt_duration(r.age_s or 0)))
    end
  end
  return rep.code
end

return C
