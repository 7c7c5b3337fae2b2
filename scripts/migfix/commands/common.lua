--- What several commands share: the confirmation rule and the printing of a
--- resolution (plan, run). Commands print; the library (migfix.resolve,
--- migfix.actions) decides and executes.
local ui = require "migfix.ui"
local json = require "migfix.json"
local actions = require "migfix.actions"
local sys = require "migfix.sys"

local C = {}

--- The one confirmation rule for every writing command: none, --yes
--- (confirm = "flag"), or a typed "yes" on a terminal ("interactive").
--- Raises (exit 1) when the environment's confirmation is not given.
function C.confirm(ctx, opts, question)
  local p = ctx:project()
  if opts.yes or p.confirm == "none" then return true end
  if p.confirm == "flag" or not sys.isatty(0) then
    ui.fail { message = ("environment \"%s\" requires confirmation before writing"):format(p.env_name),
              hint = "review `migfix plan --env " .. p.env_name .. "`, then run again with --yes", code = ui.EXIT.ATTENTION }
  end
  io.stdout:write(question or ("Write to the %s database? Type yes to continue: "):format(p.env_name))
  io.stdout:flush()
  local answer = io.read("l")
  if answer ~= "yes" then
    ui.fail { message = "not confirmed: nothing was written", code = ui.EXIT.ATTENTION }
  end
  return true
end

--- Whether the environment wants a typed confirmation before this run.
function C.interactive(ctx, opts)
  return not opts.yes and ctx:project().confirm == "interactive" and sys.isatty(0)
end

function C.objects_lines(objs)
  local lines = {}
  for _, o in ipairs(objs or {}) do
    local n = o.name or "?"
    if o.table and o.kind ~= "table" then n = o.table .. "." .. n end
    local diffs = {}
    for _, df in ipairs(o.diffs or {}) do
      diffs[#diffs + 1] = ("%s %s, expected %s"):format(df.field, tostring(type(df.found) == "table" and table.concat(df.found, ",") or df.found),
        tostring(type(df.expected) == "table" and table.concat(df.expected, ",") or df.expected))
    end
    lines[#lines + 1] = ("%s %s: %s%s"):format(o.kind, n, (o.state or ""):gsub("_", " "), #diffs > 0 and (" (" .. table.concat(diffs, "; ") .. ")") or "")
  end
  return lines
end

--- The JSON document of a plan or run (README "plan --json / run --json").
function C.document(result)
  local R = result.R
  local list = {}
  for _, item in ipairs(result.items or {}) do
    local acts = {}
    for i, a in ipairs(item.decision and item.decision.actions or {}) do
      local d = { step = i, action = a.action, description = actions.describe(R, item, a) }
      local sql = a.sql or {}
      if #sql > 0 then d.sql = json.array(sql) end
      if a.reason then d.reason = a.reason end
      if a.hint then d.hint = a.hint end
      if a.outcome then d.outcome = a.outcome end
      if a.message then d.message = a.message end
      acts[#acts + 1] = d
    end
    local reasons = {}
    for _, r in ipairs(item.reasons or {}) do reasons[#reasons + 1] = { policy = r.policy, why = r.why } end
    list[#list + 1] = {
      name = item.m.name, verdict = item.m.verdict, summary = item.m.summary,
      policy = item.decision and item.decision.policy.name or json.null,
      actions = json.array(acts), not_applied = json.array(reasons),
      verification = item.verification and actions.verification_doc(item.verification) or nil,
    }
  end
  local lock = result.E and result.E.lock
  local doc = { mode = result.mode, environment = R.p.env_name, schema = R.schema,
                readonly = result.mode == "plan", migrations = json.array(list) }
  if lock and lock.held then doc.lock_held_by = json.array(lock.holders) end
  return doc
end

local function header(item)
  local pol = item.decision and item.decision.policy.name or "no policy applies"
  ui.out(ui.paint(item.m.name, "bold") .. " — verdict " .. item.m.verdict:upper() .. " — " .. ui.paint(pol, "cyan"))
end

local function refusal_lines(a)
  if a.action ~= "refuse" then return end
  if a.hint then ui.out("     hint: " .. a.hint) end
  for _, l in ipairs(C.objects_lines(a.objects)) do ui.out("       " .. l) end
end

local function lock_note(result)
  local lock = result.E and result.E.lock
  if not (lock and lock.held) then return end
  for _, h in ipairs(lock.holders) do
    ui.warn(("Prisma's migration lock is held by pid %s (application \"%s\", user \"%s\", since %s): a deploy or resolve is running"):format(
      tostring(h.pid), tostring(h.application_name), tostring(h.usename), tostring(h.since)),
      "a run now would wait for it; migrations it is applying show as in progress, not failed")
  end
end

--- Print a plan (text).
function C.print_plan(result)
  local R = result.R
  lock_note(result)
  for k, item in ipairs(result.items) do
    if k > 1 then ui.out("") end
    header(item)
    for _, r in ipairs(item.reasons or {}) do
      if not item.decision then ui.out(("  %s: %s"):format(r.policy, r.why)) end
    end
    for i, a in ipairs(item.decision and item.decision.actions or {}) do
      ui.out(("  %d. %s"):format(i, actions.describe(R, item, a)))
      refusal_lines(a)
      for _, s in ipairs(a.sql or {}) do ui.out("       " .. s) end
    end
  end
end

--- An on_step callback for resolve.run that prints the run as it goes.
function C.run_printer(opts)
  if opts.json then return nil end
  local first = true
  return function(event, item, i, a, R)
    if event == "item" then
      if not first then ui.out("") end
      first = false
      header(item)
      if not item.decision then
        for _, r in ipairs(item.reasons or {}) do ui.out(("  %s: %s"):format(r.policy, r.why)) end
        ui.out("  no policy applies: nothing was done")
      end
    elseif event == "done" then
      local ok = a.outcome == "ok" or a.outcome == "skipped"
      local mark = ok and ui.paint(a.outcome, "green") or ui.paint(a.outcome == "refused" and "refused" or "FAILED", "red")
      ui.out(("  %d. %s — %s%s"):format(i, actions.describe(R, item, a), mark, a.message and (": " .. a.message) or ""))
      refusal_lines(a)
    elseif event == "after_hook" then
      local res = item
      ui.out("after: " .. res.command)
      if res.stdout and res.stdout ~= "" then io.stdout:write(res.stdout) end
      if res.stderr and res.stderr ~= "" then io.stderr:write(res.stderr) end
      if not res.ok then ui.warn(("after hook failed (exit %s): %s"):format(tostring(res.exit), res.command)) end
    end
  end
end

-- ------------------------------------------------------------ fleets

local POLICY_DONE = { ["apply-if-complete"] = "marked applied", ["rollback-and-redeploy"] = "redeployed" }

--- The outcome groups one target's result belongs to (for the fleet summary).
local function groups(cmd, res)
  local out, doc = {}, res.result
  local function add(k) out[#out + 1] = k end
  if type(doc) ~= "table" then
    add(res.exit == 0 and "ok" or ("error: " .. tostring(res.error ~= json.null and res.error or ("exit " .. res.exit))))
    return out
  end
  if doc.error and type(doc.error) == "table" then add("error: " .. tostring(doc.error.message)) return out end
  if cmd == "status" or cmd == "check" then
    add(tostring(doc.status or doc.headline or ("exit " .. res.exit)))
  elseif cmd == "diagnose" then
    for _, m in ipairs(doc.migrations or {}) do add(("%s: %s"):format(m.verdict, m.name)) end
    if #out == 0 then add("nothing failed") end
  elseif cmd == "plan" or cmd == "run" then
    for _, m in ipairs(doc.migrations or {}) do
      local last, bad
      for _, a in ipairs(m.actions or {}) do
        last = a
        if a.action == "refuse" or (a.outcome and a.outcome ~= "ok" and a.outcome ~= "skipped") then bad = a break end
      end
      if m.policy == json.null or m.policy == nil then
        add(("%s → no policy applies"):format(m.verdict))
      elseif bad and bad.action == "refuse" then
        add(("%s → refused: %s"):format(m.verdict, tostring(bad.reason or bad.message):sub(1, 90)))
      elseif bad then
        add(("%s → %s failed: %s"):format(m.verdict, bad.action, tostring(bad.message):sub(1, 90)))
      else
        add(("%s → %s"):format(m.verdict, cmd == "run" and (POLICY_DONE[m.policy] or m.policy) or m.policy))
      end
      local _ = last
    end
    if #out == 0 then add("nothing failed") end
  elseif cmd == "simulate" then
    add((doc.verdict and doc.verdict.safe) and "safe to run" or ("not safe: " .. tostring(doc.verdict and doc.verdict.reasons and doc.verdict.reasons[1] or "")):sub(1, 100))
  elseif cmd == "deploy" then
    if doc.failed and doc.failed ~= json.null then add(("failed: %s: %s"):format(doc.failed.name, tostring(doc.failed.error):sub(1, 80)))
    elseif #(doc.applied or {}) > 0 then add(("applied %d"):format(#doc.applied))
    else add("nothing pending") end
  elseif cmd == "lint" then
    local s = doc.summary or {}
    add((s.errors or 0) > 0 and ("%d error-level finding(s)"):format(s.errors) or "no error-level findings")
  else
    add(res.exit == 0 and "ok" or ("exit " .. res.exit))
  end
  return out
end
C.fleet_groups = groups

local function verdicts_policies(doc, by_verdict, by_policy)
  if type(doc) ~= "table" then return end
  for _, m in ipairs(type(doc.migrations) == "table" and doc.migrations or {}) do
    if m.verdict then by_verdict[m.verdict] = (by_verdict[m.verdict] or 0) + 1 end
    if m.policy and m.policy ~= json.null then by_policy[m.policy] = (by_policy[m.policy] or 0) + 1 end
  end
end

--- Run a command over the fleet the options name (migfix.fleet); print
--- NDJSON (--json) or a live progress line and a summary grouped by outcome.
function C.fleet(cmd, ctx, opts, args, info)
  local fleet = require "migfix.fleet"
  local writes = fleet.COMMANDS[cmd.name]
  if writes == nil then
    ui.fail { message = ("migfix %s does not take targets"):format(cmd.name),
              hint = "targets work with status, check, diagnose, plan, simulate, lint, backup, run, resolve, deploy and undo",
              code = ui.EXIT.USAGE }
  end
  local p = ctx:project() -- configuration errors before anything connects
  local targets, source = fleet.targets(ctx, opts)
  local shard
  if opts.shard then
    local k, n
    targets, k, n = fleet.shard(targets, opts.shard)
    shard = ("%d/%d"):format(k, n)
  end
  local function int(name, min)
    local v = opts[name]
    if v == nil then return nil end
    local n = math.tointeger(tonumber(v))
    if not n or n < min then
      ui.fail { message = ("invalid value for --%s: \"%s\""):format(name, tostring(v)), hint = ("give a whole number >= %d"):format(min), code = ui.EXIT.USAGE }
    end
    return n
  end
  local cores = 2
  do
    local f = io.open("/proc/cpuinfo", "rb")
    if f then
      local n = 0
      for l in f:lines() do if l:match("^processor") then n = n + 1 end end
      f:close()
      if n > 0 then cores = n end
    end
  end
  local concurrency = int("concurrency", 1) or (2 * cores)
  local on_error = opts["on-error"] or (writes and "stop" or "continue")
  if on_error ~= "stop" and on_error ~= "continue" then
    ui.fail { message = ("invalid value for --on-error: \"%s\""):format(on_error), hint = "stop or continue", code = ui.EXIT.USAGE }
  end
  local timeout_ms
  if opts["target-timeout"] then
    timeout_ms = require("migfix.config").millis(opts["target-timeout"])
    if not timeout_ms or timeout_ms <= 0 then
      ui.fail { message = ("invalid value for --target-timeout: \"%s\""):format(opts["target-timeout"]), hint = "a duration such as 30s or 5min", code = ui.EXIT.USAGE }
    end
  end
  local run_id = require("migfix.crypto").uuid4()
  local jr = require "migfix.journal"
  if jr.set_run then jr.set_run(run_id) end
  if writes and #targets > 0 then
    C.confirm(ctx, opts, ("Write to %d target(s) of environment %s? Type yes to continue: "):format(#targets, p.env_name))
    opts.yes = true
  end
  require("migfix.context").share()

  local by_group, order = {}, {}
  local by_verdict, by_policy = {}, {}
  local failures = {}
  local last_progress, tty = 0, sys.isatty(2)
  local summary = fleet.run {
    cmd = cmd, opts = opts, args = args, info = info, targets = targets, concurrency = concurrency,
    writes = writes, on_error = on_error, canary = int("canary", 1), max_failures = int("max-failures", 1),
    timeout_ms = timeout_ms, timeout_text = opts["target-timeout"],
    on_result = function(res)
      if opts.json then
        ui.out(json.encode({ target = res.target, exit = res.exit, result = res.result, error = res.error, ms = res.ms }))
        io.stdout:flush()
      end
      for _, g in ipairs(groups(cmd.name, res)) do
        if not by_group[g] then by_group[g] = 0; order[#order + 1] = g end
        by_group[g] = by_group[g] + 1
      end
      verdicts_policies(res.result, by_verdict, by_policy)
      if res.exit >= 2 then failures[#failures + 1] = res end
    end,
    on_progress = (not opts.json) and function(done, total)
      local now = sys.now_ms()
      if done < total and now - last_progress < (tty and 200 or 5000) then return end
      last_progress = now
      local line = ("fleet %s: %d/%d targets done"):format(cmd.name, done, total)
      if tty then io.stderr:write("\r", line, done >= total and "\n" or "") else io.stderr:write(line, "\n") end
      io.stderr:flush()
    end or nil,
  }
  local doc = { targets = summary.targets, ok = summary.ok, refused = summary.refused, failed = summary.failed,
                skipped = summary.skipped, by_verdict = by_verdict, by_policy = by_policy, by_outcome = by_group,
                seconds = summary.seconds, run = run_id, shard = shard or json.null, source = source,
                stopped = summary.stopped or json.null, exit = summary.exit }
  if opts.json then
    ui.out(json.encode({ summary = doc }))
  else
    ui.out(ui.paint(("FLEET %s — %d target(s) from %s%s, %d at a time, %.1f s (run %s)"):format(
      cmd.name, #targets, source, shard and (", shard " .. shard) or "", concurrency, summary.seconds, run_id), "bold"))
    table.sort(order, function(a, b) return by_group[a] > by_group[b] or (by_group[a] == by_group[b] and a < b) end)
    for _, g in ipairs(order) do ui.out(("  %5d  %s"):format(by_group[g], g)) end
    ui.out(("ok %d, refused %d, failed %d, skipped %d"):format(summary.ok, summary.refused, summary.failed, summary.skipped))
    for i, f in ipairs(failures) do
      if i > 10 then ui.out(("  … and %d more failed target(s): use --json"):format(#failures - 10)) break end
      ui.out(("  failed %s (exit %d): %s"):format(f.target, f.exit, tostring(f.error ~= json.null and f.error or "")))
    end
    if summary.stopped then ui.warn("stopped: " .. summary.stopped, ("%d target(s) not run"):format(summary.skipped)) end
  end
  return summary.exit
end

return C
