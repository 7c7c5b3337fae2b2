--- migfix split NAME [--write]: propose (and write) the split of one migration
--- into several Prisma migration folders that sort where the original stood.
local ui = require "migfix.ui"
local json = require "migfix.json"
local split = require "migfix.split"
local diagnose = require "migfix.diagnose"
local ledger = require "migfix.ledger"
local lw = require "migfix.ledger_write"
local common = require "migfix.commands.common"

local C = {
  name = "split",
  summary = "propose the split of a migration into safer Prisma migration folders; --write creates them",
  usage = "split NAME [--write] [--yes] [--json]",
  description = [[Shows, as a diff, how migration NAME would be cut into new folders that Prisma applies in
order where NAME stood (NAME_p01_..., NAME_p02_...): every non-transactional statement alone,
constraints added NOT VALID and validated in a later folder, SET NOT NULL through a validated CHECK,
CREATE INDEX on an existing table made CONCURRENTLY (not on partitioned tables), UNIQUE/PRIMARY KEY
built as a concurrent unique index then attached USING INDEX, ADD VALUE committed before its use, backfills
apart from the DDL, and `SET LOCAL lock_timeout` at the head of every transactional folder when the
environment sets deploy.lock_timeout (or lint.require_lock_timeout).
--write creates the folders and moves NAME's folder out of the migrations directory (into
.migfix/split/). A migration the ledger shows applied is refused. A failed one must be diagnosed
ABSENT (nothing of it in the database); its failed rows are then marked rolled back as
`prisma migrate resolve --rolled-back` does, under Prisma's lock, journaled.]],
  options = {
    { long = "write", help = "create the new folders and move the original away (and, for a failed migration, mark it rolled back)" },
    { long = "yes", short = "y", help = "confirm writing when the environment asks" },
    { long = "json", help = "print a JSON document" },
  },
}


--- Whether the failed attempt left nothing behind, so the parts start from
--- the state the original started from: verdict absent; or drifted only
--- because ALTERs of pre-existing objects did not happen (the "different"
--- items show the state before the migration) while nothing it creates is
--- there, for a file that ran as one implicit transaction (no BEGIN/COMMIT
--- of its own; a statement that cannot run in a transaction block fails
--- with 25001 before anything runs when sent with others).
function C.nothing_applied(d, unit_mode)
  if d.verdict == "absent" then return true end
  if d.verdict ~= "drifted" or (unit_mode or "file") ~= "file" then return false end
  if not d.execution or #(d.execution.tx_control or {}) > 0 then return false end
  if d.unit and #d.unit.statements == 1 then return false end
  for _, it in ipairs(d.evidence and d.evidence.items or {}) do
    if it.state == "present" then return false end
    if it.state == "different" and it.action ~= "alter" then return false end
  end
  return true
end

local function neighbours(list, name)
  local prev, nxt, existing = nil, nil, {}
  for i, m in ipairs(list) do
    existing[m.name] = true
    if m.name == name then
      prev = list[i - 1] and list[i - 1].name
      nxt = list[i + 1] and list[i + 1].name
    end
  end
  return prev, nxt, existing
end

--- Lint findings of a unit against the live catalog.
function C.findings(ctx, conn, unit, text)
  return (require("migfix.evidence").lint_findings(ctx, conn, unit, text))
end

local function mkdir_p(path)
  return require("migfix.fs").mkdirs(path, tonumber("755", 8))
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  if not ok then return nil, werr end
  return true
end

local function remove_tree(dir)
  local dirent = require "posix.dirent"
  for _, n in ipairs(dirent.dir(dir) or {}) do
    if n ~= "." and n ~= ".." then os.remove(dir .. "/" .. n) end
  end
  os.remove(dir)
end

--- Create the part folders; on any failure remove what was created.
local function write_parts(mdir, parts)
  local made = {}
  for _, part in ipairs(parts) do
    local dir = mdir .. "/" .. part.name
    local ok, err = mkdir_p(dir)
    if ok then ok, err = write_file(dir .. "/migration.sql", part.sql) end
    if not ok then
      for _, d in ipairs(made) do remove_tree(d) end
      ui.fail { message = ("could not write migration folder \"%s\": %s"):format(dir, tostring(err)),
                hint = "nothing was changed", code = ui.EXIT.FAILURE }
    end
    made[#made + 1] = dir
  end
  return made
end

local function print_findings(findings)
  if not findings or #findings == 0 then return end
  ui.out("lint findings:")
  for _, f in ipairs(findings) do
    local sev = f.severity == "error" and ui.paint("error", "red") or f.severity
    ui.out(("  %s %s line %s%s: %s"):format(f.rule, sev, tostring(f.line or "?"),
      f.table and (" on \"" .. f.table .. "\"") or "", f.why or ""))
    if f.alternative then ui.out("      instead: " .. f.alternative) end
  end
  ui.out("")
end

function C.run(ctx, opts, args)
  if #args ~= 1 then
    ui.fail { message = #args == 0 and "split needs the name of a migration" or "split takes one migration name",
              hint = "migfix split 20240402101500_ticket_merge [--write]", code = ui.EXIT.USAGE }
  end
  local name = args[1]
  local p = ctx:project()
  local conn = ctx:connect { readonly = not opts.write }
  local st = ctx:state(conn)
  local e = st.by_name[name]
  if not e or not e["local"] then
    ui.fail { message = ("no migration folder named \"%s\" in %s"):format(name, p.migrations_dir),
              hint = "give the whole folder name; migfix status lists them", code = ui.EXIT.USAGE }
  end
  local loc = e["local"]
  if not loc.has_sql then
    ui.fail { message = ("no migration.sql in %s"):format(loc.path), code = ui.EXIT.USAGE }
  end
  if e.state == "applied" then
    ui.fail { message = ("cannot split migration \"%s\": the ledger shows it applied"):format(name),
              detail = "Prisma would run the new folders again on this database",
              hint = "write a new migration for further changes", code = ui.EXIT.ATTENTION }
  end
  local unit = diagnose.analyze(loc.sql_path, loc.text)
  local prev, nxt, existing = neighbours(st.locals, name)
  local parts, perr = split.propose(unit, {
    name = name, text = loc.text, lock_timeout = split.lock_timeout(p), unit = p.unit,
    server_version = conn:server_version(), prev = prev, next = nxt, existing = existing,
    partitioned = split.partitioned(conn, st.schema),
  })
  if not parts then
    ui.fail { message = ("cannot split migration \"%s\": %s"):format(name, perr), code = ui.EXIT.ATTENTION }
  end
  local findings = C.findings(ctx, conn, unit, loc.text)
  local changes = split.changes(unit, parts)

  local doc = { name = name, state = e.state, parts = {}, findings = findings and json.array(findings) or json.null,
                changes = changes, written = false }
  for _, part in ipairs(parts) do
    doc.parts[#doc.parts + 1] = { name = part.name, kind = part.kind, why = part.why, sql = part.sql,
                                  transactional = part.transactional, statements = json.array(part.statements) }
  end
  doc.parts = json.array(doc.parts)

  if not opts.json then
    ui.out(ui.paint(("split of %s (%s): %d folder%s"):format(name, e.state:gsub("_", " "), #parts, #parts == 1 and "" or "s"), "bold"))
    ui.out("")
    print_findings(findings)
    for k, part in ipairs(parts) do
      ui.out(("  %d. %s  [%s, statements %s]"):format(k, part.name, part.kind, table.concat(part.statements, ",")))
      ui.out("     " .. part.why)
    end
    ui.out("")
    if not changes then
      ui.out("nothing to split: the migration runs as it is")
    else
      io.stdout:write(split.diff(loc.text, parts, name))
    end
  end
  if not opts.write or not changes then
    if opts.json then ui.json(doc) end
    return ui.EXIT.OK
  end

  -- --write: decided under Prisma's lock ------------------------------------
  local failed = e.state == "failed"
  if failed and p.forbid.mark_rolled_back then
    ui.fail { message = ("environment \"%s\" forbids mark rolled back, which splitting a failed migration needs"):format(p.env_name),
              code = ui.EXIT.ATTENTION }
  end
  local actions = require "migfix.actions"
  local R = actions.context(ctx, conn, "run")
  local names = {}
  for _, part in ipairs(parts) do names[#names + 1] = part.name end
  local stamp = os.date("!%Y%m%dT%H%M%SZ")
  local archive = p.root .. "/.migfix/split/" .. name .. "." .. stamp
  local asked = common.interactive(ctx, opts) and common.confirm(ctx, opts)

  lw.with_lock(conn, actions.lock_ms(R), function()
    -- read again under the lock: a deploy may have run meanwhile
    local s2 = R:refresh()
    require("migfix.ledger").refuse_if_bad(s2)
    local e2 = s2.by_name[name]
    if e2.state ~= e.state then
      ui.fail { message = ("migration \"%s\" changed state to %s meanwhile; nothing was written"):format(name, e2.state),
                code = ui.EXIT.ATTENTION }
    end
    local item = { m = { name = name, verdict = "pending", summary = "split", counts = {}, error = {}, file = {} }, policy = "split" }
    if failed then
      local d = diagnose.run(ctx, conn, s2, { name })[1]
      if not C.nothing_applied(d, p.unit) then
        ui.fail { message = ("cannot split failed migration \"%s\": verdict %s, not absent"):format(name, d.verdict),
                  detail = d.summary,
                  hint = "the parts would run against what the failed attempt left; run migfix diagnose " .. name .. " and resolve it first",
                  code = ui.EXIT.ATTENTION }
      end
      item.m = require("migfix.evidence").of(d)
    end
    if failed and not asked then common.confirm(ctx, opts) end
    if failed and p.backup.required then
      actions.execute(R, item, { action = "backup", scope = p.backup.scope, reason = "before splitting " .. name })
    end
    local made = write_parts(p.migrations_dir, parts)
    local ok, err = pcall(function()
      if failed then
        local stmts = lw.mark_rolled_back(conn, st.schema, e2, { ledger_exists = true })
        lw.execute(conn, st.schema, name, stmts, R:journal_fn(item, "mark_rolled_back",
          { part_of = "split", parts = json.array(names), archived_to = archive }), { what = "mark " .. name .. " rolled back" })
      end
    end)
    if not ok then
      for _, d in ipairs(made) do remove_tree(d) end
      error(err, 0)
    end
    -- Prisma must not see the original any more
    local mok, merr = mkdir_p(archive:match("^(.*)/[^/]*$"))
    if mok then mok, merr = os.rename(loc.path, archive) end
    if not mok then
      ui.fail { message = ("could not move \"%s\" to \"%s\": %s"):format(loc.path, archive, tostring(merr)),
                detail = "the new folders are written" .. (failed and " and the failed row is marked rolled back" or ""),
                hint = "move or delete the original folder by hand, or Prisma will run it too", code = ui.EXIT.FAILURE }
    end
    if not failed then
      -- a pending migration: no ledger row changes, the split itself is the action
      R:record(R:entry_of(item, "split", "ok", { details = { parts = json.array(names), archived_to = archive } }))
    end
  end)
  doc.written = true
  doc.archived_to = archive
  if opts.json then
    ui.json(doc)
  else
    ui.out("")
    ui.out(ui.paint(("wrote %d folder%s; %s moved to %s"):format(#parts, #parts == 1 and "" or "s", name, archive), "green"))
    if failed then ui.out(("marked the failed row of %s rolled back (journaled)"):format(name)) end
    ui.out("next: migfix deploy (or prisma migrate deploy) applies the parts in order")
  end
  return ui.EXIT.OK
end

return C
