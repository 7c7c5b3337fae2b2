-- Compatibility: the folders `migfix split NAME --write` writes are applied
-- by the real Prisma CLI 6.19.3 (`migrate deploy`) in order, where the
-- original stood (before the later migration), and `migrate status` is clean
-- afterwards — on the database where the original failed (the ledger keeps
-- its rolled-back row; the folder is gone) and on a fresh database.
-- Five CLI calls in all (~3 s each).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local H = require "helper"
local C = require "compat"

local T = {}

local INIT = [[
CREATE TYPE "Status" AS ENUM ('OPEN');
CREATE TABLE "Owner" ("id" INTEGER NOT NULL, CONSTRAINT "Owner_pkey" PRIMARY KEY ("id"));
CREATE TABLE "T" ("id" INTEGER NOT NULL, "name" TEXT, "status" "Status" NOT NULL DEFAULT 'OPEN',
                  CONSTRAINT "T_pkey" PRIMARY KEY ("id"));
INSERT INTO "Owner" VALUES (1);
INSERT INTO "T" VALUES (1, 'a', 'OPEN'), (2, 'b', 'OPEN');
]]

-- fails under Prisma (one implicit transaction): 55P04 "unsafe use of new
-- value", and CREATE INDEX CONCURRENTLY would fail with 25001
local MIXED = [[
-- AlterEnum
ALTER TYPE "Status" ADD VALUE 'CLOSED';

-- AlterTable
ALTER TABLE "T" ADD COLUMN "ownerId" INTEGER;

UPDATE "T" SET "status" = 'CLOSED', "ownerId" = 1 WHERE "id" = 1;

-- AddForeignKey
ALTER TABLE "T" ADD CONSTRAINT "T_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "Owner"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- CreateIndex
CREATE INDEX CONCURRENTLY "T_ownerId_idx" ON "T"("ownerId");

-- CreateIndex
CREATE INDEX "T_name_idx" ON "T"("name");

-- AlterTable
ALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;
]]
-- the later migration depends on the split's result (the new column)
local LATER = 'CREATE INDEX "T_status_ownerId_idx" ON "T"("status", "ownerId");\n'
local M1, M2, M3 = "20240101000000_init", "20240102000000_mixed", "20240103000000_later"

local function schema_of(url)
  return H.psql(url, [[
    SELECT string_agg(x, E'\n' ORDER BY x) FROM (
      SELECT format('column %s %s %s', attname, format_type(atttypid, atttypmod), attnotnull) AS x
        FROM pg_attribute WHERE attrelid = '"T"'::regclass AND attnum > 0 AND NOT attisdropped
      UNION ALL SELECT format('constraint %s %s %s', conname, contype, convalidated) FROM pg_constraint WHERE conrelid = '"T"'::regclass
      UNION ALL SELECT format('index %s valid=%s', c.relname, i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = '"T"'::regclass
      UNION ALL SELECT format('enum %s', string_agg(enumlabel, ',' ORDER BY enumsortorder)) FROM pg_enum
        WHERE enumtypid = '"Status"'::regtype) s]])
end

local function applied_order(url)
  local names = {}
  for _, r in ipairs(C.rows(url)) do
    if r.finished_at and not r.rolled_back_at then names[#names + 1] = r.migration_name end
  end
  return names
end

T["split output deploys with the real Prisma CLI, on the failed database and on a fresh one"] = function()
  local proj, mdir = H.project({ { M1, INIT }, { M2, MIXED }, { M3, LATER } })
  local _, failed_db = H.fresh_db()

  -- 1. Prisma fails on the original (55P04), the row stays failed
  local out, rc = C.prisma(failed_db, mdir, { "migrate", "deploy" })
  H.ok(rc ~= 0, "prisma migrate deploy should fail on " .. M2 .. ":\n" .. out)
  H.contains(out, 'unsafe use of new value "CLOSED"')
  H.contains(out, M2)
  local before = C.rows(failed_db)
  H.eq(before[#before].migration_name, M2)
  H.eq(before[#before].finished_at, nil)

  -- 2. migfix split --write: parts written, original moved away, row rolled back
  local sout, serr, src = H.migfix({ "split", M2, "--write", "--url", failed_db, "-C", proj })
  H.eq(src, 0, serr .. sout)
  local rows = C.rows(failed_db)
  H.eq(rows[#rows].migration_name, M2)
  H.ok(rows[#rows].rolled_back_at, "the failed row is rolled back")

  -- 3. Prisma deploys the parts in order, then the later migration
  out, rc = C.prisma(failed_db, mdir, { "migrate", "deploy" })
  H.eq(rc, 0, out)
  H.contains(out, "All migrations have been successfully applied.")
  local order = applied_order(failed_db)
  H.eq(order[1], M1)
  H.eq(order[#order], M3)
  local parts = {}
  for i = 2, #order - 1 do
    H.eq(order[i]:sub(1, #M2 + 2), M2 .. "_p", "a part of " .. M2)
    parts[#parts + 1] = order[i]
  end
  H.ok(#parts >= 5, "several parts")
  for i = 2, #parts do H.ok(parts[i - 1] < parts[i], "parts in order") end
  -- 4. status is clean
  local src2, sout2 = C.status(failed_db, mdir)
  H.eq(src2, 0, sout2)
  H.contains(sout2, "Database schema is up to date!")

  -- 5. a fresh database: deploy and status, same schema
  local _, fresh = H.fresh_db()
  out, rc = C.prisma(fresh, mdir, { "migrate", "deploy" })
  H.eq(rc, 0, out)
  H.eq(table.concat(applied_order(fresh), ","), table.concat(order, ","))
  local src3, sout3 = C.status(fresh, mdir)
  H.eq(src3, 0, sout3)
  H.eq(schema_of(fresh), schema_of(failed_db))
  local s = schema_of(fresh)
  H.contains(s, "column name text t")
  H.contains(s, "constraint T_ownerId_fkey f t")
  H.contains(s, "index T_ownerId_idx valid=t")
  H.contains(s, "index T_name_idx valid=t")
  H.contains(s, "enum OPEN,CLOSED")
  H.not_contains(s, "not_null_check")
  H.eq(H.psql(fresh, [[SELECT "status" || ' ' || "ownerId" FROM "T" WHERE "id" = 1]]), "CLOSED 1\n")
end

return T
