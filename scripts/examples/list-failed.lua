-- list-failed.lua — print every failed migration with migfix's verdict.
--
--   migfix exec scripts/examples/list-failed.lua
--
-- Read-only (the connection refuses writes). Uses the primitives:
-- migfix.connect{readonly=true}, migfix.state(conn) and require "migfix.diagnose".
-- Exit 0 when nothing failed, 1 when something did.
local diagnose = require "migfix.diagnose"

local conn = migfix.connect { readonly = true }
local st = migfix.state(conn)
local diags = diagnose.run(migfix.ctx, conn, st)
if #diags == 0 then
  print("no failed migrations")
  return 0
end
for _, d in ipairs(diags) do
  local e = d.error or {}
  print(("%-45s %-12s %s"):format(d.name, d.verdict, d.summary or ""))
  if e.sqlstate or e.message then
    print(("    error: %s%s"):format(e.sqlstate and (e.sqlstate .. " ") or "", e.message or ""))
  end
end
return 1
