-- make stress (tests/stress/run): every kill point and >= 20 rounds of every race.
local here = os.getenv("MIGFIX_ROOT") .. "/tests"
package.path = here .. "/lua/?.lua;" .. here .. "/compat/?.lua;" .. package.path
local K = require "kills"
local races = require "races"

local rounds = tonumber(os.getenv("STRESS_ROUNDS") or "") or 20
local kills = os.getenv("STRESS_KILLS") or "all"
local passed, failed = 0, 0
local lines = {}

local function report(what, n, bad, first)
  lines[#lines + 1] = ("%-34s %5d  %5d  %s"):format(what, n, bad, first or "")
  passed, failed = passed + (n - bad), failed + bad
end

for _, cmd in ipairs(K.CMDS) do
  for _, kind in ipairs({ "sendto", "spawn" }) do
    local n = K.points(cmd, kind)
    local last = kills == "all" and n or math.min(n, tonumber(kills) or n)
    local bad, first = 0, nil
    for i = 1, last do
      -- the real Prisma CLI judges every 10th state (2-3 s a call)
      local ok, why = K.at(cmd, kind, i, { prisma = i % 10 == 0 or i == last })
      if not ok then
        bad = bad + 1
        first = first or why:match("^[^\n]*")
        io.stderr:write(("FAIL %s %s #%d: %s\n"):format(cmd, kind, i, why))
      end
    end
    report(("kill -9 %s at %s"):format(cmd, kind), last, bad, first)
    io.stdout:write(lines[#lines], "\n")
    io.stdout:flush()
  end
end

for _, kind in ipairs(races.KINDS) do
  local bad, first = 0, nil
  local n = kind == "run_prisma" and math.max(1, rounds) or rounds
  for i = 1, n do
    local ok, why = races.run(kind, i)
    if not ok then
      bad = bad + 1
      first = first or tostring(why):match("^[^\n]*")
      io.stderr:write(("FAIL race %s #%d: %s\n"):format(kind, i, tostring(why)))
    end
  end
  report("race " .. kind, n, bad, first)
  io.stdout:write(lines[#lines], "\n")
  io.stdout:flush()
end

print("")
print(("%-34s %5s  %5s  %s"):format("", "runs", "bad", "first failure"))
for _, l in ipairs(lines) do print(l) end
print("")
print(("%d passed, %d failed"):format(passed, failed))
return failed == 0 and 0 or 1
