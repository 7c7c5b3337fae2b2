--- migfix run: run the environment's policy chain for real.
local C = {
  name = "run",
  summary = "resolve failed migrations with the environment's policy chain: backup, ledger write, journal, check",
  usage = "run [--env E] [--yes] [--json]",
  description = [[The same chain as `migfix plan`, executed: backups (pg_dump, verified), ledger writes
exactly as Prisma's resolve/deploy (under pg_advisory_lock(72707369), one transaction with the
journal entry), checks, then the environment's `after` hooks. Environments may require --yes
(confirm = "flag") or an interactive confirmation, a backup before any write, and forbid actions.]],
  options = {
    { long = "yes", short = "y", help = "confirm writing (environments with confirm = \"flag\" or \"interactive\")" },
    { long = "json", help = "print a JSON document of the actions and outcomes" },
  },
}

function C.run(ctx, opts)
  require("migfix.lint_hook").install(ctx)
  return require("migfix.resolve").command(ctx, opts, "run")
end

return C
