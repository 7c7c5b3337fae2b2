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

-- ------------------------------------------------------------------ fixed points

--- init + rows, then migration 2 as a failed row with no logs (killed), its
--- SQL run first (`ran`) or not; returns the diagnosis of migration 2
local function fp_state(setup, rows_sql, change, ran, after_sql)
  local dir, mdir = h.project { { "20240101000000_init", setup }, { "20240102000000_change", change } }
  local _, url = h.fresh_db()
  local r = L.deploy(url, nil, mdir, "20240101000000_init")
  h.ok(r.ok, r.error)
  if rows_sql then h.psql(url, rows_sql) end
  if ran then h.psql(url, change) end
  if after_sql then h.psql(url, after_sql) end
  L.failed(url, "20240102000000_change", L.file_checksum(mdir .. "/20240102000000_change/migration.sql"), nil)
  local before = h.psql(url, [[SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM "_prisma_migrations" t]])
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "diagnose", "--json" }
  h.eq(rc, 1, err)
  h.eq(h.psql(url, [[SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM "_prisma_migrations" t]]), before,
    "diagnose wrote nothing")
  local doc = assert(json.decode(out), out .. err)
  return doc.migrations[1], dir, url
end

local FP_INIT = [[CREATE TYPE "Kind" AS ENUM ('ITEM', 'BUY');
CREATE TABLE "Order" ("id" TEXT PRIMARY KEY, "type" "Kind" NOT NULL, "qty" INTEGER NOT NULL DEFAULT 0, "note" TEXT);
CREATE TABLE "Tag" ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL);
CREATE TABLE "Label" ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL);
CREATE UNIQUE INDEX "Label_name_key" ON "Label"("name");
]]
local FP_ROWS = [[INSERT INTO "Order" VALUES ('a', 'ITEM', 1, NULL), ('b', 'BUY', -1, 'x'), ('c', 'ITEM', 2, NULL)]]

local function object(m, stmt)
  for _, o in ipairs(m.objects) do if o.statement == stmt then return o end end
end

T["fixed point: UPDATE, DELETE and INSERT read from the rows — complete when run, absent when not, nothing written"] = function()
  local change = [[UPDATE "Order" o SET "type" = 'BUY', "note" = lower('DONE') WHERE o."type" = 'ITEM';
DELETE FROM "Order" WHERE "qty" < 0;
INSERT INTO "Tag" ("id", "name") VALUES ('t1', 'draft'), ('t2', 'Live');
]]
  local m = fp_state(FP_INIT, FP_ROWS, change, true)
  h.eq(m.verdict, "complete", m.summary)
  h.eq(object(m, 1).kind, "data")
  h.eq(object(m, 1).state, "present")
  h.eq(object(m, 1).rows, 0)
  h.contains(object(m, 1).reason, "no row it selects differs from what it sets")
  h.contains(object(m, 2).reason, "no row it deletes is left")
  h.contains(object(m, 3).reason, "every row it inserts is there")
  m = fp_state(FP_INIT, FP_ROWS, change, false)
  h.eq(m.verdict, "absent", m.summary)
  h.eq(object(m, 1).state, "missing")
  h.eq(object(m, 1).rows, 2)
  h.contains(object(m, 1).reason, "2 rows it selects are not what it sets")
  h.contains(object(m, 2).reason, "1 row it deletes is still there")
  h.contains(object(m, 3).reason, "2 rows it inserts are not there")
end

T["fixed point: UPDATE ... FROM with an alias and INSERT ... SELECT; a drawn-anew id counts only under a unique key"] = function()
  local change = [[UPDATE "Order" AS o SET "note" = t."name" FROM "Tag" t WHERE t."id" = o."id";
INSERT INTO "Label" ("id", "name") SELECT gen_random_uuid()::text, "name" FROM "Tag";
]]
  local rows = FP_ROWS .. [[; INSERT INTO "Tag" VALUES ('a', 'first'), ('c', 'third')]]
  local m = fp_state(FP_INIT, rows, change, true)
  h.eq(m.verdict, "complete", m.summary)
  m = fp_state(FP_INIT, rows, change, false)
  h.eq(m.verdict, "absent", m.summary)
  -- no unique key on the compared columns: a row like it may have been there
  local m2 = fp_state(FP_INIT, rows, [[INSERT INTO "Tag" ("id", "name") VALUES (gen_random_uuid()::text, 'draft');]] .. "\n", true)
  h.eq(m2.verdict, "unverifiable", m2.summary)
  h.contains(object(m2, 1).reason, '"id" is drawn anew on each run, and the other columns hold no unique key')
end

T["fixed point refused: clock and volatile functions, a later statement on the table, a trigger"] = function()
  local m = fp_state(FP_INIT, FP_ROWS, [[UPDATE "Order" SET "note" = now()::text WHERE "note" IS NULL;]] .. "\n", true)
  h.eq(m.verdict, "unverifiable", m.summary)
  h.contains(object(m, 1).reason, "function now() is not immutable")
  m = fp_state(FP_INIT, FP_ROWS, [[UPDATE "Order" SET "note" = CURRENT_USER WHERE "note" IS NULL;]] .. "\n", true)
  h.contains(object(m, 1).reason, "it reads the clock or the session")
  -- not idempotent: run or not, its rows never show a fixed point
  m = fp_state(FP_INIT, FP_ROWS, [[UPDATE "Order" SET "qty" = "qty" + 1;]] .. "\n", true)
  h.eq(m.verdict, "unverifiable", m.summary)
  h.contains(object(m, 1).reason, "reads column \"qty\", which it also sets")
  -- it reads the table it writes
  m = fp_state(FP_INIT, FP_ROWS, [[DELETE FROM "Order" WHERE "qty" < (SELECT avg("qty") FROM "Order");]] .. "\n", true)
  h.eq(m.verdict, "unverifiable", m.summary)
  h.contains(object(m, 1).reason, "reads \"Order\" again while writing it")
  -- a later statement changes a column it reads; a later UPDATE of another column does not
  m = fp_state(FP_INIT, FP_ROWS, [[UPDATE "Order" SET "note" = 'n' WHERE "qty" > 0;
UPDATE "Order" SET "qty" = 0;
]], true)
  h.eq(m.verdict, "unverifiable", m.summary)
  h.contains(object(m, 1).reason, "statement 2 (line 2) changes \"Order\" afterwards")
  m = fp_state(FP_INIT, FP_ROWS, [[UPDATE "Order" SET "note" = 'n' WHERE "qty" > 0;
UPDATE "Order" SET "type" = 'BUY';
DELETE FROM "Order" WHERE "qty" < 0;
]], true)
  h.eq(m.verdict, "complete", m.summary)
  local trig = FP_INIT .. [[CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW."note" := 'touched'; RETURN NEW; END $$;
CREATE TRIGGER "Order_touch" BEFORE UPDATE ON "Order" FOR EACH ROW EXECUTE FUNCTION touch();
]]
  m = fp_state(trig, FP_ROWS, [[UPDATE "Order" SET "type" = 'BUY';]] .. "\n", true)
  h.eq(m.verdict, "unverifiable", m.summary)
  h.contains(object(m, 1).reason, "has triggers")
end

T["fixed point: a backfill proven by its transaction stays complete when the application wrote rows since"] = function()
  local change = [[ALTER TABLE "Order" ADD COLUMN "state" TEXT;
UPDATE "Order" SET "state" = 'new' WHERE "state" IS NULL;
]]
  local m = fp_state(FP_INIT, FP_ROWS, change, true, [[INSERT INTO "Order" ("id", "type") VALUES ('late', 'BUY')]])
  h.eq(m.verdict, "complete", m.summary)
  h.contains(object(m, 2).reason, "so these rows changed afterwards")
  m = fp_state(FP_INIT, FP_ROWS, change, false)
  h.eq(m.verdict, "absent", m.summary)
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

-- ------------------------------------------------------------------ view plans

T["viewplans: the same query plans the same, another plans otherwise, a * or an unplannable query is unknown"] = function()
  h.eq(datacheck.view_query('CREATE OR REPLACE VIEW "V" ("a") WITH (security_barrier) AS SELECT "id" AS x FROM "T" WITH CASCADED CHECK OPTION;'),
    'SELECT "id" AS x FROM "T"')
  h.eq(datacheck.view_query('CREATE MATERIALIZED VIEW "M" AS (SELECT 1 AS "as") WITH NO DATA;', true), '(SELECT 1 AS "as")')
  h.eq(datacheck.view_query('CREATE VIEW "V"'), nil)
  local db = require "migfix.db"
  local effects = require "migfix.effects"
  local catalog = require "migfix.catalog"
  local _, url = h.fresh_db()
  h.psql(url, [[CREATE TABLE "T" ("id" INTEGER NOT NULL, "n" INTEGER, "s" VARCHAR(10));
CREATE VIEW "V" AS SELECT "id", "s" FROM "T" WHERE "s" = 'x' AND "n" > 0;
CREATE VIEW "W" AS SELECT * FROM "T";
CREATE MATERIALIZED VIEW "M" AS SELECT "id", count(*) AS c FROM "T" GROUP BY "id";
CREATE VIEW "Y" AS SELECT u."id" FROM "T" u WHERE EXISTS (SELECT 1 FROM "T" u WHERE u."n" > 0)
  AND u."id" IN (SELECT u."id" FROM "T" u JOIN "T" v ON v."id" = u."n");]])
  local text = [[CREATE OR REPLACE VIEW "V" AS SELECT "id", "s" FROM "T" WHERE "s" = 'x' AND "n" > 0;
CREATE OR REPLACE VIEW "V" AS SELECT t."id", t."s" FROM "T" t WHERE "n" > 1;
CREATE OR REPLACE VIEW "W" AS SELECT "id" FROM "T";
DROP MATERIALIZED VIEW "M";
CREATE MATERIALIZED VIEW "M" AS SELECT "id", count(*) AS c FROM "T" GROUP BY "id" WITH DATA;
CREATE OR REPLACE VIEW "W" AS SELECT * FROM "T" WHERE "n" > 0;
CREATE OR REPLACE VIEW "X" AS SELECT "nope" FROM "T";
CREATE OR REPLACE VIEW "V" AS SELECT "id", "nope" FROM "T";
CREATE OR REPLACE VIEW "Y" AS SELECT u."id" FROM "T" u WHERE EXISTS (SELECT 1 FROM "T" u WHERE u."n" > 0)
  AND u."id" IN (SELECT u."id" FROM "T" u JOIN "T" v ON v."id" = u."n");
CREATE OR REPLACE VIEW "Y" AS SELECT u."id" FROM "T" u WHERE EXISTS (SELECT 1 FROM "T" u WHERE u."n" > 0)
  AND u."id" IN (SELECT v."id" FROM "T" u JOIN "T" v ON v."id" = u."n");
]]
  local unit = assert(effects.analyze(text, "views.sql"))
  local conn = assert(db.connect(url))
  local snap = assert(catalog.snapshot(conn, { "public" }))
  local before = h.psql(url, "SELECT count(*) FROM pg_class")
  local r = datacheck.viewplans(conn, unit, snap, { timeout_ms = 5000 })
  h.eq(r[1].state, "same", r[1].reason)
  h.eq(r[2].state, "differs")
  h.eq(r[3].state, "differs", "W's * is in the catalog's query, not in the file's")
  h.eq(r[5].state, "same", r[5].reason)
  h.eq(r[5].kind, "matview")
  h.eq(r[6].state, "unknown")
  h.contains(r[6].reason, "whose * follows the tables' columns")
  h.eq(r[7].state, "unknown")
  h.contains(r[7].reason, "not in the catalog")
  h.eq(r[8].state, "unknown")
  h.contains(r[8].reason, "the file's query cannot be planned now")
  h.contains(r[8].reason, "42703")
  h.eq(r[4], nil, "DROP is not a view query")
  -- pg_get_viewdef renames the repeated alias u (u_1, u_2): the same query still
  h.contains(h.psql(url, [[SELECT pg_get_viewdef('"Y"')]]), "u_1")
  h.eq(r[9].state, "same", r[9].reason)
  h.eq(r[10].state, "differs", "another column of the join")
  h.eq(datacheck.plan_shape { "Seq Scan on public.t x", "  Output: x.a, y.b", "Subquery Scan on y", "Bitmap Index Scan on i" },
    "\nSeq Scan on public.t $1\n  Output: $1.a, $2.b\nSubquery Scan on y $2\nBitmap Index Scan on i")
  h.eq(h.psql(url, "SELECT count(*) FROM pg_class"), before, "nothing created")
  h.eq(conn:info().in_transaction, false)
  conn:close()
end

return T
