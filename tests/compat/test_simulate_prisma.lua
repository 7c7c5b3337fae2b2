-- migfix simulate against the real Prisma CLI: after the rehearsal, the
-- kept scratch copy is exactly what Prisma expects (`migrate status` exits
-- 0, `migrate deploy` has nothing to apply); after --inject-failure the
-- copy recovered by the chain is clean for Prisma too.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../lua/?.lua;" .. package.path
local H = require "helper"
local C = require "compat"
local json = require "migfix.json"

local T = {}
local shq = H.shq
local FIX = H.root .. "/tests/fixtures/ticketing/prisma/migrations"
local INIT, SLA, MERGE = "20240105093000_init", "20240312141500_sla_kb_forms_email", "20240402101500_ticket_merge"

local function seed_project()
  local name, url = H.fresh_db()
  local dir = H.tmpdir()
  local mdir = dir .. "/prisma/migrations"
  H.sh("mkdir -p " .. shq(mdir))
  H.sh(("cp %s/migration_lock.toml %s/"):format(shq(FIX), shq(mdir)))
  for _, m in ipairs({ INIT, SLA }) do H.sh(("cp -r %s/%s %s/"):format(shq(FIX), m, shq(mdir))) end
  H.write(dir .. "/.env", ('DATABASE_URL="%s?schema=public"\n'):format(url))
  local out, err, rc = H.migfix({ "deploy" }, { cwd = dir })
  assert(rc == 0, out .. err)
  H.psql(url, ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL WHERE migration_name = '%s'"):format(SLA))
  H.sh(("cp -r %s/%s %s/"):format(shq(FIX), MERGE, shq(mdir)))
  return dir, mdir, url
end

local function keep_and_check(args)
  local dir, mdir, url = seed_project()
  local rc0 = C.status(url .. "?schema=public", mdir)
  H.eq(rc0, 1, "Prisma sees the failed migration in the real database")
  local argv = { "simulate", "--keep", "--json" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local out, err, rc = H.migfix(argv, { cwd = dir })
  H.eq(rc, 0, out .. err)
  local R = json.decode(out)
  H.eq(R.verdict.safe, true)
  local copy = H.url(R.copy.name, "schema=public")
  local ok, e = pcall(function()
    local st, sout = C.status(copy, mdir)
    H.eq(st, 0, "prisma migrate status on the copy:\n" .. sout)
    H.contains(sout, "Database schema is up to date")
    local dout, drc = C.prisma(copy, mdir, { "migrate", "deploy" })
    H.eq(drc, 0, dout)
    H.contains(dout, "No pending migrations to apply")
    H.eq(C.status(url .. "?schema=public", mdir), 1, "the real database is unchanged for Prisma")
  end)
  H.psql(H.admin_url, "DROP DATABASE IF EXISTS " .. R.copy.name .. " WITH (FORCE)")
  if not ok then error(e, 0) end
  return R
end

T["simulate: the rehearsed copy is clean for the real Prisma CLI"] = function()
  keep_and_check()
end

T["simulate --inject-failure: the recovered copy is clean for the real Prisma CLI"] = function()
  local R = keep_and_check({ "--inject-failure", "2" })
  H.eq(R.inject.recovery.recovered, true)
  H.eq(R.inject.recovery.policies[1].policy, "rollback-and-redeploy")
end

return T
