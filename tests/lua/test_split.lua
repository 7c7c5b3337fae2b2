-- migfix.split (propose, names, diff) and `migfix split NAME [--write]`:
-- every kind of cut, names that sort where the original stood (Prisma's
-- ICU order and bytewise), parts that really run on PostgreSQL one simple
-- query each (as Prisma sends them), refusal of applied migrations, and
-- --write on a failed migration (ledger marked rolled back, journaled).
local H = require "helper"
local L = require "prisma_ledger"
local effects = require "migfix.effects"
local split = require "migfix.split"
local mig = require "migfix.migrations"

local T = {}

local NAME = "20240402101500_ticket_merge"

local function propose(text, opts)
  local unit = assert(effects.analyze(text, "migration.sql"))
  opts = opts or {}
  opts.name = opts.name or NAME
  opts.text = text
  return split.propose(unit, opts)
end

local function kinds(parts)
  local k = {}
  for _, p in ipairs(parts) do k[#k + 1] = p.kind end
  return table.concat(k, ",")
end

local INIT = [[
CREATE TYPE "Status" AS ENUM ('OPEN');
CREATE TABLE "Owner" ("id" INTEGER PRIMARY KEY);
CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "name" TEXT, "status" "Status" NOT NULL DEFAULT 'OPEN');
INSERT INTO "Owner" VALUES (1);
INSERT INTO "T" VALUES (1, 'a', 'OPEN'), (2, 'b', 'OPEN');
]]

-- a migration Prisma cannot run (55P04, 25001) with one of each cut
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

-- AlterTable
ALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;
]]

T["propose: non-transactional statement alone, the rest around it"] = function()
  local parts = assert(propose('ALTER TABLE "T" ADD COLUMN "x" INTEGER;\nCREATE INDEX CONCURRENTLY "T_x_idx" ON "T"("x");\nALTER TABLE "T" ADD COLUMN "y" INTEGER;\n'))
  H.eq(kinds(parts), "schema,nontx,schema")
  H.eq(parts[2].transactional, false)
  H.same(parts[2].statements, { 2 })
  H.contains(parts[2].sql, 'CREATE INDEX CONCURRENTLY "T_x_idx" ON "T"("x");')
  H.contains(parts[2].why, "cannot run inside a transaction block")
  H.eq(parts[2].name, NAME .. "_p02_index_t_x_idx")
  H.eq(parts[2].suffix, "_p02_index_t_x_idx")
end

T["propose: CREATE INDEX on an existing table becomes CONCURRENTLY, on a new one stays"] = function()
  local parts = assert(propose('CREATE TABLE "N" ("id" INTEGER);\nCREATE INDEX "N_id_idx" ON "N"("id");\nCREATE UNIQUE INDEX "T_name_key" ON "T"("name");\n'))
  H.eq(kinds(parts), "schema,concurrent_index")
  H.same(parts[1].statements, { 1, 2 })
  H.contains(parts[1].sql, 'CREATE INDEX "N_id_idx" ON "N"("id");')
  H.contains(parts[2].sql, 'CREATE UNIQUE INDEX CONCURRENTLY "T_name_key" ON "T"("name");')
  -- findings narrow the optional rewrites: no S6 finding, no rewrite
  local p2 = assert(propose('CREATE UNIQUE INDEX "T_name_key" ON "T"("name");\n', { findings = {} }))
  H.eq(kinds(p2), "schema")
  H.eq(split.changes(nil, p2), false)
end

T["propose: no CONCURRENTLY on a partitioned table (PostgreSQL refuses it there)"] = function()
  local text = 'CREATE INDEX "Ev_at_idx" ON "Ev"("at");\n'
  H.eq(kinds(assert(propose(text))), "concurrent_index")
  H.eq(kinds(assert(propose(text, { partitioned = { Ev = true } }))), "schema")
  H.eq(kinds(assert(propose(text, { partitioned = { ["app.Ev"] = true } }))), "concurrent_index", "another schema's table")
  -- split.partitioned reads them from the catalog
  local _, url = H.fresh_db()
  H.psql(url, 'CREATE TABLE "Ev" ("at" timestamptz) PARTITION BY RANGE ("at")')
  local db = require "migfix.db"
  local conn = assert(db.connect(url))
  local part = split.partitioned(conn, "public")
  conn:close()
  H.eq(part.Ev, true)
  H.eq(part["public.Ev"], true)
end

T["propose: UNIQUE / PRIMARY KEY on an existing table: concurrent unique index, then USING INDEX"] = function()
  local parts = assert(propose('ALTER TABLE "T" ADD CONSTRAINT "T_email_key" UNIQUE ("email");\nALTER TABLE "T" ADD COLUMN "x" TEXT;\n'))
  H.eq(kinds(parts), "concurrent_index,schema")
  H.contains(parts[1].sql, 'CREATE UNIQUE INDEX CONCURRENTLY "T_email_key" ON "T" (email);')
  H.contains(parts[2].sql, 'ALTER TABLE "T" ADD CONSTRAINT "T_email_key" UNIQUE USING INDEX "T_email_key";')
  H.contains(parts[2].sql, 'ADD COLUMN "x" TEXT')
  -- on a table created in the same file nothing changes
  local p2 = assert(propose('CREATE TABLE "N" ("id" INTEGER);\nALTER TABLE "N" ADD CONSTRAINT "N_pkey" PRIMARY KEY ("id");\n'))
  H.eq(kinds(p2), "schema")
  -- and the parts run on PostgreSQL
  local _, url = H.fresh_db()
  H.psql(url, 'CREATE TABLE "T" ("email" TEXT); INSERT INTO "T" SELECT \'u\' || g FROM generate_series(1, 1000) g')
  for _, part in ipairs(parts) do H.psql(url, part.sql) end
  H.eq(H.psql(url, [[SELECT contype FROM pg_constraint WHERE conname = 'T_email_key']]), "u\n")
end

T["propose: ADD VALUE committed before its use"] = function()
  local parts = assert(propose([[ALTER TYPE "Status" ADD VALUE 'CLOSED';
UPDATE "T" SET "status" = 'CLOSED';
]]))
  H.eq(kinds(parts), "enum,backfill")
  -- not used later: it stays in the DDL part (fine on PostgreSQL 12+)
  local p2 = assert(propose([[ALTER TYPE "Status" ADD VALUE 'CLOSED';
ALTER TABLE "T" ADD COLUMN "x" INTEGER;
]]))
  H.eq(kinds(p2), "schema")
  -- below PostgreSQL 12 ADD VALUE cannot run in a transaction block at all
  local p3 = assert(propose([[ALTER TYPE "Status" ADD VALUE 'CLOSED';
ALTER TABLE "T" ADD COLUMN "x" INTEGER;
]], { server_version = 110000 }))
  H.eq(kinds(p3), "nontx,schema")
end

T["propose: FK and CHECK on an existing table: NOT VALID, VALIDATE in a later folder"] = function()
  local parts = assert(propose([[ALTER TABLE "T" ADD CONSTRAINT "T_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "Owner"("id");
ALTER TABLE "T" ADD CONSTRAINT "T_id_check" CHECK ("id" > 0);
CREATE TABLE "N" ("id" INTEGER, CONSTRAINT "N_id_check" CHECK ("id" > 0));
]]))
  H.eq(kinds(parts), "schema,validate")
  H.contains(parts[1].sql, 'REFERENCES "Owner"("id") NOT VALID;')
  H.contains(parts[1].sql, 'CHECK ("id" > 0) NOT VALID;')
  H.not_contains(parts[1].sql, 'CHECK ("id" > 0)) NOT VALID')
  H.contains(parts[2].sql, 'ALTER TABLE "T" VALIDATE CONSTRAINT "T_ownerId_fkey";')
  H.contains(parts[2].sql, 'ALTER TABLE "T" VALIDATE CONSTRAINT "T_id_check";')
  H.same(parts[2].statements, { 1, 2 })
end

T["propose: SET NOT NULL through a validated CHECK"] = function()
  local parts = assert(propose('ALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;\n'))
  H.eq(kinds(parts), "schema,validate,not_null")
  H.contains(parts[1].sql, 'ALTER TABLE "T" ADD CONSTRAINT "T_name_not_null_check" CHECK (name IS NOT NULL) NOT VALID;')
  H.contains(parts[2].sql, 'VALIDATE CONSTRAINT "T_name_not_null_check"')
  H.contains(parts[3].sql, 'ALTER TABLE "T" ALTER COLUMN "name" SET NOT NULL;')
  H.contains(parts[3].sql, 'ALTER TABLE "T" DROP CONSTRAINT "T_name_not_null_check";')
end

T["propose: backfill apart from DDL, order kept"] = function()
  local parts = assert(propose([[ALTER TABLE "T" ADD COLUMN "x" INTEGER;
UPDATE "T" SET "x" = 0;
INSERT INTO "Owner" VALUES (2);
ALTER TABLE "T" ADD COLUMN "y" INTEGER;
]]))
  H.eq(kinds(parts), "schema,backfill,schema")
  H.same(parts[2].statements, { 2, 3 })
  H.contains(parts[2].why, "data changes apart from the DDL")
end

T["propose: lock_timeout prepended to transactional parts only"] = function()
  local parts = assert(propose(MIXED, { lock_timeout = "2s" }))
  for _, p in ipairs(parts) do
    if p.transactional then
      H.contains(p.sql, "\nSET LOCAL lock_timeout = '2s';\n", p.name)
    else
      H.not_contains(p.sql, "lock_timeout = ", p.name)
      H.contains(p.why, "no SET lock_timeout here")
    end
  end
  -- statement-by-statement engines: SET LOCAL would do nothing
  local p2 = assert(propose('ALTER TABLE "T" ADD COLUMN "x" INTEGER;\n', { lock_timeout = "500ms", unit = "statement" }))
  H.contains(p2[1].sql, "\nSET lock_timeout = '500ms';\n")
  H.eq(split.changes(nil, p2), true)
end

T["propose: transaction control is left out"] = function()
  local parts = assert(propose("BEGIN;\nALTER TABLE \"T\" ADD COLUMN \"x\" INTEGER;\nCOMMIT;\n"))
  H.eq(#parts, 1)
  H.not_contains(parts[1].sql, "BEGIN;")
  H.contains(parts[1].why, "transaction control left out")
end

T["propose: the mixed migration, kinds and comments"] = function()
  local parts = assert(propose(MIXED))
  H.eq(kinds(parts), "enum,schema,backfill,schema,validate,nontx,schema,validate,not_null")
  H.contains(parts[1].sql, "-- AlterEnum\nALTER TYPE \"Status\" ADD VALUE 'CLOSED';")
  H.contains(parts[1].sql, "-- migfix split of " .. NAME .. ": part 1 of 9 (enum)")
  local d = split.diff(MIXED, parts, NAME)
  H.contains(d, "--- a/" .. NAME .. "/migration.sql\n+++ /dev/null\n")
  H.contains(d, "+++ b/" .. NAME .. "_p06_index_t_ownerid_idx/migration.sql\n")
  H.contains(d, "-ALTER TABLE \"T\" ALTER COLUMN \"name\" SET NOT NULL;\n")
end

T["names: sort in place under ICU and bytewise, fallback when a neighbour shares the prefix"] = function()
  local slugs = { "schema", "validate", "index_t_x_idx" }
  for i = 4, 12 do slugs[i] = "s" .. i end
  local names = assert(split.names(NAME, slugs, { prev = "20240312141500_sla_kb_forms_email", next = "20240402101500_ticket_mergex" }))
  H.eq(names[1], NAME .. "_p01_schema")
  H.eq(names[12], NAME .. "_p12_s12")
  local all = { "20240312141500_sla_kb_forms_email" }
  for _, n in ipairs(names) do all[#all + 1] = n end
  all[#all + 1] = "20240402101500_ticket_mergex"
  all[#all + 1] = "20240402101600_next"
  for i = 2, #all do
    H.eq(mig.compare(all[i - 1], all[i]), -1, all[i - 1] .. " < " .. all[i])
    H.ok(all[i - 1] < all[i], "bytewise " .. all[i - 1] .. " < " .. all[i])
  end
  -- a next folder that starts with the original's name and "_a": "_p" would sort after it
  local n2 = assert(split.names(NAME, { "schema" }, { next = NAME .. "_a" }))
  H.eq(n2[1], NAME .. "__p01_schema")
  H.eq(mig.compare(n2[1], NAME .. "_a"), -1)
  -- an existing folder of the same name is never reused
  local n3 = assert(split.names(NAME, { "schema" }, { existing = { [NAME .. "_p01_schema"] = true } }))
  H.eq(n3[1], NAME .. "__p01_schema")
  -- NAME2 / NAMEX: "_" sorts before them under ICU but not bytewise; "-" does both
  for _, nx in ipairs({ NAME .. "2", NAME .. "X" }) do
    local n4 = assert(split.names(NAME, { "schema", "index" }, { next = nx }))
    H.eq(n4[1], NAME .. "-p01_schema")
    H.eq(mig.compare(n4[2], nx), -1)
    H.ok(n4[2] < nx)
  end
  local none, err = split.names(NAME, { "x" }, { next = NAME .. "!" })
  H.eq(none, nil)
  H.contains(err, "sorts between")
end

T["propose: bad arguments"] = function()
  H.raises(function() split.propose(nil, {}) end, "expected split.propose(unit, {name = ...})")
  local unit = assert(effects.analyze("SELECT 1;", "f"))
  H.raises(function() split.propose(unit, { nme = "x" }) end, 'unrecognized option "nme"')
end

-- on PostgreSQL: the parts, each sent as one query, give the same schema
-- the original gives when its statements run one by one
T["parts run on PostgreSQL in order, one simple query each"] = function()
  local _, url = H.fresh_db()
  H.psql(url, INIT)
  local parts = assert(propose(MIXED, { lock_timeout = "2s" }))
  for _, p in ipairs(parts) do H.psql(url, p.sql) end
  local _, ref = H.fresh_db()
  H.psql(ref, INIT)
  local unit = assert(effects.analyze(MIXED, "f"))
  for _, s in ipairs(unit.statements) do H.psql(ref, s.text) end
  local q = [[SELECT string_agg(format('%s %s %s', attname, format_type(atttypid, atttypmod), attnotnull), ',' ORDER BY attnum)
              FROM pg_attribute WHERE attrelid = '"T"'::regclass AND attnum > 0 AND NOT attisdropped]]
  H.eq(H.psql(url, q), H.psql(ref, q))
  local c = [[SELECT string_agg(conname || ' ' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = '"T"'::regclass]]
  H.eq(H.psql(url, c), H.psql(ref, c))
  H.eq(H.psql(url, [[SELECT indisvalid FROM pg_index WHERE indexrelid = '"T_ownerId_idx"'::regclass]]), "t\n")
  H.eq(H.psql(url, [[SELECT "status" FROM "T" WHERE "id" = 1]]), "CLOSED\n")
end

-- the policy: accept with error findings on an absent migration, else pass --
T["policy split-large-migration: refuses with findings and split; passes otherwise"] = function()
  local policy = require "migfix.policy"
  local pol = policy.load(H.root .. "/policies/split-large-migration.lua")
  local function m(verdict, findings)
    return { name = NAME, verdict = verdict, file = {}, error = {},
             lint = findings and { findings = findings, errors = #findings,
                                   split = { { name = NAME .. "_p01_index_t_x_idx", kind = "concurrent_index" } } } or nil }
  end
  local err = { rule = "S6", severity = "error", line = 2, table = "public.T", why = "CREATE INDEX holds SHARE", alternative = "CONCURRENTLY" }
  local d = policy.evaluate({ pol }, m("absent", { err }), {})
  H.eq(d.policy.name, "split-large-migration")
  H.eq(d.actions[1].action, "refuse")
  H.contains(d.actions[1].reason, 'S6 line 2 on "public.T": CREATE INDEX holds SHARE (instead: CONCURRENTLY)')
  H.contains(d.actions[1].hint, NAME .. "_p01_index_t_x_idx")
  local _, why = policy.evaluate({ pol }, m("absent", { { rule = "S11", severity = "warning" } }), {})
  H.eq(why[1].why, "no error-level lint findings")
  _, why = policy.evaluate({ pol }, m("complete", { err }), {})
  H.eq(why[1].why, "verdict is complete, not absent")
  _, why = policy.evaluate({ pol }, m("absent", nil), {})
  H.eq(why[1].why, "no lint evidence")
end

-- the command ----------------------------------------------------------------

local M1, M2, M3 = "20240101000000_init", "20240102000000_mixed", "20240103000000_later"
local LATER = 'ALTER TABLE "T" ADD COLUMN "z" INTEGER;\n'

T["split: shows the diff, writes nothing without --write"] = function()
  local proj, mdir = H.project({ { M1, INIT }, { M2, MIXED }, { M3, LATER } })
  local _, url = H.fresh_db()
  local out, err, rc = H.migfix({ "split", M2, "--url", url, "-C", proj })
  H.eq(rc, 0, err)
  H.contains(out, "split of " .. M2 .. " (pending): 9 folders")
  H.contains(out, "+++ b/" .. M2 .. "_p01_enum/migration.sql")
  H.ok(io.open(mdir .. "/" .. M2 .. "/migration.sql"), "the original is still there")
  H.eq(io.open(mdir .. "/" .. M2 .. "_p01_enum/migration.sql"), nil)
  local js = H.migfix({ "split", M2, "--url", url, "-C", proj, "--json" })
  local doc = require("migfix.json").decode(js)
  H.eq(#doc.parts, 9)
  H.eq(doc.written, false)
  local _, e2, rc2 = H.migfix({ "split", "nope", "--url", url, "-C", proj })
  H.eq(rc2, 2)
  H.contains(e2, 'no migration folder named "nope"')
end

T["split: refuses a migration the ledger shows applied"] = function()
  local proj = H.project({ { M1, INIT }, { M2, MIXED } })
  local _, url = H.fresh_db()
  L.applied(url, M1, L.checksum(INIT))
  L.applied(url, M2, L.checksum(MIXED))
  local _, err, rc = H.migfix({ "split", M2, "--write", "--url", url, "-C", proj })
  H.eq(rc, 1)
  H.contains(err, "cannot split migration \"" .. M2 .. "\": the ledger shows it applied")
end

T["split --write on a pending migration is journaled as a split; undo refuses a split's ledger row"] = function()
  local proj, mdir = H.project({ { M1, INIT }, { M2, MIXED }, { M3, LATER } })
  local _, url = H.fresh_db()
  L.deploy(url, nil, mdir, M1)
  local out, err, rc = H.migfix({ "split", M2, "--write", "--url", url, "-C", proj })
  H.eq(rc, 0, err .. out)
  local j = H.psql(url, "SELECT action || ' ' || migration || ' ' || jsonb_array_length(details->'parts') FROM migfix.journal ORDER BY seq DESC LIMIT 1")
  H.eq(j, "split " .. M2 .. " 9\n")
  H.contains(H.read(proj .. "/.migfix/journal.jsonl"), '"action":"split"')
  -- a failed migration split: undo must not bring its failed row back under the parts
  local proj2, mdir2 = H.project({ { M1, INIT }, { M2, MIXED } })
  local _, url2 = H.fresh_db()
  L.deploy(url2, nil, mdir2)
  _, err, rc = H.migfix({ "split", M2, "--write", "--url", url2, "-C", proj2 })
  H.eq(rc, 0, err)
  _, err, rc = H.migfix({ "undo", "--yes", "--url", url2, "-C", proj2 })
  H.eq(rc, 1)
  H.contains(err, "part of `migfix split")
end

T["split --write on a failed migration: folders, rolled back row, journal, then deploy"] = function()
  local proj, mdir = H.project({ { M1, INIT }, { M2, MIXED }, { M3, LATER } })
  local _, url = H.fresh_db()
  local r = L.deploy(url, nil, mdir)
  H.eq(r.code, "P3018")
  H.eq(r.failed, M2)
  local out, err, rc = H.migfix({ "split", M2, "--write", "--url", url, "-C", proj })
  H.eq(rc, 0, err .. out)
  H.contains(out, "marked the failed row of " .. M2 .. " rolled back (journaled)")
  -- the ledger: the failed row is rolled back, nothing else changed
  local rows = L.rows(url)
  H.eq(#rows, 2)
  H.eq(rows[2].migration_name, M2)
  H.ok(rows[2].rolled_back_at, "rolled_back_at set")
  H.eq(rows[2].finished_at, nil)
  -- the journal says so, in the database and the file
  local j = H.psql(url, "SELECT action || ' ' || command || ' ' || migration || ' ' || (details->>'part_of') FROM migfix.journal ORDER BY seq DESC LIMIT 1")
  H.eq(j, "mark_rolled_back split " .. M2 .. " split\n")
  H.contains(H.read(proj .. "/.migfix/journal.jsonl"), '"part_of":"split"')
  -- the folders: the original moved out of Prisma's sight
  H.eq(io.open(mdir .. "/" .. M2 .. "/migration.sql"), nil)
  local list = L.list_migrations(mdir)
  H.eq(list[1], M1)
  H.eq(list[2], M2 .. "_p01_enum")
  H.eq(list[#list], M3)
  H.eq(#list, 11)
  local archived = H.sh("ls " .. H.shq(proj .. "/.migfix/split"))
  H.contains(archived, M2 .. ".")
  -- Prisma's deploy (fixture builder) now applies the parts, then M3
  local r2 = L.deploy(url, nil, mdir)
  H.ok(r2.ok, r2.error)
  H.eq(#r2.applied, 10)
  H.eq(r2.applied[1], M2 .. "_p01_enum")
  H.eq(r2.applied[10], M3)
  H.eq(H.psql(url, [[SELECT "status" || ' ' || "ownerId" FROM "T" WHERE "id" = 1]]), "CLOSED 1\n")
  -- what Prisma's status says (migfix status itself lists the rolled-back
  -- rows of the moved folder as "missing")
  local st = require("migfix.json").decode((H.migfix({ "status", "--url", url, "-C", proj, "--json" })))
  H.eq(st.status, "clean")
  H.eq(st.prisma_status.exit, 0)
  H.eq(st.deploy.refuses, false)
end

T["split --write refuses a failed migration that is not absent"] = function()
  local proj, mdir = H.project({ { M1, INIT }, { M2, 'ALTER TABLE "T" ADD COLUMN "x" INTEGER;\nCREATE INDEX "T_x_idx" ON "T"("x");\n' } })
  local _, url = H.fresh_db()
  local r = L.deploy(url, nil, mdir, M1)
  H.ok(r.ok, r.error)
  -- someone ran half of it by hand, then the deploy failed
  H.psql(url, 'ALTER TABLE "T" ADD COLUMN "x" INTEGER')
  L.failed(url, M2, L.file_checksum(mdir .. "/" .. M2 .. "/migration.sql"), "A migration failed to apply.")
  local _, err, rc = H.migfix({ "split", M2, "--write", "--url", url, "-C", proj })
  H.eq(rc, 1)
  H.contains(err, "verdict partial, not absent")
  H.ok(io.open(mdir .. "/" .. M2 .. "/migration.sql"), "nothing moved")
  H.eq(#L.list_migrations(mdir), 2)
end

T["nothing to split: one part, exit 0, --write writes nothing"] = function()
  local proj, mdir = H.project({ { M1, INIT }, { M2, 'CREATE TABLE "N" ("id" INTEGER);\n' } })
  local _, url = H.fresh_db()
  local out, err, rc = H.migfix({ "split", M2, "--write", "--url", url, "-C", proj })
  H.eq(rc, 0, err)
  H.contains(out, "nothing to split")
  H.ok(io.open(mdir .. "/" .. M2 .. "/migration.sql"), "the original stays")
end

return T
