-- Unit tests for tests/lua/prisma_ledger.lua (the fast, Node-free fixture
-- builder for `_prisma_migrations` states). The comparison with the real
-- Prisma CLI is in tests/compat/test_fixture_vs_prisma.lua.
local H = require "helper"
local L = require "prisma_ledger"

local T = {}

local INIT = 'CREATE TABLE "User" (id SERIAL PRIMARY KEY, email TEXT NOT NULL);\n'
local SECOND = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n'
local BAD = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\nCREATE INDEX "User_name_idx" ON "User"("name");\nALTER TABLE "DoesNotExist" ADD COLUMN "x" INTEGER;\n'

local function columns(url, schema)
  return H.psql(url, ([[SELECT string_agg(column_name || ':' || data_type || ':' || is_nullable || ':' || coalesce(character_maximum_length::text, '') || ':' || coalesce(column_default, ''), ',' ORDER BY ordinal_position)
    FROM information_schema.columns WHERE table_schema = '%s' AND table_name = '_prisma_migrations']]):format(schema))
end

T["checksum: sha256 hex test vectors"] = function()
  H.eq(L.checksum("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
  H.eq(L.checksum(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  H.ok(L.checksum("SELECT 1;\n"):match("^b4e04978") ~= nil, "SELECT 1;\\n")
  H.ok(L.checksum("SELECT 1;\r\n"):match("^d3cd5042") ~= nil, "SELECT 1;\\r\\n")
end

T["uuid4: v4, lowercase, unique"] = function()
  local seen = {}
  for _ = 1, 200 do
    local u = L.uuid4()
    H.ok(L.is_uuid4(u), "v4 uuid " .. u)
    H.ok(not seen[u], "unique")
    seen[u] = true
  end
  H.ok(not L.is_uuid4("75D404F3-59EC-42FB-B8B3-7E89BADEBBDA"), "uppercase rejected")
  H.ok(not L.is_uuid4("75d404f3-59ec-12fb-b8b3-7e89badebbda"), "v1 rejected")
end

T["url_schema: ?schema= decoded"] = function()
  H.eq(L.url_schema("postgresql://u@h:1/db"), nil)
  H.eq(L.url_schema("postgresql://u@h:1/db?schema=app"), "app")
  H.eq(L.url_schema("postgresql://u@h:1/db?sslmode=disable&schema=my%20app"), "my app")
  H.eq(L.url_schema("postgresql://u@h:1/db?schema=a+b"), "a b")
end

T["now: increasing client timestamps"] = function()
  local a, b = L.now(), L.now()
  H.ok(a:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d%d%d%d%+00$"), "format " .. a)
  H.ok(a < b, "strictly increasing")
end

T["create_table: Prisma's exact columns, in the URL schema"] = function()
  local _, url = H.fresh_db()
  L.create_table(url)
  H.eq(columns(url, "public"),
    "id:character varying:NO:36:,checksum:character varying:NO:64:,finished_at:timestamp with time zone:YES::," ..
    "migration_name:character varying:NO:255:,logs:text:YES::,rolled_back_at:timestamp with time zone:YES::," ..
    "started_at:timestamp with time zone:NO::now(),applied_steps_count:integer:NO::0\n")
  H.eq(H.psql(url, "SELECT conname FROM pg_constraint WHERE conrelid = '_prisma_migrations'::regclass"), "_prisma_migrations_pkey\n")
  local rows, exists = L.rows(url)
  H.ok(exists, "table exists")
  H.eq(#rows, 0)
  L.create_table(url .. "?schema=app")
  H.ok(columns(url, "app") ~= "\n", "created in schema app")
  H.eq(select(2, L.rows(url, "other")), false, "no table in other")
end

T["applied: a deploy-applied row"] = function()
  local _, url = H.fresh_db()
  local id = L.applied(url, "20240101000000_init", L.checksum(INIT))
  local rows = L.rows(url)
  H.eq(#rows, 1)
  local r = rows[1]
  H.eq(r.id, id)
  H.ok(L.is_uuid4(r.id), "v4 id")
  H.eq(r.checksum, L.checksum(INIT))
  H.eq(r.migration_name, "20240101000000_init")
  H.eq(r.applied_steps_count, 1)
  H.eq(r.logs, nil)
  H.eq(r.rolled_back_at, nil)
  H.ok(r.started_at < r.finished_at, "started_at < finished_at")
  -- client timestamps: not the statement's now() (the DB default)
  local id2 = L.applied(url, "20240102000000_second", L.checksum(SECOND),
    { started_at = "2024-01-02 03:04:05.123456+00", finished_at = "2024-01-02 03:04:05.2+00" })
  rows = L.rows(url)
  H.eq(rows[1].id, id2, "explicit older started_at sorts first")
  H.eq(rows[1].started_at, "2024-01-02 03:04:05.123456+00")
  H.eq(rows[1].finished_at, "2024-01-02 03:04:05.200000+00")
end

T["failed: logs text or NULL, finished_at NULL, steps 0"] = function()
  local _, url = H.fresh_db()
  L.applied(url, "a", L.checksum("x"))
  local id = L.failed(url, "b", L.checksum(BAD), "boom;\n'quoted' text")
  local killed = L.failed(url, "c", L.checksum("y"), nil)
  local rows = L.rows(url)
  H.eq(#rows, 3)
  H.eq(rows[2].id, id)
  H.eq(rows[2].logs, "boom;\n'quoted' text")
  H.eq(rows[2].finished_at, nil)
  H.eq(rows[2].rolled_back_at, nil)
  H.eq(rows[2].applied_steps_count, 0)
  H.eq(rows[3].id, killed)
  H.eq(rows[3].logs, nil, "killed process: logs NULL")
  H.eq(rows[3].finished_at, nil)
  H.ok(rows[1].finished_at < rows[2].started_at, "ordered")
end

T["rolled_back and resolved_applied: resolve signatures"] = function()
  local _, url = H.fresh_db()
  local id = L.failed(url, "m", L.checksum(BAD), "err")
  L.rolled_back(url, id)
  local new = L.resolved_applied(url, "m", L.checksum(SECOND))
  local rows = L.rows(url)
  H.eq(#rows, 2)
  H.eq(rows[1].id, id)
  H.ok(rows[1].rolled_back_at > rows[1].started_at, "rolled_back_at set after started_at")
  H.eq(rows[1].finished_at, nil)
  H.eq(rows[1].logs, "err")
  H.eq(rows[1].applied_steps_count, 0)
  H.eq(rows[2].id, new)
  H.ok(L.is_uuid4(new) and new ~= id, "new v4 id")
  H.eq(rows[2].logs, "", "logs '' (not NULL)")
  H.eq(rows[2].applied_steps_count, 0)
  H.eq(rows[2].started_at, rows[2].finished_at, "started_at = finished_at")
  H.eq(rows[2].rolled_back_at, nil)
  H.eq(rows[2].checksum, L.checksum(SECOND))
  H.ok(rows[2].started_at > rows[1].rolled_back_at, "inserted after the roll back")
end

T["resolve_*: whole-command semantics and errors"] = function()
  local _, url = H.fresh_db()
  H.eq(select(2, L.resolve_rolled_back(url, "m")), "no table")
  L.applied(url, "a", L.checksum("x"))
  H.eq(select(2, L.resolve_rolled_back(url, "m")), "P3011")
  H.eq(select(2, L.resolve_rolled_back(url, "a")), "P3012")
  H.eq(select(2, L.resolve_applied(url, "a", "c")), "P3008")
  L.failed(url, "m", "c1", "err")
  H.ok(L.resolve_rolled_back(url, "m"))
  H.ok(L.resolve_rolled_back(url, "m"), "second time: still ok, nothing to do")
  L.failed(url, "m", "c1", "err again")
  H.ok(L.resolve_applied(url, "m", "c2"))
  local rows = L.rows(url)
  H.eq(#rows, 4)
  for i = 2, 3 do H.ok(rows[i].rolled_back_at, "failed rows rolled back") end
  H.eq(rows[4].logs, "")
end

T["deploy: applies in order, one simple query per file"] = function()
  local _, url = H.fresh_db()
  local _, mdir = H.project({
    { "20240101000000_init", INIT },
    { "20240102000000_second", SECOND },
    { "20240103000000_third", "CREATE TABLE t3 (x int); INSERT INTO t3 VALUES (1);\n-- ; in a comment\nSELECT 'a;b';\n" },
  })
  local r = L.deploy(url, nil, mdir, "20240102000000_second")
  H.ok(r.ok, r.error)
  H.same(r.applied, { "20240101000000_init", "20240102000000_second" })
  r = L.deploy(url, nil, mdir)
  H.ok(r.ok, r.error)
  H.same(r.applied, { "20240103000000_third" })
  local rows = L.rows(url)
  H.eq(#rows, 3)
  for i, r2 in ipairs(rows) do
    H.ok(L.is_uuid4(r2.id))
    H.eq(r2.applied_steps_count, 1)
    H.eq(r2.logs, nil)
    H.ok(r2.started_at < r2.finished_at)
    if i > 1 then H.ok(rows[i - 1].finished_at < r2.started_at, "sequential") end
  end
  H.eq(rows[3].checksum, L.checksum(H.read(mdir .. "/20240103000000_third/migration.sql")))
  H.eq(H.psql(url, "SELECT x FROM t3"), "1\n")
  r = L.deploy(url, nil, mdir)
  H.ok(r.ok)
  H.eq(#r.applied, 0, "nothing pending")
end

T["deploy: failure leaves a failed row, no partial DDL, then P3009"] = function()
  local _, url = H.fresh_db()
  local _, mdir = H.project({ { "20240101000000_init", INIT }, { "20240102000000_second", BAD } })
  local r = L.deploy(url, nil, mdir)
  H.eq(r.ok, false)
  H.eq(r.code, "P3018")
  H.eq(r.failed, "20240102000000_second")
  local rows = L.rows(url)
  H.eq(#rows, 2)
  H.eq(rows[2].finished_at, nil)
  H.eq(rows[2].applied_steps_count, 0)
  H.contains(rows[2].logs, "Migration name: 20240102000000_second")
  H.contains(rows[2].logs, "Database error code: 42P01")
  H.contains(rows[2].logs, 'ERROR: relation "DoesNotExist" does not exist')
  H.eq(rows[2].checksum, L.checksum(BAD))
  -- whole file = one implicit transaction: the ADD COLUMN did not stay
  H.eq(H.psql(url, [[SELECT count(*) FROM information_schema.columns WHERE table_name = 'User' AND column_name = 'name']]), "0\n")
  r = L.deploy(url, nil, mdir)
  H.eq(r.code, "P3009")
  H.eq(#L.rows(url), 2, "P3009 writes nothing")
  -- resolve --rolled-back, fix the file, deploy again: a new row
  H.ok(L.resolve_rolled_back(url, "20240102000000_second"))
  H.write(mdir .. "/20240102000000_second/migration.sql", SECOND)
  r = L.deploy(url, nil, mdir)
  H.ok(r.ok, r.error)
  rows = L.rows(url)
  H.eq(#rows, 3)
  H.ok(rows[2].rolled_back_at)
  H.eq(rows[3].checksum, L.checksum(SECOND))
  H.eq(rows[3].applied_steps_count, 1)
end

T["deploy: killed-process logs NULL, P3005 on a non-empty schema"] = function()
  local _, url = H.fresh_db()
  local _, mdir = H.project({ { "20240101000000_init", "SELECT 1/0;" } })
  local r = L.deploy(url, nil, mdir, nil, { logs = false })
  H.eq(r.code, "P3018")
  H.eq(L.rows(url)[1].logs, nil)
  local _, url2 = H.fresh_db()
  H.psql(url2, "CREATE TABLE x (a int)")
  H.eq(L.deploy(url2, nil, mdir).code, "P3005")
end

T["deploy: ?schema=app puts tables and the ledger in app"] = function()
  local _, url = H.fresh_db()
  local _, mdir = H.project({ { "20240101000000_init", INIT } })
  local r = L.deploy(url .. "?schema=app", nil, mdir)
  H.ok(r.ok, r.error)
  H.eq(H.psql(url, [[SELECT string_agg(table_schema || '.' || table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema IN ('public','app')]]),
    "app.User,app._prisma_migrations\n")
  H.eq(#L.rows(url .. "?schema=app"), 1)
  H.eq(#L.rows(url, "app"), 1)
  H.eq(select(2, L.rows(url)), false, "nothing in public")
end

return T
