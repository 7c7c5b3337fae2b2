-- The shapes of real Prisma histories that used to give a wrong verdict or
-- crash diagnose (issue 10, item 2), each on a real PostgreSQL in the
-- states a failed deploy leaves, built without migfix:
--   complete: the failed file ran as ONE query (Prisma's native engine); the
--             row is marked failed with no logs (the process died after COMMIT)
--   absent:   nothing of it ran; the row failed with a lock timeout
--   partial:  its first k statements ran one by one, each committing (the
--             driver-adapter engine); the row has that engine's log
-- then `migfix diagnose --json` must give the verdict the shape names.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local effects = require "migfix.effects"

local T = {}

local FAILED = "20240201000000_failed"
local LOCK_LOGS = "A migration failed to apply. New migrations cannot be applied before the error is recovered from.\n\n" ..
  "Migration name: " .. FAILED .. "\n\nDatabase error code: 55P03\n\nDatabase error:\nERROR: canceling statement due to lock timeout\n"
local ADAPTER_LOGS = "external connector error\nError querying the database: ERROR: canceling statement due to lock timeout\n" ..
  "   0: sql_schema_connector::apply_migration::apply_script\n           with migration_name=\"" .. FAILED .. "\"\n" ..
  "             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:113"

local function plain(url) return (url:gsub("%?.*$", "")) end

--- Build `which` state ("complete" | "absent" | "partial") of `failed_sql`
--- after the `earlier` migrations; k = statements of the partial prefix.
--- Returns the diagnosis document of the failed migration, its exit code and
--- the database URL.
local function build(earlier, failed_sql, which, k, opts)
  opts = opts or {}
  local migs = {}
  for i, text in ipairs(earlier) do migs[#migs + 1] = { ("20240101%06d_m%d"):format(i, i), text } end
  local prev = migs[#migs] and migs[#migs][1]
  migs[#migs + 1] = { FAILED, failed_sql }
  local _, mdir = h.project(migs)
  local _, url = h.fresh_db()
  local checksum = L.checksum(failed_sql)
  if which == "complete" then
    local r = L.deploy(url, nil, mdir)
    assert(r.ok, "the failed file must run as one query: " .. tostring(r.error))
    h.psql(url, ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0 WHERE migration_name = '%s'"):format(FAILED))
  else
    if prev then
      local r = L.deploy(url, nil, mdir, prev)
      assert(r.ok, "earlier migrations: " .. tostring(r.error))
    end
    if which == "partial" then
      local unit = assert(effects.analyze(failed_sql))
      for i = 1, k do h.psql(url, unit.statements[i].text) end
      L.failed(url, FAILED, checksum, opts.logs or ADAPTER_LOGS)
    else
      L.failed(url, FAILED, checksum, opts.logs or LOCK_LOGS)
    end
  end
  if opts.after then h.psql(url, opts.after) end
  local out, err, rc = h.migfix { "--migrations", mdir, "--url", url, "diagnose", "--json", FAILED }
  local doc = json.decode(out)
  if not doc then error(("diagnose gave no JSON (exit %s):\n%s%s"):format(tostring(rc), out, err)) end
  return doc.migrations[1], rc, url, mdir, doc
end

local function explain(d)
  local lines = { ("verdict %s: %s"):format(d.verdict, d.summary) }
  for _, o in ipairs(d.objects or {}) do
    lines[#lines + 1] = ("  %s %s%s %s %s %s"):format(o.kind, o.table ~= json.null and (tostring(o.table) .. ".") or "",
      tostring(o.name), o.state, json.encode(o.diffs), o.reason ~= json.null and tostring(o.reason) or "")
  end
  return table.concat(lines, "\n")
end

-- verdict: one verdict, or a list of the acceptable ones
local function expect(d, verdict, what)
  local ok = d.verdict == verdict
  if type(verdict) == "table" then
    for _, v in ipairs(verdict) do if d.verdict == v then ok = true end end
    verdict = table.concat(verdict, " or ")
  end
  if not ok then
    error(("%s: expected %s\n%s"):format(what, verdict, explain(d)), 2)
  end
end

--- one test per state of a shape
local function shape(name, s)
  for _, which in ipairs({ "complete", "absent", "partial" }) do
    local want = s[which]
    if want then
      T[name .. " (" .. which .. ")"] = function()
        local k = which == "partial" and s.k or nil
        local d, rc = build(s.earlier, s.sql, which, k, s.opts)
        h.eq(rc, 1, "exit status of diagnose on a failed migration")
        expect(d, want, name .. " " .. which)
        if s.check then s.check(d, which) end
      end
    end
  end
end

local function obj(d, kind, name)
  for _, o in ipairs(d.objects) do if o.kind == kind and o.name == name then return o end end
  error(("no object %s %s in\n%s"):format(kind, name, explain(d)), 2)
end

-- 1. DROP TYPE of an enum an earlier migration created: the file cannot
-- show it is an enum (kind "type"); pg_type of every typtype resolves it.
local ENUM_EARLIER = { [[CREATE TYPE "Plan" AS ENUM ('FREE', 'PRO');
CREATE TABLE "Org" ("id" TEXT NOT NULL, CONSTRAINT "Org_pkey" PRIMARY KEY ("id"));]] }
shape("DROP TYPE of an enum from an earlier migration", {
  earlier = ENUM_EARLIER, sql = 'DROP TYPE "Plan";\n',
  complete = "complete", absent = "absent",
  check = function(d, which)
    h.eq(obj(d, "type", "Plan").state, which == "complete" and "absent" or "still_present")
  end,
})
shape("DROP TYPE IF EXISTS of an enum from an earlier migration", {
  earlier = ENUM_EARLIER, sql = 'DROP TYPE IF EXISTS "Plan";\n',
  complete = "complete", absent = "absent",
})

-- 2. Prisma's generated enum change (a label removed): the labels tell the
-- new enum from the old one of the same name.
local ROLE_EARLIER = { [[CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN', 'GUEST');
CREATE TABLE "User" ("id" TEXT NOT NULL, "role" "Role" NOT NULL DEFAULT 'GUEST', CONSTRAINT "User_pkey" PRIMARY KEY ("id"));]] }
local ROLE_CHANGE = [[-- AlterEnum
BEGIN;
CREATE TYPE "Role_new" AS ENUM ('USER', 'ADMIN');
ALTER TABLE "User" ALTER COLUMN "role" DROP DEFAULT;
ALTER TABLE "User" ALTER COLUMN "role" TYPE "Role_new" USING ("role"::text::"Role_new");
ALTER TYPE "Role" RENAME TO "Role_old";
ALTER TYPE "Role_new" RENAME TO "Role";
DROP TYPE "Role_old";
ALTER TABLE "User" ALTER COLUMN "role" SET DEFAULT 'USER';
COMMIT;
]]
shape("Prisma's enum change block (labels compared)", {
  earlier = ROLE_EARLIER, sql = ROLE_CHANGE,
  complete = "complete", absent = "absent",
  check = function(d, which)
    local e = obj(d, "enum", "Role")
    if which == "absent" then
      h.eq(e.state, "different")
      h.eq(e.diffs[1].field, "labels")
    else
      h.eq(e.state, "present")
    end
  end,
})
-- the same block when the old default stays valid (labels added and removed)
shape("Prisma's enum change block, default unchanged", {
  earlier = { [[CREATE TYPE "Status" AS ENUM ('OPEN', 'DONE');
CREATE TABLE "Task" ("id" INTEGER NOT NULL, "status" "Status" NOT NULL DEFAULT 'OPEN', CONSTRAINT "Task_pkey" PRIMARY KEY ("id"));]] },
  sql = [[BEGIN;
CREATE TYPE "Status_new" AS ENUM ('OPEN', 'CLOSED');
ALTER TABLE "Task" ALTER COLUMN "status" DROP DEFAULT;
ALTER TABLE "Task" ALTER COLUMN "status" TYPE "Status_new" USING ("status"::text::"Status_new");
ALTER TYPE "Status" RENAME TO "Status_old";
ALTER TYPE "Status_new" RENAME TO "Status";
DROP TYPE "Status_old";
ALTER TABLE "Task" ALTER COLUMN "status" SET DEFAULT 'OPEN';
COMMIT;
]],
  complete = "complete", absent = "absent",
})

-- 3. ALTER TYPE ... RENAME of an enum from an earlier migration
shape("ALTER TYPE RENAME of an enum from an earlier migration", {
  earlier = ENUM_EARLIER, sql = 'ALTER TYPE "Plan" RENAME TO "Tier";\n',
  complete = "complete", absent = "absent",
})

-- 4. drop and re-create of the same name in one file (verify.lua crashed on these)
local T_EARLIER = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "a" INTEGER, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));
CREATE INDEX "T_a_idx" ON "T"("a");]] }
shape("DROP TABLE then CREATE TABLE of the same name", {
  earlier = T_EARLIER,
  sql = [[DROP TABLE "T";
CREATE TABLE "T" ("id" INTEGER NOT NULL, "b" TEXT, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));
CREATE INDEX "T_b_idx" ON "T"("b");
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("DROP INDEX IF EXISTS then CREATE INDEX of the same name", {
  earlier = { T_EARLIER[1] .. '\nALTER TABLE "T" ADD COLUMN "b" TEXT;' },
  sql = [[DROP INDEX IF EXISTS "T_a_idx";
CREATE INDEX "T_a_idx" ON "T"("a", "b");
]],
  complete = "complete", absent = "absent",
})
shape("DROP INDEX then CREATE INDEX of the same name", {
  earlier = { T_EARLIER[1] .. '\nALTER TABLE "T" ADD COLUMN "b" TEXT;' },
  sql = [[DROP INDEX "T_a_idx";
CREATE UNIQUE INDEX "T_a_idx" ON "T"("a");
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("DROP FUNCTION then CREATE FUNCTION (bodies compared)", {
  earlier = { [[CREATE FUNCTION "fee"(amount integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT amount / 10 $$;]] },
  sql = [[DROP FUNCTION "fee"(integer);
CREATE FUNCTION "fee"(amount integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT amount / 20 $$;
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("CREATE OR REPLACE FUNCTION of a function from an earlier migration", {
  earlier = { [[CREATE FUNCTION "touch"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;]] },
  sql = [[CREATE OR REPLACE FUNCTION "touch"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW."updatedAt" = now(); RETURN NEW; END $$;
]],
  complete = "complete", absent = "absent",
})
shape("DROP COLUMN c, ADD COLUMN c in one ALTER TABLE", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "c" INTEGER, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "T" DROP COLUMN "c",
ADD COLUMN "c" TEXT;
]],
  complete = "complete", absent = "absent",
  check = function(d, which)
    if which == "absent" then h.eq(obj(d, "column", "c").state, "different") end
  end,
})
local AB_EARLIER = { [[CREATE TABLE "B" ("id" TEXT NOT NULL, CONSTRAINT "B_pkey" PRIMARY KEY ("id"));
CREATE TABLE "A" ("id" TEXT NOT NULL, "bId" TEXT NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id"));
ALTER TABLE "A" ADD CONSTRAINT "A_bId_fkey" FOREIGN KEY ("bId") REFERENCES "B"("id") ON DELETE RESTRICT ON UPDATE CASCADE;]] }
shape("Prisma's DropForeignKey/AddForeignKey pair changing ON DELETE", {
  earlier = AB_EARLIER,
  sql = [[-- DropForeignKey
ALTER TABLE "A" DROP CONSTRAINT "A_bId_fkey";

-- AddForeignKey
ALTER TABLE "A" ADD CONSTRAINT "A_bId_fkey" FOREIGN KEY ("bId") REFERENCES "B"("id") ON DELETE CASCADE ON UPDATE CASCADE;
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
  check = function(d, which)
    if which == "absent" then h.eq(obj(d, "constraint", "A_bId_fkey").diffs[1].field, "on_delete") end
  end,
})

-- 5. temporary tables are no evidence (not in the schema, gone at commit)
local USER_EARLIER = { [[CREATE TABLE "User" ("id" INTEGER NOT NULL, "email" TEXT, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
INSERT INTO "User" VALUES (1, 'a@x'), (2, 'b@x');]] }
shape("CREATE TEMP TABLE ... ON COMMIT DROP beside real DDL", {
  earlier = USER_EARLIER,
  sql = [[CREATE TEMP TABLE "keep" ("id" INTEGER) ON COMMIT DROP;
INSERT INTO "keep" SELECT "id" FROM "User" WHERE "email" IS NOT NULL;
ALTER TABLE "User" ADD COLUMN "verified" BOOLEAN NOT NULL DEFAULT false;
UPDATE "User" SET "verified" = true WHERE "id" IN (SELECT "id" FROM "keep");
CREATE INDEX "User_verified_idx" ON "User"("verified");
]],
  complete = "complete", absent = "absent",
  check = function(d)
    local t = obj(d, "table", "keep")
    h.eq(t.state, "unverifiable")
    h.contains(t.reason, "temporary")
  end,
})
shape("CREATE TEMP TABLE ... AS, then a table from it", {
  earlier = USER_EARLIER,
  sql = [[CREATE TEMP TABLE "emails" ON COMMIT DROP AS SELECT "id", "email" FROM "User";
CREATE TABLE "Email" AS SELECT * FROM "emails";
ALTER TABLE "Email" ADD CONSTRAINT "Email_pkey" PRIMARY KEY ("id");
]],
  complete = "complete", absent = "absent",
})
shape("only a temporary table and data: unverifiable", {
  earlier = USER_EARLIER,
  sql = [[CREATE TEMP TABLE "t" ON COMMIT DROP AS SELECT "id" FROM "User";
UPDATE "User" SET "email" = lower("email") WHERE "id" IN (SELECT "id" FROM "t");
]],
  complete = "unverifiable", absent = "unverifiable",
})

-- 6. a column dropped and re-added under the same name with another type
shape("column dropped and re-added with another type", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "score" INTEGER, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));]] },
  sql = [[-- AlterTable
ALTER TABLE "T" DROP COLUMN "score";
ALTER TABLE "T" ADD COLUMN "score" DOUBLE PRECISION NOT NULL DEFAULT 0;
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})

-- 7. ADD COLUMN, then SET NOT NULL on it; only the first ran
shape("ADD COLUMN then SET NOT NULL, only the first ran", {
  earlier = USER_EARLIER,
  sql = [[ALTER TABLE "User" ADD COLUMN "name" TEXT;
UPDATE "User" SET "name" = "email";
ALTER TABLE "User" ALTER COLUMN "name" SET NOT NULL;
]],
  complete = "complete", absent = "absent", k = 2, partial = "partial",
  check = function(d, which)
    if which == "partial" then
      h.eq(obj(d, "column", "name").diffs[1].field, "not_null")
      h.eq(d.inconsistent, json.null, "a statement-by-statement engine explains the partial state")
      h.eq(d.execution.unit, "statement")
    end
  end,
})

-- 8. DDL inside DO blocks: the static statements are read and checked
shape("DO block with static DDL", {
  earlier = USER_EARLIER,
  sql = [[DO $$
BEGIN
  ALTER TABLE "User" ADD COLUMN "age" INTEGER;
  CREATE INDEX "User_age_idx" ON "User"("age");
END $$;
]],
  complete = "complete", absent = "absent",
  check = function(d)
    h.eq(obj(d, "index", "User_age_idx").line, 4)
  end,
})
shape("DO block with an existence guard (Prisma-style idempotent enum)", {
  earlier = USER_EARLIER,
  sql = [[DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'Kind') THEN
    CREATE TYPE "Kind" AS ENUM ('A', 'B');
  END IF;
END $$;
ALTER TABLE "User" ADD COLUMN "kind" "Kind";
]],
  complete = "complete", absent = "absent",
})
shape("DO block with an EXCEPTION WHEN duplicate_object guard", {
  earlier = AB_EARLIER,
  sql = [[ALTER TABLE "A" ADD COLUMN "cId" TEXT;
DO $$ BEGIN
  ALTER TABLE "A" ADD CONSTRAINT "A_cId_fkey" FOREIGN KEY ("cId") REFERENCES "B"("id");
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("DO block with dynamic SQL: unverifiable with the reason", {
  earlier = USER_EARLIER,
  sql = [[DO $$ BEGIN
  EXECUTE 'ALTER TABLE "User" ADD COLUMN "x" INTEGER';
END $$;
]],
  complete = "unverifiable", absent = "unverifiable",
  check = function(d)
    local found
    for _, o in ipairs(d.objects) do
      if o.state == "unverifiable" and type(o.reason) == "string" and o.reason:find("EXECUTE", 1, true) then found = o end
    end
    h.ok(found, "the EXECUTE is named in a reason:\n" .. explain(d))
    h.eq(found.line, 2)
  end,
})

-- 9. data-only and SET-only files: unverifiable, with a reason in --json
local function reasons(d)
  h.ok(#d.objects > 0, "objects listed")
  for _, o in ipairs(d.objects) do
    h.eq(o.state, "unverifiable")
    h.ok(type(o.reason) == "string" and #o.reason > 0, "a reason for " .. o.kind)
  end
end
shape("data-only migration", {
  earlier = USER_EARLIER,
  sql = [[UPDATE "User" SET "email" = lower("email");
INSERT INTO "User" VALUES (3, 'c@x');
]],
  -- the UPDATE reads the column it sets: not read; the INSERT is read from the rows. Run: the row
  -- is there, but that proves nothing about the UPDATE. Not run: the row is missing, and the file
  -- is one transaction, so none of it ran.
  complete = "unverifiable", absent = "absent",
  check = function(d, which)
    for _, o in ipairs(d.objects) do
      h.ok(type(o.reason) == "string" and #o.reason > 0, "a reason for " .. o.kind)
      if o.statement == 1 then h.eq(o.state, "unverifiable"); h.contains(o.reason, "which it also sets") end
      if o.statement == 2 then h.eq(o.state, which == "complete" and "present" or "missing") end
    end
  end,
})
shape("SET-only migration", {
  earlier = USER_EARLIER,
  sql = "SET lock_timeout = '2s';\nSET statement_timeout = 0;\n",
  complete = "unverifiable", absent = "unverifiable", check = reasons,
})
shape("trailing data change under the statement engine, read from the rows", {
  earlier = USER_EARLIER,
  sql = [[ALTER TABLE "User" ADD COLUMN "n" INTEGER;
UPDATE "User" SET "n" = 1;
]],
  -- one transaction: the column proves the UPDATE committed with it
  complete = "complete", absent = "absent",
  -- statement by statement, only the ALTER ran: the rows show the UPDATE did not
  k = 1, partial = "partial",
})

-- 10. Shapes the differential harness found in real histories
-- (the corpus harness, tests/corpus/, findings F1-F8), each as a minimal repro of our own.
local AB2 = { [[CREATE TABLE "A" ("id" INTEGER NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id"));
CREATE TABLE "B" ("id" INTEGER NOT NULL, "aId" INTEGER NOT NULL, CONSTRAINT "B_pkey" PRIMARY KEY ("id"));
ALTER TABLE "B" ADD CONSTRAINT "B_aId_fkey" FOREIGN KEY ("aId") REFERENCES "A"("id") ON DELETE RESTRICT ON UPDATE CASCADE;]] }
shape("F1: the FK pair beside another change (crashed diagnose)", {
  earlier = AB2,
  sql = [[ALTER TABLE "B" DROP CONSTRAINT "B_aId_fkey";
ALTER TABLE "B" ADD CONSTRAINT "B_aId_fkey" FOREIGN KEY ("aId") REFERENCES "A"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "A" ADD COLUMN "deleted" BOOLEAN NOT NULL DEFAULT false;
]],
  complete = "complete", absent = "absent", k = 2, partial = "partial",
})
shape("F1: two FK pairs and nothing else", {
  earlier = { AB2[1] .. [[

CREATE TABLE "C" ("id" INTEGER NOT NULL, "aId" INTEGER NOT NULL, CONSTRAINT "C_pkey" PRIMARY KEY ("id"));
ALTER TABLE "C" ADD CONSTRAINT "C_aId_fkey" FOREIGN KEY ("aId") REFERENCES "A"("id") ON DELETE RESTRICT ON UPDATE CASCADE;]] },
  sql = [[ALTER TABLE "B" DROP CONSTRAINT "B_aId_fkey";
ALTER TABLE "C" DROP CONSTRAINT "C_aId_fkey";
ALTER TABLE "B" ADD CONSTRAINT "B_aId_fkey" FOREIGN KEY ("aId") REFERENCES "A"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "C" ADD CONSTRAINT "C_aId_fkey" FOREIGN KEY ("aId") REFERENCES "A"("id") ON DELETE CASCADE ON UPDATE CASCADE;
]],
  complete = "complete", absent = "absent", k = 2, partial = "partial",
})
local ET = { [[CREATE TYPE "E" AS ENUM ('a', 'b');
CREATE TABLE "T" ("id" INTEGER NOT NULL, "e" "E"[]);]] }
shape("F3: DROP COLUMN of the column of an enum, then DROP TYPE", {
  earlier = ET, sql = [[ALTER TABLE "T" DROP COLUMN "e";
DROP TYPE "E";
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("F3: ALTER COLUMN TYPE TEXT, then DROP TYPE CASCADE", {
  earlier = ET, sql = [[ALTER TABLE "T" ALTER COLUMN "e" TYPE TEXT;
DROP TYPE "E" CASCADE;
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("F4: the enum-change block with a label added and one removed", {
  earlier = { [[CREATE TYPE "E" AS ENUM ('a', 'b', 'c');
CREATE TABLE "T" ("id" INTEGER NOT NULL, "e" "E" NOT NULL);]] },
  sql = [[BEGIN;
CREATE TYPE "E_new" AS ENUM ('a', 'b', 'd');
ALTER TABLE "T" ALTER COLUMN "e" TYPE "E_new" USING ("e"::text::"E_new");
ALTER TYPE "E" RENAME TO "E_old";
ALTER TYPE "E_new" RENAME TO "E";
DROP TYPE "E_old";
COMMIT;
]],
  complete = "complete", absent = "absent",
})
local TV = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "n" INTEGER);
CREATE VIEW "V" AS SELECT "id" FROM "T";]] }
shape("F5: CREATE OR REPLACE VIEW of an existing view (its query compared by its plan)", {
  earlier = TV, sql = [[CREATE OR REPLACE VIEW "V" AS SELECT "id", "n" FROM "T";
]],
  -- absent: the view in the database has other output columns than the file's
  complete = "complete", absent = "absent",
})
shape("F5: CREATE OR REPLACE VIEW with the same output columns (the plans differ)", {
  earlier = TV, sql = [[CREATE OR REPLACE VIEW "V" AS SELECT "id" FROM "T" WHERE "n" IS NOT NULL;
]],
  complete = "complete", absent = "absent",
  check = function(d, which)
    local o = obj(d, "view", "V")
    if which == "absent" then h.eq(o.diffs[1].field, "query") end
  end,
})
shape("F5: a replaced view WITH CHECK OPTION, and one whose query says *", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "n" INTEGER);
CREATE VIEW "V" AS SELECT "id" FROM "T";
CREATE VIEW "W" AS SELECT "id" FROM "T";]] },
  sql = [[CREATE OR REPLACE VIEW "V" AS SELECT "id" FROM "T" WHERE "n" > 0 WITH LOCAL CHECK OPTION;
CREATE OR REPLACE VIEW "W" AS SELECT t.* FROM "T" t WHERE "n" > 0;
]],
  -- W's plan is compared too when it is the same; another plan of a * query
  -- may be the columns the table has now, not another query
  -- (one transaction: V's old query shows none of it ran)
  complete = "complete", absent = "absent",
  check = function(d, which)
    if which == "absent" then
      h.eq(obj(d, "view", "V").diffs[1].field, "query")
      h.eq(obj(d, "view", "W").state, "unverifiable")
      h.contains(obj(d, "view", "W").reason, "whose * follows the tables' columns")
    end
  end,
})
shape("a view dropped and re-created unchanged around a column type change", {
  earlier = TV, sql = [[DROP VIEW "V";
ALTER TABLE "T" ALTER COLUMN "id" SET DATA TYPE BIGINT;
CREATE VIEW "V" AS SELECT "id" FROM "T";
]],
  -- the old view plans like the file's (same query, same table): it proves
  -- nothing, the column type does
  complete = "complete", absent = "absent", k = 2, partial = "partial",
})
shape("a replaced view's output columns named the way PostgreSQL names them", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "n" INTEGER, "s" TEXT);
CREATE VIEW "V" AS SELECT "id" FROM "T";]] },
  sql = [[CREATE OR REPLACE VIEW "V" AS SELECT t."id", count(*) OVER (), NULL::int, "s"::text, coalesce("n", 0),
  CASE WHEN "n" > 0 THEN 0 ELSE t."n" END, CASE WHEN "n" > 0 THEN 1 END, 1 + 1 AS two FROM "T" t;
]],
  -- complete must not read "not done" (names as PostgreSQL gives them)
  complete = "complete", absent = "absent",
})
shape("F5: DROP VIEW IF EXISTS, then CREATE VIEW", {
  earlier = TV, sql = [[DROP VIEW IF EXISTS "V";
CREATE VIEW "V" AS SELECT "id", "n" FROM "T";
]],
  complete = { "complete", "unverifiable" }, absent = "absent", k = 1, partial = { "partial", "unverifiable" },
})
shape("F5: a view replaced beside a checkable change", {
  earlier = TV, sql = [[ALTER TABLE "T" ADD COLUMN "m" INTEGER;
CREATE OR REPLACE VIEW "V" AS SELECT "id", "n", "m" FROM "T";
]],
  -- one transaction: the new column proves the view statement committed with it
  complete = "complete", absent = "absent", k = 1, partial = { "partial", "unverifiable" },
})
shape("F6: DDL, then a data statement that did not run", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "a" TEXT);
INSERT INTO "T" VALUES (1, 'x');]] },
  sql = [[ALTER TABLE "T" ADD COLUMN "b" TEXT;
UPDATE "T" SET "b" = "a";
]],
  -- the UPDATE is read from the rows: "b" is still NULL where "a" is 'x'
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("F6b: DDL, then a data statement that matches no row", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "a" TEXT);]] },
  sql = [[ALTER TABLE "T" ADD COLUMN "b" TEXT;
UPDATE "T" SET "b" = "a";
]],
  -- no row: the state after the ALTER is the complete one
  complete = "complete", absent = "absent", k = 1, partial = "complete",
})
shape("F7: a data statement ran, the DDL after it did not", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "a" TEXT);
INSERT INTO "T" VALUES (1, NULL);]] },
  sql = [[UPDATE "T" SET "a" = 'x' WHERE "a" IS NULL;
ALTER TABLE "T" ALTER COLUMN "a" SET NOT NULL;
]],
  -- what an ALTER sets may have been so before: it proves nothing about the UPDATE, but the rows
  -- show the UPDATE in effect; run alone before the ALTER, it may have run or had nothing to change
  complete = "complete", absent = "absent", k = 1, partial = "unverifiable",
  check = function(d, which)
    if which == "partial" then h.contains(d.summary, "may have run") end
  end,
})
shape("F8: a table renamed and a view made under its old name", {
  earlier = { [[CREATE TABLE "H" ("id" INTEGER NOT NULL, CONSTRAINT "H_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "H" RENAME TO "FH";
ALTER TABLE "FH" RENAME CONSTRAINT "H_pkey" TO "FH_pkey";
CREATE OR REPLACE VIEW "H" AS SELECT "id" FROM "FH";
]],
  complete = "complete", absent = "absent", k = 2, partial = { "partial", "unverifiable" },
})

-- 11. More shapes from the harness runs
shape("FK dropped, then its table renamed (rallly naming_convention_update)", {
  earlier = AB2,
  sql = [[ALTER TABLE "B" DROP CONSTRAINT "B_aId_fkey";
ALTER TABLE "B" RENAME TO "b_items";
ALTER TABLE "b_items" RENAME COLUMN "aId" TO "a_id";
ALTER TABLE "b_items" ADD CONSTRAINT "b_items_a_id_fkey" FOREIGN KEY ("a_id") REFERENCES "A"("id") ON DELETE CASCADE;
]],
  complete = "complete", absent = "absent", k = 2, partial = "partial",
})

shape("FKs dropped, then the table dropped (rallly remove_deprecated_event_model)", {
  earlier = { [[CREATE TABLE "users" ("id" TEXT NOT NULL, CONSTRAINT "users_pkey" PRIMARY KEY ("id"));
CREATE TABLE "events" ("id" TEXT NOT NULL, "user_id" TEXT NOT NULL, CONSTRAINT "events_pkey" PRIMARY KEY ("id"));
CREATE TABLE "polls" ("id" TEXT NOT NULL, "event_id" TEXT, CONSTRAINT "polls_pkey" PRIMARY KEY ("id"));
ALTER TABLE "events" ADD CONSTRAINT "events_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id");
ALTER TABLE "polls" ADD CONSTRAINT "polls_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "events"("id");]] },
  sql = [[-- DropForeignKey
ALTER TABLE "events" DROP CONSTRAINT "events_user_id_fkey";

-- DropForeignKey
ALTER TABLE "polls" DROP CONSTRAINT "polls_event_id_fkey";

-- DropTable
DROP TABLE "events";
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})

shape("FKs dropped IF EXISTS, then the table dropped (rallly drop_poll_views)", {
  earlier = { [[CREATE TABLE "users" ("id" TEXT NOT NULL, CONSTRAINT "users_pkey" PRIMARY KEY ("id"));
CREATE TABLE "poll_views" ("id" TEXT NOT NULL, "user_id" TEXT, CONSTRAINT "poll_views_pkey" PRIMARY KEY ("id"));
ALTER TABLE "poll_views" ADD CONSTRAINT "poll_views_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id");]] },
  sql = [[ALTER TABLE "poll_views" DROP CONSTRAINT IF EXISTS "poll_views_user_id_fkey";
DROP TABLE "poll_views";
]],
  -- statement by statement, a gone IF EXISTS target: the drop ran, or there was nothing to drop
  complete = "complete", absent = "absent", k = 1, partial = { "partial", "unverifiable" },
})

shape("a default spelled E'...' (ghostfolio added_default_value_for_provider_in_user)", {
  earlier = { [[CREATE TYPE "Provider" AS ENUM ('ANONYMOUS', 'GOOGLE');
CREATE TABLE "User" ("id" TEXT NOT NULL, "provider" "Provider", CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
INSERT INTO "User" VALUES ('a', NULL);]] },
  sql = [[UPDATE "User" SET "provider" = 'ANONYMOUS' WHERE "provider" IS NULL;

ALTER TABLE "User" ALTER COLUMN "provider" SET NOT NULL,
ALTER COLUMN "provider" SET DEFAULT E'ANONYMOUS';
]],
  -- the ALTER is found done (E'...' read as the same string), but it proves nothing about the
  -- UPDATE; the rows show the UPDATE in effect
  complete = "complete", absent = "absent", k = 1, partial = "unverifiable",
  check = function(d, which)
    if which == "complete" then h.eq(obj(d, "column", "provider").state, "present") end
  end,
})
shape("CREATE INDEX IF NOT EXISTS over an existing index of another definition (typebot add_item_id_in_answer)", {
  earlier = { [[CREATE TABLE "Answer" ("id" TEXT NOT NULL, "storageUsed" INTEGER, CONSTRAINT "Answer_pkey" PRIMARY KEY ("id"));
CREATE INDEX "Answer_storageUsed_idx" ON "Answer"("storageUsed") WHERE "storageUsed" IS NOT NULL;]] },
  sql = [[ALTER TABLE "Answer" ADD COLUMN "itemId" TEXT;

CREATE INDEX IF NOT EXISTS "Answer_storageUsed_idx" ON "Answer"("storageUsed");
CREATE INDEX IF NOT EXISTS "Answer_itemId_idx" ON "Answer"("itemId");
]],
  complete = "complete", absent = "absent", k = 2, partial = "partial",
  check = function(d, which)
    if which == "complete" then
      local o = obj(d, "index", "Answer_storageUsed_idx")
      h.eq(o.state, "present")
      h.eq(o.diffs[1].note, "IF NOT EXISTS kept the existing object")
    end
  end,
})
shape("ADD COLUMN IF NOT EXISTS of a column an earlier migration added (papermark add_banner_to_brand)", {
  earlier = { [[CREATE TABLE "Brand" ("id" TEXT NOT NULL, CONSTRAINT "Brand_pkey" PRIMARY KEY ("id"));]],
              [[ALTER TABLE "Brand" ADD COLUMN "welcomeMessage" TEXT;]] },
  sql = [[ALTER TABLE "Brand" ADD COLUMN IF NOT EXISTS "banner" TEXT;
ALTER TABLE "Brand" ADD COLUMN IF NOT EXISTS "welcomeMessage" TEXT;
]],
  -- one transaction: the existing column cannot be the file's when the other is missing
  complete = "complete", absent = "absent",
  -- the first ran alone: the catalog is the complete state (the second is a no-op)
  k = 1, partial = { "complete", "partial" },
})

shape("SELECT ... INTO TEMP TABLE, data, DROP TABLE of the temp (inbox-zero migrate_cold_email_to_rules)", {
  earlier = { [[CREATE TABLE "Rule" ("id" TEXT NOT NULL, "name" TEXT, CONSTRAINT "Rule_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Action" ("id" TEXT NOT NULL, "ruleId" TEXT, CONSTRAINT "Action_pkey" PRIMARY KEY ("id"));]] },
  sql = [[WITH created AS (
  INSERT INTO "Rule" (id, name) SELECT gen_random_uuid()::text, 'Cold Email' RETURNING id
)
SELECT * INTO TEMP TABLE temp_created_rules FROM created;

INSERT INTO "Action" (id, "ruleId") SELECT gen_random_uuid()::text, id FROM temp_created_rules;

DROP TABLE temp_created_rules;
]],
  -- data only: the DROP is of the temporary table, which is no evidence
  complete = "unverifiable", absent = "unverifiable",
  check = function(d)
    h.contains(obj(d, "table", "temp_created_rules").reason, "temporary")
  end,
})
shape("EXCLUDE constraint with an expression element (inbox-zero add_booking_scheduling)", {
  earlier = { [[CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE "Booking" ("id" TEXT NOT NULL, "emailAccountId" TEXT NOT NULL, "startTime" TIMESTAMP(3) NOT NULL,
  "endTime" TIMESTAMP(3) NOT NULL, CONSTRAINT "Booking_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "Booking" ADD CONSTRAINT "Booking_no_overlap" EXCLUDE USING gist (
    "emailAccountId" WITH =,
    tsrange("startTime", "endTime", '[)') WITH &&
);
]],
  complete = "complete", absent = "absent",
})

shape("primary key moved off a column that loses NOT NULL (civitai add_kv_store)", {
  earlier = { [[CREATE TABLE "M" ("modelId" INTEGER NOT NULL, "versionId" INTEGER NOT NULL, CONSTRAINT "M_pkey" PRIMARY KEY ("modelId", "versionId"));]] },
  sql = [[ALTER TABLE "M" DROP CONSTRAINT "M_pkey",
ADD COLUMN "id" SERIAL NOT NULL,
ALTER COLUMN "versionId" DROP NOT NULL,
ADD CONSTRAINT "M_pkey" PRIMARY KEY ("id");
CREATE TABLE "KeyValue" ("key" TEXT NOT NULL, CONSTRAINT "KeyValue_pkey" PRIMARY KEY ("key"));
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("enum column replaced by a text column, index of the same name re-created (civitai file_types_as_string)", {
  earlier = { [[CREATE TYPE "FileType" AS ENUM ('Model', 'PrunedModel');
CREATE TABLE "File" ("id" INTEGER NOT NULL, "vId" INTEGER NOT NULL, "type" "FileType" NOT NULL, CONSTRAINT "File_pkey" PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "File_vId_type_key" ON "File"("vId", "type");
INSERT INTO "File" VALUES (1, 1, 'PrunedModel');]] },
  sql = [[ALTER TABLE "File" ADD COLUMN "type_s" TEXT;
UPDATE "File" SET "type_s" = 'Pruned Model' WHERE "type" = 'PrunedModel';
ALTER TABLE "File" DROP COLUMN "type";
DROP TYPE "FileType";
ALTER TABLE "File" RENAME COLUMN "type_s" TO "type";
ALTER TABLE "File" ALTER COLUMN "type" SET NOT NULL;
CREATE UNIQUE INDEX "File_vId_type_key" ON "File"("vId", "type");
]],
  complete = "complete", absent = "absent", k = 3, partial = { "partial", "unverifiable" },
})

shape("an ALTER an earlier migration already made (civitai add_download_history)", {
  earlier = { [[CREATE TABLE "F" ("id" INTEGER NOT NULL, "type" TEXT, CONSTRAINT "F_pkey" PRIMARY KEY ("id"));
CREATE TABLE "U" ("id" INTEGER NOT NULL, CONSTRAINT "U_pkey" PRIMARY KEY ("id"));]],
              [[ALTER TABLE "F" ALTER COLUMN "type" SET DEFAULT 'Model';]] },
  sql = [[ALTER TABLE "F" ALTER COLUMN "type" SET DEFAULT 'Model';
ALTER TABLE "U" ADD COLUMN "hide" BOOLEAN NOT NULL DEFAULT false;
]],
  complete = "complete", absent = "absent", k = 1, partial = { "absent", "partial" },
})
shape("materialized views dropped and re-created with their indexes (civitai revise_rating_rank)", {
  earlier = { [[CREATE TABLE "Model" ("id" INTEGER NOT NULL, "n" INTEGER, CONSTRAINT "Model_pkey" PRIMARY KEY ("id"));
CREATE MATERIALIZED VIEW "ModelRank" AS SELECT "id" AS "modelId" FROM "Model";
CREATE UNIQUE INDEX mrank_model_id ON "ModelRank" ("modelId");]] },
  sql = [[DROP MATERIALIZED VIEW "ModelRank";
CREATE MATERIALIZED VIEW "ModelRank" AS SELECT "id" AS "modelId", "n" FROM "Model";
CREATE UNIQUE INDEX mrank_model_id ON "ModelRank" ("modelId");
]],
  -- the old index on the old view looks the same as the new one: never complete in the absent state
  -- (the old view's output columns are not the file's: absent); complete: the same plan
  complete = "complete", absent = "absent",
})

shape("a sequence made by hand and OWNED BY a column (civitai cosmetic_default_id_fix)", {
  earlier = { [[CREATE TABLE "Cosmetic" ("id" INTEGER NOT NULL, CONSTRAINT "Cosmetic_pkey" PRIMARY KEY ("id"));]] },
  sql = [[CREATE SEQUENCE cosmetic_id_seq;
ALTER TABLE "Cosmetic" ALTER COLUMN "id" SET DEFAULT nextval('cosmetic_id_seq');
ALTER SEQUENCE cosmetic_id_seq OWNED BY "Cosmetic"."id";
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("a new column renamed onto a dropped one (civitai image_moderation_level)", {
  earlier = { [[CREATE TABLE "Image" ("id" INTEGER NOT NULL, "needsReview" BOOLEAN NOT NULL DEFAULT false, CONSTRAINT "Image_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "Image" ADD COLUMN "needsReview_new" TEXT;
ALTER TABLE "Image" DROP COLUMN "needsReview";
ALTER TABLE "Image" RENAME COLUMN "needsReview_new" TO "needsReview";
]],
  complete = "complete", absent = "absent", k = 2, partial = "partial",
})
shape("a new column backfilled, the old one dropped, the new one renamed onto its name; the cut before the drop", {
  earlier = { [[CREATE TABLE "Pic" ("id" INTEGER NOT NULL, "level" BOOLEAN, CONSTRAINT "Pic_pkey" PRIMARY KEY ("id"));
INSERT INTO "Pic" VALUES (1, true), (2, NULL);]] },
  sql = [[ALTER TABLE "Pic" ADD COLUMN "level_tmp" TEXT;
UPDATE "Pic" SET "level_tmp" = 'high' WHERE "level" = true;
ALTER TABLE "Pic" DROP COLUMN "level";
ALTER TABLE "Pic" RENAME COLUMN "level_tmp" TO "level";
]],
  -- partial: "level_tmp" is there under the name the file created it with
  complete = { "complete", "unverifiable" }, absent = "absent", k = 2, partial = "partial",
})
shape("a jsonb default set on an existing column (jsonb stores the literal respaced, keys reordered)", {
  earlier = { [[CREATE TABLE "Profile" ("id" INTEGER NOT NULL, "settings" JSONB NOT NULL DEFAULT '[]', CONSTRAINT "Profile_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Item" ("id" INTEGER NOT NULL, CONSTRAINT "Item_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "Profile" ADD COLUMN "nsfw" BOOLEAN NOT NULL DEFAULT false,
ALTER COLUMN "settings" SET DEFAULT '[{"key":"showcase","enabled":true},{"enabled":false,"key":"it''s"}]';
DROP TABLE "Item";
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})
shape("an array default with a cast (civitai user_referral_code_crated_at)", {
  earlier = { [[CREATE TYPE "Step" AS ENUM ('Moderation', 'Buzz', 'Other');
CREATE TABLE "User" ("id" INTEGER NOT NULL, "steps" "Step"[] DEFAULT ARRAY['Other']::"Step"[], CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Code" ("id" INTEGER NOT NULL, CONSTRAINT "Code_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "User" ALTER COLUMN "steps" SET DEFAULT ARRAY['Moderation', 'Buzz']::"Step"[];
ALTER TABLE "Code" ADD COLUMN "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP;
]],
  complete = "complete", absent = "absent", k = 1, partial = "partial",
})

shape("ADD COLUMN IF NOT EXISTS of a column the same file added (civitai resource_review_recommended_system)", {
  earlier = { [[CREATE TABLE "Metric" ("id" INTEGER NOT NULL, CONSTRAINT "Metric_pkey" PRIMARY KEY ("id"));]] },
  sql = [[ALTER TABLE "Metric" ADD COLUMN "updatedAt" TIMESTAMP(3);
ALTER TABLE "Metric" ADD COLUMN IF NOT EXISTS "updatedAt" TIMESTAMP DEFAULT now();
]],
  complete = "complete", absent = "absent",
})

shape("a re-created table's partial index, its predicate spelled otherwise than pg_get_expr (civitai tags_on_image_new)", {
  earlier = { [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "attributes" INTEGER NOT NULL DEFAULT 0, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));]] },
  sql = [[DROP TABLE IF EXISTS "T";
CREATE TABLE "T" ("id" INTEGER NOT NULL, "attributes" INTEGER NOT NULL DEFAULT 0, "tagId" INTEGER, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));
CREATE INDEX "T_needsReview_idx" ON "T" ("attributes") WHERE ("attributes" & 1 << 09) != 0;
]],
  complete = { "complete", "unverifiable" }, absent = { "absent", "unverifiable" },
})

return T
