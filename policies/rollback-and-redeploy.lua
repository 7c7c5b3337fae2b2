-- rollback-and-redeploy: nothing of the failed migration is in the database
-- (its transaction rolled back). Mark it rolled back and run the current
-- file again, under one lock — but only when the rerun can succeed: the
-- file was fixed since the failure, the error was transient, or it was a
-- data error whose precondition holds now (m.data: the failing statement's
-- check counted on the rows finds no violation, e.g. the duplicates are gone).
local policy = {
  name = "rollback-and-redeploy",
  description = "verdict absent and (file changed, transient error, or the data now fits): back up, mark rolled back, redeploy, check",
  needs = { "data" },
}

local advice = {
  data = "fix the data the statement trips on",
  schema = "fix the migration (or the object it collides with)",
  syntax = "fix the statement in migration.sql",
  permission = "grant the missing privilege to the migration user",
  transaction = "move the statement into its own migration (migfix split)",
  unknown = "find the cause in the error",
}

function policy.applies(m)
  if m.verdict ~= "absent" then
    return false, "verdict is " .. m.verdict .. ", not absent"
  end
  return true
end

function policy.decide(m, plan)
  local e = m.error or {}
  if m.file.changed_since_failure then
    plan:note("migration.sql changed since the failed attempt: deploying the new version")
  elseif e.class == "transient" then
    plan:note(("the error was transient (%s%s): retrying the same file"):format(e.sqlstate and (e.sqlstate .. " ") or "", e.message or "no logs"))
  elseif e.class == "data" and m.data and m.data.status == "holds" then
    plan:note(("the data fits now (%s %s): %s; redeploying the unchanged file"):format(e.sqlstate or "?", e.message or "", m.data.summary))
  elseif e.class == "data" and m.data and m.data.status == "violated" then
    plan:refuse(("%s %s: %s; %s, then run again"):format(e.sqlstate or "", e.message or "", m.data.summary, m.data.advice or "fix the data"), {
      hint = "the file is unchanged and the rows still violate what the failing statement needs, so a redeploy would fail the same way",
    })
    return
  else
    local what = e.sqlstate and (e.sqlstate .. " " .. (e.message or "")) or (e.message or "unknown error")
    if e.object then what = what .. " on " .. e.object end
    local why = m.data and m.data.status == "unknown" and (" (the data check: " .. tostring(m.data.reason) .. ")") or ""
    plan:refuse(("%s: %s, then run again"):format(what, advice[e.class or "unknown"] or advice.unknown), {
      hint = "the file is unchanged and the error was not transient, so a redeploy would fail the same way" .. why,
    })
    return
  end
  plan:backup { reason = "before redeploying " .. m.name }
  plan:redeploy()
  plan:check()
end

return policy
