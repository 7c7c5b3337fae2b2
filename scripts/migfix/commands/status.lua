--- migfix status: every migration as Prisma sees it, and whether deploy would refuse.
local ui = require "migfix.ui"
local ledger = require "migfix.ledger"
local json = require "migfix.json"
local health = require "migfix.health"

local C = {
  name = "status",
  summary = "show every migration's state in the ledger and whether prisma migrate deploy would refuse (P3009, P3005)",
  usage = "status [--json] [--slow DURATION]",
  description = [[DURATION is finished_at - started_at of the row that counts (a migration marked applied by
resolve --applied ran nothing: "resolved"); with --slow, migrations that took at least that long are
flagged. Exit 0 when nothing needs attention, 1 otherwise (for one code per problem: migfix check).]],
  options = {
    { long = "json", help = "print a JSON document (see README \"status --json\")" },
    { long = "slow", arg = "DURATION", help = "flag applied migrations that took at least DURATION (e.g. 30s, 5m)" },
  },
}

--- the duration of the applied row that counts, and whether it only was stamped
local function timing(e)
  local last
  for _, r in ipairs(e.rows) do if ledger.is_applied(r) then last = r end end
  if not last then return nil end
  return health.row_duration(last), health.stamped(last)
end

local STATE_COLOR = { applied = "green", failed = "red", pending = "yellow", rolled_back = "cyan", missing = "yellow" }

local NULL = json.null -- == db.NULL: a NULL column stays null
local function jrow(r)
  -- ledger.COLUMNS, written out (status --json of 10,000 rows)
  local id, checksum, finished_at, migration_name = r.id, r.checksum, r.finished_at, r.migration_name
  local logs, rolled_back_at, started_at, steps = r.logs, r.rolled_back_at, r.started_at, r.applied_steps_count
  local o = {
    id = id == nil and NULL or id, checksum = checksum == nil and NULL or checksum,
    finished_at = finished_at == nil and NULL or finished_at,
    migration_name = migration_name == nil and NULL or migration_name, logs = logs == nil and NULL or logs,
    rolled_back_at = rolled_back_at == nil and NULL or rolled_back_at, started_at = started_at == nil and NULL or started_at,
    applied_steps_count = steps == nil and NULL or steps,
  }
  -- logs longer than ledger.LOGS_EXCERPT bytes: the first LOGS_EXCERPT characters and the whole size
  local n = tonumber(r.logs_bytes)
  if n and n > ledger.LOGS_EXCERPT then o.logs_bytes, o.logs_truncated = math.tointeger(n), true end
  return o
end

function C.headline(st)
  local h, kind = C.headline_of(st)
  local n = #(st.ledger_problems or {}) + #(st.file_problems or {})
  if n > 0 then h = ("%d problem%s (see below); "):format(n, n == 1 and "" or "s") .. h end
  return h, kind
end

function C.headline_of(st)
  local s = st.summary
  if st.p3005 then
    return ("P3005: prisma migrate deploy would refuse: the database schema \"%s\" is not empty and has no _prisma_migrations table (tables: %s)"):format(
      st.schema, table.concat(st.p3005.tables, ", ")), "unmanaged"
  elseif st.deploy.refuses then
    local names = {}
    for _, f in ipairs(st.deploy.failed) do names[#names + 1] = f.name end
    return ("P3009: prisma migrate deploy would refuse: %d failed migration%s (%s)"):format(
      #names, #names == 1 and "" or "s", table.concat(names, ", ")), "failed"
  elseif #st.deploy.pending > 0 then
    return ("%d pending migration%s: prisma migrate deploy would apply %s"):format(
      #st.deploy.pending, #st.deploy.pending == 1 and "" or "s", table.concat(st.deploy.pending, ", ")), "pending"
  elseif not st.exists and s.total == 0 then
    return "no migrations: the database is not managed by Prisma Migrate and there are no local migrations", "empty"
  else
    return ("up to date: %d migration%s applied"):format(s.applied, s.applied == 1 and "" or "s"), "clean"
  end
end

function C.document(ctx, st, slow)
  local headline, kind = C.headline(st)
  local migs = {}
  for _, e in ipairs(st.migrations) do
    local rows = {}
    for _, r in ipairs(e.rows) do rows[#rows + 1] = jrow(r) end
    local d, stamped = timing(e)
    migs[#migs + 1] = {
      name = e.name, state = e.state,
      duration_s = d or json.null, resolved = stamped or false,
      slow = (slow ~= nil and d ~= nil and not stamped and d >= slow) or false,
      ["local"] = e["local"] and { checksum = e.local_checksum or json.null, has_sql = e["local"].has_sql, path = e["local"].path } or json.null,
      modified = e.modified or false, missing_locally = e.missing_locally, reapplied = e.reapplied or false,
      rows = json.array(rows),
    }
  end
  local pending = {}
  for _, n in ipairs(st.deploy.pending or {}) do pending[#pending + 1] = n end
  local failed = {}
  for _, f in ipairs(st.deploy.failed or {}) do failed[#failed + 1] = { name = f.name, id = f.row.id, started_at = f.row.started_at } end
  return {
    headline = headline, status = kind,
    environment = ctx:project().env_name, schema = st.schema, ledger_exists = st.exists,
    deploy = { refuses = st.deploy.refuses or st.p3005 ~= nil, code = st.deploy.code or (st.p3005 and "P3005") or json.null,
               failed = json.array(failed), pending = json.array(pending) },
    prisma_status = { exit = st.prisma_status.exit, says = st.prisma_status.says },
    summary = st.summary, problems = json.array(st.problems),
    ledger_problems = json.array(C.problem_docs(st)),
    file_problems = json.array(st.file_problems or {}),
    migrations = json.array(migs),
  }
end

--- P3005, as `migrate deploy` checks it: no ledger table and an ordinary
--- table in the schema (PostGIS's tables do not count). Sets st.p3005.
function C.check_p3005(conn, st)
  if st.exists then return nil end
  local ok, err = pcall(require("migfix.ledger_write").check_empty_schema, conn, st.schema)
  if not ok then
    if not (ui.is_error(err) and err.prisma_code == "P3005") then error(err, 0) end
    local list = err.message:match("%(tables: (.-)%)$") or ""
    local tables = {}
    for t in list:gmatch("[^,%s]+") do tables[#tables + 1] = t end
    st.p3005 = { tables = tables, message = err.message }
  end
  return st.p3005
end

function C.problem_docs(st)
  local out = {}
  for _, p in ipairs(st.ledger_problems or {}) do
    out[#out + 1] = { kind = p.kind, row = p.row or json.null, ctid = p.ctid or json.null, id = p.id or json.null,
                      migration_name = p.migration_name or json.null, column = p.column or json.null,
                      message = p.message, fix = p.fix or json.null }
  end
  return out
end

function C.needs_attention(st)
  local s = st.summary
  return st.p3005 ~= nil or st.deploy.refuses or #st.deploy.pending > 0 or s.modified > 0 or s.missing > 0 or #st.problems > 0
    or #(st.file_problems or {}) > 0
end

function C.print(ctx, st, slow)
  local headline, kind = C.headline(st)
  local color = ({ failed = "red", pending = "yellow", clean = "green" })[kind] or "bold"
  ui.out(ui.paint(headline, color))
  local p = ctx:project()
  ui.out(ui.paint(("environment %s · schema \"%s\" · %s"):format(p.env_name, st.schema, p.migrations_dir), "dim"))
  if #st.migrations > 0 then
    ui.out("")
    local rows = {}
    for _, e in ipairs(st.migrations) do
      local notes = {}
      if e.modified then notes[#notes + 1] = "local file changed since applied" end
      if e.missing_locally then notes[#notes + 1] = "no local folder" end
      if e.reapplied then notes[#notes + 1] = "rolled back, then applied again" end
      if e["local"] and not e["local"].has_sql then notes[#notes + 1] = "no migration.sql" end
      if e.state == "rolled_back" then notes[#notes + 1] = "deploy will re-run it (prisma status says up to date)" end
      local d, stamped = timing(e)
      local is_slow = slow ~= nil and d ~= nil and not stamped and d >= slow
      if is_slow then table.insert(notes, 1, ("slow: took %s (--slow %s)"):format(health.fmt_duration(d), health.fmt_duration(slow))) end
      if e.state == "failed" then
        local f
        for _, r in ipairs(e.rows) do if ledger.is_failed(r) then f = r end end
        notes[#notes + 1] = (ledger.null(f.started_at) and "started_at NULL" or ("started " .. tostring(f.started_at)))
          .. (ledger.null(f.logs) and ", no logs" or (tonumber(f.logs_bytes) or 0) > 4096 and (", logs " .. math.tointeger(tonumber(f.logs_bytes)) .. " bytes") or "")
      end
      rows[#rows + 1] = { name = e.name, state = e.state, checksum = ui.short(e.local_checksum), rows = #e.rows,
                          duration = stamped and "resolved" or (d and health.fmt_duration(d) or ""), slow = is_slow,
                          note = table.concat(notes, "; ") }
    end
    ui.table({
      { key = "name", title = "MIGRATION" },
      { key = "state", title = "STATE", color = function(r) return STATE_COLOR[r.state] end },
      { key = "checksum", title = "LOCAL" },
      { key = "rows", title = "ROWS" },
      { key = "duration", title = "DURATION", color = function(r) return r.slow and "yellow" or nil end },
      { key = "note", title = "NOTE" },
    }, rows, "  ")
  end
  for _, pr in ipairs(st.ledger_problems or {}) do
    ui.out(ui.paint("problem: ", "red") .. pr.message)
    if pr.fix then ui.out("  fix: " .. pr.fix) end
  end
  for _, fp in ipairs(st.file_problems or {}) do
    ui.out(ui.paint("problem: ", "red") .. fp.message .. (fp.kind == "nul"
      and ": Prisma's deploy fails on it; migfix refuses to read or run it"
      or ": Prisma reads it with U+FFFD in place of the invalid bytes (the checksum shown is of that text); migfix refuses to run it"))
  end
  if st.p3005 then
    ui.out("")
    ui.out("Prisma says:")
    ui.out("  Error: P3005")
    ui.out("  The database schema is not empty. Read more about how to baseline an existing production database: https://pris.ly/d/migrate-baseline")
    ui.out("next: migfix resolve --applied NAME for each migration already in the database (baselining), then migfix deploy")
  end
  if st.deploy.refuses then
    ui.out("")
    ui.out("Prisma says:")
    for _, l in ipairs(ledger.p3009_lines(st.deploy.failed)) do ui.out("  " .. l) end
    ui.out("next: migfix diagnose   (what of each failed migration exists in the database)")
  end
end

function C.run(ctx, opts)
  local slow
  if opts.slow then
    local err
    slow, err = health.duration(opts.slow)
    if not slow then ui.fail { message = "invalid --slow: " .. err, code = ui.EXIT.USAGE } end
  end
  local conn = ctx:connect { readonly = true }
  local st = ctx:state(conn, { report_files = true })
  C.check_p3005(conn, st)
  if opts.json then
    ui.json(C.document(ctx, st, slow))
  else
    C.print(ctx, st, slow)
  end
  return C.needs_attention(st) and ui.EXIT.ATTENTION or ui.EXIT.OK
end

return C
