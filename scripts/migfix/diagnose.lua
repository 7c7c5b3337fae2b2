--- Diagnosis: for each failed migration, which of its effects exist in the
--- database, object by object, and what the recorded error says.
--- This is the evidence every policy decides from (docs/policies.md).
local ui = require "migfix.ui"
local effects = require "migfix.effects"
local catalog = require "migfix.catalog"
local verify = require "migfix.verify"
local errclass = require "migfix.errclass"
local ledger = require "migfix.ledger"
local execution = require "migfix.execution"

local M = {}

-- path -> {text, unit}: the last analyses, kept for a fleet run (every
-- target diagnoses the same few files; a unit is only read once made).
-- Bounded: a long history's pending files are not all kept.
local analysed, n_analysed = {}, 0
local ANALYSED_MAX = 32

--- Parse a migration file into statements and effects; raises a usage
--- error naming file:line on a syntax error. The same text at the same
--- path gives the same (shared, read-only) unit.
function M.analyze(path, text)
  local hit = analysed[path]
  if hit and hit.text == text then return hit.unit end
  local unit, err = effects.analyze(text, path)
  if unit then
    if not hit then
      if n_analysed >= ANALYSED_MAX then analysed, n_analysed = {}, 0 end
      n_analysed = n_analysed + 1
    end
    analysed[path] = { text = text, unit = unit }
  end
  if not unit then
    ui.fail { message = ("%s:%s:%s: %s"):format(path, err.line or "?", err.column or "?", err.message),
              detail = "the file is not valid PostgreSQL SQL (checked with PostgreSQL's own parser, libpg_query 17)",
              hint = "fix the statement at that line; Prisma would fail on it too", code = ui.EXIT.USAGE }
  end
  return unit
end

--- How the file executes under Prisma: one implicit transaction (native
--- engine, unit "file") unless it has its own transaction control or
--- statements that cannot run in a transaction block. `engine` is what the
--- failed row's logs show (errclass.engine): the driver-adapter / wasm
--- engine sends the file statement by statement, whatever the configuration.
function M.execution(unit, server_version, unit_mode, engine)
  local mode = engine == "adapter" and "statement" or unit_mode or "file"
  local ex = execution.public(execution.of(unit, { unit = mode, server_version = server_version, engine = engine }))
  if engine == "adapter" then
    ex.reason = "the failed row's logs are the driver-adapter (wasm) engine's (\"external connector error\"): " ..
      "it sends migration.sql statement by statement, each committing on its own, so the statements before " ..
      "the failing one stay applied"
  elseif mode == "statement" then
    ex.reason = "unit = \"statement\" in the configuration: each statement commits on its own"
  end
  return ex
end

local function last_failed_row(e)
  local f
  for _, r in ipairs(e.rows) do if ledger.is_failed(r) then f = r end end
  return f
end

local function err_text(e)
  if ui.is_error(e) then return e.message .. (e.detail and (": " .. e.detail) or "") end
  return tostring(e)
end

--- One migration's diagnosis from its unit and the snapshot.
local function diagnose_one(ctx, conn, d, e, unit, snap, schema, server_version)
  local loc = e["local"]
  local logs = d.row and not ledger.null(d.row.logs) and d.row.logs or nil
  if d.row then d.error = errclass.parse(logs, d.row.logs_bytes) end
  d.execution = M.execution(unit, server_version, ctx:project().unit, errclass.engine(logs))
  -- the rows of its data statements (UPDATE/DELETE/INSERT), read-only
  local fixpoints
  for _, s in ipairs(unit.statements) do
    if s.kind == "UpdateStmt" or s.kind == "DeleteStmt" or s.kind == "InsertStmt" then
      fixpoints = require("migfix.datacheck").fixpoint_evidence(ctx, conn, unit, snap)
      break
    end
  end
  -- the queries of the views it creates, compared by their plans (read-only)
  local views
  for _, s in ipairs(unit.statements) do
    if s.kind == "ViewStmt" or s.kind == "CreateTableAsStmt" then
      views = require("migfix.datacheck").viewplan_evidence(ctx, conn, unit, snap)
      break
    end
  end
  local ev = verify.compare(unit, snap, schema, { unit = d.execution.unit, server_version = server_version,
                                                  data = fixpoints, views = views })
  d.unit = unit
  d.evidence = ev
  d.verdict = ev.verdict
  d.summary = ev.summary
  d.likely_failed_statement = verify.likely_failed_statement(unit, ev)
  d.file = { path = loc.sql_path, checksum = loc.checksum }
  if d.row and not ledger.null(d.row.checksum) then  -- a NULL checksum is a ledger problem (status)
    d.file.failed_checksum = d.row.checksum
    -- the file's checksum, computed when it was read, settles the usual case (no second hash)
    d.file.changed_since_failure = not ledger.matches(loc, d.row.checksum)
  end
  if d.execution.all_or_nothing and d.verdict == "partial" then
    d.inconsistent = "the file runs as one transaction, so PostgreSQL applies all of it or none: "
      .. "a partial state means something else changed the schema (a hand fix, another deploy, or drift)"
  elseif d.verdict == "partial" and d.execution.engine == "adapter" then
    d.partial_expected = "expected with this engine: the statements before the failing one committed on their own"
  end
end

--- Diagnose the named migrations (default: every failed one). An internal
--- error while diagnosing one migration makes its verdict `unverifiable`
--- (with the error in `internal_error`); the others are still diagnosed.
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
  local units, failures = {}, {}
  local schemas, seen = { schema }, { [schema] = true }
  -- only the objects the migrations name (and what hangs off their tables):
  -- the snapshot stays small on a schema of thousands of tables
  local names_list, named = {}, {}
  for i, e in ipairs(targets) do
    local loc = e["local"]
    if loc and loc.has_sql then
      local ok, unit = pcall(M.analyze, loc.sql_path, loc.text)
      if not ok then
        if ui.is_error(unit) then error(unit, 0) end -- a file that does not parse: a usage error
        failures[i] = unit
      else
        units[i] = unit
        local ok2, err = pcall(function()
          for _, s in ipairs(verify.schemas(unit, schema)) do
            if not seen[s] then seen[s] = true; schemas[#schemas + 1] = s end
          end
          for _, n in ipairs(verify.names(unit)) do
            if not named[n] then named[n] = true; names_list[#names_list + 1] = n end
          end
        end)
        if not ok2 then failures[i], units[i] = err, nil end
      end
    end
  end
  local snap, serr = catalog.snapshot(conn, schemas, names_list)
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
      local ok, err = true, failures[i]
      if not err then ok, err = pcall(diagnose_one, ctx, conn, d, e, units[i], snap, schema, server_version) end
      if not ok or failures[i] then
        -- one migration's internal error does not hide the others
        local msg = err_text(err)
        d.verdict = "unverifiable"
        d.summary = "migfix could not diagnose this migration (internal error): " .. msg
        d.internal_error = msg
        d.evidence, d.likely_failed_statement, d.inconsistent, d.partial_expected = nil, nil, nil, nil
        d.file = d.file or { path = loc.sql_path, checksum = loc.checksum }
        if d.row then
          d.error = d.error or errclass.parse(not ledger.null(d.row.logs) and d.row.logs or nil, d.row.logs_bytes)
        end
      end
    end
    if d.row and not d.error then
      d.error = errclass.parse(not ledger.null(d.row.logs) and d.row.logs or nil, d.row.logs_bytes)
    end
    out[#out + 1] = d
  end
  return out, snap
end

return M
