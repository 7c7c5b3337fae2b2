--- migfix journal: list the audit journal, verify its hash chain.
local ui = require "migfix.ui"
local json = require "migfix.json"
local journal = require "migfix.journal"

local C = {
  name = "journal",
  summary = "list the audit journal (who changed the ledger, when, why) and verify its hash chain",
  usage = "journal [--json] [--verify] [--file] [-n N]",
  description = [[Entries come from the journal table in the database (schema "migfix" unless migfix.lua sets
journal = { schema = ... }), newest last. --file reads the local JSON-lines mirror instead
(.migfix/journal.jsonl), which needs no database. An `attempt` that no `deploy` entry completes is
shown as interrupted (the process died mid-script), with a warning. --verify recomputes every hash and checks the
chain: an edited entry, a deleted one, a reordered chain; against the file mirror it also sees a
truncated tail. A chain rewritten from the start with recomputed hashes is only visible against
the mirror (see docs/journal.md).]],
  options = {
    { long = "json", help = "print a JSON document {entries, verify}" },
    { long = "verify", help = "check the hash chain (database and file mirror); exit 1 naming the seq when broken" },
    { long = "file", help = "read the local mirror instead of the database" },
    { long = "n", short = "n", arg = "N", help = "only the last N entries" },
  },
}

local OUTCOME_COLOR = { ok = "green", failed = "red", refused = "yellow", planned = "cyan", skipped = "dim", interrupted = "red" }

local function str(v)
  if v == nil or v == json.null then return "" end
  return tostring(v)
end

local function tail(list, n)
  if not n or n >= #list then return list end
  local out = {}
  for i = #list - n + 1, #list do out[#out + 1] = list[i] end
  return out
end

local function print_entries(entries, interrupted)
  local rows = {}
  local cut = {}
  for _, e in ipairs(interrupted or {}) do cut[e] = true end
  for _, e in ipairs(entries) do
    if e._malformed then
      rows[#rows + 1] = { seq = "?", time = "", who = "", env = "", action = "(line " .. e._line .. " unreadable)", migration = "", outcome = "", policy = "" }
    else
      local t = str(e.at):gsub("T", " "):gsub("%.%d+Z$", "Z")
      rows[#rows + 1] = { seq = str(e.seq), time = t, who = str(e.os_user) .. "@" .. str(e.host), env = str(e.environment),
                          action = str(e.action), migration = str(e.migration),
                          outcome = cut[e] and "interrupted" or str(e.outcome), policy = str(e.policy) }
    end
  end
  ui.table({
    { key = "seq", title = "SEQ" },
    { key = "time", title = "TIME (UTC)" },
    { key = "who", title = "USER@HOST" },
    { key = "env", title = "ENV" },
    { key = "action", title = "ACTION" },
    { key = "migration", title = "MIGRATION" },
    { key = "outcome", title = "OUTCOME", color = function(r) return OUTCOME_COLOR[r.outcome] end },
    { key = "policy", title = "POLICY" },
  }, rows)
end

local function problems_json(problems)
  local out = {}
  for _, p in ipairs(problems or {}) do
    out[#out + 1] = { seq = p.seq or json.null, kind = p.kind, message = p.message }
  end
  return json.array(out)
end

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  local n
  if opts.n then
    n = math.tointeger(tonumber(opts.n))
    if not n or n < 1 then
      ui.fail { message = ("invalid value for -n: \"%s\""):format(opts.n), hint = "give a positive number of entries", code = ui.EXIT.USAGE }
    end
  end
  local p = ctx:project()
  local file_entries, ferr = journal.read_file(p.journal_file)
  local source, entries
  if opts.file then
    if not file_entries then
      ui.fail { message = ("could not read the journal file \"%s\": %s"):format(p.journal_file, ferr), code = ui.EXIT.FAILURE }
    end
    source, entries = p.journal_file, file_entries
  else
    local conn = ctx:connect { readonly = true }
    local err, info
    entries, err, info = journal.read(conn, p.journal_schema)
    if not entries then
      ui.fail { message = "could not read the journal: " .. tostring(err), detail = info and info.detail,
                hint = "migfix journal --file reads the local mirror without the database", code = ui.EXIT.FAILURE }
    end
    source = ("schema \"%s\""):format(p.journal_schema)
  end

  local verdict
  if opts.verify then
    local all = {}
    local ok, problems = journal.verify(entries, opts.file and nil or {
      anchor = file_entries or {}, environment = p.env_name, schema = p.journal_schema })
    for _, pr in ipairs(problems) do pr.where = opts.file and "file" or "database"; all[#all + 1] = pr end
    if not opts.file and file_entries then
      local fok, fproblems = journal.verify(file_entries)
      ok = ok and fok
      for _, pr in ipairs(fproblems) do pr.where = "file"; all[#all + 1] = pr end
    end
    verdict = { ok = ok, problems = all }
  end
  local interrupted = journal.interrupted(entries)

  local shown = tail(entries, n)
  if opts.json then
    local doc = { source = source, count = #entries, entries = json.array(shown) }
    if verdict then doc.verify = { ok = verdict.ok, problems = problems_json(verdict.problems) } end
    local cut = {}
    for _, e in ipairs(interrupted) do
      cut[#cut + 1] = { seq = e.seq or json.null, migration = e.migration or json.null, at = e.at or json.null,
                        row_id = e.details.row_id, part_of = e.details.part_of or json.null }
    end
    doc.interrupted = json.array(cut)
    ui.json(doc)
  else
    if #entries == 0 then
      ui.out(("no journal entries yet (%s)"):format(source))
    else
      print_entries(shown, interrupted)
    end
    for _, e in ipairs(interrupted) do
      ui.warn(("seq %s: the %s of %s (row %s) started at %s and never finished: the run was interrupted"):format(
        str(e.seq), e.details.part_of or "deploy", str(e.migration), str(e.details.row_id), str(e.at)),
        "its ledger row is left failed (finished_at NULL) as Prisma leaves it; migfix diagnose / plan resolve it")
    end
    if verdict and verdict.ok then
      ui.out(ui.paint(("chain intact: %d entr%s verified (%s%s)"):format(#entries, #entries == 1 and "y" or "ies", source,
        (not opts.file and file_entries and #file_entries > 0) and (", anchored by " .. p.journal_file) or ""), "green"))
    end
  end
  if verdict and not verdict.ok then
    local lines = {}
    for _, pr in ipairs(verdict.problems) do lines[#lines + 1] = ("%s: %s"):format(pr.where, pr.message) end
    if opts.json then return ui.EXIT.ATTENTION end
    ui.fail { message = ("the journal chain is broken: %d problem%s"):format(#lines, #lines == 1 and "" or "s"),
              detail = table.concat(lines, "\n"),
              hint = "someone edited or deleted journal entries; compare with the file mirror and your backups",
              code = ui.EXIT.ATTENTION }
  end
  return ui.EXIT.OK
end

return C
