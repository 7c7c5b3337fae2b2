--- migfix resolve: Prisma's `migrate resolve`, with backup, lock and journal.
local ui = require "migfix.ui"
local json = require "migfix.json"
local lw = require "migfix.ledger_write"
local resolve = require "migfix.resolve"

local C = {
  name = "resolve",
  summary = "mark a migration applied or rolled back, as prisma migrate resolve (backup + journal)",
  usage = "resolve (--applied NAME | --rolled-back NAME) [--no-backup] [--yes] [--json]",
  description = [[The manual primitives, written exactly as Prisma writes them (prisma-migrate.md §5, §6),
under Prisma's advisory lock, in one transaction with the journal entry. A ledger-only backup
(pg_dump of _prisma_migrations) is taken first unless --no-backup; the environment's backup
scope applies when it requires a backup. Same refusals as Prisma: P3008 (already applied),
P3011 (never applied), P3012 (not failed), P3017 (no such local migration).]],
  options = {
    { long = "applied", arg = "NAME", help = "record NAME as applied (its objects must already exist)" },
    { long = "rolled-back", arg = "NAME", help = "record NAME's failed attempt as rolled back (deploy will run it again)" },
    { long = "no-backup", help = "skip the ledger backup" },
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
  local name = applied or rolled
  if name == "" then ui.fail { message = "the migration name is empty", code = ui.EXIT.USAGE } end
  local action = applied and "mark_applied" or "mark_rolled_back"
  local conn = ctx:connect {}
  local st = ctx:state(conn)
  local entry = st.by_name[name] or { name = name, rows = {} }
  local p = ctx:project()
  local item = { m = { name = name, verdict = "manual", summary = "manual resolve", counts = {}, error = {}, file = {} },
                 decision = { policy = { name = "manual" } } }
  -- validate first (Prisma's refusals), before any backup
  if applied then
    lw.mark_applied(conn, st.schema, entry, entry["local"] and entry["local"].text, { create_table = not st.exists })
  else
    lw.mark_rolled_back(conn, st.schema, entry, { ledger_exists = st.exists })
  end
  require("migfix.resolve").confirm(ctx, opts)
  if not opts["no-backup"] or p.backup.required then
    local ok, msg = resolve.execute(ctx, conn, st, item, { action = "backup", scope = p.backup.required and p.backup.scope or "ledger",
                                                           reason = "before migfix resolve " .. (applied and "--applied " or "--rolled-back ") .. name })
    if not opts.json then ui.out("backup: " .. tostring(msg)) end
  end
  local ok, msg = resolve.execute(ctx, conn, st, item, { action = action })
  if not ok then ui.fail { message = msg, code = ui.EXIT.FAILURE } end
  if opts.json then
    ui.out(json.encode({ migration = name, action = action, before = json.array(item.result.before), after = json.array(item.result.after),
                         backup = item.backup or json.null }, { pretty = true }))
  else
    ui.out(("Migration %s marked as %s."):format(name, applied and "applied" or "rolled back"))
  end
  return ui.EXIT.OK
end

return C
