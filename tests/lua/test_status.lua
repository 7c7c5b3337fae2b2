-- migfix status against the ledger states Prisma leaves,
-- built with prisma_ledger (checked against the real CLI in tests/compat).
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }
local M3 = { "20240103000000_third", 'CREATE INDEX "User_name_idx" ON "User"("name");\n' }

local function status(dir, url, extra)
  local args = { "-C", dir, "--url", url, "status", "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local out, err, rc = h.migfix(args)
  local doc = json.decode(out)
  if not doc then error("no JSON from status (rc " .. tostring(rc) .. "): " .. out .. err) end
  local by = {}
  for _, m in ipairs(doc.migrations) do by[m.name] = m end
  return doc, by, rc, err
end

local T = {}

T["clean history: every migration applied, exit 0"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  local doc, by, rc = status(dir, url)
  h.eq(rc, 0, "exit")
  h.eq(doc.status, "clean")
  h.eq(by[M1[1]].state, "applied")
  h.eq(by[M2[1]].state, "applied")
  h.eq(by[M2[1]]["local"].checksum, L.checksum(M2[2]))
  h.eq(#by[M2[1]].rows, 1)
  h.eq(by[M2[1]].rows[1].applied_steps_count, 1)
  h.eq(doc.deploy.refuses, false)
  h.eq(doc.prisma_status.exit, 0)
end

T["failed row: P3009 headline, state failed, exit 1"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  L.failed(url, M2[1], L.checksum(M2[2]), "Database error code: 42P01\n\nDatabase error:\nERROR: relation \"X\" does not exist")
  local doc, by, rc = status(dir, url)
  h.eq(rc, 1, "exit")
  h.eq(doc.status, "failed")
  h.eq(doc.deploy.refuses, true)
  h.eq(doc.deploy.code, "P3009")
  h.eq(by[M2[1]].state, "failed")
  h.eq(doc.summary.failed, 1)
  h.contains(doc.headline, "P3009")
  h.contains(doc.headline, M2[1])
  -- human output names the failed migration and Prisma's message
  local out, _, rc2 = h.migfix { "-C", dir, "--url", url, "status" }
  h.eq(rc2, 1)
  h.contains(out, "P3009")
  h.contains(out, "The `" .. M2[1] .. "` migration started at")
end

T["failed, rolled back, then applied again: applied (reapplied), all rows kept"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  local id = L.failed(url, M2[1], L.checksum("old text"), "boom")
  L.rolled_back(url, id)
  L.applied(url, M2[1], L.checksum(M2[2]))
  local doc, by, rc = status(dir, url)
  h.eq(rc, 0)
  h.eq(by[M2[1]].state, "applied")
  h.eq(by[M2[1]].reapplied, true)
  h.eq(#by[M2[1]].rows, 2)
  h.eq(by[M2[1]].modified, false, "compared with the row that counts, not the rolled-back one")
  h.eq(doc.deploy.refuses, false)
end

T["rolled back only: deploy will run it again (Prisma status says up to date)"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  local id = L.failed(url, M2[1], L.checksum(M2[2]), "boom")
  L.rolled_back(url, id)
  local doc, by, rc = status(dir, url)
  h.eq(by[M2[1]].state, "rolled_back")
  h.eq(doc.deploy.pending[1], M2[1])
  h.eq(doc.prisma_status.exit, 0, "prisma status exit")
  h.eq(rc, 1, "migfix: attention, deploy has work")
end

T["applied, then edited locally: modified, exit 1"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  h.write(dir .. "/prisma/migrations/" .. M2[1] .. "/migration.sql", M2[2] .. "-- edited after release\n")
  local doc, by, rc = status(dir, url)
  h.eq(by[M2[1]].state, "applied")
  h.eq(by[M2[1]].modified, true)
  h.eq(doc.summary.modified, 1)
  h.eq(rc, 1)
end

T["CRLF checkout of an LF-applied file is not a modification (Prisma's tolerance)"] = function()
  local dir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  h.write(dir .. "/prisma/migrations/" .. M2[1] .. "/migration.sql", (M2[2]:gsub("\n", "\r\n")))
  local _, by, rc = status(dir, url)
  h.eq(by[M2[1]].modified, false)
  h.eq(rc, 0)
end

T["row whose folder is gone: missing, exit 1; a failed one still blocks deploy"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  L.applied(url, "20231231000000_ghost", L.checksum("x"))
  L.failed(url, "20231231000001_ghost_failed", L.checksum("y"), nil)
  local doc, by, rc = status(dir, url)
  h.eq(by["20231231000000_ghost"].state, "missing")
  h.eq(by["20231231000000_ghost"].missing_locally, true)
  h.eq(by["20231231000001_ghost_failed"].state, "failed")
  h.eq(doc.deploy.refuses, true)
  h.eq(rc, 1)
end

T["pending migrations: listed, deploy would apply them"] = function()
  local dir = h.project { M1, M2, M3 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations", M1[1])
  local doc, by, rc = status(dir, url)
  h.eq(by[M2[1]].state, "pending")
  h.eq(by[M3[1]].state, "pending")
  h.same(doc.deploy.pending, { M2[1], M3[1] })
  h.eq(doc.status, "pending")
  h.eq(rc, 1)
end

T["no ledger table: nothing applied yet, not an error"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  local doc, by, rc = status(dir, url)
  h.eq(doc.ledger_exists, false)
  h.eq(by[M1[1]].state, "pending")
  h.eq(rc, 1)
end

T["non-public and mixed-case schema via ?schema="] = function()
  for _, schema in ipairs({ "app", "TenantA" }) do
    local dir = h.project { M1, M2 }
    local name = h.fresh_db()
    local url = h.url(name, "schema=" .. schema)
    h.psql(url, ('CREATE SCHEMA "%s"'):format(schema))
    L.deploy(url, schema, dir .. "/prisma/migrations", M1[1])
    L.failed(url, M2[1], L.checksum(M2[2]), nil, { schema = schema })
    local doc, by, rc = status(dir, url)
    h.eq(doc.schema, schema)
    h.eq(by[M1[1]].state, "applied", schema)
    h.eq(by[M2[1]].state, "failed", schema)
    h.eq(rc, 1)
    -- the public schema has no ledger: reading it there sees nothing
    local doc2 = status(dir, h.url(name))
    h.eq(doc2.ledger_exists, false)
  end
end

T["folder names Prisma accepts: plain numbers, spaces, .sql suffix; ICU order"] = function()
  local dir = h.project {
    { "01_init", "SELECT 1;\n" }, { "10_later", "SELECT 1;\n" }, { "2_second", "SELECT 1;\n" },
    { "20240101_a copy", "SELECT 1;\n" }, { "2024010100_b.sql", "SELECT 1;\n" },
  }
  local _, url = h.fresh_db()
  local doc = status(dir, url)
  local names = {}
  for _, m in ipairs(doc.migrations) do names[#names + 1] = m.name end
  h.same(names, { "01_init", "10_later", "2_second", "20240101_a copy", "2024010100_b.sql" })
end

T["NULL in a required ledger column is reported as Prisma would fail on it"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  h.psql(url, "ALTER TABLE _prisma_migrations ALTER COLUMN applied_steps_count DROP NOT NULL; UPDATE _prisma_migrations SET applied_steps_count = NULL")
  local doc, _, rc = status(dir, url)
  h.eq(rc, 1)
  h.contains(doc.problems[1], "applied_steps_count")
end

return T
