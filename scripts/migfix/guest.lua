--- migfix.guest — untrusted Lua (policies, lint rules, migfix.lua) in a
--- Lua state of its own (migfix.sandbox, engine/sandbox.c).
---
--- A guest is a fresh lua_State with a CPU deadline per call and an
--- allocation budget, loaded with migfix's own guest code
--- (scripts/migfix/guest/*.lua: base.lua always, then the parts asked for).
--- Only data crosses, copied: arguments arrive read-only, results come back
--- as plain tables. docs/policies.md "Sandbox" says why and what it costs.
local sandbox = require "migfix.sandbox"
local ui = require "migfix.ui"

local M = {}

--- CPU seconds per call (each applies(), decide(), the rules of one
--- statement, the evaluation of migfix.lua); $MIGFIX_SANDBOX_DEADLINE overrides.
M.DEADLINE_SECONDS = 5
--- Bytes a guest may allocate beyond the data handed to it.
M.MEMORY_BYTES = 64 * 1024 * 1024

--- The deadline in force: $MIGFIX_SANDBOX_DEADLINE (seconds, 0 < s <= 3600) or M.DEADLINE_SECONDS.
---@return number seconds
function M.deadline()
  local v = os.getenv("MIGFIX_SANDBOX_DEADLINE")
  if v == nil or v == "" then return M.DEADLINE_SECONDS end
  local n = tonumber(v)
  if not n or n <= 0 or n > 3600 then
    ui.fail { message = ("invalid MIGFIX_SANDBOX_DEADLINE \"%s\""):format(v),
              hint = "give the sandbox deadline in seconds, greater than 0 and at most 3600 (default 5)",
              code = ui.EXIT.USAGE }
  end
  return n
end

local texts, codes = {}, {}

local function text_of(module)
  local t = texts[module]
  if t then return t end
  local path = package.searchpath(module, package.path)
  local f = path and io.open(path, "rb")
  if not f then error(("cannot find %s in package.path"):format(module), 0) end
  t = f:read("a")
  f:close()
  texts[module] = t
  return t
end

-- migfix's own guest code as bytecode, compiled once per process (a guest
-- per policy per migration would otherwise compile it again each time);
-- line information kept for tracebacks
local function code_of(module, chunkname)
  local c = codes[module]
  if c then return c end
  c = string.dump(assert(load(text_of(module), chunkname, "t")))
  codes[module] = c
  return c
end

local Guest = {}
Guest.__index = Guest

--- A new guest for `what` ("policy \"x\"", "lint rules", "migfix.lua").
---@param what string who runs in it (messages name it)
---@param parts string[] guest code to load after base: "policy", "lint", "config"
---@param opts? {posix?: boolean, deadline?: number, memory?: integer}
---@return table guest with :call(name, ...), :define(name, module), :close()
function M.new(what, parts, opts)
  opts = opts or {}
  local sb = sandbox.new {
    name = what, posix = opts.posix or false, deadline = opts.deadline or M.deadline(),
    memory = opts.memory or M.MEMORY_BYTES, path = package.path, cpath = package.cpath,
  }
  local g = setmetatable({ sb = sb, what = what }, Guest)
  for _, part in ipairs({ "base", table.unpack(parts or {}) }) do
    local name = "=migfix/guest/" .. part .. ".lua"
    local ok, err = sb:load(code_of("migfix.guest." .. part, name), name)
    if not ok then
      sb:close()
      error(("could not set up the sandbox (%s): %s"):format(part, tostring(err)), 0)
    end
  end
  return g
end

--- Call a guest function. Returns true and its results, or nil, message, info
--- (info.kind: "error" | "deadline" | "memory" | "data"; info.where: file:line).
function Guest:call(name, ...) return self.sb:call(name, ...) end

--- Load one of migfix's own Lua modules (no requires) into the guest as global `name`.
function Guest:define(name, module)
  local ok, err = self.sb:call("guest_define", name, text_of(module), "=" .. module)
  if not ok then error(("could not set up the sandbox (%s): %s"):format(module, tostring(err)), 0) end
end

function Guest:close() self.sb:close() end
Guest.__close = Guest.close

--- Whether a failure is one of the sandbox's limits (not an error of the code).
function M.is_limit(info) return info ~= nil and (info.kind == "deadline" or info.kind == "memory") end

--- "ran longer than 5 s (deadline) at file:line" for a limit, else the message.
---@param message string
---@param info table
---@return string
function M.explain(message, info)
  if M.is_limit(info) and info.where then return message .. " at " .. info.where end
  return message
end

return M
