--- migfix.fleet — one command over many targets (a database each, or a
--- schema each of one database), the way a SaaS fleet of tenants needs it.
---
---   fleet.targets(opts)            -> targets {{name, url, database, schema}}, source
---   fleet.shard(targets, "K/N")    -> the K-th of N deterministic parts (stable hash of the name)
---   fleet.run(spec)                -> the results, streamed to spec.on_result, and a summary
---
--- Each target is run by the command's own code (its usual JSON document
--- is the target's result) in a pool of worker processes forked from this
--- one (luaposix fork): the configuration, the migrations folder and the
--- analysed migration files are read once and shared; every worker opens
--- its own connections; memory stays flat because a worker keeps nothing of
--- a finished target. A target whose command runs longer than the timeout is
--- killed (SIGKILL) and counted failed. Writing commands never run two
--- targets of one database at once: Prisma's advisory lock is taken per
--- target exactly as Prisma takes it — pg_advisory_lock(72707369) is one lock
--- for the whole database, so schemas of one database take turns.
-- @module migfix.fleet
local ui = require "migfix.ui"
local json = require "migfix.json"
local db = require "migfix.db"
local sys = require "migfix.sys"

local unistd = require "posix.unistd"
local ppoll = require "posix.poll"
local pwait = require "posix.sys.wait"
local psignal = require "posix.signal"
local fcntl = require "posix.fcntl"

local M = {}

--- Commands that take targets, and whether they write.
M.COMMANDS = { status = false, check = false, diagnose = false, plan = false, simulate = false, lint = false,
               run = true, resolve = true, deploy = true, backup = false, undo = true }

M.OPTIONS = {
  { long = "targets", arg = "FILE", help = "run on every target of FILE: one per line, NAME URL or URL; # comments; - for stdin" },
  { long = "targets-query", arg = "SQL", help = "run on every target a query on the --url database returns (name, url)" },
  { long = "schemas", arg = "PATTERN", help = "run on every schema of the --url database matching PATTERN (* and ?, or SQL LIKE)" },
  { long = "concurrency", arg = "N", help = "targets at a time (default: 2 per core)" },
  { long = "shard", arg = "K/N", help = "only the K-th of N parts of the targets (stable hash of the name; K = 1..N)" },
  { long = "canary", arg = "K", help = "run K targets first and stop if any of them fails" },
  { long = "on-error", arg = "MODE", help = "stop (default for writing commands) or continue after a failed target" },
  { long = "max-failures", arg = "N", help = "stop after N failed targets" },
  { long = "target-timeout", arg = "DURATION", help = "kill a target's command after this long (e.g. 5min; default none)" },
}

local function fail(msg, hint) ui.fail { message = msg, hint = hint, code = ui.EXIT.USAGE } end

--- Whether the options ask for a fleet run.
function M.wanted(opts)
  return opts.targets ~= nil or opts["targets-query"] ~= nil or opts.schemas ~= nil
end

-- ------------------------------------------------------------ targets

local function url_name(url)
  local p = db.parse_url(url)
  if not p then return db.redact(url) end
  local n = p.dbname or "?"
  if p.schema then n = n .. "/" .. p.schema end
  return n
end

local function with_schema(url, schema)
  local base, q = url:match("^([^?#]*)%??([^#]*)")
  local parts = {}
  for pair in (q or ""):gmatch("[^&]+") do
    if pair:match("^([^=]*)") ~= "schema" then parts[#parts + 1] = pair end
  end
  parts[#parts + 1] = "schema=" .. schema:gsub("[^%w_.~-]", function(c) return ("%%%02X"):format(c:byte()) end)
  return base .. "?" .. table.concat(parts, "&")
end
M.with_schema = with_schema

local function database_of(url)
  local p = db.parse_url(url)
  if not p then return url end
  return ("%s:%s/%s"):format(p.host or "", tostring(p.port or ""), p.dbname or "")
end

--- Parse the text of a targets file: NAME URL or URL per line.
---@return table[] targets
function M.parse_targets(text, source)
  local out, names = {}, {}
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    local l = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
    if l ~= "" then
      local a, b = l:match("^(%S+)%s+(%S+)$")
      local name, url
      if a then name, url = a, b
      elseif not l:find("%s") then url = l
      else fail(("%s:%d: expected NAME URL or URL, got \"%s\""):format(source, n, db.redact(l))) end
      local ok, err = db.parse_url(url)
      if not ok then fail(("%s:%d: %s"):format(source, n, err), ui.URL_HINT) end
      name = name or url_name(url)
      if names[name] then fail(("%s:%d: target \"%s\" appears twice (first at line %d)"):format(source, n, name, names[name])) end
      names[name] = n
      out[#out + 1] = { name = name, url = url, database = database_of(url), schema = ok.schema }
    end
  end
  return out
end

local function glob_to_like(p)
  if p:find("[%*%?]") then
    p = p:gsub("[%%_\\]", "\\%0"):gsub("%*", "%%"):gsub("%?", "_")
  end
  return p
end

---The targets the options name, in order.
---@param ctx table the command context (for --url, the control database)
---@param opts table the command line
---@return table[] targets, string source
function M.targets(ctx, opts)
  local n = (opts.targets and 1 or 0) + (opts["targets-query"] and 1 or 0) + (opts.schemas and 1 or 0)
  if n > 1 then fail("give one of --targets, --targets-query or --schemas") end
  if opts.targets then
    local text, src
    if opts.targets == "-" then
      text, src = io.stdin:read("a") or "", "stdin"
    else
      local f, err = io.open(opts.targets, "rb")
      if not f then fail(("could not read targets file \"%s\": %s"):format(opts.targets, tostring(err):gsub("^.-: ", ""))) end
      text, src = f:read("a"), opts.targets
      f:close()
    end
    return M.parse_targets(text, src), src
  end
  local conn = ctx:connect { readonly = true }
  local out = {}
  local src
  if opts["targets-query"] then
    src = "--targets-query"
    local rows, err = conn:query(opts["targets-query"])
    if not rows then fail("--targets-query failed: " .. tostring(err), "the query runs on the --url database and returns name, url") end
    local seen = {}
    for i, r in ipairs(rows) do
      local name, url = r.name, r.url
      if url == nil then
        -- any two columns: the first the name, the second the URL
        local keys = {}
        for k in pairs(r) do keys[#keys + 1] = k end
        table.sort(keys)
        name, url = r[keys[1]], r[keys[2]]
      end
      if type(url) ~= "string" or not db.parse_url(url) then
        fail(("--targets-query row %d: \"%s\" is not a database URL"):format(i, db.redact(tostring(url))), ui.URL_HINT)
      end
      name = type(name) == "string" and name or url_name(url)
      if seen[name] then fail(("--targets-query: target \"%s\" appears twice"):format(name)) end
      seen[name] = true
      out[#out + 1] = { name = name, url = url, database = database_of(url), schema = db.parse_url(url).schema }
    end
  else
    src = "--schemas " .. opts.schemas
    local rows, err = conn:query([[SELECT nspname FROM pg_catalog.pg_namespace
       WHERE nspname LIKE $1 AND nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' ORDER BY nspname]],
      glob_to_like(opts.schemas))
    if not rows then fail("could not list the schemas: " .. tostring(err)) end
    local base = ctx:url()
    for _, r in ipairs(rows) do
      local url = with_schema(base, r.nspname)
      out[#out + 1] = { name = r.nspname, url = url, database = database_of(base), schema = r.nspname }
    end
  end
  conn:close()
  return out, src
end

-- ------------------------------------------------------------ sharding

--- FNV-1a (32 bits) of a string: stable across machines and runs.
function M.hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = (h * 16777619) & 0xffffffff
  end
  return h
end

---The K-th of N parts (K = 1..N): the targets whose stable hash mod N is K-1.
function M.shard(targets, spec)
  local k, n = tostring(spec):match("^(%d+)/(%d+)$")
  k, n = tonumber(k), tonumber(n)
  if not k or n < 1 or k < 1 or k > n then
    fail(("invalid --shard \"%s\": expected K/N with 1 <= K <= N"):format(tostring(spec)),
         "in a Kubernetes Indexed Job: --shard $((JOB_COMPLETION_INDEX + 1))/$N")
  end
  local out = {}
  for _, t in ipairs(targets) do
    if M.hash(t.name) % n == k - 1 then out[#out + 1] = t end
  end
  return out, k, n
end

-- ------------------------------------------------------------ one target

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- The last JSON document of a command's stdout.
local function json_of(text)
  local doc = json.decode(text)
  if doc ~= nil then return doc end
  -- a progress line or two before the document
  local start = text:find("\n[{%[]")
  while start do
    doc = json.decode(text:sub(start + 1))
    if doc ~= nil then return doc end
    start = text:find("\n[{%[]", start + 1)
  end
  return nil
end

--- Run the command for one target in this process, its output captured.
local function run_target(spec, t, tmp)
  local cli_ctx = require "migfix.context"
  local opts = {}
  for k, v in pairs(spec.opts) do opts[k] = v end
  for _, o in ipairs(M.OPTIONS) do opts[o.long] = nil end
  opts.url = t.url
  opts.json = true
  local out_path, err_path = tmp .. "/out", tmp .. "/err"
  io.stdout:flush()
  io.stderr:flush()
  local saved_out, saved_err = unistd.dup(1), unistd.dup(2)
  local ofd = fcntl.open(out_path, fcntl.O_WRONLY | fcntl.O_CREAT | fcntl.O_TRUNC, tonumber("600", 8))
  local efd = fcntl.open(err_path, fcntl.O_WRONLY | fcntl.O_CREAT | fcntl.O_TRUNC, tonumber("600", 8))
  unistd.dup2(ofd, 1)
  unistd.dup2(efd, 2)
  unistd.close(ofd)
  unistd.close(efd)
  local t0 = sys.now_ms()
  -- the command's JSON document, encoded here (compact) rather than printed,
  -- read back and decoded; the last one if it gives several
  local doc_text
  ui.doc_sink = function(d) doc_text = json.encode(d) end
  local ctx = cli_ctx.new(opts, spec.info, spec.cmd.name)
  local ok, rc = pcall(spec.cmd.run, ctx, opts, spec.args)
  pcall(ctx.cleanup, ctx)
  ui.doc_sink = nil
  local code
  if ok then
    code = math.type(rc) == "integer" and rc or 0
  elseif ui.is_error(rc) then
    ui.print_error(rc)
    code = rc.code or ui.EXIT.FAILURE
  else
    ui.print_error { message = "internal error: " .. tostring(rc), hint = "this is a bug in migfix; this target's run stopped" }
    code = ui.EXIT.FAILURE
  end
  io.stdout:flush()
  io.stderr:flush()
  unistd.dup2(saved_out, 1)
  unistd.dup2(saved_err, 2)
  unistd.close(saved_out)
  unistd.close(saved_err)
  local out, err = read_all(out_path), read_all(err_path)
  local doc = not doc_text and json_of(out) or nil
  local first_err = err:match("migfix: error: ([^\n]*)")
  local res = { target = t.name, exit = code, result_text = doc_text,
                error = first_err and ui.redact(first_err) or json.null, ms = math.floor(sys.now_ms() - t0 + 0.5) }
  if not doc_text then res.result = doc == nil and json.null or doc end
  return res
end

--- One target's answer line (JSON): `result_text`, a document already
--- encoded, goes in as it is.
local function answer_line(res)
  local text = res.result_text
  res.result_text = nil
  if not text then return json.encode(res) end
  res.result = nil
  local head = json.encode(res)
  return head:sub(1, -2) .. ',"result":' .. text .. "}"
end
M.answer_line = answer_line
M.run_target = run_target

-- ------------------------------------------------------------ the pool

local function write_all(fd, s)
  local off = 1
  while off <= #s do
    local n = unistd.write(fd, s:sub(off))
    if not n then return false end
    off = off + n
  end
  return true
end

--- A worker: reads target indexes ("N\n") on in_fd, answers one JSON line each on out_fd.
local function worker(spec, in_fd, out_fd)
  local tmp = require("posix.stdlib").mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/migfix-fleet.XXXXXX")
  local buf = ""
  while true do
    local nl = buf:find("\n", 1, true)
    while not nl do
      local chunk = unistd.read(in_fd, 4096)
      if not chunk or chunk == "" then buf = nil break end
      buf = buf .. chunk
      nl = buf:find("\n", 1, true)
    end
    if not buf then break end
    local line = buf:sub(1, nl - 1)
    buf = buf:sub(nl + 1)
    local i = tonumber(line)
    if not i then break end
    local ok, res = pcall(run_target, spec, spec.targets[i], tmp)
    if not ok then
      res = { target = spec.targets[i].name, exit = ui.EXIT.FAILURE, result = json.null, error = tostring(res), ms = 0 }
    end
    res.index = i
    if not write_all(out_fd, answer_line(res) .. "\n") then break end
    collectgarbage()
  end
  os.remove(tmp .. "/out")
  os.remove(tmp .. "/err")
  os.remove(tmp)
end

local function spawn(spec, others)
  local to_r, to_w = unistd.pipe()
  local from_r, from_w = unistd.pipe()
  io.stdout:flush()
  io.stderr:flush()
  local pid = unistd.fork()
  if pid == 0 then
    unistd.close(to_w)
    unistd.close(from_r)
    -- the other workers' pipes: a copy of their write end here would keep
    -- them from ever seeing the end of their input
    for _, w in ipairs(others or {}) do
      if w.inp then unistd.close(w.inp) end
      if w.out then unistd.close(w.out) end
    end
    local ok = pcall(worker, spec, to_r, from_w)
    unistd._exit(ok and 0 or 1)
  end
  if not pid then ui.fail { message = "could not start a fleet worker (fork failed)", code = ui.EXIT.FAILURE } end
  unistd.close(to_r)
  unistd.close(from_w)
  return { pid = pid, inp = to_w, out = from_r, buf = "", busy = nil, since = nil }
end

local function stop_worker(w, hard)
  if w.inp then unistd.close(w.inp); w.inp = nil end
  if hard then psignal.kill(w.pid, psignal.SIGKILL) end
  pwait.wait(w.pid)
  if w.out then unistd.close(w.out); w.out = nil end
end

--- Which target's exit code is the fleet's: the most severe. For `check`,
--- whose findings have codes 10-15 (10 the most severe), a target that
--- could not be checked (2, 3, 4) still ranks above any finding.
local CHECK_SEVERITY = { [0] = 0, [15] = 1, [14] = 2, [13] = 3, [12] = 4, [11] = 5, [10] = 6, [2] = 7, [3] = 8, [4] = 9 }
local function severity(code, cmd)
  if cmd == "check" then return CHECK_SEVERITY[code] or 9 end
  return ({ [0] = 0, [1] = 1, [2] = 3, [3] = 2, [4] = 4 })[code] or 4
end
M.severity = severity

---Run a command over targets.
---@param spec {cmd: table, opts: table, args: table, info: table, targets: table[], concurrency: integer,
---             writes: boolean, on_error: "stop"|"continue", canary: integer?, max_failures: integer?,
---             timeout_ms: number?, on_result: fun(res), on_progress: fun(done, total, running)?}
---@return table summary {targets, ok, refused, failed, skipped, exit, seconds, results_by_exit}
function M.run(spec)
  local targets = spec.targets
  local total = #targets
  local t0 = sys.now_ms()
  local workers = {}
  local next_i, done, failures = 1, 0, 0
  local stopping, stop_reason = false, nil
  local busy_db = {}
  local canary = spec.canary and math.min(spec.canary, total) or 0
  local summary = { targets = total, ok = 0, refused = 0, failed = 0, skipped = 0, exit = 0 }
  local worst = 0

  local function record(res)
    done = done + 1
    local finding = res.exit == 1 or (spec.cmd.name == "check" and res.exit >= 10)
    if res.exit == 0 then summary.ok = summary.ok + 1
    elseif finding then summary.refused = summary.refused + 1
    else summary.failed = summary.failed + 1; failures = failures + 1 end
    if severity(res.exit, spec.cmd.name) > worst then worst = severity(res.exit, spec.cmd.name); summary.exit = res.exit end
    spec.on_result(res)
    if res.exit >= 2 and not finding then
      if spec.on_error == "stop" then stopping, stop_reason = true, ("target %s failed (exit %d)"):format(res.target, res.exit) end
      if spec.max_failures and failures >= spec.max_failures then
        stopping, stop_reason = true, ("%d failed target(s): --max-failures %d reached"):format(failures, spec.max_failures)
      end
      if canary > 0 and res.index <= canary then stopping, stop_reason = true, ("canary target %s failed (exit %d)"):format(res.target, res.exit) end
    end
  end

  local function assignable(i)
    if not spec.writes then return true end
    return not busy_db[targets[i].database]
  end

  local function pick()
    -- the canary targets first, all of them done before the rest starts
    local limit = total
    if canary > 0 and done < canary then limit = canary end
    for i = next_i, limit do
      if targets[i] and not targets[i].assigned and assignable(i) then return i end
    end
    return nil
  end

  local n_workers = math.max(1, math.min(spec.concurrency or 4, total))
  for _ = 1, n_workers do workers[#workers + 1] = spawn(spec, workers) end

  local function assign(w)
    if stopping then return end
    local i = pick()
    if not i then return end
    targets[i].assigned = true
    while targets[next_i] and targets[next_i].assigned do next_i = next_i + 1 end
    w.busy, w.since = i, sys.now_ms()
    busy_db[targets[i].database] = true
    write_all(w.inp, i .. "\n")
  end

  for _, w in ipairs(workers) do assign(w) end
  while true do
    local fds = {}
    local any = false
    for _, w in ipairs(workers) do
      if w.busy then fds[w.out] = { events = { IN = true } }; any = true end
    end
    if not any then
      -- nothing running: either all done, stopped, or waiting on a busy database
      if stopping or done >= total then break end
      local progressed = false
      for _, w in ipairs(workers) do
        if not w.busy then assign(w); if w.busy then progressed = true end end
      end
      if not progressed then break end
    else
      ppoll.poll(fds, 200)
      for _, w in ipairs(workers) do
        local f = w.busy and fds[w.out]
        if f and f.revents and (f.revents.IN or f.revents.HUP) then
          local chunk = unistd.read(w.out, 65536)
          if chunk and chunk ~= "" then w.buf = w.buf .. chunk end
          local nl = w.buf:find("\n", 1, true)
          if nl then
            local line = w.buf:sub(1, nl - 1)
            w.buf = w.buf:sub(nl + 1)
            local res = json.decode(line) or { target = targets[w.busy].name, exit = 4, result = json.null, error = "unreadable worker answer" }
            res.index = w.busy
            busy_db[targets[w.busy].database] = nil
            w.busy = nil
            record(res)
            assign(w)
          elseif not chunk or chunk == "" then
            -- the worker died: its target failed; start a new one
            local i = w.busy
            busy_db[targets[i].database] = nil
            w.busy = nil
            stop_worker(w, true)
            record { target = targets[i].name, index = i, exit = 4, result = json.null, error = "the worker process died", ms = 0 }
            local nw = spawn(spec, workers)
            for k, x in ipairs(workers) do if x == w then workers[k] = nw end end
            assign(nw)
          end
        end
      end
      -- per-target timeout
      if spec.timeout_ms then
        for k, w in ipairs(workers) do
          if w.busy and sys.now_ms() - w.since > spec.timeout_ms then
            local i = w.busy
            busy_db[targets[i].database] = nil
            w.busy = nil
            stop_worker(w, true)
            record { target = targets[i].name, index = i, exit = 4, result = json.null,
                     error = ("timed out after %s"):format(spec.timeout_text or (spec.timeout_ms .. " ms")), ms = math.floor(spec.timeout_ms) }
            workers[k] = spawn(spec, workers)
            assign(workers[k])
          end
        end
      end
    end
    if spec.on_progress then spec.on_progress(done, total) end
  end
  for _, w in ipairs(workers) do stop_worker(w, false) end
  for _, t in ipairs(targets) do
    if not t.assigned then summary.skipped = summary.skipped + 1 end
  end
  summary.seconds = math.floor(sys.now_ms() - t0 + 0.5) / 1000
  summary.stopped = stop_reason
  return summary
end

return M
