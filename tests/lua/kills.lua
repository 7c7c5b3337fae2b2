-- kills: kill -9 a writing command at every libpq message it sends (strace
-- fault injection on sendto) and at every process it spawns (clone), then
-- run it again, and check that the rerun converged: the ledger is what one
-- uninterrupted run leaves (every migration applied exactly once, nothing
-- failed), the journal chain is intact, and (sampled) the real Prisma CLI
-- says the database is up to date.
--
--   local K = require "kills"
--   local n = K.points(cmd, "sendto")               -- how many injection points
--   local ok, why = K.at(cmd, "sendto", i)          -- one kill at point i, rerun, check
--   K.CMDS: run, deploy, resolve, undo
local h = require "helper"
local L = require "prisma_ledger"

local K = {}

K.CMDS = { "run", "deploy", "resolve", "undo" }

local M1 = { "20240101000000_init", 'CREATE TABLE "A" ("id" INTEGER PRIMARY KEY);\n' }
local M2 = { "20240102000000_b", 'CREATE TABLE "B" ("id" INTEGER PRIMARY KEY, "a" INTEGER REFERENCES "A"("id"));\nCREATE INDEX "B_a_idx" ON "B"("a");\n' }
local M3 = { "20240103000000_c", 'CREATE TABLE "C" ("id" INTEGER PRIMARY KEY);\n' }
local LOCK_LOGS = "A migration failed to apply.\n\nMigration name: 20240102000000_b\n\nDatabase error code: 55P03\n\nDatabase error:\nERROR: canceling statement due to lock timeout\n"

-- scenario per command: setup(url, mdir, dir) builds the state; args; expect(url) checks the end state
local SCEN = {}

local function rows_of(url, name)
  local out = {}
  for _, r in ipairs(L.rows(url)) do if r.migration_name == name then out[#out + 1] = r end end
  return out
end

local function applied_once(url, name)
  local n, failed = 0, 0
  for _, r in ipairs(rows_of(url, name)) do
    if r.finished_at and not r.rolled_back_at then n = n + 1 end
    if not r.finished_at and not r.rolled_back_at then failed = failed + 1 end
  end
  if n ~= 1 then return false, ("%s has %d applied rows (want exactly 1)"):format(name, n) end
  if failed > 0 then return false, ("%s has %d failed rows"):format(name, failed) end
  return true
end

local function table_exists(url, t)
  return h.psql(url, ('SELECT to_regclass(\'public."%s"\') IS NOT NULL'):format(t)):match("t") ~= nil
end

SCEN.run = {
  -- an absent failed migration (transient error): backup, redeploy, check
  setup = function(url, mdir)
    L.deploy(url, nil, mdir, M1[1])
    L.failed(url, M2[1], L.checksum(M2[2]), LOCK_LOGS)
  end,
  migrations = { M1, M2 },
  args = { "run", "--yes" },
  expect = function(url)
    local ok, why = applied_once(url, M2[1])
    if not ok then return ok, why end
    if not table_exists(url, "B") then return false, "table B is missing" end
    return true
  end,
}

SCEN.deploy = {
  setup = function(url, mdir) L.deploy(url, nil, mdir, M1[1]) end,
  migrations = { M1, M2, M3 },
  args = { "deploy" },
  -- a deploy killed mid-script leaves Prisma's failed row: migfix run resolves it, then deploy
  rerun = { { "run", "--yes" }, { "deploy" } },
  expect = function(url)
    for _, m in ipairs({ M2, M3 }) do
      local ok, why = applied_once(url, m[1])
      if not ok then return ok, why end
    end
    return true
  end,
}

SCEN.resolve = {
  -- a complete migration recorded as failed (killed after the commit)
  setup = function(url, mdir)
    L.deploy(url, nil, mdir, M1[1])
    h.psql(url, M2[2])
    L.failed(url, M2[1], L.checksum(M2[2]), nil)
  end,
  migrations = { M1, M2 },
  args = { "resolve", "--applied", M2[1] },
  expect = function(url) return applied_once(url, M2[1]) end,
  rerun_ok = function(out, rc) return rc == 0 or out:find("P3008", 1, true) ~= nil end,
}

SCEN.undo = {
  -- undo of a mark applied: the failed row is failed again
  setup = function(url, mdir, dir)
    L.deploy(url, nil, mdir, M1[1])
    h.psql(url, M2[2])
    L.failed(url, M2[1], L.checksum(M2[2]), nil)
    local out, err, rc = h.migfix({ "-C", dir, "--url", url, "resolve", "--applied", M2[1], "--no-backup" })
    assert(rc == 0, out .. err)
  end,
  migrations = { M1, M2 },
  args = { "undo", "--yes" },
  expect = function(url)
    local rows = rows_of(url, M2[1])
    if #rows ~= 1 then return false, ("%d rows of %s after undo (want the 1 failed row)"):format(#rows, M2[1]) end
    if rows[1].finished_at or rows[1].rolled_back_at then return false, "the row is not failed again after undo" end
    return true
  end,
  -- a second undo after a completed one steps back further: the rerun is not a retry
  rerun_ok = function(out, rc) return rc == 0 or out:find("nothing to undo", 1, true) ~= nil end,
}

local templates = {}

--- a fresh database in the scenario's state (cloned from a template built once)
local function state(cmd)
  local sc = SCEN[cmd]
  local dir, mdir = h.project(sc.migrations)
  local t = templates[cmd]
  if not t then
    local name, url = h.fresh_db()
    sc.setup(url, mdir, dir)
    templates[cmd] = name
    t = name
  end
  local _, url = h.fresh_db(t)
  return dir, mdir, url
end

local function argv_text(dir, url, args)
  local parts = { h.shq(h.bin), "-C", h.shq(dir), "--url", h.shq(url) }
  for _, a in ipairs(args) do parts[#parts + 1] = h.shq(a) end
  return table.concat(parts, " ")
end

--- the syscall injected for a kind of point
local SYSCALL = { sendto = "sendto", spawn = "clone,clone3,vfork" }

--- the number of injection points of a command: its sendto calls (libpq
--- messages) or its spawns, counted on an uninterrupted run
function K.points(cmd, kind)
  local dir, _, url = state(cmd)
  local log = dir .. "/count.strace"
  h.sh(("strace -qq -o %s -e trace=%s %s </dev/null >/dev/null 2>&1"):format(h.shq(log), SYSCALL[kind], argv_text(dir, url, SCEN[cmd].args)))
  local n = 0
  for line in h.read(log):gmatch("[^\n]+") do
    if not line:find("resumed>", 1, true) then n = n + 1 end
  end
  return n
end

--- kill the command at its i-th point, run it again, check the end state
function K.at(cmd, kind, i, opts)
  opts = opts or {}
  local sc = SCEN[cmd]
  local dir, mdir, url = state(cmd)
  local _, krc = h.sh(("strace -qq -o /dev/null -e trace=%s -e inject=%s:signal=SIGKILL:when=%d %s </dev/null >/dev/null 2>&1"):format(
    SYSCALL[kind], SYSCALL[kind], i, argv_text(dir, url, sc.args)))
  -- the rerun: the same command (or the scenario's recovery), uninterrupted
  local out, err, rc = "", "", 0
  for _, args in ipairs(sc.rerun or { sc.args }) do
    local o, e, r = h.migfix({ "-C", dir, "--url", url, table.unpack(args) })
    out, err, rc = out .. o, err .. e, r
  end
  local ctx = ("%s killed at %s #%d (exit %s); rerun exit %s:\n%s%s"):format(cmd, kind, i, tostring(krc), tostring(rc), out, err)
  local rerun_ok = sc.rerun_ok and sc.rerun_ok(out .. err, rc) or rc == 0
  if not rerun_ok then
    -- a kill after the work was done but before the output leaves nothing to do: fine for run
    if not (cmd == "run" and (out .. err):find("no failed migrations", 1, true)) then return false, "the rerun did not succeed\n" .. ctx end
  end
  local ok, why = sc.expect(url)
  if not ok then return false, why .. "\n" .. ctx end
  local jout, jerr, jrc = h.migfix({ "-C", dir, "--url", url, "journal", "--verify" })
  if jrc ~= 0 then return false, "journal --verify failed:\n" .. jout .. jerr .. "\n" .. ctx end
  if opts.prisma then
    local C = require "compat"
    local src, sout = C.status(url, mdir)
    local want = cmd == "undo" and 1 or 0
    if src ~= want then return false, ("prisma migrate status exit %d (want %d):\n%s\n%s"):format(src, want, sout, ctx) end
  end
  return true
end

return K
