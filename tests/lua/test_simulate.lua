-- migfix simulate against the real test server: the seed case (ticketing,
-- a complete migration recorded as failed + one pending), a redeploy that
-- fails on duplicate data, a 200k-row type change, kill -9 leftovers,
-- --inject-failure, every --from mode and the errors before start.
local H = require "helper"
local json = require "migfix.json"
local sim = require "migfix.simulate"

local T = {}
local shq = H.shq
local FIX = H.root .. "/tests/fixtures/ticketing/prisma/migrations"
local INIT, SLA, MERGE = "20240105093000_init", "20240312141500_sla_kb_forms_email", "20240402101500_ticket_merge"

local function base() return (H.admin_url:gsub("%?.*$", "")) end

--- a project folder for database `name` with the given fixture migrations
local function project_for(name, migs, extra)
  local dir = H.tmpdir()
  local mdir = dir .. "/prisma/migrations"
  H.sh("mkdir -p " .. shq(mdir))
  H.sh(("cp %s/migration_lock.toml %s/"):format(shq(FIX), shq(mdir)))
  for _, m in ipairs(migs) do H.sh(("cp -r %s/%s %s/"):format(shq(FIX), m, shq(mdir))) end
  for _, m in ipairs(extra or {}) do H.write(mdir .. "/" .. m[1] .. "/migration.sql", m[2]) end
  H.write(dir .. "/.env", ('DATABASE_URL="%s?schema=public"\n'):format(H.url(name)))
  return dir, mdir
end

local seed_tpl
--- the seed case as a template database: init and the big migration
--- deployed, the big one then recorded as failed (killed after commit)
local function seed()
  if seed_tpl then return seed_tpl end
  local name = H.fresh_db()
  local dir = project_for(name, { INIT, SLA })
  local out, err, rc = H.migfix({ "deploy" }, { cwd = dir })
  assert(rc == 0, out .. err)
  H.psql(H.url(name), ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL WHERE migration_name = '%s'"):format(SLA))
  seed_tpl = name
  return name
end

local function seed_project()
  local name, url = H.fresh_db(seed())
  local dir, mdir = project_for(name, { INIT, SLA, MERGE })
  return dir, name, url, mdir
end

local function dump(url)
  local out, rc = H.sh(("pg_dump --restrict-key=migfix --no-password -d %s 2>&1"):format(shq(url)))
  assert(rc == 0, out)
  return out
end

local function copies()
  return H.psql(H.admin_url, "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'migfix\\_sim\\_%'"):gsub("%s+$", "")
end

local function simulate(dir, args, env)
  local argv = { "simulate" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return H.migfix(argv, { cwd = dir, env = env })
end

local function sim_json(dir, args, env)
  local a = { "--json" }
  for _, x in ipairs(args or {}) do a[#a + 1] = x end
  local out, err, rc = simulate(dir, a, env)
  local ok, doc = pcall(json.decode, out)
  if not ok or type(doc) ~= "table" then error("not JSON (rc " .. tostring(rc) .. "):\n" .. out .. "\n" .. err, 2) end
  return doc, rc, err
end

-- ---------------------------------------------------------------- pure helpers

T["url helpers: with_dbname keeps the query, with_param replaces a key"] = function()
  H.eq(sim.with_dbname("postgresql://u:p@h:5432/app?schema=x&sslmode=require", "other"),
       "postgresql://u:p@h:5432/other?schema=x&sslmode=require")
  H.eq(sim.with_dbname("postgresql://u@h", "db"), "postgresql://u@h/db")
  H.eq(sim.with_param("postgresql://h/db?schema=a&x=1", "schema", "b"), "postgresql://h/db?x=1&schema=b")
  H.eq(sim.with_param("postgresql://h/db", "schema", "my schema"), "postgresql://h/db?schema=my%20schema")
end

T["marker: written and parsed back"] = function()
  local m = sim.parse_marker(sim.marker("app", 4242, "2026-01-02T03:04:05Z", "box"))
  H.eq(m.db, "app") H.eq(m.pid, 4242) H.eq(m.host, "box") H.eq(m.started, "2026-01-02T03:04:05Z")
  H.ok(m.epoch and math.abs(m.epoch - 1767323045) < 2, "epoch")
  H.eq(sim.parse_marker("something else"), nil)
  H.eq(sim.pid_alive(999999999), false)
end

T["--inject-failure values: a number, random[:SEED]; anything else is a usage error"] = function()
  H.eq(sim.parse_inject("3").at, 3)
  H.eq(sim.parse_inject("random:7").seed, 7)
  H.eq(sim.parse_inject("random", "9").seed, 9)
  local err = H.raises(function() sim.parse_inject("0") end)
  H.contains(err.message, "invalid value for --inject-failure")
end

-- ---------------------------------------------------------------- the seed case

T["seed: safe to run, the real database byte-identical, no copy left, a journal line"] = function()
  local dir, _, url = seed_project()
  local before = dump(url)
  local out, err, rc = simulate(dir)
  H.eq(rc, 0, out .. err)
  H.contains(out, "safe to run: yes")
  H.contains(out, "apply-if-complete")
  H.contains(out, "backup — skipped")
  H.contains(out, "ACCESS EXCLUSIVE on \"public\".\"Ticket\"")
  H.contains(out, "longest ACCESS EXCLUSIVE hold:")
  H.eq(dump(url), before, "pg_dump of the real database")
  H.eq(copies(), "", "scratch databases left")
  local j = H.read(dir .. "/.migfix/journal.jsonl")
  H.contains(j, '"action":"simulate"')
  H.contains(j, '"outcome":"ok"')
end

T["seed --json: the trace shape"] = function()
  local dir = seed_project()
  local R, rc = sim_json(dir)
  H.eq(rc, 0)
  H.eq(R.verdict.safe, true)
  H.eq(R.copy.mode, "template")
  H.eq(R.copy.dropped, true)
  H.eq(R.chain[1].policy, "apply-if-complete")
  H.eq(R.chain[1].actions[2].outcome, "skipped")
  local u = R.units[1]
  H.eq(u.migration, MERGE) H.eq(u.mode, "transaction") H.eq(u.ok, true)
  H.eq(#u.statements, 3)
  H.eq(u.statements[1].locks[1].mode, "ACCESS EXCLUSIVE")
  H.eq(u.statements[1].locks[1].relation, '"public"."Ticket"')
  H.eq(u.holds[1].from_statement, 1)
  H.eq(R.verification.ok, true)
  H.eq(R.verification.second_run.noop, true)
  H.eq(R.verification.ledger.prisma_status.exit, 0)
  H.eq(R.longest_access_exclusive.relation, '"public"."Ticket"')
end

T["--inject-failure at the middle statement: the chain recovers, and says which policy acted"] = function()
  local dir, _, url = seed_project()
  local before = dump(url)
  local R, rc, err = sim_json(dir, { "--inject-failure", "2" })
  H.eq(rc, 0, err)
  H.eq(R.inject.at, 2)
  H.eq(R.inject.happened, true)
  H.eq(#R.inject.state_after.failed_rows, 1)
  H.eq(R.inject.state_after.failed_rows[1].migration, MERGE)
  H.eq(R.inject.state_after.failed_rows[1].logs, json.null, "Prisma could not write logs")
  H.eq(R.inject.recovery.recovered, true)
  H.eq(R.inject.recovery.policies[1].policy, "rollback-and-redeploy")
  H.eq(R.verdict.safe, true)
  H.contains(R.verdict.reasons[1], "rollback-and-redeploy")
  local inj = R.units[1].statements[2]
  H.eq(inj.injected, true)
  H.eq(dump(url), before)
  H.eq(copies(), "")
  local out = simulate(dir, { "--inject-failure", "random:3" })
  H.contains(out, "injected failure: the connection ended at statement")
  H.contains(out, "recovered: rollback-and-redeploy")
end

-- ---------------------------------------------------------------- failures and timings

T["an absent migration whose redeploy fails on a duplicate key: not safe, with the error"] = function()
  local name, url = H.fresh_db()
  local dir = project_for(name, {}, {
    { "20240101000000_init", 'CREATE TABLE "Organization" ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL);\n' },
    { "20240102000000_org_name_unique", '-- fixed? only a comment changed\nALTER TABLE "Organization" ADD COLUMN "billingEmail" TEXT;\n\nCREATE UNIQUE INDEX "Organization_name_key" ON "Organization"("name");\n' },
  })
  H.write(dir .. "/x", "")
  local mdir = dir .. "/prisma/migrations"
  os.rename(mdir .. "/20240102000000_org_name_unique", dir .. "/later")
  local out, err, rc = H.migfix({ "deploy" }, { cwd = dir })
  H.eq(rc, 0, out .. err)
  os.rename(dir .. "/later", mdir .. "/20240102000000_org_name_unique")
  H.psql(url, [[INSERT INTO "Organization" VALUES ('a', 'Acme'), ('b', 'Acme');
    INSERT INTO _prisma_migrations (id, checksum, started_at, migration_name, logs) VALUES
      ('6f1c1a52-6a55-4a7e-9c51-8d1c3a1e2b3c', repeat('0', 64), now(), '20240102000000_org_name_unique',
       E'A migration failed to apply.\n\nMigration name: 20240102000000_org_name_unique\n\nDatabase error code: 23505\n\nDatabase error:\nERROR: could not create unique index "Organization_name_key"\nDETAIL: Key (name)=(Acme) is duplicated.\n')]])
  local before = dump(url)
  local R, rc2 = sim_json(dir)
  H.eq(rc2, 1)
  H.eq(R.verdict.safe, false)
  H.eq(R.chain[1].policy, "rollback-and-redeploy")
  local all = table.concat(R.verdict.reasons, "\n")
  H.contains(all, "23505")
  local u = R.units[1]
  H.eq(u.ok, false) H.eq(u.error.sqlstate, "23505") H.eq(u.error.statement, 2)
  H.eq(dump(url), before, "the real database is untouched")
  H.eq(copies(), "")
  local out2, _, rc3 = simulate(dir)
  H.eq(rc3, 1)
  H.contains(out2, "safe to run: no")
  H.contains(out2, "23505")
end

T["a type change on 200k rows: ACCESS EXCLUSIVE and a rewrite, with its time"] = function()
  local name, url = H.fresh_db()
  local dir = project_for(name, {}, {
    { "20240101000000_big", 'CREATE TABLE "Big" ("id" INTEGER PRIMARY KEY, "v" INTEGER NOT NULL);\n' },
  })
  local out, err, rc = H.migfix({ "deploy" }, { cwd = dir })
  H.eq(rc, 0, out .. err)
  H.psql(url, [[INSERT INTO "Big" SELECT g, g FROM generate_series(1, 200000) g; ANALYZE "Big"]])
  H.write(dir .. "/prisma/migrations/20240102000000_bigint/migration.sql", 'ALTER TABLE "Big" ALTER COLUMN "v" SET DATA TYPE BIGINT;\n')
  local R, rc2 = sim_json(dir)
  H.eq(rc2, 0)
  local s = R.units[1].statements[1]
  H.eq(s.locks[1].mode, "ACCESS EXCLUSIVE")
  H.eq(s.locks[1].relation, '"public"."Big"')
  H.eq(s.rewrites[1].relation, '"public"."Big"')
  H.ok(s.rewrites[1].relfilenode_before ~= s.rewrites[1].relfilenode_after, "relfilenode changed")
  H.ok(s.ms > 5, "the rewrite takes time: " .. tostring(s.ms))
  H.eq(R.longest_access_exclusive.relation, '"public"."Big"')
  H.ok(R.longest_access_exclusive.ms >= s.ms, "hold covers the statement")
  local out2 = simulate(dir)
  H.contains(out2, "REWRITE \"public\".\"Big\"")
  H.contains(out2, "ACCESS EXCLUSIVE on \"public\".\"Big\" held")
end

T["kill -9 in the middle: the next run removes the leftover copy"] = function()
  local name = H.fresh_db()
  local dir, mdir = project_for(name, {}, { { "20240101000000_slow", "SELECT pg_sleep(20);\n" } })
  local pid = tonumber((H.sh(("cd %s && %s simulate >/dev/null 2>&1 & echo $!"):format(shq(dir), shq(H.bin)))))
  local left
  for _ = 1, 100 do
    left = copies()
    if left ~= "" then
      local c = H.psql(H.admin_url, ("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%s'"):format(left))
      if c:find("migfix simulation copy of", 1, true) then break end
    end
    H.sh("sleep 0.1")
  end
  H.ok(left ~= "", "a copy exists while the simulation runs")
  H.sh("sleep 0.5")
  H.sh("kill -9 " .. pid)
  H.sh("sleep 0.2")
  H.eq(copies(), left, "the copy survives kill -9")
  H.write(mdir .. "/20240101000000_slow/migration.sql", "SELECT 1;\n")
  local out, err, rc = simulate(dir, { "--from", "schema" })
  H.eq(rc, 0, out .. err)
  H.contains(out, "removed a leftover copy " .. left)
  H.eq(copies(), "")
end

T["SIGINT in the middle: the copy is dropped before exit"] = function()
  local name = H.fresh_db()
  local dir = project_for(name, {}, { { "20240101000000_slow", "SELECT pg_sleep(1.5);\n" } })
  local errf = dir .. "/err"
  local pid = tonumber((H.sh(("cd %s && %s simulate >/dev/null 2>%s & echo $!"):format(shq(dir), shq(H.bin), shq(errf)))))
  local seen = false
  for _ = 1, 100 do
    if copies() ~= "" then seen = true break end
    H.sh("sleep 0.05")
  end
  H.ok(seen, "a copy exists while the simulation runs")
  H.sh("sleep 0.3; kill -INT " .. pid)
  for _ = 1, 100 do
    local _, rc = H.sh("kill -0 " .. pid .. " 2>/dev/null")
    if rc ~= 0 then break end
    H.sh("sleep 0.1")
  end
  H.contains(H.read(errf), "simulation interrupted (SIGINT)")
  H.eq(copies(), "")
end

-- ---------------------------------------------------------------- copy modes

T["--from backup restores the latest verified backup"] = function()
  local dir = seed_project()
  local out, err, rc = H.migfix({ "backup" }, { cwd = dir })
  H.eq(rc, 0, out .. err)
  local R, rc2 = sim_json(dir, { "--from", "backup" })
  H.eq(rc2, 0)
  H.eq(R.copy.mode, "backup")
  H.ok(R.copy.backup.file:match("%.dump$"), "backup file")
  H.eq(R.verdict.safe, true)
  H.eq(copies(), "")
end

T["--from schema: structural check, says that there is no data"] = function()
  local dir, _, url = seed_project()
  local before = dump(url)
  local out, err, rc = simulate(dir, { "--from", "schema" })
  H.eq(rc, 0, out .. err)
  H.contains(out, "schema-only copy")
  H.contains(out, "safe to run: yes")
  H.eq(dump(url), before)
  H.eq(copies(), "")
end

T["--keep keeps the copy, with its marker"] = function()
  local dir = seed_project()
  local R = sim_json(dir, { "--keep" })
  H.eq(R.copy.kept, true)
  local c = H.psql(H.admin_url, ("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%s'"):format(R.copy.name))
  H.contains(c, "migfix simulation copy of ")
  H.psql(H.admin_url, "DROP DATABASE " .. R.copy.name)
end

-- ---------------------------------------------------------------- errors before start

T["template with other sessions connected: a clear error naming them"] = function()
  local dir, name, url = seed_project()
  local db = require "migfix.db"
  local other = assert(db.connect(url, { application_name = "someone-else" }))
  local out, err, rc = simulate(dir, { "--from", "template" })
  H.eq(rc, 1, out .. err)
  H.contains(err, ('cannot copy database "%s" as a template: 1 other session(s) are connected'):format(name))
  H.contains(err, "someone-else")
  H.contains(err, "--from backup")
  -- default mode: no backup to fall back on
  local _, err2, rc2 = simulate(dir)
  H.eq(rc2, 1)
  H.contains(err2, "other session(s) are connected and there is no verified full backup")
  other:close()
  H.eq(copies(), "")
end

T["no CREATEDB: a clear error before anything starts"] = function()
  local dir, name, url = seed_project()
  H.psql(H.admin_url, "DO $$ BEGIN CREATE ROLE sim_nocreate LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
  H.psql(url, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO sim_nocreate")
  local nurl = base():gsub("//[^@]*@", "//sim_nocreate@"):gsub("/[^/]*$", "/" .. name) .. "?schema=public"
  local out, err, rc = H.migfix({ "--url", nurl, "simulate" }, { cwd = dir })
  H.eq(rc, 1, out .. err)
  H.contains(err, 'role "sim_nocreate" cannot create databases')
  H.contains(err, "CREATEDB")
  H.eq(copies(), "")
end

T["too little disk: a clear error before anything starts"] = function()
  local dir = seed_project()
  local _, err, rc = simulate(dir, {}, { MIGFIX_SIM_FREE_BYTES = "1000" })
  H.eq(rc, 1)
  H.contains(err, "too little disk for the scratch copy")
  H.eq(copies(), "")
end

T["usage errors"] = function()
  local dir = seed_project()
  local _, err, rc = simulate(dir, { "--from", "nope" })
  H.eq(rc, 2) H.contains(err, 'invalid value for --from: "nope"')
  _, err, rc = simulate(dir, { "--inject-failure", "99" })
  H.eq(rc, 2) H.contains(err, "the rehearsal runs only 3 statement(s)")
  H.eq(copies(), "")
end

return T
