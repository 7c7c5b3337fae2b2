-- Data errors and adapter-engine error texts, with states built by the real
-- Prisma CLI 6.19.3 (tests/compat/prisma: the wasm schema engine through
-- @prisma/adapter-pg, so `logs` holds Prisma's own driver-adapter texts such as
-- "Unique constraint failed: Customer_email_key"). The init migration is
-- applied by the fast fixture (prisma_ledger, checked against the real CLI in
-- test_fixture_vs_prisma.lua); every failing migration is deployed by Prisma.
-- About 12 Prisma calls.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local H = require "helper"
local L = require "prisma_ledger"
local C = require "compat"
local json = require "migfix.json"

local T = {}

local INIT, CHANGE = "20240101000000_init", "20240102000000_change"

--- init applied, then `failing` deployed by the real Prisma CLI (it fails); returns dir, url, mdir, logs
local function prisma_state(setup, failing, before_deploy)
  local dir, mdir = H.project { { INIT, setup } }
  local _, url = H.fresh_db()
  local r = L.deploy(url, nil, mdir)
  H.ok(r.ok, r.error)
  H.write(mdir .. "/" .. CHANGE .. "/migration.sql", failing)
  if before_deploy then before_deploy(url) end
  local out, rc = C.prisma(url, mdir, { "migrate", "deploy" })
  H.eq(rc, 1, "prisma migrate deploy fails:\n" .. out)
  local rows = C.rows(url)
  local logs = rows[#rows].logs
  H.ok(logs and logs:find("external connector error", 1, true), "the adapter form: " .. tostring(logs))
  return dir, url, mdir, logs
end

local function mf(dir, url, args)
  local full = { "-C", dir, "--url", url }
  for _, a in ipairs(args) do full[#full + 1] = a end
  return H.migfix(full)
end

local function diag(dir, url)
  local out, err, rc = mf(dir, url, { "diagnose", "--json" })
  H.eq(rc, 1, err)
  return assert(json.decode(out), out .. err).migrations[1]
end

T["23505 via the adapter: a duplicate left in place is refused by name; removed, the redeploy leaves Prisma clean"] = function()
  local dir, url, mdir, logs = prisma_state(
    'CREATE TABLE "Customer" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "Customer_pkey" PRIMARY KEY ("id"));\n' ..
    [[INSERT INTO "Customer" ("email") VALUES ('ann@example.com'), ('ann@example.com'), ('bob@example.com');]] .. "\n",
    '-- CreateIndex\nCREATE UNIQUE INDEX "Customer_email_key" ON "Customer"("email");\n')
  H.contains(logs, "Unique constraint failed: Customer_email_key")
  local m = diag(dir, url)
  H.eq(m.error.sqlstate, "23505")
  H.eq(m.error.class, "data")
  H.eq(m.error.source, "adapter")
  H.eq(m.error.object, "Customer_email_key")
  H.eq(m.verdict, "absent")
  H.eq(m.data.status, "violated")
  H.eq(m.data.violations, 2)
  -- left in place: refused, naming the key; nothing written
  local before = C.rows(url)
  local out, err, rc = mf(dir, url, { "run" })
  H.eq(rc, 1, out .. err)
  H.contains(out, "2 rows share email = 'ann@example.com'; remove or merge them")
  H.same(C.rows(url), before, "a refusal writes nothing")
  -- removed: the unchanged file is redeployed, and Prisma agrees
  H.psql(url, [[DELETE FROM "Customer" WHERE "id" = 2]])
  out, err, rc = mf(dir, url, { "run" })
  H.eq(rc, 0, out .. err)
  H.contains(out, "the data fits now")
  local src, sout = C.status(url, mdir)
  H.eq(src, 0, "prisma migrate status:\n" .. sout)
  H.contains(sout, "Database schema is up to date!")
  local dout, drc = C.prisma(url, mdir, { "migrate", "deploy" })
  H.eq(drc, 0, dout)
  H.contains(dout, "No pending migrations to apply.")
end

T["the adapter's data texts are classed with their SQLSTATE, and the data evidence counts the rows"] = function()
  local cases = {
    { name = "NOT NULL", code = "23502", text = "Null constraint failed",
      setup = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "email" TEXT);\nINSERT INTO "T" VALUES (1, NULL), (2, NULL), (3, \'a\');\n',
      sql = 'ALTER TABLE "T" ALTER COLUMN "email" SET NOT NULL;\n', n = 2 },
    { name = "foreign key", code = "23503", text = "Foreign key constraint failed: C_pid_fkey", object = "C_pid_fkey",
      setup = 'CREATE TABLE "P" ("id" INTEGER PRIMARY KEY);\nCREATE TABLE "C" ("id" INTEGER PRIMARY KEY, "pid" INTEGER);\nINSERT INTO "P" VALUES (1);\nINSERT INTO "C" VALUES (1, 1), (2, 7), (3, 8);\n',
      sql = 'ALTER TABLE "C" ADD CONSTRAINT "C_pid_fkey" FOREIGN KEY ("pid") REFERENCES "P"("id") ON DELETE RESTRICT ON UPDATE CASCADE;\n', n = 2 },
    { name = "CHECK", code = "23514", text = "is violated by some row", object = "T_price_check",
      setup = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "price" INTEGER);\nINSERT INTO "T" VALUES (1, 5), (2, -1);\n',
      sql = 'ALTER TABLE "T" ADD CONSTRAINT "T_price_check" CHECK ("price" > 0);\n', n = 1 },
    { name = "invalid input (the wasm engine loses the message)", code = "22P02", text = "InvalidInputValue",
      setup = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "amount" TEXT);\nINSERT INTO "T" VALUES (1, \'12\'), (2, \'abc\');\n',
      sql = 'ALTER TABLE "T" ALTER COLUMN "amount" SET DATA TYPE INTEGER USING "amount"::integer;\n', n = 1 },
    { name = "out of range", code = "22003", text = "Value out of range error",
      setup = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "n" BIGINT);\nINSERT INTO "T" VALUES (1, 1), (2, 99999999999);\n',
      sql = 'ALTER TABLE "T" ALTER COLUMN "n" SET DATA TYPE INTEGER;\n', n = 1 },
    { name = "too long", code = "22001", text = "is too long",
      setup = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY, "s" VARCHAR(20));\nINSERT INTO "T" VALUES (1, \'abcdefghij\'), (2, \'ab\');\n',
      sql = 'ALTER TABLE "T" ALTER COLUMN "s" SET DATA TYPE VARCHAR(3);\n', n = 1 },
  }
  for _, c in ipairs(cases) do
    local dir, url, _, logs = prisma_state(c.setup, c.sql)
    H.contains(logs, c.text, c.name)
    local m = diag(dir, url)
    H.eq(m.error.sqlstate, c.code, c.name .. ": " .. logs)
    H.eq(m.error.class, "data", c.name)
    if c.object then H.eq(m.error.object, c.object, c.name) end
    H.eq(m.data.status, "violated", c.name .. ": " .. json.encode(m.data))
    H.eq(m.data.violations, c.n, c.name)
    local out, err, rc = mf(dir, url, { "plan" })
    H.eq(rc, 1, c.name .. ": " .. out .. err)
    H.contains(out, m.data.summary, c.name)
  end
end

T["the adapter's lock timeout, statement timeout and lost connection are transient: redeploy"] = function()
  local setup = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY);\n'
  -- statement timeout and a terminated backend, from the migration itself
  for _, c in ipairs({
    { "SET statement_timeout = 100;\nALTER TABLE \"T\" ADD COLUMN \"y\" INTEGER;\nSELECT pg_sleep(2);\n", "57014", "canceling statement due to statement timeout" },
    { "ALTER TABLE \"T\" ADD COLUMN \"y\" INTEGER;\nSELECT pg_terminate_backend(pg_backend_pid());\n", "57P01", "terminating connection due to administrator command" },
  }) do
    local dir, url, _, logs = prisma_state(setup, c[1])
    H.contains(logs, c[3])
    local m = diag(dir, url)
    H.eq(m.error.sqlstate, c[2], logs)
    H.eq(m.error.class, "transient")
    local out, err, rc = mf(dir, url, { "plan" })
    H.eq(rc, 0, out .. err)
    H.contains(out, "the error was transient")
  end
  -- a lock another session holds, with the migration's own lock_timeout
  local locker
  local dir, url, _, logs = prisma_state(setup, "SET lock_timeout = '200ms';\nALTER TABLE \"T\" ADD COLUMN \"x\" INTEGER;\n", function(u)
    locker = H.tmpdir() .. "/locker"
    os.execute(("psql -qX -d %s -c %s >%s 2>&1 &"):format(H.shq(u), H.shq([[BEGIN; LOCK TABLE "T" IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);]]), H.shq(locker)))
    for _ = 1, 600 do
      if H.psql(u, [[SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'T' AND l.mode = 'AccessExclusiveLock' AND l.granted]]) == "1\n" then break end
      os.execute("sleep 0.1")
    end
  end)
  H.psql(url, [[SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()]])
  H.contains(logs, "canceling statement due to lock timeout")
  local m = diag(dir, url)
  H.eq(m.error.sqlstate, "55P03")
  H.eq(m.error.class, "transient")
end

return T
