-- Compatibility of migfix's resolutions with the real Prisma CLI 6.19.3:
-- after `migfix run` Prisma's own status/deploy accept the ledger; after
-- `migfix resolve --rolled-back` Prisma redeploys the fixed file; migfix's
-- `resolve --applied` and `deploy` leave the same rows as Prisma's on twin
-- databases (compat.same_ledger: column by column, modulo ids and times).
-- About 8 Prisma calls (~3 s each).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local H = require "helper"
local L = require "prisma_ledger"
local C = require "compat"

local T = {}

local TICK = H.root .. "/tests/fixtures/ticketing/prisma/migrations"
local INIT, BIG, MERGE = "20240105093000_init", "20240312141500_sla_kb_forms_email", "20240402101500_ticket_merge"
local M1 = { "20240101000000_init", 'CREATE TABLE "User" (\n    "id" SERIAL NOT NULL,\n    "email" TEXT NOT NULL,\n    CONSTRAINT "User_pkey" PRIMARY KEY ("id")\n);\n\nCREATE UNIQUE INDEX "User_email_key" ON "User"("email");\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }
local M3 = { "20240103000000_third", 'CREATE INDEX "User_name_idx" ON "User"("name");\n' }
local BAD2 = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\nALTER TABLE "DoesNotExist" ADD COLUMN "x" INTEGER;\n'

local PW = os.getenv("MIGFIX_TEST_PW")
local function pw_url(name)
  return (H.url(name):gsub("://[^@/]*@", "://migfix_pw:" .. PW .. "@", 1))
end

local function mf(dir, url, args)
  local full = { "-C", dir, "--url", url }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local out, err, rc = H.migfix(full)
  return out .. err, rc
end

local function sh_ok(cmd)
  local out, rc = H.sh(cmd .. " 2>&1")
  if rc ~= 0 then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

local function of(rows, name)
  local t = {}
  for _, r in ipairs(rows) do if r.migration_name == name then t[#t + 1] = r end end
  return t
end

T["seed: after migfix run, Prisma status is clean and Prisma deploy applies the next migration"] = function()
  local dir = H.tmpdir()
  local mdir = dir .. "/prisma/migrations"
  sh_ok(("mkdir -p %s && cp -r %s %s %s %s"):format(H.shq(mdir), H.shq(TICK .. "/migration_lock.toml"),
    H.shq(TICK .. "/" .. INIT), H.shq(TICK .. "/" .. BIG), H.shq(mdir .. "/")))
  local name, aurl = H.fresh_db()
  local r = L.deploy(aurl, nil, mdir)
  H.ok(r.ok, r.error)
  H.psql(aurl, ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL WHERE migration_name = '%s'"):format(BIG))
  local out, rc = mf(dir, pw_url(name), { "run" })
  H.eq(rc, 0, "migfix run:\n" .. out)
  local src, sout = C.status(aurl, mdir)
  H.eq(src, 0, "prisma migrate status:\n" .. sout)
  H.contains(sout, "Database schema is up to date!")
  sh_ok("cp -r " .. H.shq(TICK .. "/" .. MERGE) .. " " .. H.shq(mdir .. "/"))
  local dout, drc = C.prisma(aurl, mdir, { "migrate", "deploy" })
  H.eq(drc, 0, "prisma migrate deploy:\n" .. dout)
  local m = of(C.rows(aurl), MERGE)
  H.eq(#m, 1)
  H.eq(m[1].applied_steps_count, 1)
  H.ok(m[1].finished_at and not m[1].rolled_back_at)
  -- the big migration was not run again by Prisma
  H.eq(#of(C.rows(aurl), BIG), 2)
end

T["after migfix resolve --rolled-back, Prisma deploy re-runs the fixed file"] = function()
  local dir, mdir = H.project { M1, { M2[1], BAD2 } }
  local name, aurl = H.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  local r = L.deploy(aurl, nil, mdir)
  H.eq(r.code, "P3018")
  local out, rc = mf(dir, pw_url(name), { "resolve", "--rolled-back", M2[1] })
  H.eq(rc, 0, out)
  H.write(mdir .. "/" .. M2[1] .. "/migration.sql", M2[2])
  local dout, drc = C.prisma(aurl, mdir, { "migrate", "deploy" })
  H.eq(drc, 0, "prisma migrate deploy:\n" .. dout)
  local rows = of(C.rows(aurl), M2[1])
  H.eq(#rows, 2)
  H.ok(rows[1].rolled_back_at and not rows[1].finished_at, "the failed row stays, rolled back")
  H.eq(rows[2].checksum, L.checksum(M2[2]))
  H.eq(rows[2].applied_steps_count, 1)
end

T["resolve --applied: migfix and Prisma write the same rows on twin databases"] = function()
  local dir, mdir = H.project { M1, M2 }
  local function twin()
    local name, aurl = H.fresh_db()
    L.deploy(aurl, nil, mdir, M1[1])
    H.psql(aurl, M2[2])
    L.failed(aurl, M2[1], L.checksum(M2[2]), nil, { started_at = "2024-01-02 00:00:00.000000+00" })
    return name, aurl
  end
  local mname, murl = twin()
  local _, purl = twin()
  local out, rc = mf(dir, pw_url(mname), { "resolve", "--applied", M2[1] })
  H.eq(rc, 0, out)
  local pout, prc = C.prisma(purl, mdir, { "migrate", "resolve", "--applied", M2[1] })
  H.eq(prc, 0, pout)
  -- init rows differ only by id/time; compare the whole ledgers
  C.same_ledger(C.rows(murl), C.rows(purl), "resolve --applied")
  local src, sout = C.status(murl, mdir)
  H.eq(src, 0, "Prisma status after migfix resolve --applied:\n" .. sout)
end

T["deploy: migfix and Prisma leave equal rows on twin databases"] = function()
  local dir, mdir = H.project { M1, M2, M3 }
  local mname, murl = H.fresh_db()
  local _, purl = H.fresh_db()
  local out, rc = mf(dir, pw_url(mname), { "deploy" })
  H.eq(rc, 0, out)
  local pout, prc = C.prisma(purl, mdir, { "migrate", "deploy" })
  H.eq(prc, 0, pout)
  C.same_ledger(C.rows(murl), C.rows(purl), "deploy")
  local src, sout = C.status(murl, mdir)
  H.eq(src, 0, "Prisma status after migfix deploy:\n" .. sout)
  -- a failing migration: both record it the same way (logs text differs: wasm engine)
  local dir2, mdir2 = H.project { M1, { M2[1], BAD2 } }
  local mname2, murl2 = H.fresh_db()
  local _, purl2 = H.fresh_db()
  local out2, rc2 = mf(dir2, pw_url(mname2), { "deploy" })
  H.eq(rc2, 1, out2)
  local pout2, prc2 = C.prisma(purl2, mdir2, { "migrate", "deploy" })
  H.eq(prc2, 1, pout2)
  C.same_ledger(C.rows(murl2), C.rows(purl2), "failed deploy")
end

return T
