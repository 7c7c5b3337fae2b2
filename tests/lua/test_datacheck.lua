-- migfix.datacheck: the precondition of a failing data statement, counted
-- read-only on the real test server. Each state is init + data + a failing
-- migration deployed as Prisma's native engine does (prisma_ledger, P3018 logs);
-- tests/compat/test_data_prisma.lua builds the same states with the real Prisma CLI.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local datacheck = require "migfix.datacheck"

local T = {}

--- init (setup SQL as the first migration), then the failing migration; returns dir, url
local function state(setup, failing, extra_sql)
  local dir, mdir = h.project { { "20240101000000_init", setup }, { "20240102000000_change", failing } }
  local _, url = h.fresh_db()
  local r = L.deploy(url, nil, mdir, "20240101000000_init")
  h.ok(r.ok, r.error)
  if extra_sql then h.psql(url, extra_sql) end
  r = L.deploy(url, nil, mdir)
  h.eq(r.code, "P3018", "the migration fails: " .. tostring(r.error))
  return dir, url, mdir
end

local function data_of(dir, url, cfg)
  if cfg then h.write(dir .. "/migfix.lua", cfg) end
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "diagnose", "--json" }
  h.eq(rc, 1, err)
  local doc = assert(json.decode(out), out .. err)
  return doc.migrations[1].data, doc.migrations[1]
end

T["23505 CREATE UNIQUE INDEX: duplicate groups with sample keys, NULLs distinct, the WHERE honoured"] = function()
  local dir, url = state(
    'CREATE TABLE "Customer" ("id" SERIAL PRIMARY KEY, "email" TEXT, "deletedAt" TIMESTAMP(3));\n' ..
    [[INSERT INTO "Customer" ("email", "deletedAt") VALUES ('ann@example.com', NULL), ('ann@example.com', NULL),
      ('bob@example.com', now()), ('bob@example.com', now()), (NULL, NULL), (NULL, NULL), ('cy@example.com', NULL);]] .. "\n",
    'CREATE UNIQUE INDEX "Customer_email_key" ON "Customer"("email") WHERE "deletedAt" IS NULL;\n')
  local d, m = data_of(dir, url)
  h.eq(m.error.sqlstate, "23505")
  h.eq(d.status, "violated")
  h.eq(d.violations, 2, "bob's rows are deleted (WHERE), the NULLs are distinct")
  local c = d.checks[1]
  h.eq(c.kind, "unique")
  h.eq(c.groups, 1)
  h.eq(c.where, '"deletedAt" IS NULL')
  h.eq(c.samples[1].key[1], "ann@example.com")
  h.eq(c.samples[1].rows, 2)
  h.contains(d.summary, "2 rows share email = 'ann@example.com'")
  h.eq(d.advice, "remove or merge them")
  -- the text form
  local out = h.migfix { "-C", dir, "--url", url, "diagnose" }
  h.contains(out, "data: VIOLATED")
  h.contains(out, "2 rows share email = 'ann@example.com'")
end

T["23505 on an expression index, ADD CONSTRAINT UNIQUE (several columns) and NULLS NOT DISTINCT"] = function()
  local dir, url = state('CREATE TABLE "U" ("id" INTEGER PRIMARY KEY, "email" TEXT);\n' ..
    [[INSERT INTO "U" VALUES (1, 'Ann@x'), (2, 'ann@X'), (3, 'bob@x');]] .. "\n",
    'CREATE UNIQUE INDEX "U_lower_key" ON "U"(lower("email"));\n')
  local d = data_of(dir, url)
  h.eq(d.status, "violated")
  h.contains(d.summary, "lower(\"email\") = 'ann@x'")
  dir, url = state('CREATE TABLE "P" ("id" INTEGER PRIMARY KEY, "a" INTEGER, "b" INTEGER);\n' ..
    "INSERT INTO \"P\" VALUES (1, 1, NULL), (2, 1, NULL), (3, 2, 2), (4, 2, 2), (5, 2, 2);\n",
    'ALTER TABLE "P" ADD CONSTRAINT "P_a_b_key" UNIQUE NULLS NOT DISTINCT ("a", "b");\n')
  d = data_of(dir, url)
  h.eq(d.status, "violated")
  h.eq(d.checks[1].groups, 2, "NULLS NOT DISTINCT: (1, NULL) twice counts")
  h.eq(d.violations, 5)
  h.contains(d.summary, "3 rows share a = 2, b = 2")
end

T["23502 SET NOT NULL and ADD COLUMN NOT NULL without DEFAULT: the NULL rows"] = function()
  local dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "name" TEXT);\n' ..
    "INSERT INTO \"T\" VALUES (1, NULL), (2, 'x'), (3, NULL);\n",
    'ALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;\n')
  local d = data_of(dir, url)
  h.eq(d.status, "violated")
  h.eq(d.violations, 2)
  h.eq(d.checks[1].kind, "not_null")
  h.same(d.checks[1].samples[1].key, { 1 })
  h.contains(d.summary, 'have NULL in "name" (id = 1; id = 3)')
  dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY);\nINSERT INTO "T" VALUES (1), (2);\n',
    'ALTER TABLE "T" ADD COLUMN "code" TEXT NOT NULL;\n')
  d = data_of(dir, url)
  h.eq(d.checks[1].kind, "new_not_null")
  h.eq(d.violations, 2)
  h.contains(d.advice, "DEFAULT")
end

T["23503 ADD FOREIGN KEY: the orphan rows, with their keys"] = function()
  local dir, url = state('CREATE TABLE "P" ("id" INTEGER PRIMARY KEY);\nCREATE TABLE "C" ("id" INTEGER PRIMARY KEY, "pid" INTEGER);\n' ..
    "INSERT INTO \"P\" VALUES (1);\nINSERT INTO \"C\" VALUES (1, 1), (2, 7), (3, NULL), (4, 8);\n",
    'ALTER TABLE "C" ADD CONSTRAINT "C_pid_fkey" FOREIGN KEY ("pid") REFERENCES "P"("id") ON DELETE RESTRICT ON UPDATE CASCADE;\n')
  local d = data_of(dir, url)
  h.eq(d.status, "violated")
  h.eq(d.violations, 2, "NULL references nothing: not an orphan (MATCH SIMPLE)")
  h.contains(d.summary, "pid = 7 in the row id = 2")
  h.contains(d.advice, '"P"')
end

T["23514 ADD CHECK: the violating rows; 22P02 ALTER TYPE USING: the rows whose conversion fails"] = function()
  local dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "price" INTEGER, "amount" TEXT);\n' ..
    "INSERT INTO \"T\" VALUES (1, 5, '12'), (2, -1, 'abc'), (3, NULL, '7'), (4, 0, 'x1');\n",
    'ALTER TABLE "T" ADD CONSTRAINT "T_price_check" CHECK ("price" > 0);\n')
  local d = data_of(dir, url)
  h.eq(d.status, "violated")
  h.eq(d.violations, 2, "NULL passes a CHECK")
  h.eq(d.checks[1].kind, "check")
  dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "amount" TEXT);\n' ..
    "INSERT INTO \"T\" VALUES (1, '12'), (2, 'abc'), (3, '7'), (4, 'x1');\n",
    'ALTER TABLE "T" ALTER COLUMN "amount" SET DATA TYPE INTEGER USING "amount"::integer;\n')
  d = data_of(dir, url)
  h.eq(d.status, "violated")
  h.eq(d.violations, 2)
  h.eq(d.checks[1].kind, "cast")
  h.eq(d.checks[1].using, '"amount"::integer')
  h.contains(d.summary, "amount = 'abc'")
  h.contains(d.summary, "invalid input syntax for type integer")
end

T["holds after the fix; unknown when an earlier statement changes the rows, or the check times out"] = function()
  local dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "name" TEXT);\nINSERT INTO "T" VALUES (1, NULL), (2, \'x\');\n',
    'ALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;\n')
  h.psql(url, [[UPDATE "T" SET "name" = 'y' WHERE "name" IS NULL]])
  local d = data_of(dir, url)
  h.eq(d.status, "holds")
  h.eq(d.violations, 0)
  -- an UPDATE before the failing statement: the rows now are not what it saw
  dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "name" TEXT);\nINSERT INTO "T" VALUES (1, NULL);\n',
    'UPDATE "T" SET "name" = NULL;\nALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;\n')
  d = data_of(dir, url)
  h.eq(d.status, "unknown")
  h.contains(d.reason, "changes rows before it runs")
  -- a check bounded by the environment's data_check: pg_sleep(1) per violating row, 100 ms
  dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "price" INTEGER);\nINSERT INTO "T" VALUES (1, -1);\n',
    'ALTER TABLE "T" ADD CONSTRAINT "T_check" CHECK ("price" > 0 OR pg_sleep(1) IS NULL);\n')
  d = data_of(dir, url, 'return { environments = { dev = { timeouts = { data_check = "100ms" } } }, default_environment = "dev" }\n')
  h.eq(d.status, "unknown")
  h.contains(d.reason, "statement_timeout 100 ms")
end

T["a check that writes is refused by the server: the check is unknown, nothing changes"] = function()
  -- a USING expression with a side effect (nextval) cannot run in the READ ONLY transaction
  local dir, url = state('CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "n" TEXT);\nCREATE SEQUENCE "s";\nINSERT INTO "T" VALUES (1, \'1\'), (2, \'b\');\n',
    'ALTER TABLE "T" ALTER COLUMN "n" SET DATA TYPE INTEGER USING ("n"::integer + nextval(\'s\'));\n')
  local d = data_of(dir, url)
  h.eq(d.status, "unknown")
  h.eq(h.psql(url, "SELECT last_value FROM \"s\""), "1\n", "the sequence did not move")
end

T["plan/run: a duplicate left in place is refused with its key; removed, the unchanged file is redeployed"] = function()
  local dir, url = state('CREATE TABLE "Customer" ("id" SERIAL PRIMARY KEY, "email" TEXT);\n' ..
    "INSERT INTO \"Customer\" (\"email\") VALUES ('ann@example.com'), ('ann@example.com');\n",
    'CREATE UNIQUE INDEX "Customer_email_key" ON "Customer"("email");\n')
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "run" }
  h.eq(rc, 1, out .. err)
  h.contains(out, "2 rows share email = 'ann@example.com'; remove or merge them")
  out, err, rc = h.migfix { "-C", dir, "--url", url, "plan", "--json" }
  h.eq(rc, 1, err)
  local doc = json.decode(out)
  h.contains(doc.migrations[1].actions[1].reason, "ann@example.com")
  h.psql(url, [[DELETE FROM "Customer" WHERE "id" = 2]])
  out, err, rc = h.migfix { "-C", dir, "--url", url, "plan" }
  h.eq(rc, 0, out .. err)
  h.contains(out, "the data fits now")
  h.contains(out, "redeploy")
  -- simulate decides on the real database's evidence and rehearses that redeploy on a copy
  out, err, rc = h.migfix { "-C", dir, "--url", url, "simulate" }
  h.eq(rc, 0, out .. err)
  h.contains(out, "redeploy — ok")
  h.contains(out, "safe to run: yes")
  out, err, rc = h.migfix { "-C", dir, "--url", url, "run" }
  h.eq(rc, 0, out .. err)
  h.eq(h.psql(url, [[SELECT count(*) FROM pg_indexes WHERE indexname = 'Customer_email_key']]), "1\n")
end

T["datacheck.check: bad options raise; not a data error is not_applicable"] = function()
  h.raises(function() datacheck.check(nil, { error = {} }, { bogus = 1 }) end, 'bad option "bogus"')
  local d = datacheck.check(nil, { error = { class = "schema", sqlstate = "42P07" } }, {})
  h.eq(d.status, "not_applicable")
  h.eq(datacheck.kind_of("22P02"), "cast")
  h.eq(datacheck.kind_of("42P07"), nil)
  h.eq(datacheck.using_text('ALTER TABLE "T" ALTER COLUMN "a" SET DATA TYPE INTEGER USING ("a"::integer * 2), ALTER COLUMN "b" TYPE TEXT', "a"),
    '("a"::integer * 2)')
  h.eq(datacheck.using_text('ALTER TABLE "T" ALTER COLUMN "a" TYPE INTEGER', "a"), nil)
end

return T
