-- Races (issue "decide under the lock"): two writers at once must not create
-- the P3009 they should fix. A few rounds of each kind here; `make stress`
-- runs >= 20 of each (tests/stress/run).
local h = require "helper"
package.path = h.root .. "/tests/compat/?.lua;" .. package.path
local races = require "races"

local T = {}

local ROUNDS = { run_run = 2, deploy_deploy = 2, run_inflight = 2, plan_inflight = 2, run_prisma = 1 }

for _, kind in ipairs(races.KINDS) do
  T["race " .. kind] = function()
    for i = 1, ROUNDS[kind] do
      local ok, why = races.run(kind, i)
      h.ok(ok, ("round %d: %s"):format(i, tostring(why)))
    end
  end
end

return T
