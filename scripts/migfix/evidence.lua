--- migfix.evidence — the one evidence step. `prepare` builds, once,
--- everything a decision may use: the ledger as Prisma classifies it, the
--- diagnosis of every failed migration, what the policies of the chain
--- declare they need (lint findings and the proposed split, ...), the lint
--- of the pending migrations when the environment lints before deploying,
--- who holds Prisma's lock, and the environment. plan, run, simulate and
--- deploy decide from it; `migfix exec` scripts get it from the same call.
---
---   evidence.prepare(ctx, conn [, {names=, pending=, needs=, st=}]) -> E
---     E.st        ledger + local folders (ledger.classify), E.schema
---     E.items     { {diag = <diagnose record>, m = <policy evidence>} } per failed migration
---     E.pending   { {name, unit, lint} } when opts.pending
---     E.env       what policies see as `env` (docs/policies.md)
---     E.lock      { held = bool, holders = {{pid, application_name, usename, since}} } (other sessions)
---   evidence.of(diag)                 -> the policy evidence `m` of one diagnosis
---   evidence.lint(ctx, conn, name, text, unit [, earlier]) -> {available, findings, errors, split}
-- @module migfix.evidence
local ui = require "migfix.ui"
local diagnose = require "migfix.diagnose"
local ledger = require "migfix.ledger"
local split = require "migfix.split"

local M = {}

--- What a policy may declare in `needs` (docs/policies.md).
M.NEEDS = { lint = true, posix = true, data = true }

--- The evidence a policy sees for one failed migration (docs/policies.md "Evidence").
---@param d table a record of diagnose.run
---@return table m
function M.of(d)
  local objects = {}
  for _, it in ipairs(d.evidence and d.evidence.items or {}) do
    objects[#objects + 1] = { kind = it.kind, schema = it.schema, name = it.name, table = it.table, action = it.action,
                              state = it.state, diffs = it.diffs or {}, line = it.line, reason = it.reason }
  end
  local stmts = {}
  for _, s in ipairs(d.unit and d.unit.statements or {}) do
    stmts[#stmts + 1] = { index = s.index, line = s.line, text = s.text, kind = s.kind, tx_control = s.tx_control,
                          non_transactional = s.non_transactional, unverifiable = s.unverifiable }
  end
  return {
    name = d.name, state = d.state, verdict = d.verdict, summary = d.summary or "",
    file = d.file or { changed_since_failure = false },
    error = d.error or {},
    execution = d.execution or {},
    counts = (d.evidence and d.evidence.counts) or { present = 0, missing = 0, different = 0, absent = 0, still_present = 0, unverifiable = 0 },
    objects = objects, statements = stmts,
    likely_failed_statement = d.likely_failed_statement,
    inconsistent = d.inconsistent,
    invalid_indexes = d.invalid_indexes or (d.evidence and d.evidence.invalid_indexes) or {},
    in_progress = d.in_progress,
  }
end

--- The environment as policies see it.
function M.env(ctx, conn)
  local p = ctx:project()
  return { name = p.env_name, server_version = conn:server_version(), unit = p.unit,
           forbid = p.forbid, backup = p.backup }
end

-- ------------------------------------------------------------------ lint

--- Apply the constraint effects of migrations that run before this one
--- (pending in the same deploy) to a snapshot, so that a CHECK added
--- NOT VALID and validated by an earlier part counts as there.
function M.overlay(snap, earlier, schema)
  snap.constraints = snap.constraints or {}
  for _, e in ipairs(earlier or {}) do
    if e.kind == "constraint" and e.table and e.name then
      local key = (e.schema or schema) .. "." .. e.table .. "." .. e.name
      if e.action == "create" then
        snap.constraints[key] = { schema = e.schema or schema, table = e.table, name = e.name, contype = e.contype,
                                  validated = not e.not_valid, expr = e.expr, columns = e.columns }
      elseif e.action == "alter" and e.set and e.set.not_valid == false and snap.constraints[key] then
        snap.constraints[key].validated = true
      elseif e.action == "drop" then
        snap.constraints[key] = nil
      end
    end
  end
  return snap
end

--- Lint findings of one analysed unit against the live catalog (sizes from
--- pg_class) with the environment's settings.
---@return table[] findings
---@return table[] suppressions
function M.lint_findings(ctx, conn, unit, text, earlier)
  local lint = require "migfix.lint"
  local p = ctx:project()
  local schema = ctx:schema()
  local schemas, seen = { schema }, { [schema] = true }
  for _, e in ipairs(unit.effects or {}) do
    for _, s in ipairs({ e.schema, e.ref_schema }) do
      if s and not seen[s] then seen[s] = true; schemas[#schemas + 1] = s end
    end
  end
  -- only the tables the file names (and what hangs off them)
  local names, nseen = {}, {}
  for _, e in ipairs(unit.effects or {}) do
    for _, n in ipairs({ e.table, e.ref_table, e.kind == "table" and e.name or nil }) do
      if n and not nseen[n] then nseen[n] = true; names[#names + 1] = n end
    end
  end
  local snap, serr = require("migfix.catalog").snapshot(conn, schemas, #names > 0 and names or nil)
  if not snap then ui.fail { message = tostring(serr), code = ui.EXIT.FAILURE } end
  M.overlay(snap, earlier, schema)
  local sizes = {}
  for key, t in pairs(snap.tables or {}) do
    local rows = tonumber(t.reltuples)
    sizes[key] = { rows = (rows and rows >= 0) and rows or nil, bytes = tonumber(t.bytes) }
  end
  local rules, rerr = lint.load_rules(lint.rule_paths(p.policy_paths, ctx.info.home))
  if not rules then ui.fail { message = "could not load lint rules: " .. tostring(rerr), code = ui.EXIT.USAGE } end
  local findings, suppressions = lint.run_unit(unit, {
    catalog = snap, sizes = sizes, schema = schema, server_version = conn:server_version(), unit_mode = p.unit,
    settings = lint.settings(p.env.lint), rules = rules, text = text,
  })
  return findings or {}, suppressions
end

local function errors_of(findings)
  local n = 0
  for _, f in ipairs(findings or {}) do if f.severity == "error" then n = n + 1 end end
  return n
end
M.errors_of = errors_of

--- The split proposal of a migration (split.propose with the project's settings).
function M.proposal(ctx, conn, name, text, unit)
  local p = ctx:project()
  local list = ctx:migrations()
  local prev, nxt, existing = nil, nil, {}
  for i, m in ipairs(list) do
    existing[m.name] = true
    if m.name == name then prev = list[i - 1] and list[i - 1].name; nxt = list[i + 1] and list[i + 1].name end
  end
  return split.propose(unit, {
    name = name, text = text, lock_timeout = split.lock_timeout(p), unit = p.unit,
    server_version = conn:server_version(), prev = prev, next = nxt, existing = existing,
    partitioned = split.partitioned(conn, ctx:schema()),
  })
end

--- The lint evidence of one migration: {available, findings, errors, split}.
function M.lint(ctx, conn, name, text, unit, earlier)
  local findings = M.lint_findings(ctx, conn, unit, text, earlier)
  local ev = { available = true, findings = findings, errors = errors_of(findings) }
  local parts, err = M.proposal(ctx, conn, name, text, unit)
  if parts then
    ev.split = split.summary(parts)
  else
    ev.split = {}
    ev.split_error = err
  end
  return ev
end

--- Text lines of error-level findings and the proposed split, for refusals.
function M.lint_lines(ev, name)
  local lines = {}
  for _, f in ipairs(ev.findings or {}) do
    if f.severity == "error" then
      lines[#lines + 1] = ("%s line %s%s: %s"):format(f.rule, tostring(f.line or "?"),
        f.table and (" on \"" .. f.table .. "\"") or "", f.why or "")
    end
  end
  if #(ev.split or {}) > 0 then
    lines[#lines + 1] = ("proposed split (migfix split %s --write):"):format(name)
    for k, part in ipairs(ev.split) do
      lines[#lines + 1] = ("  %d. %s — %s"):format(k, part.name, part.kind)
    end
  end
  return lines
end

-- ------------------------------------------------------------------ prepare

local KNOWN_OPTS = { names = true, pending = true, needs = true, st = true }

--- Build the evidence once. opts.names: migrations to diagnose (default:
--- every failed one; false: none); opts.pending: also the pending migrations (with lint
--- when needs.lint or the environment's lint_before_deploy); opts.needs: a
--- set of what the chain's policies need ({lint = true}); opts.st: a ledger
--- state already read on this connection (under the lock).
---@return table E
function M.prepare(ctx, conn, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN_OPTS[k] then
      error(("bad option \"%s\" to 'prepare' (expected evidence.prepare(ctx, conn, {names=, pending=, needs=, st=}))"):format(tostring(k)), 2)
    end
  end
  local needs = opts.needs or {}
  local p = ctx:project()
  local st = opts.st or ctx:state(conn)
  local E = { st = st, schema = st.schema, env = M.env(ctx, conn), items = {}, needs = needs }
  E.lock = { holders = ledger.lock_holders(conn) or {} }
  E.lock.held = #E.lock.holders > 0

  local diags = opts.names == false and {} or diagnose.run(ctx, conn, st, opts.names)
  for _, d in ipairs(diags) do
    -- a failed-looking row (no finish, no logs) while another session holds
    -- Prisma's lock is a deploy still running, not a failure
    if E.lock.held and d.row and ledger.null(d.row.logs) then
      local h = E.lock.holders[1]
      d.in_progress = { pid = h.pid, application_name = h.application_name, since = h.since }
    end
    local m = M.of(d)
    if needs.lint and d.unit and d.file and d.file.path then
      local loc = st.by_name[d.name] and st.by_name[d.name]["local"]
      m.lint = M.lint(ctx, conn, d.name, loc and loc.text, d.unit)
    end
    -- data errors: the failing statement's precondition, counted read-only (migfix.datacheck)
    if needs.data and d.row then m.data = require("migfix.datacheck").evidence(ctx, conn, d) end
    E.items[#E.items + 1] = { diag = d, m = m }
  end

  if opts.pending then
    E.pending = {}
    local with_lint = needs.lint or p.env.lint_before_deploy
    local earlier = {}  -- effects of the pending migrations deployed before this one
    for _, name in ipairs(st.deploy.pending or {}) do
      local loc = st.by_name[name] and st.by_name[name]["local"]
      local rec = { name = name }
      if loc and loc.has_sql and loc.text then
        rec.unit = diagnose.analyze(loc.sql_path, loc.text)
        if with_lint then
          rec.lint = M.lint(ctx, conn, name, loc.text, rec.unit, earlier)
          for _, e in ipairs(rec.unit.effects) do earlier[#earlier + 1] = e end
        end
      end
      E.pending[#E.pending + 1] = rec
    end
  end
  return E
end

return M
