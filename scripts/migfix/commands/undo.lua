--- migfix undo: put the `_prisma_migrations` rows of the last repair back as
--- its journal entry's before-image. Ledger only: the schema is never touched.
local ui = require "migfix.ui"
local json = require "migfix.json"
local journal = require "migfix.journal"

local C = {
  name = "undo",
  summary = "restore the _prisma_migrations rows of the last repair from the journal (ledger only, never the schema)",
  usage = "undo [--yes] [--json]",
  description = [[Finds the last successful mark_applied, mark_rolled_back or deploy in the journal that no
undo has reverted yet, and restores the ledger rows of its migrations to the before-image the
journal recorded: rows the repair inserted are deleted, changed rows get their old values back,
rows it removed are re-inserted. Runs under Prisma's advisory lock in ONE transaction together
with an "undo" journal entry, and checks the result equals the before-image exactly.
Refuses when the ledger changed since the repair (someone deployed or resolved since): the rows
must still equal the repair's after-image. Database objects the repair created or dropped are
NOT reverted (undo of a deploy leaves the schema as the migration left it).
Repeated undos step back through the journal, one repair at a time.]],
  options = {
    { long = "yes", short = "y", help = "do not ask for confirmation (required without a terminal)" },
    { long = "json", help = "print a JSON document of what was restored" },
  },
}

C.LOCK_KEY = 72707369

local COLS = "id text, checksum text, finished_at timestamptz, migration_name text, logs text, " ..
             "rolled_back_at timestamptz, started_at timestamptz, applied_steps_count integer"
local DATA_COLS = { "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count" }

local function ledger_table(conn, schema)
  return conn:quote_ident(schema) .. "." .. conn:quote_ident("_prisma_migrations")
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

local function rows_json(rows) return json.encode(json.array(rows or {})) end

--- Rows of the given migrations that differ from `want` (by id, every column
--- compared as PostgreSQL values): {id, name, kind = extra|missing|changed, cols}
local function diff(conn, q, names, want)
  local distinct = {}
  for _, c in ipairs(DATA_COLS) do
    distinct[#distinct + 1] = ("CASE WHEN w.%s IS DISTINCT FROM h.%s THEN '%s' END"):format(c, c, c)
  end
  local sql = ([[
    WITH want AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS w(%s)),
         have AS (SELECT id::text, checksum::text, finished_at, migration_name::text, logs, rolled_back_at, started_at,
                         applied_steps_count FROM %s
                   WHERE migration_name::text = ANY (ARRAY(SELECT jsonb_array_elements_text($2::jsonb))))
    SELECT coalesce(w.id, h.id) AS id, coalesce(w.migration_name, h.migration_name) AS name,
           CASE WHEN w.id IS NULL THEN 'extra' WHEN h.id IS NULL THEN 'missing' ELSE 'changed' END AS kind,
           concat_ws(', ', %s) AS cols
      FROM want w FULL JOIN have h ON h.id = w.id
     WHERE w.id IS NULL OR h.id IS NULL
        OR (w.checksum, w.finished_at, w.migration_name, w.logs, w.rolled_back_at, w.started_at, w.applied_steps_count)
           IS DISTINCT FROM
           (h.checksum, h.finished_at, h.migration_name, h.logs, h.rolled_back_at, h.started_at, h.applied_steps_count)
     ORDER BY 2, 1]]):format(COLS, q, table.concat(distinct, ", "))
  return conn:query(sql, rows_json(want), json.encode(json.array(names)))
end

--- Rows of other migrations written after the repair (deploys since).
local function newer(conn, q, names, at)
  return conn:query(([[
    SELECT id::text AS id, migration_name::text AS name FROM %s
     WHERE NOT (migration_name::text = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb))))
       AND greatest(started_at, finished_at, rolled_back_at) > $2::timestamptz
     ORDER BY started_at, id]]):format(q), json.encode(json.array(names)), at)
end

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

local function is_tty()
  local ok, unistd = pcall(require, "posix.unistd")
  if ok and unistd.isatty then return unistd.isatty(0) == 1 end
  local pok, proc = pcall(require, "migfix.proc")
  if pok and proc.isatty then return proc.isatty(0) == true end
  return false
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

-- journal a refusal in its own transaction (best effort) and the file mirror
local function record_refusal(ctx, conn, schema, rep, reason, lines)
  local p = ctx:project()
  pcall(function()
    local tx <close> = assert(conn:begin())
    local e = assert(journal.append(conn, p.journal_schema, {
      action = "refusal", outcome = "refused", environment = p.env_name, command = "undo",
      migration = type(rep.migration) == "string" and rep.migration or nil, ledger_schema = schema,
      details = { undoes = rep.seq, reason = reason, differences = json.array(lines) } }))
    assert(tx:commit())
    journal.mirror(conn, p.journal_schema, p.journal_file, e)
  end)
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
  local rep = journal.last_repair(entries)
  if not rep then
    ui.fail { message = "nothing to undo",
              detail = ("the journal in schema \"%s\" has no successful mark_applied, mark_rolled_back or deploy that was not undone already"):format(p.journal_schema),
              code = ui.EXIT.ATTENTION }
  end
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
  if not opts.yes then
    if not is_tty() then
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
  local config = require "migfix.config"
  local ms = config.millis(p.timeouts.advisory_lock, 10000) or 10000
  local locked, lerr, linfo = conn:advisory_lock(C.LOCK_KEY, ms)
  if not locked then
    ui.fail { message = lerr, detail = "another prisma migrate deploy/resolve or migfix holds Prisma's migration lock; nothing was written",
              hint = "wait for it to finish, or find it in pg_stat_activity", code = ui.EXIT.ATTENTION, holders = linfo and linfo.holders }
  end
  ctx:defer(function() conn:advisory_unlock(C.LOCK_KEY) end)

  local q = ledger_table(conn, schema)
  local refused, restored_rows, current_rows, u
  local t0 = require("migfix.proc").now()
  do
    local tx <close>, berr = conn:begin()
    if not tx then fail_sql("begin a transaction", berr) end
    local r, e2, i2 = conn:query("LOCK TABLE " .. q .. " IN SHARE ROW EXCLUSIVE MODE")
    if not r then fail_sql("lock the ledger", e2, i2) end
    local d
    d, e2, i2 = diff(conn, q, names, after)
    if not d then fail_sql("compare the ledger with the journal", e2, i2) end
    local later
    later, e2, i2 = newer(conn, q, names, rep.at)
    if not later then fail_sql("read the ledger", e2, i2) end
    for _, x in ipairs(later) do d[#d + 1] = { id = x.id, name = x.name, kind = "new" } end
    if #d > 0 then
      refused = {}
      for _, x in ipairs(d) do refused[#refused + 1] = describe_diff(x) end
    else
      current_rows = assert(journal.capture(conn, schema, names))
      local del = ([[DELETE FROM %s WHERE id IN (SELECT id FROM jsonb_to_recordset($1::jsonb) AS a(id text))
                       AND id NOT IN (SELECT id FROM jsonb_to_recordset($2::jsonb) AS b(id text))]]):format(q)
      r, e2, i2 = conn:query(del, rows_json(after), rows_json(before))
      if not r then fail_sql("delete the rows the repair inserted", e2, i2) end
      local sets = {}
      for _, c in ipairs(DATA_COLS) do sets[#sets + 1] = ("%s = w.%s"):format(c, c) end
      r, e2, i2 = conn:query(([[UPDATE %s t SET %s FROM jsonb_to_recordset($1::jsonb) AS w(%s)
                     WHERE t.id = w.id]]):format(q, table.concat(sets, ", "), COLS), rows_json(before))
      if not r then fail_sql("restore the changed rows", e2, i2) end
      r, e2, i2 = conn:query(([[INSERT INTO %s (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
                     SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count
                       FROM jsonb_to_recordset($1::jsonb) AS w(%s)
                      WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE t.id = w.id)]]):format(q, COLS, q), rows_json(before))
      if not r then fail_sql("re-insert the rows the repair removed", e2, i2) end
      d, e2, i2 = diff(conn, q, names, before)
      if not d then fail_sql("check the restored ledger", e2, i2) end
      if #d > 0 then
        local lines = {}
        for _, x in ipairs(d) do lines[#lines + 1] = describe_diff(x):gsub("since the repair", "after the restore") end
        ui.fail { message = "could not restore the ledger exactly: the result differs from the before-image",
                  detail = table.concat(lines, "\n"), hint = "the transaction was rolled back: the ledger is as it was",
                  code = ui.EXIT.FAILURE }
      end
      restored_rows = assert(journal.capture(conn, schema, names))
      u, e2, i2 = journal.append(conn, p.journal_schema, {
        action = "undo", outcome = "ok", environment = p.env_name, command = "undo",
        migration = type(rep.migration) == "string" and rep.migration or nil, ledger_schema = schema,
        before = current_rows, after = restored_rows,
        details = { undoes = rep.seq, undone_action = rep.action, undone_hash = rep.hash,
                    deleted = n_delete, restored = n_restore, reinserted = n_reinsert,
                    duration_ms = math.floor(require("migfix.proc").now() - t0 + 0.5) } })
      if not u then fail_sql("write the journal entry", e2, i2) end
      local cok, cerr, cinfo = tx:commit()
      if not cok then fail_sql("commit the undo", cerr, cinfo) end
    end
  end

  if refused then
    record_refusal(ctx, conn, schema, rep, "the ledger changed since the repair", refused)
    ui.fail { message = ("refusing to undo seq %d: the ledger changed since the repair"):format(rep.seq),
              detail = table.concat(refused, "\n"),
              hint = "the rows no longer match what the repair left; someone deployed or resolved since. Nothing was written",
              code = ui.EXIT.ATTENTION }
  end

  local mok, merr = journal.mirror(conn, p.journal_schema, p.journal_file, u)
  if not mok then ui.warn("could not write the journal file mirror: " .. tostring(merr), "the database journal has the entry (seq " .. u.seq .. ")") end

  if opts.json then
    ui.out(json.encode({ undone = rep.seq, undone_action = rep.action, journal_seq = u.seq, schema = schema,
                         migrations = json.array(names), deleted = n_delete, restored = n_restore, reinserted = n_reinsert,
                         before = current_rows, after = restored_rows }, { pretty = true }))
  else
    ui.out(ui.paint(("undone: the ledger rows of %s are as they were before seq %d (journal seq %d)"):format(
      table.concat(names, ", "), rep.seq, u.seq), "green"))
  end
  return ui.EXIT.OK
end

return C
