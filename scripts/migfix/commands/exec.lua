--- migfix exec: run a custom remediation script with every primitive and luaposix.
local ui = require "migfix.ui"

local C = {
  name = "exec",
  summary = "run a Lua remediation script with all primitives (migfix.*, luaposix)",
  usage = "exec SCRIPT.lua [ARGS...]",
  description = [[The script runs with the full standard library, require of every migfix.* module
and luaposix, a global `arg` table (arg[0] = script, arg[1..] = ARGS) and a global
`migfix` context: migfix.project(), migfix.connect{readonly=}, migfix.state(conn), migfix.schema(),
and migfix.evidence(conn [, {pending = true}]): the evidence plan, run and simulate decide from
(docs/pipeline.md; each failed migration's diagnosis and policy evidence, what the chain needs).
Its return value, when an integer, is the exit code. A Lua error reaches you with file:line and a traceback.]],
  stop_at_operand = true,
  options = {},
}

function C.run(ctx, opts, args)
  local script = args[1]
  if not script then
    ui.fail { message = "exec needs a script", hint = "migfix exec SCRIPT.lua [ARGS...]", code = ui.EXIT.USAGE }
  end
  local chunk, lerr = loadfile(script, "t")
  if not chunk then
    local f = io.open(script, "rb")
    if not f then
      ui.fail { message = ("could not read script \"%s\""):format(script), hint = "check the path", code = ui.EXIT.USAGE }
    end
    f:close()
    ui.fail { message = "syntax error in script: " .. lerr, code = ui.EXIT.USAGE }
  end
  arg = { [0] = script, table.unpack(args, 2) }
  migfix = {
    ctx = ctx,
    project = function() return ctx:project() end,
    schema = function() return ctx:schema() end,
    connect = function(o) return ctx:connect(o) end,
    state = function(conn) return ctx:state(conn) end,
    evidence = function(conn, o) return (require("migfix.resolve").prepare(ctx, conn, o)) end,
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
