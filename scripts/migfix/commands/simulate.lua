--- migfix simulate: rehearse the chain and the pending deploy on a scratch copy.
local ui = require "migfix.ui"
local json = require "migfix.json"

local C = {
  name = "simulate",
  summary = "rehearse the policy chain and the pending deploy on a scratch copy: locks, rewrites, time, verdict",
  usage = "simulate [--env E] [--from backup|template|schema] [--backup ID] [--scratch-url URL] [--keep] [--inject-failure N|random[:SEED]] [--seed S] [--json]",
  description = [[Copies the database into a new scratch database (migfix_sim_<db>_<time>, on the same
server or on --scratch-url), runs the environment's policy chain there for real (backup steps
skipped and reported), then the pending deploy statement by statement with Prisma's semantics,
tracing each statement: duration, the locks its backend holds per table (pg_locks), table
rewrites (relfilenode), rows, SQLSTATE. Then verifies the copy (ledger, objects, no INVALID index
or unexpected NOT VALID constraint, a second run is a no-op) and says whether it is safe to run.
The real database is only read; the copy is always dropped (also on Ctrl-C, and at the next run
after a kill) unless --keep. Copy modes: template (CREATE DATABASE ... TEMPLATE, needs the
database idle), backup (restore the latest verified migfix backup, or --backup), schema
(pg_dump --schema-only plus the ledger rows: fast, but no data). Default: template when nobody
else is connected, else the latest verified backup. See docs/simulate.md.
Exit 0 when safe to run, 1 when not, 2-4 as usual.]],
  options = {
    { long = "from", arg = "MODE", help = "how to copy: backup, template or schema (default: template if idle, else backup)" },
    { long = "backup", arg = "ID", help = "the backup to restore (file name in the backup dir, or a path); implies --from backup" },
    { long = "scratch-url", arg = "URL", help = "create the copy on this server (a maintenance database URL of a staging server)" },
    { long = "keep", help = "keep the scratch copy (its name is printed)" },
    { long = "inject-failure", arg = "AT", help = "end the connection at statement AT (a number, or random[:SEED]), then run the chain again" },
    { long = "seed", arg = "S", help = "seed for --inject-failure random" },
    { long = "json", help = "print the full trace as JSON (docs/simulate.md)" },
  },
}

local function ms(v)
  if v == nil then return "-" end
  if v >= 1000 then return ("%.2f s"):format(v / 1000) end
  if v >= 10 then return ("%.0f ms"):format(v) end
  return ("%.1f ms"):format(v)
end
C.fmt_ms = ms

local function locks_text(s)
  if not s.locks then return s.locks_note and "(untraced)" or "" end
  local parts = {}
  for _, l in ipairs(s.locks) do
    if l.kind == "table" or l.kind == "materialized view" then
      parts[#parts + 1] = l.mode .. " " .. l.relation:gsub('^"public"%.', "") .. (l.created_here and " (new)" or "")
    end
  end
  return table.concat(parts, ", ")
end

local function print_report(R)
  local safe = R.verdict.safe
  ui.out(ui.paint(("SIMULATE for environment %s — a scratch copy of \"%s\"; the real database is only read"):format(R.environment, R.database), "bold"))
  local c = R.copy
  ui.out(("copy: %s (%s), %s, in %s%s"):format(c.name, c.mode, c.why, ms(c.ms), c.kept and " — kept" or ""))
  for _, d in ipairs(R.stale_dropped or {}) do ui.out(("removed a leftover copy %s: %s"):format(d.name, d.why)) end
  if c.schema_only then
    ui.out(ui.paint("note: schema-only copy — no rows, so scans and rewrites look instant and data errors cannot show", "yellow"))
  end
  for _, ch in ipairs(R.chain) do
    ui.out("")
    ui.out(("%s%s — verdict %s — %s"):format(ch.pass == "recovery" and "[recovery] " or "", ui.paint(ch.migration, "bold"),
      tostring(ch.verdict):upper(), ch.policy ~= json.null and ui.paint(ch.policy, "cyan") or "no policy applies"))
    for _, r in ipairs(ch.not_applied or {}) do
      if ch.policy == json.null then ui.out(("  %s: %s"):format(r.policy, r.why)) end
    end
    for _, a in ipairs(ch.actions or {}) do
      local mark = a.outcome == "ok" and ui.paint("ok", "green") or a.outcome == "skipped" and ui.paint("skipped", "yellow")
        or ui.paint(tostring(a.outcome), "red")
      ui.out(("  %d. %s — %s%s"):format(a.step, a.action, mark, a.message and (": " .. tostring(a.message)) or ""))
    end
  end
  for _, u in ipairs(R.units) do
    ui.out("")
    ui.out(("%s%s %s (%s, %s): %s"):format(u.pass == "recovery" and "[recovery] " or "", u.source == "redeploy" and "redeploy" or "deploy",
      ui.paint(tostring(u.migration), "bold"), u.mode == "transaction" and "one transaction, as Prisma" or u.mode,
      ms(u.statements_ms), u.ok and ui.paint("ok", "green") or ui.paint("FAILED", "red")))
    local rows = {}
    for _, s in ipairs(u.statements) do
      local extra = {}
      if s.rewrites and #s.rewrites > 0 then
        local names = {}
        for _, r in ipairs(s.rewrites) do names[#names + 1] = r.relation end
        extra[#extra + 1] = "REWRITE " .. table.concat(names, ", ")
      end
      if s.rows then extra[#extra + 1] = s.rows .. " rows" end
      if s.error then extra[#extra + 1] = (s.error.injected and "INJECTED: " or "ERROR ") .. (s.error.sqlstate or "") .. " " .. tostring(s.error.message) end
      rows[#rows + 1] = { n = s.n, line = s.line, ms = ms(s.ms), stmt = require("migfix.trace").one_line(s.text, 50),
                          locks = locks_text(s), extra = table.concat(extra, "; ") }
    end
    ui.table({ { key = "n", title = "#" }, { key = "line", title = "LINE" }, { key = "ms", title = "TIME" },
               { key = "stmt", title = "STATEMENT" }, { key = "locks", title = "LOCKS HELD (tables)" }, { key = "extra", title = "NOTE" } }, rows, "  ")
    for _, h in ipairs(u.holds) do
      if h.mode == "ACCESS EXCLUSIVE" and not h.created_here and h.kind == "table" then
        ui.out(("  ACCESS EXCLUSIVE on %s held %s (from statement %d to COMMIT): blocks reads and writes"):format(h.relation, ms(h.ms), h.from_statement))
      end
    end
  end
  if R.inject ~= json.null then
    ui.out("")
    local i = R.inject
    if i.happened then
      ui.out(("injected failure: the connection ended at statement %d%s"):format(i.at, i.seed ~= json.null and (" (random, seed " .. i.seed .. ")") or ""))
      local rec = i.recovery or {}
      if rec.recovered then
        local names = {}
        for _, a in ipairs(rec.policies or {}) do names[#names + 1] = a.policy .. " on " .. a.migration end
        ui.out(ui.paint("  recovered: " .. (#names > 0 and table.concat(names, ", ") or "nothing to do"), "green"))
      else
        ui.out(ui.paint("  did NOT recover: " .. tostring(rec.why), "red"))
      end
    else
      ui.out(("injected failure at statement %d did not happen (the rehearsal stopped earlier)"):format(i.at))
    end
  end
  local v = R.verification
  ui.out("")
  ui.out(("verification: %s; ledger: %s; second run: %s"):format(v.ok and ui.paint("ok", "green") or ui.paint("problems", "red"),
    v.ledger.prisma_status.says, v.second_run.noop and "no-op" or "NOT a no-op"))
  for _, pr in ipairs(v.problems) do ui.out("  - " .. pr) end
  for _, l in ipairs(R.limits) do ui.out(ui.paint("limit: " .. l, "dim")) end
  ui.out("")
  ui.out(ui.paint(("safe to run: %s"):format(safe and "yes" or "no"), safe and "green" or "red"))
  for _, r in ipairs(R.verdict.reasons) do ui.out("  " .. r) end
  local l = R.longest_access_exclusive
  if l ~= json.null then
    ui.out(("longest ACCESS EXCLUSIVE hold: %s on %s (%s, from statement %d)"):format(ms(l.ms), l.relation, l.migration, l.from_statement))
  else
    ui.out("longest ACCESS EXCLUSIVE hold: none on an existing table")
  end
  ui.out(("total: %s (predicted deploy time %s; copy %s)%s"):format(ms(R.total_ms), ms(R.predicted_deploy_ms), ms(R.copy.ms),
    R.copy.kept and ("; kept " .. R.copy.name) or (R.copy.dropped and "; the copy was dropped" or "")))
end

function C.run(ctx, opts)
  local R, rc = require("migfix.simulate").run(ctx, opts)
  if opts.json then
    ui.json(R)
  else
    print_report(R)
  end
  return rc
end

return C
