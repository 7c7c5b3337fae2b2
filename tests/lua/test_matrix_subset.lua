-- The small part of the server matrix that make test runs: tests/matrix/test_matrix.lua
-- (the demo story, backups with an older pg_dump, newer syntax) against the newest
-- PostgreSQL major of the matrix cache, in a throwaway server of its own. Without the
-- cache (tests/matrix/setup-servers, make matrix) it is a clear skip: nothing is
-- downloaded here. The whole matrix (13-18, every fixture) is `make matrix`.
local h = require "helper"

local T = {}

T["matrix subset: the demo story on the newest PostgreSQL major"] = function()
  local majors = h.sh(h.shq(h.root .. "/tests/matrix/setup-servers") .. " --majors"):gsub("%s+$", "")
  local newest = majors:match("(%d+)$")
  local _, have = h.sh(("%s --check %s 2>/dev/null"):format(h.shq(h.root .. "/tests/matrix/setup-servers"), newest))
  if have ~= 0 then
    print(("# skip: PostgreSQL %s is not in the matrix cache (tests/matrix/setup-servers %s, or make matrix)"):format(newest, newest))
    return
  end
  local tmp = h.tmpdir()
  h.sh("chmod 755 " .. h.shq(tmp))
  local out, rc = h.sh(("cd %s && MIGFIX_TEST_TMP=%s MIGFIX_TEST_FILTER= tests/matrix/with-server %s %s exec tests/lua/runner.lua tests/matrix/test_matrix.lua 2>&1")
    :format(h.shq(h.root), h.shq(tmp), newest, h.shq(h.bin)))
  local p, f = out:match("\nlua: (%d+) passed, (%d+) failed")
  h.ok(p, "the nested runner finished:\n" .. out)
  h.eq(tonumber(f), 0, "failures on PostgreSQL " .. newest .. ":\n" .. out)
  h.ok(tonumber(p) >= 4, out)
  h.eq(rc, 0, out)
  for note in ("\n" .. out):gmatch("\n(# [^\n]*)") do print(note) end
end

return T
