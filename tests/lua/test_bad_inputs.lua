-- Bad inputs refused, never written over (issue 12, items 3 and 4): ledgers
-- Prisma cannot read (NULL in a required column, duplicate ids, a table of
-- another shape), migration files Prisma cannot run as they are (a NUL byte,
-- invalid UTF-8, an unterminated statement), and a `logs` value of 50 MB.
-- What Prisma itself does with each state is checked with the real CLI in
-- tests/compat/test_bad_inputs_prisma.lua.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"

local INIT = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local SECOND = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\nCREATE INDEX CONCURRENTLY "User_name_idx" ON "User"("name");\n' }
-- a second migration split can cut in two (the CREATE INDEX CONCURRENTLY), so split --write has work to do
local PLAIN = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }
local LOGS = "Database error code: 42P01\n\nDatabase error:\nERROR: relation \"X\" does not exist\n"

local function mf(dir, url, ...)
  local args = { "-C", dir, "--url", url }
  for _, a in ipairs({ ... }) do args[#args + 1] = a end
  return h.migfix(args)
end

local function psql(url, sql) return (h.psql(url, sql):gsub("%s+$", "")) end

local function count(url, where)
  return tonumber(psql(url, "SELECT count(*) FROM _prisma_migrations" .. (where and (" WHERE " .. where) or "")))
end

local function snapshot(url)
  return psql(url, "SELECT coalesce(string_agg(md5(to_jsonb(t)::text), ',' ORDER BY ctid), '') FROM _prisma_migrations t")
end

-- init applied, second failed (nothing of it in the database); then `sql`
local function failed_state(sql)
  local dir, mdir = h.project { INIT, SECOND }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, INIT[1])
  L.failed(url, SECOND[1], L.checksum(SECOND[2]), LOGS)
  if sql then h.psql(url, sql) end
  return dir, url
end

-- every writing command refuses (exit 1) with the problem named, and nothing changes
local function writers_refuse(dir, url, want)
  local before = snapshot(url)
  local cmds = {
    { "deploy" }, { "run", "--yes" }, { "resolve", "--rolled-back", SECOND[1], "--yes" },
    { "resolve", "--applied", SECOND[1], "--yes", "--no-backup" }, { "split", SECOND[1], "--write", "--yes" }, { "plan" },
  }
  for _, c in ipairs(cmds) do
    local out, err, rc = mf(dir, url, table.unpack(c))
    local what = table.concat(c, " ")
    h.eq(rc, 1, what .. " exit\n" .. out .. err)
    h.contains(err, "problem", what)
    h.contains(err, want, what)
    h.contains(err, "fix: ", what)
    h.not_contains(out .. err, "userdata", what)
    h.not_contains(out .. err, "traceback", what)
  end
  h.eq(snapshot(url), before, "the ledger is as it was")
end

local function status_lists(dir, url, kind, column, row)
  local out, err, rc = mf(dir, url, "status", "--json")
  h.eq(rc, 1, "status exit " .. err)
  local doc = assert(json.decode(out), out)
  local found
  for _, p in ipairs(doc.ledger_problems) do if not found and p.kind == kind and p.column == column then found = p end end
  h.ok(found, ("a %s problem on %s in %s"):format(kind, column, out))
  if row then h.eq(found.row, row, "row") end
  h.ok(#doc.problems >= 1, "problems (text)")
  h.contains(doc.problems[1], column)
  local text = mf(dir, url, "status")
  h.contains(text, "problem: ")
  h.contains(text, column)
  h.not_contains(text, "userdata")
  return found, doc
end

local T = {}

-- ------------------------------------------------------------------ ledgers

T["ledger: NULL migration_name is listed by row and column, every writer refuses (deploy no longer reruns init)"] = function()
  local dir, url = failed_state([[ALTER TABLE _prisma_migrations ALTER migration_name DROP NOT NULL;
    UPDATE _prisma_migrations SET migration_name = NULL WHERE migration_name = '20240101000000_init']])
  local p = status_lists(dir, url, "null", "migration_name", 1)
  h.contains(p.message, "Failed to extract `migration_name`")
  writers_refuse(dir, url, "NULL in migration_name")
  h.eq(count(url), 2, "no new row (deploy used to rerun init and write a failed row)")
end

T["ledger: NULL id on the failed row: run refuses instead of inserting an applied row"] = function()
  local dir, url = failed_state([[ALTER TABLE _prisma_migrations DROP CONSTRAINT _prisma_migrations_pkey;
    ALTER TABLE _prisma_migrations ALTER id DROP NOT NULL;
    UPDATE _prisma_migrations SET id = NULL WHERE finished_at IS NULL]])
  status_lists(dir, url, "null", "id", 2)
  writers_refuse(dir, url, "NULL in id")
  h.eq(count(url, "finished_at IS NOT NULL"), 1, "no applied row inserted")
end

T["ledger: NULL started_at / applied_steps_count: not 'resolved' while Prisma still fails"] = function()
  for _, col in ipairs({ "started_at", "applied_steps_count" }) do
    local dir, url = failed_state(([[ALTER TABLE _prisma_migrations ALTER %s DROP NOT NULL;
      UPDATE _prisma_migrations SET %s = NULL WHERE finished_at IS NULL]]):format(col, col))
    local p = status_lists(dir, url, "null", col)
    h.contains(p.fix, "UPDATE")
    writers_refuse(dir, url, "NULL in " .. col)
  end
end

T["ledger: NULL checksum: no traceback in status, diagnose or plan; writers refuse"] = function()
  local dir, url = failed_state([[ALTER TABLE _prisma_migrations ALTER checksum DROP NOT NULL;
    UPDATE _prisma_migrations SET checksum = NULL]])
  local p = status_lists(dir, url, "null", "checksum")
  h.contains(p.fix, L.checksum(INIT[2]), "the fix names the local file's checksum")
  local out, err, rc = mf(dir, url, "diagnose")
  h.eq(rc, 1, "diagnose " .. out .. err)
  h.not_contains(out .. err, "internal error")
  writers_refuse(dir, url, "NULL in checksum")
end

T["ledger: duplicate ids: a write by id would change both rows; writers refuse"] = function()
  local dir, url = failed_state([[ALTER TABLE _prisma_migrations DROP CONSTRAINT _prisma_migrations_pkey;
    UPDATE _prisma_migrations SET id = (SELECT id FROM _prisma_migrations WHERE finished_at IS NOT NULL) WHERE finished_at IS NULL]])
  local p = status_lists(dir, url, "duplicate_id", "id", 2)
  h.contains(p.message, "same id as row 1")
  writers_refuse(dir, url, "same id as row 1")
end

T["ledger: a table of another shape (missing column, extra column, uuid id) is listed, not read as failed, and refused"] = function()
  local cases = {
    { "ALTER TABLE _prisma_migrations DROP COLUMN logs", "missing_column", "logs", "has no column logs" },
    { "ALTER TABLE _prisma_migrations ADD COLUMN note text", "extra_column", "note", "column note" },
    { "ALTER TABLE _prisma_migrations ALTER id TYPE uuid USING id::uuid", "type", "id", "is uuid" },
    { "ALTER TABLE _prisma_migrations ALTER applied_steps_count DROP DEFAULT, ALTER applied_steps_count TYPE text", "type",
      "applied_steps_count", "is text" },
  }
  for _, c in ipairs(cases) do
    local dir, url = failed_state(c[1])
    local p = status_lists(dir, url, c[2], c[3])
    h.contains(p.message, c[4])
    h.contains(p.fix, "ALTER TABLE")
    writers_refuse(dir, url, c[4])
  end
end

T["ledger: types Prisma reads (text ids, timestamp, bigint) are not problems"] = function()
  local dir, url = failed_state([[ALTER TABLE _prisma_migrations ALTER id TYPE text, ALTER checksum TYPE text,
    ALTER migration_name TYPE text, ALTER started_at TYPE timestamp, ALTER applied_steps_count TYPE bigint]])
  local out, err, rc = mf(dir, url, "status", "--json")
  h.eq(rc, 1, err)
  local doc = json.decode(out)
  h.eq(#doc.ledger_problems, 0, out)
  h.eq(doc.deploy.refuses, true)
end

T["ledger: undo refuses on a ledger with problems"] = function()
  local dir, url = failed_state()
  local out, err, rc = mf(dir, url, "resolve", "--rolled-back", SECOND[1], "--yes", "--no-backup")
  h.eq(rc, 0, out .. err)
  h.psql(url, "ALTER TABLE _prisma_migrations ALTER applied_steps_count DROP NOT NULL; UPDATE _prisma_migrations SET applied_steps_count = NULL WHERE finished_at IS NOT NULL")
  local before = snapshot(url)
  out, err, rc = mf(dir, url, "undo", "--yes")
  h.eq(rc, 1, out .. err)
  h.contains(err, "NULL in applied_steps_count")
  h.eq(snapshot(url), before)
end

-- ------------------------------------------------------------------ files

local FILES = {
  nul = { sql = 'CREATE TABLE "A" (id int);\n\0CREATE TABLE "B" (id int);\n', where = ":2:1: a NUL byte (0x00)" },
  utf8 = { sql = '-- caf\xe9\nCREATE TABLE "C" (id int);\n', where = ":1:7: invalid UTF-8 (byte 0xE9)" },
}

T["files: a NUL byte / invalid UTF-8 in a pending migration: exit 2 with file:line:byte everywhere, nothing applied"] = function()
  for kind, f in pairs(FILES) do
    local dir, mdir = h.project { INIT, { SECOND[1], f.sql } }
    local _, url = h.fresh_db()
    local path = mdir .. "/" .. SECOND[1] .. "/migration.sql"
    for _, c in ipairs({ { "lint" }, { "lint", "--offline" }, { "diagnose" }, { "plan" }, { "run", "--yes" }, { "deploy" },
                         { "split", SECOND[1] } }) do
      local out, err, rc = mf(dir, url, table.unpack(c))
      local what = kind .. ": " .. table.concat(c, " ")
      h.eq(rc, 2, what .. "\n" .. out .. err)
      h.contains(err, path .. f.where, what)
    end
    h.eq(psql(url, [[SELECT count(*) FROM pg_class WHERE relname IN ('A', 'B', 'C', 'User')]]), "0", kind .. ": nothing applied")
    h.eq(psql(url, [[SELECT count(*) FROM pg_class WHERE relname = '_prisma_migrations']]) == "0" and 0 or count(url), 0,
      kind .. ": no ledger row")
    -- status lists it (exit 1) instead of failing
    local out, err, rc = mf(dir, url, "status", "--json")
    h.eq(rc, 1, kind .. " status " .. err)
    local doc = json.decode(out)
    h.eq(#doc.file_problems, 1)
    h.eq(doc.file_problems[1].kind, kind)
    h.contains(doc.file_problems[1].message, f.where)
  end
end

T["files: invalid UTF-8 in an applied migration: status compares the checksum Prisma recorded (of the U+FFFD text)"] = function()
  local text = '-- caf\xe9\nCREATE TABLE "C" (id int);\n'
  local dir = h.project { INIT, { SECOND[1], text } }
  local _, url = h.fresh_db()
  L.applied(url, INIT[1], L.checksum(INIT[2]))
  -- what Prisma 6.19.3 wrote for this file (tests/compat/test_bad_inputs_prisma.lua)
  L.applied(url, SECOND[1], L.checksum('-- caf\xef\xbf\xbd\nCREATE TABLE "C" (id int);\n'))
  local out, err, rc = mf(dir, url, "status", "--json")
  h.eq(rc, 1, err)
  local doc = json.decode(out)
  local m
  for _, x in ipairs(doc.migrations) do if x.name == SECOND[1] then m = x end end
  h.eq(m.state, "applied")
  h.eq(m.modified, false, "same checksum as Prisma's")
  h.eq(doc.summary.modified, 0)
  h.eq(#doc.file_problems, 1)
end

T["files: an unterminated statement: deploy exits 2 with file:line:column before writing anything"] = function()
  local sql = 'CREATE TABLE "D" (id int);\nINSERT INTO "D" VALUES (\'abc);\n'
  local dir, mdir = h.project { INIT, { SECOND[1], sql } }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, INIT[1])
  local path = mdir .. "/" .. SECOND[1] .. "/migration.sql"
  local out, err, rc = mf(dir, url, "deploy")
  h.eq(rc, 2, out .. err)
  h.contains(err, path .. ":2:25: unterminated quoted string")
  h.eq(count(url), 1, "no started row for the second migration (Prisma writes a failed one)")
  h.eq(psql(url, [[SELECT count(*) FROM pg_class WHERE relname = 'D']]), "0")
  for _, c in ipairs({ { "lint" }, { "split", SECOND[1] } }) do
    out, err, rc = mf(dir, url, table.unpack(c))
    h.eq(rc, 2, table.concat(c, " ") .. out .. err)
    h.contains(err, ":2:")
  end
  -- the same file as a failed migration: diagnose, plan and run stop on it
  L.failed(url, SECOND[1], L.checksum(sql), "boom")
  for _, c in ipairs({ { "diagnose" }, { "plan" }, { "run", "--yes" } }) do
    out, err, rc = mf(dir, url, table.unpack(c))
    h.eq(rc, 2, table.concat(c, " ") .. out .. err)
    h.contains(err, path .. ":2:25:")
  end
end

-- ------------------------------------------------------------------ big logs

T["logs: a 50 MB logs value: status, diagnose, plan and run finish, show its size, the journal keeps an excerpt and its SHA-256"] = function()
  local dir, mdir = h.project { INIT, PLAIN }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, INIT[1])
  L.failed(url, SECOND[1], L.checksum("an older version"), "x")
  h.psql(url, [[UPDATE _prisma_migrations SET logs = 'Database error code: 42P01' || chr(10) || chr(10) || 'Database error:'
    || chr(10) || 'ERROR: relation "X" does not exist ' || repeat('y', 50 * 1024 * 1024) WHERE finished_at IS NULL]])
  local sha = psql(url, [[SELECT encode(sha256(convert_to(logs, 'UTF8')), 'hex') FROM _prisma_migrations WHERE finished_at IS NULL]])
  local out, err, rc = mf(dir, url, "status", "--json")
  h.eq(rc, 1, err)
  h.ok(#out < 100000, "status --json stays small: " .. #out)
  local doc = json.decode(out)
  local row = doc.migrations[2].rows[1]
  h.eq(row.logs_truncated, true)
  h.ok(row.logs_bytes > 50 * 1024 * 1024, "logs_bytes")
  h.contains(mf(dir, url, "status"), " bytes")
  out, err, rc = mf(dir, url, "diagnose")
  h.eq(rc, 1, err)
  h.contains(out, "42P01")
  h.contains(out, "(logs: ")
  h.ok(#out < 20000, "diagnose output stays small")
  out, err, rc = mf(dir, url, "plan", "--json")
  h.eq(rc, 0, out .. err)
  h.ok(#out < 100000, "plan --json stays small")
  out, err, rc = mf(dir, url, "run", "--yes")
  h.eq(rc, 0, out .. err)
  -- every journal line is small; the before image of the failed row holds an excerpt and the hash
  local jtext = h.read(dir .. "/.migfix/journal.jsonl")
  local found
  for line in jtext:gmatch("[^\n]+") do
    h.ok(#line < 64 * 1024, "journal line of " .. #line .. " bytes")
    local e = json.decode(line)
    for _, r in ipairs(e.before or {}) do if r.logs_sha256 then found = r end end
  end
  h.ok(found, "a row image with logs_sha256")
  h.eq(found.logs_sha256, sha)
  h.ok(#found.logs <= 4096 * 4, "an excerpt")
  h.ok(tonumber(psql(url, "SELECT max(octet_length(before::text)) FROM migfix.journal")) < 64 * 1024, "journal table rows small")
  -- undo (twice: the redeploy's deploy, then its mark rolled back) restores the row with its whole logs
  for _ = 1, 2 do
    out, err, rc = mf(dir, url, "undo", "--yes")
    h.eq(rc, 0, out .. err)
  end
  h.eq(psql(url, [[SELECT encode(sha256(convert_to(logs, 'UTF8')), 'hex') FROM _prisma_migrations WHERE finished_at IS NULL AND rolled_back_at IS NULL]]), sha)
end

-- ------------------------------------------------------------------ gaps

T["data-only failed migration: text diagnose, plan and run exit per verdict (1), not 4"] = function()
  local dir, mdir = h.project { INIT, { SECOND[1], 'INSERT INTO "User" DEFAULT VALUES;\n' } }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, INIT[1])
  L.failed(url, SECOND[1], L.checksum('INSERT INTO "User" DEFAULT VALUES;\n'), "Database error code: 23505\n\nDatabase error:\nERROR: duplicate key")
  for _, c in ipairs({ { "diagnose" }, { "diagnose", "--objects" }, { "plan" }, { "run", "--yes" } }) do
    local out, err, rc = mf(dir, url, table.unpack(c))
    h.eq(rc, 1, table.concat(c, " ") .. "\n" .. out .. err)
    h.contains(out, "UNVERIFIABLE")
    h.not_contains(err, "internal error")
  end
end

T["url: an empty ?schema= is a usage error (exit 2), not a traceback"] = function()
  local dir = h.project { INIT }
  local _, url = h.fresh_db()
  for _, c in ipairs({ "status", "plan", "deploy" }) do
    local out, err, rc = h.migfix { "-C", dir, "--url", url .. "?schema=", c }
    h.eq(rc, 2, c .. " " .. out .. err)
    h.contains(err, "?schema= is empty")
    h.not_contains(err, "traceback")
  end
end

T["url: ?host=/socket&port=N connects on that port"] = function()
  local sock = os.getenv("PG_DIR")
  local port = os.getenv("PGPORT")
  if not sock or not port then error("PG_DIR and PGPORT are set by tests/lib/pg.sh") end
  local dir = h.project { INIT }
  local name = h.fresh_db()
  local out, err, rc = h.migfix { "-C", dir, "--url", ("postgresql://postgres@localhost/%s?host=%s&port=%s"):format(name, sock, port), "status" }
  h.eq(rc, 1, out .. err)
  h.contains(out, "1 pending migration")
end

return T
