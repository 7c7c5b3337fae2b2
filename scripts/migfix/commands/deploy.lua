--- migfix deploy: apply pending migrations as prisma migrate deploy does.
local ui = require "migfix.ui"
local json = require "migfix.json"
local common = require "migfix.commands.common"

local C = {
  name = "deploy",
  summary = "apply pending migrations Prisma-compatibly (refuses while anything failed, like P3009)",
  usage = "deploy [--yes] [--json]",
  description = [[Applies the pending migrations in Prisma's order, writing _prisma_migrations exactly as
`prisma migrate deploy` does: pg_advisory_lock(72707369) first, then the ledger (read once),
one started row per migration, the file sent as ONE query (one implicit transaction), then
applied_steps_count and finished_at, or the error in logs and a stop. Refuses while a failed
migration is recorded (P3009) and on a non-empty schema without a ledger (P3005). Each
migration is journaled (an attempt entry before its script runs) and diagnosed again after
it: a migration whose objects are not all there afterwards fails the deploy (exit 4).
With lint_before_deploy = true in the environment, a migration with error-level lint findings
is not run (exit 1, the findings and the proposed split). With deploy = { lock_timeout = "2s",
retries = 3, retry_pause = "10s" }, each file waits at most lock_timeout for its locks and is
retried on 55P03 instead of queueing behind a long transaction.]],
  options = {
    { long = "yes", short = "y", help = "confirm writing when the environment asks" },
    { long = "json", help = "print a JSON document" },
  },
}

function C.run(ctx, opts)
  local p = ctx:project()
  local runner
  if p.env.deploy and p.env.deploy.lock_timeout then runner = require("migfix.lockwait").runner(p.env.deploy) end
  local asked = false
  if common.interactive(ctx, opts) then
    -- ask before taking Prisma's lock: a prompt must not hold other deploys
    local st = ctx:state(ctx:connect { readonly = true })
    if #(st.deploy.pending or {}) > 0 and not st.deploy.refuses then asked = common.confirm(ctx, opts) end
  end
  local result = require("migfix.deploy").run(ctx, {
    runner = runner,
    confirm = function() if not asked then common.confirm(ctx, opts) end end,
    on_migration = not opts.json and function(name, phase, info)
      if phase == "start" then
        ui.out(("Applying migration `%s`"):format(name))
      elseif phase == "failed" then
        if info.verify_failed then
          ui.print_error { message = info.message, hint = "the ledger records it applied, as Prisma would; check the objects named above" }
        else
          ui.print_error { message = ("P3018: migration %s failed to apply: %s%s"):format(name, info.sqlstate and (info.sqlstate .. " ") or "", tostring(info.error)),
                           detail = info.detail, hint = "the failure is recorded as Prisma records it; run migfix diagnose" }
        end
      end
    end or nil,
  })
  if opts.json then
    local f = result.failed
    ui.out(json.encode({ applied = json.array(result.applied), pending = json.array(result.pending),
                         failed = f and { name = f.name, error = f.error, sqlstate = f.sqlstate or json.null } or json.null,
                         exit = result.rc }, { pretty = true }))
  elseif #result.pending == 0 then
    ui.out("No pending migrations to apply.")
  elseif result.rc == ui.EXIT.OK then
    ui.out(("All migrations have been successfully applied (%d)."):format(#result.applied))
  end
  return result.rc
end

return C
