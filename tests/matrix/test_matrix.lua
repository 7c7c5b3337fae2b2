-- The server matrix (make matrix; a subset in make test through
-- tests/lua/test_matrix_subset.lua): the ticketing demo story, backups with
-- Debian's pg_dump 15, and newer server syntax, on whatever server
-- MIGFIX_TEST_URL points at (tests/matrix/with-server MAJOR starts one).
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local db = require "migfix.db"

local TICK = h.root .. "/tests/fixtures/ticketing/prisma/migrations"
local BIG = "20240312141500_sla_kb_forms_email"
local MERGE = "20240402101500_ticket_merge"

local function server()
  local c <close> = assert(db.connect(h.admin_url))
  local num = c:server_version()
  local v = assert(c:query("SHOW server_version"))[1].server_version
  return num, v
end

local function pg_dump_major()
  local out = h.sh("/usr/lib/postgresql/15/bin/pg_dump --version 2>/dev/null || pg_dump --version")
  return tonumber(out:match("(%d+)%.%d+"))
end

--- a project with the three ticketing migrations; the big one complete but recorded failed
local function seed_story()
  local dir = h.project {}
  local mdir = dir .. "/prisma/migrations"
  h.sh(("cp -r %s/20240105093000_init %s/%s %s/%s %s/"):format(TICK, TICK, BIG, TICK, MERGE, mdir))
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, BIG)
  h.psql(url, ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0 WHERE migration_name = '%s'"):format(BIG))
  return dir, url
end

local function mf(dir, url, args, opts)
  local a = { "-C", dir, "--url", url }
  for _, x in ipairs(args) do a[#a + 1] = x end
  return h.migfix(a, opts)
end

local T = {}

T["the server under test"] = function()
  local num, v = server()
  print(("# server PostgreSQL %s (%d)"):format(v, num))
  local want = tonumber(os.getenv("MIGFIX_MATRIX_MAJOR") or "")
  if want then h.eq(num // 10000, want, "server major") end
end

T["ticketing demo story: P3009, complete, resolved, deployed, healthy"] = function()
  local num = server()
  local dir, url = seed_story()
  local _, _, rc = mf(dir, url, { "status" })
  h.eq(rc, 1)
  local cdoc = json.decode((mf(dir, url, { "check", "--json" })))
  h.eq(cdoc.status, "failed")
  h.eq(cdoc.code, 10)
  local out, err, drc = mf(dir, url, { "diagnose", "--json" })
  h.eq(drc, 1, err)
  local d = json.decode(out).migrations[1]
  h.eq(d.name, BIG)
  h.eq(d.verdict, "complete", "every table, enum, index and key of the big migration is found")
  local pout, perr, prc = mf(dir, url, { "plan", "--json" })
  h.ok(prc == 0 or prc == 1, "plan ran: " .. perr)
  h.eq(json.decode(pout).migrations[1].policy, "apply-if-complete")
  if num // 10000 > pg_dump_major() then
    -- Debian's pg_dump 15 refuses newer servers: the run's backup step says so, nothing is written
    local rout, rerr, rrc = mf(dir, url, { "run", "--yes" })
    h.ok(rrc ~= 0, "run cannot back up with an older pg_dump")
    h.contains(rout .. rerr, "older than the server")
    local _, _, src = mf(dir, url, { "status" })
    h.eq(src, 1, "still failed: nothing was written")
    local _, err2, rc2 = mf(dir, url, { "resolve", "--applied", BIG, "--no-backup", "--yes" })
    h.eq(rc2, 0, "resolve without a backup: " .. err2)
  else
    local _, rerr, rrc = mf(dir, url, { "run", "--yes" })
    h.eq(rrc, 0, rerr)
  end
  local c2 = json.decode((mf(dir, url, { "check", "--json" })))
  h.eq(c2.status, "pending")
  h.eq(c2.counts.pending, 1)
  local _, derr, deprc = mf(dir, url, { "deploy" })
  h.eq(deprc, 0, derr)
  local c3, _, c3rc = mf(dir, url, { "check", "--json" })
  h.eq(c3rc, 0, c3)
  local _, _, mrc = mf(dir, url, { "metrics" })
  h.eq(mrc, 0)
end

T["backup: works up to pg_dump's major; newer servers get the clear message"] = function()
  local num = server()
  local dir, mdir = h.project { { "20240101000000_init", "CREATE TABLE a (id int);\n" } }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir)
  local out, err, rc = mf(dir, url, { "backup" })
  if num // 10000 > pg_dump_major() then
    h.eq(rc, 4, out .. err)
    h.contains(err, ("pg_dump %d."):format(pg_dump_major()))
    h.contains(err, ("is older than the server (PostgreSQL %d)"):format(num // 10000))
    h.contains(err, ("install the PostgreSQL %d client"):format(num // 10000))
    h.contains(err, "MIGFIX_PG_BINDIR")
    print(("# backup on PostgreSQL %d: refused, pg_dump %d is older (as expected)"):format(num // 10000, pg_dump_major()))
  else
    h.eq(rc, 0, err)
    h.contains(out, "backup written")
    h.ok(h.sh("ls -a " .. h.shq(dir .. "/.migfix")):find(".gitignore", 1, true), ".gitignore")
  end
end

T["newer syntax: PostgreSQL 17's ALTER COLUMN ... SET EXPRESSION (parser 15)"] = function()
  local num = server()
  if num < 170000 then
    print("# SET EXPRESSION: not a PostgreSQL " .. (num // 10000) .. " statement, skipped")
    return
  end
  local sql = 'CREATE TABLE "P" ("a" INTEGER, "b" INTEGER GENERATED ALWAYS AS ("a" * 2) STORED);\n' ..
              'ALTER TABLE "P" ALTER COLUMN "b" SET EXPRESSION AS ("a" * 3);\n'
  local dir, mdir = h.project { { "20240101000000_gen", sql } }
  local _, url = h.fresh_db()
  local r = L.deploy(url, nil, mdir)
  h.ok(r.ok ~= false, "the server accepts it")
  local out, err, rc = mf(dir, url, { "lint", "--offline", "--all" })
  print(("# SET EXPRESSION on PostgreSQL %d: lint exit %d: %s"):format(num // 10000, rc,
    ((err ~= "" and err or out):match("[^\n]*") or "")))
  local _, serr, src = mf(dir, url, { "status" })
  h.eq(src, 0, "status does not parse SQL: " .. serr)
end

return T
