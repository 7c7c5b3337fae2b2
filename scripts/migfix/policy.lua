--- Policy runtime: load policies from the search path into a sandbox, walk
--- a chain top down, and collect the actions of the first policy that
--- applies. A policy only DECIDES (it returns actions through `plan`); the
--- engine executes them afterwards, so a policy that throws half way has
--- written nothing. See docs/policies.md.
local ui = require "migfix.ui"

local M = {}

M.ACTIONS = { "backup", "mark_applied", "mark_rolled_back", "redeploy", "drop_invalid_index", "refuse", "note", "check" }
--- What a policy may declare in `needs`: "posix" (luaposix through require),
--- "lint" (m.lint: lint findings and the proposed split), "data" (m.data: the
--- failing statement's precondition counted on the rows, migfix.datacheck).
M.NEEDS = { posix = true, lint = true, data = true }
M.BACKUP_SCOPES = { full = true, schema = true, ledger = true }
M.DEADLINE_SECONDS = 5

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

-- Strings share one metatable with the host. Its __index becomes a copy of
-- the string library without dump (so ("").dump is nil), and __metatable
-- hides the metatable itself from getmetatable: no policy or rule can reach
-- the table every string method call of the host goes through.
do
  local smt = getmetatable("")
  if smt and smt.__metatable == nil then
    local lib = copy(string)
    lib.dump = nil
    smt.__index = lib
    smt.__metatable = false
  end
end

-- The deadline of the evaluation running now (M.with_deadline): once it has
-- passed, every hook call raises again and a sandboxed pcall re-raises, so
-- pcall cannot swallow it.
local expired_what

local function sandboxed_pcall(f, ...)
  local res = table.pack(pcall(f, ...))
  if expired_what then error(expired_what, 0) end
  return table.unpack(res, 1, res.n)
end

local function sandboxed_getmetatable(v)
  if type(v) == "string" then return nil end
  return getmetatable(v)
end

--- The allow-listed base every policy runs on: no io, no os.execute/exit,
--- no os.getenv (the environment holds the database URLs), no
--- load/loadfile/dofile/require (except declared modules), no string.dump
--- and no way to the strings' metatable; a pcall cannot swallow the
--- deadline; reading or writing an undeclared global raises.
function M.sandbox(file, declared)
  local str = copy(string)
  str.dump = nil
  local env = {
    assert = assert, error = error, ipairs = ipairs, pairs = pairs, next = next, select = select,
    tonumber = tonumber, tostring = tostring, type = type, pcall = sandboxed_pcall, rawequal = rawequal,
    rawget = rawget, rawlen = rawlen, setmetatable = setmetatable, getmetatable = sandboxed_getmetatable,
    string = str, table = copy(table), math = copy(math), utf8 = copy(utf8),
    os = { time = os.time, date = os.date, clock = os.clock },
  }
  local required = { loaded = false, declared = false }
  env.require = function(name)
    if type(name) == "string" and (name == "posix" or name:match("^posix%.")) then
      if required.loaded and not required.declared then
        error(("policy %s uses luaposix but does not declare it: add needs = { \"posix\" }"):format(file or "?"), 2)
      end
      required[#required + 1] = name
      return require(name)
    end
    error(("policies cannot require \"%s\"; only luaposix (declare needs = { \"posix\" })"):format(tostring(name)), 2)
  end
  setmetatable(env, {
    __index = function(_, k) error(("undefined global '%s'"):format(tostring(k)), 2) end,
    __newindex = function(_, k) error(("assignment to undeclared global '%s' (use local)"):format(tostring(k)), 2) end,
  })
  return env, required
end

--- Call fn(...) under xpcall with a CPU deadline (a count hook that
--- pcall cannot swallow); returns xpcall's results, errors with a traceback.
---@param what? string who ran over, for the message ("policy", "lint rule")
---@param seconds? number default DEADLINE_SECONDS
function M.with_deadline(what, seconds, fn, ...)
  seconds = seconds or M.DEADLINE_SECONDS
  local deadline = os.clock() + seconds
  local msg = ("%s ran longer than %s s (deadline)"):format(what or "policy", tostring(seconds))
  local outer = expired_what
  expired_what = nil
  debug.sethook(function()
    if expired_what or os.clock() > deadline then
      expired_what = msg
      error(msg, 2)  -- again at every hook call until the evaluation returns
    end
  end, "", 100000)
  local res = table.pack(xpcall(fn, function(e)
    if ui.is_error(e) then return e end
    return debug.traceback(tostring(e), 2)
  end, ...))
  debug.sethook()
  if expired_what and res[1] then res = table.pack(false, msg) end
  expired_what = outer
  return table.unpack(res, 1, res.n)
end

local function with_deadline(fn, ...) return M.with_deadline("policy", nil, fn, ...) end

--- Find NAME.lua in the search path (team directories first, then the
--- shipped policies/).
function M.find(name, paths)
  if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") then
    ui.fail { message = ("invalid policy name \"%s\""):format(tostring(name)), code = ui.EXIT.USAGE }
  end
  for _, dir in ipairs(paths) do
    local p = dir .. "/" .. name .. ".lua"
    local f = io.open(p, "rb")
    if f then f:close() return p end
  end
  ui.fail { message = ("unrecognized policy \"%s\""):format(name),
            detail = "looked in: " .. table.concat(paths, ", "),
            hint = "check the policies list of the environment in migfix.lua, or add the directory to policy_paths",
            code = ui.EXIT.USAGE }
end

--- Load a policy file (text only) in a fresh sandbox; check its shape.
function M.load(path)
  local env, required = M.sandbox(path)
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    ui.fail { message = "syntax error in policy: " .. err, code = ui.EXIT.USAGE }
  end
  local ok, pol = with_deadline(chunk)
  if not ok then
    ui.fail { message = ("policy %s failed to load: %s"):format(path, tostring(pol):match("^[^\n]*")), detail = tostring(pol), code = ui.EXIT.USAGE }
  end
  if type(pol) ~= "table" or type(pol.name) ~= "string" or type(pol.applies) ~= "function" or type(pol.decide) ~= "function" then
    ui.fail { message = ("policy %s must return a table with name, applies(m, env) and decide(m, plan)"):format(path),
              hint = "see docs/policies.md for a complete example", code = ui.EXIT.USAGE }
  end
  for k in pairs(pol) do
    if not ({ name = true, description = true, applies = true, decide = true, needs = true })[k] then
      ui.fail { message = ("policy %s: unrecognized field \"%s\" (expected name, description, needs, applies, decide)"):format(path, tostring(k)), code = ui.EXIT.USAGE }
    end
  end
  local declared = false
  if pol.needs ~= nil and type(pol.needs) ~= "table" then
    ui.fail { message = ("policy %s: needs must be a list, e.g. needs = { \"lint\" }"):format(path), code = ui.EXIT.USAGE }
  end
  for _, n in ipairs(pol.needs or {}) do
    if not M.NEEDS[n] then
      ui.fail { message = ("policy %s: unrecognized need \"%s\" (expected %s)"):format(path, tostring(n), "posix, lint, data"),
                code = ui.EXIT.USAGE }
    end
    if n == "posix" then declared = true end
  end
  required.loaded, required.declared = true, declared
  if #required > 0 then
    if not declared then
      ui.fail { message = ("policy %s uses luaposix but does not declare it"):format(path), hint = "add needs = { \"posix\" } to the policy table", code = ui.EXIT.USAGE }
    end
  end
  pol.file = path
  return pol
end

function M.load_chain(names, paths)
  local chain = {}
  for _, n in ipairs(names) do chain[#chain + 1] = M.load(M.find(n, paths)) end
  return chain
end

--- What the policies of a chain need, as a set ({lint = true, ...}).
function M.needs(chain)
  local set = {}
  for _, pol in ipairs(chain) do
    for _, n in ipairs(pol.needs or {}) do set[n] = true end
  end
  return set
end

--- The plan object handed to decide(): each call appends one action.
local Plan = {}
Plan.__index = Plan

local function add(self, kind, t)
  t = t or {}
  t.action = kind
  self.actions[#self.actions + 1] = t
  return self
end

local function checked(call, t, allowed, nargs)
  if nargs > 1 then error(("%s takes one table argument, got %d arguments"):format(call, nargs), 3) end
  if t == nil then return {} end
  if type(t) ~= "table" then error(("%s expects a table: %s"):format(call, call .. " { ... }"), 3) end
  for k in pairs(t) do
    if not allowed[k] then error(("%s: unrecognized option \"%s\""):format(call, tostring(k)), 3) end
  end
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

local function no_args(call, n)
  if n > 0 then error(("%s takes no arguments, got %d"):format(call, n), 3) end
end

--- plan:backup{ scope = "full"|"schema"|"ledger", reason = "..." }
function Plan:backup(...)
  local t = checked("plan:backup", (...), { scope = true, reason = true }, select("#", ...))
  if t.scope ~= nil and not M.BACKUP_SCOPES[t.scope] then
    error(("plan:backup: unrecognized scope \"%s\" (expected full, schema or ledger)"):format(tostring(t.scope)), 2)
  end
  if t.reason ~= nil then t.reason = tostring(t.reason) end
  return add(self, "backup", t)
end
--- plan:mark_applied() — `resolve --applied` for this migration
function Plan:mark_applied(...) no_args("plan:mark_applied()", select("#", ...)) return add(self, "mark_applied") end
--- plan:mark_rolled_back() — `resolve --rolled-back` for this migration
function Plan:mark_rolled_back(...) no_args("plan:mark_rolled_back()", select("#", ...)) return add(self, "mark_rolled_back") end
--- plan:redeploy() — mark rolled back and deploy the current file, under one lock
function Plan:redeploy(...) no_args("plan:redeploy()", select("#", ...)) return add(self, "redeploy") end
--- plan:drop_invalid_index{ schema = "public", name = "Ticket_x_idx" } — DROP INDEX CONCURRENTLY IF EXISTS
--- of an INVALID index an interrupted CREATE INDEX CONCURRENTLY left (refused at run time if it is valid)
function Plan:drop_invalid_index(...)
  local t = checked("plan:drop_invalid_index", (...), { schema = true, name = true, table = true }, select("#", ...))
  if type(t.name) ~= "string" or t.name == "" then
    error("plan:drop_invalid_index needs the index: plan:drop_invalid_index { schema = \"public\", name = \"...\" }", 2)
  end
  return add(self, "drop_invalid_index", t)
end
--- plan:check() — after the writes, verify the ledger shows it applied and nothing failed
function Plan:check(...) no_args("plan:check()", select("#", ...)) return add(self, "check") end
--- plan:note(text) — a line in the report
function Plan:note(text, ...)
  no_args("plan:note(text)", select("#", ...))
  if text == nil then error("plan:note needs a text: plan:note(\"...\")", 2) end
  return add(self, "note", { text = tostring(text) })
end
--- plan:refuse(reason, { hint = "...", objects = {...} }) — no write; exit 1
function Plan:refuse(reason, ...)
  if reason == nil then error("plan:refuse needs a reason: plan:refuse(\"why\", { hint = \"...\" })", 2) end
  local t = checked("plan:refuse", (...), { hint = true, objects = true }, select("#", ...))
  t.reason = tostring(reason)
  if t.hint ~= nil then t.hint = tostring(t.hint) end
  return add(self, "refuse", t)
end

--- A read-only, deep copy of the evidence for policies.
local function freeze(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local proxy = {}
  seen[v] = proxy
  local store = {}
  for k, x in pairs(v) do store[k] = freeze(x, seen) end
  return setmetatable(proxy, {
    __index = store,
    __newindex = function() error("the evidence is read-only", 2) end,
    __pairs = function() return next, store, nil end,
    __len = function() return #store end,
  })
end
M.freeze = freeze

local function policy_error(pol, fn, err)
  local text = tostring(err)
  local first = text:match("^[^\n]*")
  ui.fail { message = ("policy \"%s\" failed in %s(): %s"):format(pol.name, fn, first),
            detail = text ~= first and text or nil,
            hint = ("fix %s; nothing was written (policies only decide, the engine writes afterwards)"):format(pol.file or "the policy file"),
            code = ui.EXIT.USAGE }
end

--- Walk the chain for one migration's evidence m. Returns {policy, actions}
--- for the first policy that applies (or nil), and the list of {policy, why}
--- of the policies before it that declined.
function M.evaluate(chain, m, envinfo)
  local reasons = {}
  local fm = freeze(m)
  local fe = freeze(envinfo or {})
  for _, pol in ipairs(chain) do
    local ok, applies, why = with_deadline(pol.applies, fm, fe)
    if not ok then policy_error(pol, "applies", applies) end
    if type(applies) ~= "boolean" then
      policy_error(pol, "applies", ("%s: applies() must return true or false, got %s"):format(pol.file or pol.name, type(applies) == "string" and ("\"" .. applies .. "\"") or type(applies)))
    end
    if applies then
      local plan = setmetatable({ actions = {}, policy = pol.name }, Plan)
      local dok, derr = with_deadline(pol.decide, fm, plan, fe)
      if not dok then policy_error(pol, "decide", derr) end
      if #plan.actions == 0 then
        plan.actions[1] = { action = "refuse", reason = ("policy \"%s\" applied but decided nothing"):format(pol.name) }
      end
      return { policy = pol, actions = plan.actions }, reasons
    end
    reasons[#reasons + 1] = { policy = pol.name, why = why ~= nil and tostring(why) or "does not apply" }
  end
  return nil, reasons
end

return M
