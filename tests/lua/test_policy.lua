-- migfix.policy in process: the sandbox policies run in, the chain
-- (first that applies wins, reasons when none does), and decide() errors.
local h = require "helper"
local policy = require "migfix.policy"
local ui = require "migfix.ui"

local T = {}

--- the structured error ui.fail raises (or a plain one), as {message, code, detail}
local function failure(fn)
  local ok, e = pcall(fn)
  h.eq(ok, false, "expected an error")
  if ui.is_error(e) then return e end
  return { message = tostring(e), code = nil, detail = tostring(e) }
end

local dir
local function write_policy(name, src)
  dir = dir or h.tmpdir()
  local p = dir .. "/" .. name .. ".lua"
  h.write(p, src)
  return p
end

--- a policy whose applies() runs `body`, then says true
local function probe(name, body, extra)
  return write_policy(name, ('local p = { name = %q%s }\nfunction p.applies(m, env)\n  %s\n  return true\nend\nfunction p.decide(m, plan) plan:note("x") end\nreturn p\n')
    :format(name, extra or "", body))
end

local M_COMPLETE = { name = "20240102000000_second", verdict = "complete", counts = { present = 3, absent = 0 },
                     file = { changed_since_failure = false }, error = {}, objects = {} }
local ENV = { name = "development" }

local function run_probe(name, body, extra)
  local pol = policy.load(probe(name, body, extra))
  return policy.evaluate({ pol }, M_COMPLETE, ENV)
end

-- the sandbox -------------------------------------------------------------------

T["sandbox: no io, no os.execute/exit, no load/loadfile/dofile, no string.dump"] = function()
  local cases = {
    { "io", "io.open('/etc/passwd')", "undefined global 'io'" },
    { "popen", "io.popen('id')", "undefined global 'io'" },
    { "exec", "os.execute('true')", "execute" },
    { "exit", "os.exit(3)", "exit" },
    { "load", "load('return 1')", "undefined global 'load'" },
    { "loadfile", "loadfile('/etc/passwd')", "undefined global 'loadfile'" },
    { "dofile", "dofile('/etc/passwd')", "undefined global 'dofile'" },
    { "dump", "string.dump(function() end)", "dump" },
    { "rawset", "rawset(_ENV, 'x', 1)", "undefined global 'rawset'" },
    { "debug", "debug.sethook()", "undefined global 'debug'" },
    { "require_io", "require('io')", "cannot require" },
    { "package", "package.loadlib('x', 'y')", "undefined global 'package'" },
  }
  for _, c in ipairs(cases) do
    local e = failure(function() run_probe("sb_" .. c[1], c[2]) end)
    h.contains(e.message .. "\n" .. tostring(e.detail), c[3], c[1])
    h.contains(e.message, "sb_" .. c[1] .. ".lua:3:", c[1] .. ": names the file and line")
  end
end

T["sandbox: the method form of a string cannot reach string.dump either"] = function()
  local e = failure(function() run_probe("sb_method", '("x"):dump()') end)
  h.ok(e.message:find("dump", 1, true) or tostring(e.detail):find("dump", 1, true), e.message)
end

T["sandbox: undefined globals raise, on read and on write"] = function()
  local e = failure(function() run_probe("sb_read", "local x = undefined_thing") end)
  h.contains(e.message, "undefined global 'undefined_thing'")
  e = failure(function() run_probe("sb_write", "leaked = 1") end)
  h.contains(e.message, "undeclared global 'leaked'")
  -- at load time too
  local p = write_policy("sb_load", 'oops = 1\nreturn { name = "sb_load", applies = function() return true end, decide = function() end }\n')
  e = failure(function() policy.load(p) end)
  h.contains(e.message, "undeclared global 'oops'")
  h.eq(e.code, ui.EXIT.USAGE)
end

T["sandbox: what is allowed works (string, table, math, utf8, os.time/date/clock, pcall)"] = function()
  local d = run_probe("sb_ok", table.concat({
    'local s = ("%d-%s"):format(1, string.upper("a"))',
    'assert(s == "1-A")',
    'assert(table.concat({1, 2}, ",") == "1,2")',
    'assert(math.max(1, 2) == 2 and utf8.len("é") == 1)',
    'assert(type(os.time()) == "number" and os.date("!%Y", 0) == "1970")',
    'assert(type(os.clock()) == "number")',
    'assert(pcall(error, "x") == false)',
  }, "\n  "))
  h.ok(d, "applies")
end

T["sandbox: posix only when declared in needs"] = function()
  -- required at load time without the declaration
  local p = write_policy("px_top", 'local u = require("posix.unistd")\nreturn { name = "px_top", applies = function() return true end, decide = function() end }\n')
  local e = failure(function() policy.load(p) end)
  h.contains(e.message, "does not declare")
  -- required inside applies() without the declaration: the same rule
  e = failure(function() run_probe("px_undeclared", 'local u = require("posix.unistd")') end)
  h.contains(e.message, "declare")
  local d = run_probe("px_declared", 'local u = require("posix.unistd"); assert(u.getpid() > 0)', ', needs = { "posix" }')
  h.ok(d)
end

T["sandbox: the evidence is read-only"] = function()
  local e = failure(function() run_probe("ro", 'm.verdict = "complete"') end)
  h.contains(e.message, "read-only")
  e = failure(function() run_probe("ro2", 'm.counts.present = 0') end)
  h.contains(e.message, "read-only")
  e = failure(function() run_probe("ro3", 'env.name = "production"') end)
  h.contains(e.message, "read-only")
end

T["sandbox: bytecode is refused, text only"] = function()
  local fn = load('return { name = "bc", applies = function() return true end, decide = function() end }')
  local p = (dir or h.tmpdir()) .. "/bc.lua"
  local f = assert(io.open(p, "wb"))
  f:write(string.dump(fn))
  f:close()
  local e = failure(function() policy.load(p) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "binary")
end

T["load: shape errors (missing functions, unknown fields) are usage errors"] = function()
  local e = failure(function() policy.load(write_policy("shape1", 'return { name = "shape1" }\n')) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "applies")
  e = failure(function() policy.load(write_policy("shape2", 'return { name = "shape2", applies = function() end, decide = function() end, priority = 1 }\n')) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "priority")
  e = failure(function() policy.load(write_policy("shape3", 'return { name = "shape3", applies = function() end\n')) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "shape3.lua")
end

T["sandbox: no way to the host's strings or environment (issue 12: a policy replaced string.format for every later one)"] = function()
  -- the strings' metatable is out of reach, ("").dump is nil, os.getenv is gone
  h.ok(run_probe("smt", 'assert(getmetatable("") == nil); assert(("").dump == nil); assert(os.getenv == nil)'))
  -- a policy that replaces string.format changes its own copy only
  h.ok(run_probe("fmt", 'string.format = function() return "pwned" end; string.rep = nil'))
  h.eq(("%d"):format(7), "7")
  h.eq(string.format("%s", "x"), "x")
  h.eq(type(string.rep), "function")
  h.ok(run_probe("fmt2", 'assert(string.format("%d", 7) == "7", "the next policy sees the real format")'))
  -- and the host's own method calls still work, dump excepted
  h.eq(("abc"):upper(), "ABC")
  h.eq(getmetatable(""), false, "the metatable is hidden from everyone")
end

T["a runaway policy cannot swallow the deadline with pcall"] = function()
  local saved = policy.DEADLINE_SECONDS
  policy.DEADLINE_SECONDS = 1
  local ok, e = pcall(run_probe, "spin_pcall", "while true do pcall(function() while true do end end) end")
  local ok2, e2 = pcall(run_probe, "spin_pcall2", "for _ = 1, 1e12 do local ok = pcall(error, 'x') end")
  policy.DEADLINE_SECONDS = saved
  h.eq(ok, false)
  h.contains(ui.is_error(e) and e.message or tostring(e), "deadline")
  h.eq(ok2, false)
  h.contains(ui.is_error(e2) and e2.message or tostring(e2), "deadline")
  -- and the next evaluation starts with a fresh deadline
  h.ok(run_probe("after_spin", "local x = 1"))
end

T["a runaway policy hits the deadline"] = function()
  local saved = policy.DEADLINE_SECONDS
  policy.DEADLINE_SECONDS = 1
  local ok, e = pcall(run_probe, "spin", "while true do end")
  policy.DEADLINE_SECONDS = saved
  h.eq(ok, false)
  h.contains(ui.is_error(e) and e.message or tostring(e), "deadline")
end

-- the chain -----------------------------------------------------------------------

local function simple(name, applies_src, decide_src)
  return policy.load(write_policy(name, ('local p = { name = %q }\nfunction p.applies(m, env) %s end\nfunction p.decide(m, plan, env) %s end\nreturn p\n')
    :format(name, applies_src, decide_src)))
end

T["chain: the first policy that applies wins; later ones are not consulted"] = function()
  local a = simple("ch_no", 'return false, "not mine: " .. m.verdict', 'plan:refuse("never")')
  local b = simple("ch_yes", 'return m.verdict == "complete"', 'plan:backup{ scope = "ledger" } plan:mark_applied() plan:check()')
  local c = simple("ch_also", 'error("must not be consulted")', 'plan:refuse("never")')
  local d, reasons = policy.evaluate({ a, b, c }, M_COMPLETE, ENV)
  h.ok(d, "a decision")
  h.eq(d.policy.name, "ch_yes")
  h.eq(#d.actions, 3)
  h.eq(d.actions[1].action, "backup")
  h.eq(d.actions[1].scope, "ledger")
  h.eq(d.actions[2].action, "mark_applied")
  h.eq(d.actions[3].action, "check")
  -- the policies before it that declined keep their reasons (plan --json not_applied)
  h.same(reasons, { { policy = "ch_no", why = "not mine: complete" } })
end

T["chain: no policy applies -> nil and every policy's reason"] = function()
  local a = simple("nr_a", 'return false, "verdict is " .. m.verdict', '')
  local b = simple("nr_b", 'return false', '')
  local d, reasons = policy.evaluate({ a, b }, M_COMPLETE, ENV)
  h.eq(d, nil)
  h.eq(#reasons, 2)
  h.same(reasons[1], { policy = "nr_a", why = "verdict is complete" })
  h.same(reasons[2], { policy = "nr_b", why = "does not apply" })
end

T["chain: a policy that applies but decides nothing becomes a refusal"] = function()
  local a = simple("empty", 'return true', '')
  local d = policy.evaluate({ a }, M_COMPLETE, ENV)
  h.eq(#d.actions, 1)
  h.eq(d.actions[1].action, "refuse")
  h.contains(d.actions[1].reason, "decided nothing")
end

T["decide() error: a failure, no decision returned, so no action runs"] = function()
  local a = simple("half", 'return true', 'plan:backup{} plan:mark_applied() error("half way")')
  local got
  local e = failure(function() got = policy.evaluate({ a }, M_COMPLETE, ENV) end)
  h.eq(got, nil, "no decision escapes")
  h.eq(e.code, ui.EXIT.USAGE, "a policy error is a configuration error (exit 2), in plan as in run")
  h.contains(e.message, "failed in decide()")
  h.contains(e.message, "half.lua:3:")
  h.contains(e.hint, "nothing was written")
end

T["applies() error: a failure naming the policy and the line"] = function()
  local a = simple("bad_applies", 'return m.nope.deeper', '')
  local e = failure(function() policy.evaluate({ a }, M_COMPLETE, ENV) end)
  h.contains(e.message, "failed in applies()")
  h.contains(e.message, "bad_applies.lua:2:")
end

T["applies() must return a boolean"] = function()
  local a = simple("yes_string", 'return "yes"', 'plan:mark_applied()')
  local e = failure(function() policy.evaluate({ a }, M_COMPLETE, ENV) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, 'must return true or false, got "yes"')
end

T["plan verbs check their arguments when called"] = function()
  for src, want in pairs {
    ['plan:backup{ scope = "everything" }'] = 'unrecognized scope "everything"',
    ['plan:mark_applied("now")'] = "plan:mark_applied() takes no arguments",
    ['plan:backup({}, "extra")'] = "takes one table argument",
    ['plan:refuse()'] = "plan:refuse needs a reason",
    ['plan:drop_invalid_index{}'] = "plan:drop_invalid_index needs the index",
  } do
    local a = simple("verbs", 'return true', src)
    local e = failure(function() policy.evaluate({ a }, M_COMPLETE, ENV) end)
    h.eq(e.code, ui.EXIT.USAGE, src)
    h.contains(e.message, want, src)
    h.contains(e.message, "verbs.lua:3:", src)
  end
end

T["plan calls check their options"] = function()
  local a = simple("badopt", 'return true', 'plan:backup{ scop = "full" }')
  local e = failure(function() policy.evaluate({ a }, M_COMPLETE, ENV) end)
  h.contains(e.message, "scop")
  a = simple("badref", 'return true', 'plan:refuse("no", { hints = "x" })')
  e = failure(function() policy.evaluate({ a }, M_COMPLETE, ENV) end)
  h.contains(e.message, "hints")
end

T["find: unknown policy is a usage error naming the directories; names cannot escape"] = function()
  local e = failure(function() policy.find("no-such-policy", { "/nonexistent" }) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "no-such-policy")
  h.contains(e.detail, "/nonexistent")
  e = failure(function() policy.find("../etc/passwd", { "/tmp" }) end)
  h.eq(e.code, ui.EXIT.USAGE)
  -- team directories come first
  local d1, d2 = h.tmpdir(), h.tmpdir()
  h.write(d1 .. "/same.lua", "return {}")
  h.write(d2 .. "/same.lua", "return {}")
  h.eq(policy.find("same", { d1, d2 }), d1 .. "/same.lua")
end

-- the shipped policies --------------------------------------------------------------

local shipped = h.root .. "/policies"
local function evidence(t)
  local m = { name = "20240102000000_second", verdict = "complete", summary = "s",
              counts = { present = 2, missing = 0, different = 0, absent = 0, still_present = 0, unverifiable = 0 },
              file = { changed_since_failure = false }, error = {}, objects = {} }
  for k, v in pairs(t or {}) do m[k] = v end
  return m
end
local function chain()
  return policy.load_chain({ "apply-if-complete", "rollback-and-redeploy", "refuse-partial-or-drifted" }, { shipped })
end
local function kinds(d)
  local t = {}
  for _, a in ipairs(d.actions) do t[#t + 1] = a.action end
  return table.concat(t, ",")
end

T["shipped chain: complete -> backup, mark applied, check"] = function()
  local d = policy.evaluate(chain(), evidence(), ENV)
  h.eq(d.policy.name, "apply-if-complete")
  h.eq(kinds(d), "note,backup,mark_applied,check")
end

T["shipped chain: absent -> redeploy only when the file changed or the error was transient"] = function()
  local d = policy.evaluate(chain(), evidence { verdict = "absent", file = { changed_since_failure = true } }, ENV)
  h.eq(d.policy.name, "rollback-and-redeploy")
  h.eq(kinds(d), "note,backup,redeploy,check")
  d = policy.evaluate(chain(), evidence { verdict = "absent", error = { class = "transient", sqlstate = "57014", message = "canceling statement due to statement timeout" } }, ENV)
  h.eq(kinds(d), "note,backup,redeploy,check")
  d = policy.evaluate(chain(), evidence { verdict = "absent", error = { class = "data", sqlstate = "23505",
    message = 'could not create unique index "Organization_name_key"', object = "Organization_name_key" } }, ENV)
  h.eq(kinds(d), "refuse")
  h.contains(d.actions[1].reason, "23505")
  h.contains(d.actions[1].reason, "fix the data")
end

T["shipped chain: partial, drifted, unverifiable -> refusal listing the objects"] = function()
  for _, v in ipairs({ "partial", "drifted", "unverifiable" }) do
    local objs = { { kind = "table", name = "B", state = "missing" }, { kind = "table", name = "A", state = "present" } }
    local d = policy.evaluate(chain(), evidence { verdict = v, objects = objs }, ENV)
    h.eq(d.policy.name, "refuse-partial-or-drifted", v)
    h.eq(kinds(d), "refuse")
    h.eq(#d.actions[1].objects, 1, v .. ": only what is not as the file says")
    h.eq(d.actions[1].objects[1].name, "B")
    h.ok(#d.actions[1].hint > 20, v .. ": says what the options are")
    if v ~= "drifted" then h.contains(d.actions[1].hint, "20240102000000_second") end
  end
end

return T
