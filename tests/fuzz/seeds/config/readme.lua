return {
  default_environment = "development",
  policy_paths = { "ops/migfix-policies" },          -- team policies, searched first
  environments = {
    development = {
      url = env "DATABASE_URL",                        -- or a literal URL string
      policies = { "apply-if-complete", "rollback-and-redeploy", "refuse-partial-or-drifted" },
    },
    production = {
      url = env "PROD_DATABASE_URL",
      migrations = "prisma/migrations",
      schema = "public",                               -- ledger schema (default: the URL's ?schema=)
      confirm = "flag",                                -- none | flag (--yes) | interactive
      backup = { required = true, scope = "full", dir = "/var/backups/migfix" },
      forbid = { "redeploy" },                         -- mark_applied, mark_rolled_back, redeploy, deploy
      timeouts = { lock_timeout = "5s", statement_timeout = "15min", advisory_lock = "10s", connect = 10 },
      journal = { schema = "migfix", file = ".migfix/journal.jsonl" },
      after = { "npx prisma generate" },               -- run after a successful resolution, journaled
      unit = "file",                                   -- file (native engine) | statement (newer engines)
      lint_before_deploy = true,                       -- migfix deploy refuses error-level lint findings
      lint = { large_rows = 1000000, large_bytes = 1 << 30, errors = { "S6" } },
      deploy = { lock_timeout = "2s", retries = 3, retry_pause = "10s" },  -- lock-aware deploy
    },
  },
}
