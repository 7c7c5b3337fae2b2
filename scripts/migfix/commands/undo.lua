--- migfix undo: put the `_prisma_migrations` rows of the last repair back as
--- its journal entry's before-image. Ledger only: the schema is never touched.
local ui = require "migfix.ui"
local json = require "migfix.json"
local journal = require "migfix.journal"
local lw = require "migfix.ledger_write"
local txn = require "migfix.txn"
local actions = require "migfix.actions"
local sys = require "migfix.sys"

local C = {
  name = "undo",
  summary = "restore the _prisma_migrations rows of the last repair from the journal (ledger only, never the schema)",
  usage = "undo [--run ID] [--yes] [--json]",
  description = [[Finds the last successful mark_applied, mark_rolled_back or deploy in the journal that no
undo has reverted yet, and restores the ledger rows of its migrations to the before-image the
journal recorded: rows the repair inserted are deleted, changed rows get their old values back,
rows it removed are re-inserted. Runs under Prisma's advisory lock in ONE transaction together
with an "undo" journal entry, and checks the result equals the before-image exactly.
Refuses when the ledger changed since the repair (someone deployed or resolved since): the rows
must still equal the repair's after-image. Database objects the repair created or dropped are
NOT reverted (undo of a deploy leaves the schema as the migration left it).
Repeated undos step back through the journal, one repair at a time.
--run ID undoes every repair of one migfix run (the run id in each journal entry's details.run,
shown by `migfix report` and a fleet run's summary; a prefix of 8+ characters is enough), newest
first; with --targets/--schemas, on every target: one incident across a fleet, undone together.]],
  options = {
    { long = "run", arg = "ID", help = "undo every repair of this run (newest first)" },
    { long = "yes", short = "y", help = "do not ask for confirmation (required without a terminal)" },
    { long = "json", help = "print a JSON document of what was restored" },
  },
}

local function describe_diff(d)
  if d.kind == "extra" then
    return ("row %s (%s) was added since the repair"):format(d.id, d.name)
  elseif d.kind == "missing" then
    return ("row %s (%s) was removed since the repair"):format(d.id, d.name)
  elseif d.kind == "new" then
    return ("row %s (%s) was written after the repair (a deploy or resolve since)"):format(d.id, d.name)
  end
  return ("row %s (%s) changed since the repair: %s"):format(d.id, d.name, d.cols)
end

local function count(rows, pred)
  local n = 0
  for _, r in ipairs(rows or {}) do if pred(r) then n = n + 1 end end
  return n
end

local function ids(rows)
  local s = {}
  for _, r in ipairs(rows or {}) do s[r.id] = true end
  return s
end

local function fail_sql(what, err, info)
  ui.fail { message = ("could not %s: %s"):format(what, tostring(err)), detail = info and info.detail,
            hint = "the transaction was rolled back: the ledger is as it was", code = ui.EXIT.FAILURE }
end

local function names_of(rep)
  local set, list = {}, {}
  local function add(n) if type(n) == "string" and not set[n] then set[n] = true; list[#list + 1] = n end end
  for _, r in ipairs(type(rep.before) == "table" and rep.before or {}) do add(r.migration_name) end
  for _, r in ipairs(type(rep.after) == "table" and rep.after or {}) do add(r.migration_name) end
  add(rep.migration)
  table.sort(list)
  return list
end

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  local p = ctx:project()
  local schema = ctx:schema()
  if p.journal_schema == schema then
    ui.fail { message = ("the journal schema \"%s\" is the schema Prisma manages"):format(schema),
              hint = "set journal = { schema = \"migfix\" } in migfix.lua", code = ui.EXIT.USAGE }
  end
  local conn = ctx:connect {}
  local entries, err, info = journal.read(conn, p.journal_schema)
  if not entries then
    ui.fail { message = "could not read the journal: " .. tostring(err), detail = info and info.detail, code = ui.EXIT.FAILURE }
  end
  local ok, problems = journal.verify(entries)
  if not ok then
    local lines = {}
    for _, pr in ipairs(problems) do lines[#lines + 1] = pr.message end
    ui.fail { message = "cannot undo from a broken journal chain",
              detail = table.concat(lines, "\n"),
              hint = "run migfix journal --verify; restore the ledger from a backup instead", code = ui.EXIT.ATTENTION }
  end
  if opts.run and (#opts.run < 8 or not opts.run:match("^[%x%-]+$")) then
    ui.fail { message = ("invalid run id \"%s\""):format(opts.run), hint = "give the run id (or 8+ of its first characters) from migfix report or the journal", code = ui.EXIT.USAGE }
  end
  local results = {}
  local confirmed = false
  while true do
    local rep = journal.last_repair(entries, { run = opts.run })
    if not rep then
      if #results > 0 then break end
      ui.fail { message = "nothing to undo",
                detail = opts.run and ("the journal in schema \"%s\" has no repair of run %s that was not undone already"):format(p.journal_schema, opts.run)
                  or ("the journal in schema \"%s\" has no successful mark_applied, mark_rolled_back or deploy that was not undone already"):format(p.journal_schema),
                code = ui.EXIT.ATTENTION }
    end
    results[#results + 1] = C.undo_one(ctx, conn, opts, p, schema, rep, confirmed)
    confirmed = true
    if not opts.run then break end
    entries = assert(journal.read(conn, p.journal_schema))
  end
  if opts.json then
    if opts.run then
      ui.json({ run = opts.run, undone = json.array(results) })
    else
      ui.json(results[1])
    end
  end
  return ui.EXIT.OK
end

--- Undo one repair entry (under Prisma's lock, one transaction); returns its JSON document.
function C.undo_one(ctx, conn, opts, p, schema, rep, confirmed)
  local det = type(rep.details) == "table" and rep.details or {}
  if det.part_of == "split" then
    ui.fail { message = ("the last repair (seq %d) is part of `migfix split %s`: undoing only its ledger row would leave the split folders in place"):format(rep.seq, tostring(rep.migration)),
              detail = ("the original folder was archived to %s"):format(tostring(det.archived_to)),
              hint = "undo the split by hand: delete the new folders that were not deployed, move the original back, then run migfix undo again if needed",
              code = ui.EXIT.ATTENTION }
  end
  if rep.ledger_schema ~= schema then
    ui.fail { message = ("the last repair (seq %d) changed the ledger in schema \"%s\", not \"%s\""):format(rep.seq, tostring(rep.ledger_schema), schema),
              hint = "run undo with the URL or environment of that repair", code = ui.EXIT.ATTENTION }
  end
  local before = type(rep.before) == "table" and rep.before or {}
  local after = type(rep.after) == "table" and rep.after or {}
  local names = names_of(rep)
  local bids, aids = ids(before), ids(after)
  local n_delete = count(after, function(r) return not bids[r.id] end)
  local n_reinsert = count(before, function(r) return not aids[r.id] end)
  local n_restore = #before - n_reinsert
  local what = ("seq %d: %s %s at %s by %s@%s"):format(rep.seq, rep.action, type(rep.migration) == "string" and rep.migration or "",
    tostring(rep.at), tostring(rep.os_user), tostring(rep.host))

  if not opts.json then
    ui.out(("undo %s"):format(what))
    ui.out(("  restore %d ledger row%s of %s: delete %d inserted, restore %d, re-insert %d (schema is not touched)"):format(
      #before, #before == 1 and "" or "s", table.concat(names, ", "), n_delete, n_restore, n_reinsert))
  end
  if not opts.yes and not confirmed then
    if not sys.isatty(0) then
      ui.fail { message = "undo needs confirmation", detail = "no terminal to ask on, and --yes was not given; nothing was written",
                hint = "run it again with --yes", code = ui.EXIT.ATTENTION }
    end
    io.stderr:write("restore the ledger rows as they were before seq " .. rep.seq .. "? [y/N] ")
    io.stderr:flush()
    local answer = io.stdin:read("l") or ""
    if not answer:match("^%s*[yY]") then
      ui.fail { message = "undo cancelled", detail = "nothing was written", code = ui.EXIT.ATTENTION }
    end
  end

  -- Prisma's lock first, then one transaction
  local R = actions.context(ctx, conn, "run")
  local item = { m = { name = type(rep.migration) == "string" and rep.migration or nil }, policy = nil }
  local refused, restored_rows, current_rows, u
  local t0 = sys.now_ms()
  lw.with_lock(conn, actions.lock_ms(R), function()
    require("migfix.ledger").refuse_if_bad(conn, schema)
    txn.run(conn, function()
      lw.lock_table(conn, schema)
      local d, e2, i2 = lw.diff_rows(conn, schema, names, after)
      if not d then fail_sql("compare the ledger with the journal", e2, i2) end
      local later
      later, e2, i2 = lw.newer_rows(conn, schema, names, rep.at)
      if not later then fail_sql("read the ledger", e2, i2) end
      for _, x in ipairs(later) do d[#d + 1] = { id = x.id, name = x.name, kind = "new" } end
      if #d > 0 then
        refused = {}
        for _, x in ipairs(d) do refused[#refused + 1] = describe_diff(x) end
        return
      end
      current_rows = assert(journal.capture(conn, schema, names))
      for _, st in ipairs(lw.restore(conn, schema, before, after)) do lw.run_stmt(conn, st) end
      d, e2, i2 = lw.diff_rows(conn, schema, names, before)
      if not d then fail_sql("check the restored ledger", e2, i2) end
      if #d > 0 then
        local lines = {}
        for _, x in ipairs(d) do lines[#lines + 1] = describe_diff(x):gsub("since the repair", "after the restore") end
        ui.fail { message = "could not restore the ledger exactly: the result differs from the before-image",
                  detail = table.concat(lines, "\n"), hint = "the transaction was rolled back: the ledger is as it was",
                  code = ui.EXIT.FAILURE }
      end
      restored_rows = assert(journal.capture(conn, schema, names))
      u = R:record(R:entry_of(item, "undo", "ok", {
        before = current_rows, after = restored_rows, policy = false,
        details = { undoes = rep.seq, undone_action = rep.action, undone_hash = rep.hash,
                    deleted = n_delete, restored = n_restore, reinserted = n_reinsert,
                    duration_ms = math.floor(sys.now_ms() - t0 + 0.5) } }))
    end, "undo seq " .. rep.seq)
  end)

  if refused then
    pcall(R.record, R, R:entry_of(item, "refusal", "refused", { policy = false,
      details = { undoes = rep.seq, reason = "the ledger changed since the repair", differences = json.array(refused) } }))
    ui.fail { message = ("refusing to undo seq %d: the ledger changed since the repair"):format(rep.seq),
              detail = table.concat(refused, "\n"),
              hint = "the rows no longer match what the repair left; someone deployed or resolved since. Nothing was written",
              code = ui.EXIT.ATTENTION }
  end

  local doc = { undone = rep.seq, undone_action = rep.action, journal_seq = u.seq, schema = schema,
                migrations = json.array(names), deleted = n_delete, restored = n_restore, reinserted = n_reinsert,
                before = current_rows, after = restored_rows }
  if not opts.json then
    ui.out(ui.paint(("undone: the ledger rows of %s are as they were before seq %d (journal seq %d)"):format(
      table.concat(names, ", "), rep.seq, u.seq), "green"))
  end
  return doc
end

return C
