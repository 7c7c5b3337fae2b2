-- The sandbox policies, lint rules and migfix.lua run in (engine/sandbox.c,
-- scripts/migfix/guest.lua): the hostile cases of issue 12, each as it was
-- tried (string metatable, string.dump, getenv, the evidence's metatable,
-- pcall around the deadline, a loop in migfix.lua, a memory bomb, a
-- backtracking pattern), in process and through the real CLI on a real
-- PostgreSQL where it applies.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local policy = require "migfix.policy"
local lint = require "migfix.lint"
local _, guest = pcall(require, "migfix.guest")
local _, sandbox = pcall(require, "migfix.sandbox")
local ui = require "migfix.ui"

local T = {}
local PW = os.getenv("MIGFIX_TEST_PW")

local function failure(fn)
  local ok, e = pcall(fn)
  h.eq(ok, false, "expected an error")
  if ui.is_error(e) then return e end
  return { message = tostring(e), detail = tostring(e) }
end

local dir
local function write_policy(name, src)
  dir = dir or h.tmpdir()
  local p = dir .. "/" .. name .. ".lua"
  h.write(p, src)
  return p
end

local function simple(name, applies_src, decide_src, extra)
  return policy.load(write_policy(name, ('local p = { name = %q%s }\nfunction p.applies(m, env) %s end\nfunction p.decide(m, plan, env) %s end\nreturn p\n')
    :format(name, extra or "", applies_src, decide_src)))
end

local M = { name = "20240102000000_second", verdict = "complete", summary = "all there",
            counts = { present = 3, absent = 0 }, file = { changed_since_failure = false }, error = {},
            objects = { { kind = "table", name = "User", state = "present" } } }
local ENV = { name = "development" }

local function with_deadline(seconds, fn)
  local saved_p, saved_l = policy.DEADLINE_SECONDS, lint.DEADLINE_SECONDS
  policy.DEADLINE_SECONDS, lint.DEADLINE_SECONDS = seconds, seconds
  local ok, e = pcall(fn)
  policy.DEADLINE_SECONDS, lint.DEADLINE_SECONDS = saved_p, saved_l
  if not ok then error(e, 0) end
end

-- the module ------------------------------------------------------------------

T["migfix.sandbox: bad arguments raise; a closed handle raises; close twice is harmless"] = function()
  h.raises(function() sandbox.new { bogus = 1 } end, 'unrecognized option "bogus"')
  h.raises(function() sandbox.new { memory = 10 } end, "memory must be at least")
  h.raises(function() sandbox.new { deadline = "soon" } end, "deadline must be a number")
  h.raises(function() sandbox.new({}, 2) end, "too many arguments")
  local sb = sandbox.new { name = "t" }
  h.contains(tostring(sb), "migfix.sandbox (t)")
  h.ok(sb:load("function echo(...) return ... end", "=t"))
  local ok, a, b = sb:call("echo", 1, "x")
  h.eq(ok, true) h.eq(a, 1) h.eq(b, "x")
  local none, msg, info = sb:call("nope")
  h.eq(none, nil) h.contains(msg, 'no function "nope"') h.eq(info.kind, "data")
  sb:close()
  sb:close()
  h.raises(function() sb:call("echo") end, "closed sandbox")
  do local s2 <close> = sandbox.new() end -- __close
end

T["migfix.sandbox: data crosses as copies; functions do not; shared tables stay shared"] = function()
  local sb <close> = sandbox.new()
  assert(sb:load([[
    function same(t) return t.a == t.b, rawequal(t.a, t.b) end
    function give() local t = { x = 1 } t.self = t return t end
    function fn() return { f = function() end } end
    function ro(t) local ok, e = pcall(function() t.a.v = 2 end) return ok, e, getmetatable(t), #t, rawget(t, 1) end]], "=t"))
  local shared = { v = 1 }
  local _, eq, raweq = sb:call("same", { a = shared, b = shared })
  h.eq(eq, true) h.eq(raweq, true)
  local _, t = sb:call("give")
  h.eq(t.x, 1) h.eq(t.self, t, "a cycle comes back as a cycle")
  h.eq(getmetatable(t), nil, "plain tables come back")
  local none, msg, info = sb:call("fn")
  h.eq(none, nil) h.eq(info.kind, "data") h.contains(msg, "result 1.f: a function cannot leave the sandbox")
  none, msg = sb:call("same", { a = print })
  h.eq(none, nil) h.contains(msg, "field \"a\" is a function, which cannot enter the sandbox")
  local _, wrote, err, mt, n, raw = sb:call("ro", { 10, 20, a = { v = 1 } })
  h.eq(wrote, false) h.contains(err, "the evidence is read-only") h.eq(mt, false) h.eq(n, 2) h.eq(raw, nil)
  assert(sb:load("function nx(t) local k, v = next(t) return k, v, next({}) end", "=t2"))
  local _, k, v, none2 = sb:call("nx", { only = 7 })
  h.eq(k, "only", "next reads through a read-only table") h.eq(v, 7) h.eq(none2, nil)
  h.eq(shared.v, 1)
end

-- the string metatable, string.dump ------------------------------------------------

T["string metatable: hidden from policies; string.dump reachable neither way"] = function()
  local d = policy.evaluate({ simple("sm_probe", "return true",
    'plan:note(table.concat({ tostring(getmetatable("")), type(("").dump), type(string.dump), type(rawget(string, "dump")) }, " "))') }, M, ENV)
  h.eq(d.actions[1].text, "nil nil nil nil", "getmetatable(\"\"), (\"\").dump, string.dump and rawget(string, \"dump\") are nil")
  -- and calling it is an ordinary "attempt to call a nil value", at the policy's line
  local e = failure(function() policy.evaluate({ simple("sm_call", 'return ("x"):dump() ~= nil', "") }, M, ENV) end)
  h.contains(e.message, "sm_call.lua:2:")
  h.contains(e.message, "attempt to call a nil value (method 'dump')")
end

T["string.dump: no route in a policy yields bytecode (the effect, not the error text)"] = function()
  local probe = table.concat({
    'local routes = {',
    '  function() return ("").dump end, function() return string.dump end,',
    '  function() return rawget(string, "dump") end,',
    '  function() local mt = getmetatable("") return type(mt) == "table" and type(mt.__index) == "table" and mt.__index.dump end,',
    '  function() for k, v in pairs(string) do if k == "dump" then return v end end end,',
    '  function() return load end,',
    '}',
    'local got = 0',
    'for _, r in ipairs(routes) do',
    '  local ok, f = pcall(r)',
    '  if ok and type(f) == "function" then',
    '    local ok2, b = pcall(f, function() return 1 end)',
    '    if ok2 and type(b) == "string" and #b > 0 then got = got + 1 end',
    '  end',
    'end',
    'plan:note(("%d routes to bytecode"):format(got))',
  }, " ")
  local d = policy.evaluate({ simple("dump_routes", "return true", probe) }, M, ENV)
  h.eq(d.actions[1].text, "0 routes to bytecode")
  h.eq(type(string.dump(function() end)), "string", "the host's string.dump is untouched")
end

local TAMPER = [[
local p = { name = "tamper" }
function p.applies(m)
  local mt = getmetatable("")
  if type(mt) == "table" and type(mt.__index) == "table" then
    local s = mt.__index
    local format, gsub = s.format, s.gsub
    s.format = function(f, ...)
      if type(f) == "string" and f:find("WHERE NOT EXISTS", 1, true) then return "DELETE FROM \"_prisma_migrations\"" end
      return format(f, ...)
    end
    s.gsub = function(x, pat, rep, n) return gsub(x, pat, rep, n) end
    s.rep = function() return "" end
  end
  string.format = function() return "tampered" end
  string.upper = function() return "tampered" end
  return false, "never applies"
end
function p.decide(m, plan) end
return p
]]

T["string metatable: a policy that replaces string functions changes nothing for the next one"] = function()
  local a = policy.load(write_policy("tamper", TAMPER))
  local b = simple("after_tamper", "return true", 'plan:note(("%s-%s"):format(("a"):upper(), ("b"):rep(2)))')
  local d, reasons = policy.evaluate({ a, b }, M, ENV)
  h.eq(reasons[1].why, "never applies")
  h.eq(d.actions[1].text, "A-bb")
  h.eq(("%d"):format(7), "7", "the host's string.format")
  h.eq(("x"):rep(3), "xxx", "the host's string.rep")
end

-- the evidence ------------------------------------------------------------------------

T["evidence: no metatable door, no rawset, no pairs door; a later policy sees the original"] = function()
  local a = simple("ev_tamper", table.concat({
    'local mt = getmetatable(m)',
    'if type(mt) == "table" then mt.__index.verdict = "absent" end',
    'local _, store = pairs(m)',
    'if type(store) == "table" then pcall(function() store.verdict = "absent" end) end',
    'pcall(function() m.counts.present = 0 end)',
    'pcall(function() table.insert(m.objects, { name = "Evil" }) end)',
    'pcall(function() m.objects[1].name = "Evil" end)',
    'assert(not pcall(function() return rawset end) and not pcall(function() return debug end), "no rawset, no debug")',
    'return false, "looked"',
  }, " "), "")
  local b = simple("ev_reader", "return true",
    'plan:note(table.concat({ m.verdict, m.counts.present, #m.objects, m.objects[1].name, tostring(getmetatable(m)) }, " "))')
  local d = policy.evaluate({ a, b }, M, ENV)
  h.eq(d.actions[1].text, "complete 3 1 User false")
  h.eq(M.verdict, "complete") h.eq(M.counts.present, 3) h.eq(#M.objects, 1)
end

T["evidence: writes raise \"read-only\" at the policy's line, nested ones too"] = function()
  for n, body in pairs { ro1 = 'm.verdict = "x"', ro2 = "m.counts.present = 0", ro3 = 'env.name = "production"',
                         ro4 = "table.insert(m.objects, {})" } do
    local e = failure(function() policy.evaluate({ simple(n, body .. " return true", "") }, M, ENV) end)
    h.contains(e.message, "read-only", n)
    h.eq(e.code, ui.EXIT.USAGE, n)
  end
  local e = failure(function() policy.evaluate({ simple("ro5", 'm.verdict = "x" return true', "") }, M, ENV) end)
  h.contains(e.message, "ro5.lua:2:")
end

-- environment variables -----------------------------------------------------------------

T["getenv: refused with a clear error at the policy's line (and in lint rules)"] = function()
  local e = failure(function() policy.evaluate({ simple("env_read", 'local u = os.getenv("DATABASE_URL") return u ~= nil', "") }, M, ENV) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "env_read.lua:2:")
  h.contains(e.message, "os.getenv is not available in the sandbox")
  -- other os functions: named
  e = failure(function() policy.evaluate({ simple("env_rm", 'os.remove("/tmp/x") return true', "") }, M, ENV) end)
  h.contains(e.message, "os.remove is not available")
  -- what is left works
  local d = policy.evaluate({ simple("env_ok", 'return type(os.time()) == "number" and os.date("!%Y", 0) == "1970" and os.clock() >= 0', 'plan:note("ok")') }, M, ENV)
  h.eq(d.actions[1].text, "ok")
end

-- the deadline ---------------------------------------------------------------------------

T["deadline: pcall cannot swallow it (policy applies and decide)"] = function()
  with_deadline(0.5, function()
    local e = failure(function()
      policy.evaluate({ simple("spin_pcall", "while true do pcall(function() while true do end end) end", "") }, M, ENV)
    end)
    h.eq(e.code, ui.EXIT.USAGE)
    h.contains(e.message, "ran longer than 0.5 s (deadline)")
    h.contains(e.message, "spin_pcall.lua:2")
    e = failure(function()
      policy.evaluate({ simple("spin_decide", "return true",
        "for i = 1, 1e12 do local ok = pcall(error, 'x') ; ok = pcall(function() for j = 1, 1e12 do end end) end") }, M, ENV)
    end)
    h.contains(e.message, 'policy "spin_decide" failed in decide(): ran longer than 0.5 s (deadline) at ')
    -- an error handler that loops does not help either; nor does a to-be-closed variable
    e = failure(function()
      policy.evaluate({ simple("spin_close", 'local x <close> = setmetatable({}, { __close = function() while true do end end }) while true do end', "") }, M, ENV)
    end)
    h.contains(e.message, "deadline")
  end)
end

T["deadline and finalizers: __gc cannot be set (it would run outside the deadline)"] = function()
  local e = failure(function()
    policy.evaluate({ simple("gc", 'setmetatable({}, { __gc = function() while true do end end }) return true', "") }, M, ENV)
  end)
  h.contains(e.message, "__gc is not allowed")
  h.contains(e.message, "gc.lua:2:")
end

local function rule_dir(files)
  local d = h.tmpdir()
  for name, src in pairs(files) do h.write(d .. "/checks/" .. name, src) end
  return d .. "/checks"
end

local function lint_text(rules, text)
  local effects = require "migfix.effects"
  local unit = effects.analyze(text, "m.sql")
  return lint.run_unit(unit, { rules = rules, settings = lint.settings(), text = text })
end

T["deadline: pcall cannot swallow it in a lint rule either"] = function()
  local checks = rule_dir { ["X1-spin.lua"] = 'return { id = "X1", title = "spin", check = function(s, ctx)\n  while true do pcall(function() while true do end end) end\nend }\n' }
  local rules = assert(lint.load_rules({ checks }))
  with_deadline(0.5, function()
    local e = failure(function() lint_text(rules, "CREATE TABLE a (id int);\n") end)
    h.eq(e.code, ui.EXIT.USAGE)
    h.contains(e.message, "lint rule X1 (" .. checks .. "/X1-spin.lua) failed on m.sql:1")
    h.contains(e.message, "ran longer than 0.5 s (deadline) at " .. checks .. "/X1-spin.lua:2")
  end)
end

T["lint rules: one rule cannot change what the next sees (ctx, statements, string)"] = function()
  local checks = rule_dir {
    ["A1.lua"] = table.concat({
      'return { id = "A1", title = "tamper", check = function(s, ctx)',
      '  pcall(function() ctx.band = function() return "error" end end)',
      '  pcall(function() s.kind = "Evil" end)',
      '  pcall(function() ctx.statements[1].line = 99 end)',
      '  pcall(function() ctx.locks.LEVELS[1] = "NONE" end)',
      '  string.upper = function() return "evil" end',
      '  return nil',
      'end }' }, "\n") .. "\n",
    ["Z9.lua"] = table.concat({
      'return { id = "Z9", title = "reader", default_severity = "info", check = function(s, ctx)',
      '  return { { why = table.concat({ s.kind, tostring(ctx.band(s.tables[1])), ctx.statements[1].line, ctx.locks.LEVELS[1], ("x"):upper(), tostring(getmetatable(ctx)) }, " ") } }',
      'end }' }, "\n") .. "\n",
  }
  local rules = assert(lint.load_rules({ checks }))
  local f = lint_text(rules, "ALTER TABLE a ADD COLUMN b int;\n")
  local z
  for _, x in ipairs(f) do if x.rule == "Z9" then z = x end end
  h.ok(z, "Z9 found something")
  h.eq(z.why, "AlterTableStmt unknown 1 ACCESS SHARE X false")
end

T["lint rules: no environment variables, no io, no require"] = function()
  for id, body in pairs { E1 = 'os.getenv("HOME")', E2 = 'io.open("/etc/passwd")', E3 = 'require("posix")' } do
    local checks = rule_dir { [id .. ".lua"] = ('return { id = %q, title = "x", check = function(s, ctx)\n  %s\nend }\n'):format(id, body) }
    local rules = assert(lint.load_rules({ checks }))
    local e = failure(function() lint_text(rules, "SELECT 1;\n") end)
    h.contains(e.message, id .. ".lua:2:", id)
  end
  local checks = rule_dir { ["E4.lua"] = 'return { id = "E4", title = "x", check = function(s, ctx)\n  os.getenv("HOME")\nend }\n' }
  local e = failure(function() lint_text(assert(lint.load_rules({ checks })), "SELECT 1;\n") end)
  h.contains(e.message, "os.getenv is not available in the sandbox")
end

T["lint rules: no route to bytecode or to the strings' metatable (a team rule, in its guest)"] = function()
  local checks = rule_dir { ["D1.lua"] = table.concat({
    'return { id = "D1", title = "routes", default_severity = "info", check = function(s, ctx)',
    '  local routes = { function() return ("").dump end, function() return string.dump end,',
    '    function() return rawget(string, "dump") end,',
    '    function() local mt = getmetatable("") return type(mt) == "table" and type(mt.__index) == "table" and mt.__index.dump end,',
    '    function() for k, v in pairs(string) do if k == "dump" then return v end end end }',
    '  local got = 0',
    '  for _, r in ipairs(routes) do',
    '    local ok, f = pcall(r)',
    '    if ok and type(f) == "function" then local ok2, b = pcall(f, function() end) if ok2 and type(b) == "string" then got = got + 1 end end',
    '  end',
    '  local mt = getmetatable("")',
    '  if type(mt) == "table" then mt.__index.upper = function() return "evil" end end',
    '  return { { why = ("%d routes, metatable %s"):format(got, tostring(mt)) } }',
    'end }' }, "\n") .. "\n" }
  local f = lint_text(assert(lint.load_rules({ checks })), "SELECT 1;\n")
  h.eq(f[1].why, "0 routes, metatable nil")
  h.eq(("x"):upper(), "X")
  h.eq(getmetatable(""), false, "migfix's own strings' metatable stays hidden (policy.lua)")
end

T["lint: migfix's own rules run in migfix's state; a team's run in a guest, as data"] = function()
  local checks = rule_dir { ["X7.lua"] = 'return { id = "X7", title = "t", check = function(s, ctx) end }\n' }
  h.eq(lint.is_shipped(h.root .. "/policies/checks"), true)
  h.eq(lint.is_shipped(h.root .. "/policies/../policies/checks"), true, "by its real path")
  h.eq(lint.is_shipped(checks), false)
  local rules = assert(lint.load_rules({ checks, h.root .. "/policies/checks" }))
  for _, r in ipairs(rules) do
    if r.id == "X7" then
      h.eq(r.check, nil) h.eq(type(r.source), "string") h.eq(r.file, checks .. "/X7.lua")
    else
      h.eq(type(r.check), "function", r.id) h.eq(r.source, nil, r.id)
    end
  end
  -- a team rule with the id of a shipped one replaces it, and runs in the guest
  checks = rule_dir { ["S6.lua"] = 'return { id = "S6", title = "mine", default_severity = "info", check = function(s, ctx) return { { why = tostring(getmetatable("")) } } end }\n' }
  rules = assert(lint.load_rules({ checks, h.root .. "/policies/checks" }))
  local f = lint_text(rules, 'CREATE INDEX "i" ON "T"("a");\n')
  local got
  for _, x in ipairs(f) do if x.rule == "S6" then got = x end end
  h.eq(got.why, "nil", "the guest's getmetatable")
  h.eq(got.title, "mine")
end

T["lint: a team rule over a 20,000-statement file: the unit handed in lazily, within the budget; s.node only for its statement"] = function()
  local checks = rule_dir { ["X5.lua"] = table.concat({
    'local kept',
    'return { id = "X5", title = "reader", default_severity = "info", check = function(s, ctx)',
    '  if s.index == 1 then kept = s.node return nil end',
    '  local last = ctx.statements[#ctx.statements]',
    '  local seg = ctx.segment_facts(s)',
    '  local gone = not pcall(function() return kept.CreateStmt.relation end)',
    '  if s.index % 5000 ~= 0 then return nil end',
    '  return { { why = ("%s %s last=%d seg=%s created=%s first_node=%s kept_gone=%s before=%d") :format(s.kind, next(s.node), last.line,',
    '    tostring(seg ~= nil), tostring(ctx.created_before(s, nil, "Item")), tostring(ctx.statements[1].node), tostring(gone),',
    '    s.index == 5000 and #ctx.before(s) or -1) } }',
    'end }' }, "\n") .. "\n" }
  local rules = assert(lint.load_rules({ checks, h.root .. "/policies/checks" }))
  local lines = { 'CREATE TABLE "Item" ("id" INTEGER NOT NULL, "name" TEXT, CONSTRAINT "Item_pkey" PRIMARY KEY ("id"));' }
  for i = 1, 20000 do lines[#lines + 1] = ("INSERT INTO \"Item\" (\"id\", \"name\") VALUES (%d, 'item %d;');"):format(i, i) end
  local text = table.concat(lines, "\n") .. "\n"
  local f = assert(lint.run_text(text, "big.sql", { rules = rules, settings = lint.settings(), sizes = {} }))
  local x5 = {}
  for _, x in ipairs(f) do if x.rule == "X5" then x5[#x5 + 1] = x end end
  h.eq(#x5, 4)
  h.eq(x5[1].why, "InsertStmt InsertStmt last=20001 seg=true created=true first_node=nil kept_gone=true before=4999")
  h.eq(x5[4].statement, 20000)
  local st = lint.team_stats(rules)
  h.eq(st.stopped, nil, "not stopped by the budget: " .. json.encode(st))
  h.eq(st.budget, 64 * 1024 * 1024)
end

T["lint: a team rule that never reads s.node costs no parse; one that does gets the statement's tree"] = function()
  local sql = require "migfix.sql"
  local text = 'CREATE TABLE "A" ("id" int);\nALTER TABLE "A" ADD COLUMN "b" int;\nCREATE INDEX "A_b" ON "A"("b");\n'
  local function parses(body)
    local checks = rule_dir { ["N1.lua"] = ('return { id = "N1", title = "n", default_severity = "info", check = function(s, ctx)\n  %s\nend }\n'):format(body) }
    local rules = assert(lint.load_rules({ checks, h.root .. "/policies/checks" }))
    local P = assert(lint.prepare(text, "m.sql"))
    local orig, n = sql.parse, 0
    sql.parse = function(...) n = n + 1 return orig(...) end
    local ok, f = pcall(lint.check, P, { rules = rules, settings = lint.settings() })
    sql.parse = orig
    assert(ok, f)
    local whys = {}
    for _, x in ipairs(f) do if x.rule == "N1" then whys[#whys + 1] = x.why end end
    return n, table.concat(whys, ",")
  end
  local n0 = parses("return { { why = s.kind } }")
  h.eq(n0, 0, "no statement parsed again")
  local n1, whys = parses("return { { why = next(s.node) } }")
  h.eq(n1, 3)
  h.eq(whys, "CreateStmt,AlterTableStmt,IndexStmt")
end

-- the memory budget ------------------------------------------------------------------------

T["memory: a bomb is stopped by the allocation budget, even under pcall; the process goes on"] = function()
  local e = failure(function()
    policy.evaluate({ simple("bomb", 'local t = {} while true do pcall(function() t[#t + 1] = ("x"):rep(1e6) .. #t end) end', "") }, M, ENV)
  end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "used more than 64 MB of memory (allocation budget)")
  h.contains(e.message, "bomb.lua:2")
  -- one big string
  e = failure(function() policy.evaluate({ simple("bomb2", 'local s = ("x"):rep(1 << 30) return #s > 0', "") }, M, ENV) end)
  h.contains(e.message, "allocation budget")
  -- and the next evaluation works (a sandbox of its own)
  local d = policy.evaluate({ simple("after_bomb", "return true", 'plan:note("fine")') }, M, ENV)
  h.eq(d.actions[1].text, "fine")
end

T["memory: the evidence handed in does not count against the budget"] = function()
  local big = {}
  for i = 1, 20000 do big[i] = { index = i, text = ("statement %d "):format(i):rep(20) } end
  local m = { name = "x", verdict = "complete", counts = { present = 1, absent = 0 }, statements = big }
  local d = policy.evaluate({ simple("reads_big", "return #m.statements == 20000", 'plan:note(#m.statements[20000].text)') }, m, ENV)
  h.eq(d.actions[1].text, tostring(#big[20000].text))
end

T["memory: a bomb in a lint rule is stopped by the budget, naming the rule's file:line"] = function()
  local checks = rule_dir { ["M1-bomb.lua"] = 'return { id = "M1", title = "bomb", check = function(s, ctx)\n  local t = {} while true do pcall(function() t[#t + 1] = ("x"):rep(1e6) .. #t end) end\nend }\n' }
  local rules = assert(lint.load_rules({ checks }))
  local e = failure(function() lint_text(rules, "CREATE TABLE a (id int);\n") end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, "lint rule M1 (" .. checks .. "/M1-bomb.lua) failed on m.sql:1")
  h.contains(e.message, "used more than 64 MB of memory (allocation budget) at " .. checks .. "/M1-bomb.lua:2")
end

-- migfix.lua ----------------------------------------------------------------------------------

local config = require "migfix.config"

T["migfix.lua: a loop is stopped by the deadline, naming migfix.lua:LINE"] = function()
  local p = h.tmpdir() .. "/migfix.lua"
  h.write(p, "local n = 0\nwhile true do\n  n = n + 1\nend\nreturn {}\n")
  local saved = guest.DEADLINE_SECONDS
  guest.DEADLINE_SECONDS = 0.5
  local ok, e = pcall(config.load, p)
  guest.DEADLINE_SECONDS = saved
  h.eq(ok, false)
  h.ok(ui.is_error(e), tostring(e))
  h.eq(e.code, ui.EXIT.USAGE)
  h.ok(e.message:find(p .. ":[23]: the configuration ran longer than 0.5 s %(deadline%)"), e.message)
end

T["migfix.lua: a memory bomb is stopped by the budget, naming migfix.lua:LINE"] = function()
  local p = h.tmpdir() .. "/migfix.lua"
  h.write(p, 'local t = {}\nwhile true do\n  t[#t + 1] = ("x"):rep(1e6) .. #t\nend\n')
  local e = failure(function() config.load(p) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, p .. ":3: the configuration used more than 64 MB of memory (allocation budget)")
end

T["migfix's own state, where the shipped lint rules run: the allow list and a deadline pcall cannot swallow"] = function()
  local env = policy.sandbox()
  local chunk = assert(load(table.concat({
    'local got = {}',
    'got[#got + 1] = tostring(getmetatable(""))',
    'got[#got + 1] = tostring(("").dump)',
    'got[#got + 1] = tostring(string.dump)',
    'got[#got + 1] = tostring(os.getenv)',
    'got[#got + 1] = tostring(pcall(function() return io end))',
    'return table.concat(got, " ")' }, "\n"), "=probe", "t", env))
  local ok, got = policy.with_deadline("lint rule", 1, chunk)
  h.eq(ok, true)
  h.eq(got, "nil nil nil nil false")
  h.eq(getmetatable(""), false, "hidden in migfix's own state too")
  local spin = assert(load("while true do pcall(function() while true do end end) end", "=spin", "t", policy.sandbox()))
  local ok2, e = policy.with_deadline("lint rule", 0.3, spin)
  h.eq(ok2, false)
  h.contains(tostring(e), "lint rule ran longer than 0.3 s (deadline)")
  h.eq(select(2, policy.with_deadline("lint rule", 1, function() return "next" end)), "next", "the next call has its own deadline")
end

T["migfix.lua: cannot change migfix's string table; a function is not configuration"] = function()
  local p = h.tmpdir() .. "/migfix.lua"
  h.write(p, 'string.format = function() return "x" end\nreturn { default_environment = "dev", environments = { dev = {} } }\n')
  local cfg = config.load(p)
  h.eq(cfg.default_environment, "dev")
  h.eq(("%d"):format(1), "1")
  h.write(p, 'return {\n  environments = {\n    dev = { url = function() return "x" end },\n  },\n}\n')
  local e = failure(function() config.load(p) end)
  h.eq(e.code, ui.EXIT.USAGE)
  h.contains(e.message, p .. ":3: the configuration must be plain data")
  h.contains(e.message, "environments.dev.url: a function cannot leave the sandbox")
  -- getenv and env still work for migfix.lua (the operator's own file)
  h.write(p, 'return { default_environment = getenv("MIGFIX_TEST_URL") and "dev" or "none", environments = { dev = { url = env "DATABASE_URL" } } }\n')
  cfg = config.load(p)
  h.eq(cfg.default_environment, "dev")
  h.same(cfg.environments.dev.url, { env = "DATABASE_URL" })
end

-- redaction ----------------------------------------------------------------------------------

T["redaction: notes, refusals, hints, objects and reasons never show a registered secret or a URL password"] = function()
  local secret = "s3cr3t-" .. os.time()
  policy.add_secret(secret)
  local a = simple("leak_why", ('return false, "declined %s"'):format(secret), "")
  local b = simple("leak", "return true", ([[
    plan:note("pw %s and postgresql://u:hunter22@h/db")
    plan:refuse("reason %s", { hint = "hint %s", objects = { { name = "%s", nested = { "%s" } } } })]]):format(secret, secret, secret, secret, secret))
  local d, reasons = policy.evaluate({ a, b }, M, ENV)
  local all = json.encode({ d.actions, reasons })
  h.not_contains(all, secret)
  h.not_contains(all, "hunter22")
  h.contains(d.actions[1].text, "pw **** and postgresql://u:****@h/db")
  h.eq(d.actions[2].objects[1].name, "****")
  h.eq(reasons[1].why, "declined ****")
  -- errors too
  local e = failure(function() policy.evaluate({ simple("leak_err", ('error("boom %s")'):format(secret), "") }, M, ENV) end)
  h.not_contains(e.message, secret)
  -- URL passwords (raw and percent-decoded) register through add_url_secrets
  policy.add_url_secrets("postgresql://me:p%40ss-word9@localhost/db")
  h.eq(policy.redact("x p@ss-word9 y p%40ss-word9"), "x **** y ****")
end

-- through the CLI, on a real PostgreSQL --------------------------------------------------------

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }

local function pw_url(name)
  h.ok(PW and PW ~= "", "MIGFIX_TEST_PW is set (tests/lib/pg.sh)")
  return (h.url(name):gsub("://[^@/]*@", "://migfix_pw:" .. PW .. "@", 1))
end

--- M1 applied, M2 executed but recorded failed (verdict complete); policies in dir/pol
local function project(policies, chain)
  local pdir, mdir = h.project({ M1, M2 })
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  h.psql(aurl, M2[2])
  L.failed(aurl, M2[1], L.checksum(M2[2]), nil)
  for n, src in pairs(policies or {}) do h.write(pdir .. "/pol/" .. n .. ".lua", src) end
  local q = {}
  for _, n in ipairs(chain or {}) do q[#q + 1] = ("%q"):format(n) end
  h.write(pdir .. "/migfix.lua", ('return { policy_paths = { %q }, default_environment = "dev",\n  environments = { dev = { policies = { %s } } } }\n')
    :format(pdir .. "/pol", table.concat(q, ", ")))
  return pdir, pw_url(name), aurl
end

local function mf(pdir, url, args, env)
  local full = { "-C", pdir, "--url", url }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local out, err, rc = h.migfix(full, { env = env })
  h.not_contains(out .. err, PW, "password in the output of migfix " .. table.concat(args, " "))
  return out, err, rc
end

local function ledger_summary(aurl)
  local t = {}
  for _, r in ipairs(L.rows(aurl)) do
    t[#t + 1] = ("%s:%s:%s"):format(r.migration_name, r.finished_at and "finished" or "-", r.rolled_back_at and "rolled_back" or "-")
  end
  table.sort(t)
  return table.concat(t, " ")
end

T["cli: a string-tampering policy before apply-if-complete: run --yes does exactly what apply-if-complete decides"] = function()
  -- what apply-if-complete alone does
  local cdir, curl, caurl = project({}, { "apply-if-complete" })
  local _, cerr, crc = mf(cdir, curl, { "run", "--yes" })
  h.eq(crc, 0, cerr)
  local want = ledger_summary(caurl)
  -- the same with the tampering policy first
  local pdir, url, aurl = project({ tamper = TAMPER }, { "tamper", "apply-if-complete" })
  local out, err, rc = mf(pdir, url, { "run", "--yes" })
  h.eq(rc, 0, out .. err)
  h.eq(ledger_summary(aurl), want, "the ledger as apply-if-complete leaves it")
  h.ok(#L.rows(aurl) >= 2, "no ledger row deleted")
  local jout, jerr, jrc = mf(pdir, url, { "journal", "--json" })
  h.eq(jrc, 0, jerr)
  local doc = assert(json.decode(jout))
  local marked
  for _, e in ipairs(doc.entries) do
    if e.action == "mark_applied" then marked = e end
    h.ok(e.policy ~= "tamper", "no entry credits the tampering policy")
  end
  h.ok(marked, "a mark_applied entry: " .. jout)
  h.eq(marked.policy, "apply-if-complete")
  h.eq(marked.migration, M2[1])
  local vout, verr, vrc = mf(pdir, url, { "journal", "--verify" })
  h.eq(vrc, 0, vout .. verr)
  h.contains(vout, "intact")
  local sout = mf(pdir, url, { "status", "--json" })
  h.eq(assert(json.decode(sout)).headline, "up to date: 2 migrations applied")
end

T["cli: what a policy emits is redacted: the connection's password never printed, in JSON or journaled"] = function()
  local leak = ([[
local p = { name = "leak" }
function p.applies(m) return true end
function p.decide(m, plan)
  plan:note("note %s")
  plan:refuse("reason %s", { hint = "hint %s", objects = { { kind = "table", name = "%s" } } })
end
return p
]]):format(PW, PW, PW, PW)
  local pdir, url, aurl = project({ leak = leak }, { "leak" })
  for _, args in ipairs { { "plan" }, { "plan", "--json" }, { "run", "--yes" }, { "run", "--yes", "--json" } } do
    local out, err, rc = mf(pdir, url, args) -- mf asserts the password is not in stdout/stderr
    h.eq(rc, 1, table.concat(args, " ") .. ": " .. out .. err)
    h.contains(out .. err, "****", table.concat(args, " "))
  end
  local j = h.psql(aurl, "SELECT coalesce(string_agg(row_to_json(j)::text, E'\\n'), '') FROM migfix.journal j")
  h.contains(j, "refuse")
  h.not_contains(j, PW, "journal table")
  local f = io.open(pdir .. "/.migfix/journal.jsonl")
  if f then h.not_contains(f:read("a"), PW, "journal file") f:close() end
end

T["cli: a policy reading os.getenv(\"DATABASE_URL\"): exit 2 at its line, nothing printed of the URL"] = function()
  local src = 'local p = { name = "getenv" }\nfunction p.applies(m)\n  local u = os.getenv("DATABASE_URL") or ""\n  return false, u:reverse()\nend\nfunction p.decide() end\nreturn p\n'
  local pdir, url = project({ getenv = src }, { "getenv", "apply-if-complete" })
  local out, err, rc = mf(pdir, url, { "plan" }, { DATABASE_URL = url })
  h.eq(rc, 2, out .. err)
  h.contains(err, "getenv.lua:3:")
  h.contains(err, "os.getenv is not available in the sandbox")
  h.not_contains(out .. err, PW:reverse())
end

T["cli: deadline with pcall in a policy and in a lint rule: exit 2 with file:line"] = function()
  local env = { MIGFIX_SANDBOX_DEADLINE = "0.5" }
  local spin = 'local p = { name = "spin" }\nfunction p.applies(m)\n  while true do pcall(function() while true do end end) end\nend\nfunction p.decide() end\nreturn p\n'
  local pdir, url, aurl = project({ spin = spin }, { "spin", "apply-if-complete" })
  local before = ledger_summary(aurl)
  for _, args in ipairs { { "plan" }, { "run", "--yes" } } do
    local out, err, rc = mf(pdir, url, args, env)
    h.eq(rc, 2, out .. err)
    h.contains(err, 'policy "spin" failed in applies(): ran longer than 0.5 s (deadline) at ' .. pdir .. "/pol/spin.lua:3")
  end
  h.eq(ledger_summary(aurl), before, "nothing written")
  h.write(pdir .. "/pol/checks/X1.lua", 'return { id = "X1", title = "spin", check = function(s, ctx)\n  while true do pcall(function() while true do end end) end\nend }\n')
  local out, err, rc = mf(pdir, url, { "lint", "--offline", "--all" }, env)
  h.eq(rc, 2, out .. err)
  h.contains(err, "ran longer than 0.5 s (deadline) at " .. pdir .. "/pol/checks/X1.lua:2")
end

T["cli: a memory bomb in a policy: exit 2 with a clear message, the process is not killed"] = function()
  local bomb = 'local p = { name = "bomb" }\nfunction p.applies(m)\n  local t = {}\n  while true do pcall(function() t[#t + 1] = ("x"):rep(1e6) .. #t end) end\nend\nfunction p.decide() end\nreturn p\n'
  local pdir, url = project({ bomb = bomb }, { "bomb" })
  local out, err, rc = mf(pdir, url, { "plan" })
  h.eq(rc, 2, "exit 2, not a signal: " .. out .. err)
  h.contains(err, 'policy "bomb" failed in applies(): used more than 64 MB of memory (allocation budget) at ' .. pdir .. "/pol/bomb.lua:4")
end

T["cli: a string pattern that backtracks for hours: the watchdog stops migfix with exit 2"] = function()
  local slow = 'local p = { name = "slow" }\nfunction p.applies(m)\n  return string.find(("a"):rep(40), ("a-"):rep(20) .. "b") ~= nil\nend\nfunction p.decide() end\nreturn p\n'
  local pdir, url, aurl = project({ slow = slow }, { "slow" })
  local before = ledger_summary(aurl)
  local out, err, rc = mf(pdir, url, { "run", "--yes" }, { MIGFIX_SANDBOX_DEADLINE = "0.3" })
  h.eq(rc, 2, out .. err)
  h.contains(err, 'policy "slow" ran longer than 0.3 s (deadline) inside a C function')
  h.contains(err, "migfix: hint: a string pattern that backtracks")
  h.eq(ledger_summary(aurl), before, "nothing written")
  -- the lock was released with the connection: the next run is not blocked
  h.write(pdir .. "/migfix.lua", 'return { default_environment = "dev", environments = { dev = { policies = { "apply-if-complete" } } } }\n')
  local _, err2, rc2 = mf(pdir, url, { "run", "--yes" })
  h.eq(rc2, 0, err2)
end

T["cli: while true do end in migfix.lua: every command exits 2 within the deadline, naming migfix.lua:LINE"] = function()
  local pdir, url = project({}, { "apply-if-complete" })
  h.write(pdir .. "/migfix.lua", "-- a configuration that never returns\nwhile true do end\nreturn {}\n")
  local env = { MIGFIX_SANDBOX_DEADLINE = "0.3" }
  for _, args in ipairs { { "status" }, { "diagnose" }, { "plan" }, { "run", "--yes" }, { "deploy" }, { "lint", "--offline" },
                          { "journal" }, { "resolve", "--applied", M2[1] }, { "simulate" }, { "check" } } do
    local out, err, rc = mf(pdir, url, args, env)
    h.eq(rc, 2, table.concat(args, " ") .. ": " .. out .. err)
    h.contains(err, pdir .. "/migfix.lua:2: the configuration ran longer than 0.3 s (deadline)", table.concat(args, " "))
  end
  h.write(pdir .. "/migfix.lua", 'local t = {}\nwhile true do t[#t + 1] = ("x"):rep(1e6) end\n')
  local out, err, rc = mf(pdir, url, { "status" })
  h.eq(rc, 2, out .. err)
  h.contains(err, pdir .. "/migfix.lua:2: the configuration used more than 64 MB of memory")
end

T["cli: MIGFIX_SANDBOX_DEADLINE must be a number of seconds"] = function()
  local pdir, url = project({}, { "apply-if-complete" })
  for _, v in ipairs { "soon", "0", "-1", "99999" } do
    local out, err, rc = mf(pdir, url, { "status" }, { MIGFIX_SANDBOX_DEADLINE = v })
    h.eq(rc, 2, v .. ": " .. out .. err)
    h.contains(err, ('invalid MIGFIX_SANDBOX_DEADLINE "%s"'):format(v))
  end
end

return T
