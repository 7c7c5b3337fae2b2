-- The fixed subset of `make fuzz` in make test: the Lua mutation fuzzer
-- (tests/fuzz/lua_fuzz.lua) over its seeds and a few hundred mutations with
-- a fixed seed, and one test per crash make fuzz found (fixed since). The C
-- targets' seed and regression corpora are replayed by
-- tests/c/test_fuzz_corpus.c.
local h = require "helper"
local json = require "migfix.json"
local ui = require "migfix.ui"

local F = dofile(h.root .. "/tests/fuzz/lua_fuzz.lua")

local T = {}

T["lua fuzzer: seeds, regressions and 150 mutations per target (fixed seed) raise nothing but migfix errors"] = function()
  local r = F.run { iterations = 150, seed = 20261201 }
  local lines = {}
  for _, c in ipairs(r.found) do lines[#lines + 1] = ("lua-%s: %s"):format(c.target, c.error) end
  h.eq(r.crashes, 0, table.concat(lines, "\n"))
  for _, name in ipairs({ "sql", "config", "dotenv", "url" }) do
    h.ok(r.targets[name].execs >= 150, name .. " ran")
  end
end

T["lua fuzzer: a target that raises a plain Lua error is reported as a crash"] = function()
  F.TARGETS.broken = { tokens = { "x" }, run = function(s) if #s > 0 then error("boom") end end }
  local r = F.run { iterations = 5, seed = 1, targets = { "broken" } }
  F.TARGETS.broken = nil
  h.ok(r.crashes >= 1, "found")
  h.contains(r.found[1].error, "boom")
  h.eq(F.one("url", "postgresql://u@h/db"), nil)
end

-- make fuzz, lua-url: ui.redact (every line migfix prints) raised on a NUL byte
T["fuzz regression: ui.redact of text with a NUL byte redacts each piece"] = function()
  h.eq(ui.redact("a\0postgresql://u:secret@h/db\0b"), "a\0postgresql://u:****@h/db\0b")
  h.eq(ui.redact("\0"), "\0")
  h.eq(F.one("url", h.read(h.root .. "/tests/fuzz/regress/lua-url/redact-nul.txt")), nil)
end

-- make fuzz, fuzz_json: 1e309 decoded to inf, which encode refuses (the journal's canonical form raised)
T["fuzz regression: json.decode refuses a number beyond the double range"] = function()
  local v, err = json.decode("[1, 1e309]")
  h.eq(v, nil)
  h.contains(err, "out of range")
  v, err = json.decode('{"a": -1e400}')
  h.eq(v, nil)
  h.eq(json.decode("1.7976931348623157e308"), 1.7976931348623157e308)
end

return T
