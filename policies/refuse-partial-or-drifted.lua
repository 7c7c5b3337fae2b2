-- refuse-partial-or-drifted: some of the migration is there and some is not,
-- or what is there differs from the file, or the catalog cannot tell. No
-- automatic write can be right here: say exactly what is missing or
-- different and what the options are.
local policy = {
  name = "refuse-partial-or-drifted",
  description = "verdict partial, drifted or unverifiable: no write; list the objects and the options",
}

local options = {
  partial = "either create the missing objects by hand and run `migfix resolve --applied NAME`, "
    .. "or drop what exists, run `migfix resolve --rolled-back NAME` and deploy again",
  drifted = "make the objects match migration.sql (or change the file to match the database), then run migfix again",
  unverifiable = "check by hand that the statements took effect, then `migfix resolve --applied NAME` "
    .. "or `--rolled-back NAME`",
}

function policy.applies(m)
  if m.verdict == "partial" or m.verdict == "drifted" or m.verdict == "unverifiable" then return true end
  return false, "verdict is " .. m.verdict
end

function policy.decide(m, plan)
  local objects = {}
  for _, o in ipairs(m.objects) do
    if o.state ~= "present" and o.state ~= "absent" then objects[#objects + 1] = o end
  end
  plan:refuse(("%s is %s: %s"):format(m.name, m.verdict, m.summary), {
    hint = (options[m.verdict]:gsub("NAME", m.name)),
    objects = objects,
  })
end

return policy
