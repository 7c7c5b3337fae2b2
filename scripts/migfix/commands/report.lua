--- migfix report: the resolution write-up of a run, from the journal and
--- the database (read-only), in Markdown, JSON or HTML.
local ui = require "migfix.ui"
local journal = require "migfix.journal"
local report = require "migfix.report"

local C = {
  name = "report",
  summary = "the resolution write-up of a run (failure, root cause, steps, verification, backup, prevention) from the journal",
  usage = "report [--run ID | --last | --since TIME] [--format markdown|json|html] [--output FILE]",
  description = [[Writes the incident write-up of one resolution run of migfix, exactly and the same every time,
from the audit journal and the database: the failure (migration, error, failed at, detected by),
the root cause as the evidence shows it (verdict, counts, error class, whether the file changed),
the approach (policy, why it applied, the policies that declined), each step with its SQL,
outcome and duration, the verification (ledger, `prisma migrate status` as migfix computes it),
the objects of the migration by kind, the backup (path, size, SHA-256), the `after` hooks, the
timing and the prevention (lint findings, proposed split). Refusals, undo and deploy runs too.
A run is one invocation of migfix: every journal entry carries its run id (details.run).
Default: the last resolution run (--last). --since TIME reports every resolution run that started
then or later (ISO-8601, e.g. 2025-01-02T03:04Z, or an age: 30min, 2h, 1d), with a summary by outcome.
The database is read on a read-only connection; when it cannot be reached, the local journal
file is used (and the ledger state now is left out). Passwords never appear; times are UTC.
Exit 0 with a report, 1 when the journal holds no such run. See docs/report.md.]],
  options = {
    { long = "run", arg = "ID", help = "the run with this id (or a unique prefix of at least 8 characters)" },
    { long = "last", help = "the last resolution run in the journal (the default)" },
    { long = "since", arg = "TIME", help = "every resolution run since TIME (ISO-8601 UTC, or an age: 30min, 2h, 1d)" },
    { long = "format", arg = "FORMAT", help = "markdown (default), json or html" },
    { long = "output", short = "o", arg = "FILE", help = "write the report to FILE instead of standard output" },
  },
}

local function usage(msg, hint)
  ui.fail { message = msg, hint = hint or ("usage: migfix " .. C.usage), code = ui.EXIT.USAGE }
end

function C.run(ctx, opts, args)
  if #args > 0 then usage(("unexpected argument \"%s\""):format(args[1])) end
  local n = (opts.run and 1 or 0) + (opts.last and 1 or 0) + (opts.since and 1 or 0)
  if n > 1 then usage("give at most one of --run, --last and --since") end
  local format = opts.format or "markdown"
  if not report.FORMATS[format] then
    usage(("unrecognized format \"%s\""):format(tostring(format)), "use --format markdown, json or html")
  end
  if opts.run == "" then usage("the run id is empty") end
  local since
  if opts.since then
    local err
    since, err = report.parse_time(opts.since)
    if not since then usage(err, "give an ISO-8601 time such as 2025-01-02T03:04:05Z, or an age such as 30min, 2h or 1d") end
  end

  local p = ctx:project()
  local file_entries, ferr = journal.read_file(p.journal_file)
  if not file_entries then
    ui.warn(("could not read the journal file \"%s\": %s"):format(p.journal_file, tostring(ferr)))
  end

  -- the database, read-only; the file alone when it cannot be reached
  local ok, conn = pcall(ctx.connect, ctx, { readonly = true })
  local db_entries, unreachable
  if ok then
    local err, info
    db_entries, err, info = journal.read(conn, p.journal_schema)
    if not db_entries then
      ui.fail { message = "could not read the journal: " .. tostring(err), detail = info and info.detail,
                hint = "migfix journal --file reads the local mirror without the database", code = ui.EXIT.FAILURE }
    end
  else
    if not (ui.is_error(conn) and (conn.code == ui.EXIT.CONNECT or conn.code == ui.EXIT.USAGE)) or not file_entries or #file_entries == 0 then
      error(conn, 0)
    end
    unreachable = conn.message
    conn = nil
    ui.warn("the database cannot be reached: the report comes from the local journal file " .. p.journal_file,
            "the ledger state now and Prisma's status are left out")
  end

  local entries = report.collect(db_entries, file_entries, { environment = p.env_name })
  local runs = report.runs(entries)
  local selected, serr, sinfo = report.select(runs, { run = opts.run, since = since })
  if not selected then
    local where = conn and ("the journal in schema \"%s\" and %s"):format(p.journal_schema, p.journal_file) or p.journal_file
    ui.fail { message = serr, detail = ((sinfo and sinfo.detail) and (sinfo.detail .. "\n") or "") .. "looked in " .. where,
              hint = sinfo and sinfo.hint, code = ui.EXIT.ATTENTION }
  end

  local now
  if conn then
    local st_ok, st = pcall(ctx.state, ctx, conn)
    local why
    if not st_ok then
      why = ui.is_error(st) and st.message or tostring(st)
      st = nil
    end
    local nerr, ninfo
    now, nerr, ninfo = report.ledger_now(conn, ctx:schema(), st, why)
    if not now then
      ui.fail { message = "could not read the ledger: " .. tostring(nerr), detail = ninfo and ninfo.detail, code = ui.EXIT.FAILURE }
    end
  end

  local verify
  if db_entries then
    local vok, problems = journal.verify(db_entries, { anchor = file_entries or {}, environment = p.env_name, schema = p.journal_schema })
    verify = { ok = vok, problems = #problems }
  elseif file_entries then
    local vok, problems = journal.verify(file_entries)
    verify = { ok = vok, problems = #problems }
  end
  local parsed = p.parsed_url
  local doc = report.document(selected, {
    entries = entries, now = now,
    meta = {
      migfix_version = ctx.info and ctx.info.version,
      environment = p.env_name,
      database = (conn and parsed) and { name = parsed.dbname, host = parsed.host, port = parsed.port } or nil,
      selection = opts.run and { run = opts.run } or (since and { since = report.iso(since) }) or { last = true },
      journal = { source = db_entries and ("database schema \"" .. p.journal_schema .. "\" and " .. p.journal_file) or p.journal_file,
                  schema = p.journal_schema, file = p.journal_file, database_unreachable = unreachable, verify = verify },
    },
  })
  local text = report.render(doc, format)
  if opts.output then
    local f, oerr = io.open(opts.output, "wb")
    if not f then
      ui.fail { message = ("could not write the report to \"%s\": %s"):format(opts.output, tostring(oerr)), code = ui.EXIT.FAILURE }
    end
    f:write(text)
    f:close()
  else
    io.stdout:write(text)
  end
  return ui.EXIT.OK
end

return C
