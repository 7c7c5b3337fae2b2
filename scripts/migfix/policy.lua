--- Policy runtime: load policies from the search path into a sandbox, walk
--- a chain top down, and collect the actions of the first policy that
--- applies. A policy only DECIDES (it returns actions through `plan`); the
--- engine executes them afterwards, so a policy that throws half way has
--- written nothing. See docs/policies.md.
local guest = require "migfix.guest"
local ui = require "migfix.ui"

local M = {}

M.ACTIONS = { "backup", "mark_applied", "mark_rolled_back", "redeploy", "drop_invalid_index", "refuse", "note", "check" }
--- What a policy may declare in `needs`: "posix" (luaposix through require),
--- "lint" (m.lint: lint findings and the proposed split), "data" (m.data: the
--- failing statement's precondition counted on the rows, migfix.datacheck).
M.NEEDS = { posix = true, lint = true, data = true }
M.BACKUP_SCOPES = { full = true, schema = true, ledger = true }

--- nil: guest.deadline() (5 s, or $MIGFIX_SANDBOX_DEADLINE); tests set it lower.
M.DEADLINE_SECONDS = nil

-- the host: migfix's own lint rules -------------------------------------------
-- The lint rules shipped in policies/checks are migfix's own code: they run in
-- migfix's state (fast, the whole ctx, nothing copied), over the same allow
-- list as a team's rules (M.sandbox) and with a deadline pcall cannot swallow
-- (M.with_deadline), so that a shipped rule can use nothing a team rule
-- cannot. Policies, team rules and migfix.lua run in a guest state
-- (migfix.guest); docs/policies.md "Sandbox" says why.

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

-- Strings share one metatable in migfix's state. Its __index becomes a copy
-- of the string library without dump, and __metatable hides it from
-- getmetatable: no code in this state reaches the table every string method
-- call goes through (a guest has a string metatable of its own).
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

--- The allow-listed environment migfix's own lint rules run in (in this
--- state; the same names as a guest's, migfix/guest/base.lua): no io, no
--- os.getenv/execute/exit, no load/loadfile/dofile/require, no string.dump
--- and no way to the strings' metatable; pcall cannot swallow the deadline;
--- reading or writing an undeclared global raises.
---@return table env
function M.sandbox()
  local str = copy(string)
  str.dump = nil
  local env = {
    assert = assert, error = error, ipairs = ipairs, pairs = pairs, next = next, select = select,
    tonumber = tonumber, tostring = tostring, type = type, pcall = sandboxed_pcall, rawequal = rawequal,
    rawget = rawget, rawlen = rawlen, setmetatable = setmetatable, getmetatable = sandboxed_getmetatable,
    string = str, table = copy(table), math = copy(math), utf8 = copy(utf8),
    os = { time = os.time, date = os.date, clock = os.clock },
  }
  setmetatable(env, {
    __index = function(_, k) error(("undefined global '%s'"):format(tostring(k)), 2) end,
    __newindex = function(_, k) error(("assignment to undeclared global '%s' (use local)"):format(tostring(k)), 2) end,
  })
  return env
end

--- Call fn(...) under xpcall with a CPU deadline (a count hook that
--- pcall cannot swallow); returns xpcall's results, errors with a traceback.
---@param what? string who ran over, for the message ("lint rule")
---@param seconds? number default guest.deadline()
function M.with_deadline(what, seconds, fn, ...)
  seconds = seconds or guest.deadline()
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

-- secrets ----------------------------------------------------------------------
-- Everything a policy emits (notes, refusals, hints, objects, reasons, errors)
-- is redacted before it leaves this module: URLs with passwords (db.redact,
-- through ui.redact) and the connection's own secrets, registered here.

local secrets, secret_set = {}, {}

--- Register a secret (a password) that policy output must never show.
---@param s string|nil
function M.add_secret(s)
  if type(s) ~= "string" or #s < 3 or secret_set[s] then return end
  secret_set[s] = true
  secrets[#secrets + 1] = s
  table.sort(secrets, function(a, b) return #a > #b end) -- longest first
end

local function unescape(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end

--- Register the password of a database URL (user:PASSWORD@, password=, sslpassword=), raw and decoded.
---@param url string|nil
function M.add_url_secrets(url)
  if type(url) ~= "string" then return end
  local auth = url:match("^[%w+.%-]+://([^/?#]*)@")
  local found = { auth and auth:match("^[^:]*:(.+)$"), url:match("[?&]password=([^&#]*)"), url:match("[?&]sslpassword=([^&#]*)") }
  for i = 1, 3 do
    local v = found[i]
    if v and v ~= "" then M.add_secret(v) M.add_secret(unescape(v)) end
  end
end

local function replace_plain(s, what, with)
  local out, i = {}, 1
  while true do
    local a, b = s:find(what, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = with
    i = b + 1
  end
  if i == 1 then return s end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

--- Text with every URL password and every registered secret masked.
---@param s string
---@return string
function M.redact(s)
  s = ui.redact(s)
  for _, x in ipairs(secrets) do s = replace_plain(s, x, "****") end
  return s
end

local function redact_deep(v, seen)
  if type(v) == "string" then return M.redact(v) end
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local o = {}
  seen[v] = o
  for k, x in pairs(v) do o[redact_deep(k, seen)] = redact_deep(x, seen) end
  return o
end

-- the guests -------------------------------------------------------------------

local function declares_posix(needs)
  for _, n in ipairs(needs or {}) do if n == "posix" then return true end end
  return false
end

local function new_guest(name, posix)
  return guest.new(("policy \"%s\""):format(name), { "policy" }, { posix = posix, deadline = M.DEADLINE_SECONDS })
end

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

--- Load a policy file (text only) in a sandbox of its own; check its shape.
--- The policy is kept as data (name, description, needs, file, source): each
--- evaluation runs it again in a fresh sandbox.
---@param path string
---@return table policy { name, description?, needs?, file, source }
function M.load(path)
  local f, ferr = io.open(path, "rb")
  if not f then ui.fail { message = ("could not read policy file: %s"):format(ferr), code = ui.EXIT.USAGE } end
  local source = f:read("a")
  f:close()
  local g <close> = new_guest(path, true)
  local ok, d, info = g:call("policy_load", source, "@" .. path)
  if not ok then
    ui.fail { message = M.redact(("policy %s failed to load: %s"):format(path, guest.explain(d, info))), code = ui.EXIT.USAGE }
  end
  if d.syntax then
    ui.fail { message = M.redact("syntax error in policy: " .. d.syntax), code = ui.EXIT.USAGE }
  end
  if d.error then
    ui.fail { message = M.redact(("policy %s failed to load: %s"):format(path, d.error:match("^[^\n]*"))),
              detail = M.redact(d.error), code = ui.EXIT.USAGE }
  end
  if d.type ~= "table" or not d.name or d.applies ~= "function" or d.decide ~= "function" then
    ui.fail { message = ("policy %s must return a table with name, applies(m, env) and decide(m, plan)"):format(path),
              hint = "see docs/policies.md for a complete example", code = ui.EXIT.USAGE }
  end
  for _, k in ipairs(d.fields) do
    if not ({ name = true, description = true, applies = true, decide = true, needs = true })[k] then
      ui.fail { message = ("policy %s: unrecognized field \"%s\" (expected name, description, needs, applies, decide)"):format(path, k), code = ui.EXIT.USAGE }
    end
  end
  if d.needs_type ~= "nil" and d.needs_type ~= "table" then
    ui.fail { message = ("policy %s: needs must be a list, e.g. needs = { \"lint\" }"):format(path), code = ui.EXIT.USAGE }
  end
  for _, n in ipairs(d.needs or {}) do
    if not M.NEEDS[n] then
      ui.fail { message = ("policy %s: unrecognized need \"%s\" (expected %s)"):format(path, n, "posix, lint, data"),
                code = ui.EXIT.USAGE }
    end
  end
  if #d.required > 0 and not declares_posix(d.needs) then
    ui.fail { message = ("policy %s uses luaposix but does not declare it"):format(path), hint = "add needs = { \"posix\" } to the policy table", code = ui.EXIT.USAGE }
  end
  return { name = d.name, description = d.description, needs = d.needs, file = path, source = source }
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

local function policy_error(pol, fn, err)
  local text = M.redact(tostring(err))
  local first = text:match("^[^\n]*")
  ui.fail { message = ("policy \"%s\" failed in %s(): %s"):format(pol.name, fn, first),
            detail = text ~= first and text or nil,
            hint = ("fix %s; nothing was written (policies only decide, the engine writes afterwards)"):format(pol.file or "the policy file"),
            code = ui.EXIT.USAGE }
end

--- Call fn of the policy's guest; a failure (an error in the policy, its
--- deadline, its memory budget) is a policy error.
local function call(g, pol, fn, name, ...)
  local res = table.pack(g:call(name, ...))
  if not res[1] then policy_error(pol, fn, guest.explain(res[2], res[3])) end
  return table.unpack(res, 2, res.n)
end

--- Walk the chain for one migration's evidence m. Returns {policy, actions}
--- for the first policy that applies (or nil), and the list of {policy, why}
--- of the policies before it that declined. Each policy runs in a sandbox
--- of its own with its own copy of m and envinfo (read-only there);
--- everything it emits comes back redacted (M.redact).
---@param chain table[] policies of load_chain
---@param m table the evidence of one migration (docs/policies.md)
---@param envinfo? table the environment as policies see it
---@return table|nil decision { policy, actions }
---@return table[] reasons { {policy, why} }
function M.evaluate(chain, m, envinfo)
  local reasons = {}
  for _, pol in ipairs(chain) do
    local g <close> = new_guest(pol.name, declares_posix(pol.needs))
    local d = call(g, pol, "load", "policy_load", pol.source, "@" .. pol.file)
    if d.syntax or d.error then policy_error(pol, "load", d.syntax or d.error) end
    local ok, applies, kind, why = call(g, pol, "applies", "policy_applies", m, envinfo or {})
    if not ok then policy_error(pol, "applies", applies) end
    if kind ~= "boolean" then
      policy_error(pol, "applies", ("%s: applies() must return true or false, got %s"):format(pol.file or pol.name, kind == "string" and ("\"" .. applies .. "\"") or kind))
    end
    if applies then
      local dok, actions = call(g, pol, "decide", "policy_decide", m, envinfo or {})
      if not dok then policy_error(pol, "decide", actions) end
      if #actions == 0 then
        actions[1] = { action = "refuse", reason = ("policy \"%s\" applied but decided nothing"):format(pol.name) }
      end
      return { policy = pol, actions = redact_deep(actions) }, redact_deep(reasons)
    end
    reasons[#reasons + 1] = { policy = pol.name, why = why ~= nil and why or "does not apply" }
  end
  return nil, redact_deep(reasons)
end

return M
