--- migfix plan: the dry run of the policy chain.
local ui = require "migfix.ui"
local common = require "migfix.commands.common"

local C = {
  name = "plan",
  summary = "dry run: what the environment's policy chain would do, with the SQL, on a read-only connection",
  usage = "plan [--env E] [--json]",
  description = [[Diagnoses every failed migration, walks the environment's policy chain (migfix.lua
`policies`, default: apply-if-complete, split-large-migration, rollback-and-redeploy,
refuse-partial-or-drifted) and prints the ordered actions of the first policy that applies,
with the exact ledger SQL (the new row id and the client time, which run picks, are shown as
<new uuid> and <now>). The evidence and the decision are the ones `migfix run` and
`migfix simulate` make (one pipeline); run makes them again under Prisma's lock.
The connection is read-only (default_transaction_read_only, enforced by the server): no
backup is taken and no journal table is created; the local journal file records that a plan
was made. When another session holds Prisma's migration lock, plan says so, and a migration
it is applying shows as in progress. Exit 0 when every failed migration has a plan that
writes, 1 when something is refused or no policy applies.]],
  options = { { long = "json", help = "print a JSON document (README \"plan --json\")" } },
}

function C.run(ctx, opts)
  local result = require("migfix.resolve").run(ctx, { mode = "plan" })
  if #result.items == 0 then
    if opts.json then
      ui.json(common.document(result))
    else
      ui.out(ui.paint("no failed migrations: nothing to resolve", "green"))
      local pending = result.E.st.deploy.pending or {}
      if #pending > 0 then ui.out(("%d pending migration(s): run migfix deploy"):format(#pending)) end
    end
    return ui.EXIT.OK
  end
  if opts.json then
    ui.json(common.document(result))
  else
    ui.out(ui.paint(("PLAN for environment %s — dry run on a read-only connection: nothing is written"):format(ctx:project().env_name), "bold"))
    ui.out("")
    common.print_plan(result)
  end
  local R = result.R
  for _, item in ipairs(result.items) do
    pcall(R.record, R, R:entry_of(item, "plan", "planned", { details = require("migfix.report").journal_details(item, result.started_at) }))
  end
  return result.rc
end

return C
