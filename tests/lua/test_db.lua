-- migfix.db against the real test server (MIGFIX_TEST_URL).
local H = require "helper"
local db = require "migfix.db"

local T = {}

local function with_user(url, userinfo)
  return (url:gsub("://[^@/]*@", "://" .. userinfo .. "@", 1))
end

local function connect(url, opts)
  local c, msg = db.connect(url, opts)
  return H.ok(c, "connect: " .. tostring(msg))
end

local function epoch(c)
  local rows = assert(c:query("SELECT extract(epoch FROM clock_timestamp())::float8 AS t"))
  return rows[1].t
end

T["module leaves globals alone and exposes NULL"] = function()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  package.loaded["migfix.db"] = nil
  local d = require "migfix.db"
  for k in pairs(_G) do H.ok(before[k], "leaked global " .. tostring(k)) end
  H.eq(type(d.NULL), "userdata")
  H.eq(d.NULL, db.NULL)
  H.eq(db.isnull(db.NULL), true)
  H.eq(db.isnull(nil), false)
  H.eq(db.isnull(false), false)
end

T["query returns typed values and NULL"] = function()
  local c <close> = connect(H.admin_url)
  local rows, cols, affected = c:query([[
    SELECT 1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8, 26::oid AS o,
           1.5::float4 AS f4, 0.1::float8 AS f8, 12.30::numeric AS num, true AS b, false AS bf,
           '2026-11-24 22:12:09.052+00'::timestamptz AS tz, '2026-11-24 22:12:09'::timestamptz AS tz0,
           '2026-11-24 22:12:09.052'::timestamp AS ts, 'infinity'::timestamptz AS inf,
           NULL::text AS n, 'héllo'::text AS t, '{"a":1}'::jsonb AS j, '2026-01-02'::date AS d]])
  H.ok(rows, cols)
  H.eq(#rows, 1)
  H.eq(affected, 1)
  H.same(cols, { "i2", "i4", "i8", "o", "f4", "f8", "num", "b", "bf", "tz", "tz0", "ts", "inf", "n", "t", "j", "d" })
  local r = rows[1]
  H.eq(math.type(r.i2), "integer"); H.eq(r.i2, 1)
  H.eq(r.i4, 2)
  H.eq(r.i8, 9007199254740993)
  H.eq(r.o, 26)
  H.eq(math.type(r.f4), "float"); H.eq(r.f4, 1.5)
  H.eq(r.f8, 0.1)
  H.eq(r.num, "12.30")
  H.eq(r.b, true); H.eq(r.bf, false)
  H.eq(r.tz, "2026-11-24T22:12:09.052Z")
  H.eq(r.tz0, "2026-11-24T22:12:09Z")
  H.eq(r.ts, "2026-11-24T22:12:09.052")
  H.eq(r.inf, "infinity")
  H.eq(r.n, db.NULL)
  H.eq(r.t, "héllo")
  H.eq(r.j, '{"a": 1}')
  H.eq(r.d, "2026-01-02")
  -- another session time zone gives an offset instead of Z
  assert(c:exec("SET timezone = 'Asia/Kolkata'"))
  H.eq(c:query("SELECT '2026-11-24 22:12:09.052+00'::timestamptz AS t")[1].t, "2026-11-25T03:42:09.052+05:30")
end

T["connect through a Unix socket directory given as ?host="] = function()
  local dir = os.getenv("PG_DIR")
  if not dir then return end -- only under tests/lib/pg.sh
  local port = H.admin_url:match(":(%d+)/")
  local c <close> = connect(("postgresql://postgres@localhost:%s/postgres?host=%s"):format(port, dir))
  H.eq(c:info().host, dir)
  H.eq(c:query("SELECT inet_client_addr() IS NULL AS local")[1]["local"], true)
end

T["query passes parameters, nil and db.NULL as SQL NULL"] = function()
  local c <close> = connect(H.admin_url)
  local rows = assert(c:query(
    "SELECT $1::text AS s, $2::int8 AS i, $3::float8 AS f, $4::bool AS b, $5::text IS NULL AS n1, $6::int IS NULL AS n2, $7::text AS q",
    "it's \"quoted\"", -42, 0.1, true, nil, db.NULL, "x"))
  local r = rows[1]
  H.eq(r.s, "it's \"quoted\"")
  H.eq(r.i, -42)
  H.eq(r.f, 0.1)
  H.eq(r.b, true)
  H.eq(r.n1, true)
  H.eq(r.n2, true)
  H.eq(r.q, "x")
  -- trailing nils count as parameters (select('#'))
  rows = assert(c:query("SELECT $1::text IS NULL AS a, $2::text IS NULL AS b", "v", nil))
  H.eq(rows[1].a, false)
  H.eq(rows[1].b, true)
  local ok, msg, info = c:query("SELECT $1::int", "not a number")
  H.eq(ok, nil)
  H.contains(msg, "invalid input syntax for type integer")
  H.eq(info.sqlstate, "22P02")
  H.raises(function() c:query("SELECT $1", {}) end, "bad argument #2 to 'query'")
  H.raises(function() c:query("SELECT $1", "a\0b") end, "NUL")
end

T["query reports affected rows and SQL errors with info"] = function()
  local _, url = H.fresh_db()
  local c <close> = connect(url)
  assert(c:exec("CREATE TABLE t (id int PRIMARY KEY, v text)"))
  local rows, cols, n = c:query("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g")
  H.same(rows, {}); H.same(cols, {})
  H.eq(n, 5)
  _, _, n = c:query("UPDATE t SET v = 'x' WHERE id > $1", 3)
  H.eq(n, 2)
  _, _, n = c:query("CREATE INDEX ON t (v)")
  H.eq(n, nil)
  local ok, msg, info = c:query("INSERT INTO t VALUES (1, 'dup')")
  H.eq(ok, nil)
  H.contains(msg, "duplicate key value violates unique constraint")
  H.eq(info.sqlstate, "23505")
  H.eq(info.severity, "ERROR")
  H.contains(info.detail, "Key (id)=(1) already exists")
  H.eq(info.message, msg)
  ok, msg, info = c:query("SELECT nosuchcol FROM t")
  H.eq(info.sqlstate, "42703")
  H.eq(info.position, 8)
  -- several statements are not allowed in the extended protocol
  ok, msg = c:query("SELECT 1; SELECT 2")
  H.eq(ok, nil)
  H.contains(msg, "multiple commands")
end

T["exec runs several statements as one implicit transaction"] = function()
  local _, url = H.fresh_db()
  local c <close> = connect(url)
  local ok, res = c:exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
  H.eq(ok, true)
  H.eq(res.tag, "INSERT 0 2")
  H.eq(res.affected, 2)
  local ok2, msg, info = c:exec("INSERT INTO t VALUES (3); INSERT INTO t VALUES (1)")
  H.eq(ok2, nil)
  H.eq(info.sqlstate, "23505")
  H.contains(msg, "duplicate key")
  local rows = assert(c:query("SELECT count(*)::int AS n FROM t"))
  H.eq(rows[1].n, 2, "the first INSERT was rolled back with the second")
  H.raises(function() c:exec("SELECT 1", 2) end, "conn:exec(sql)")
end

T["tx: __close rolls back unless committed"] = function()
  local _, url = H.fresh_db()
  local c <close> = connect(url)
  assert(c:exec("CREATE TABLE t (id int)"))
  do
    local tx <close> = assert(c:begin())
    H.eq(tx:active(), true)
    assert(c:query("INSERT INTO t VALUES (1)"))
  end
  H.eq(c:query("SELECT count(*)::int AS n FROM t")[1].n, 0, "not committed: rolled back")
  do
    local tx <close> = assert(c:begin())
    assert(c:query("INSERT INTO t VALUES (2)"))
    H.eq(tx:commit(), true)
    H.eq(tx:active(), false)
    H.raises(function() tx:commit() end, "finished transaction")
    H.eq(tx:rollback(), true) -- harmless once finished
  end
  H.eq(c:query("SELECT count(*)::int AS n FROM t")[1].n, 1)
  -- an error inside the block: __close rolls back, the error goes on
  local ok, err = pcall(function()
    local tx <close> = assert(c:begin())
    assert(c:query("INSERT INTO t VALUES (3)"))
    error("boom")
  end)
  H.eq(ok, false)
  H.contains(err, "boom")
  H.eq(c:query("SELECT count(*)::int AS n FROM t")[1].n, 1)
  H.eq(c:query("SELECT 1 AS x")[1].x, 1, "connection usable after the rollback")
  -- explicit rollback
  local tx = assert(c:begin())
  assert(c:query("INSERT INTO t VALUES (4)"))
  H.eq(tx:rollback(), true)
  H.eq(c:query("SELECT count(*)::int AS n FROM t")[1].n, 1)
end

T["tx: commit after a failed statement reports the rollback"] = function()
  local c <close> = connect(H.admin_url)
  local tx <close> = assert(c:begin())
  H.eq(c:query("SELECT 1/0"), nil)
  local ok, msg, info = c:query("SELECT 1")
  H.eq(ok, nil)
  H.eq(info.sqlstate, "25P02")
  ok, msg, info = tx:commit()
  H.eq(ok, nil)
  H.contains(msg, "rolled back")
  H.eq(info.sqlstate, "25P02")
  H.eq(tx:active(), false)
  H.raises(function() c:begin({ isolation = "serializable" }) end, 'unrecognized option "isolation"')
  local t2 <close> = assert(c:begin())
  H.raises(function() c:begin() end, "already in progress")
end

T["readonly connection refuses writes (server-enforced), also in begin()"] = function()
  local _, url = H.fresh_db()
  H.psql(url, "CREATE TABLE t (id int)")
  local c <close> = connect(url, { readonly = true })
  H.eq(c:info().readonly, true)
  H.eq(c:query("SHOW default_transaction_read_only")[1].default_transaction_read_only, "on")
  local ok, msg, info = c:query("INSERT INTO t VALUES (1)")
  H.eq(ok, nil)
  H.eq(info.sqlstate, "25006")
  H.contains(msg, "read-only transaction")
  ok, msg, info = c:exec("CREATE TABLE u (id int)")
  H.eq(info.sqlstate, "25006")
  do
    local tx <close> = assert(c:begin())
    ok, msg, info = c:query("INSERT INTO t VALUES (1)")
    H.eq(info.sqlstate, "25006")
  end
  H.raises(function() c:begin({ readonly = false }) end, "read-only connection")
  H.eq(c:query("SELECT count(*)::int AS n FROM t")[1].n, 0)
  -- a read-only transaction on a read-write connection
  local w <close> = connect(url)
  local tx <close> = assert(w:begin({ readonly = true }))
  ok, msg, info = w:query("INSERT INTO t VALUES (1)")
  H.eq(info.sqlstate, "25006")
end

T["advisory lock: one try in C, the bounded wait in migfix.ledger names the holder"] = function()
  local ledger = require "migfix.ledger"
  local key = 72707369
  local holder <close> = connect(H.admin_url, { application_name = "prisma-migrate" })
  local waiter <close> = connect(H.admin_url)
  H.eq(holder:try_advisory_lock(key), true)
  H.eq(waiter:try_advisory_lock(key), false)
  local hpid = holder:info().backend_pid
  local t0 = epoch(waiter)
  local ok, msg, info = ledger.acquire_lock(waiter, key, 400)
  local elapsed = epoch(waiter) - t0
  H.eq(ok, nil)
  H.ok(elapsed >= 0.39 and elapsed < 3, "waited about the bound, not " .. elapsed)
  H.eq(info.sqlstate, "55P03")
  H.contains(msg, "could not acquire the migration lock pg_advisory_lock(72707369) within 400 ms: held by pid " .. hpid)
  H.contains(msg, 'application "prisma-migrate"')
  H.contains(msg, 'user "postgres"')
  H.eq(#info.holders, 1)
  H.eq(info.holders[1].pid, hpid)
  H.eq(info.holders[1].application_name, "prisma-migrate")
  H.eq(info.holders[1].usename, "postgres")
  H.ok(info.holders[1].backend_start:match("^%d%d%d%d%-%d%d%-%d%dT.*Z$"), info.holders[1].backend_start)
  H.contains(msg, "since " .. info.holders[1].backend_start)
  -- released: the waiter gets it
  H.eq(holder:advisory_unlock(key), true)
  H.eq(holder:advisory_unlock(key), false)
  holder:notices() -- "you don't own a lock" warning
  H.eq(ledger.acquire_lock(waiter, key, 1000), true)
  -- a zero timeout tries once
  ok, msg, info = ledger.acquire_lock(holder, key, 0)
  H.eq(ok, nil)
  H.eq(info.holders[1].pid, waiter:info().backend_pid)
  -- closing the session releases it
  waiter:close()
  H.eq(ledger.acquire_lock(holder, key, 2000), true)
  -- big and negative keys
  H.eq(ledger.acquire_lock(holder, -1, 100), true)
  H.eq(ledger.acquire_lock(holder, 1 << 40, 100), true)
  local other <close> = connect(H.admin_url)
  ok, msg, info = ledger.acquire_lock(other, 1 << 40, 0)
  H.eq(ok, nil)
  H.contains(msg, "could not acquire the advisory lock pg_advisory_lock(1099511627776)")
  H.eq(info.holders[1].pid, hpid)
  ok, msg, info = ledger.acquire_lock(other, -1, 0)
  H.eq(info.holders[1].pid, hpid, "a negative key is found by its two halves")
  H.raises(function() ledger.acquire_lock(other, key, -1) end, "timeout must be >= 0")
  H.raises(function() ledger.acquire_lock(other, "k") end, "bad argument #2 to 'acquire_lock'")
  H.raises(function() other:try_advisory_lock("k") end, "bad argument #1 to 'try_advisory_lock'")
  H.eq(other.advisory_lock, nil, "the wait is not in C")
end

T["parse_url strips Prisma parameters and decodes the schema"] = function()
  local u = assert(db.parse_url("postgresql://app:p%40ss@db.local:6543/my%20db?schema=my+app%2Fv1&connection_limit=5&pgbouncer=true&sslmode=require&application_name=x&bogus=1"))
  H.eq(u.host, "db.local")
  H.eq(u.port, 6543)
  H.eq(u.user, "app")
  H.eq(u.dbname, "my db")
  H.eq(u.schema, "my app/v1")
  H.eq(u.has_password, true)
  H.same(u.params, { sslmode = "require", application_name = "x" })
  H.same(u.stripped, { "schema", "connection_limit", "pgbouncer" })
  H.same(u.ignored, { "bogus" })
  H.eq(u.redacted, "postgresql://app:****@db.local:6543/my%20db?schema=my+app%2Fv1&connection_limit=5&pgbouncer=true&sslmode=require&application_name=x&bogus=1")
  local d = assert(db.parse_url("postgres://u@[::1]/db"))
  H.eq(d.host, "::1")
  H.eq(d.port, 5432)
  H.eq(d.schema, "public")
  H.eq(d.has_password, false)
  H.eq(d.redacted, "postgresql://u@[::1]:5432/db")
  local ok, msg = db.parse_url("postgresql://u:S3cret#x@h/db")
  H.eq(ok, nil)
  H.contains(msg, "invalid database URL: ")
  H.not_contains(msg, "S3cret")
  H.raises(function() db.parse_url() end, "bad argument #1 to 'parse_url'")
  H.raises(function() db.parse_url("a", "b") end, "too many arguments")
end

T["redact masks passwords of every URL in a text"] = function()
  H.eq(db.redact("see postgresql://u:pw@h/db and postgres://v:x%40y@h2:5/d2?sslpassword=k"),
    "see postgresql://u:****@h/db and postgres://v:****@h2:5/d2?sslpassword=****")
  H.eq(db.redact("nothing here"), "nothing here")
end

T["connect sets search_path from ?schema=, session settings and application_name"] = function()
  local _, url = H.fresh_db()
  H.psql(url, 'CREATE SCHEMA app; CREATE TABLE app.t (id int)')
  local c <close> = connect(url .. "?schema=app&connection_limit=3&options=-c%20work_mem%3D5MB")
  H.eq(c:query("SHOW search_path")[1].search_path, '"app"')
  H.eq(c:query("SELECT current_schema() AS s")[1].s, "app")
  assert(c:query("SELECT * FROM t"))
  H.eq(c:query("SHOW work_mem")[1].work_mem, "5MB")
  H.eq(c:query("SHOW timezone")[1].TimeZone, "UTC")
  H.eq(c:query("SHOW datestyle")[1].DateStyle:sub(1, 3), "ISO")
  H.eq(c:query("SHOW client_encoding")[1].client_encoding, "UTF8")
  H.eq(c:query("SHOW application_name")[1].application_name, "migfix")
  local info = c:info()
  H.eq(info.schema, "app")
  H.eq(info.dbname, url:match("/([^/?]+)$"))
  H.eq(info.user, "postgres")
  H.eq(info.readonly, false)
  H.eq(math.type(info.backend_pid), "integer")
  H.ok(c:server_version() >= 100000)
  local d <close> = connect(url, { application_name = "mine", lock_timeout = "2s", statement_timeout = "1min" })
  H.eq(d:query("SHOW application_name")[1].application_name, "mine")
  H.eq(d:query("SHOW lock_timeout")[1].lock_timeout, "2s")
  H.eq(d:query("SHOW statement_timeout")[1].statement_timeout, "1min")
  H.eq(d:query("SHOW search_path")[1].search_path, '"$user", public')
  H.eq(d:info().schema, "public")
end

T["connect failures: url, connect, auth; never the password"] = function()
  local c, msg, info = db.connect("mysql://u:Secr3t@h/db")
  H.eq(c, nil)
  H.eq(info.kind, "url")
  H.contains(msg, "invalid database URL")
  H.not_contains(msg, "Secr3t")

  local port = H.admin_url:match(":(%d+)/")
  c, msg, info = db.connect((H.admin_url:gsub(":" .. port .. "/", ":1/")), { connect_timeout = 5 })
  H.eq(c, nil)
  H.eq(info.kind, "connect")
  H.contains(msg, 'could not connect to database "postgres" on 127.0.0.1:1 as user "postgres": ')
  H.contains(msg, "refused")

  local pw = assert(os.getenv("MIGFIX_TEST_PW"), "MIGFIX_TEST_PW")
  local bad = with_user(H.admin_url, "migfix_pw:Wr0ngPass")
  c, msg, info = db.connect(bad)
  H.eq(c, nil)
  H.eq(info.kind, "auth")
  H.eq(info.sqlstate, "28P01")
  H.contains(msg, 'could not connect to database "postgres" on 127.0.0.1:' .. port .. ' as user "migfix_pw": ')
  H.contains(msg, "password authentication failed")
  H.not_contains(msg, "Wr0ngPass")
  H.not_contains(msg, pw)
  -- no password at all: the client gives up before the server answers
  c, msg, info = db.connect(with_user(H.admin_url, "migfix_pw"))
  H.eq(info.kind, "auth")
  -- the right one works, and the handle never shows it
  local ok <close> = connect(with_user(H.admin_url, "migfix_pw:" .. pw))
  H.eq(ok:info().user, "migfix_pw")
  H.not_contains(tostring(ok), pw)
  H.contains(tostring(ok), "migfix_pw:****@")
end

T["closed handles raise; close is idempotent"] = function()
  local c = connect(H.admin_url)
  H.eq(c:close(), true)
  H.eq(c:close(), true)
  for _, m in ipairs({ "query", "exec", "begin", "info", "server_version", "notices", "quote_ident", "try_advisory_lock" }) do
    H.raises(function() c[m](c, "x") end, "attempt to use a closed connection")
  end
  -- a transaction outliving its connection
  local d = connect(H.admin_url)
  local tx = assert(d:begin())
  d:close()
  H.eq(tx:active(), false)
  H.raises(function() tx:commit() end, "attempt to use a closed connection")
  tx = nil
  collectgarbage()
end

T["bad arguments and unknown option keys raise"] = function()
  H.raises(function() db.connect(H.admin_url, { readonly = true, read_only = true }) end,
    'unrecognized option "read_only" (expected db.connect(url, {')
  H.raises(function() db.connect(H.admin_url, { readonly = "yes" }) end, 'option "readonly" must be a boolean')
  H.raises(function() db.connect(H.admin_url, { connect_timeout = 0 }) end, "connect_timeout")
  H.raises(function() db.connect(H.admin_url, {}, 3) end, "too many arguments")
  H.raises(function() db.connect() end, "bad argument #1 to 'connect'")
  local c <close> = connect(H.admin_url)
  H.raises(function() c:query() end, "bad argument #1 to 'query'")
  H.raises(function() c:info(1) end, "too many arguments (expected conn:info())")
  H.raises(function() c.query({}, "SELECT 1") end, "migfix.db.conn expected")
end

T["notices are collected, not printed"] = function()
  local c <close> = connect(H.admin_url)
  assert(c:exec("DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE WARNING 'careful' USING HINT = 'h'; END $$"))
  local n = c:notices()
  H.eq(#n, 2)
  H.eq(n[1].message, "hello 1")
  H.eq(n[1].severity, "NOTICE")
  H.eq(n[2].severity, "WARNING")
  H.eq(n[2].hint, "h")
  H.same(c:notices(), {})
end

T["quote_ident and quote_literal"] = function()
  local c <close> = connect(H.admin_url)
  H.eq(c:quote_ident('we"ird'), '"we""ird"')
  H.eq(c:quote_ident("plain"), '"plain"')
  H.eq(c:quote_literal("it's"), "'it''s'")
  H.eq(c:quote_literal("back\\slash"), " E'back\\\\slash'")
end

return T
