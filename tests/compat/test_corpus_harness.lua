-- The differential state harness (tests/corpus/, `make corpus`) over the tiny
-- history tests/fixtures/corpus_mini (8 migrations, shapes migfix handles):
-- every state built, none wrong, no crash, the sampled round trips judged
-- clean by the real Prisma CLI and pg_dump; and two fake binaries prove the
-- harness does fail a migfix that always says "complete" or that crashes.
-- About 5 Prisma calls (~3 s each); here, not in tests/lua, because the round
-- trip needs the real CLI.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local H = require "helper"
local json = require "migfix.json"

local T = {}

local MINI = H.root .. "/tests/fixtures/corpus_mini/migrations"
local seq = 0

--- run tests/corpus/run over dirs; returns output, exit code, result table
local function harness(dirs, env)
  seq = seq + 1
  local out_dir = H.tmpdir()
  local vars = {
    CORPUS_ADMIN_URL = H.admin_url, CORPUS_OUT = out_dir,
    CORPUS_DB_PREFIX = ("ch%d_%d"):format(require("posix.unistd").getpid(), seq),
    CORPUS_REFCHECK = "none", CORPUS_QUIET = "1", MIGFIX_BIN = H.bin,
  }
  for k, v in pairs(env or {}) do vars[k] = v end
  local parts = {}
  for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. H.shq(v) end
  local args = {}
  for _, d in ipairs(dirs) do args[#args + 1] = H.shq(d) end
  local out, rc = H.sh(("env %s %s %s </dev/null 2>&1"):format(table.concat(parts, " "),
    H.shq(H.root .. "/tests/corpus/run"), table.concat(args, " ")))
  local text = io.open(out_dir .. "/result.json", "rb")
  local result
  if text then result = json.decode(text:read("a")); text:close() end
  return out, rc, result
end

local function row(out, label)
  return out:match("\n" .. label .. "%s+([^\n]*)")
end

T["corpus harness: corpus_mini has every state right, no crash, clean round trips"] = function()
  local out, rc, r = harness({ MINI }, { CORPUS_ROUNDTRIP = "every:8" })
  H.eq(rc, 0, "harness exit\n" .. out)
  H.ok(r, "result.json written\n" .. out)
  local t = r.total
  -- 8 complete + 8 absent + 5 partial (files with >= 2 statements) + 1 interrupted (the CIC)
  H.eq(t.states, 22, "states")
  H.eq(t.skipped, 0, "skipped")
  H.eq(t.wrong, 0, "wrong\n" .. out)
  H.eq(t.crash, 0, "crashes\n" .. out)
  H.eq(t.right + t.unverifiable, 22, "right + unverifiable")
  H.eq(r.per_state.complete.right, 8, "complete states read complete\n" .. out)
  H.eq(r.per_state.absent.right, 8, "absent states read absent\n" .. out)
  -- the table: one column per state kind and a total
  H.contains(out, "corpus_mini: 8 migrations, replayed 8")
  H.contains(row(out, "wrong") or "", "0           0           0           0         0")
  H.contains(row(out, "crashes") or "", "0           0           0           0         0")
  -- round trips at K = 8 (complete and absent), plus the interrupted CIC (always)
  local h = r.histories[1]
  local sampled = 0
  for _, s in ipairs(h.states) do
    if s.roundtrip then
      if s.state == "complete" or s.state == "absent" then
        sampled = sampled + 1
        H.ok(s.roundtrip.clean, ("round trip of %s %s: %s"):format(s.state, s.migration, table.concat(s.roundtrip.problems, "; ")))
        H.eq(s.roundtrip.prisma_status_exit, 0, "prisma migrate status after the run")
      end
      H.eq(s.roundtrip.invalid_after_resolved, nil, "no INVALID index after a resolved run")
    end
  end
  H.eq(sampled, 2, "sampled round trips")
  H.eq(t.rt_done, 2 + (r.per_state.interrupted.rt_done), "round trips counted")
end

-- a migfix that always diagnoses "complete" and plans nothing
local FAKE_COMPLETE = [[#!/bin/sh
name=
prev=
for a in "$@"; do [ "$prev" = diagnose ] && name=$a; prev=$a; done
case " $* " in
  *" diagnose "*) printf '{"failed":1,"migrations":[{"name":"%s","verdict":"complete","summary":"fake","objects":[]}]}\n' "$name"; exit 1 ;;
  *) echo '{"migrations":[]}'; exit 1 ;;
esac
]]

local FAKE_CRASH = [[#!/bin/sh
echo "migfix: error: internal error: fake.lua:1: attempt to index a nil value" >&2
exit 4
]]

local function fake(text)
  local path = H.tmpdir() .. "/migfix"
  H.write(path, text)
  H.sh("chmod +x " .. H.shq(path))
  return path
end

T["corpus harness: counts a wrong complete and exits 1"] = function()
  local out, rc, r = harness({ MINI }, { MIGFIX_BIN = fake(FAKE_COMPLETE), CORPUS_ROUNDTRIP = "none",
    CORPUS_STATES = "absent,partial", CORPUS_LIMIT = "2" })
  H.eq(rc, 1, "harness exit\n" .. out)
  H.eq(r.total.states, 4, "2 absent + 2 partial")
  H.eq(r.total.wrong, 4, "every state wrong")
  H.contains(out, "absent      20250101090000_init: got complete, expected absent")
  H.contains(out, "partial     20250102090000_posts: got complete, expected partial|unverifiable")
end

T["corpus harness: counts exit 4 as a crash"] = function()
  local out, rc, r = harness({ MINI }, { MIGFIX_BIN = fake(FAKE_CRASH), CORPUS_ROUNDTRIP = "none",
    CORPUS_STATES = "complete", CORPUS_LIMIT = "1" })
  H.eq(rc, 1, "harness exit\n" .. out)
  H.eq(r.total.crash, 1, "crashes")
  H.contains(out, "exit 4: migfix: error: internal error: fake.lua:1")
end

return T
