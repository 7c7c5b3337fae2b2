-- list-failed.lua — print every failed migration with migfix's verdict.
--
--   migfix exec scripts/examples/list-failed.lua
--
-- Read-only (the connection refuses writes). Uses the primitives:
-- migfix.connect{readonly=true} and migfix.evidence(conn), the evidence every
-- policy decides from (docs/pipeline.md). Exit 0 when nothing failed, 1 when
-- something did.
local conn = migfix.connect { readonly = true }
local E = migfix.evidence(conn)
if #E.items == 0 then
  print("no failed migrations")
  return 0
end
for _, it in ipairs(E.items) do
  local m = it.m
  local e = m.error or {}
  print(("%-45s %-12s %s"):format(m.name, m.verdict, m.summary or ""))
  if e.sqlstate or e.message then
    print(("    error: %s%s"):format(e.sqlstate and (e.sqlstate .. " ") or "", e.message or ""))
  end
end
return 1
