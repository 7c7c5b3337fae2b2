-- migfix check, migfix metrics and status durations on real ledger states
-- (clean, pending, failed, interrupted, running, stuck, modified, missing,
-- unreadable rows, unreachable), the metrics parsed by the reference parser of
-- python3-prometheus-client (tests/ops/parse-metrics).
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local db = require "migfix.db"
local health = require "migfix.health"
local prom = require "migfix.prometheus"

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }
local M3 = { "20240103000000_third", 'CREATE INDEX "User_name_idx" ON "User"("name");\n' }

local PARSER = h.root .. "/tests/ops/parse-metrics"

local function check(dir, url, extra)
  local args = { "-C", dir, "--url", url, "check", "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local out, err, rc = h.migfix(args)
  local doc = json.decode(out)
  if not doc then error(("no JSON from check (rc %s): %s%s"):format(tostring(rc), out, err)) end
  return doc, rc, err
end

--- parse an exposition with the reference parser; returns families by name
local function parse(text)
  local f = os.tmpname()
  h.write(f, text)
  local out, rc = h.sh(h.shq(PARSER) .. " " .. h.shq(f) .. " 2>&1")
  os.remove(f)
  if rc ~= 0 then error("the reference parser rejected the metrics:\n" .. out .. "\n" .. text) end
  local doc = assert(json.decode(out), out)
  local by = {}
  for _, fam in ipairs(doc.families) do by[fam.name] = fam end
  return by
end

--- the value of the sample of family `name` whose labels include `want`
local function value(fams, name, want)
  local fam = fams[name]
  if not fam then error("no metric family " .. name) end
  for _, s in ipairs(fam.samples) do
    local ok = true
    for k, v in pairs(want or {}) do if s.labels[k] ~= v then ok = false end end
    if ok then return s.value end
  end
  return nil
end

local function metrics(dir, url, extra, opts)
  local args = { "-C", dir, "--url", url, "metrics" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local out, err, rc = h.migfix(args, opts)
  return out, rc, err
end

local T = {}

T["clean: check exits 0, metrics say healthy and parse"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  local doc, rc = check(dir, url)
  h.eq(rc, 0, "exit")
  h.eq(doc.status, "healthy")
  h.eq(doc.code, 0)
  h.eq(doc.counts.applied, 2)
  h.eq(#doc.findings, 0)
  local out, mrc = metrics(dir, url)
  h.eq(mrc, 0)
  local f = parse(out)
  h.eq(f.migfix_up.type, "gauge")
  h.eq(value(f, "migfix_up", { environment = "default" }), 1)
  h.eq(value(f, "migfix_migrations", { state = "applied" }), 2)
  h.eq(value(f, "migfix_failed_migrations"), 0)
  h.eq(value(f, "migfix_pending_migrations"), 0)
  h.eq(value(f, "migfix_check_status", { status = "healthy" }), 1)
  h.eq(value(f, "migfix_check_status", { status = "failed" }), 0)
  h.eq(value(f, "migfix_check_exit_code"), 0)
  h.eq(#f.migfix_migration_duration_seconds.samples, 2, "one duration per applied migration")
  h.ok(value(f, "migfix_migration_duration_seconds", { migration = M2[1] }) >= 0)
  h.ok(value(f, "migfix_last_apply_timestamp_seconds") > 1.7e9)
end

T["pending: exit 15, --max-pending allows them; metrics count them"] = function()
  local dir = h.project { M1, M2, M3 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  local doc, rc = check(dir, url)
  h.eq(rc, 15)
  h.eq(doc.status, "pending")
  h.eq(doc.counts.pending, 2)
  h.contains(doc.headline, M2[1])
  local _, rc2 = check(dir, url, { "--max-pending", "2" })
  h.eq(rc2, 0, "2 pending allowed")
  local _, rc3 = check(dir, url, { "--max-pending", "1" })
  h.eq(rc3, 15)
  local f = parse((metrics(dir, url)))
  h.eq(value(f, "migfix_pending_migrations"), 2)
  h.eq(value(f, "migfix_migrations", { state = "pending" }), 2)
  h.eq(value(f, "migfix_check_status", { status = "pending" }), 1)
  h.eq(value(f, "migfix_check_exit_code"), 15)
  local f2 = parse((metrics(dir, url, { "--max-pending", "5" })))
  h.eq(value(f2, "migfix_check_status", { status = "healthy" }), 1)
  -- no ledger at all: everything pending
  local _, url2 = h.fresh_db()
  local d2, rc4 = check(dir, url2)
  h.eq(rc4, 15)
  h.eq(d2.counts.pending, 3)
end

T["failed (P3009): exit 10, with pending behind it; metrics count the failure"] = function()
  local dir = h.project { M1, M2, M3 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  L.failed(url, M2[1], L.checksum(M2[2]), "Database error code: 42P01")
  local doc, rc = check(dir, url)
  h.eq(rc, 10)
  h.eq(doc.status, "failed")
  h.eq(doc.counts.failed, 1)
  h.eq(doc.counts.pending, 1)
  h.eq(doc.findings[1].kind, "failed")
  h.eq(doc.findings[1].migration, M2[1])
  h.contains(doc.findings[1].message, "P3009")
  -- the human output lists every finding
  local out, _, rc2 = h.migfix { "-C", dir, "--url", url, "check" }
  h.eq(rc2, 10)
  h.contains(out, "P3009")
  h.contains(out, "pending")
  local f = parse((metrics(dir, url)))
  h.eq(value(f, "migfix_failed_migrations"), 1)
  h.eq(value(f, "migfix_migrations", { state = "failed" }), 1)
  h.eq(value(f, "migfix_deploy_blocked"), 1)
  h.eq(value(f, "migfix_check_status", { status = "failed" }), 1)
  h.eq(value(f, "migfix_check_exit_code"), 10)
end

T["no error recorded: interrupted without the lock (10), running with it (0), stuck past --max-age (11)"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  local id = L.failed(url, M2[1], L.checksum(M2[2]), nil)
  local doc, rc = check(dir, url)
  h.eq(rc, 10, "nobody holds the lock: the deploy is gone")
  h.contains(doc.findings[1].message, "interrupted")
  -- a deploy in progress: Prisma's advisory lock held by another session
  local holder <close> = assert(db.connect(url))
  assert(holder:query("SELECT pg_advisory_lock(72707369)"))
  local d2, rc2 = check(dir, url)
  h.eq(rc2, 0, "running")
  h.eq(d2.status, "running")
  h.eq(d2.counts.running, 1)
  h.eq(d2.running[1].name, M2[1])
  local f = parse((metrics(dir, url)))
  h.eq(value(f, "migfix_migrations", { state = "running" }), 1)
  h.eq(value(f, "migfix_failed_migrations"), 0)
  h.ok(value(f, "migfix_running_migration_age_seconds", { migration = M2[1] }) >= 0)
  -- started an hour ago: stuck with --max-age 30m, still running with 2h
  h.psql(url, ("UPDATE _prisma_migrations SET started_at = now() - interval '1 hour' WHERE id = '%s'"):format(id))
  local d3, rc3 = check(dir, url, { "--max-age", "30m" })
  h.eq(rc3, 11)
  h.eq(d3.status, "stuck")
  h.eq(d3.running[1].stuck, true)
  h.ok(d3.running[1].age_s >= 3590 and d3.running[1].age_s < 3700, "age about an hour: " .. tostring(d3.running[1].age_s))
  local _, rc4 = check(dir, url, { "--max-age", "2h" })
  h.eq(rc4, 0)
  local f2 = parse((metrics(dir, url, { "--max-age", "30m" })))
  h.eq(value(f2, "migfix_migrations", { state = "stuck" }), 1)
  h.eq(value(f2, "migfix_check_exit_code"), 11)
  holder:close()
  local _, rc5 = check(dir, url, { "--max-age", "2h" })
  h.eq(rc5, 10, "lock released with the row unfinished: interrupted")
end

T["modified after apply (13), missing locally (14), unreadable ledger rows (12)"] = function()
  local dir, mdir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir)
  h.write(mdir .. "/" .. M2[1] .. "/migration.sql", M2[2] .. "-- edited\n")
  local doc, rc = check(dir, url)
  h.eq(rc, 13)
  h.eq(doc.status, "modified")
  h.eq(doc.findings[1].migration, M2[1])
  h.sh("rm -rf " .. h.shq(mdir .. "/" .. M2[1]))
  local d2, rc2 = check(dir, url)
  h.eq(rc2, 14)
  h.eq(d2.status, "missing")
  h.eq(d2.counts.missing, 1)
  local f = parse((metrics(dir, url)))
  h.eq(value(f, "migfix_migrations", { state = "missing" }), 1)
  h.eq(value(f, "migfix_check_exit_code"), 14)
  h.psql(url, "ALTER TABLE _prisma_migrations ALTER COLUMN checksum DROP NOT NULL; UPDATE _prisma_migrations SET checksum = NULL WHERE migration_name = '" .. M1[1] .. "'")
  local d3, rc3 = check(dir, url)
  h.eq(rc3, 12)
  h.eq(d3.status, "ledger")
  h.contains(d3.findings[1].message, "NULL in checksum")
end

T["cannot connect: exit 3 (JSON says unreachable), metrics still written with migfix_up 0"] = function()
  local dir = h.project { M1 }
  local url = "postgresql://postgres@127.0.0.1:1/none"
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "check", "--json" }
  h.eq(rc, 3)
  local doc = assert(json.decode(out), out)
  h.eq(doc.status, "unreachable")
  h.eq(doc.code, 3)
  h.contains(err, "could not connect")
  local _, err2, rc2 = h.migfix { "-C", dir, "--url", url, "check" }
  h.eq(rc2, 3)
  h.contains(err2, "migfix: error:")
  local text, mrc = metrics(dir, url)
  h.eq(mrc, 3)
  local f = parse(text)
  h.eq(value(f, "migfix_up"), 0)
  h.eq(value(f, "migfix_check_status", { status = "unreachable" }), 1)
  h.eq(value(f, "migfix_check_exit_code"), 3)
  h.eq(f.migfix_migrations, nil, "no ledger metrics without the ledger")
end

T["check: usage errors exit 2 and name the option"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  for _, bad in ipairs({ { "--max-age", "soon" }, { "--max-pending", "-1" }, { "--max-pending", "x" }, { "extra" } }) do
    local args = { "-C", dir, "--url", url, "check" }
    for _, a in ipairs(bad) do args[#args + 1] = a end
    local _, err, rc = h.migfix(args)
    h.eq(rc, 2, table.concat(bad, " "))
    h.contains(err, "migfix: error:")
  end
  local _, err, rc = h.migfix { "-C", dir .. "/nope", "--url", url, "check" }
  h.eq(rc, 2, "no migrations folder")
  h.contains(err, "migrations")
end

T["metrics: labels, the journal's last run, --output written atomically, --last"] = function()
  local dir = h.project { M1, M2, M3 }
  local _, url = h.fresh_db()
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "deploy" }
  h.eq(rc, 0, "deploy: " .. out .. err)
  local file = dir .. "/metrics.prom"
  local text, mrc = metrics(dir, url, { "--label", "cluster=eu-1", "--label", 'note=a "quoted"\\value', "--output", file, "--last", "2" })
  h.eq(mrc, 0)
  h.eq(text, "", "nothing on stdout with --output")
  local f = parse(h.read(file))
  local up = f.migfix_up.samples[1]
  h.eq(up.labels.cluster, "eu-1")
  h.eq(up.labels.note, 'a "quoted"\\value', "label values escaped and read back")
  h.eq(#f.migfix_migration_duration_seconds.samples, 2, "--last 2")
  h.eq(f.migfix_migration_duration_seconds.samples[1].labels.migration, M3[1], "newest first")
  h.eq(value(f, "migfix_last_run_outcome", { outcome = "ok" }), 1, "from the journal file: the deploy")
  h.eq(value(f, "migfix_last_run_info", { action = "deploy" }), 1)
  h.ok(value(f, "migfix_last_run_timestamp_seconds") > 1.7e9)
  local ls = h.sh("ls -a " .. h.shq(dir))
  h.not_contains(ls, ".tmp", "no temporary file left")
  local _, err2, rc2 = h.migfix { "-C", dir, "--url", url, "metrics", "--label", "environment=x" }
  h.eq(rc2, 2)
  h.contains(err2, "label migfix sets itself")
  local _, _, rc3 = h.migfix { "-C", dir, "--url", url, "metrics", "--label", "bad-name=x" }
  h.eq(rc3, 2)
end

T["status: each migration's duration, --slow flags the slow ones, resolved rows ran nothing"] = function()
  local dir = h.project { M1, M2, M3 }
  local _, url = h.fresh_db()
  L.create_table(url)
  L.applied(url, M1[1], L.checksum(M1[2]))
  L.applied(url, M2[1], L.checksum(M2[2]))
  L.resolved_applied(url, M3[1], L.checksum(M3[2]))
  h.psql(url, ("UPDATE _prisma_migrations SET finished_at = started_at + interval '45 seconds' WHERE migration_name = '%s'"):format(M2[1]))
  local out, _, rc = h.migfix { "-C", dir, "--url", url, "status", "--json", "--slow", "30s" }
  h.eq(rc, 0)
  local doc = json.decode(out)
  local by = {}
  for _, m in ipairs(doc.migrations) do by[m.name] = m end
  h.eq(by[M2[1]].duration_s, 45)
  h.eq(by[M2[1]].slow, true)
  h.eq(by[M1[1]].slow, false)
  h.eq(by[M3[1]].resolved, true)
  h.eq(by[M3[1]].slow, false)
  local text = h.migfix { "-C", dir, "--url", url, "status", "--slow", "30s" }
  h.contains(text, "DURATION")
  h.contains(text, "45s")
  h.contains(text, "slow: took 45s (--slow 30s)")
  h.contains(text, "resolved")
  local _, err, rc2 = h.migfix { "-C", dir, "--url", url, "status", "--slow", "fast" }
  h.eq(rc2, 2)
  h.contains(err, "invalid --slow")
  -- metrics leave the resolved row out of the durations
  local f = parse((metrics(dir, url)))
  h.eq(#f.migfix_migration_duration_seconds.samples, 2)
  h.eq(value(f, "migfix_migration_duration_seconds", { migration = M2[1] }), 45)
end

T["health: durations, ISO timestamps and exposition details"] = function()
  h.eq(health.duration("30m"), 1800)
  h.eq(health.duration("1h30m"), 5400)
  h.eq(health.duration("500ms"), 0.5)
  h.eq(health.duration("2d"), 172800)
  h.eq(health.duration("90"), 90)
  h.eq(health.duration("soon"), nil)
  h.eq(health.duration(""), nil)
  h.eq(health.epoch("1970-01-02T00:00:00Z"), 86400)
  h.eq(health.epoch("2024-02-29T12:00:00.5Z"), 1709208000.5)
  h.eq(health.epoch("2024-02-29T14:00:00+02:00"), 1709208000)
  h.eq(health.epoch("not a time"), nil)
  h.eq(health.fmt_duration(0.037), "37ms")
  h.eq(health.fmt_duration(45), "45s")
  h.eq(health.fmt_duration(184), "3m04s")
  h.eq(prom.escape_label('a\\b"c\nd'), 'a\\\\b\\"c\\nd')
  h.eq(prom.valid_label("__x"), false)
  h.eq(prom.valid_name("migfix_up"), true)
  h.eq(prom.fmt_value(0.5), "0.5")
  h.eq(prom.fmt_value(3), "3")
  local w = prom.writer()
  w:family("x_total_bytes", "gauge", "help with\nnewline")
  w:sample("x_total_bytes", { a = "1" }, 2)
  h.raises(function() w:sample("y", {}, 1) end, "outside its family")
  h.raises(function() w:family("x_total_bytes", "gauge", "again") end, "declared twice")
  local f = parse(w:text())
  h.eq(f.x_total_bytes.help, "help with\nnewline")
end

return T
