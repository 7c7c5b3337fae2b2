-- compat: helpers for the Prisma compatibility tests (tests/compat/test_*.lua),
-- which run the real Prisma CLI 6.19.3 (tests/compat/prisma, installed by
-- tests/compat/setup-prisma) against the test PostgreSQL.
--
--   local C = require "compat"
--   local out, rc = C.prisma(url, migrations_dir, { "migrate", "deploy" } [, opts])
--   local rows, exists = C.rows(url [, schema])
--   C.same_ledger(fixture_rows, prisma_rows [, what])
--   C.status(url, migrations_dir) -> exit code of `migrate status`
--
-- Test files: put this folder on package.path first, e.g.
--   local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
--   package.path = here .. "/?.lua;" .. package.path
local H = require "helper"
local L = require "prisma_ledger"

local C = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
  or ((os.getenv("MIGFIX_ROOT") or ".") .. "/tests/compat")
C.dir = here
C.wrapper = here .. "/prisma"
C.setup_script = here .. "/setup-prisma"

local setup_done = false
--- install the CLI into the cache if needed (fast when already there);
--- raises with setup-prisma's output on failure
function C.setup()
  if setup_done then return end
  local out, rc = H.sh(H.shq(C.setup_script) .. " 2>&1")
  if rc ~= 0 then error("compat: tests/compat/setup-prisma failed:\n" .. out, 2) end
  setup_done = true
end

--- run the real Prisma CLI: tests/compat/prisma URL MIGRATIONS_DIR ARGS...
--- args: list of strings, e.g. { "migrate", "resolve", "--applied", name }.
--- opts.mode: "whole" (default, native behaviour) or "split";
--- opts.env: extra environment { NAME = value }.
--- Returns stdout and stderr interleaved as one text, and Prisma's exit code.
function C.prisma(url, migrations_dir, args, opts)
  opts = opts or {}
  C.setup()
  local parts = { H.shq(C.wrapper), H.shq(url), H.shq(migrations_dir) }
  for _, a in ipairs(args) do parts[#parts + 1] = H.shq(a) end
  local env = { "MIGFIX_PRISMA_SCRIPT_MODE=" .. H.shq(opts.mode or "whole") }
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. H.shq(v) end
  return H.sh(("env %s %s </dev/null 2>&1"):format(table.concat(env, " "), table.concat(parts, " ")))
end

--- exit code of `migrate status` (and its output as second value)
function C.status(url, migrations_dir, opts)
  local out, rc = C.prisma(url, migrations_dir, { "migrate", "status" }, opts)
  return rc, out
end

--- `_prisma_migrations` rows of the URL schema (or `schema`; default
--- public) via psql, ordered by started_at: tables with the 8 columns id,
--- checksum, finished_at, migration_name, logs, rolled_back_at, started_at,
--- applied_steps_count. NULL = nil (absent key). Timestamps are UTC text
--- 'YYYY-MM-DD HH:MM:SS.ffffff+00' (string order = time order);
--- applied_steps_count is an integer. Second result: the table exists.
C.rows = L.rows

local function logs_class(v)
  if v == nil then return "NULL" end
  if v == "" then return "''" end
  return "text"
end
C.logs_class = logs_class

local TS = { "started_at", "finished_at", "rolled_back_at" }

--- compare a fixture-built ledger with a Prisma-built one, column by column:
--- same row count and order (by started_at); migration_name, checksum,
--- applied_steps_count equal; ids valid v4 (and distinct); logs both NULL /
--- both '' / both non-empty; each timestamp both set or both NULL; and the
--- timestamps ordered the same: within a row, every pair compares the same
--- (<, =, >); across rows, every pair that is strictly ordered in the
--- Prisma ledger is ordered the same way in the fixture (Prisma's wasm engine
--- writes milliseconds, so cross-row ties there can be coincidences).
--- Raises with a description of the first difference.
function C.same_ledger(fx, pr, what)
  local w = type(what) == "string" and (what .. ": ") or ""
  local function fail(msg) error(w .. msg .. "\nfixture: " .. C.dump(fx) .. "\nprisma:  " .. C.dump(pr), 3) end
  if #fx ~= #pr then fail(("%d rows in the fixture, %d from Prisma"):format(#fx, #pr)) end
  local ids = {}
  for i = 1, #pr do
    local f, p = fx[i], pr[i]
    for _, c in ipairs({ "migration_name", "checksum", "applied_steps_count" }) do
      if f[c] ~= p[c] then fail(("row %d: %s %s vs %s"):format(i, c, tostring(f[c]), tostring(p[c]))) end
    end
    for _, r in ipairs({ f, p }) do
      if not L.is_uuid4(r.id) then fail(("row %d: id %s is not a v4 uuid"):format(i, tostring(r.id))) end
      if ids[r.id] then fail(("row %d: duplicate id %s"):format(i, r.id)) end
      ids[r.id] = true
    end
    if logs_class(f.logs) ~= logs_class(p.logs) then
      fail(("row %d: logs %s vs %s"):format(i, logs_class(f.logs), logs_class(p.logs)))
    end
    for _, c in ipairs(TS) do
      if (f[c] == nil) ~= (p[c] == nil) then
        fail(("row %d: %s %s vs %s"):format(i, c, tostring(f[c]), tostring(p[c])))
      end
    end
  end
  local function cmp(a, b) return a < b and -1 or (a > b and 1 or 0) end
  for i = 1, #pr do
    for j = i, #pr do
      for _, a in ipairs(TS) do
        for _, b in ipairs(TS) do
          local pa, pb = pr[i][a], pr[j][b]
          if pa and pb and not (i == j and a >= b) then
            local cp, cf = cmp(pa, pb), cmp(fx[i][a], fx[j][b])
            if (i == j or cp ~= 0) and cp ~= cf then
              fail(("order: row %d %s vs row %d %s: %d in the fixture, %d from Prisma"):format(i, a, j, b, cf, cp))
            end
          end
        end
      end
    end
  end
end

--- one-line-per-row text of a ledger (for messages)
function C.dump(rows)
  local t = {}
  for i, r in ipairs(rows) do
    t[#t + 1] = ("\n  %d %s id=%s sum=%s steps=%s start=%s fin=%s rb=%s logs=%s"):format(i,
      tostring(r.migration_name), tostring(r.id), tostring(r.checksum and r.checksum:sub(1, 8)),
      tostring(r.applied_steps_count), tostring(r.started_at), tostring(r.finished_at),
      tostring(r.rolled_back_at), logs_class(r.logs))
  end
  return #t == 0 and "(no rows)" or table.concat(t)
end

return C
