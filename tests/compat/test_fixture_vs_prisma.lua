-- Compatibility: the fixture builder (tests/lua/prisma_ledger.lua) leaves
-- the same `_prisma_migrations` ledger as the real Prisma CLI 6.19.3, and
-- `prisma migrate status` gives the same exit code on both.
-- Each test builds one state twice, on two fresh databases: once with the
-- real CLI (script mode "whole" = native behaviour), once with the fixture
-- builder, then compares every column of every row (compat.same_ledger).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local H = require "helper"
local L = require "prisma_ledger"
local C = require "compat"

local T = {}

local INIT = 'CREATE TABLE "User" (\n    "id" SERIAL NOT NULL,\n    "email" TEXT NOT NULL,\n    CONSTRAINT "User_pkey" PRIMARY KEY ("id")\n);\n\nCREATE UNIQUE INDEX "User_email_key" ON "User"("email");\n'
local SECOND = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n'
local BAD = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\nCREATE INDEX "User_name_idx" ON "User"("name");\nALTER TABLE "DoesNotExist" ADD COLUMN "x" INTEGER;\n'
local N1, N2 = "20240101000000_init", "20240102000000_second"

local function deploy(url, mdir)
  return C.prisma(url, mdir, { "migrate", "deploy" })
end

local function user_columns(url, schema)
  return H.psql(url, ([[SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = '%s' AND table_name = 'User']])
    :format(schema or "public"))
end

-- the same status exit code on the Prisma-built and the fixture-built state
local function same_status(pr_url, fx_url, mdir, want, what)
  local prc, pout = C.status(pr_url, mdir)
  local frc, fout = C.status(fx_url, mdir)
  H.eq(prc, want, (what or "") .. " status on the Prisma-built state:\n" .. pout)
  H.eq(frc, prc, (what or "") .. " status on the fixture-built state:\n" .. fout)
end

-- (a) --------------------------------------------------------------------
T["a: clean deploy of two migrations"] = function()
  local _, mdir = H.project({ { N1, INIT }, { N2, SECOND } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local _, fx2 = H.fresh_db()
  local out, rc = deploy(pr, mdir)
  H.eq(rc, 0, out)
  H.contains(out, "All migrations have been successfully applied.")
  local r = L.deploy(fx, nil, mdir)
  H.ok(r.ok, r.error)
  -- the same state from the primitives
  L.applied(fx2, N1, L.checksum(INIT))
  L.applied(fx2, N2, L.checksum(SECOND))
  local prows = C.rows(pr)
  H.eq(#prows, 2)
  H.eq(prows[1].checksum, L.checksum(INIT), "Prisma's checksum = sha256 of the file")
  C.same_ledger(C.rows(fx), prows, "L.deploy")
  C.same_ledger(C.rows(fx2), prows, "L.applied")
  H.eq(user_columns(fx), user_columns(pr))
  same_status(pr, fx, mdir, 0)
  same_status(pr, fx2, mdir, 0)
end

-- (b) --------------------------------------------------------------------
T["b: failing second migration (whole mode)"] = function()
  local _, mdir = H.project({ { N1, INIT }, { N2, BAD } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local _, fx2 = H.fresh_db()
  local out, rc = deploy(pr, mdir)
  H.eq(rc, 1, out)
  local r = L.deploy(fx, nil, mdir)
  H.eq(r.code, "P3018")
  H.eq(r.failed, N2)
  L.applied(fx2, N1, L.checksum(INIT))
  L.failed(fx2, N2, L.checksum(BAD), "A migration failed to apply.")
  local prows = C.rows(pr)
  H.eq(prows[2].finished_at, nil)
  H.eq(prows[2].checksum, L.checksum(BAD))
  C.same_ledger(C.rows(fx), prows, "L.deploy")
  C.same_ledger(C.rows(fx2), prows, "L.applied+L.failed")
  -- whole mode: no partial DDL on either side
  H.eq(user_columns(pr), "id,email\n")
  H.eq(user_columns(fx), "id,email\n")
  same_status(pr, fx, mdir, 1)
  same_status(pr, fx2, mdir, 1)
  -- the next deploy: P3009, nothing written
  out, rc = deploy(pr, mdir)
  H.eq(rc, 1, out)
  H.contains(out, "P3009")
  H.contains(out, ("The `%s` migration started at"):format(N2))
  H.eq(L.deploy(fx, nil, mdir).code, "P3009")
  C.same_ledger((C.rows(fx)), (C.rows(pr)), "after P3009")
end

T["b: killed process (logs NULL) is failed for status too"] = function()
  local _, mdir = H.project({ { N1, INIT }, { N2, BAD } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local out, rc = deploy(pr, mdir)
  H.eq(rc, 1, out)
  H.psql(pr, [[UPDATE _prisma_migrations SET logs = NULL WHERE finished_at IS NULL]])
  L.applied(fx, N1, L.checksum(INIT))
  L.failed(fx, N2, L.checksum(BAD), nil)
  C.same_ledger((C.rows(fx)), (C.rows(pr)))
  same_status(pr, fx, mdir, 1)
end

-- (c) --------------------------------------------------------------------
T["c: resolve --rolled-back, then deploy the fixed file"] = function()
  local _, mdir = H.project({ { N1, INIT }, { N2, BAD } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local _, fx2 = H.fresh_db()
  deploy(pr, mdir)
  local out, rc = C.prisma(pr, mdir, { "migrate", "resolve", "--rolled-back", N2 })
  H.eq(rc, 0, out)
  H.contains(out, ("Migration %s marked as rolled back."):format(N2))
  local r = L.deploy(fx, nil, mdir)
  L.rolled_back(fx, r.id)
  L.deploy(fx2, nil, mdir)
  H.ok(L.resolve_rolled_back(fx2, N2))
  local prows = C.rows(pr)
  H.ok(prows[2].rolled_back_at, "rolled_back_at set")
  H.eq(prows[2].finished_at, nil)
  C.same_ledger(C.rows(fx), prows, "L.rolled_back")
  C.same_ledger(C.rows(fx2), prows, "L.resolve_rolled_back")
  -- status says "up to date" (exit 0) although deploy would re-run it
  same_status(pr, fx, mdir, 0)
  -- fix the file and deploy again: a new row next to the rolled-back one
  H.write(mdir .. "/" .. N2 .. "/migration.sql", SECOND)
  out, rc = deploy(pr, mdir)
  H.eq(rc, 0, out)
  r = L.deploy(fx, nil, mdir)
  H.ok(r.ok, r.error)
  prows = C.rows(pr)
  H.eq(#prows, 3)
  H.eq(prows[3].checksum, L.checksum(SECOND))
  C.same_ledger(C.rows(fx), prows, "redeploy")
  H.eq(user_columns(fx), user_columns(pr))
  same_status(pr, fx, mdir, 0)
end

-- (d) --------------------------------------------------------------------
T["d: resolve --applied"] = function()
  local _, mdir = H.project({ { N1, INIT }, { N2, BAD } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local _, fx2 = H.fresh_db()
  deploy(pr, mdir)
  local out, rc = C.prisma(pr, mdir, { "migrate", "resolve", "--applied", N2 })
  H.eq(rc, 0, out)
  H.contains(out, ("Migration %s marked as applied."):format(N2))
  local r = L.deploy(fx, nil, mdir)
  L.rolled_back(fx, r.id)
  L.resolved_applied(fx, N2, L.checksum(BAD))
  L.deploy(fx2, nil, mdir)
  H.ok(L.resolve_applied(fx2, N2, L.file_checksum(mdir .. "/" .. N2 .. "/migration.sql")))
  local prows = C.rows(pr)
  H.eq(#prows, 3)
  H.eq(prows[3].logs, "")
  H.eq(prows[3].applied_steps_count, 0)
  H.eq(prows[3].started_at, prows[3].finished_at)
  C.same_ledger(C.rows(fx), prows, "L.rolled_back+L.resolved_applied")
  C.same_ledger(C.rows(fx2), prows, "L.resolve_applied")
  same_status(pr, fx, mdir, 0)
  -- a second resolve --applied: P3008 on both
  out, rc = C.prisma(pr, mdir, { "migrate", "resolve", "--applied", N2 })
  H.eq(rc, 1, out)
  H.contains(out, "P3008")
  H.eq(select(2, L.resolve_applied(fx2, N2, "x")), "P3008")
end

T["d: resolve --applied on an empty database (baseline)"] = function()
  local _, mdir = H.project({ { N1, INIT } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local out, rc = C.prisma(pr, mdir, { "migrate", "resolve", "--applied", N1 })
  H.eq(rc, 0, out)
  L.resolved_applied(fx, N1, L.checksum(INIT))
  C.same_ledger((C.rows(fx)), (C.rows(pr)))
  same_status(pr, fx, mdir, 0)
end

-- (e) --------------------------------------------------------------------
T["e: ?schema=app"] = function()
  local _, mdir = H.project({ { N1, INIT }, { N2, BAD } })
  local _, pr = H.fresh_db()
  local _, fx = H.fresh_db()
  local pra, fxa = pr .. "?schema=app", fx .. "?schema=app"
  local out, rc = deploy(pra, mdir)
  H.eq(rc, 1, out)
  local r = L.deploy(fxa, nil, mdir)
  H.eq(r.code, "P3018")
  local prows, pexists = C.rows(pra)
  H.ok(pexists, "Prisma wrote _prisma_migrations in app")
  H.eq(select(2, C.rows(pr)), false, "no ledger in public (Prisma)")
  H.eq(select(2, C.rows(fx)), false, "no ledger in public (fixture)")
  C.same_ledger(C.rows(fx, "app"), prows, "app")
  H.eq(user_columns(pr, "app"), "id,email\n")
  H.eq(user_columns(fx, "app"), user_columns(pr, "app"))
  same_status(pra, fxa, mdir, 1)
  -- status without ?schema= sees no ledger in public on either
  same_status(pr, fx, mdir, 1, "public:")
end

return T
