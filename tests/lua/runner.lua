-- Lua test runner: migfix exec tests/lua/runner.lua FILE...
-- Each FILE returns a table { ["test name"] = function() ... end, ... }.
-- Prints "ok"/"not ok" per test and a closing "lua: N passed, N failed".
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local filter = os.getenv("MIGFIX_TEST_FILTER")
local passed, failed = 0, 0
for _, file in ipairs(arg) do
  local chunk, lerr = loadfile(file)
  local tests = chunk and select(2, xpcall(chunk, debug.traceback))
  if type(tests) ~= "table" then
    print(("not ok - %s: cannot load: %s"):format(file, tostring(lerr or tests)))
    failed = failed + 1
  else
    local names = {}
    for name in pairs(tests) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      if not filter or name:find(filter, 1, true) or file:find(filter, 1, true) then
        local ok, err = xpcall(tests[name], debug.traceback)
        if ok then
          passed = passed + 1
          print(("ok - %s: %s"):format(file, name))
        else
          failed = failed + 1
          print(("not ok - %s: %s\n    %s"):format(file, name, tostring(err):gsub("\n", "\n    ")))
        end
        io.stdout:flush()
      end
    end
  end
end
print(("lua: %d passed, %d failed"):format(passed, failed))
return failed == 0 and 0 or 1
