--- migfix.lint — lock- and size-aware checks of migration files.
---
--- Rules are small Lua files (policies/checks/*.lua, then <policy_path>/checks
--- of the team, which win on the same id). A rule sees one statement at a
--- time with its lock facts (migfix.locks), the tables it touches (created
--- earlier in the same file or not, live size when a database is at hand)
--- and the whole unit through `ctx`; it returns findings. The rules shipped
--- in migfix's own policies/checks are migfix's code and run here, over the
--- policy allow list with a deadline (policy.sandbox, policy.with_deadline);
--- a team's rules run in a guest state of their own (migfix.guest,
--- guest/lint.lua) that gets the same ctx read-only, handed in lazily.
--- This module applies thresholds, severities and inline suppressions
--- (`-- migfix:ignore RULE reason`). README "Lint", docs/policies.md "Sandbox".
local guest = require "migfix.guest"
local locks = require "migfix.locks"
local policy = require "migfix.policy"
local ui = require "migfix.ui"
local sql = require "migfix.sql"
local execution = require "migfix.execution"
local lintctx = require "migfix.lintctx"

local M = {}

M.SEVERITIES = { error = 3, warning = 2, info = 1 }
--- nil: guest.deadline() (5 s, or $MIGFIX_SANDBOX_DEADLINE): for one rule on one
--- statement (shipped rules), for a team's rules on one statement together.
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

local function with_deadline(fn, ...)
  return policy.with_deadline("lint rule", M.DEADLINE_SECONDS, fn, ...)
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

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

local function realpath(p)
  local ok, stdlib = pcall(require, "posix.stdlib")
  local r = ok and stdlib.realpath(p) or nil
  return r or p
end

-- migfix's own rules: policies/checks of the tree these scripts are in
local shipped_dir
local function shipped()
  if shipped_dir == nil then
    local me = package.searchpath("migfix.lint", package.path)
    local home = me and me:match("^(.*)/scripts/migfix/lint%.lua$")
    shipped_dir = home and realpath(home .. "/policies/checks") or false
  end
  return shipped_dir
end

--- Whether the rules of dir are migfix's own (its shipped policies/checks),
--- which run in migfix's state; any other directory's run in a guest.
---@param dir string
---@return boolean
function M.is_shipped(dir)
  local own = shipped()
  return own and realpath(dir) == own or false
end

--- A guest holding the lint guest code (a team's rules are loaded into it).
local function new_guest()
  local g = guest.new("lint rule", { "lint" }, { deadline = M.DEADLINE_SECONDS })
  g:define("locks", "migfix.locks")
  g:define("lintctx", "migfix.lintctx")
  return g
end

local function check_shape(path, id, fields, sev)
  if type(id) ~= "string" then
    return ("lint rule %s must return a table with id, title, default_severity and check(s, ctx)"):format(path)
  end
  for _, k in ipairs(fields) do
    if not RULE_FIELDS[k] then
      return ("lint rule %s: unrecognized field \"%s\" (expected id, title, description, default_severity, check)"):format(path, tostring(k))
    end
  end
  if not M.SEVERITIES[sev] then
    return ("lint rule %s: default_severity must be error, warning or info, not \"%s\""):format(path, tostring(sev))
  end
  if not id:match("^[%w_%-]+$") then return ("lint rule %s: invalid id \"%s\""):format(path, id) end
  return nil
end

-- A shipped rule, loaded here over the policy allow list.
local function load_own(path)
  local chunk, err = loadfile(path, "t", policy.sandbox())
  if not chunk then return nil, "syntax error in lint rule: " .. tostring(err) end
  local ok, rule = with_deadline(chunk)
  if not ok then return nil, ("lint rule %s failed to load: %s"):format(path, tostring(rule):match("^[^\n]*")) end
  if type(rule) ~= "table" or type(rule.check) ~= "function" then
    return nil, ("lint rule %s must return a table with id, title, default_severity and check(s, ctx)"):format(path)
  end
  local fields = {}
  for k in pairs(rule) do fields[#fields + 1] = k end
  rule.default_severity = rule.default_severity or "warning"
  local bad = check_shape(path, rule.id, fields, rule.default_severity)
  if bad then return nil, bad end
  rule.title = rule.title or rule.id
  rule.file = path
  return rule
end

-- A team's rule, loaded in the guest g: kept as data (its source included);
-- M.check loads it again into the guest of its rule list.
local function load_guest(g, path, text)
  local ok, d, info = g:call("lint_load", text, "@" .. path)
  if not ok then return nil, ("lint rule %s failed to load: %s"):format(path, guest.explain(d, info)) end
  if d.syntax then return nil, "syntax error in lint rule: " .. tostring(d.syntax) end
  if d.error then return nil, ("lint rule %s failed to load: %s"):format(path, d.error:match("^[^\n]*")) end
  if d.type ~= "table" or d.check ~= "function" then
    return nil, ("lint rule %s must return a table with id, title, default_severity and check(s, ctx)"):format(path)
  end
  local sev = d.default_severity or "warning"
  local bad = check_shape(path, d.id, d.fields, sev)
  if bad then return nil, bad end
  return { id = d.id, title = d.title or d.id, description = d.description, default_severity = sev, file = path,
           source = text }
end

--- Load one rule file and check its shape: a shipped one here (with its
--- check function), a team's one in a guest (as data: id, title, ...,
--- source; it runs in a guest of its own).
---@param path string
---@return table rule { id, title, description?, default_severity, file, check | source }
---@overload fun(path: string): nil, string
function M.load_rule(path, g)
  if M.is_shipped(path:match("^(.*)/[^/]*$") or ".") then return load_own(path) end
  local text, err = read_file(path)
  if not text then return nil, ("could not read lint rule %s: %s"):format(path, tostring(err)) end
  if g then return load_guest(g, path, text) end
  local own <close> = new_guest()
  return load_guest(own, path, text)
end

-- rule list -> the guest of its team rules, every one loaded (weak: goes with the list)
local guests = setmetatable({}, { __mode = "k" })

--- The guest of a rule list's team rules, each loaded in it; the data of
--- the previous file released so the next one can be handed in.
local function guest_for(rules, team)
  local g = guests[rules]
  if g and g.sb:stats().stopped then g.g:close() g = nil end
  if g then
    g.sb:release()
    return g.g, g.index
  end
  local gg = new_guest()
  local index = {}
  for k, rule in ipairs(team) do
    local d, lerr = load_guest(gg, rule.file, rule.source)
    if not d then gg:close() ui.fail { message = lerr, code = ui.EXIT.USAGE } end
    index[rule] = k
  end
  gg.sb:release()
  guests[rules] = { g = gg, sb = gg.sb, index = index }
  return gg, index
end

--- Memory figures of the guest of a rule list's team rules (sandbox:stats), or nil.
---@param rules table[] load_rules
---@return table|nil {used, peak, limit, budget, stopped}
function M.team_stats(rules)
  local g = guests[rules]
  return g and g.sb:stats() or nil
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
  local g
  for _, dir in ipairs(paths) do
    local here = {}
    local own = M.is_shipped(dir)
    for _, f in ipairs(list_lua(dir)) do
      if not own and not g then g = new_guest() end
      local rule, err
      if own then rule, err = load_own(f) else rule, err = M.load_rule(f, g) end
      if not rule then
        if g then g:close() end
        return nil, err
      end
      if not rule then return nil, err end
      if here[rule.id] then
        if g then g:close() end
        return nil, ("lint rules %s and %s both have id \"%s\""):format(here[rule.id], f, rule.id)
      end
      here[rule.id] = f
      if not by_id[rule.id] then
        by_id[rule.id] = rule
        out[#out + 1] = rule
      end
    end
  end
  if g then g:close() end
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
  if not text:find("migfix:ignore", 1, true) then return out end
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

local function quoted(t) return ('"%s"'):format(t.table) end


-- index name -> table, per catalog snapshot (weak: dropped with the snapshot)
local index_tables = setmetatable({}, { __mode = "k" })

-- What PostgreSQL's statement node says beyond the effects: the SET, the
-- transaction verb, and where an INSERT takes its rows from (S8).
local function node_facts(s, node)
  s.tx = tx_kind(node)
  local vs = node and node.VariableSetStmt
  if vs then
    local v = vs.args and vs.args[1] and vs.args[1].A_Const
    local val = v and ((v.sval and v.sval.sval) or (v.ival and tostring(v.ival.ival or 0))) or nil
    if v and v.ival and not v.ival.ival then val = "0" end
    s.set = { name = vs.name, value = val, is_local = vs.is_local == true }
  end
  local ins = node and node.InsertStmt
  local sel = ins and ins.selectStmt and ins.selectStmt.SelectStmt
  if sel then
    if sel.valuesLists then
      s.insert_source = { rows = #sel.valuesLists }
    else
      local from = sel.fromClause and sel.fromClause[1] and sel.fromClause[1].RangeVar
      if from then s.insert_source = { schema = from.schemaname, table = from.relname } end
    end
  end
end

-- Pass 1, statement by statement while the file is parsed: what one
-- statement does, from its own text, node and effects (no database, no
-- neighbours). The node is not kept (a rule gets it on demand, s.node).
local function statement(st, node, effs, file)
  local s = {
    index = st.index, line = st.line, end_line = st.end_line, text = st.text, kind = st.kind, file = file,
    tx_control = st.tx_control, non_transactional_reason = st.non_transactional_reason,
    effects = effs, tables = {}, by_table = {},
  }
  s.actions = locks.actions(st, effs, node)
  node_facts(s, node)
  return s
end

-- s.node, parsed again from s.text the first time a rule asks for it; the
-- tree is dropped once the statement's rules have run.
local NODE_MT = { __index = function(s, k)
  if k ~= "node" then return nil end
  local tree = sql.parse(s.text)
  local node = tree and tree.stmts and tree.stmts[1] and tree.stmts[1].stmt
  rawset(s, "node", node or false)
  return node
end }

-- every relation a parse tree names ({schemaname, relname} of its RangeVars)
local function range_vars(node, out)
  if type(node) ~= "table" then return end
  local rv = node.RangeVar
  if type(rv) == "table" and type(rv.relname) == "string" then out[#out + 1] = { schema = rv.schemaname, table = rv.relname } end
  for _, v in pairs(node) do
    if type(v) == "table" then range_vars(v, out) end
  end
end

--- Read one file for lint: its statements (effects.analyze, a part of the
--- file at a time) and what each statement does. No database yet: `bind`
--- adds sizes and the catalog. A syntax error comes back as nil, err.
---@param text string
---@param file string
---@param o? {relations: boolean} also list every relation the statements name (for M.names)
---@return table|nil prepared {unit, statements, text, file, relations?}
---@return table? err {message, line, column} (effects.analyze)
function M.prepare(text, file, o)
  local stmts = {}
  local cursor = 1
  local rels = o and o.relations and {} or nil
  local unit, err = require("migfix.effects").analyze(text, file, {
    on_statement = function(st, node, u)
      local effs = {}
      local all = u.effects
      while all[cursor] and all[cursor].stmt == st.index do effs[#effs + 1] = all[cursor]; cursor = cursor + 1 end
      stmts[#stmts + 1] = statement(st, node, effs, file)
      if rels then range_vars(node, rels) end
    end,
  })
  if not unit then return nil, err end
  return { unit = unit, statements = stmts, text = text, file = file, relations = rels }
end

-- A prepared file from a unit that was analysed before (nodes parsed again).
local function prepare_unit(unit, text)
  local effs = {}
  for _, e in ipairs(unit.effects or {}) do
    effs[e.stmt] = effs[e.stmt] or {}
    table.insert(effs[e.stmt], e)
  end
  local stmts = {}
  for _, st in ipairs(unit.statements) do
    local tree = sql.parse(st.text)
    local node = tree and tree.stmts and tree.stmts[1] and tree.stmts[1].stmt
    stmts[#stmts + 1] = statement(st, node, effs[st.index] or {}, unit.file or "?")
  end
  return { unit = unit, statements = stmts, text = text or unit.text or "", file = unit.file or "?" }
end

--- The object names and schemas a prepared file needs from the catalog
--- (what `bind` looks up): tables, referenced tables, indexes, INSERT sources.
---@return string[] names, string[] schemas
function M.names(P, schema_default, names, schemas, seen)
  names, schemas, seen = names or {}, schemas or {}, seen or {}
  local function add(n) if type(n) == "string" and not seen["n:" .. n] then seen["n:" .. n] = true; names[#names + 1] = n end end
  local function sch(x) if type(x) == "string" and not seen["s:" .. x] then seen["s:" .. x] = true; schemas[#schemas + 1] = x end end
  sch(schema_default)
  for _, s in ipairs(P.statements) do
    for _, a in ipairs(s.actions) do
      add(a.table); add(a.ref_table); add(a.index); sch(a.schema); sch(a.ref_schema)
    end
    for _, e in ipairs(s.effects) do sch(e.schema); sch(e.ref_schema) end
    if s.insert_source and s.insert_source.table then add(s.insert_source.table); sch(s.insert_source.schema) end
  end
  for _, r in ipairs(P.relations or {}) do add(r.table); sch(r.schema) end
  return names, schemas
end

--- Forget what was derived from a catalog snapshot (after it changed).
function M.forget_catalog(snap) index_tables[snap] = nil end

local function tkey_of(schema_default)
  return function(schema, name) return (schema or schema_default) .. "." .. name end
end

-- The facts a statement's rules read about what came before it, computed
-- once per file (so that no rule has to walk the statements before each
-- statement: lint stays linear in the size of the file).
local function earlier_facts(stmts, blocks_writes)
  local segs, file = {}, { first_additive = nil }
  local timeout_session, first_blocking = false, nil
  local new_at = {}
  for _, s in ipairs(stmts) do
    local seg = segs[s.segment]
    if not seg then
      seg = { first_ddl = nil, begin = nil, exclusive = nil, timeout = false, write_locked = {}, locked_seen = {},
              added_values = {}, not_valid = {} }
      segs[s.segment] = seg
    end
    -- what the statements before s (in its transaction, or in the file) did
    s.after_begin = seg.begin
    s.held_exclusive = seg.exclusive
    s.timeout_before = timeout_session or seg.timeout
    s.first_blocking = first_blocking
    s.write_locked_before = #seg.write_locked
    s.values_before = #seg.added_values
    -- then s itself
    if s.tx == "begin" then seg.begin = seg.begin or s end
    if s.ddl and s.lock then seg.first_ddl = seg.first_ddl or s end
    if s.set and s.set.name == "lock_timeout" and s.set.value ~= nil and s.set.value ~= "0" then
      if s.set.is_local then seg.timeout = true else timeout_session = true end
    end
    local blocking = false
    for _, t in ipairs(s.tables) do
      local existing = not t.new and t.exists ~= false
      if t.lock == "ACCESS EXCLUSIVE" and existing and not seg.exclusive then seg.exclusive = { stmt = s, table = t } end
      if existing and t.lock and blocks_writes(t.lock) then
        blocking = true
        if not seg.locked_seen[t.key] then
          seg.locked_seen[t.key] = true
          seg.write_locked[#seg.write_locked + 1] = t
        end
      end
      if t.new and not new_at[t.key] then new_at[t.key] = s.index end
    end
    if blocking then first_blocking = first_blocking or s end
    s.write_locked_through = #seg.write_locked
    for _, a in ipairs(s.actions) do
      if a.key == "alter_type_add_value" and a.label then
        seg.added_values[#seg.added_values + 1] = { label = a.label, enum = a.enum, stmt = s }
      end
      if a.effect and a.effect.name and a.key:find("_not_valid$") then
        local l = seg.not_valid[a.effect.name]
        if not l then l = {}; seg.not_valid[a.effect.name] = l end
        l[#l + 1] = { stmt = s, action = a }
      end
      if not file.first_additive and (a.key == "create_table" or a.key:find("^alter_table%.add_") or a.key:find("^create_index")) then
        file.first_additive = s
      end
    end
  end
  return segs, file, new_at
end

--- Add the database (sizes, the catalog snapshot) and the unit of
--- execution to a prepared file: segments, tables, locks, what is new.
local function bind(P, opts)
  local sizes, catalog, server_version = opts.sizes, opts.catalog, opts.server_version
  local schema_default = opts.schema or "public"
  local tkey = tkey_of(schema_default)
  local index_table = catalog and index_tables[catalog]
  if not index_table then
    -- built once per snapshot, not once per unit (1,000 units x 2,000 indexes)
    index_table = {}
    if catalog and catalog.indexes then
      for _, ix in pairs(catalog.indexes) do index_table[(ix.schema or schema_default) .. "." .. ix.name] = { schema = ix.schema, table = ix.table } end
      index_tables[catalog] = index_table
    end
  end
  local unit = P.unit
  local ex = execution.of(unit, { unit = opts.unit_mode or "file", server_version = server_version })
  local created = {}        -- tables created so far in this file
  local created_index = {}  -- index -> table, created in this file
  for i, s in ipairs(P.statements) do
    s.segment = ex.segment_of[s.index]
    s.non_transactional = execution.non_transactional(unit.statements[i], server_version) or false
    local function table_info(schema, name)
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
  end
  return ex
end

--- Lint one migration file, a part of it in memory at a time: prepare
--- (parse, statement facts), bind (the database), the rules.
---@param text string the file's SQL
---@param file string its path as findings name it
---@param opts table as run_unit (without text)
---@return table[]|nil findings (nil, err on a syntax error: {message, line, column})
---@return table[]|table suppressions, or err
function M.run_text(text, file, opts)
  local P, err = M.prepare(text, file)
  if not P then return nil, err end
  return M.check(P, opts)
end

local KNOWN = { settings = true, rules = true, sizes = true, unit_mode = true, server_version = true, schema = true,
                catalog = true, text = true }

--- For the rules of a list that are a team's (no check function: they run in
--- a guest), a function(i, s) that runs them on the statement at position i
--- of unit.statements and returns { [id] = findings }; a rule that fails,
--- runs over the deadline or the memory budget stops lint (exit 2) naming
--- the rule and its file:line. nil when no team rule is on.
---@param rules table[] load_rules
---@param settings table M.settings
---@param unit table what ctx is built from (M.check)
---@return function|nil
function M.team_runner(rules, settings, unit)
  local team, on = {}, {}
  for _, rule in ipairs(rules) do
    if not rule.check then
      if type(rule.source) ~= "string" then
        error("lint.run_unit: opts.rules must come from lint.load_rules(paths)", 3)
      end
      team[#team + 1] = rule
    end
  end
  if #team == 0 then return nil end
  local g, index = guest_for(rules, team)
  for _, rule in ipairs(team) do
    if not settings.off[rule.id] then on[#on + 1] = { index = index[rule], id = rule.id } end
  end
  if #on == 0 then return nil end
  local index_of, segment_of = {}, {}
  for i, x in ipairs(unit.statements) do index_of[i], segment_of[i] = x.index, x.segment end
  local d = {}
  for k, v in pairs(unit) do d[k] = v end
  d.on, d.index_of, d.segment_of = on, index_of, segment_of
  local ok, err, info = g:call("lint_unit", d)
  if not ok then
    ui.fail { message = ("lint: could not hand %s to the sandbox of the team's lint rules: %s"):format(unit.file, guest.explain(err, info)),
              code = ui.EXIT.USAGE }
  end
  local by_id = {}
  for _, rule in ipairs(team) do by_id[rule.id] = rule end
  local file = unit.file
  return function(i, s)
    -- the statement's tree, parsed when a rule first reads s.node (NODE_MT
    -- through the sandbox's __sandbox_fill), taken away after its rules
    local node = setmetatable({}, { __sandbox_fill = function(t)
      local n = s.node
      if type(n) == "table" then for k, v in pairs(n) do rawset(t, k, v) end end
    end })
    local cok, out, cinfo = g:call("lint_check", i, node)
    g.sb:forget(node)
    if not cok then
      local who = cinfo and cinfo.where and cinfo.where:match("^(.-):%d+$")
      local rule_of
      for _, r in ipairs(team) do if r.file == who then rule_of = r end end
      ui.fail { message = ("lint rule %s%s on %s:%d: %s"):format(rule_of and (rule_of.id .. " (" .. rule_of.file .. ") ") or "",
                  "failed", file, s.line, guest.explain(out, cinfo)),
                hint = "fix the rule file (README \"Lint\" shows the shape)", code = ui.EXIT.USAGE }
    end
    if out.failed then
      local rule = by_id[out.failed]
      if out.returned then
        ui.fail { message = ("lint rule %s must return a list of findings or nil, got %s"):format(out.failed, out.returned),
                  hint = ("fix %s"):format(rule.file), code = ui.EXIT.USAGE }
      end
      local text = policy.redact(tostring(out.error))
      local first = text:match("^[^\n]*")
      ui.fail { message = ("lint rule %s (%s) failed on %s:%d: %s"):format(out.failed, rule.file or "?", file, s.line, first),
                detail = text ~= first and text or nil, hint = "fix the rule file (README \"Lint\" shows the shape)",
                code = ui.EXIT.USAGE }
    end
    return out
  end
end

-- what a rule sees besides the statement (README "Lint")
local function rule_context(P, c)
  local stmts, sizes, settings, schema_default, tkey = P.statements, c.sizes, c.settings, c.schema, c.tkey
  local segs, file_facts, new_at = c.segs, c.file_facts, c.new_at
  local ctx = {
    file = c.file, unit_mode = c.mode, server_version = c.server_version, offline = sizes == nil,
    settings = settings, statements = stmts, schema = schema_default,
    locks = { LEVELS = locks.LEVELS, FACTS = locks.FACTS, rank = locks.rank, max = locks.max,
              blocks_reads = locks.blocks_reads, blocks_writes = locks.blocks_writes },
  }
  lintctx.add_sizes(ctx, settings, sizes, schema_default, tkey)
  function ctx.name(t) return quoted(t) end
  -- every statement of s's transaction / those before s in it (a fresh
  -- list: O(statements) per call; the shipped rules read the facts below)
  function ctx.segment(s)
    local out = {}
    for _, x in ipairs(stmts) do if x.segment == s.segment then out[#out + 1] = x end end
    return out
  end
  function ctx.before(s)
    local out = {}
    for _, x in ipairs(stmts) do
      if x.index >= s.index then break end
      if x.segment == s.segment then out[#out + 1] = x end
    end
    return out
  end
  --- What the transaction of s holds, over all its statements: first_ddl (the
  --- first DDL statement that takes a lock), added_values ({label, enum, stmt}
  --- in order; s.values_before of them come before s), write_locked (existing
  --- tables locked against writes, in order; s.write_locked_before of them
  --- before s, s.write_locked_through up to s), not_valid (constraint name ->
  --- list of {stmt, action} that add it NOT VALID, in order)
  function ctx.segment_facts(s) return segs[s.segment] end
  --- a table created by a statement before s in this file
  function ctx.created_before(s, schema, name)
    local at = new_at[tkey(schema, name)]
    return at ~= nil and at < s.index
  end
  --- the first statement of the file with an additive change (CREATE TABLE,
  --- ADD COLUMN/CONSTRAINT, CREATE INDEX), or nil
  ctx.first_additive = file_facts.first_additive

  return ctx
end

-- the file's `-- migfix:ignore` comments: findings for the invalid ones, and
-- the records of the others by statement index (or "file") and rule
local function read_suppressions(P, rules, file)
  local stmts = P.statements
  local sups = suppressions(P.text or "", file)
  local rule_ids = {}
  for _, r in ipairs(rules) do rule_ids[r.id] = r end
  local findings = {}
  local suppressed = {}  -- stmt index or "file" -> rule -> suppression record
  local sup_records = {}
  for _, sp in ipairs(sups) do
    local idx = sp.scope == "file" and "file" or attach(sp, stmts)
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

  return findings, suppressed, sup_records
end

-- a finding of rule on s as lint reports it, or nil when a suppression takes it
local function finding(rule, f, s, c)
  local settings, file, suppressed = c.settings, c.file, c.suppressed
  local base = f.severity or rule.default_severity
  if settings.errors[rule.id] then base = "error" elseif settings.warnings[rule.id] then base = "warning" end
  local sev = base
  if (f.band == "warning" or f.band == "unknown") and sev == "error" then sev = "warning" end
  if not M.SEVERITIES[sev] then
    error(("lint rule %s: severity must be error, warning or info, not \"%s\""):format(rule.id, tostring(sev)), 0)
  end
  local t = f.table_info
  local out = {
    rule = rule.id, title = rule.title, severity = sev, file = file, line = f.line or s.line,
    statement = s.index, table = f.table or (t and t.key) or nil, lock = f.lock or (t and t.lock) or nil,
    why = tostring(f.why or rule.title), alternative = f.alternative and tostring(f.alternative) or nil,
    rows = t and t.rows or nil, bytes = t and t.bytes or nil,
  }
  local sp = (suppressed[s.index] and suppressed[s.index][rule.id]) or (suppressed.file and suppressed.file[rule.id])
  if not sp then return out end
  sp.matched = true
  sp.findings = (sp.findings or 0) + 1
  sp.severity = sp.severity and (M.SEVERITIES[sp.severity] >= M.SEVERITIES[sev] and sp.severity or sev) or sev
  return nil
end

-- every rule on every statement: shipped rules here (under a deadline),
-- the team's in their guest; findings appended to c.findings
local function run_rules(P, rules, ctx, run_team, c)
  local settings, file, findings = c.settings, c.file, c.findings
  local seconds = M.DEADLINE_SECONDS or guest.deadline()
  for i, s in ipairs(P.statements) do
    setmetatable(s, NODE_MT)
    local team_out -- the team rules' results on s, when the first of them is due
    for _, rule in ipairs(rules) do
      if not settings.off[rule.id] then
        local ok, res
        if rule.check then
          ok, res = policy.with_deadline("lint rule", seconds, rule.check, s, ctx)
          if not ok then
            error(("lint rule %s (%s) failed on %s:%d: %s"):format(rule.id, rule.file or "?", file, s.line, tostring(res)), 0)
          end
          if res ~= nil and type(res) ~= "table" then
            error(("lint rule %s must return a list of findings or nil, got %s"):format(rule.id, type(res)), 0)
          end
        else
          team_out = team_out or run_team(i, s)
          res = team_out[rule.id]
        end
        if res and (res.why or res.rule) then res = { res } end
        for _, f in ipairs(res or {}) do
          local out = finding(rule, f, s, c)
          if out then findings[#findings + 1] = out end
        end
      end
    end
    rawset(s, "node", nil)
    setmetatable(s, nil)
  end
end

-- the options of run_unit/check, their keys checked (raised at the caller's caller)
local function check_opts(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN[k] then
      error(("lint.run_unit: unrecognized option \"%s\" (expected settings, rules, sizes, unit_mode, server_version, schema, catalog, text)"):format(tostring(k)), 3)
    end
  end
  if not opts.rules then error("lint.run_unit: opts.rules is required (lint.load_rules(paths))", 3) end
  return opts
end

--- Lint a prepared file (M.prepare) against the database facts in opts:
--- bind the file's facts, build the rules' context, read the suppressions,
--- run the rules, report the suppressions that matched nothing.
function M.check(P, opts)
  opts = check_opts(opts)
  local rules = opts.rules
  local c = {
    settings = opts.settings or M.settings(), mode = opts.unit_mode or "file", schema = opts.schema or "public",
    sizes = opts.sizes, server_version = opts.server_version, file = P.file or "?",
  }
  c.tkey = tkey_of(c.schema)
  bind(P, opts)
  local stmts = P.statements
  c.segs, c.file_facts, c.new_at = earlier_facts(stmts, locks.blocks_writes)
  local ctx = rule_context(P, c)
  local findings, suppressed, sup_records = read_suppressions(P, rules, c.file)
  c.findings, c.suppressed = findings, suppressed
  -- a team's rules: in their guest, which builds the same ctx there from
  -- the same data, handed in read-only and lazily (guest/lint.lua)
  local run_team = M.team_runner(rules, c.settings, {
    statements = stmts, file = c.file, unit_mode = c.mode, server_version = c.server_version, settings = c.settings,
    schema = c.schema, sizes = c.sizes, segments = c.segs, first_additive = c.file_facts.first_additive,
    new_at = c.new_at,
  })

  run_rules(P, rules, ctx, run_team, c)
  for _, rec in ipairs(sup_records) do
    if not rec.matched then
      findings[#findings + 1] = { rule = "suppression", title = "unused suppression", severity = "info", file = c.file,
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

--- Lint one migration file.
---@param unit table effects.analyze(text, file) (unit.text, or opts.text, gives the comments for suppressions)
---@param opts table { settings, rules, sizes = {["schema.table"] = {rows=, bytes=}} | nil (offline), unit_mode = "file"|"statement", server_version, schema = default schema ("public"), catalog = snapshot | nil, text }
---@return table[] findings { rule, title, severity, file, line, statement, table, lock, why, alternative, rows, bytes }
---@return table[] suppressions { rule, reason, file, line, statement, scope, matched }
function M.run_unit(unit, opts)
  if type(unit) ~= "table" or type(unit.statements) ~= "table" then
    error("bad argument #1 to 'run_unit' (a unit of effects.analyze expected) (expected lint.run_unit(unit, opts))", 2)
  end
  opts = check_opts(opts)
  return M.check(prepare_unit(unit, opts.text), opts)
end

--- Count findings by severity.
function M.counts(findings)
  local c = { error = 0, warning = 0, info = 0 }
  for _, f in ipairs(findings) do c[f.severity] = c[f.severity] + 1 end
  return c
end

return M
