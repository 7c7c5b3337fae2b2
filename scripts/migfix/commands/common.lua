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

return C
