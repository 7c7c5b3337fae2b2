-- rollback-and-redeploy: nothing of the failed migration is in the database
-- (its transaction rolled back). Mark it rolled back and run the current
-- file again, under one lock — but only when the rerun can succeed: the
-- file was fixed since the failure, the error was transient, or it was a
-- data error whose precondition holds now (m.data: the failing statement's
-- check counted on the rows finds no violation, e.g. the duplicates are gone)
-- — and never over an INVALID index the migration left (a rerun would skip it).
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

-- INVALID indexes the migration left (an interrupted CREATE INDEX / REINDEX
-- CONCURRENTLY): a rerun with IF NOT EXISTS skips them and leaves them INVALID
local function invalid_indexes(m)
  if m.invalid_indexes then return m.invalid_indexes end
  local out = {}
  for _, o in ipairs(m.objects or {}) do
    for _, d in ipairs(o.kind == "index" and o.diffs or {}) do
      if d.field == "valid" and d.found == false then out[#out + 1] = o end
    end
  end
  return out
end

local function qname(ix)
  local function q(s) return '"' .. (tostring(s):gsub('"', '""')) .. '"' end
  return ix.schema and (q(ix.schema) .. "." .. q(ix.name)) or q(ix.name)
end

function policy.decide(m, plan)
  local e = m.error or {}
  local invalid = invalid_indexes(m)
  if #invalid > 0 then
    local names, drops, objects = {}, {}, {}
    for _, ix in ipairs(invalid) do
      names[#names + 1] = qname(ix)
      drops[#drops + 1] = "DROP INDEX CONCURRENTLY IF EXISTS " .. qname(ix) .. ";"
      objects[#objects + 1] = { kind = "index", schema = ix.schema, name = ix.name, table = ix.table, state = "invalid" }
    end
    plan:refuse(("INVALID index(es) %s left by an interrupted concurrent build: a redeploy would skip them " ..
      "(IF NOT EXISTS) or fail on them"):format(table.concat(names, ", ")), {
      hint = "drop them first, each statement on its own (not in a transaction): " .. table.concat(drops, " ") ..
        " then run migfix again",
      objects = objects,
    })
    return
  end
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
