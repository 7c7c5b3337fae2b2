-- What the real Prisma CLI 6.19.3 does with the bad inputs migfix refuses
-- (tests/lua/test_bad_inputs.lua): ledgers it cannot read and migration
-- files it cannot run as they are. Each state is built from a ledger the
-- real CLI wrote; Prisma's behaviour is asserted first, then migfix's.
-- About 14 Prisma calls (~3 s each).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local H = require "helper"
local L = require "prisma_ledger"
local C = require "compat"
local json = require "migfix.json"

local T = {}

local INIT = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local SECOND = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }

local function psql(url, sql) return (H.psql(url, sql):gsub("%s+$", "")) end
local function snapshot(url)
  return psql(url, "SELECT coalesce(string_agg(md5(to_jsonb(t)::text), ',' ORDER BY ctid), '') FROM _prisma_migrations t")
end

-- a database whose ledger the real CLI wrote (init applied), cloned per case
local template
local function prisma_db()
  if not template then
    local _, mdir = H.project { INIT }
    local name, url = H.fresh_db()
    local out, rc = C.prisma(url, mdir, { "migrate", "deploy" })
    H.eq(rc, 0, "prisma migrate deploy:\n" .. out)
    template = name
  end
  return H.fresh_db(template)
end

local function mf(dir, url, ...)
  local args = { "-C", dir, "--url", url }
  for _, a in ipairs({ ... }) do args[#args + 1] = a end
  local out, err, rc = H.migfix(args)
  return out, err, rc
end

T["Prisma: NULL in id, checksum, migration_name, started_at or applied_steps_count stops deploy before any write; migfix lists the same column and refuses"] = function()
  for _, col in ipairs({ "id", "checksum", "migration_name", "started_at", "applied_steps_count" }) do
    local _, url = prisma_db()
    local dir, mdir = H.project { INIT, SECOND }
    H.psql(url, ("ALTER TABLE _prisma_migrations DROP CONSTRAINT IF EXISTS _prisma_migrations_pkey; " ..
                 "ALTER TABLE _prisma_migrations ALTER %s DROP NOT NULL; UPDATE _prisma_migrations SET %s = NULL"):format(col, col))
    local before = snapshot(url)
    -- Prisma: "Error: Failed to extract `COL` from `_prisma_migrations` row.", exit 1, nothing written
    local out, rc = C.prisma(url, mdir, { "migrate", "deploy" })
    H.eq(rc, 1, col .. ": prisma migrate deploy:\n" .. out)
    H.contains(out, ("Failed to extract `%s` from `_prisma_migrations` row."):format(col))
    H.eq(snapshot(url), before, col .. ": Prisma wrote nothing")
    H.eq(psql(url, [[SELECT count(*) FROM pg_attribute WHERE attrelid = '"User"'::regclass AND attname = 'name']]), "0")
    -- migfix: the same row and column in status; deploy refuses (exit 1), nothing written
    local sout, serr, src = mf(dir, url, "status", "--json")
    H.eq(src, 1, serr)
    local doc = json.decode(sout)
    local found
    for _, p in ipairs(doc.ledger_problems) do if p.kind == "null" and p.column == col then found = p end end
    H.ok(found, col .. " listed: " .. sout)
    H.eq(found.row, 1)
    local _, derr, drc = mf(dir, url, "deploy")
    H.eq(drc, 1, derr)
    H.contains(derr, "NULL in " .. col)
    H.eq(snapshot(url), before, col .. ": migfix wrote nothing")
  end
end

T["Prisma: column types — uuid id and text applied_steps_count fail its extraction; text, bigint and timestamp it reads"] = function()
  local dir, mdir = H.project { INIT, SECOND }
  for _, c in ipairs({
    { "ALTER TABLE _prisma_migrations ALTER id TYPE uuid USING id::uuid", "Failed to extract `id`", "id" },
    { "ALTER TABLE _prisma_migrations ALTER applied_steps_count DROP DEFAULT, ALTER applied_steps_count TYPE text",
      "Failed to extract `applied_steps_count`", "applied_steps_count" },
    { "ALTER TABLE _prisma_migrations DROP COLUMN logs", 'column "logs" does not exist', "logs" },
  }) do
    local _, url = prisma_db()
    H.psql(url, c[1])
    local rc, out = C.status(url, mdir)
    H.eq(rc, 1, out)
    H.contains(out, c[2])
    local sout = mf(dir, url, "status", "--json")
    local doc = json.decode(sout)
    H.ok(#doc.ledger_problems == 1 and doc.ledger_problems[1].column == c[3], sout)
  end
  local _, url = prisma_db()
  H.psql(url, [[ALTER TABLE _prisma_migrations ALTER id TYPE text, ALTER checksum TYPE text, ALTER migration_name TYPE text,
    ALTER started_at TYPE timestamp, ALTER applied_steps_count TYPE bigint, ADD COLUMN note text]])
  -- Prisma reads this ledger: status lists the pending migration (exit 1), no extraction error
  local rc, out = C.status(url, mdir)
  H.eq(rc, 1, out)
  H.contains(out, "have not yet been applied")
  H.not_contains(out, "Failed to extract")
  -- migfix: the types are fine; the extra column is a problem (its journal and undo keep Prisma's 8 columns)
  local doc = json.decode((mf(dir, url, "status", "--json")))
  H.eq(#doc.ledger_problems, 1)
  H.eq(doc.ledger_problems[1].kind, "extra_column")
  H.contains(doc.ledger_problems[1].message, "Prisma ignores it")
end

T["Prisma: with a duplicate id, resolve --rolled-back marks the applied twin too (deploy would rerun it); migfix refuses"] = function()
  local _, url = prisma_db()
  local dir, mdir = H.project { INIT, SECOND }
  -- a failed attempt of second that shares init's id
  H.psql(url, [[ALTER TABLE _prisma_migrations DROP CONSTRAINT _prisma_migrations_pkey]])
  L.failed(url, SECOND[1], L.checksum(SECOND[2]), "boom", { id = psql(url, "SELECT id FROM _prisma_migrations"), no_create = true })
  local before = snapshot(url)
  local _, err, rc = mf(dir, url, "resolve", "--rolled-back", SECOND[1], "--no-backup")
  H.eq(rc, 1, err)
  H.contains(err, "same id as row 1")
  H.eq(snapshot(url), before)
  local out, prc = C.prisma(url, mdir, { "migrate", "resolve", "--rolled-back", SECOND[1] })
  H.eq(prc, 0, out)
  H.eq(psql(url, [[SELECT count(*) FROM _prisma_migrations WHERE migration_name = '20240101000000_init' AND rolled_back_at IS NOT NULL]]), "1",
    "Prisma's UPDATE ... WHERE id = $1 rolled back the applied init row too")
end

T["Prisma: invalid UTF-8 is read with U+FFFD (deployed, that checksum recorded); a NUL byte and an unterminated statement fail and leave a failed row"] = function()
  -- invalid UTF-8 in a comment
  local latin1 = '-- caf\xe9\nCREATE TABLE "C" (id int);\n'
  local dir, mdir = H.project { INIT, { SECOND[1], latin1 } }
  local _, url = prisma_db()
  local out, rc = C.prisma(url, mdir, { "migrate", "deploy" })
  H.eq(rc, 0, out)
  local sum = psql(url, ("SELECT checksum FROM _prisma_migrations WHERE migration_name = '%s'"):format(SECOND[1]))
  H.eq(sum, L.checksum('-- caf\xef\xbf\xbd\nCREATE TABLE "C" (id int);\n'), "the checksum of the text Node read (U+FFFD)")
  H.ok(sum ~= L.checksum(latin1), "not of the file's bytes")
  -- migfix: status agrees with that checksum (not modified), lists the file; deploy-side commands refuse it
  local doc = json.decode((mf(dir, url, "status", "--json")))
  H.eq(doc.summary.modified, 0)
  H.eq(#doc.file_problems, 1)
  local _, lerr, lrc = mf(dir, url, "lint", "--all")
  H.eq(lrc, 2, lerr)
  H.contains(lerr, "migration.sql:1:7: invalid UTF-8 (byte 0xE9)")

  for _, c in ipairs({
    { 'CREATE TABLE "A" (id int);\n\0CREATE TABLE "B" (id int);\n', "invalid message format", ":2:1: a NUL byte" },
    { 'CREATE TABLE "D" (id int);\nINSERT INTO "D" VALUES (\'abc);\n', "unterminated quoted string", ":2:25: unterminated quoted string" },
  }) do
    local d2, m2 = H.project { INIT, { SECOND[1], c[1] } }
    local _, u2 = prisma_db()
    local u3 = select(2, prisma_db())
    -- Prisma: the script fails (P3018-like error), a failed row is left: the P3009 migfix avoids
    local pout, prc = C.prisma(u2, m2, { "migrate", "deploy" })
    H.eq(prc, 1, pout)
    H.contains(pout, c[2])
    H.eq(psql(u2, "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NULL"), "1", "Prisma left a failed row")
    H.eq(psql(u2, [[SELECT count(*) FROM pg_class WHERE relname IN ('A', 'D')]]), "0", "nothing of the script stayed")
    -- migfix on a twin: exit 2 naming file:line, no row, nothing applied
    local _, err, mrc = mf(d2, u3, "deploy")
    H.eq(mrc, 2, err)
    H.contains(err, c[3])
    H.eq(psql(u3, "SELECT count(*) FROM _prisma_migrations"), "1", "only init's row")
    H.eq(psql(u3, [[SELECT count(*) FROM pg_class WHERE relname IN ('A', 'D')]]), "0")
  end
end

return T
