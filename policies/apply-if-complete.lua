-- apply-if-complete: every object the failed migration creates, alters or
-- drops is in the database as the file says — the classic P3009, where the
-- connection died after PostgreSQL committed. Back up, record it applied
-- exactly as `prisma migrate resolve --applied` would, and check the ledger.
local policy = {
  name = "apply-if-complete",
  description = "verdict complete: back up, mark applied (resolve --applied), check the ledger",
}

function policy.applies(m)
  if m.verdict ~= "complete" then
    return false, "verdict is " .. m.verdict .. ", not complete"
  end
  return true
end

function policy.decide(m, plan)
  plan:note(("all %d verifiable effects of %s are in the database"):format(m.counts.present + m.counts.absent, m.name))
  plan:backup { reason = "before marking " .. m.name .. " applied" }
  plan:mark_applied()
  plan:check()
end

return policy
