-- migfix plan / run / resolve / deploy / undo against the real test server:
-- the seed story (ticketing, complete but recorded failed), absent and
-- partial verdicts, backups, journal, the advisory lock, policy errors,
-- environment rules, Prisma's resolve refusals, and no password anywhere.
-- Every migfix call goes through the password role migfix_pw (scram).
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local db = require "migfix.db"

local PW = os.getenv("MIGFIX_TEST_PW")
local TICK = h.root .. "/tests/fixtures/ticketing/prisma/migrations"
local CASES = h.root .. "/tests/fixtures/cases"
local INIT, BIG, MERGE = "20240105093000_init", "20240312141500_sla_kb_forms_email", "20240402101500_ticket_merge"

-- small project: User table, then a failed ADD COLUMN
local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }
local M3 = { "20240103000000_third", 'CREATE INDEX "User_name_idx" ON "User"("name");\n' }

local T = {}

-- helpers -------------------------------------------------------------------

--- the URL of database `name` through the password role
local function pw_url(name)
  h.ok(PW and PW ~= "", "MIGFIX_TEST_PW is set (tests/lib/pg.sh)")
  return (h.url(name):gsub("://[^@/]*@", "://migfix_pw:" .. PW .. "@", 1))
end

local transcript = {}
--- run migfix in project dir with --url; never a password in what it prints
local function mf(dir, url, args, opts)
  local full = { "-C", dir, "--url", url }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local out, err, rc = h.migfix(full, opts)
  transcript[#transcript + 1] = out .. err
  h.not_contains(out .. err, PW, "password in the output of migfix " .. table.concat(args, " "))
  return out, err, rc
end

local function sh_ok(cmd)
  local out, rc = h.sh(cmd .. " 2>&1")
  if rc ~= 0 then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

--- a project folder holding the given ticketing migrations (copied)
local function tick_project(names)
  local dir = h.tmpdir()
  local mdir = dir .. "/prisma/migrations"
  sh_ok("mkdir -p " .. h.shq(mdir) .. " && cp " .. h.shq(TICK .. "/migration_lock.toml") .. " " .. h.shq(mdir))
  for _, n in ipairs(names) do sh_ok("cp -r " .. h.shq(TICK .. "/" .. n) .. " " .. h.shq(mdir .. "/")) end
  return dir, mdir
end

local seed_template
--- a template database: ticketing init + the big migration executed in
--- full, the big row recorded as failed with logs NULL (the seed story)
local function seed_db()
  if not seed_template then
    local dir, mdir = tick_project { INIT, BIG }
    local name, url = h.fresh_db()
    local r = L.deploy(url, nil, mdir)
    h.ok(r.ok, "seed deploy: " .. tostring(r.error))
    h.psql(url, ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL WHERE migration_name = '%s'"):format(BIG))
    seed_template = name
    sh_ok("rm -rf " .. h.shq(dir))
  end
  local name = h.fresh_db(seed_template)
  return name, pw_url(name)
end

--- the small case: M1 applied, M2's statement executed, its row failed (logs)
local function small_complete(logs, extra)
  local migs = { M1, M2 }
  for _, m in ipairs(extra or {}) do migs[#migs + 1] = m end
  local dir, mdir = h.project(migs)
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  h.psql(aurl, M2[2])
  L.failed(aurl, M2[1], L.checksum(M2[2]), logs)
  return dir, pw_url(name), aurl, mdir
end

local function rows(url) return (L.rows(url)) end

local function rows_of(url, name)
  local out = {}
  for _, r in ipairs(rows(url)) do if r.migration_name == name then out[#out + 1] = r end end
  return out
end

local function status_doc(dir, url)
  local out, err, rc = mf(dir, url, { "status", "--json" })
  local doc = json.decode(out)
  h.ok(doc, "status --json: " .. out .. err)
  return doc, rc
end

local function nschemas(url, nsp)
  return h.psql(url, ("SELECT count(*) FROM pg_namespace WHERE nspname = '%s'"):format(nsp))
end

local function journal_count(url)
  if nschemas(url, "migfix") == "0\n" then return 0 end
  return tonumber(h.psql(url, "SELECT count(*) FROM migfix.journal"):match("%d+"))
end

local function files_under(dir)
  local out = h.sh("find " .. h.shq(dir) .. " -type f 2>/dev/null | sort")
  local t = {}
  for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function backups_of(dir)
  local t = {}
  for _, f in ipairs(files_under(dir .. "/.migfix/backups")) do
    if f:match("%.dump$") then t[#t + 1] = f end
  end
  return t
end

local function write_config(dir, text) h.write(dir .. "/migfix.lua", text) end

local function pg_dump_plain(url)
  return sh_ok(("pg_dump --no-password --restrict-key=migfix -d %s"):format(h.shq(url:gsub("%?.*$", ""))))
end

-- the seed story --------------------------------------------------------------

T["seed: diagnose complete, plan writes nothing, run = resolve --applied, deploy applies the next"] = function()
  local dir = tick_project { INIT, BIG }
  local name, url = seed_db()
  local aurl = h.url(name)
  local before = rows(aurl)
  h.eq(#before, 2)

  local out, err, rc = mf(dir, url, { "diagnose", "--json" })
  local d = json.decode(out)
  h.ok(d, "diagnose --json: " .. out .. err)
  local list = d.migrations or d.failed or d
  local found
  for _, m in ipairs(list) do if m.name == BIG then found = m end end
  h.ok(found, "diagnose names " .. BIG .. ": " .. out)
  h.eq(found.verdict, "complete")
  h.eq(rc, 1, "diagnose: a failed migration needs attention")

  -- plan: read-only, byte-identical dump, no journal schema, no backup
  local dump0 = pg_dump_plain(aurl)
  out, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 0, "plan exit:\n" .. out .. err)
  h.contains(out, "apply-if-complete")
  h.contains(out, "INSERT INTO")
  local dump1 = pg_dump_plain(aurl)
  h.ok(dump0 == dump1, "plan changed the database dump")
  h.eq(nschemas(aurl, "migfix"), "0\n", "plan created no migfix schema")
  h.eq(#backups_of(dir), 0, "plan wrote no backup")
  h.same(rows(aurl), before, "plan left the ledger")

  -- run
  out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, "run exit:\n" .. out .. err)
  h.contains(out, "resolved")
  local doc = status_doc(dir, url)
  h.eq(doc.deploy.refuses, false)
  h.eq(doc.summary.failed, 0)

  local after = rows(aurl)
  h.eq(#after, 3, "one row added")
  h.same(after[1], before[1], "init row untouched")
  -- old failed row: only rolled_back_at set
  local old = after[2]
  h.ok(old.rolled_back_at, "old row rolled back")
  local expect_old = {}
  for k, v in pairs(before[2]) do expect_old[k] = v end
  expect_old.rolled_back_at = old.rolled_back_at
  h.same(old, expect_old, "failed row: only rolled_back_at changed")
  -- the new row: what `prisma migrate resolve --applied` writes
  local new = after[3]
  h.ok(L.is_uuid4(new.id), "v4 uuid: " .. tostring(new.id))
  h.ok(new.id ~= old.id)
  h.eq(new.migration_name, BIG)
  h.eq(new.checksum, L.file_checksum(TICK .. "/" .. BIG .. "/migration.sql"))
  h.eq(new.logs, "")
  h.eq(new.applied_steps_count, 0)
  h.eq(new.started_at, new.finished_at)
  h.eq(new.rolled_back_at, nil)
  h.ok(old.rolled_back_at < new.started_at, "the new row's now is taken after the rollback's, as Prisma")

  -- backup: 0600, manifest, verified
  local dumps = backups_of(dir)
  h.eq(#dumps, 1, "one backup")
  h.eq(sh_ok("stat -c %a " .. h.shq(dumps[1])), "600\n")
  h.eq(sh_ok("stat -c %a " .. h.shq(dumps[1] .. ".json")), "600\n")
  out, err, rc = mf(dir, url, { "backups", "--verify" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "ok")

  -- journal verifies
  out, err, rc = mf(dir, url, { "journal", "--verify" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "intact")

  -- the later migration ships
  sh_ok("cp -r " .. h.shq(TICK .. "/" .. MERGE) .. " " .. h.shq(dir .. "/prisma/migrations/"))
  out, err, rc = mf(dir, url, { "deploy" })
  h.eq(rc, 0, "deploy:\n" .. out .. err)
  local m = rows_of(aurl, MERGE)
  h.eq(#m, 1)
  h.eq(m[1].applied_steps_count, 1)
  h.eq(m[1].logs, nil)
  h.eq(m[1].rolled_back_at, nil)
  h.ok(m[1].finished_at > m[1].started_at, "finished_at > started_at")
  h.eq(m[1].checksum, L.file_checksum(TICK .. "/" .. MERGE .. "/migration.sql"))
  local _, rc2 = status_doc(dir, url)
  h.eq(rc2, 0, "clean after deploy")
end

T["seed: run --json reports the actions and outcomes"] = function()
  local dir = tick_project { INIT, BIG }
  local _, url = seed_db()
  local out, err, rc = mf(dir, url, { "run", "--json" })
  h.eq(rc, 0, out .. err)
  local doc = json.decode(out)
  h.ok(doc, out)
  h.eq(doc.mode, "run")
  h.eq(doc.migrations[1].policy, "apply-if-complete")
  for _, a in ipairs(doc.migrations[1].actions) do h.eq(a.outcome, "ok", a.action) end
end

-- absent ----------------------------------------------------------------------

local DUP = "20240625130000_org_name_unique"
local DUP_SETUP = [[INSERT INTO "Organization" ("id", "name", "slug", "updatedAt") VALUES
  ('org_acme', 'Acme', 'acme', CURRENT_TIMESTAMP), ('org_acme_eu', 'Acme', 'acme-eu', CURRENT_TIMESTAMP),
  ('org_globex', 'Globex', 'globex', CURRENT_TIMESTAMP);]]

--- absent_dup_key: init, duplicate rows, the unique-index migration failed
--- for real (23505) with the native P3018 logs
local function dup_case()
  local dir = h.tmpdir()
  sh_ok("mkdir -p " .. h.shq(dir .. "/prisma") .. " && cp -rL " .. h.shq(CASES .. "/absent_dup_key/migrations") .. " " .. h.shq(dir .. "/prisma/"))
  local mdir = dir .. "/prisma/migrations"
  local name, aurl = h.fresh_db()
  local r = L.deploy(aurl, nil, mdir, INIT)
  h.ok(r.ok, r.error)
  h.psql(aurl, DUP_SETUP)
  r = L.deploy(aurl, nil, mdir)
  h.eq(r.code, "P3018", "the unique index fails")
  return dir, pw_url(name), aurl, mdir
end

T["absent + unchanged file + 23505: run refuses with the cause, ledger unchanged"] = function()
  local dir, url, aurl = dup_case()
  local before = rows(aurl)
  h.contains(before[2].logs, "Database error code: 23505")
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 1, "run exit:\n" .. out .. err)
  local text = out .. err
  h.contains(text, "23505")
  -- the data evidence names the duplicates (migfix.datacheck)
  h.contains(text, "2 rows share name = 'Acme'; remove or merge them")
  h.same(rows(aurl), before, "ledger unchanged")
  h.eq(#backups_of(dir), 0, "no backup for a refusal")
  -- journal: only the diagnosis and the refusal, no ledger-changing entry
  local acts = h.psql(aurl, "SELECT string_agg(action || ':' || outcome, ',' ORDER BY seq) FROM migfix.journal")
  h.eq(acts, "diagnosis:ok,refusal:refused\n")
  -- plan says the same, exit 1
  out, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 1)
  h.contains(out, "23505")
end

T["absent + changed file: redeploy, old row rolled back, new applied row"] = function()
  local dir, url, aurl, mdir = dup_case()
  local before = rows(aurl)
  -- the team fixed the migration: a plain index instead of a unique one
  local path = mdir .. "/" .. DUP .. "/migration.sql"
  local fixed = h.read(path):gsub("CREATE UNIQUE INDEX", "CREATE INDEX")
  h.write(path, fixed)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, "run:\n" .. out .. err)
  local after = rows(aurl)
  h.eq(#after, 3)
  h.same(after[1], before[1])
  local expect_old = {}
  for k, v in pairs(before[2]) do expect_old[k] = v end
  expect_old.rolled_back_at = after[2].rolled_back_at
  h.ok(after[2].rolled_back_at, "old row rolled back")
  h.same(after[2], expect_old, "failed row: only rolled_back_at")
  local new = after[3]
  h.eq(new.migration_name, DUP)
  h.eq(new.checksum, L.checksum(fixed))
  h.eq(new.applied_steps_count, 1)
  h.eq(new.logs, nil)
  h.ok(new.finished_at > new.started_at)
  h.ok(L.is_uuid4(new.id))
  h.eq(h.psql(aurl, [[SELECT count(*) FROM pg_indexes WHERE indexname = 'Organization_name_key']]), "1\n")
  local _, src = status_doc(dir, url)
  h.eq(src, 0)
  h.eq(#backups_of(dir), 1, "backup before the redeploy")
end

local function transient_case(logs)
  local dir, mdir = h.project { M1, M2 }
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  L.failed(aurl, M2[1], L.checksum(M2[2]), logs)
  return dir, pw_url(name), aurl
end

T["absent + transient error (57014, or NULL logs): redeploy"] = function()
  local timeout_logs = "A migration failed to apply. New migrations cannot be applied before the error is recovered from. Read more about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve\n\nMigration name: "
    .. M2[1] .. "\n\nDatabase error code: 57014\n\nDatabase error:\nERROR: canceling statement due to statement timeout\n"
  for _, logs in ipairs({ timeout_logs, false }) do
    local dir, url, aurl = transient_case(logs or nil)
    local out, err, rc = mf(dir, url, { "run" })
    h.eq(rc, 0, "run:\n" .. out .. err)
    h.contains(out, "rollback-and-redeploy")
    local r = rows_of(aurl, M2[1])
    h.eq(#r, 2)
    h.ok(r[1].rolled_back_at)
    h.eq(r[2].applied_steps_count, 1)
    h.ok(r[2].finished_at)
    h.eq(h.psql(aurl, [[SELECT count(*) FROM information_schema.columns WHERE table_name = 'User' AND column_name = 'name']]), "1\n")
  end
end

-- partial / drifted -----------------------------------------------------------

T["partial and drifted: refusal naming the objects, ledger unchanged"] = function()
  local MP = { "20240102000000_two", 'CREATE TABLE "A" ("id" INTEGER NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id"));\nCREATE TABLE "B" ("id" INTEGER NOT NULL, CONSTRAINT "B_pkey" PRIMARY KEY ("id"));\n' }
  -- partial: A exists, B does not
  local dir, mdir = h.project { M1, MP }
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  h.psql(aurl, 'CREATE TABLE "A" ("id" INTEGER NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id"))')
  L.failed(aurl, MP[1], L.checksum(MP[2]), nil)
  local before = rows(aurl)
  local out, err, rc = mf(dir, pw_url(name), { "run" })
  h.eq(rc, 1, out .. err)
  h.contains(out, "partial")
  h.contains(out, "B")
  h.contains(out, "refuse-partial-or-drifted")
  h.same(rows(aurl), before)
  -- drifted: both exist, B.id is text
  dir, mdir = h.project { M1, MP }
  name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  h.psql(aurl, 'CREATE TABLE "A" ("id" INTEGER NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id")); CREATE TABLE "B" ("id" TEXT NOT NULL, CONSTRAINT "B_pkey" PRIMARY KEY ("id"))')
  L.failed(aurl, MP[1], L.checksum(MP[2]), nil)
  before = rows(aurl)
  out, err, rc = mf(dir, pw_url(name), { "run" })
  h.eq(rc, 1, out .. err)
  h.contains(out, "drifted")
  h.contains(out, "B")
  h.contains(out, "id")
  h.same(rows(aurl), before)
end

-- backups -----------------------------------------------------------------------

T["backup: pg_dump missing -> run fails clearly, ledger unchanged"] = function()
  local dir, url, aurl = small_complete(nil)
  local before = rows(aurl)
  local empty = h.tmpdir()
  local out, err, rc = mf(dir, url, { "run" }, { env = { PATH = empty .. ":/nonexistent", MIGFIX_PG_BINDIR = empty } })
  h.ok(rc ~= 0, "run must fail")
  h.eq(rc, 4, "an action failed mid-way:\n" .. out .. err)
  h.contains(err, "pg_dump")
  h.contains(err, "MIGFIX_PG_BINDIR")
  h.same(rows(aurl), before, "ledger unchanged")
end

-- journal and undo -------------------------------------------------------------

T["journal verifies after a run; undo restores the ledger rows exactly"] = function()
  local dir, url, aurl = small_complete(nil)
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
  out, err, rc = mf(dir, url, { "journal", "--verify" })
  h.eq(rc, 0, out .. err)
  out, err, rc = mf(dir, url, { "undo", "--yes" })
  h.eq(rc, 0, "undo:\n" .. out .. err)
  h.same(rows(aurl), before, "undo restored every column")
  out, err, rc = mf(dir, url, { "journal", "--verify" })
  h.eq(rc, 0, out .. err)
  local doc = status_doc(dir, url)
  h.eq(doc.deploy.refuses, true, "failed again, as before the run")
end

-- the advisory lock ------------------------------------------------------------

T["lock: another session holds Prisma's lock -> run fails within the bound naming its pid, nothing written"] = function()
  local dir, url, aurl = small_complete(nil)
  write_config(dir, 'return { environments = { default = { timeouts = { advisory_lock = "1s" } } }, default_environment = "default" }\n')
  local before = rows(aurl)
  local holder <close> = assert(db.connect(aurl, { application_name = "prisma-migrate" }))
  h.eq(holder:try_advisory_lock(72707369), true)
  local hpid = holder:info().backend_pid
  local t0 = os.time()
  local out, err, rc = mf(dir, url, { "run" })
  local elapsed = os.time() - t0
  h.eq(rc, 1, "run exit:\n" .. out .. err)
  h.contains(err, tostring(hpid))
  h.ok(elapsed < 10, "bounded wait, took " .. elapsed .. " s")
  h.same(rows(aurl), before, "nothing written")
  holder:advisory_unlock(72707369)
  -- and once released, it works
  out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
end

T["deploy waits for Prisma's lock, then re-reads the ledger (no double apply)"] = function()
  local dir, mdir = h.project { M1, M2 }
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  write_config(dir, 'return { environments = { default = { timeouts = { advisory_lock = "20s" } } }, default_environment = "default" }\n')
  local holder <close> = assert(db.connect(aurl))
  h.eq(holder:try_advisory_lock(72707369), true)
  -- migfix deploy in the background, blocked on the lock
  local tmp = h.tmpdir()
  os.execute(("( %s -C %s --url %s deploy >%s/out 2>&1; echo $? >%s/rc ) &"):format(h.shq(h.bin), h.shq(dir), h.shq(pw_url(name)),
    h.shq(tmp), h.shq(tmp)))
  local waiting = false
  for _ = 1, 100 do
    -- the lock is polled (pg_try_advisory_lock): wait for migfix's session,
    -- then give it time to read the ledger before it starts polling
    local r = assert(holder:query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND usename = 'migfix_pw'"))
    if r[1].n > 0 then os.execute("sleep 1") waiting = true break end
    os.execute("sleep 0.1")
  end
  h.ok(waiting, "migfix waits for the lock")
  -- meanwhile "another deployer" (holding the lock) applies M2
  L.deploy(aurl, nil, mdir)
  holder:advisory_unlock(72707369)
  for _ = 1, 200 do
    local f = io.open(tmp .. "/rc")
    if f then f:close() break end
    os.execute("sleep 0.1")
  end
  local out = h.read(tmp .. "/out")
  h.eq(h.read(tmp .. "/rc"), "0\n", out)
  h.eq(#rows_of(aurl, M2[1]), 1, "M2 applied once, not twice:\n" .. out)
  h.eq(rows_of(aurl, M2[1])[1].finished_at ~= nil, true)
end

-- policies: errors, sandbox, unknown names -------------------------------------

local function policy_project(policies, chain)
  local dir, url, aurl = small_complete(nil)
  for n, src in pairs(policies) do h.write(dir .. "/pol/" .. n .. ".lua", src) end
  local q = {}
  for _, n in ipairs(chain) do q[#q + 1] = ("%q"):format(n) end
  -- absolute: a relative policy_paths entry is tested on its own below
  write_config(dir, ('return { policy_paths = { %q }, default_environment = "dev",\n  environments = { dev = { policies = { %s } } } }\n'):format(dir .. "/pol", table.concat(q, ", ")))
  return dir, url, aurl
end

T["policy raising a Lua error mid-way: file:line, no ledger change"] = function()
  local src = table.concat({
    'local p = { name = "boom" }',
    'function p.applies() return true end',
    'function p.decide(m, plan)',
    '  plan:backup{}',
    '  plan:mark_applied()',
    '  error("kaboom")',
    'end',
    'return p',
  }, "\n") .. "\n"
  local dir, url, aurl = policy_project({ boom = src }, { "boom" })
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "run" })
  h.ok(rc ~= 0, "run must fail")
  h.contains(err, "boom.lua:6:")
  h.contains(err, "kaboom")
  h.same(rows(aurl), before)
  h.eq(#backups_of(dir), 0, "no action of the failed decision ran")
end

T["policy using io or os.execute: error, nothing written"] = function()
  for n, body in pairs({ uses_io = 'io.open("/etc/passwd")', uses_exec = 'os.execute("touch /tmp/migfix-pwned")' }) do
    local src = ('local p = { name = "%s" }\nfunction p.applies(m) %s return true end\nfunction p.decide(m, plan) plan:mark_applied() end\nreturn p\n'):format(n, body)
    local dir, url, aurl = policy_project({ [n] = src }, { n })
    local before = rows(aurl)
    local out, err, rc = mf(dir, url, { "run" })
    h.ok(rc ~= 0, n .. ": run must fail:\n" .. out .. err)
    h.contains(err, n .. ".lua:2:")
    h.same(rows(aurl), before)
  end
end

T["unknown policy name in the chain: exit 2"] = function()
  local dir, url, aurl = policy_project({}, { "apply-if-complete", "no-such-policy" })
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 2, out .. err)
  h.contains(err, "no-such-policy")
  h.same(rows(aurl), before)
  _, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 2)
end

T["policy_paths relative to the project root, as in the README"] = function()
  local src = 'local p = { name = "mark-only" }\nfunction p.applies(m) return m.verdict == "complete" end\nfunction p.decide(m, plan) plan:mark_applied() end\nreturn p\n'
  local dir, url = small_complete(nil)
  h.write(dir .. "/ops/migfix-policies/mark-only.lua", src)
  write_config(dir, 'return { policy_paths = { "ops/migfix-policies" }, environments = { development = { policies = { "mark-only" } } }, default_environment = "development" }\n')
  local out, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "mark-only")
end

-- environments -----------------------------------------------------------------

T["environment confirm = flag: run without --yes exits 1 and writes nothing"] = function()
  local dir, url, aurl = small_complete(nil)
  write_config(dir, 'return { default_environment = "production", environments = { production = { confirm = "flag" } } }\n')
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 1, out .. err)
  h.contains(err, "--yes")
  h.same(rows(aurl), before)
  h.eq(#backups_of(dir), 0)
  h.eq(journal_count(aurl), 0, "no journal entry written before confirmation")
  out, err, rc = mf(dir, url, { "run", "--yes" })
  h.eq(rc, 0, out .. err)
end

T["environment forbid mark_applied: refusal, ledger unchanged"] = function()
  local dir, url, aurl = small_complete(nil)
  write_config(dir, 'return { default_environment = "production", environments = { production = { forbid = { "mark_applied" } } } }\n')
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 1, out .. err)
  h.contains(out, "forbids")
  h.same(rows(aurl), before)
  h.eq(#backups_of(dir), 0)
end

T["environment backup.required adds a backup before the first write"] = function()
  local src = 'local p = { name = "mark-only" }\nfunction p.applies(m) return m.verdict == "complete" end\nfunction p.decide(m, plan) plan:mark_applied() plan:check() end\nreturn p\n'
  local dir, url, aurl = small_complete(nil)
  h.write(dir .. "/pol/mark-only.lua", src)
  write_config(dir, ('return { policy_paths = { %q }, default_environment = "production", environments = { production = {\n  policies = { "mark-only" }, backup = { required = true, scope = "schema" } } } }\n'):format(dir .. "/pol"))
  local out, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "required by the environment")
  out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
  local dumps = backups_of(dir)
  h.eq(#dumps, 1, "the required backup")
  h.contains(h.read(dumps[1] .. ".json"), '"schema"')
  h.eq(#rows_of(aurl, M2[1]), 2)
end

T["environment after hooks run after a successful resolution, journaled; a failing hook is exit 4"] = function()
  local dir, url, aurl = small_complete(nil)
  local marker = dir .. "/hook-ran"
  write_config(dir, ('return { default_environment = "dev", environments = { dev = {\n  after = { "echo generated > %s", "true" } } } }\n'):format(marker))
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
  h.contains(h.read(marker), "generated")
  h.contains(out, "after: echo generated")
  local hooks = h.psql(aurl, "SELECT count(*) FROM migfix.journal WHERE action = 'after_hook' AND outcome = 'ok'")
  h.eq(hooks:match("%d+"), "2")
  -- a failing hook: the resolution stands, the run says it failed
  dir, url, aurl = small_complete(nil)
  write_config(dir, 'return { default_environment = "dev", environments = { dev = { after = { "exit 3" } } } }\n')
  out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 4, out .. err)
  h.contains(err, "after hook failed")
  h.eq(h.psql(aurl, "SELECT outcome FROM migfix.journal WHERE action = 'after_hook'"):match("%a+"), "failed")
end

T["a failure in the middle of the ledger write leaves the ledger as it was; the journal file says what happened"] = function()
  local dir, url, aurl = small_complete(nil)
  -- sabotage: a journal table that refuses the insert (wrong shape), created beforehand
  h.psql(aurl, "CREATE SCHEMA migfix; CREATE TABLE migfix.journal (seq bigint PRIMARY KEY, hash text NOT NULL, broken int NOT NULL)")
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "run", "--yes" })
  h.eq(rc, 4, out .. err)
  h.contains(err, "could not write the journal")
  h.same(rows(aurl), before, "ledger unchanged")
  local file = h.read(dir .. "/.migfix/journal.jsonl")
  h.contains(file, '"journal_error"')
  -- sabotage inside the ledger transaction: the journal entry of mark_applied fails
  -- after the ledger UPDATE/INSERT ran; the transaction takes both back
  local dir3, url3, aurl3 = small_complete(nil)
  local db = require "migfix.db"
  local c = assert(db.connect(aurl3))
  assert(require("migfix.journal").ensure(c, "migfix"))
  assert(c:exec([[CREATE FUNCTION migfix.no_mark() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.action = 'mark_applied' THEN RAISE EXCEPTION 'sabotaged journal'; END IF; RETURN NEW; END $$;
    CREATE TRIGGER no_mark BEFORE INSERT ON migfix.journal FOR EACH ROW EXECUTE FUNCTION migfix.no_mark();]]))
  c:close()
  local before3 = rows(aurl3)
  out, err, rc = mf(dir3, url3, { "run" })
  h.eq(rc, 4, out .. err)
  h.contains(err, "sabotaged journal")
  h.same(rows(aurl3), before3, "ledger unchanged after a failure inside its transaction")
  local f3 = h.read(dir3 .. "/.migfix/journal.jsonl")
  h.ok(f3:find('"action":"mark_applied"[^\n]*"outcome":"failed"') or f3:find('"outcome":"failed"[^\n]*"action":"mark_applied"'), "failed attempt in the file:\n" .. f3)
  h.contains(f3, '"action":"backup"')
  -- and on success the file mirrors the database entry of the ledger write
  local dir2, url2 = small_complete(nil)
  out, err, rc = mf(dir2, url2, { "run" })
  h.eq(rc, 0, out .. err)
  local lines = h.read(dir2 .. "/.migfix/journal.jsonl")
  h.ok(lines:find('"action":"mark_applied"[^\n]*"outcome":"ok"') or lines:find('"outcome":"ok"[^\n]*"action":"mark_applied"'), "mark_applied mirrored:\n" .. lines)
end

-- no password anywhere -----------------------------------------------------------

T["no password in outputs, journal table, journal file, manifests"] = function()
  local dir, url, aurl = small_complete(nil, { M3 })
  local start = #transcript
  mf(dir, url, { "status" })
  mf(dir, url, { "diagnose" })
  mf(dir, url, { "plan", "--json" })
  local _, _, rc = mf(dir, url, { "run", "--json" })
  h.eq(rc, 0)
  mf(dir, url, { "deploy", "--json" })
  mf(dir, url, { "backup" })
  mf(dir, url, { "backups", "--json" })
  mf(dir, url, { "journal", "--json" })
  mf(dir, url, { "undo", "--yes" })
  -- errors too: a bad password must not be echoed either
  local bad = url:gsub(":[^:@/]*@", ":" .. PW .. "x@", 1)
  local out, err, rc2 = h.migfix { "-C", dir, "--url", bad, "status" }
  h.eq(rc2, 3, out .. err)
  h.not_contains(out .. err, PW)
  h.ok(#transcript - start >= 9)
  h.not_contains(h.psql(aurl, "SELECT string_agg(t::text, E'\\n') FROM migfix.journal t"), PW, "journal table")
  local files = files_under(dir .. "/.migfix")
  h.ok(#files >= 3, "journal file and backups")
  for _, f in ipairs(files) do
    if not f:match("%.dump$") then h.not_contains(h.read(f), PW, f) end
  end
  h.not_contains(table.concat(transcript, "\n"), PW)
end

-- resolve: Prisma's refusals ------------------------------------------------------

T["resolve --applied / --rolled-back: P3008, P3011, P3012, P3017 refusals, exit 1"] = function()
  local dir, mdir = h.project { M1, M2 }
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir)
  local url = pw_url(name)
  local before = rows(aurl)
  local cases = {
    { { "resolve", "--applied", M2[1] }, "P3008", "already recorded as applied" },
    { { "resolve", "--rolled-back", "20240109000000_never" }, "P3011", "never applied" },
    { { "resolve", "--rolled-back", M2[1] }, "P3012", "not in a failed state" },
    { { "resolve", "--applied", "20991231000000_nope" }, "P3017", "could not be found" },
  }
  for _, c in ipairs(cases) do
    local out, err, rc = mf(dir, url, c[1])
    h.eq(rc, 1, c[2] .. ":\n" .. out .. err)
    h.contains(out .. err, c[2])
    h.contains(out .. err, c[3])
  end
  h.same(rows(aurl), before, "no refusal wrote")
  h.eq(#backups_of(dir), 0, "validated before the backup")
end

T["resolve --applied and --rolled-back write Prisma's rows"] = function()
  local dir, url, aurl = small_complete(nil)
  local before = rows(aurl)
  local out, err, rc = mf(dir, url, { "resolve", "--applied", M2[1] })
  h.eq(rc, 0, out .. err)
  h.contains(out, "marked as applied")
  local r = rows_of(aurl, M2[1])
  h.eq(#r, 2)
  local old = {}
  for k, v in pairs(before[2]) do old[k] = v end
  old.rolled_back_at = r[1].rolled_back_at
  h.same(r[1], old)
  h.eq(r[2].logs, "")
  h.eq(r[2].applied_steps_count, 0)
  h.eq(r[2].started_at, r[2].finished_at)
  -- rolled-back on a fresh failed state: only rolled_back_at, no new row
  dir, url, aurl = small_complete("boom")
  before = rows(aurl)
  out, err, rc = mf(dir, url, { "resolve", "--rolled-back", M2[1] })
  h.eq(rc, 0, out .. err)
  h.contains(out, "marked as rolled back")
  local after = rows(aurl)
  h.eq(#after, 2)
  old = {}
  for k, v in pairs(before[2]) do old[k] = v end
  h.ok(after[2].rolled_back_at)
  old.rolled_back_at = after[2].rolled_back_at
  h.same(after[2], old)
  -- a second time: Prisma says the same and changes nothing
  out, err, rc = mf(dir, url, { "resolve", "--rolled-back", M2[1], "--no-backup" })
  h.eq(rc, 0, out .. err)
  h.same(rows(aurl), after)
end

-- scripts/examples ------------------------------------------------------------------

T["examples/list-failed.lua prints failed migrations with verdicts"] = function()
  local dir, url = small_complete(nil)
  local out, err, rc = mf(dir, url, { "exec", h.root .. "/scripts/examples/list-failed.lua" })
  h.eq(rc, 1, "exit 1 when something failed:\n" .. out .. err)
  h.contains(out, M2[1])
  h.contains(out, "complete")
  -- nothing failed: exit 0
  local dir2, mdir2 = h.project { M1 }
  local name2, aurl2 = h.fresh_db()
  L.deploy(aurl2, nil, mdir2)
  out, err, rc = mf(dir2, pw_url(name2), { "exec", h.root .. "/scripts/examples/list-failed.lua" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "no failed")
end

T["examples/drop-invalid-indexes.lua lists INVALID indexes, drops them with --yes"] = function()
  local dir, mdir = h.project { M1 }
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir)
  h.psql(aurl, [[INSERT INTO "User" ("email") VALUES ('a'), ('a')]])
  -- a failing CREATE UNIQUE INDEX CONCURRENTLY leaves an INVALID index
  local o, rc0 = h.sh(("psql -qAtX -d %s -c %s 2>&1"):format(h.shq(aurl), h.shq([[CREATE UNIQUE INDEX CONCURRENTLY "User_email_key" ON "User"("email")]])))
  h.ok(rc0 ~= 0, "the CIC fails: " .. o)
  h.eq(h.psql(aurl, [[SELECT count(*) FROM pg_index WHERE NOT indisvalid]]), "1\n")
  local url = pw_url(name)
  local script = h.root .. "/scripts/examples/drop-invalid-indexes.lua"
  local out, err, rc = mf(dir, url, { "exec", script })
  h.eq(rc, 1, "dry run: found, exit 1\n" .. out .. err)
  h.contains(out, "User_email_key")
  h.contains(out, "--yes")
  h.eq(h.psql(aurl, [[SELECT count(*) FROM pg_index WHERE NOT indisvalid]]), "1\n", "dry run dropped nothing")
  out, err, rc = mf(dir, url, { "exec", script, "--yes" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "DROP INDEX CONCURRENTLY")
  h.eq(h.psql(aurl, [[SELECT count(*) FROM pg_index WHERE NOT indisvalid]]), "0\n")
  out, err, rc = mf(dir, url, { "exec", script })
  h.eq(rc, 0, out .. err)
  h.contains(out, "no INVALID")
end

T["deploy onto a ledger of other rows: each migration's journal before/after are its own rows"] = function()
  local dir = h.project { M1, M2, M3 }
  local name, aurl = h.fresh_db()
  local url = pw_url(name)
  -- 300 applied rows of migrations that are not in the folder, and an
  -- earlier failed attempt of M2, rolled back
  local vals = {}
  for i = 1, 300 do
    vals[#vals + 1] = ("('%s', '%s', now(), '2023%010d_old', now(), 1)"):format(L.uuid4(), L.checksum(tostring(i)), i)
  end
  L.ensure_table(aurl)
  h.psql(aurl, 'INSERT INTO "_prisma_migrations" (id, checksum, started_at, migration_name, finished_at, applied_steps_count) VALUES '
    .. table.concat(vals, ", "))
  local old = L.failed(aurl, M2[1], L.checksum(M2[2]), "old error")
  L.rolled_back(aurl, old)
  local out, err, rc = mf(dir, url, { "deploy" })
  h.eq(rc, 0, out .. err)
  local jout = mf(dir, url, { "journal", "--json" })
  local doc = json.decode(jout)
  h.ok(doc, jout)
  local by = {}
  for _, e in ipairs(doc.entries or doc) do
    if e.action == "deploy" then by[e.migration] = e end
  end
  for _, m in ipairs({ M1, M3 }) do
    local e = by[m[1]]
    h.ok(e, "a deploy entry for " .. m[1])
    h.eq(#e.before, 0, m[1] .. ": no rows before")
    h.eq(#e.after, 1, m[1] .. ": its new row after")
    h.same(e.after[1].id, rows_of(aurl, m[1])[1].id)
    h.eq(e.after[1].applied_steps_count, 1)
  end
  local e2 = by[M2[1]]
  h.eq(#e2.before, 1, "M2: the rolled-back row before")
  h.eq(e2.before[1].id, old)
  h.eq(#e2.after, 2, "M2: the rolled-back row and the new one")
  h.eq(#rows(aurl), 300 + 1 + 3)
end

return T
