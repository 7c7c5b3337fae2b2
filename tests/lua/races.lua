-- races: two writers at once on one database, and what must hold afterwards.
-- Used by tests/lua/test_races.lua (a few rounds in make test) and by
-- tests/stress (make stress: >= 20 rounds of each kind).
--
--   local races = require "races"
--   local ok, why = races.run(kind, round)   -- kind: one of races.KINDS
--
-- Kinds:
--   run_run          two `migfix run --yes` on an absent failed migration (transient error)
--   deploy_deploy    two `migfix deploy` of the same two pending migrations
--   run_inflight     `migfix run --yes` while a slow `migfix deploy` of a pending migration holds Prisma's lock
--   plan_inflight    `migfix plan` while that deploy runs: "in progress", not failed
--   run_prisma       `migfix run --yes` while the real Prisma CLI's deploy of a slow migration holds the lock
-- Afterwards, always: every migration applied exactly once (one finished,
-- not rolled back row), no failed row that was not there before, no false
-- P3009 in any output, the journal chain intact.
local h = require "helper"
local L = require "prisma_ledger"

local R = {}

R.KINDS = { "run_run", "deploy_deploy", "run_inflight", "plan_inflight", "run_prisma" }

local M1 = { "20240101000000_init", 'CREATE TABLE "A" ("id" INTEGER PRIMARY KEY);\n' }
local M2 = { "20240102000000_b", 'CREATE TABLE "B" ("id" INTEGER PRIMARY KEY, "a" INTEGER REFERENCES "A"("id"));\nCREATE INDEX "B_a_idx" ON "B"("a");\n' }
local M3 = { "20240103000000_c", 'CREATE TABLE "C" ("id" INTEGER PRIMARY KEY);\n' }
local SLOW = { "20240102000000_b", 'CREATE TABLE "B" ("id" INTEGER PRIMARY KEY);\nSELECT pg_sleep(1.5);\n' }
local LOCK_LOGS = "A migration failed to apply.\n\nMigration name: 20240102000000_b\n\nDatabase error code: 55P03\n\nDatabase error:\nERROR: canceling statement due to lock timeout\n"

-- a generous wait for Prisma's lock: the races are about what happens once
-- the lock is had, not about how fast a loaded machine runs the first writer
local function project(migs)
  local dir, mdir = h.project(migs)
  h.write(dir .. "/migfix.lua", 'return { default_environment = "race", environments = { race = { timeouts = { advisory_lock = "120s" } } } }\n')
  return dir, mdir
end

local function bg(dir, url, args, tag)
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = h.shq(a) end
  local out = dir .. "/" .. tag .. ".out"
  return ("(%s -C %s --url %s %s >%s 2>&1 </dev/null; echo $? >%s.rc) &"):format(
    h.shq(h.bin), h.shq(dir), h.shq(url), table.concat(parts, " "), h.shq(out), h.shq(out))
end

local function result(dir, tag)
  local out = h.read(dir .. "/" .. tag .. ".out")
  local rc = tonumber((h.read(dir .. "/" .. tag .. ".out.rc"):match("%d+")))
  return out, rc
end

local function rows_of(url, name)
  local out = {}
  for _, r in ipairs(L.rows(url)) do if r.migration_name == name then out[#out + 1] = r end end
  return out
end

local function applied_once(url, name)
  local n, failed = 0, 0
  for _, r in ipairs(rows_of(url, name)) do
    if r.finished_at and not r.rolled_back_at then n = n + 1 end
    if not r.finished_at and not r.rolled_back_at then failed = failed + 1 end
  end
  if n ~= 1 then return false, ("%s has %d applied rows (want exactly 1)"):format(name, n) end
  if failed > 0 then return false, ("%s has %d failed rows"):format(name, failed) end
  return true
end

local function no_false_p3009(texts)
  for tag, t in pairs(texts) do
    if t:find("P3009:", 1, true) or t:find("Error: P3009", 1, true) then return false, tag .. " printed P3009:\n" .. t end
  end
  return true
end

local function journal_intact(dir, url)
  local out, err, rc = h.migfix({ "-C", dir, "--url", url, "journal", "--verify" })
  if rc ~= 0 then return false, "journal --verify: " .. out .. err end
  return true
end

local function check(list)
  for _, c in ipairs(list) do
    local ok, why = table.unpack(c)
    if not ok then return false, why end
  end
  return true
end

local KIND = {}

function KIND.run_run()
  local dir, mdir = project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, M1[1])
  L.failed(url, M2[1], L.checksum(M2[2]), LOCK_LOGS)
  h.sh(bg(dir, url, { "run", "--yes" }, "a") .. " " .. bg(dir, url, { "run", "--yes" }, "b") .. " wait")
  local oa, ra = result(dir, "a")
  local ob, rb = result(dir, "b")
  local ctx = ("run a (exit %s):\n%s\nrun b (exit %s):\n%s"):format(ra, oa, rb, ob)
  if ra ~= 0 or rb ~= 0 then return false, "both runs must succeed (one resolves, the other finds nothing to do)\n" .. ctx end
  local rolled = 0
  for _, r in ipairs(rows_of(url, M2[1])) do if r.rolled_back_at then rolled = rolled + 1 end end
  return check {
    { applied_once(url, M2[1]) },
    { rolled == 1, ("%d rolled-back rows of %s (want 1: the second run must not redeploy again)\n%s"):format(rolled, M2[1], ctx) },
    { no_false_p3009 { a = oa, b = ob } },
    { journal_intact(dir, url) },
  }
end

function KIND.deploy_deploy()
  local dir, mdir = project { M1, M2, M3 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, M1[1])
  h.sh(bg(dir, url, { "deploy" }, "a") .. " " .. bg(dir, url, { "deploy" }, "b") .. " wait")
  local oa, ra = result(dir, "a")
  local ob, rb = result(dir, "b")
  local ctx = ("deploy a (exit %s):\n%s\ndeploy b (exit %s):\n%s"):format(ra, oa, rb, ob)
  if ra ~= 0 or rb ~= 0 then return false, "both deploys must succeed\n" .. ctx end
  return check {
    { applied_once(url, M2[1]) }, { applied_once(url, M3[1]) },
    { no_false_p3009 { a = oa, b = ob } },
    { journal_intact(dir, url) },
  }
end

--- a deploy of a slow pending migration in flight, then `second` starts
local function inflight(second, tag, deployer)
  local dir, mdir = project { M1, SLOW }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, M1[1])
  local first
  if deployer == "prisma" then
    local C = require "compat"
    C.setup()
    first = ("(env MIGFIX_PRISMA_SCRIPT_MODE=whole %s %s %s migrate deploy >%s/d.out 2>&1 </dev/null; echo $? >%s/d.out.rc) &"):format(
      h.shq(C.wrapper), h.shq(url), h.shq(mdir), h.shq(dir), h.shq(dir))
  else
    first = bg(dir, url, { "deploy" }, "d")
  end
  -- start the second writer once the first holds Prisma's lock
  local wait_lock = ([[for i in $(seq 1 200); do n=$(psql -qAtX -d %s -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 72707369 AND granted"); [ "$n" = 1 ] && break; sleep 0.05; done;]])
    :format(h.shq((url:gsub("%?.*$", ""))))
  h.sh(first .. " " .. wait_lock .. " " .. bg(dir, url, second, tag) .. " wait")
  local od, rd = result(dir, "d")
  local o2, r2 = result(dir, tag)
  return dir, url, od, rd, o2, r2
end

function KIND.run_inflight()
  local dir, url, od, rd, o2, r2 = inflight({ "run", "--yes" }, "r")
  local ctx = ("deploy (exit %s):\n%s\nrun (exit %s):\n%s"):format(rd, od, r2, o2)
  if rd ~= 0 or r2 ~= 0 then return false, "the deploy and the run must both succeed\n" .. ctx end
  return check {
    { applied_once(url, SLOW[1]) },
    { not o2:find("redeploy", 1, true), "run acted on the in-flight migration\n" .. ctx },
    { no_false_p3009 { deploy = od, run = o2 } },
    { journal_intact(dir, url) },
  }
end

function KIND.plan_inflight()
  local dir, url, od, rd, o2, r2 = inflight({ "plan" }, "p")
  local ctx = ("deploy (exit %s):\n%s\nplan (exit %s):\n%s"):format(rd, od, r2, o2)
  if rd ~= 0 then return false, "the deploy must succeed\n" .. ctx end
  -- the in-flight row is a deploy in progress, never a failure to resolve
  if o2:find("no failed migrations", 1, true) then return applied_once(url, SLOW[1]) end
  return check {
    { o2:find("in progress", 1, true) ~= nil, "plan did not say the deploy is in progress\n" .. ctx },
    { not o2:find("mark applied", 1, true) and not o2:find("redeploy", 1, true), "plan proposed a write over the in-flight row\n" .. ctx },
    { applied_once(url, SLOW[1]) },
  }
end

function KIND.run_prisma()
  local dir, url, od, rd, o2, r2 = inflight({ "run", "--yes" }, "r", "prisma")
  local ctx = ("prisma deploy (exit %s):\n%s\nmigfix run (exit %s):\n%s"):format(rd, od, r2, o2)
  if rd ~= 0 or r2 ~= 0 then return false, "Prisma's deploy and migfix run must both succeed\n" .. ctx end
  return check {
    { applied_once(url, SLOW[1]) },
    { no_false_p3009 { run = o2 } },
  }
end

--- one round of a race kind; returns true, or false and why
function R.run(kind, round)
  local fn = KIND[kind]
  if not fn then error("unknown race kind " .. tostring(kind)) end
  local ok, res, why = pcall(fn, round)
  if not ok then return false, tostring(res) end
  return res, why
end

return R
