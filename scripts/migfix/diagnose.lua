--- Diagnosis: for each failed migration, which of its effects exist in the
--- database, object by object, and what the recorded error says.
--- This is the evidence every policy decides from (docs/policies.md).
local ui = require "migfix.ui"
local effects = require "migfix.effects"
local catalog = require "migfix.catalog"
local verify = require "migfix.verify"
local errclass = require "migfix.errclass"
local mig = require "migfix.migrations"
local ledger = require "migfix.ledger"

local M = {}

--- Parse a migration file into statements and effects; raises a usage
--- error naming file:line on a syntax error.
function M.analyze(path, text)
  local unit, err = effects.analyze(text, path)
  if not unit then
    ui.fail { message = ("%s:%s:%s: %s"):format(path, err.line or "?", err.column or "?", err.message),
              detail = "the file is not valid PostgreSQL SQL (checked with PostgreSQL's own parser, libpg_query 15)",
              hint = "fix the statement at that line; Prisma would fail on it too", code = ui.EXIT.USAGE }
  end
  return unit
end

--- How the file executes under Prisma: one implicit transaction (native
--- engine, unit "file") unless it has its own transaction control or
--- statements that cannot run in a transaction block.
function M.execution(unit, server_version, unit_mode)
  local ex = { tx_control = {}, non_transactional = {} }
  for _, s in ipairs(unit.statements) do
    if s.tx_control then table.insert(ex.tx_control, { index = s.index, line = s.line }) end
    if s.non_transactional and not (s.before_pg and server_version and server_version >= s.before_pg) then
      table.insert(ex.non_transactional, { index = s.index, line = s.line, reason = s.non_transactional_reason })
    end
  end
  ex.unit = unit_mode or "file"
  ex.all_or_nothing = ex.unit == "file" and #ex.tx_control == 0 and #ex.non_transactional == 0
  return ex
end

local function last_failed_row(e)
  local f
  for _, r in ipairs(e.rows) do if ledger.is_failed(r) then f = r end end
  return f
end

--- Diagnose the named migrations (default: every failed one).
---@return table list of diagnoses
function M.run(ctx, conn, st, names)
  local targets = {}
  if names and #names > 0 then
    for _, n in ipairs(names) do
      local e = st.by_name[n]
      if not e then
        ui.fail { message = ("no migration named \"%s\" (neither a folder in %s nor a ledger row)"):format(n, ctx:project().migrations_dir),
                  hint = "give the whole folder name, e.g. 20240312141500_sla_kb_forms_email; see migfix status", code = ui.EXIT.USAGE }
      end
      targets[#targets + 1] = e
    end
  else
    for _, e in ipairs(st.migrations) do if e.state == "failed" then targets[#targets + 1] = e end end
  end
  if #targets == 0 then return {} end

  local schema = st.schema
  local server_version = conn:server_version()
  local units, schemas, seen = {}, { schema }, { [schema] = true }
  -- only the objects the migrations name (and what hangs off their tables):
  -- the snapshot stays small on a schema of thousands of tables
  local names, named = {}, {}
  for i, e in ipairs(targets) do
    local loc = e["local"]
    if loc and loc.has_sql then
      units[i] = M.analyze(loc.sql_path, loc.text)
      for _, ef in ipairs(units[i].effects) do
        for _, f in ipairs({ "schema", "ref_schema" }) do
          local s = ef[f]
          if type(s) == "string" and not seen[s] then seen[s] = true; schemas[#schemas + 1] = s end
        end
        for _, f in ipairs({ "name", "new_name", "table", "ref_table", "enum" }) do
          local n = ef[f]
          if type(n) == "string" and not named[n] then named[n] = true; names[#names + 1] = n end
        end
      end
    end
  end
  local snap, serr = catalog.snapshot(conn, schemas, names)
  if not snap then
    ui.fail { message = "could not read the catalog: " .. tostring(serr), code = ui.EXIT.FAILURE }
  end

  local out = {}
  for i, e in ipairs(targets) do
    local d = { name = e.name, state = e.state, row = last_failed_row(e) }
    local loc = e["local"]
    if not loc then
      d.verdict = "unverifiable"
      d.summary = "no local folder: the migration's SQL is not here, so nothing can be checked"
    elseif not loc.has_sql then
      d.verdict = "unverifiable"
      d.summary = ("no migration.sql in %s"):format(loc.path)
    else
      local unit = units[i]
      local ev = verify.compare(unit, snap, schema)
      d.unit = unit
      d.evidence = ev
      d.verdict = ev.verdict
      d.summary = ev.summary
      d.execution = M.execution(unit, server_version, ctx:project().unit)
      d.likely_failed_statement = verify.likely_failed_statement(unit, ev)
      d.file = { path = loc.sql_path, checksum = loc.checksum }
      if d.row and not ledger.null(d.row.checksum) then  -- a NULL checksum is a ledger problem (status)
        d.file.failed_checksum = d.row.checksum
        d.file.changed_since_failure = not mig.matches(loc.text, d.row.checksum)
      end
      if d.execution.all_or_nothing and d.verdict == "partial" then
        d.inconsistent = "the file runs as one transaction, so PostgreSQL applies all of it or none: "
          .. "a partial state means something else changed the schema (a hand fix, another deploy, or drift)"
      end
    end
    if d.row then
      d.error = errclass.parse(not ledger.null(d.row.logs) and d.row.logs or nil, d.row.logs_bytes)
    end
    out[#out + 1] = d
  end
  return out, snap
end

return M
