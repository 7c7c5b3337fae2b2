--- migfix resolve: Prisma's `migrate resolve`, with backup, lock and journal.
local ui = require "migfix.ui"
local json = require "migfix.json"
local lw = require "migfix.ledger_write"
local actions = require "migfix.actions"
local common = require "migfix.commands.common"

local C = {
  name = "resolve",
  summary = "mark a migration applied or rolled back, as prisma migrate resolve (backup + journal)",
  usage = "resolve (--applied NAME | --rolled-back NAME) [--force] [--no-backup] [--yes] [--json]",
  description = [[The manual primitives, written exactly as `prisma migrate resolve` writes them,
under Prisma's advisory lock (taken first: the ledger is read and checked under it), in one
transaction with the journal entry. A ledger-only backup (pg_dump of _prisma_migrations) is
taken first unless --no-backup; an environment that requires a backup gets at least its scope.
The environment's forbid list and confirmation apply. Same refusals as Prisma: P3008 (already
applied), P3011 (never applied), P3012 (not failed), P3017 (no such local migration).
--applied diagnoses the migration inside the write's transaction and refuses (nothing written)
when objects it creates are missing or different; --force records it anyway (journaled as forced).]],
  options = {
    { long = "applied", arg = "NAME", help = "record NAME as applied (its objects must already exist)" },
    { long = "rolled-back", arg = "NAME", help = "record NAME's failed attempt as rolled back (deploy will run it again)" },
    { long = "force", help = "with --applied: record it even when the diagnosis finds objects missing" },
    { long = "no-backup", help = "skip the ledger backup (not allowed when the environment requires a backup)" },
    { long = "yes", short = "y", help = "confirm writing when the environment asks" },
    { long = "json", help = "print a JSON document" },
  },
}

function C.run(ctx, opts, args)
  local applied, rolled = opts.applied, opts["rolled-back"]
  if (applied and rolled) or (not applied and not rolled) or #args > 0 then
    ui.fail { message = "give exactly one of --applied NAME or --rolled-back NAME", code = ui.EXIT.USAGE,
              hint = "migfix resolve --applied 20240312141500_sla_kb_forms_email" }
  end
  if opts.force and not applied then
    ui.fail { message = "--force goes with --applied only", code = ui.EXIT.USAGE }
  end
  local name = applied or rolled
  if name == "" then ui.fail { message = "the migration name is empty", code = ui.EXIT.USAGE } end
  local action = applied and "mark_applied" or "mark_rolled_back"
  local p = ctx:project()
  if p.forbid[action] then
    ui.fail { message = ("environment \"%s\" forbids %s"):format(p.env_name, action:gsub("_", " ")),
              hint = "use another environment's rules, or change forbid in migfix.lua", code = ui.EXIT.ATTENTION }
  end
  local conn = ctx:connect {}
  local R = actions.context(ctx, conn, "run")
  local item = { m = { name = name, verdict = "manual", summary = "manual resolve", counts = {}, error = {}, file = {} },
                 policy = "manual" }
  local function validate()
    -- Prisma's refusals, before any backup
    local st = R.st
    require("migfix.ledger").refuse_if_bad(st)
    local entry = st.by_name[name] or { name = name, rows = {} }
    if applied then
      lw.mark_applied(conn, st.schema, entry, entry["local"] and entry["local"].text, { create_table = not st.exists })
    else
      lw.mark_rolled_back(conn, st.schema, entry, { ledger_exists = st.exists })
    end
  end
  local asked = false
  if common.interactive(ctx, opts) then
    R:refresh()
    validate()
    asked = common.confirm(ctx, opts)
  end
  local backup_msg
  lw.with_lock(conn, actions.lock_ms(R), function()
    R:refresh()
    validate()
    if not asked then common.confirm(ctx, opts) end
    if not opts["no-backup"] or p.backup.required then
      local scope = p.backup.required and require("migfix.resolve").scope_join("ledger", p.backup.scope or "full") or "ledger"
      local _, msg = actions.execute(R, item, { action = "backup", scope = scope,
        reason = "before migfix resolve " .. (applied and "--applied " or "--rolled-back ") .. name })
      backup_msg = msg
    end
    local ok, msg = actions.execute(R, item, { action = action, force = opts.force })
    if not ok then ui.fail { message = msg, code = ui.EXIT.FAILURE } end
  end)
  if opts.json then
    ui.out(json.encode({ migration = name, action = action, before = json.array(item.result.before), after = json.array(item.result.after),
                         backup = item.backup or json.null,
                         verification = item.verification and actions.verification_doc(item.verification) or json.null }, { pretty = true }))
  else
    if backup_msg then ui.out("backup: " .. tostring(backup_msg)) end
    if item.verification and not item.verification.ok then
      ui.warn(("recorded as applied although the diagnosis says %s (--force): %s"):format(item.verification.verdict,
        table.concat(item.verification.problems, "; ")))
    end
    ui.out(("Migration %s marked as %s."):format(name, applied and "applied" or "rolled back"))
  end
  return ui.EXIT.OK
end

return C
