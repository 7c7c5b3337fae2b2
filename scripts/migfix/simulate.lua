--- `migfix simulate`: rehearse the environment's policy chain and the
--- pending deploy on a scratch copy of the database, trace every statement
--- (migfix.trace), verify the result, and report whether it is safe to run.
---
--- The real database is only ever opened read-only (its state, and as the
--- source of the copy). The copy is a new database named
--- migfix_sim_<db>_<time>, created from a maintenance connection to another
--- database of the same server (or of --scratch-url), marked with
--- COMMENT ON DATABASE 'migfix simulation copy of <db>, pid <pid>, started
--- <time>, host <host>', and dropped at the end: on success, on failure, on
--- SIGINT/SIGTERM, and at the next run when the process was killed.
local ui = require "migfix.ui"
local db = require "migfix.db"
local json = require "migfix.json"
local proc = require "migfix.proc"
local sys = require "migfix.sys"
local ledger = require "migfix.ledger"
local lw = require "migfix.ledger_write"
local resolve = require "migfix.resolve"
local deploy = require "migfix.deploy"
local actions = require "migfix.actions"
local effects = require "migfix.effects"
local catalog = require "migfix.catalog"
local verify = require "migfix.verify"
local trace = require "migfix.trace"
local backup = require "migfix.backup"
local config = require "migfix.config"

local M = {}

M.PREFIX = "migfix_sim_"
M.STALE_HOURS = 6
M.MODES = { backup = true, template = true, schema = true }

-- ---------------------------------------------------------------- URLs

--- The same URL with another database name (query kept).
---@param url string
---@param name string
---@return string
function M.with_dbname(url, name)
  local head, rest = url:match("^([%a][%w+.-]*://[^/?#]*)(.*)$")
  if not head then return url end
  local query = rest:match("^[^?#]*(.*)$") or ""
  local enc = name:gsub("[^%w_.~-]", function(c) return ("%%%02X"):format(c:byte()) end)
  return head .. "/" .. enc .. query
end

--- The URL with ?key=value set (replacing an existing key).
function M.with_param(url, key, value)
  local base, q = url:match("^([^?#]*)%??([^#]*)")
  local parts = {}
  for pair in (q or ""):gmatch("[^&]+") do
    if pair:match("^([^=]*)") ~= key then parts[#parts + 1] = pair end
  end
  local enc = tostring(value):gsub("[^%w_.~-]", function(c) return ("%%%02X"):format(c:byte()) end)
  parts[#parts + 1] = key .. "=" .. enc
  return base .. "?" .. table.concat(parts, "&")
end

-- ---------------------------------------------------------------- markers

local function hostname()
  local ok, unistd = pcall(require, "posix.unistd")
  if ok and unistd.gethostname then return unistd.gethostname() or "?" end
  local f = io.open("/etc/hostname")
  if f then local h = f:read("l") f:close() return h or "?" end
  return "?"
end
M.hostname = hostname

local function getpid()
  local ok, unistd = pcall(require, "posix.unistd")
  return ok and unistd.getpid() or 0
end

function M.marker(dbname, pid, started, host)
  return ("migfix simulation copy of %s, pid %d, started %s, host %s"):format(dbname, pid, started, host)
end

--- {db, pid, started, epoch, host} from a marker comment, or nil.
function M.parse_marker(text)
  if type(text) ~= "string" then return nil end
  local dbn, pid, started, host = text:match("^migfix simulation copy of (.-), pid (%d+), started (%S+), host (%S+)$")
  if not dbn then
    dbn, pid, started = text:match("^migfix simulation copy of (.-), pid (%d+), started (%S+)")
  end
  if not dbn then return nil end
  local y, mo, d, h, mi, s = started:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  local epoch
  if y then
    -- UTC stamp -> epoch (os.time reads local time, so correct by the offset)
    local t = os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h), min = tonumber(mi), sec = tonumber(s) }
    local now = os.time()
    local off = os.difftime(os.time(os.date("*t", now)), os.time(os.date("!*t", now)))
    epoch = t + off
  end
  return { db = dbn, pid = tonumber(pid), started = started, epoch = epoch, host = host }
end

--- Is pid a live migfix process on this host?
function M.pid_alive(pid)
  if not pid or pid <= 0 then return false end
  local ok, sig = pcall(require, "posix.signal")
  if not ok then return true end
  local r, _, errno = sig.kill(pid, 0)
  if r ~= 0 and r ~= true then
    local perrno = require "posix.errno"
    if errno ~= perrno.EPERM then return false end
  end
  local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
  if f then
    local cmd = f:read("a") or ""
    f:close()
    return cmd:find("migfix", 1, true) ~= nil
  end
  return true
end

-- ---------------------------------------------------------------- the server side

local function qi(conn, s) return conn:quote_ident(s) end

--- Existing copies on the server of `admin`: {name, comment, marker}.
function M.list_copies(admin)
  local rows = assert(admin:query([[SELECT datname, shobj_description(oid, 'pg_database') AS comment
      FROM pg_database WHERE datname LIKE 'migfix\_sim\_%' ORDER BY datname]]))
  local out = {}
  for _, r in ipairs(rows) do
    local c = not db.isnull(r.comment) and r.comment or nil
    out[#out + 1] = { name = r.datname, comment = c, marker = M.parse_marker(c) }
  end
  return out
end

--- DROP DATABASE … WITH (FORCE) (PostgreSQL 13+: ends its sessions first).
function M.drop(admin, name)
  local sql = "DROP DATABASE IF EXISTS " .. qi(admin, name)
  if admin:server_version() >= 130000 then sql = sql .. " WITH (FORCE)" end
  return admin:exec(sql)
end

--- Drop copies left by killed runs: the marker's pid is not a live migfix
--- process on this host, or the copy is older than stale_hours. Copies
--- without our marker are left alone (and reported).
function M.cleanup_stale(admin, opts)
  opts = opts or {}
  local host = hostname()
  local hours = opts.stale_hours or tonumber(os.getenv("MIGFIX_SIM_STALE_HOURS")) or M.STALE_HOURS
  local dropped, kept = {}, {}
  for _, c in ipairs(M.list_copies(admin)) do
    local m = c.marker
    local why
    if m then
      local age = m.epoch and (os.time() - m.epoch) or nil
      if m.host == host and m.pid ~= getpid() and not M.pid_alive(m.pid) then
        why = ("its process (pid %d on this host) is gone"):format(m.pid)
      elseif age and age > hours * 3600 then
        why = ("older than %g hours (started %s)"):format(hours, m.started)
      end
    end
    if why then
      local ok, err = M.drop(admin, c.name)
      dropped[#dropped + 1] = { name = c.name, why = why, ok = ok and true or false, error = err }
    else
      kept[#kept + 1] = { name = c.name, why = m and "its process is alive" or "no migfix marker comment" }
    end
  end
  return dropped, kept
end

local LOCAL = { localhost = true, ["127.0.0.1"] = true, ["::1"] = true }

--- Free bytes where the server keeps its data, when this can be known
--- (a local server whose data_directory we may read); nil otherwise.
local function free_bytes(admin, parsed)
  local forced = tonumber(os.getenv("MIGFIX_SIM_FREE_BYTES") or "")
  if forced then return forced, "MIGFIX_SIM_FREE_BYTES" end
  local host = parsed.host
  if host and not LOCAL[host] and host:sub(1, 1) ~= "/" then return nil, "remote server" end
  local r = admin:query("SELECT current_setting('data_directory', true) AS d")
  local dir = r and r[1] and not db.isnull(r[1].d) and r[1].d or nil
  if not dir or dir == "" then return nil, "data_directory is not readable by this role" end
  local ok, sv = pcall(require, "posix.sys.statvfs")
  if not ok then return nil, "no statvfs" end
  local st = sv.statvfs(dir)
  if not st then return nil, "data_directory is not on this host" end
  return st.f_bavail * st.f_frsize, dir
end

-- ---------------------------------------------------------------- pg_dump / pg_restore for --from schema

local function run_tool(argv, url)
  local env = backup.connection_env(url)
  local r, err = proc.run { argv = argv, env = env, stdin = "/dev/null" }
  if not r then return nil, err end
  if r.code ~= 0 then return nil, ((r.stderr or ""):gsub("%s+$", "")) end
  return true
end

local function schema_copy(real_url, scratch_url, scratch_db, server_num, ledger_schema, tmpdir, has_ledger)
  local dump, derr = backup.find_tool("pg_dump", server_num)
  if not dump then return nil, derr end
  local restore, rerr = backup.find_tool("pg_restore", server_num)
  if not restore then return nil, rerr end
  local f1, f2 = tmpdir .. "/schema.dump", tmpdir .. "/ledger.dump"
  local ok, err = run_tool({ dump.path, "--format=custom", "--no-password", "--schema-only", "--file=" .. f1 }, real_url)
  if not ok then return nil, "pg_dump --schema-only failed: " .. tostring(err) end
  local qt = '"' .. ledger_schema:gsub('"', '""') .. '"."_prisma_migrations"'
  local files = { f1 }
  if has_ledger then
    ok, err = run_tool({ dump.path, "--format=custom", "--no-password", "--data-only", "--table=" .. qt, "--file=" .. f2 }, real_url)
    if not ok then return nil, "pg_dump of the ledger rows failed: " .. tostring(err) end
    files[2] = f2
  end
  for _, f in ipairs(files) do
    ok, err = run_tool({ restore.path, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                         "--no-password", "--dbname=" .. scratch_db, f }, scratch_url)
    if not ok then return nil, "pg_restore into the copy failed: " .. tostring(err) end
  end
  return true
end

-- ---------------------------------------------------------------- the copy

local function now_utc() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

local function copy_name(admin, dbname)
  local safe = dbname:lower():gsub("[^%w_]", "_")
  local stamp = os.date("!%Y%m%dt%H%M%S")
  safe = safe:sub(1, 63 - #M.PREFIX - #stamp - 1 - 4)
  local base = M.PREFIX .. safe .. "_" .. stamp
  local name, n = base, 1
  while true do
    local r = assert(admin:query("SELECT 1 AS x FROM pg_database WHERE datname = $1", name))
    if #r == 0 then return name end
    n = n + 1
    name = base .. "_" .. n
  end
end

local function other_sessions(admin, dbname)
  return assert(admin:query([[SELECT pid, usename, application_name, client_addr::text AS client_addr, state,
         to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since
    FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY pid]], dbname))
end

local function sessions_text(rows)
  local lines = {}
  for _, r in ipairs(rows) do
    local function v(x) return (x == nil or db.isnull(x) or x == "") and "-" or tostring(x) end
    lines[#lines + 1] = ("pid %s, user %s, application %s, client %s, %s since %s"):format(
      v(r.pid), v(r.usename), v(r.application_name), v(r.client_addr), v(r.state), v(r.since))
  end
  return table.concat(lines, "\n")
end

--- The latest verified full backup of the environment (or the named one).
local function pick_backup(ctx, id)
  local p = ctx:project()
  if id then
    local path = id
    if not path:find("/", 1, true) then path = p.backup_dir .. "/" .. id end
    local m, err = backup.load(path)
    if not m then
      ui.fail { message = err, hint = "name a backup listed by 'migfix backups'", code = ui.EXIT.USAGE }
    end
    local ok, verr = backup.verify(m)
    if not ok then ui.fail { message = "the backup does not verify: " .. verr, code = ui.EXIT.FAILURE } end
    return m
  end
  local list = backup.list(p.backup_dir)
  for _, m in ipairs(list) do
    if m.scope == "full" and backup.verify(m) then return m end
  end
  return nil
end

-- ---------------------------------------------------------------- signals

local function install_signals(state)
  local ok, psig = pcall(require, "posix.signal")
  if not ok then return function() end end
  local function handler(signo)
    psig.signal(psig.SIGINT, psig.SIG_IGN)
    psig.signal(psig.SIGTERM, psig.SIG_IGN)
    -- luaposix runs handlers under pcall: only note it; checkpoints raise
    state.interrupted = signo == psig.SIGINT and "SIGINT" or "SIGTERM"
  end
  psig.signal(psig.SIGINT, handler)
  psig.signal(psig.SIGTERM, handler)
  state.ignore_signals = function()
    psig.signal(psig.SIGINT, psig.SIG_IGN)
    psig.signal(psig.SIGTERM, psig.SIG_IGN)
  end
  return function()
    psig.signal(psig.SIGINT, psig.SIG_DFL)
    psig.signal(psig.SIGTERM, psig.SIG_DFL)
  end
end

--- Raise when a signal arrived (called between statements and steps).
local function checkpoint(state)
  if state.interrupted then
    ui.fail { message = ("simulation interrupted (%s)"):format(state.interrupted),
              detail = "the scratch copy was dropped; the real database was not written", code = ui.EXIT.FAILURE }
  end
end
M.checkpoint = checkpoint

-- ---------------------------------------------------------------- the rehearsal

local function err_text(e)
  if ui.is_error(e) then
    return e.message .. (e.detail and (" (" .. e.detail:match("^[^\n]*") .. ")") or "")
  end
  return tostring(e):match("^[^\n]*")
end

local function object_check(name, v)
  if not v then return nil end
  return { migration = name, verdict = v.verdict, summary = v.summary, counts = v.counts or json.null,
           problems = json.array(v.problems or {}) }
end

--- One pass: the chain, then the pending deploy, on the copy — the same
--- pipeline as `migfix run` and `migfix deploy` (migfix.resolve,
--- migfix.deploy), with the decision taken from E (the real database's
--- evidence in the rehearsal) and the backup rehearsed. Appends to R.chain /
--- R.units (tagged with `pass`); returns {ok, why}.
local function one_pass(S, pass, E)
  local simctx, R, tr = S.simctx, S.R, S.tracer
  local conn = S.conn
  local out = { ok = true, policies = {}, chain = {}, units = {} }
  local function stop(why) out.ok = false out.why = why return out end
  tr.on_unit = function(u)
    u.pass = pass
    R.units[#R.units + 1] = u
    out.units[#out.units + 1] = u
  end

  -- 1. the chain
  local cur
  local function on_step(event, item, i, a, RR)
    if event == "item" then
      cur = { pass = pass, migration = item.m.name, verdict = item.m.verdict, summary = item.m.summary,
              policy = item.decision and item.decision.policy.name or json.null, actions = {}, not_applied = {} }
      for _, r in ipairs(item.reasons or {}) do cur.not_applied[#cur.not_applied + 1] = { policy = r.policy, why = r.why } end
      cur.not_applied = json.array(cur.not_applied)
      R.chain[#R.chain + 1] = cur
      out.chain[#out.chain + 1] = cur
      if item.decision then out.policies[#out.policies + 1] = item.decision.policy.name end
      local entry = RR.st and RR.st.by_name[item.m.name]
      local loc = entry and entry["local"]
      tr.current = { name = item.m.name, path = loc and loc.sql_path, source = "redeploy" }
    elseif event == "done" then
      local act = { step = i, action = a.action, description = actions.describe(RR, item, a),
                    outcome = a.outcome, message = a.message }
      if a.action == "backup" then act.description = "backup: pg_dump of the real database (verified) before the first write" end
      if a.action == "refuse" then act.hint = a.hint end
      cur.actions[#cur.actions + 1] = act
      checkpoint(S.state)
    end
  end
  local ok, res = pcall(resolve.run, simctx, { mode = "simulate", conn = conn, evidence = E, runner = S.run_script, on_step = on_step })
  checkpoint(S.state)
  for _, rec in ipairs(out.chain) do rec.actions = json.array(rec.actions) end
  if S.injected and not S.inject_handled then
    S.inject_handled = true
    if cur then
      cur.outcome = "interrupted"
      local last = cur.actions[#cur.actions]
      if last then last.outcome, last.message = "failed", "the connection ended at the injected statement" end
    end
    return stop("injected failure")
  end
  if not ok then
    if cur then cur.outcome = "failed" end
    return stop(("%s: %s"):format(cur and cur.migration or "the chain", err_text(res)))
  end
  for k, item in ipairs(res.items or {}) do
    local rec = out.chain[k]
    if rec then
      if not item.decision then
        rec.outcome = item.m.in_progress and "in progress" or "no policy applies"
        return stop(("no policy of the chain applies to %s (verdict %s)"):format(item.m.name, item.m.verdict))
      end
      rec.outcome = item.outcome or "ok"
      if item.verification then R.objects[#R.objects + 1] = object_check(item.m.name, item.verification) end
      if rec.outcome ~= "ok" then
        local last = item.decision.actions[#item.decision.actions]
        for _, a in ipairs(item.decision.actions) do if a.outcome and a.outcome ~= "ok" and a.outcome ~= "skipped" then last = a break end end
        if last.action == "refuse" then
          return stop(("policy %s refuses %s: %s"):format(item.decision.policy.name, item.m.name, tostring(last.message)))
        end
        return stop(("%s: %s"):format(item.m.name, tostring(last.message)))
      end
    end
  end

  -- 2. the pending deploy, as prisma migrate deploy
  out.deployed = {}
  local dok, dres = pcall(deploy.run, simctx, {
    mode = "simulate", conn = conn, runner = S.run_script, evidence = E,
    on_migration = function(name, phase, info)
      if phase == "start" then
        local st = simctx:state(conn)
        local loc = st.by_name[name] and st.by_name[name]["local"]
        tr.current = { name = name, path = loc and loc.sql_path, source = "deploy" }
      elseif phase == "applied" then
        out.deployed[#out.deployed + 1] = name
        if info and info.verification then R.objects[#R.objects + 1] = object_check(name, info.verification) end
      elseif phase == "failed" and info and info.verification then
        R.objects[#R.objects + 1] = object_check(name, info.verification)
      end
    end,
  })
  checkpoint(S.state)
  if S.injected and not S.inject_handled then
    S.inject_handled = true
    return stop("injected failure")
  end
  if not dok then
    local e = dres
    if ui.is_error(e) and e.prisma_code == "P3009" then
      return stop("prisma migrate deploy would still refuse (P3009): " .. (e.detail or ""):gsub("\n", "; "))
    end
    return stop(err_text(e))
  end
  if dres.failed then
    local f = dres.failed
    if f.verify_failed then return stop(f.message) end
    return stop(("migration %s failed: %s%s"):format(f.name, f.sqlstate and (f.sqlstate .. " ") or "", tostring(f.error)))
  end
  return out
end

local function count_statements(S, E)
  -- statements the first pass would trace: redeploys decided by the chain, then every pending file
  local conn, simctx = S.conn, S.simctx
  local st = simctx:state(conn)
  local n, names = 0, {}
  local items = resolve.decide(simctx, E, resolve.chain(simctx))
  for _, item in ipairs(items) do
    for _, a in ipairs(item.decision and item.decision.actions or {}) do
      if a.action == "redeploy" then names[#names + 1] = item.m.name end
    end
  end
  -- what deploy will find pending once the chain is done: local folders without a live row
  for _, e in ipairs(st.migrations) do
    if e["local"] then
      local live = false
      for _, r in ipairs(e.rows) do if ledger.null(r.rolled_back_at) then live = true end end
      if not live then names[#names + 1] = e.name end
    end
  end
  local seen = {}
  for _, name in ipairs(names) do
    local e = st.by_name[name]
    local loc = e and e["local"]
    if loc and loc.text and not seen[name] then
      seen[name] = true
      local unit = effects.analyze(loc.text, loc.sql_path)
      n = n + (unit and #unit.statements or 0)
    end
  end
  return n
end

local function not_valid_constraints(conn)
  local rows = assert(conn:query([[SELECT n.nspname, c.conname, t.relname
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace LEFT JOIN pg_class t ON t.oid = c.conrelid
     WHERE NOT c.convalidated AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 3, 2]]))
  local out = {}
  for _, r in ipairs(rows) do
    out[#out + 1] = { schema = r.nspname, name = r.conname, table = not db.isnull(r.relname) and r.relname or nil }
  end
  return out
end

local function invalid_indexes(conn)
  local rows = assert(conn:query([[SELECT n.nspname, c.relname, t.relname AS tbl
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2]]))
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = { schema = r.nspname, name = r.relname, table = r.tbl } end
  return out
end

local function verification(S, before_nv)
  local simctx = S.simctx
  local conn = simctx:connect {}
  local st = simctx:state(conn)
  local v = { problems = {} }
  local failed = {}
  for _, f in ipairs(st.deploy.failed or {}) do failed[#failed + 1] = f.name end
  v.ledger = { failed = json.array(failed), pending = json.array(st.deploy.pending or {}),
               prisma_status = { exit = st.prisma_status.exit, says = st.prisma_status.says } }
  if #failed > 0 then v.problems[#v.problems + 1] = "the ledger still has failed migrations: " .. table.concat(failed, ", ") end
  if #(st.deploy.pending or {}) > 0 then
    v.problems[#v.problems + 1] = "migrations are still pending: " .. table.concat(st.deploy.pending, ", ")
  end
  if st.prisma_status.exit ~= 0 and (st.summary.total or 0) > 0 then v.problems[#v.problems + 1] = "prisma migrate status would say: " .. st.prisma_status.says end
  for _, pr in ipairs(st.problems or {}) do v.problems[#v.problems + 1] = pr end
  v.objects = json.array(S.R.objects)
  for _, o in ipairs(S.R.objects) do
    if o.verdict ~= "complete" and o.verdict ~= "unverifiable" then
      v.problems[#v.problems + 1] = ("%s is %s after the rehearsal: %s"):format(o.migration, o.verdict, o.summary or "")
    end
  end
  v.invalid_indexes = json.array(invalid_indexes(conn))
  for _, ix in ipairs(v.invalid_indexes) do
    v.problems[#v.problems + 1] = ("index %s.%s on %s is INVALID"):format(ix.schema, ix.name, ix.table)
  end
  -- NOT VALID constraints that appeared during the rehearsal, unless a statement asked for NOT VALID
  local seen = {}
  for _, c in ipairs(before_nv) do seen[c.schema .. "." .. c.name] = true end
  local texts = {}
  for _, u in ipairs(S.R.units) do
    for _, s in ipairs(u.statements) do texts[#texts + 1] = s.text or "" end
  end
  local nv = {}
  for _, c in ipairs(not_valid_constraints(conn)) do
    if not seen[c.schema .. "." .. c.name] then
      local intended = false
      for _, t in ipairs(texts) do
        if t:find(c.name, 1, true) and t:upper():find("NOT%s+VALID") then intended = true end
      end
      c.intended = intended
      nv[#nv + 1] = c
      if not intended then
        v.problems[#v.problems + 1] = ("constraint %s on %s is NOT VALID"):format(c.name, tostring(c.table))
      end
    end
  end
  v.not_valid_constraints = json.array(nv)
  -- a second run is a no-op: the chain finds nothing to resolve, deploy nothing to apply
  local items = resolve.decide(simctx, (resolve.prepare(simctx, conn, { st = st })), resolve.chain(simctx))
  v.second_run = { chain_items = #items, pending = #(st.deploy.pending or {}), noop = #items == 0 and #(st.deploy.pending or {}) == 0 }
  if not v.second_run.noop then v.problems[#v.problems + 1] = "a second run would not be a no-op" end
  v.ok = #v.problems == 0
  v.problems = json.array(v.problems)
  return v
end

local function longest_ael(units)
  local best
  for _, u in ipairs(units) do
    for _, h in ipairs(u.holds or {}) do
      if h.mode == trace.ACCESS_EXCLUSIVE and not h.created_here and (h.kind == "table" or h.kind == "materialized view") then
        if not best or h.ms > best.ms then
          best = { relation = h.relation, ms = h.ms, migration = u.migration, from_statement = h.from_statement,
                   from_line = h.from_line, pass = u.pass }
        end
      end
    end
  end
  return best
end

-- ---------------------------------------------------------------- the command

--- Parse --inject-failure: "N", "random", "random:SEED" (or --seed).
function M.parse_inject(v, seed)
  if v == nil then return nil end
  local n = tonumber(v)
  if n and math.type(n) == "integer" and n >= 1 then return { at = n } end
  local s = v:match("^random:?(%d*)$")
  if s then
    local sd = tonumber(s ~= "" and s or seed or "") or nil
    return { random = true, seed = sd }
  end
  ui.fail { message = ("invalid value for --inject-failure: \"%s\""):format(v),
            hint = "give a statement number (1, 2, ...) or random (random:SEED, or --seed SEED)", code = ui.EXIT.USAGE }
end

---@return table report, integer exit code
function M.run(ctx, opts)
  local t_start = sys.now_ms()
  local p = ctx:project()
  local from = opts.from
  if from and not M.MODES[from] then
    ui.fail { message = ("invalid value for --from: \"%s\""):format(from), hint = "use backup, template or schema", code = ui.EXIT.USAGE }
  end
  if opts.backup and from and from ~= "backup" then
    ui.fail { message = "--backup names a backup, which needs --from backup", code = ui.EXIT.USAGE }
  end
  if opts.backup then from = "backup" end
  local inject = M.parse_inject(opts["inject-failure"], opts.seed)

  -- the real database, read-only
  local real_url = ctx:url()
  local schema = ctx:schema()
  local real = ctx:connect { readonly = true }
  local st0 = ctx:state(real)
  -- the decision is the real database's: what plan shows and run would do
  local E_real = resolve.prepare(ctx, real, { pending = true, st = st0 })
  local info = assert(real:query([[SELECT current_database() AS d, pg_database_size(current_database())::bigint AS size,
      (SELECT coalesce(max(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r','m') AND n.nspname NOT IN ('pg_catalog','information_schema'))::bigint AS largest]]))[1]
  local real_db, real_size, largest = info.d, info.size, info.largest
  local real_version = real:server_version()
  local R = {
    version = 1, environment = p.env_name, schema = schema, database = real_db, started_at = now_utc(),
    chain = {}, units = {}, objects = {}, limits = {},
    unit_mode = p.unit,
  }

  -- the server that will hold the copy, through a maintenance database
  local parsed = db.parse_url(real_url)
  local admin_url, scratch_base
  if opts["scratch-url"] then
    local sp, serr = db.parse_url(opts["scratch-url"])
    if not sp then ui.fail { message = "--scratch-url: " .. serr, code = ui.EXIT.USAGE } end
    scratch_base = opts["scratch-url"]
    admin_url = sp.dbname and scratch_base or M.with_dbname(scratch_base, "postgres")
    if sp.dbname == real_db and (sp.host or "localhost") == (parsed.host or "localhost") and sp.port == parsed.port then
      ui.fail { message = "--scratch-url names the real database", hint = "give a maintenance database of the staging server, e.g. postgresql://USER@staging:5432/postgres", code = ui.EXIT.USAGE }
    end
  else
    scratch_base = real_url
    admin_url = M.with_dbname(real_url, real_db == "postgres" and "template1" or "postgres")
  end
  local admin, aerr, ainfo = db.connect(admin_url, { application_name = "migfix-simulate", connect_timeout = 10 })
  if not admin and not opts["scratch-url"] then
    admin, aerr, ainfo = db.connect(M.with_dbname(real_url, real_db == "template1" and "postgres" or "template1"),
                                    { application_name = "migfix-simulate", connect_timeout = 10 })
  end
  if not admin then
    ui.fail { message = "could not connect to the server for the scratch copy: " .. tostring(aerr),
              hint = "migfix simulate creates the copy from a maintenance database (postgres or template1) of the server; pass --scratch-url for another server",
              code = (ainfo and ainfo.kind == "url") and ui.EXIT.USAGE or ui.EXIT.CONNECT }
  end
  ctx:defer(function() pcall(admin.close, admin) end)
  local same_server = not opts["scratch-url"]
  local scratch_version = admin:server_version()
  local sparsed = db.parse_url(admin_url)

  -- preflight: nothing has started yet
  local role = assert(admin:query("SELECT current_user AS u, rolcreatedb OR rolsuper AS can FROM pg_roles WHERE rolname = current_user"))[1]
  if not role.can then
    ui.fail { message = ("role \"%s\" cannot create databases: the scratch copy needs the CREATEDB privilege"):format(role.u),
              detail = ("on the server of %s"):format(db.redact(admin_url)),
              hint = ("ALTER ROLE \"%s\" CREATEDB, or pass --scratch-url with a role that has it (a staging server)"):format(role.u),
              code = ui.EXIT.ATTENTION }
  end
  if scratch_version // 10000 ~= real_version // 10000 then
    ui.fail { message = ("server version mismatch: the database runs PostgreSQL %d, the scratch server %d"):format(real_version // 10000, scratch_version // 10000),
              detail = "a rehearsal on another major version does not say how the real deploy behaves (locks, rewrites, syntax)",
              hint = "use a --scratch-url server of the same major version", code = ui.EXIT.ATTENTION }
  end
  local manifest
  if not from then
    -- template when nobody else is connected, else the latest verified full backup
    local others = other_sessions(admin, real_db)
    local n_others = 0
    for _, r in ipairs(others) do if r.pid ~= real:info().backend_pid then n_others = n_others + 1 end end
    if same_server and n_others == 0 then
      from, R.copy_why = "template", "no other session is connected to the database"
    else
      manifest = pick_backup(ctx)
      if manifest then
        from, R.copy_why = "backup", same_server and "other sessions are connected, so the latest verified backup is restored" or "another server: the latest verified backup is restored"
      else
        ui.fail { message = same_server and ("cannot copy database \"%s\": %d other session(s) are connected and there is no verified full backup"):format(real_db, n_others)
                                      or "no verified full backup to restore on the scratch server",
                  detail = same_server and sessions_text(others) or nil,
                  hint = "take one with 'migfix backup', or use --from schema for a structural check", code = ui.EXIT.ATTENTION }
      end
    end
  end
  if from == "template" and not same_server then
    ui.fail { message = "--from template needs the copy on the same server", hint = "with --scratch-url use --from backup or --from schema", code = ui.EXIT.USAGE }
  end
  if from == "backup" and not manifest then
    manifest = pick_backup(ctx, opts.backup)
    if not manifest then
      ui.fail { message = ("no verified full backup in %s"):format(p.backup_dir),
                hint = "take one with 'migfix backup' (scope full), or use --from template or --from schema", code = ui.EXIT.ATTENTION }
    end
  end
  if manifest then
    local bv = manifest.database and tonumber(manifest.database.server_version)
    if bv and bv // 10000 ~= scratch_version // 10000 then
      ui.fail { message = ("server version mismatch: backup %s comes from PostgreSQL %d, the scratch server runs %d"):format(manifest.file, bv // 10000, scratch_version // 10000),
                hint = "restore on a server of the same major version (--scratch-url)", code = ui.EXIT.ATTENTION }
    end
  end
  local need = from == "schema" and 64 * 1024 * 1024 or (real_size + largest + 64 * 1024 * 1024)
  if from == "backup" and manifest then need = math.max(need, (manifest.size or 0) * 3) end
  local free, where = free_bytes(admin, sparsed)
  R.disk = { needed_bytes = need, free_bytes = free or json.null, checked = free ~= nil, where = where }
  if free and free < need then
    ui.fail { message = ("too little disk for the scratch copy: %s free, about %s needed"):format(backup.fmt_bytes(free), backup.fmt_bytes(need)),
              detail = ("the copy (%s) plus room to rewrite the largest table (%s)"):format(backup.fmt_bytes(real_size), backup.fmt_bytes(largest)),
              hint = "free space on the server, use --from schema (no data), or --scratch-url on a staging server", code = ui.EXIT.ATTENTION }
  end
  if not free then R.limits[#R.limits + 1] = "free disk space on the scratch server was not checked (" .. tostring(where) .. ")" end
  if from == "template" then
    -- our own session would block the copy; its backend takes a moment to exit
    local own_pid = real:info().backend_pid
    real:close()
    local others
    for _ = 1, 40 do
      others = other_sessions(admin, real_db)
      local own_left = false
      for _, r in ipairs(others) do if r.pid == own_pid then own_left = true end end
      if not own_left then break end
      sys.sleep_ms(50)
    end
    if #others > 0 then
      ui.fail { message = ("cannot copy database \"%s\" as a template: %d other session(s) are connected"):format(real_db, #others),
                detail = sessions_text(others),
                hint = "CREATE DATABASE ... TEMPLATE needs the source to be idle: use --from backup (a verified migfix backup) or --from schema, or retry when they are gone",
                code = ui.EXIT.ATTENTION }
    end
  end

  -- leftovers of killed runs
  local dropped = M.cleanup_stale(admin)
  R.stale_dropped = json.array(dropped)

  -- the copy
  local state = {}
  local restore_signals = install_signals(state)
  ctx:defer(restore_signals)
  local name = copy_name(admin, real_db)
  local scratch_url = M.with_param(M.with_dbname(scratch_base, name), "schema", schema)
  local started = now_utc()
  R.copy = { mode = from, why = R.copy_why or ("--from " .. from), name = name, server = same_server and "same server" or db.redact(admin_url),
             kept = opts.keep and true or false, schema_only = from == "schema", started_at = started }
  R.copy_why = nil
  local t_copy = sys.now_ms()
  local created = false
  ctx:defer(function()
    if state.ignore_signals then state.ignore_signals() end
    if created and not opts.keep then
      local ok = M.drop(admin, name)
      R.copy.dropped = ok and true or false
    end
  end)
  local sql = "CREATE DATABASE " .. qi(admin, name)
  if from == "template" then sql = sql .. " TEMPLATE " .. qi(admin, real_db) else sql = sql .. " TEMPLATE template0" end
  local ok, err, einfo = admin:exec(sql)
  if not ok then
    local hint
    if einfo and einfo.sqlstate == "55006" then
      hint = "another session connected meanwhile: use --from backup or --from schema"
    elseif einfo and einfo.sqlstate == "42501" then
      hint = "copying a database as a template needs its owner or a superuser: use --from backup or --from schema"
    end
    ui.fail { message = ("could not create the scratch copy \"%s\": %s"):format(name, err), hint = hint, code = ui.EXIT.FAILURE }
  end
  created = true
  assert(admin:exec(("COMMENT ON DATABASE %s IS %s"):format(qi(admin, name),
    admin:quote_literal(M.marker(real_db, getpid(), started, hostname())))))
  if from == "backup" then
    R.copy.backup = { file = manifest.file, created_at = manifest.created_at, sha256 = manifest.sha256 }
    local res, rerr, rinfo = backup.restore { file = manifest.path, url = scratch_url, source_url = real_url }
    if not res then
      ui.fail { message = "could not restore the backup into the scratch copy: " .. tostring(rerr), detail = rinfo and rinfo.detail, code = ui.EXIT.FAILURE }
    end
    R.limits[#R.limits + 1] = ("the copy is the backup of %s: changes made since then are not in it"):format(tostring(manifest.created_at))
  elseif from == "schema" then
    local tmp = require("posix.stdlib").mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/migfix-sim.XXXXXX")
    ctx:defer(function() os.execute("rm -rf '" .. tmp:gsub("'", "") .. "'") end)
    local sok, serr = schema_copy(real_url, scratch_url, name, real_version, schema, tmp, st0.exists)
    if not sok then ui.fail { message = "could not build the schema-only copy: " .. tostring(serr), code = ui.EXIT.FAILURE } end
    R.limits[#R.limits + 1] = "schema-only copy: no rows, so scans, rewrites and index builds look instant and data errors (duplicates, NOT NULL, casts) cannot show"
  end
  R.copy.ms = sys.now_ms() - t_copy
  R.copy.source_size_bytes = real_size

  -- the rehearsal, on a context whose URL is the copy
  local sim_opts = {}
  for k, v in pairs(ctx.opts) do sim_opts[k] = v end
  sim_opts.url = scratch_url
  local simctx = require("migfix.context").new(sim_opts, ctx.info, "simulate")
  ctx:defer(function() simctx:cleanup() end)
  local sp = simctx:project()
  sp.journal_file = os.tmpname()  -- the copy's journal stays off the real one
  ctx:defer(function() os.remove(sp.journal_file) end)
  sp.after = {}
  local counter = 0
  local S = { simctx = simctx, R = R, state = state }
  local tr = {
    unit = p.unit, server_version = scratch_version,
    next_number = function() counter = counter + 1 return counter end,
    check = function() checkpoint(state) end,
    on_inject = function() S.injected = true end,
  }
  S.tracer = tr
  S.run_script = trace.tracer(tr)
  S.conn = simctx:connect {}
  local nv_before = not_valid_constraints(S.conn)
  local function failed_ids(st)
    local ids = {}
    for _, f in ipairs(st.deploy.failed or {}) do ids[#ids + 1] = tostring(f.row.id) end
    table.sort(ids)
    return table.concat(ids, ",")
  end
  if failed_ids(simctx:state(S.conn)) ~= failed_ids(st0) then
    -- a backup older than the failure: its ledger is not the database's
    E_real = resolve.prepare(simctx, S.conn, { pending = true })
    R.limits[#R.limits + 1] = "the copy's ledger differs from the database's (an older backup): the rehearsal decided on the copy, so it may not be what run would do"
  end

  if inject then
    local total = count_statements(S, E_real)
    if inject.random then
      inject.seed = inject.seed or (os.time() % 100000)
      math.randomseed(inject.seed)
      inject.at = total > 0 and math.random(1, total) or 1
    end
    if total == 0 or inject.at > total then
      ui.fail { message = ("--inject-failure %d: the rehearsal runs only %d statement(s)"):format(inject.at, total),
                hint = total > 0 and ("give a number from 1 to %d"):format(total) or "nothing would be deployed", code = ui.EXIT.USAGE }
    end
    tr.inject_at = inject.at
    R.inject = { at = inject.at, seed = inject.seed or json.null, total_statements = total }
  end

  local t_rehearse = sys.now_ms()
  checkpoint(state)
  local pass1 = one_pass(S, "rehearsal", E_real)
  checkpoint(state)
  R.rehearsal = { ok = pass1.ok, why = pass1.why or json.null, ms = sys.now_ms() - t_rehearse }
  local recovered
  if inject then
    tr.inject_at = nil
    R.inject.happened = S.injected or false
    if S.injected then
      -- the copy is now as Prisma leaves it after a lost connection; run the chain again
      local c2 = simctx:connect {}
      S.conn = c2
      local st = simctx:state(c2)
      local rows = {}
      for _, e in ipairs(st.migrations) do
        if e.state == "failed" then
          for _, r in ipairs(e.rows) do
            if ledger.is_failed(r) then
              rows[#rows + 1] = { migration = e.name, finished_at = json.null,
                                  logs = ledger.null(r.logs) and json.null or r.logs }
            end
          end
        end
      end
      R.inject.state_after = { failed_rows = json.array(rows), deploy_refuses = st.deploy.refuses }
      local t_rec = sys.now_ms()
      -- the recovery decides on the copy: that state exists only there
      local pass2 = one_pass(S, "recovery", (resolve.prepare(simctx, c2, { pending = true })))
      local acted = {}
      for _, c in ipairs(pass2.chain) do
        if c.policy ~= json.null then acted[#acted + 1] = { migration = c.migration, policy = c.policy, outcome = c.outcome } end
      end
      recovered = pass2.ok
      R.inject.recovery = { recovered = pass2.ok, why = pass2.why or json.null, policies = json.array(acted), ms = sys.now_ms() - t_rec }
    end
  end

  checkpoint(state)
  R.verification = verification(S, nv_before)
  checkpoint(state)
  R.longest_access_exclusive = longest_ael(R.units) or json.null
  local deploy_ms = 0
  for _, u in ipairs(R.units) do if u.pass == "rehearsal" then deploy_ms = deploy_ms + (u.statements_ms or 0) end end
  R.predicted_deploy_ms = deploy_ms

  -- the verdict
  local reasons = {}
  local safe = true
  if inject and S.injected then
    if not recovered then
      safe = false
      reasons[#reasons + 1] = ("after the injected failure at statement %d the chain did not recover: %s"):format(inject.at, tostring(R.inject.recovery.why))
    else
      local names = {}
      for _, a in ipairs(R.inject.recovery.policies) do names[#names + 1] = a.policy .. " (" .. a.migration .. ")" end
      reasons[#reasons + 1] = ("after the injected failure at statement %d the chain recovered: %s"):format(inject.at, table.concat(names, ", "))
    end
  elseif not pass1.ok then
    safe = false
    reasons[#reasons + 1] = pass1.why
  end
  for _, u in ipairs(R.units) do
    if not u.ok and not (u.statements[#u.statements] or {}).injected and (u.pass == "recovery" or not inject) then
      local e = u.error or {}
      local already = false
      for _, r in ipairs(reasons) do if r:find(u.migration, 1, true) and e.sqlstate and r:find(e.sqlstate, 1, true) then already = true end end
      if not already then
        reasons[#reasons + 1] = ("%s failed at statement %s (line %s): %s%s"):format(u.migration, tostring(e.statement or "?"),
          tostring(e.line or "?"), e.sqlstate and (e.sqlstate .. " ") or "", tostring(e.message))
      end
    end
  end
  if not R.verification.ok then
    safe = false
    for _, pr in ipairs(R.verification.problems) do reasons[#reasons + 1] = pr end
  end
  if safe and #R.chain == 0 and #R.units == 0 then reasons[#reasons + 1] = "nothing to do: no failed and no pending migration" end
  if safe and #reasons == 0 then
    reasons[#reasons + 1] = "the chain and the deploy succeeded on the copy, the ledger is what Prisma expects and a second run is a no-op"
  end
  R.verdict = { safe = safe, reasons = json.array(reasons) }
  R.limits[#R.limits + 1] = "no concurrent load on the copy: lock waits (55P03) and queues behind other sessions are not seen"
  R.limits = json.array(R.limits)
  R.total_ms = sys.now_ms() - t_start
  R.copy.url = db.redact(scratch_url)
  R.inject = R.inject or json.null
  for _, u in ipairs(R.units) do
    u.holds = json.array(u.holds)
    for _, s in ipairs(u.statements) do
      if s.locks then s.locks = json.array(s.locks) end
      if s.rewrites then s.rewrites = json.array(s.rewrites) end
    end
    u.statements = json.array(u.statements)
  end
  R.units = json.array(R.units)
  R.chain = json.array(R.chain)
  R.objects = nil
  local n_pending = 0
  for _, e in ipairs(st0.migrations) do
    if e["local"] then
      local live = false
      for _, r in ipairs(e.rows) do if ledger.null(r.rolled_back_at) then live = true end end
      if not live then n_pending = n_pending + 1 end
    end
  end
  R.state_before = { failed = #(st0.deploy.failed or {}), pending = n_pending }
  local function round(t)
    for k, v in pairs(t) do
      if math.type(v) == "float" and k:match("ms$") then t[k] = math.floor(v * 1000 + 0.5) / 1000
      elseif type(v) == "table" and v ~= json.null then round(v) end
    end
  end
  round(R)

  -- drop the copy now (the deferred drop remains for errors and signals)
  if state.ignore_signals then state.ignore_signals() end
  simctx:cleanup()
  if not opts.keep then
    local dok, derr = M.drop(admin, name)
    R.copy.dropped = dok and true or false
    if not dok then R.copy.drop_error = derr end
    created = false
  else
    R.copy.dropped = false
  end
  restore_signals()

  -- the local journal (never the real database)
  pcall(require("migfix.journal").append_file, p.journal_file, {
    action = "simulate", outcome = safe and "ok" or "failed", environment = p.env_name, command = "simulate",
    ledger_schema = schema,
    details = { safe = safe, reasons = R.verdict.reasons, copy = { mode = from, name = name }, total_ms = math.floor(R.total_ms),
                longest_access_exclusive = R.longest_access_exclusive,
                inject = inject and { at = inject.at, recovered = recovered or false } or json.null },
  })
  return R, safe and ui.EXIT.OK or ui.EXIT.ATTENTION
end

return M
