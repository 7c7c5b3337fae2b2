--- migfix run: run the environment's policy chain for real.
local ui = require "migfix.ui"
local common = require "migfix.commands.common"
local resolve = require "migfix.resolve"

local C = {
  name = "run",
  summary = "resolve failed migrations with the environment's policy chain: backup, ledger write, journal, check",
  usage = "run [--env E] [--yes] [--json]",
  description = [[The same chain as `migfix plan`, executed. Prisma's advisory lock
(pg_advisory_lock(72707369)) is taken first; the ledger is read, every failed migration
diagnosed and the chain decided on what the lock holds; then the actions run: backups
(pg_dump, verified), ledger writes exactly as Prisma's resolve/deploy (one transaction with
the journal entry, each conditional on the rows it was decided from), the migration diagnosed
again after every write (anything but complete fails the run, exit 4), checks; the lock is
released and the environment's `after` hooks run. Environments may require --yes
(confirm = "flag") or an interactive confirmation of the plan (confirm = "interactive":
the run then refuses if the decision changed since you confirmed), a backup of at least a
given scope before any write, and forbid actions.]],
  options = {
    { long = "yes", short = "y", help = "confirm writing (environments with confirm = \"flag\" or \"interactive\")" },
    { long = "json", help = "print a JSON document of the actions and outcomes" },
  },
}

function C.run(ctx, opts)
  local p = ctx:project()
  local expect
  if common.interactive(ctx, opts) then
    -- show the plan, ask, then run only that plan (decided again under the lock)
    local plan = resolve.run(ctx, { mode = "plan" })
    if resolve.writes(plan.items) then
      common.print_plan(plan)
      ui.out("")
      common.confirm(ctx, opts)
      expect = resolve.fingerprint(plan.items)
    end
  end
  local printer, started = common.run_printer(opts), false
  local function on_step(...)
    if not started then
      started = true
      ui.out(ui.paint(("RUN for environment %s"):format(p.env_name), "bold"))
      ui.out("")
    end
    return printer(...)
  end
  local result = resolve.run(ctx, {
    mode = "run", expect = expect, on_step = printer and on_step,
    confirm = function() if not expect then common.confirm(ctx, opts) end end,
  })
  local rc = result.rc
  if opts.json then
    local doc = common.document(result)
    doc.exit = rc
    ui.json(doc)
  elseif #(result.items or {}) == 0 then
    ui.out(ui.paint("no failed migrations: nothing to resolve", "green"))
    local pending = result.E and result.E.st.deploy.pending or {}
    if #pending > 0 then ui.out(("%d pending migration(s): run migfix deploy"):format(#pending)) end
  elseif rc == ui.EXIT.OK then
    ui.out("")
    ui.out(ui.paint("resolved: prisma migrate deploy will no longer refuse (P3009)", "green"))
  end
  return rc
end

return C
