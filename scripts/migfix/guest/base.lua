-- migfix/guest/base.lua — runs first inside every sandbox state
-- (engine/sandbox.c), before anything untrusted. It defines `guest`, the
-- helpers the other guest parts use: the allow-listed environment an
-- untrusted chunk gets, loading it (text only) and calling it with error
-- text that names file:line. Nothing here is reachable from that chunk.
-- Loaded by scripts/migfix/guest.lua; see docs/policies.md "Sandbox".
local real_setmetatable, getmetatable, rawget, load, pairs, type, tostring, xpcall, pcall, error =
  setmetatable, getmetatable, rawget, load, pairs, type, tostring, xpcall, pcall, error
local traceback = traceback
local os_time, os_date, os_clock, os_getenv = os.time, os.date, os.clock, os.getenv

guest = {}
guest.getenv = os_getenv

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end
guest.copy = copy

--- setmetatable without __gc: a finalizer runs when the collector decides,
--- outside any deadline, so it could loop forever.
local function setmetatable_checked(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc is not allowed in the sandbox (a finalizer would run outside the deadline)", 2)
  end
  return real_setmetatable(t, mt)
end

-- the os field last read that is not there ("getenv"), for the error text
local missing_os

--- os.time, os.date and os.clock; any other field is nil (os.getenv == nil),
--- and calling one says why (handler below).
local function os_subset()
  return real_setmetatable({ time = os_time, date = os_date, clock = os_clock }, {
    __index = function(_, k)
      missing_os = type(k) == "string" and k or nil
      return nil
    end,
    __metatable = false,
  })
end

-- getmetatable without the strings' (nil, as if they had none)
local function getmetatable_checked(v)
  if type(v) == "string" then return nil end
  return getmetatable(v)
end

--- A fresh environment over the allow list; reading or assigning an
--- undeclared global raises. extra: more names (require for policies).
function guest.env(extra)
  local env = {
    assert = assert, error = error, ipairs = ipairs, pairs = pairs, next = next, select = select,
    tonumber = tonumber, tostring = tostring, type = type, pcall = pcall, rawequal = rawequal,
    rawget = rawget, rawlen = rawlen, setmetatable = setmetatable_checked, getmetatable = getmetatable_checked,
    string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8), os = os_subset(),
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return real_setmetatable(env, {
    __index = function(_, k) error(("undefined global '%s'"):format(tostring(k)), 2) end,
    __newindex = function(_, k) error(("assignment to undeclared global '%s' (use local)"):format(tostring(k)), 2) end,
    __metatable = false,
  })
end

--- load(text, chunkname, "t", env): no bytecode.
function guest.load(text, chunkname, env) return load(text, chunkname, "t", env) end

local function handler(e)
  if type(e) ~= "string" then
    local ok, s = pcall(tostring, e)
    e = ok and type(s) == "string" and s or ("(error object is a %s value)"):format(type(e))
  end
  if missing_os and e:find("attempt to call a nil value (field '" .. missing_os .. "')", 1, true) then
    if missing_os == "getenv" then
      e = e .. ": os.getenv is not available in the sandbox: policies and lint rules cannot read environment "
        .. "variables (a policy decides from the evidence and env)"
    else
      e = e .. (": os.%s is not available in the sandbox (only os.time, os.date and os.clock)"):format(missing_os)
    end
    missing_os = nil
  end
  return traceback(e, 2)
end

--- xpcall(fn, ...) whose error is text with a traceback (the first line: file:line: message).
function guest.pcall(fn, ...) return xpcall(fn, handler, ...) end

--- nil when v is plain data (text, numbers, booleans, tables of them), else what is wrong and where.
function guest.bad_data(v, what, seen, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or t == "nil" then return nil end
  if t ~= "table" then return ("%s is a %s (only text, numbers, booleans and tables)"):format(what, t) end
  seen = seen or {}
  if seen[v] then return nil end
  seen[v] = true
  if (depth or 0) > 50 then return what .. " is nested too deeply" end
  for k, x in pairs(v) do
    local bad = guest.bad_data(k, what .. " (a key)", seen, (depth or 0) + 1)
      or guest.bad_data(x, what .. "." .. tostring(k), seen, (depth or 0) + 1)
    if bad then return bad end
  end
  return nil
end

--- Run one of migfix's own modules (no requires) and keep its value as global `name`.
function guest_define(name, text, chunkname)
  _G[name] = assert(load(text, chunkname, "t"))()
end
