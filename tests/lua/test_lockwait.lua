-- Lock-aware deploy (migfix.lockwait, environment deploy = { lock_timeout,
-- retries, retry_pause }): a second session holds a lock on the table; the
-- deploy gives up each wait after lock_timeout (55P03), pauses, retries, and
-- succeeds once the holder is gone, or fails after N retries with the ledger
-- row failed as Prisma records it.
local H = require "helper"
local L = require "prisma_ledger"
local lockwait = require "migfix.lockwait"

local T = {}

local INIT = 'CREATE TABLE "T" ("id" INTEGER PRIMARY KEY);\nINSERT INTO "T" VALUES (1);\n'
local ADD = 'ALTER TABLE "T" ADD COLUMN "x" INTEGER;\nCREATE INDEX "T_x_idx" ON "T"("x");\n'
local M1, M2 = "20240101000000_init", "20240102000000_add_x"

-- a session (psql in the background, application_name holder_<tag>) that
-- holds ACCESS SHARE on "T" for `seconds`, which blocks ALTER TABLE
local function hold(url, tag, seconds)
  H.sh(("(PGAPPNAME=holder_%s psql -qAtX -d %s -c %s >/dev/null 2>&1 &)"):format(tag, H.shq(url),
    H.shq(('BEGIN; LOCK TABLE "T" IN ACCESS SHARE MODE; SELECT pg_sleep(%s); COMMIT;'):format(seconds))))
  for _ = 1, 100 do
    local n = H.psql(url, ([[SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                             WHERE a.application_name = 'holder_%s' AND l.relation = '"T"'::regclass AND l.granted]]):format(tag))
    if tonumber(n) > 0 then return end
    H.sh("sleep 0.05")
  end
  error("the holder never got its lock")
end

local function release(url, tag)
  H.psql(url, ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder_%s'"):format(tag))
end

local function project(deploy)
  local proj, mdir = H.project({ { M1, INIT }, { M2, ADD } })
  H.write(proj .. "/migfix.lua", ([[return { default_environment = "prod", environments = { prod = {
  url = env "DATABASE_URL", deploy = %s } } }
]]):format(deploy))
  return proj, mdir
end

T["atomic: what a retry may run again"] = function()
  H.eq(lockwait.atomic(ADD), true)
  -- a lock timeout in CREATE INDEX CONCURRENTLY's wait phases leaves an INVALID index behind
  H.eq(lockwait.atomic('CREATE INDEX CONCURRENTLY "i" ON "T"("id");'), false)
  H.eq(lockwait.atomic('BEGIN;\nALTER TABLE "T" ADD COLUMN "y" INTEGER;\nCOMMIT;\n'), false)
  H.eq(lockwait.atomic('ALTER TABLE "T" ADD COLUMN "y" INTEGER;\nCREATE INDEX CONCURRENTLY "i" ON "T"("id");'), false)
  H.raises(function() lockwait.runner({}) end, "lockwait.runner { lock_timeout")
  H.raises(function() lockwait.runner({ lock_timeout = "1s", retry_pause = "soon" }) end, 'unrecognized retry_pause "soon"')
end

T["deploy waits politely: 55P03, pause, retry, success when the holder releases"] = function()
  local proj = project('{ lock_timeout = "200ms", retries = 20, retry_pause = "250ms" }')
  local _, url = H.fresh_db()
  local env = { env = { DATABASE_URL = url } }
  L.deploy(url, nil, proj .. "/prisma/migrations", M1)
  hold(url, "ok", 1.5)
  local t0 = os.time()
  local out, err, rc = H.migfix({ "deploy", "-C", proj }, env)
  H.eq(rc, 0, err .. out)
  H.contains(err, "could not get a lock within lock_timeout 200ms")
  H.contains(err, "retry 1 of 20")
  H.contains(out, "All migrations have been successfully applied (1).")
  H.ok(os.time() - t0 < 15, "bounded")
  local rows = L.rows(url)
  H.eq(#rows, 2)
  H.ok(rows[2].finished_at, "applied")
  H.eq(rows[2].applied_steps_count, 1)
  -- the session setting is restored afterwards: nothing else of the
  -- deploy (ledger writes, journal) ran under the short lock_timeout
  H.eq(H.psql(url, [[SELECT count(*) FROM pg_indexes WHERE indexname = 'T_x_idx']]), "1\n")
end

T["deploy gives up after N retries: the row failed as Prisma records it"] = function()
  local proj = project('{ lock_timeout = "100ms", retries = 2, retry_pause = "100ms" }')
  local _, url = H.fresh_db()
  local env = { env = { DATABASE_URL = url } }
  L.deploy(url, nil, proj .. "/prisma/migrations", M1)
  hold(url, "busy", 30)
  local out, err, rc = H.migfix({ "deploy", "-C", proj }, env)
  release(url, "busy")
  H.eq(rc, 1, err .. out)
  H.contains(err, "retry 2 of 2")
  H.not_contains(err, "retry 3 of")
  H.contains(err, "P3018: migration " .. M2 .. " failed to apply: 55P03")
  local rows = L.rows(url)
  H.eq(#rows, 2)
  H.eq(rows[2].migration_name, M2)
  H.eq(rows[2].finished_at, nil)
  H.eq(rows[2].rolled_back_at, nil)
  H.eq(rows[2].applied_steps_count, 0)
  H.contains(rows[2].logs, "Database error code: 55P03")
  H.contains(rows[2].logs, "canceling statement due to lock timeout")
  -- nothing of the file stayed: each attempt was one implicit transaction
  H.eq(H.psql(url, [[SELECT count(*) FROM information_schema.columns WHERE table_name = 'T' AND column_name = 'x']]), "0\n")
end

T["without deploy.lock_timeout the script runs as Prisma runs it"] = function()
  local proj = project("nil")
  local _, url = H.fresh_db()
  local out, err, rc = H.migfix({ "deploy", "-C", proj }, { env = { DATABASE_URL = url } })
  H.eq(rc, 0, err .. out)
  H.not_contains(err, "lock_timeout")
end

T["run: restores the session's lock_timeout, also after a failure"] = function()
  local _, url = H.fresh_db()
  H.psql(url, INIT)
  local db = require "migfix.db"
  local conn = assert(db.connect(url, { lock_timeout = "7s" }))
  local slept = {}
  local ok = lockwait.run(conn, 'ALTER TABLE "T" ADD COLUMN "y" INTEGER;', { lock_timeout = "1s", sleep = function(ms) slept[#slept + 1] = ms end })
  H.eq(ok, true)
  H.eq(conn:query("SHOW lock_timeout")[1].lock_timeout, "7s")
  local ok2, msg, info = lockwait.run(conn, 'SELECT * FROM "nope";', { lock_timeout = "1s", retries = 3, pause_ms = 5,
                                      sleep = function(ms) slept[#slept + 1] = ms end })
  H.eq(ok2, nil)
  H.contains(msg, "nope")
  H.eq(info.sqlstate, "42P01")
  H.eq(info.attempts, 1)
  H.eq(#slept, 0, "no retry on anything but 55P03")
  H.eq(conn:query("SHOW lock_timeout")[1].lock_timeout, "7s")
  conn:close()
end

return T
