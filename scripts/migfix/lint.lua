--- migfix.lint — lock- and size-aware checks of migration files.
---
--- Rules are small Lua files (policies/checks/*.lua, then <policy_path>/checks
--- of the team, which win on the same id), loaded in the policy sandbox. A
--- rule sees one statement at a time with its lock facts (migfix.locks), the
--- tables it touches (created earlier in the same file or not, live size when
--- a database is at hand) and the whole unit through `ctx`; it returns
--- findings. This module applies thresholds, severities and inline
--- suppressions (`-- migfix:ignore RULE reason`). README "Lint".
local guest = require "migfix.guest"
local locks = require "migfix.locks"
local ui = require "migfix.ui"
local sql = require "migfix.sql"
local execution = require "migfix.execution"

local M = {}

M.SEVERITIES = { error = 3, warning = 2, info = 1 }
--- nil: guest.deadline() (5 s, or $MIGFIX_SANDBOX_DEADLINE), for the rules of one statement together.
M.DEADLINE_SECONDS = nil

--- Defaults (README "Lint", thresholds): a table is large at
--- 1M rows or 1 GB (error), and worth a warning at a tenth of that.
M.DEFAULTS = {
  large_rows = 1000000, large_bytes = 1024 * 1024 * 1024, dml_rows = 10000, max_tables = 3,
  errors = {}, warnings = {}, off = {}, require_lock_timeout = true,
}

local function set_of(list)
  local s = {}
  for _, x in ipairs(list or {}) do s[x] = true end
  return s
end

--- The environment's `lint` table merged with the defaults.
---@param env_lint table|nil keys: large_rows, large_bytes, dml_rows, max_tables, errors, warnings, off, require_lock_timeout
---@return table settings { large_rows, large_bytes, warn_rows, warn_bytes, dml_rows, max_tables, errors = set, warnings = set, off = set, require_lock_timeout }
function M.settings(env_lint)
  if env_lint ~= nil and type(env_lint) ~= "table" then
    error("bad argument #1 to 'settings' (table expected) (expected lint.settings({ large_rows = ..., ... }))", 2)
  end
  env_lint = env_lint or {}
  for k in pairs(env_lint) do
    if M.DEFAULTS[k] == nil then
      error(("lint.settings: unrecognized key \"%s\" (expected large_rows, large_bytes, dml_rows, max_tables, errors, warnings, off, require_lock_timeout)"):format(tostring(k)), 2)
    end
  end
  local s = {}
  for k, v in pairs(M.DEFAULTS) do
    local x = env_lint[k]
    if x == nil then x = v end
    s[k] = x
  end
  s.warn_rows = s.large_rows / 10
  s.warn_bytes = s.large_bytes / 10
  s.errors, s.warnings, s.off = set_of(s.errors), set_of(s.warnings), set_of(s.off)
  if not s.require_lock_timeout then s.off.S11 = true end
  return s
end

---------------------------------------------------------------------------
-- Rules
---------------------------------------------------------------------------

local RULE_FIELDS = { id = true, title = true, description = true, default_severity = true, check = true }

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

--- A sandbox holding the lint guest code (and the rules, when given).
local function new_guest()
  local g = guest.new("lint rule", { "lint" }, { deadline = M.DEADLINE_SECONDS })
  g:define("locks", "migfix.locks")
  return g
end

local function list_lua(dir)
  local ok, dirent = pcall(require, "posix.dirent")
  local files = {}
  if ok then
    local okf, it = pcall(dirent.files, dir)
    if not okf then return files end
    for f in it do
      if f:match("%.lua$") then files[#files + 1] = dir .. "/" .. f end
    end
  end
  table.sort(files)
  return files
end

-- rule list -> its sandbox, with every rule loaded (weak: goes with the list)
local guests = setmetatable({}, { __mode = "k" })

--- Describe one rule file loaded in the sandbox g, or nil, why not.
local function describe_rule(g, path, text)
  local ok, d, info = g:call("lint_load", text, "@" .. path)
  if not ok then return nil, ("lint rule %s failed to load: %s"):format(path, guest.explain(d, info)) end
  if d.syntax then return nil, "syntax error in lint rule: " .. tostring(d.syntax) end
  if d.error then return nil, ("lint rule %s failed to load: %s"):format(path, d.error:match("^[^\n]*")) end
  if d.type ~= "table" or not d.id or d.check ~= "function" then
    return nil, ("lint rule %s must return a table with id, title, default_severity and check(s, ctx)"):format(path)
  end
  for _, k in ipairs(d.fields) do
    if not RULE_FIELDS[k] then
      return nil, ("lint rule %s: unrecognized field \"%s\" (expected id, title, description, default_severity, check)"):format(path, k)
    end
  end
  local sev = d.default_severity or "warning"
  if not M.SEVERITIES[sev] then
    return nil, ("lint rule %s: default_severity must be error, warning or info, not \"%s\""):format(path, sev)
  end
  if not d.id:match("^[%w_%-]+$") then
    return nil, ("lint rule %s: invalid id \"%s\""):format(path, d.id)
  end
  return { id = d.id, title = d.title or d.id, description = d.description, default_severity = sev, file = path, source = text }
end

--- Load one rule file in a sandbox and check its shape. The rule is kept
--- as data (its source included): run_unit runs it in a sandbox of its own.
---@param path string
---@return table rule { id, title, description?, default_severity, file, source }
---@overload fun(path: string): nil, string
function M.load_rule(path, g)
  local text, err = read_file(path)
  if not text then return nil, ("could not read lint rule %s: %s"):format(path, tostring(err)) end
  if g then return describe_rule(g, path, text) end
  local own <close> = new_guest()
  return describe_rule(own, path, text)
end

--- The sandbox of a rule list, every rule loaded in it; its data released
--- (the previous unit's) so the next unit can be handed in.
local function guest_for(rules)
  local g = guests[rules]
  if g and g.sb:stats().stopped then g:close() g = nil end
  if g then
    g.sb:release()
    return g
  end
  g = new_guest()
  for _, rule in ipairs(rules) do
    if type(rule.source) ~= "string" then
      g:close()
      error("lint.run_unit: opts.rules must come from lint.load_rules(paths)", 3)
    end
    local d, lerr = describe_rule(g, rule.file, rule.source)
    if not d then g:close() ui.fail { message = lerr, code = ui.EXIT.USAGE } end
  end
  g.sb:release()
  guests[rules] = g
  return g
end

--- Where rules are looked for: every policy path's checks/ (team rules,
--- which win on the same id), then the shipped policies/checks.
---@param policy_paths string[]
---@param home string migfix's home (scripts/ and policies/)
---@return string[]
function M.rule_paths(policy_paths, home)
  local paths = {}
  for _, d in ipairs(policy_paths or {}) do paths[#paths + 1] = d .. "/checks" end
  paths[#paths + 1] = home .. "/policies/checks"
  return paths
end


--- Load every rule of the given directories (first directory wins on an id).
---@param paths string[] directories holding rule files (team dirs first, shipped policies/checks last)
---@return table[] rules, sorted by id (S1, S2, ..., S10, S11, then others)
---@overload fun(paths: string[]): nil, string
function M.load_rules(paths)
  if type(paths) ~= "table" then
    error("bad argument #1 to 'load_rules' (table expected) (expected lint.load_rules({dir, ...}))", 2)
  end
  local by_id, out = {}, {}
  local g <close> = new_guest()
  for _, dir in ipairs(paths) do
    local here = {}
    for _, f in ipairs(list_lua(dir)) do
      local rule, err = M.load_rule(f, g)
      if not rule then return nil, err end
      if here[rule.id] then
        return nil, ("lint rules %s and %s both have id \"%s\""):format(here[rule.id], f, rule.id)
      end
      here[rule.id] = f
      if not by_id[rule.id] then
        by_id[rule.id] = rule
        out[#out + 1] = rule
      end
    end
  end
  table.sort(out, function(a, b)
    local na, nb = tonumber(a.id:match("^S(%d+)$")), tonumber(b.id:match("^S(%d+)$"))
    if na and nb then return na < nb end
    if na or nb then return na ~= nil end
    return a.id < b.id
  end)
  return out
end

---------------------------------------------------------------------------
-- Suppressions
---------------------------------------------------------------------------

--- `-- migfix:ignore S6[,S7] reason` (next statement, or the statement on
--- whose lines it sits) and `-- migfix:ignore-file S10 reason`.
local function suppressions(text, file)
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    local scope, ids, reason = line:match("%-%-%s*migfix:ignore(%-?%a*)%s*([%w_%-,]*)%s*(.-)%s*$")
    if scope then
      local r = { line = n, file = file, scope = scope == "-file" and "file" or "statement",
                  bad_scope = scope ~= "" and scope ~= "-file" and scope or nil,
                  reason = reason ~= "" and reason or nil, rules = {} }
      for id in ids:gmatch("[^,]+") do r.rules[#r.rules + 1] = id end
      out[#out + 1] = r
    end
  end
  return out
end

local function attach(sup, statements)
  for _, s in ipairs(statements) do
    if s.line <= sup.line and sup.line <= s.end_line then return s.index end
  end
  for _, s in ipairs(statements) do
    if s.line > sup.line then return s.index end
  end
  return nil
end

---------------------------------------------------------------------------
-- The statement context
---------------------------------------------------------------------------

local function tx_kind(node)
  local t = node and node.TransactionStmt
  if not t then return nil end
  local k = t.kind
  if k == "TRANS_STMT_BEGIN" or k == "TRANS_STMT_START" then return "begin" end
  if k == "TRANS_STMT_COMMIT" or k == "TRANS_STMT_ROLLBACK" or k == "TRANS_STMT_PREPARE" then return "end" end
  return nil
end

-- index name -> table, per catalog snapshot (weak: dropped with the snapshot)
local index_tables = setmetatable({}, { __mode = "k" })

--- Lint one migration file.
---@param unit table effects.analyze(text, file) (unit.text, or opts.text, gives the comments for suppressions)
---@param opts table { settings, rules, sizes = {["schema.table"] = {rows=, bytes=}} | nil (offline), unit_mode = "file"|"statement", server_version, schema = default schema ("public"), catalog = snapshot | nil, text }
---@return table[] findings { rule, title, severity, file, line, statement, table, lock, why, alternative, rows, bytes }
---@return table[] suppressions { rule, reason, file, line, statement, scope, matched }
function M.run_unit(unit, opts)
  if type(unit) ~= "table" or type(unit.statements) ~= "table" then
    error("bad argument #1 to 'run_unit' (a unit of effects.analyze expected) (expected lint.run_unit(unit, opts))", 2)
  end
  opts = opts or {}
  local known = { settings = true, rules = true, sizes = true, unit_mode = true, server_version = true, schema = true,
                  catalog = true, text = true }
  for k in pairs(opts) do
    if not known[k] then
      error(("lint.run_unit: unrecognized option \"%s\" (expected settings, rules, sizes, unit_mode, server_version, schema, catalog, text)"):format(tostring(k)), 2)
    end
  end
  local settings = opts.settings or M.settings()
  local rules = opts.rules
  if not rules then error("lint.run_unit: opts.rules is required (lint.load_rules(paths))", 2) end
  local mode = opts.unit_mode or "file"
  local schema_default = opts.schema or "public"
  local sizes = opts.sizes
  local catalog = opts.catalog
  local server_version = opts.server_version
  local file = unit.file or "?"

  -- effects by statement
  local effs = {}
  for _, e in ipairs(unit.effects or {}) do
    effs[e.stmt] = effs[e.stmt] or {}
    table.insert(effs[e.stmt], e)
  end

  local function tkey(schema, name) return (schema or schema_default) .. "." .. name end
  local index_table = catalog and index_tables[catalog]
  if not index_table then
    -- built once per snapshot, not once per unit (1,000 units x 2,000 indexes)
    index_table = {}
    if catalog and catalog.indexes then
      for _, ix in pairs(catalog.indexes) do index_table[(ix.schema or schema_default) .. "." .. ix.name] = { schema = ix.schema, table = ix.table } end
      index_tables[catalog] = index_table
    end
  end

  local created = {}        -- tables created so far in this file
  local created_index = {}  -- index -> table, created in this file
  local stmts = {}
  local ex = execution.of(unit, { unit = mode, server_version = server_version })
  for _, st in ipairs(unit.statements) do
    local tree = sql.parse(st.text)
    local node = tree and tree.stmts and tree.stmts[1] and tree.stmts[1].stmt
    local seg = ex.segment_of[st.index]
    local nontx = execution.non_transactional(st, server_version)
    local s = {
      index = st.index, line = st.line, end_line = st.end_line, text = st.text, kind = st.kind, file = file,
      tx_control = st.tx_control, tx = tx_kind(node), non_transactional = nontx or false,
      non_transactional_reason = st.non_transactional_reason, segment = seg, node = node,
      effects = effs[st.index] or {}, tables = {}, by_table = {},
    }
    s.actions = locks.actions(st, s.effects, node)
    -- SET of a setting
    local vs = node and node.VariableSetStmt
    if vs then
      local v = vs.args and vs.args[1] and vs.args[1].A_Const
      local val = v and ((v.sval and v.sval.sval) or (v.ival and tostring(v.ival.ival or 0))) or nil
      if v and v.ival and not v.ival.ival then val = "0" end
      s.set = { name = vs.name, value = val, is_local = vs.is_local == true }
    end
    local function table_info(schema, name, via)
      local key = tkey(schema, name)
      local t = s.by_table[key]
      if not t then
        t = { key = key, schema = schema or schema_default, table = name, keys = {}, new = created[key] == true }
        if sizes then
          local z = sizes[key]
          t.exists = z ~= nil and not t.new
          if z then t.rows, t.bytes = z.rows, z.bytes end
        else
          t.exists = not t.new
        end
        s.by_table[key] = t
        s.tables[#s.tables + 1] = t
      end
      return t
    end
    for _, a in ipairs(s.actions) do
      local f = a.fact
      if a.index and not a.table then
        local ik = tkey(a.schema, a.index)
        local owner = created_index[ik] or index_table[ik]
        if owner then a.schema, a.table = owner.schema, owner.table end
      end
      if a.key == "create_table" and a.table then
        -- the table is new from here on (this statement included)
        created[tkey(a.schema, a.table)] = true
      end
      if a.key:find("^create_index") and a.index and a.table then
        created_index[tkey(a.schema, a.index)] = { schema = a.schema or schema_default, table = a.table }
      end
      if a.table then
        local t = table_info(a.schema, a.table)
        t.lock = locks.max(t.lock, a.lock)
        t.keys[#t.keys + 1] = a.key
        if a.key == "alter_table.alter_type" then
          local old
          local ct = catalog and catalog.tables and catalog.tables[t.key]
          if ct and ct.columns and ct.columns[a.column] then old = ct.columns[a.column].type end
          a.old_type = old
          if old then a.rewrite = not locks.binary_coercible(old, a.new_type) end
        end
        if a.key == "alter_table.set_not_null" and catalog and catalog.constraints and a.column then
          -- PostgreSQL 12+ skips the scan when a validated CHECK (col IS NOT NULL) exists
          for _, c in pairs(catalog.constraints) do
            if c.schema == t.schema and c.table == t.table and c.contype == "c" and c.validated ~= false
               and type(c.expr) == "string" and c.expr:upper():find("IS NOT NULL", 1, true)
               and c.expr:find(a.column, 1, true) and (server_version or 0) >= 120000 then
              a.proven = true
            end
          end
        end
        if a.rewrite == true or (a.rewrite and t.rewrite ~= true) then t.rewrite = a.rewrite end
        if f.scan then t.scan = true end
        if f.dml then t.dml = a.key end
        a.info = t
        if a.ref_table then
          local r = table_info(a.ref_schema, a.ref_table)
          r.lock = locks.max(r.lock, a.also)
          r.referenced = true
          r.keys[#r.keys + 1] = a.key .. " (referenced)"
          a.ref_info = r
        end
      end
      if f.dml then s.dml = true end
    end
    -- CREATE TABLE ... AS and temporary tables are new tables too (no
    -- create_table action: CREATE TABLE AS has no lock facts of its own)
    for _, e in ipairs(s.effects) do
      if e.kind == "table" and e.action == "create" and not s.by_table[tkey(e.schema, e.name)] then
        created[tkey(e.schema, e.name)] = true
        table_info(e.schema, e.name)
      end
    end
    s.lock = nil
    for _, t in ipairs(s.tables) do s.lock = locks.max(s.lock, t.lock) end
    s.ddl = not s.dml and not s.set and not s.tx_control and #s.actions > 0 and s.actions[1].key ~= "set"
    stmts[#stmts + 1] = s
  end

  -- the rules run in a sandbox of their own (one per rule list, reused from
  -- unit to unit): they see the statements and the unit read-only, and
  -- build ctx there (guest/lint.lua)
  local g = guest_for(rules)
  local on = {}
  for k, rule in ipairs(rules) do
    if not settings.off[rule.id] then on[#on + 1] = { index = k, id = rule.id } end
  end
  local uok, uerr = g:call("lint_unit", {
    statements = stmts, file = file, unit_mode = mode, server_version = server_version, settings = settings,
    schema = schema_default, sizes = sizes, on = on,
  })
  if not uok then error(("lint: could not hand %s to the sandbox: %s"):format(file, tostring(uerr)), 0) end
  local by_id = {}
  for _, rule in ipairs(rules) do by_id[rule.id] = rule end

  -- suppressions
  local sups = suppressions(opts.text or unit.text or "", file)
  local rule_ids = {}
  for _, r in ipairs(rules) do rule_ids[r.id] = r end
  local findings = {}
  local suppressed = {}  -- stmt index or "file" -> rule -> suppression record
  local sup_records = {}
  for _, sp in ipairs(sups) do
    local idx = sp.scope == "file" and "file" or attach(sp, unit.statements)
    local problem
    if sp.bad_scope then
      problem = ("unrecognized suppression \"migfix:ignore%s\" (expected migfix:ignore or migfix:ignore-file)"):format(sp.bad_scope)
    elseif #sp.rules == 0 then
      problem = "a suppression must name the rule: -- migfix:ignore RULE reason"
    elseif not sp.reason then
      problem = ("the suppression of %s has no reason: a suppression must say why it is safe"):format(table.concat(sp.rules, ","))
    end
    for _, id in ipairs(sp.rules) do
      if not problem and not rule_ids[id] then
        problem = ("unrecognized rule \"%s\" in a suppression"):format(id)
      end
    end
    if problem then
      findings[#findings + 1] = { rule = "suppression", title = "invalid suppression", severity = "error", file = file,
        line = sp.line, statement = type(idx) == "number" and idx or nil, why = problem,
        alternative = "-- migfix:ignore " .. (sp.rules[1] or "S6") .. " <why this is safe here>" }
    else
      for _, id in ipairs(sp.rules) do
        local rec = { rule = id, reason = sp.reason, file = file, line = sp.line, scope = sp.scope,
                      statement = type(idx) == "number" and idx or nil, matched = false }
        sup_records[#sup_records + 1] = rec
        if idx then
          suppressed[idx] = suppressed[idx] or {}
          suppressed[idx][id] = rec
        end
      end
    end
  end

  -- run the rules
  for _, s in ipairs(stmts) do
    local cok, out, info = g:call("lint_check", s.index)
    if not cok then
      local who = info and info.where and info.where:match("^(.-):%d+$")
      local rule_of = who and (function() for _, r in ipairs(rules) do if r.file == who then return r end end end)()
      ui.fail { message = ("lint rule %s%s on %s:%d: %s"):format(rule_of and (rule_of.id .. " (" .. rule_of.file .. ")") or "",
                  rule_of and " failed" or "failed", file, s.line, guest.explain(out, info)),
                hint = "fix the rule file (README \"Lint\" shows the shape)", code = ui.EXIT.USAGE }
    end
    if out.failed then
      local rule = by_id[out.failed]
      if out.returned then
        ui.fail { message = ("lint rule %s must return a list of findings or nil, got %s"):format(out.failed, out.returned),
                  hint = ("fix %s"):format(rule.file), code = ui.EXIT.USAGE }
      end
      local first = tostring(out.error):match("^[^\n]*")
      ui.fail { message = ("lint rule %s (%s) failed on %s:%d: %s"):format(out.failed, rule.file or "?", file, s.line, first),
                detail = out.error ~= first and out.error or nil, hint = "fix the rule file (README \"Lint\" shows the shape)",
                code = ui.EXIT.USAGE }
    end
    for _, rule in ipairs(rules) do
      local res = out[rule.id]
      if res ~= nil then
        if res and (res.why or res.rule) then res = { res } end
        for _, f in ipairs(res or {}) do
          local base = f.severity or rule.default_severity
          if settings.errors[rule.id] then base = "error" elseif settings.warnings[rule.id] then base = "warning" end
          local sev = base
          if (f.band == "warning" or f.band == "unknown") and sev == "error" then sev = "warning" end
          if not M.SEVERITIES[sev] then
            error(("lint rule %s: severity must be error, warning or info, not \"%s\""):format(rule.id, tostring(sev)), 0)
          end
          local t = f.table_info
          local finding = {
            rule = rule.id, title = rule.title, severity = sev, file = file, line = f.line or s.line,
            statement = s.index, table = f.table or (t and t.key) or nil, lock = f.lock or (t and t.lock) or nil,
            why = tostring(f.why or rule.title), alternative = f.alternative and tostring(f.alternative) or nil,
            rows = t and t.rows or nil, bytes = t and t.bytes or nil,
          }
          local sp = (suppressed[s.index] and suppressed[s.index][rule.id]) or (suppressed.file and suppressed.file[rule.id])
          if sp then
            sp.matched = true
            sp.findings = (sp.findings or 0) + 1
            sp.severity = sp.severity and (M.SEVERITIES[sp.severity] >= M.SEVERITIES[sev] and sp.severity or sev) or sev
          else
            findings[#findings + 1] = finding
          end
        end
      end
    end
  end
  for _, rec in ipairs(sup_records) do
    if not rec.matched then
      findings[#findings + 1] = { rule = "suppression", title = "unused suppression", severity = "info", file = file,
        line = rec.line, statement = rec.statement,
        why = ("-- migfix:ignore %s matches no finding%s"):format(rec.rule, rec.scope == "file" and " in this file" or " on the next statement"),
        alternative = "remove it, or move it just above the statement it is meant for" }
    end
  end
  table.sort(findings, function(a, b)
    if a.line ~= b.line then return a.line < b.line end
    return tostring(a.rule) < tostring(b.rule)
  end)
  return findings, sup_records
end

--- Count findings by severity.
function M.counts(findings)
  local c = { error = 0, warning = 0, info = 0 }
  for _, f in ipairs(findings) do c[f.severity] = c[f.severity] + 1 end
  return c
end

return M
