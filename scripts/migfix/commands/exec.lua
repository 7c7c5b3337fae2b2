--- migfix exec: run a custom remediation script with every primitive and luaposix.
--- The environment's rules are a floor for scripts too: a writable connection
--- is handed out only after the environment's confirmation and, when
--- backup.required, after the required backup; migfix's writing primitives
--- (migfix.act and the ledger_write/actions functions a script requires)
--- refuse what the environment forbids.
local ui = require "migfix.ui"

local C = {
  name = "exec",
  summary = "run a Lua remediation script with all primitives (migfix.*, luaposix)",
  usage = "exec [--yes] SCRIPT.lua [ARGS...]",
  description = [[The script runs with the full standard library, require of every migfix.* module
and luaposix, a global `arg` table (arg[0] = script, arg[1..] = ARGS) and a global
`migfix` context: migfix.project(), migfix.connect{readonly=}, migfix.state(conn), migfix.schema(),
migfix.evidence(conn [, {pending = true}]): the evidence plan, run and simulate decide from
(docs/pipeline.md; each failed migration's diagnosis and policy evidence, what the chain needs),
and migfix.act(conn, ACTION, TARGET): one action exactly as run executes it (mark_applied,
mark_rolled_back, redeploy and deploy take a migration name, drop_invalid_index {schema=, name=}),
under Prisma's lock, journaled, the migration diagnosed again after a write.
The environment's rules are a floor for scripts as for policy chains: the first writable
connection (migfix.connect{} without readonly) is handed out only after the environment's
confirmation (confirm = "flag": give --yes before the script; "interactive": a typed yes) and,
with backup = { required = true }, after a backup of the required scope (journaled). An action
in forbid is refused (exit 1) by migfix.act and by the writing functions of migfix.ledger_write
(mark_applied, mark_rolled_back, deploy_one) and migfix.actions (execute) that the script
requires. SQL a script sends itself on a writable connection is its own: the confirmation and
the backup come first, forbid cannot see it.
Its return value, when an integer, is the exit code. A Lua error reaches you with file:line and a traceback.]],
  stop_at_operand = true,
  options = {
    { long = "yes", short = "y", help = "confirm writing when the environment asks (before SCRIPT)" },
  },
}

local function forbidden(p, action, via)
  ui.fail { message = ("environment \"%s\" forbids %s%s"):format(p.env_name, action:gsub("_", " "), via and (" (" .. via .. ")") or ""),
            hint = "the environment's forbid list binds scripts too; run the script with another environment's rules",
            code = ui.EXIT.ATTENTION }
end

--- the writing modules as a script sees them: forbidden actions raise
local function guarded(p, name, mod)
  local checks
  if name == "migfix.ledger_write" then
    checks = { mark_applied = "mark_applied", mark_rolled_back = "mark_rolled_back", deploy_one = "deploy" }
  elseif name == "migfix.actions" then
    checks = { execute = function(_, _, a) return type(a) == "table" and a.action or nil end }
  end
  if not checks then return mod end
  return setmetatable({}, {
    __index = function(_, k)
      local v = mod[k]
      local c = checks[k]
      if c == nil or type(v) ~= "function" then return v end
      return function(...)
        local action = type(c) == "function" and c(...) or c
        if action and p.forbid[action] then forbidden(p, action, name .. "." .. k) end
        return v(...)
      end
    end,
    __newindex = function() error(("%s is read-only for scripts"):format(name), 2) end,
  })
end

function C.run(ctx, opts, args)
  local script = args[1]
  if not script then
    ui.fail { message = "exec needs a script", hint = "migfix exec SCRIPT.lua [ARGS...]", code = ui.EXIT.USAGE }
  end
  local f = io.open(script, "rb")
  if not f then
    ui.fail { message = ("could not read script \"%s\""):format(script), hint = "check the path", code = ui.EXIT.USAGE }
  end
  f:close()
  local common = require "migfix.commands.common"
  local actions = require "migfix.actions"
  local lw = require "migfix.ledger_write"

  local floor_done = false
  --- the environment's floor, once, before the first writable connection
  local function floor()
    if floor_done then return end
    local p = ctx:project()
    common.confirm(ctx, opts, ("Let %s write to the %s database? Type yes to continue: "):format(script, p.env_name))
    if p.backup.required then
      local conn = ctx:connect {}
      local R = actions.context(ctx, conn, "run")
      local item = { m = { name = nil, verdict = "exec", summary = "migfix exec " .. script, counts = {}, error = {}, file = {} },
                     policy = "exec" }
      local ok, msg = actions.execute(R, item, { action = "backup", scope = p.backup.scope or "full",
        reason = "required by environment " .. p.env_name .. " before migfix exec " .. script })
      if not ok then ui.fail { message = "the required backup failed: " .. tostring(msg), code = ui.EXIT.FAILURE } end
      io.stderr:write(("migfix: backup (required by environment %s): %s\n"):format(p.env_name, tostring(msg)))
    end
    floor_done = true
  end

  local function connect(o)
    o = o or {}
    if not o.readonly and not o.url then floor() end
    return ctx:connect(o)
  end

  --- one action, exactly as `migfix run` executes it
  local function act(conn, action, target)
    local p = ctx:project()
    local def = actions.ACTIONS[action]
    if type(action) ~= "string" or not def or action == "refuse" or action == "note" or action == "backup" or action == "check" then
      error(("bad argument #2 to 'act' (expected one of %s)"):format(table.concat(require("migfix.config").forbiddable(), ", ")), 2)
    end
    if p.forbid[action] then forbidden(p, action, "migfix.act") end
    if type(conn) ~= "userdata" or conn:info().readonly then
      error("bad argument #1 to 'act' (expected a writable connection from migfix.connect{})", 2)
    end
    floor()
    local a = { action = action }
    local name
    if action == "drop_invalid_index" then
      if type(target) ~= "table" or type(target.name) ~= "string" then
        error("bad argument #3 to 'act' (expected {schema=, name=} of the INVALID index)", 2)
      end
      a.schema, a.name = target.schema, target.name
    else
      if type(target) ~= "string" or target == "" then error("bad argument #3 to 'act' (expected a migration name)", 2) end
      name = target
    end
    local R = actions.context(ctx, conn, "run")
    local item = { m = { name = name, verdict = "exec", summary = "migfix exec " .. script, counts = {}, error = {}, file = {} },
                   policy = "exec" }
    local ok, msg
    lw.with_lock(conn, actions.lock_ms(R), function()
      R:refresh()
      ok, msg = actions.execute(R, item, a)
    end)
    return ok, msg, item
  end

  local chunk_env = setmetatable({}, { __index = _G, __newindex = _G })
  local real_require = require
  rawset(chunk_env, "require", function(name)
    local mod = real_require(name)
    if name == "migfix.ledger_write" or name == "migfix.actions" then return guarded(ctx:project(), name, mod) end
    return mod
  end)
  local chunk, lerr = loadfile(script, "t", chunk_env)
  if not chunk then ui.fail { message = "syntax error in script: " .. lerr, code = ui.EXIT.USAGE } end
  arg = { [0] = script, table.unpack(args, 2) }
  migfix = {
    ctx = ctx,
    project = function() return ctx:project() end,
    schema = function() return ctx:schema() end,
    connect = connect,
    state = function(conn) return ctx:state(conn) end,
    evidence = function(conn, o) return (require("migfix.resolve").prepare(ctx, conn, o)) end,
    act = act,
    version = ctx.info.version, home = ctx.info.home,
  }
  local ok, r = xpcall(chunk, function(e)
    if ui.is_error(e) then return e end
    return debug.traceback(tostring(e), 2)
  end, table.unpack(args, 2))
  if not ok then
    if ui.is_error(r) then error(r, 0) end
    ui.fail { message = ("script %s failed: %s"):format(script, r:match("^[^\n]*")), detail = r, code = ui.EXIT.FAILURE }
  end
  return math.type(r) == "integer" and r or 0
end

return C
