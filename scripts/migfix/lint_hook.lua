--- Wires lint and split into the resolution chain and into deploy:
---   * ctx.lint_hook(ctx, conn, d, m): fills the evidence `m.lint` =
---     {findings, errors, split = {parts summary}} for a failed migration when
---     the environment's chain has `split-large-migration`;
---   * ctx.before_deploy(ctx, conn, st): when the environment sets
---     lint_before_deploy = true, a pending migration with error-level
---     findings is not run: migfix refuses with the findings and the split;
---   * ctx.run_script: lock-aware execution (migfix.lockwait) when the
---     environment sets deploy.lock_timeout.
--- Install with `require("migfix.lint_hook").install(ctx)` before the
--- command decides or deploys.
local ui = require "migfix.ui"
local split = require "migfix.split"

local M = {}

M.POLICY = "split-large-migration"

local function lint_module()
  local ok, lint = pcall(require, "migfix.lint")
  if ok and type(lint) == "table" and lint.run_unit then return lint end
  return nil
end

--- Lint one analyzed unit against the live catalog with the environment's
--- settings. Returns the findings (a list, possibly empty), or nil when
--- migfix.lint is not available in this build.
---@return table[]|nil findings
---@return table[]? suppressions
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

function M.lint_unit(ctx, conn, unit, text, earlier)
  local lint = lint_module()
  if not lint then return nil end
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
  local snap = assert(require("migfix.catalog").snapshot(conn, schemas, #names > 0 and names or nil))
  M.overlay(snap, earlier, schema)
  local sizes = {}
  for key, t in pairs(snap.tables or {}) do
    local rows = tonumber(t.reltuples)
    sizes[key] = { rows = (rows and rows >= 0) and rows or nil, bytes = tonumber(t.bytes) }
  end
  local rule_paths = {}
  for _, d in ipairs(p.policy_paths or {}) do rule_paths[#rule_paths + 1] = d .. "/checks" end
  rule_paths[#rule_paths + 1] = ctx.info.home .. "/policies/checks"
  local rules, rerr = lint.load_rules(rule_paths)
  if not rules then ui.fail { message = "could not load lint rules: " .. tostring(rerr), code = ui.EXIT.USAGE } end
  local opts = {
    catalog = snap, sizes = sizes, schema = schema, server_version = conn:server_version(), unit_mode = p.unit,
    settings = lint.settings(p.env.lint), rules = rules, text = text,
  }
  local findings, suppressions = lint.run_unit(unit, opts)
  return findings or {}, suppressions
end

local function errors_of(findings)
  local n = 0
  for _, f in ipairs(findings or {}) do if f.severity == "error" then n = n + 1 end end
  return n
end
M.errors_of = errors_of

local function in_chain(p)
  for _, n in ipairs(p.policies or {}) do if n == M.POLICY then return true end end
  return false
end

--- The split proposal for a migration, for evidence and refusals.
function M.proposal(ctx, conn, name, text, unit)
  local p = ctx:project()
  local prev, nxt, existing
  local list = ctx:migrations()
  existing = {}
  for i, m in ipairs(list) do
    existing[m.name] = true
    if m.name == name then prev = list[i - 1] and list[i - 1].name; nxt = list[i + 1] and list[i + 1].name end
  end
  return split.propose(unit, {
    name = name, text = text, lock_timeout = require("migfix.commands.split").lock_timeout(p), unit = p.unit,
    server_version = conn:server_version(), prev = prev, next = nxt, existing = existing,
    partitioned = split.partitioned(conn, ctx:schema()),
  })
end

--- The lint evidence of one migration: {available, findings, errors, split}.
function M.evidence(ctx, conn, name, text, unit, earlier)
  local findings = M.lint_unit(ctx, conn, unit, text, earlier)
  local ev = { available = findings ~= nil, findings = findings or {}, errors = errors_of(findings) }
  local parts, err = M.proposal(ctx, conn, name, text, unit)
  if parts then
    ev.split = split.summary(parts)
  else
    ev.split = {}
    ev.split_error = err
  end
  return ev
end

--- Text lines of findings and the proposed split, for refusals.
function M.lines(ev, name)
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

--- ctx.lint_hook: called by resolve.decide for every failed migration.
function M.hook(ctx, conn, d, m)
  local p = ctx:project()
  if not in_chain(p) or not d.unit then return end
  local text = d.file and d.file.path and (function()
    local f = io.open(d.file.path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
  end)()
  m.lint = M.evidence(ctx, conn, d.name, text, d.unit)
end

--- ctx.before_deploy: refuse pending migrations with error-level findings.
function M.before_deploy(ctx, conn, st)
  local p = ctx:project()
  if not p.env.lint_before_deploy then return end
  local diagnose = require "migfix.diagnose"
  local earlier = {}  -- effects of the pending migrations deployed before this one
  for _, name in ipairs(st.deploy.pending or {}) do
    local loc = st.by_name[name] and st.by_name[name]["local"]
    if loc and loc.has_sql and loc.text then
      local unit = diagnose.analyze(loc.sql_path, loc.text)
      local ev = M.evidence(ctx, conn, name, loc.text, unit, earlier)
      for _, e in ipairs(unit.effects) do earlier[#earlier + 1] = e end
      if ev.errors > 0 then
        ui.fail { message = ("migration \"%s\" is not run: %d error-level lint finding%s"):format(name, ev.errors, ev.errors == 1 and "" or "s"),
                  detail = table.concat(M.lines(ev, name), "\n"),
                  hint = ("review `migfix split %s`, then `migfix split %s --write` and deploy again; nothing was applied"):format(name, name),
                  code = ui.EXIT.ATTENTION, lint = ev }
      end
    end
  end
end

--- Install the hooks on a command context.
function M.install(ctx)
  ctx.lint_hook = M.hook
  ctx.before_deploy = M.before_deploy
  local p = ctx:project()
  local d = p.env.deploy
  if d and d.lock_timeout then
    ctx.run_script = require("migfix.lockwait").runner(d)
  end
  return ctx
end

return M
