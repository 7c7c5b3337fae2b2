-- migfix.effects: statements and effects per docs/effects.md
local H = require "helper"
local effects = require "migfix.effects"

local T = {}

local function analyze(text, file)
  local u, err = effects.analyze(text, file or "m/migration.sql")
  if not u then error("analyze failed: " .. err.message .. " at line " .. tostring(err.line), 2) end
  return u
end

-- effects of the unit matching all fields of `want` (a partial record)
local function find(u, want)
  local out = {}
  for _, e in ipairs(u.effects) do
    local ok = true
    for k, v in pairs(want) do
      if e[k] ~= v then ok = false; break end
    end
    if ok then out[#out + 1] = e end
  end
  return out
end

local function one(u, want)
  local r = find(u, want)
  if #r ~= 1 then
    local keys = {}
    for k, v in pairs(want) do keys[#keys + 1] = k .. "=" .. tostring(v) end
    error(("expected one effect {%s}, found %d"):format(table.concat(keys, ","), #r), 2)
  end
  return r[1]
end

local PRISMA_INIT = [[
-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "app";

-- CreateEnum
CREATE TYPE "TicketStatus" AS ENUM ('OPEN', 'CLOSED');

-- CreateTable
CREATE TABLE "SLAPolicy" (
    "id" TEXT NOT NULL,
    "name" VARCHAR(191) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "price" DECIMAL(65,30) NOT NULL DEFAULT 0,
    "ratio" DOUBLE PRECISION,
    "active" BOOLEAN NOT NULL DEFAULT true,
    "big" BIGINT,
    "data" JSONB,
    "tags" TEXT[],
    "status" "TicketStatus" NOT NULL DEFAULT 'OPEN',
    "orgId" INTEGER,

    CONSTRAINT "SLAPolicy_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "app"."Thing" (
    "id" SERIAL NOT NULL,
    "slaId" TEXT NOT NULL,
    "at" TIMESTAMPTZ(6),

    CONSTRAINT "Thing_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "SLAPolicy_name_key" ON "SLAPolicy"("name");

-- CreateIndex
CREATE INDEX "Thing_slaId_at_idx" ON "app"."Thing"("slaId", "at" DESC);

-- AddForeignKey
ALTER TABLE "app"."Thing" ADD CONSTRAINT "Thing_slaId_fkey" FOREIGN KEY ("slaId") REFERENCES "SLAPolicy"("id") ON DELETE CASCADE ON UPDATE CASCADE;
]]

T["Prisma init: statements with lines and kinds"] = function()
  local u = analyze(PRISMA_INIT, "prisma/migrations/20240101000000_init/migration.sql")
  H.eq(u.file, "prisma/migrations/20240101000000_init/migration.sql")
  H.eq(#u.statements, 7)
  local lines, kinds = {}, {}
  for i, s in ipairs(u.statements) do
    H.eq(s.index, i)
    lines[i], kinds[i] = s.line, s.kind
    H.eq(s.tx_control, false)
    H.eq(s.non_transactional, false)
    H.eq(s.unverifiable, false)
  end
  H.same(lines, { 2, 5, 8, 25, 34, 37, 40 })
  H.same(kinds, { "CreateSchemaStmt", "CreateEnumStmt", "CreateStmt", "CreateStmt", "IndexStmt",
                  "IndexStmt", "AlterTableStmt" })
  H.eq(u.statements[3].end_line, 22)
  H.eq(u.statements[2].text, [[CREATE TYPE "TicketStatus" AS ENUM ('OPEN', 'CLOSED')]])
  H.same(u.flags, { tx_control = false, non_transactional = false })
end

T["Prisma init: tables, columns and normalised types"] = function()
  local u = analyze(PRISMA_INIT)
  H.same(one(u, { kind = "schema" }), { action = "create", kind = "schema", name = "app",
         if_not_exists = true, stmt = 1, line = 2 })
  H.same(one(u, { kind = "enum" }), { action = "create", kind = "enum", name = "TicketStatus",
         labels = { "OPEN", "CLOSED" }, stmt = 2, line = 5 })
  local t = one(u, { kind = "table", name = "SLAPolicy" })
  H.eq(t.schema, nil)
  H.eq(t.partitioned, false)
  local types, byname = {}, {}
  for _, c in ipairs(t.columns) do types[#types + 1] = c.type; byname[c.name] = c end
  H.same(types, { "text", "character varying(191)", "timestamp(3) without time zone", "numeric(65,30)",
                  "double precision", "boolean", "bigint", "jsonb", "text[]", '"TicketStatus"', "integer" })
  H.same(byname.createdAt, { name = "createdAt", type = "timestamp(3) without time zone", not_null = true,
                             has_default = true, default = "CURRENT_TIMESTAMP" })
  H.eq(byname.status.default, "'OPEN'")
  H.eq(byname.active.default, "true")
  H.eq(byname.price.default, "0")
  H.same(byname.orgId, { name = "orgId", type = "integer", not_null = false, has_default = false })
  local pk = one(u, { kind = "constraint", name = "SLAPolicy_pkey" })
  H.same(pk, { action = "create", kind = "constraint", table = "SLAPolicy", name = "SLAPolicy_pkey",
               name_generated = false, contype = "p", columns = { "id" }, not_valid = false,
               stmt = 3, line = 21 })
end

T["Prisma init: non-public schema, serial, indexes and foreign key"] = function()
  local u = analyze(PRISMA_INIT)
  local thing = one(u, { kind = "table", name = "Thing" })
  H.eq(thing.schema, "app")
  H.same(thing.columns[1], { name = "id", type = "integer", not_null = true, has_default = true,
                             default = [[nextval('app."Thing_id_seq"'::regclass)]] })
  H.eq(thing.columns[3].type, "timestamp(6) with time zone")
  local seq = one(u, { kind = "sequence" })
  H.eq(seq.schema, "app")
  H.eq(seq.name, "Thing_id_seq")
  H.eq(seq.action, "create")
  local ix = one(u, { kind = "index", name = "SLAPolicy_name_key" })
  H.same(ix, { action = "create", kind = "index", table = "SLAPolicy", name = "SLAPolicy_name_key",
               name_generated = false, unique = true, primary = false, columns = { "name" },
               method = "btree", concurrently = false, if_not_exists = false, stmt = 5, line = 34 })
  H.same(one(u, { kind = "index", name = "Thing_slaId_at_idx" }).columns, { "slaId", "at" })
  H.eq(one(u, { kind = "index", name = "Thing_slaId_at_idx" }).schema, "app")
  local fk = one(u, { kind = "constraint", contype = "f" })
  H.same(fk, { action = "create", kind = "constraint", schema = "app", table = "Thing",
               name = "Thing_slaId_fkey", name_generated = false, contype = "f", columns = { "slaId" },
               ref_table = "SLAPolicy", ref_columns = { "id" }, on_delete = "c", on_update = "c",
               not_valid = false, stmt = 7, line = 40 })
end

T["Prisma enum change block: BEGIN ... COMMIT"] = function()
  local u = analyze([[
-- AlterEnum
BEGIN;
CREATE TYPE "Role_new" AS ENUM ('USER', 'ADMIN');
ALTER TABLE "User" ALTER COLUMN "role" DROP DEFAULT;
ALTER TABLE "User" ALTER COLUMN "role" TYPE "Role_new" USING ("role"::text::"Role_new");
ALTER TYPE "Role" RENAME TO "Role_old";
ALTER TYPE "Role_new" RENAME TO "Role";
DROP TYPE "Role_old";
ALTER TABLE "User" ALTER COLUMN "role" SET DEFAULT 'USER';
COMMIT;
]])
  H.eq(#u.statements, 9)
  H.eq(u.statements[1].tx_control, true)
  H.eq(u.statements[9].tx_control, true)
  H.eq(u.statements[9].line, 10)
  H.eq(u.flags.tx_control, true)
  H.eq(u.flags.non_transactional, false)
  local acts = {}
  for _, e in ipairs(u.effects) do acts[#acts + 1] = e.action .. " " .. e.kind end
  H.same(acts, { "create enum", "alter column", "alter column", "rename type", "rename enum",
                 "drop type", "alter column" })
  H.same(u.effects[2].set, { has_default = false })
  H.same(u.effects[3].set, { type = '"Role_new"' })
  H.eq(u.effects[4].name, "Role")
  H.eq(u.effects[4].new_name, "Role_old")
  H.same(u.effects[7].set, { has_default = true, default = "'USER'" })
end

T["enum ADD VALUE / RENAME VALUE and the PostgreSQL 12 transaction rule"] = function()
  local u = analyze([[
ALTER TYPE "Status" ADD VALUE 'ARCHIVED';
ALTER TYPE "Status" ADD VALUE IF NOT EXISTS 'DRAFT' BEFORE 'OPEN';
ALTER TYPE app."Status" ADD VALUE 'LATE' AFTER 'CLOSED';
ALTER TYPE "Status" RENAME VALUE 'DRAFT' TO 'PENDING';
]])
  local a = u.effects
  H.same(a[1], { action = "create", kind = "enum_value", enum = "Status", name = "ARCHIVED",
                 if_not_exists = false, stmt = 1, line = 1 })
  H.eq(a[2].before, "OPEN")
  H.eq(a[2].if_not_exists, true)
  H.eq(a[3].after, "CLOSED")
  H.eq(a[3].schema, "app")
  H.same(a[4], { action = "rename", kind = "enum_value", enum = "Status", name = "DRAFT",
                 new_name = "PENDING", stmt = 4, line = 4 })
  local s = u.statements[1]
  H.eq(s.non_transactional, true)
  H.eq(s.non_transactional_reason, "ALTER TYPE ... ADD VALUE (cannot run in a transaction block before PostgreSQL 12)")
  H.eq(s.before_pg, 120000)
  H.eq(u.statements[4].non_transactional, false)
  H.same(u.flags, { tx_control = false, non_transactional = true, before_pg = 120000 })
end

T["CREATE INDEX CONCURRENTLY: non-transactional, expressions, method, predicate"] = function()
  local u = analyze([[
-- CreateIndex
CREATE INDEX CONCURRENTLY IF NOT EXISTS "User_email_idx" ON "User" USING gin (lower(email) gin_trgm_ops, ("a" + 1) DESC, "b") WHERE ("deletedAt" IS NULL);
DROP INDEX CONCURRENTLY IF EXISTS "Old_idx";
]])
  local ix = u.effects[1]
  H.same(ix.columns, { { expr = "lower(email)" }, { expr = '"a" + 1' }, "b" })
  H.eq(ix.method, "gin")
  H.eq(ix.predicate, '("deletedAt" IS NULL)')
  H.eq(ix.concurrently, true)
  H.eq(ix.if_not_exists, true)
  H.eq(u.statements[1].non_transactional_reason, "CREATE INDEX CONCURRENTLY")
  H.eq(u.statements[1].before_pg, nil)
  H.same(u.effects[2], { action = "drop", kind = "index", name = "Old_idx", concurrently = true,
                         if_exists = true, cascade = false, stmt = 2, line = 3 })
  H.eq(u.statements[2].non_transactional_reason, "DROP INDEX CONCURRENTLY")
  H.same(u.flags, { tx_control = false, non_transactional = true })
end

T["generated names follow PostgreSQL"] = function()
  local u = analyze([[
CREATE TABLE t (id int PRIMARY KEY, a int CHECK (a > 0), b int UNIQUE REFERENCES u, CHECK (a < b), CHECK (a > 1));
CREATE INDEX ON t (a, b);
CREATE UNIQUE INDEX ON t (lower(x), (a + b));
ALTER TABLE t ADD UNIQUE (a, b), ADD FOREIGN KEY (a, b) REFERENCES v (x, y) NOT VALID;
]])
  local names = {}
  for _, e in ipairs(u.effects) do
    if e.name_generated then names[#names + 1] = e.name end
  end
  H.same(names, { "t_pkey", "t_a_check", "t_b_key", "t_b_fkey", "t_check", "t_a_check1", "t_a_b_idx",
                  "t_lower_expr_key", "t_a_b_key", "t_a_b_fkey" })
  local fk = one(u, { name = "t_b_fkey" })
  H.eq(fk.ref_table, "u")
  H.eq(fk.ref_columns, nil)
  H.eq(fk.on_delete, "a")
  H.eq(one(u, { name = "t_a_b_fkey" }).not_valid, true)
  H.eq(one(u, { name = "t_a_check" }).expr, "a > 0")
  H.eq(one(u, { kind = "table" }).columns[1].not_null, true) -- primary key implies NOT NULL
  local long = ("x"):rep(40)
  local u2 = analyze(("CREATE TABLE %s (%s int UNIQUE);"):format(long, long))
  H.eq(u2.effects[2].name, ("x"):rep(29) .. "_" .. ("x"):rep(29) .. "_key")
end

T["ALTER TABLE subcommands"] = function()
  local u = analyze([[
ALTER TABLE "User" ADD COLUMN "nick" VARCHAR(32) NOT NULL DEFAULT 'x', ADD COLUMN IF NOT EXISTS "n" INT,
  DROP COLUMN "old",
  ALTER COLUMN "age" SET DATA TYPE BIGINT,
  ALTER COLUMN "age" SET NOT NULL,
  ALTER COLUMN "bio" DROP NOT NULL,
  ALTER COLUMN "score" SET DEFAULT (1 + 2) * 3,
  ALTER COLUMN "score2" DROP DEFAULT,
  ADD CONSTRAINT "age_chk" CHECK ("age" >= 0 AND ("age" < 200)) NOT VALID,
  DROP CONSTRAINT IF EXISTS "gone";
ALTER TABLE "User" VALIDATE CONSTRAINT "age_chk";
ALTER TABLE "User" RENAME COLUMN "nick" TO "nickname";
ALTER TABLE "User" RENAME CONSTRAINT "age_chk" TO "age_check";
ALTER TABLE "User" RENAME TO "Person";
ALTER TABLE "Person" SET SCHEMA "app";
ALTER INDEX "a_idx" RENAME TO "b_idx";
]])
  local e = u.effects
  H.same(e[1], { action = "create", kind = "column", table = "User", name = "nick",
                 type = "character varying(32)", not_null = true, has_default = true, default = "'x'",
                 if_not_exists = false, stmt = 1, line = 1 })
  H.eq(e[2].if_not_exists, true)
  H.eq(e[2].type, "integer")
  H.same(e[3], { action = "drop", kind = "column", table = "User", name = "old", if_exists = false,
                 cascade = false, stmt = 1, line = 1 })
  H.same(e[4].set, { type = "bigint" })
  H.same(e[5].set, { not_null = true })
  H.same(e[6].set, { not_null = false })
  H.same(e[7].set, { has_default = true, default = "(1 + 2) * 3" })
  H.same(e[8].set, { has_default = false })
  H.eq(e[9].expr, '"age" >= 0 AND ("age" < 200)')
  H.eq(e[9].not_valid, true)
  H.eq(e[9].line, 8)
  H.same(e[10], { action = "drop", kind = "constraint", table = "User", name = "gone", if_exists = true,
                  cascade = false, stmt = 1, line = 1 })
  H.same(e[11], { action = "alter", kind = "constraint", table = "User", name = "age_chk",
                  set = { not_valid = false }, stmt = 2, line = 10 })
  H.same(e[12], { action = "rename", kind = "column", table = "User", name = "nick", new_name = "nickname",
                  if_exists = false, stmt = 3, line = 11 })
  H.eq(e[13].kind, "constraint")
  H.same(e[14], { action = "rename", kind = "table", name = "User", new_name = "Person", if_exists = false,
                  stmt = 5, line = 13 })
  H.same(e[15].set, { schema = "app" })
  H.eq(e[15].kind, "table")
  H.same(e[16], { action = "rename", kind = "index", name = "a_idx", new_name = "b_idx", if_exists = false,
                  stmt = 7, line = 15 })
end

T["DO blocks and plpgsql functions with ';' inside dollar quotes"] = function()
  local u = analyze([[
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'x') THEN
    CREATE TYPE x AS ENUM ('a;b'); -- a ; in a comment
  END IF;
END $$;

CREATE OR REPLACE FUNCTION "app"."set_updated"(p_id integer, p_note text DEFAULT ';', OUT o int)
RETURNS int AS $body$
DECLARE v int;
BEGIN
  /* ; */ v := 1;
  RETURN;
END;
$body$ LANGUAGE plpgsql;

CREATE PROCEDURE p(a text) LANGUAGE sql AS $$ SELECT 1; SELECT 2; $$;
CREATE TRIGGER "trg" BEFORE UPDATE ON "app"."Thing" FOR EACH ROW EXECUTE FUNCTION "app"."set_updated"();
DROP FUNCTION IF EXISTS f(int, text), g;
]])
  H.eq(#u.statements, 5)
  H.same({ u.statements[1].line, u.statements[2].line, u.statements[3].line, u.statements[4].line },
         { 1, 8, 17, 18 })
  H.eq(u.statements[1].end_line, 6)
  -- the DO block's static DDL, read with PL/pgSQL's parser: an IF NOT EXISTS create under a catalog guard
  H.eq(u.statements[1].unverifiable, false)
  H.same(u.effects[1], { action = "create", kind = "enum", name = "x", labels = { "a;b" }, stmt = 1, line = 4,
                         in_do = true, if_not_exists = true,
                         guarded = "IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'x') (line 3)" })
  H.same(u.effects[2], { action = "create", kind = "function", schema = "app", name = "set_updated",
                         args = { "integer", "text" }, procedure = false, or_replace = true, stmt = 2, line = 8,
                         language = "plpgsql", body = "\nDECLARE v int;\nBEGIN\n  /* ; */ v := 1;\n  RETURN;\nEND;\n" })
  H.same(u.effects[3].args, { "text" })
  H.eq(u.effects[3].procedure, true)
  H.same(u.effects[4], { action = "create", kind = "trigger", schema = "app", table = "Thing", name = "trg",
                         or_replace = false, stmt = 4, line = 18 })
  H.same(u.effects[5].args, { "integer", "text" })
  H.eq(u.effects[6].name, "g")
  H.eq(u.effects[6].args, nil)
end

T["data statements, SET and other statements are unverifiable"] = function()
  local u = analyze([[
INSERT INTO "User" ("id", "note") VALUES ('1', 'semi;colon');
UPDATE "app"."User" SET "x" = 1 WHERE "id" = ';';
DELETE FROM "User";
TRUNCATE "User";
COPY "User" FROM STDIN;
SET lock_timeout = '2s';
GRANT SELECT ON "User" TO public;
]])
  local kinds = {}
  for _, e in ipairs(u.effects) do
    H.eq(e.action, "unverifiable")
    kinds[#kinds + 1] = e.kind
  end
  H.same(kinds, { "data", "data", "data", "data", "data", "other", "other" })
  H.eq(u.effects[2].schema, "app")
  H.eq(u.effects[2].table, "User")
  H.eq(u.effects[6].text, "SET lock_timeout = '2s'")
  for _, s in ipairs(u.statements) do H.eq(s.unverifiable, true) end
end

T["DROP with several names, CASCADE, extensions, views, sequences, comments"] = function()
  local u = analyze([[
DROP TABLE "a", "app"."b" CASCADE;
DROP VIEW IF EXISTS v1, v2;
CREATE EXTENSION IF NOT EXISTS "pg_trgm";
DROP EXTENSION pgcrypto;
CREATE OR REPLACE VIEW "V" AS SELECT 1;
CREATE MATERIALIZED VIEW app.mv AS SELECT 1;
CREATE SEQUENCE "s"; ALTER SEQUENCE "s" RESTART WITH 5; DROP SEQUENCE "s";
COMMENT ON TABLE "User" IS 'people';
COMMENT ON COLUMN "app"."User"."x" IS NULL;
DROP SCHEMA "old" CASCADE;
]])
  H.same(find(u, { action = "drop", kind = "table" })[2],
         { action = "drop", kind = "table", schema = "app", name = "b", if_exists = false, cascade = true,
           stmt = 1, line = 1 })
  H.eq(#find(u, { action = "drop", kind = "view", if_exists = true }), 2)
  H.eq(one(u, { kind = "extension", action = "create" }).name, "pg_trgm")
  H.eq(one(u, { kind = "extension", action = "drop" }).name, "pgcrypto")
  H.eq(one(u, { kind = "view", action = "create" }).or_replace, true)
  H.eq(one(u, { kind = "matview" }).schema, "app")
  H.eq(#find(u, { kind = "sequence", name = "s" }), 3)
  H.same(one(u, { kind = "sequence", action = "alter" }).set, { restart = true })
  H.same(one(u, { kind = "comment", on = "table" }),
         { action = "create", kind = "comment", on = "table", name = "User", text = "people", stmt = 10, line = 8 })
  H.same(one(u, { kind = "comment", on = "column" }),
         { action = "drop", kind = "comment", on = "column", schema = "app", table = "User", name = "x",
           stmt = 11, line = 9 })
  H.eq(one(u, { kind = "schema" }).name, "old")
end

T["identifier case: unquoted folded, quoted kept"] = function()
  local u = analyze([[CREATE TABLE Users ("Id" INT, Name TEXT, "MixedType" "MyType", t2 my_type, t3 App."Role"[]);]])
  local t = u.effects[1]
  H.eq(t.name, "users")
  H.same({ t.columns[1].name, t.columns[2].name }, { "Id", "name" })
  H.eq(t.columns[3].type, '"MyType"')
  H.eq(t.columns[4].type, "my_type")
  H.eq(t.columns[5].type, 'app."Role"[]')
end

T["type spelling"] = function()
  local cases = {
    { "INT4", "integer" }, { "int8", "bigint" }, { "SMALLINT", "smallint" }, { "bool", "boolean" },
    { "float8", "double precision" }, { "REAL", "real" }, { "varchar", "character varying" },
    { "CHAR(3)", "character(3)" }, { "CHAR", "character(1)" }, { "timestamp", "timestamp without time zone" },
    { "timestamptz", "timestamp with time zone" }, { "TIMESTAMP(3) WITH TIME ZONE", "timestamp(3) with time zone" },
    { "time", "time without time zone" }, { "DATE", "date" }, { "uuid", "uuid" }, { "bytea", "bytea" },
    { "inet", "inet" }, { "json", "json" }, { "numeric(10)", "numeric(10,0)" }, { "NUMERIC", "numeric" },
    { "integer[]", "integer[]" }, { "text[][]", "text[]" }, { "pg_catalog.int4", "integer" },
    { '"user"', '"user"' }, { "public.citext", "public.citext" }, { "BIGSERIAL", "bigint" },
  }
  for _, c in ipairs(cases) do
    local u = analyze(("CREATE TABLE t (c %s);"):format(c[1]))
    H.eq(u.effects[1].columns[1].type, c[2], c[1])
  end
end

T["syntax error: message, file, line, column"] = function()
  local u, err = effects.analyze("-- CreateTable\nCREATE TABLE \"a\" (\"id\" INT);\n\n  CREATE TABL \"b\" (\"id\" INT);\n",
                                 "prisma/migrations/x/migration.sql")
  H.eq(u, nil)
  H.eq(err.message, 'syntax error at or near "TABL"')
  H.eq(err.file, "prisma/migrations/x/migration.sql")
  H.eq(err.line, 4)
  H.eq(err.column, 10)
end

T["empty file: zero statements, no error"] = function()
  for _, text in ipairs { "", "\n\n", "-- This is an empty migration.", "/* nothing */ ;" } do
    local u = analyze(text)
    H.eq(#u.statements, 0)
    H.eq(#u.effects, 0)
    H.same(u.flags, { tx_control = false, non_transactional = false })
  end
end

T["partitioned table and partitions"] = function()
  local u = analyze([[
CREATE TABLE "ev" ("id" BIGINT NOT NULL, "at" TIMESTAMP(3) NOT NULL) PARTITION BY RANGE ("at");
CREATE TABLE "ev_2024" PARTITION OF "ev" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
ALTER TABLE "ev" DETACH PARTITION "ev_2024" CONCURRENTLY;
]])
  H.eq(u.effects[1].partitioned, true)
  H.same(u.effects[2].partition_of, { name = "ev" })
  H.eq(u.effects[2].columns_complete, false)
  H.eq(u.statements[3].non_transactional_reason, "DETACH PARTITION CONCURRENTLY")
  H.eq(u.effects[3].action, "unverifiable")
end

T["other non-transactional statements"] = function()
  local cases = {
    { "VACUUM", "VACUUM" }, { "REINDEX INDEX CONCURRENTLY i", "REINDEX CONCURRENTLY" },
    { "CREATE DATABASE d", "CREATE DATABASE" }, { "DROP DATABASE d", "DROP DATABASE" },
    { "ALTER SYSTEM SET work_mem = '1MB'", "ALTER SYSTEM" },
    { "CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE" },
  }
  for _, c in ipairs(cases) do
    local u = analyze(c[1])
    H.eq(u.statements[1].non_transactional_reason, c[2], c[1])
    H.eq(u.flags.non_transactional, true)
    H.eq(u.flags.before_pg, nil)
  end
  H.eq(analyze("REINDEX INDEX i").statements[1].non_transactional, false)
  for _, s in ipairs { "START TRANSACTION", "END", "ROLLBACK", "SAVEPOINT a", "RELEASE a", "PREPARE TRANSACTION 'x'" } do
    H.eq(analyze(s).statements[1].tx_control, true, s)
  end
end

T["bad arguments raise"] = function()
  H.raises(function() effects.analyze(nil) end, "bad argument #1 to 'analyze'")
  H.raises(function() effects.analyze("select 1", 3) end, "bad argument #2 to 'analyze'")
end

T["against PostgreSQL: types, defaults and generated names match the catalog"] = function()
  if not H.admin_url then return end -- needs the test server (tests/run)
  local text = [[
CREATE SCHEMA "app";
CREATE TYPE "TicketStatus" AS ENUM ('OPEN', 'CLOSED');
CREATE TABLE "app"."Thing" (
  "id" SERIAL NOT NULL, "name" VARCHAR(191) NOT NULL, "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "price" DECIMAL(65,30) NOT NULL DEFAULT 0, "s" "TicketStatus" NOT NULL DEFAULT 'OPEN', "tags" TEXT[],
  "ratio" DOUBLE PRECISION, "f" float4, "c" CHAR(3), "tz" TIMESTAMPTZ, "n" numeric(10),
  "a" INT CHECK ("a" > 0), "b" INT UNIQUE, CHECK ("a" < "b"), PRIMARY KEY ("id"));
CREATE INDEX ON "app"."Thing" ("name", lower("name"));
ALTER TABLE "app"."Thing" ADD FOREIGN KEY ("b") REFERENCES "app"."Thing" ("id");
]]
  local u = analyze(text)
  local _, url = H.fresh_db()
  local path = os.tmpname()
  H.write(path, text)
  H.psql_file(url, path)
  os.remove(path)
  local cols = H.psql(url, [[SELECT attname || '|' || format_type(atttypid, atttypmod) FROM pg_attribute
    WHERE attrelid = 'app."Thing"'::regclass AND attnum > 0 ORDER BY attnum]])
  local want = {}
  for _, c in ipairs(one(u, { kind = "table" }).columns) do want[#want + 1] = c.name .. "|" .. c.type end
  H.eq(cols, table.concat(want, "\n") .. "\n")
  local names = H.psql(url, [[SELECT string_agg(n, ',' ORDER BY n) FROM (
    SELECT conname AS n FROM pg_constraint WHERE connamespace = 'app'::regnamespace
    UNION SELECT relname FROM pg_class WHERE relnamespace = 'app'::regnamespace AND relkind IN ('i','S')) x]])
  local mine = {}
  for _, e in ipairs(u.effects) do
    if e.kind == "constraint" or e.kind == "index" or e.kind == "sequence" then mine[e.name] = true end
    if e.kind == "constraint" and (e.contype == "p" or e.contype == "u") then mine[e.name] = true end
  end
  local list = {}
  for n in pairs(mine) do list[#list + 1] = n end
  table.sort(list)
  H.eq(names, table.concat(list, ",") .. "\n")
end

return T
