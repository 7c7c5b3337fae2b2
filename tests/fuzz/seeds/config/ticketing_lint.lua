-- The demo's configuration for the lint step (copy to the project root).
-- 300,000 tickets are "large" here (the default is 1,000,000 rows or 1 GB).
return {
  default_environment = "demo",
  environments = {
    demo = {
      url = env "DATABASE_URL",
      policies = { "apply-if-complete", "split-large-migration", "rollback-and-redeploy", "refuse-partial-or-drifted" },
      lint_before_deploy = true,
      lint = { large_rows = 100000 },
      deploy = { lock_timeout = "2s", retries = 3, retry_pause = "5s" },
    },
  },
}
