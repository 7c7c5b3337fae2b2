-- split-large-migration: before rollback-and-redeploy runs a failed
-- migration again, look at what the rerun would do to the live tables. When
-- lint has error-level findings (a blocking index on a large table, a
-- scanning SET NOT NULL, a non-transactional statement among others, ...),
-- do not rerun it: refuse with the findings and the proposed split, which
-- `migfix split NAME --write` writes as new Prisma migration folders.
-- Put it before rollback-and-redeploy in the chain; `needs = { "lint" }` makes
-- the engine fill m.lint (plan, run and simulate alike).
local policy = {
  name = "split-large-migration",
  description = "verdict absent and error-level lint findings: refuse the rerun, propose the split (migfix split)",
  needs = { "lint" },
}

local function errors(m)
  local list = {}
  for _, f in ipairs((m.lint and m.lint.findings) or {}) do
    if f.severity == "error" then list[#list + 1] = f end
  end
  return list
end

function policy.applies(m)
  if m.verdict ~= "absent" then return false, "verdict is " .. m.verdict .. ", not absent" end
  if not m.lint then return false, "no lint evidence" end
  if #errors(m) == 0 then return false, "no error-level lint findings" end
  return true
end

function policy.decide(m, plan)
  local errs = errors(m)
  local lines = {}
  for _, f in ipairs(errs) do
    lines[#lines + 1] = ("%s line %s%s: %s%s"):format(f.rule, tostring(f.line or "?"),
      f.table and (" on \"" .. f.table .. "\"") or "", f.why or "",
      f.alternative and (" (instead: " .. f.alternative .. ")") or "")
  end
  local parts = (m.lint and m.lint.split) or {}
  local hint = { ("review `migfix split %s`, then `migfix split %s --write` and `migfix deploy`"):format(m.name, m.name) }
  if #parts > 0 then
    hint[#hint + 1] = "       proposed split:"
    for k, p in ipairs(parts) do hint[#hint + 1] = ("         %d. %s — %s"):format(k, p.name, p.kind) end
  end
  plan:refuse(("%s would run again with %d error-level lint finding%s: %s"):format(
    m.name, #errs, #errs == 1 and "" or "s", table.concat(lines, "; ")), { hint = table.concat(hint, "\n") })
end

return policy
