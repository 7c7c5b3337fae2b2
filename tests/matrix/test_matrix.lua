-- The server matrix (make matrix; a subset in make test through
-- tests/lua/test_matrix_subset.lua): the ticketing demo story, backups with
-- Debian's pg_dump 15, and newer server syntax, on whatever server
-- MIGFIX_TEST_URL points at (tests/matrix/with-server MAJOR starts one).
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local db = require "migfix.db"
local effects = require "migfix.effects"

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

local GEN_INIT = 'CREATE TABLE "P" ("id" INTEGER PRIMARY KEY, "a" INTEGER, "b" INTEGER GENERATED ALWAYS AS ("a" * 2) STORED);\n' ..
                 'INSERT INTO "P" ("id", "a") VALUES (1, 10);\n'
local GEN_SET = 'ALTER TABLE "P" ALTER COLUMN "b" SET EXPRESSION AS ("a" * 3);\n'

T["newer syntax: PostgreSQL 17's ALTER COLUMN ... SET EXPRESSION parses and is diagnosed (parser 17)"] = function()
  local num = server()
  -- the parser is PostgreSQL 17's: the statement parses and has its effect whatever the server
  local unit = assert(effects.analyze(GEN_SET, "migration.sql"))
  h.eq(#unit.effects, 1)
  h.same(unit.effects[1].set, { expression = '"a" * 3' })
  local dir, mdir = h.project { { "20240101000000_init", GEN_INIT }, { "20240102000000_gen", GEN_SET } }
  local lout, lerr, lrc = mf(dir, h.admin_url, { "lint", "--offline", "--all" })
  h.ok(lrc == 0 or lrc == 1, "lint ran: " .. lout .. lerr)
  h.not_contains(lout .. lerr, "syntax error")
  if num < 170000 then
    -- older servers reject it: the row fails, the column keeps its expression;
    -- the file's expression is not the catalog's and the file did not give that
    -- one, so there is no evidence either way
    local _, url = h.fresh_db()
    local r = L.deploy(url, nil, mdir)
    h.ok(r.ok == false, "PostgreSQL " .. num // 10000 .. " rejects SET EXPRESSION")
    local d = json.decode((mf(dir, url, { "diagnose", "--json" }))).migrations[1]
    h.eq(d.name, "20240102000000_gen")
    h.eq(d.verdict, "unverifiable")
    print(("# SET EXPRESSION on PostgreSQL %d: rejected by the server, diagnose %s"):format(num // 10000, d.verdict))
    return
  end
  -- it ran, the row recorded failed: the catalog's generation expression is the file's
  local _, url = h.fresh_db()
  local r = L.deploy(url, nil, mdir)
  h.ok(r.ok ~= false, "the server accepts it")
  h.eq(h.psql(url, 'SELECT "b" FROM "P"'):gsub("%s+$", ""), "30", "the stored values were recomputed")
  h.psql(url, "UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0 WHERE migration_name = '20240102000000_gen'")
  local out, err = mf(dir, url, { "diagnose", "--json" })
  local d = json.decode(out).migrations[1]
  h.eq(d.name, "20240102000000_gen", err)
  h.eq(d.verdict, "complete", out)
  -- it did not run: the old expression is there, which the file cannot tell from a spelling
  -- it does not match, so unverifiable (never a blind done), and plan refuses
  local _, url2 = h.fresh_db()
  L.deploy(url2, nil, mdir, "20240101000000_init")
  L.failed(url2, "20240102000000_gen", L.checksum(GEN_SET), "ERROR: canceling statement due to lock timeout")
  local out2 = mf(dir, url2, { "diagnose", "--json" })
  local d2 = json.decode(out2).migrations[1]
  h.eq(d2.verdict, "unverifiable", out2)
  h.contains(out2, "generation expression")
  local _, serr, src = mf(dir, url, { "status" })
  h.eq(src, 1, "status: a failed migration: " .. serr)
  print(("# SET EXPRESSION on PostgreSQL %d: parsed, complete when it ran, unverifiable when not"):format(num // 10000))
end

return T
