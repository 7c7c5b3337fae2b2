-- migfix/guest/policy.lua — runs inside one policy's sandbox state, after
-- base.lua: loads the policy file, calls applies() and decide(), and owns
-- the `plan` object whose verbs check their arguments (errors name the
-- policy's file:line). The actions stay in a table the policy cannot reach;
-- the host gets a copy of them after decide() returns.
local guest = guest
local setmetatable, type, tostring, select, pairs, ipairs, error = setmetatable, type, tostring, select, pairs, ipairs, error
local real_require = require -- nil unless the state was made for luaposix

local pol, file
local SCOPES = { full = true, schema = true, ledger = true }

local function is_posix(name) return type(name) == "string" and (name == "posix" or name:match("^posix%.") ~= nil) end

--- Load the policy text; describe what it returned (the host checks the shape).
function policy_load(text, chunkname)
  file = chunkname:gsub("^@", "")
  local required = { loaded = false, declared = false, names = {} }
  local env = guest.env {
    require = function(name)
      if is_posix(name) then
        if (required.loaded and not required.declared) or not real_require then
          error(("policy %s uses luaposix but does not declare it: add needs = { \"posix\" }"):format(file), 2)
        end
        required.names[#required.names + 1] = name
        return real_require(name)
      end
      error(("policies cannot require \"%s\"; only luaposix (declare needs = { \"posix\" })"):format(tostring(name)), 2)
    end,
  }
  local chunk, err = guest.load(text, chunkname, env)
  if not chunk then return { syntax = err } end
  local ok, p = guest.pcall(chunk)
  if not ok then return { error = p } end
  local d = { type = type(p), required = required.names }
  if type(p) ~= "table" then return d end
  d.fields = {}
  for k in pairs(p) do d.fields[#d.fields + 1] = type(k) == "string" and k or tostring(k) end
  d.name = type(p.name) == "string" and p.name or nil
  d.description = type(p.description) == "string" and p.description or nil
  d.applies, d.decide, d.needs_type = type(p.applies), type(p.decide), type(p.needs)
  if type(p.needs) == "table" then
    d.needs = {}
    for _, n in ipairs(p.needs) do
      d.needs[#d.needs + 1] = type(n) == "string" and n or tostring(n)
      if n == "posix" then required.declared = true end
    end
  end
  required.loaded = true
  pol = p
  return d
end

--- applies(m, env): ok, value (boolean or string), its type, why (text)
function policy_applies(m, env)
  local ok, a, why = guest.pcall(pol.applies, m, env)
  if not ok then return false, a end
  if why ~= nil then
    local okw, w = guest.pcall(tostring, why)
    if not okw then return false, w end
    why = w
  end
  local ta = type(a)
  return true, (ta == "boolean" or ta == "string") and a or nil, ta, why
end

-- the plan -------------------------------------------------------------------

local Plan = {}
Plan.__index = Plan
Plan.__metatable = false
local actions_of = setmetatable({}, { __mode = "k" })

local function add(self, kind, t)
  t = t or {}
  local bad = guest.bad_data(t, "plan:" .. kind)
  if bad then error(bad, 3) end
  t.action = kind
  local list = actions_of[self]
  list[#list + 1] = t
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
  if t.scope ~= nil and not SCOPES[t.scope] then
    error(("plan:backup: unrecognized scope \"%s\" (expected full, schema or ledger)"):format(tostring(t.scope)), 2)
  end
  if t.reason ~= nil then t.reason = tostring(t.reason) end
  return add(self, "backup", t)
end
function Plan:mark_applied(...) no_args("plan:mark_applied()", select("#", ...)) return add(self, "mark_applied") end
function Plan:mark_rolled_back(...) no_args("plan:mark_rolled_back()", select("#", ...)) return add(self, "mark_rolled_back") end
function Plan:redeploy(...) no_args("plan:redeploy()", select("#", ...)) return add(self, "redeploy") end
function Plan:drop_invalid_index(...)
  local t = checked("plan:drop_invalid_index", (...), { schema = true, name = true, table = true }, select("#", ...))
  if type(t.name) ~= "string" or t.name == "" then
    error("plan:drop_invalid_index needs the index: plan:drop_invalid_index { schema = \"public\", name = \"...\" }", 2)
  end
  return add(self, "drop_invalid_index", t)
end
function Plan:check(...) no_args("plan:check()", select("#", ...)) return add(self, "check") end
function Plan:note(v, ...)
  no_args("plan:note(text)", select("#", ...))
  if v == nil then error("plan:note needs a text: plan:note(\"...\")", 2) end
  return add(self, "note", { text = tostring(v) })
end
function Plan:refuse(reason, ...)
  if reason == nil then error("plan:refuse needs a reason: plan:refuse(\"why\", { hint = \"...\" })", 2) end
  local t = checked("plan:refuse", (...), { hint = true, objects = true }, select("#", ...))
  t.reason = tostring(reason)
  if t.hint ~= nil then t.hint = tostring(t.hint) end
  return add(self, "refuse", t)
end

--- decide(m, plan, env): ok, actions (or the error text)
function policy_decide(m, env)
  local plan = setmetatable({ policy = pol.name }, Plan)
  actions_of[plan] = {}
  local ok, err = guest.pcall(pol.decide, m, plan, env)
  if not ok then return false, err end
  return true, actions_of[plan]
end
