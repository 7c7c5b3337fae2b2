-- kill -9 at a few libpq message boundaries and spawns of run, deploy,
-- resolve and undo; the rerun converges (make stress kills at every one).
local h = require "helper"
package.path = h.root .. "/tests/compat/?.lua;" .. package.path
local K = require "kills"

local T = {}

for _, cmd in ipairs(K.CMDS) do
  T["kill -9 " .. cmd .. " at its first, middle and last libpq message, then rerun"] = function()
    local n = K.points(cmd, "sendto")
    h.ok(n > 3, ("%s sends %d messages"):format(cmd, n))
    for _, i in ipairs({ 1, n // 2, n }) do
      local ok, why = K.at(cmd, "sendto", i)
      h.ok(ok, why)
    end
  end
end

T["kill -9 run at its spawn of pg_dump, then rerun; Prisma agrees"] = function()
  local n = K.points("run", "spawn")
  h.ok(n >= 1, "run spawns pg_dump")
  local ok, why = K.at("run", "spawn", 1, { prisma = true })
  h.ok(ok, why)
end

return T
