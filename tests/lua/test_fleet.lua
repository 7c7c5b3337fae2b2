-- Fleets: one command over 100 databases, and over 100 schemas of one
-- database (migfix.fleet): status, diagnose, plan and run over all of them,
-- the shard partition exact, --on-error and --canary honoured, NDJSON, and
-- the tenants clean per the real Prisma CLI on a sample.
local h = require "helper"
package.path = h.root .. "/tests/compat/?.lua;" .. package.path
local L = require "prisma_ledger"
local json = require "migfix.json"

local T = {}

local M1 = { "20240101000000_init", 'CREATE TABLE "Customer" ("id" INTEGER PRIMARY KEY, "email" TEXT NOT NULL);\n' }
local M2 = { "20240102000000_email_unique", 'CREATE UNIQUE INDEX "Customer_email_key" ON "Customer"("email");\n' }
local LOCK_LOGS = "A migration failed to apply.\n\nMigration name: 20240102000000_email_unique\n\nDatabase error code: 55P03\n\nDatabase error:\nERROR: canceling statement due to lock timeout\n"
local DUP_LOGS = "A migration failed to apply.\n\nMigration name: 20240102000000_email_unique\n\nDatabase error code: 23505\n\nDatabase error:\nERROR: could not create unique index \"Customer_email_key\"\nDETAIL: Key (email)=(ann@example.com) is duplicated.\n"

local fleet_dir, fleet_mdir, targets_file, names

--- 100 tenant databases: 87 complete (killed after the commit), 9 absent
--- (lock timeout), 4 absent on duplicate emails (23505, file unchanged)
local function fleet()
  if fleet_dir then return fleet_dir, fleet_mdir, targets_file end
  fleet_dir, fleet_mdir = h.project { M1, M2 }
  local tpl = {}
  for _, kind in ipairs({ "complete", "absent", "dup" }) do
    local name, url = h.fresh_db()
    L.deploy(url, nil, fleet_mdir, M1[1])
    if kind == "complete" then
      h.psql(url, M2[2])
      L.failed(url, M2[1], L.checksum(M2[2]), nil)
    elseif kind == "absent" then
      L.failed(url, M2[1], L.checksum(M2[2]), LOCK_LOGS)
    else
      h.psql(url, [[INSERT INTO "Customer" VALUES (1, 'ann@example.com'), (2, 'ann@example.com')]])
      L.failed(url, M2[1], L.checksum(M2[2]), DUP_LOGS)
    end
    tpl[kind] = name
  end
  local lines, sql = { "# 100 tenants" }, {}
  names = {}
  for i = 1, 100 do
    local kind = i <= 87 and "complete" or (i <= 96 and "absent" or "dup")
    local db = ("%s_t%03d"):format(tpl.complete, i)
    sql[#sql + 1] = ("CREATE DATABASE %s TEMPLATE %s;"):format(db, tpl[kind])
    lines[#lines + 1] = ("tenant%03d %s"):format(i, h.url(db))
    names[#names + 1] = ("tenant%03d"):format(i)
  end
  -- CREATE DATABASE cannot run in a transaction block: one statement per call
  for _, s in ipairs(sql) do h.psql(h.admin_url, s) end
  targets_file = fleet_dir .. "/tenants.txt"
  h.write(targets_file, table.concat(lines, "\n") .. "\n")
  return fleet_dir, fleet_mdir, targets_file
end

local function mf(args)
  local out, err, rc = h.migfix(args)
  return out, err, rc
end

--- NDJSON lines: per-target documents and the summary
local function ndjson(out)
  local per, summary = {}, nil
  for line in out:gmatch("[^\n]+") do
    local d = json.decode(line)
    if type(d) == "table" then
      if d.summary then summary = d.summary else per[#per + 1] = d end
    end
  end
  return per, summary
end

T["fleet of 100 databases: status, diagnose, plan, run; summary grouped by outcome; Prisma agrees on a sample"] = function()
  local dir, mdir, tf = fleet()
  -- status: every tenant has the failed migration
  local out, err, rc = mf { "-C", dir, "status", "--targets", tf, "--json" }
  local per, s = ndjson(out)
  h.eq(#per, 100, err)
  h.eq(s.targets, 100)
  h.eq(s.by_outcome.failed, 100, out:sub(-400))
  h.eq(rc, 1)
  -- diagnose
  out, err, rc = mf { "-C", dir, "diagnose", "--targets", tf, "--json", "--concurrency", "6" }
  per, s = ndjson(out)
  h.eq(#per, 100, err)
  h.eq(s.by_verdict.complete, 87, out:sub(-600))
  h.eq(s.by_verdict.absent, 13)
  -- plan: read-only, grouped by decision
  out, err, rc = mf { "-C", dir, "plan", "--targets", tf }
  h.contains(out, "87  complete → apply-if-complete", out .. err)
  h.contains(out, "9  absent → rollback-and-redeploy", out .. err)
  h.contains(out, "4  absent → refused: 23505", out .. err)
  h.eq(rc, 1)
  -- run: the refusals are counted, not fleet errors; every tenant is tried
  out, err, rc = mf { "-C", dir, "run", "--targets", tf, "--yes" }
  h.contains(out, "87  complete → marked applied", out .. err)
  h.contains(out, "9  absent → redeployed", out .. err)
  h.contains(out, "4  absent → refused: 23505", out .. err)
  h.contains(out, "ok 96, refused 4, failed 0, skipped 0", out .. err)
  h.eq(rc, 1, out .. err)
  local run_id = out:match("%(run ([%x%-]+)%)")
  h.ok(run_id, out)
  -- the real Prisma CLI on a sample: a complete one, a redeployed one (clean), a refused one (still failed)
  local C = require "compat"
  local urls = {}
  for line in h.read(tf):gmatch("[^\n]+") do
    local n, u = line:match("^(tenant%d+) (%S+)$")
    if n then urls[n] = u end
  end
  for n, want in pairs { tenant001 = 0, tenant050 = 0, tenant090 = 0, tenant099 = 1 } do
    local src, sout = C.status(urls[n], mdir)
    h.eq(src, want, n .. ": prisma migrate status:\n" .. sout)
  end
  -- a second run: nothing left but the refusals
  out, err, rc = mf { "-C", dir, "run", "--targets", tf, "--yes", "--json" }
  per, s = ndjson(out)
  h.eq(s.ok, 96, out:sub(-500))
  h.eq(s.refused, 4)
  -- every journal entry of a tenant carries the fleet run's id
  local n = h.psql(urls.tenant001, ("SELECT count(*) FROM migfix.journal WHERE details->>'run' = '%s'"):format(run_id))
  h.ok(tonumber(n:match("%d+")) >= 3, "tenant001's entries of run " .. run_id .. ": " .. n)
  -- one incident across the fleet, undone together
  out, err, rc = mf { "-C", dir, "undo", "--run", run_id, "--targets", tf, "--yes" }
  h.contains(out, "ok 96", out .. err)
  out, err, rc = mf { "-C", dir, "status", "--targets", tf, "--json" }
  per, s = ndjson(out)
  h.eq(s.by_outcome.failed, 100, "after undo --run every tenant is failed again: " .. out:sub(-300))
end

T["a worker's answer: the document encoded once, spliced into the line, reads back as the whole record"] = function()
  local fl = require "migfix.fleet"
  local doc = { failed = 1, migrations = json.array { { name = "m", verdict = "complete", counts = { present = 2 } } },
                x = json.null, e = json.array() }
  local res = { target = "t1", exit = 1, error = json.null, ms = 12, index = 3, result_text = json.encode(doc) }
  local line = fl.answer_line(res)
  h.same(json.decode(line), json.decode(json.encode { target = "t1", exit = 1, error = json.null, ms = 12, index = 3, result = doc }))
  h.eq(select(2, line:gsub('"result":', "")), 1, "one result member")
  h.same(json.decode(fl.answer_line { target = "t2", exit = 4, error = "boom", ms = 0, result = json.null }),
         { target = "t2", exit = 4, error = "boom", ms = 0, result = json.null })
end

T["shard K/N: a deterministic, exact partition of the targets"] = function()
  local dir, _, tf = fleet()
  local seen, total = {}, 0
  for k = 1, 3 do
    local out = mf { "-C", dir, "status", "--targets", tf, "--json", "--shard", k .. "/3" }
    local per, s = ndjson(out)
    h.eq(s.shard, k .. "/3")
    for _, d in ipairs(per) do
      h.eq(seen[d.target], nil, d.target .. " in two shards")
      seen[d.target] = k
      total = total + 1
    end
    -- the same shard twice: the same targets
    local again = ndjson((mf { "-C", dir, "status", "--targets", tf, "--json", "--shard", k .. "/3" }))
    local a, b = {}, {}
    for _, d in ipairs(per) do a[#a + 1] = d.target end
    for _, d in ipairs(again) do b[#b + 1] = d.target end
    table.sort(a); table.sort(b)
    h.same(a, b, "shard " .. k)
  end
  h.eq(total, 100, "every target in exactly one shard")
  local _, err, rc = mf { "-C", dir, "status", "--targets", tf, "--shard", "4/3" }
  h.eq(rc, 2)
  h.contains(err, "invalid --shard")
end

T["--on-error stop, --canary and --max-failures stop the fleet; the rest is skipped"] = function()
  local dir, mdir = h.project { M1 }
  local lines = {}
  for i = 1, 6 do
    local _, url = h.fresh_db()
    lines[#lines + 1] = ("ok%d %s"):format(i, url)
  end
  -- the first target cannot be reached
  table.insert(lines, 1, "down postgresql://postgres@127.0.0.1:1/nowhere")
  local tf = dir .. "/t.txt"
  h.write(tf, table.concat(lines, "\n") .. "\n")
  -- deploy writes: stop on the first failure (default), one at a time
  local out, err, rc = mf { "-C", dir, "deploy", "--targets", tf, "--concurrency", "1" }
  h.contains(out, "skipped 6", out .. err)
  h.eq(rc, 3, out .. err)
  h.contains(out .. err, "stopped: target down failed")
  -- --on-error continue: every other target is deployed
  out, err, rc = mf { "-C", dir, "deploy", "--targets", tf, "--concurrency", "2", "--on-error", "continue" }
  h.contains(out, "ok 6, refused 0, failed 1, skipped 0", out .. err)
  -- canary: the first 2 (one fails) then stop, even with --on-error continue
  out, err, rc = mf { "-C", dir, "status", "--targets", tf, "--canary", "2", "--on-error", "continue", "--json" }
  local per, s = ndjson(out)
  h.eq(#per, 2, out)
  h.eq(s.skipped, 5)
  h.contains(tostring(s.stopped), "canary")
  -- --max-failures 1 on a read command (continue by default)
  out, err, rc = mf { "-C", dir, "status", "--targets", tf, "--max-failures", "1", "--concurrency", "1", "--json" }
  per, s = ndjson(out)
  h.eq(s.failed, 1)
  h.eq(s.skipped, 6, out)
  -- a fleet option alone is a usage error
  out, err, rc = mf { "-C", dir, "--url", h.url("postgres"), "status", "--canary", "2" }
  h.eq(rc, 2, err)
  local _ = mdir
end

T["fleet of 100 schemas in one database: deploy, status, diagnose; schemas of one database take turns for Prisma's lock"] = function()
  local dir, mdir = h.project { M1, M2 }
  local name, url = h.fresh_db()
  local sql = {}
  for i = 1, 100 do sql[#sql + 1] = ("CREATE SCHEMA tenant_%03d;"):format(i) end
  h.psql(url, table.concat(sql, "\n"))
  local out, err, rc = mf { "-C", dir, "--url", url, "deploy", "--schemas", "tenant_*", "--concurrency", "4" }
  h.eq(rc, 0, out .. err)
  h.contains(out, "100  applied 2", out .. err)
  out, err, rc = mf { "-C", dir, "--url", url, "status", "--schemas", "tenant_*", "--json" }
  local per, s = ndjson(out)
  h.eq(#per, 100, err)
  h.eq(s.by_outcome.clean, 100, out:sub(-300))
  -- each schema has its own ledger
  local n = h.psql(url, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = '_prisma_migrations' AND n.nspname LIKE 'tenant\\_%'")
  h.eq(n:match("%d+"), "100")
  -- a sample judged by the real Prisma CLI (?schema=)
  local C = require "compat"
  local src, sout = C.status(url .. "?schema=tenant_042", mdir)
  h.eq(src, 0, sout)
  local _ = name
end

T["docs/fleet recipes: the Kubernetes Indexed Job and the CI matrix parse and use options migfix has"] = function()
  local py = [==[
import sys, yaml, json
job = yaml.safe_load(open(sys.argv[1]))
wf = yaml.safe_load(open(sys.argv[2]))
spec = job["spec"]
c = spec["template"]["spec"]["containers"][0]
print(json.dumps({"mode": spec["completionMode"], "completions": spec["completions"],
  "args": " ".join(c["args"]), "shards": wf["jobs"]["shard"]["strategy"]["matrix"]["shard"],
  "steps": [s.get("run", "") for s in wf["jobs"]["shard"]["steps"]]}))
]==]
  local f = h.tmpdir() .. "/p.py"
  h.write(f, py)
  local out, rc = h.sh(("/usr/bin/python3 %s %s %s"):format(h.shq(f), h.shq(h.root .. "/docs/fleet/k8s-indexed-job.yaml"),
    h.shq(h.root .. "/docs/fleet/github-matrix.yml")))
  h.eq(rc, 0, out)
  local d = json.decode(out)
  h.eq(d.mode, "Indexed")
  h.eq(#d.shards, d.completions, "as many CI shards as Job completions")
  h.contains(d.args, "--shard $((JOB_COMPLETION_INDEX + 1))/4")
  -- every option the recipes use is one migfix diagnose takes
  local help = h.migfix({ "help", "diagnose" })
  for _, o in ipairs({ "--targets", "--shard", "--json" }) do h.contains(help, o) end
  local steps = table.concat(d.steps, "\n")
  h.contains(steps, "--shard ${{ matrix.shard }}/4")
end

T["merging the NDJSON of shards as docs/fleets.md shows gives the whole fleet's counts"] = function()
  local dir, _, tf = fleet()
  local files = {}
  for k = 1, 4 do
    local out = mf { "-C", dir, "status", "--targets", tf, "--json", "--shard", k .. "/4" }
    files[k] = dir .. ("/shard-%d.ndjson"):format(k)
    h.write(files[k], out)
  end
  local py = [[import json,sys; s=[d["summary"] for f in sys.argv[1:] for d in map(json.loads, open(f)) if "target" not in d];
print(json.dumps({k: sum(x[k] for x in s) for k in ("targets","ok","refused","failed","skipped")}))]]
  local f = dir .. "/merge.py"
  h.write(f, py)
  local out, rc = h.sh("/usr/bin/python3 " .. h.shq(f) .. " " .. table.concat(files, " "))
  h.eq(rc, 0, out)
  local d = json.decode(out)
  h.eq(d.targets, 100, out)
  h.eq(d.ok + d.refused + d.failed + d.skipped, 100)
end

T["check over a fleet: every target checked, findings are not failures, the exit code is the most severe"] = function()
  local dir, mdir = h.project { M1 }
  local healthy_name, healthy = h.fresh_db()
  L.deploy(healthy, nil, mdir, M1[1])
  local failed_name, failed = h.fresh_db()
  L.failed(failed, M1[1], L.checksum(M1[2]), LOCK_LOGS)
  local tf = dir .. "/check-targets.txt"
  h.write(tf, ("healthy %s\nfailed %s\n"):format(h.url(healthy_name), h.url(failed_name)))
  local out, err, rc = mf { "-C", dir, "check", "--targets", tf, "--json" }
  local per, s = ndjson(out)
  h.eq(#per, 2, err)
  h.eq(rc, 10, out .. err)
  h.eq(s.refused, 1)
  h.eq(s.failed, 0)
  h.eq(s.ok, 1)
  -- an unreachable target ranks above any finding
  h.write(tf, ("healthy %s\nfailed %s\ngone postgresql://postgres@127.0.0.1:1/nope\n"):format(h.url(healthy_name), h.url(failed_name)))
  local out2, err2, rc2 = mf { "-C", dir, "check", "--targets", tf, "--json" }
  local per2, s2 = ndjson(out2)
  h.eq(#per2, 3, err2)
  h.eq(rc2, 3, out2 .. err2)
  h.eq(s2.failed, 1)
  h.eq(s2.refused, 1)
  h.eq(require("migfix.fleet").severity(10, "check") > require("migfix.fleet").severity(15, "check"), true)
end

return T
