--- migfix plan: the dry run of the policy chain.
local C = {
  name = "plan",
  summary = "dry run: what the environment's policy chain would do, with the SQL, on a read-only connection",
  usage = "plan [--env E] [--json]",
  description = [[Diagnoses every failed migration, walks the environment's policy chain (migfix.lua
`policies`, default: apply-if-complete, split-large-migration, rollback-and-redeploy,
refuse-partial-or-drifted) and prints the ordered actions of the first policy that applies,
with the exact ledger SQL (the new row id and the client time, which run picks, are shown as
<new uuid> and <now>). The connection is read-only (default_transaction_read_only, enforced
by the server): no backup is taken and no journal table is created; the local journal file
records that a plan was made. Exit 0 when every failed migration has a plan that writes,
1 when something is refused or no policy applies.]],
  options = { { long = "json", help = "print a JSON document (README \"plan --json\")" } },
}

function C.run(ctx, opts)
  require("migfix.lint_hook").install(ctx)
  return require("migfix.resolve").command(ctx, opts, "plan")
end

return C
