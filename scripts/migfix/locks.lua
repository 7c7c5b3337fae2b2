--- migfix.locks — THE table of PostgreSQL lock and rewrite facts per
--- statement kind, and the mapping from a parsed statement (docs/effects.md)
--- to those kinds. tests/lua/test_locks.lua checks every row against a real
--- server: pg_locks of its own backend inside a transaction, relfilenode
--- before and after, and 25001 for statements that cannot run in a
--- transaction block.
---
--- A fact: { lock = level on the statement's table (nil: no table lock),
---           also = level on the referenced table (foreign keys),
---           rewrite = true | false | "unless binary-coercible",
---           scan = true when the table is read in full under the lock,
---           transactional = true | false | "since PG 12",
---           dml = true for INSERT/UPDATE/DELETE/MERGE/COPY, note = text }
local M = {}

--- Lock levels, weakest first (explicit-locking.html, table 13.2).
M.LEVELS = { "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
             "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE" }
M.RANK = {}
for i, l in ipairs(M.LEVELS) do M.RANK[l] = i end

--- pg_locks.mode spelling of each level ("ACCESS EXCLUSIVE" <-> "AccessExclusiveLock").
M.PG_MODE = {}
M.FROM_PG_MODE = {}
for _, l in ipairs(M.LEVELS) do
  local m = l:lower():gsub("(%a)(%a*)", function(a, b) return a:upper() .. b end):gsub(" ", "") .. "Lock"
  M.PG_MODE[l] = m
  M.FROM_PG_MODE[m] = l
end

local AS, RS, RE, SUE, SH, SRE, EX, AEL = table.unpack(M.LEVELS)

--- The facts, one row per statement kind.
M.FACTS = {
  ["create_table"] = { lock = AEL, rewrite = false, scan = false, transactional = true, note = "the new table only" },
  ["alter_table.add_column"] = { lock = AEL, rewrite = false, scan = false, transactional = true,
    note = "no default, or a non-volatile default (stored in the catalog since PostgreSQL 11)" },
  ["alter_table.add_column_volatile_default"] = { lock = AEL, rewrite = true, scan = false, transactional = true,
    note = "volatile default (random(), gen_random_uuid(), nextval() of serial, clock_timestamp())" },
  ["alter_table.add_column_identity"] = { lock = AEL, rewrite = true, scan = false, transactional = true },
  ["alter_table.add_column_generated"] = { lock = AEL, rewrite = true, scan = false, transactional = true,
    note = "GENERATED ALWAYS AS (...) STORED" },
  ["alter_table.set_expression"] = { lock = AEL, rewrite = true, scan = false, transactional = true,
    note = "ALTER COLUMN ... SET EXPRESSION (PostgreSQL 17+): the stored values are recomputed" },
  ["alter_table.drop_column"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.alter_type"] = { lock = AEL, rewrite = "unless binary-coercible", scan = false, transactional = true,
    note = "indexes on the column are rebuilt even without a table rewrite" },
  ["alter_table.set_not_null"] = { lock = AEL, rewrite = false, scan = true, transactional = true,
    note = "skipped scan when a validated CHECK (col IS NOT NULL) exists (PostgreSQL 12+)" },
  ["alter_table.drop_not_null"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.set_default"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.drop_default"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.add_constraint_fk"] = { lock = SRE, also = SRE, rewrite = false, scan = true, transactional = true },
  ["alter_table.add_constraint_fk_not_valid"] = { lock = SRE, also = SRE, rewrite = false, scan = false, transactional = true },
  ["alter_table.add_constraint_check"] = { lock = AEL, rewrite = false, scan = true, transactional = true },
  ["alter_table.add_constraint_check_not_valid"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.add_constraint_unique"] = { lock = AEL, rewrite = false, scan = true, transactional = true,
    note = "builds the unique index under ACCESS EXCLUSIVE" },
  ["alter_table.add_constraint_primary_key"] = { lock = AEL, rewrite = false, scan = true, transactional = true },
  ["alter_table.add_constraint_exclusion"] = { lock = AEL, rewrite = false, scan = true, transactional = true },
  ["alter_table.add_constraint_using_index"] = { lock = AEL, rewrite = false, scan = false, transactional = true,
    note = "PRIMARY KEY/UNIQUE USING INDEX: no build (a primary key still checks NOT NULL)" },
  ["alter_table.validate_constraint"] = { lock = SUE, rewrite = false, scan = true, transactional = true,
    note = "a foreign key also takes ROW SHARE on the referenced table" },
  ["alter_table.drop_constraint"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.set_schema"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.attach_partition"] = { lock = SUE, rewrite = false, scan = true, transactional = true,
    note = "SHARE UPDATE EXCLUSIVE on the parent; ACCESS EXCLUSIVE on the partition, scanned unless a CHECK proves the bound" },
  ["alter_table.detach_partition"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["alter_table.detach_partition_concurrently"] = { lock = SUE, rewrite = false, scan = false, transactional = false },
  ["alter_table.set_statistics"] = { lock = SUE, rewrite = false, scan = false, transactional = true },
  ["alter_table.enable_trigger"] = { lock = SRE, rewrite = false, scan = false, transactional = true },
  ["alter_table.other"] = { lock = AEL, rewrite = false, scan = false, transactional = true,
    note = "any other ALTER TABLE subcommand: assumed ACCESS EXCLUSIVE" },
  ["rename"] = { lock = AEL, rewrite = false, scan = false, transactional = true, note = "table, column or constraint" },
  ["create_index"] = { lock = SH, rewrite = false, scan = true, transactional = true },
  ["create_index_concurrently"] = { lock = SUE, rewrite = false, scan = true, transactional = false },
  ["drop_index"] = { lock = AEL, rewrite = false, scan = false, transactional = true, note = "on the index's table" },
  ["drop_index_concurrently"] = { lock = SUE, rewrite = false, scan = false, transactional = false },
  ["reindex"] = { lock = SH, rewrite = false, scan = true, transactional = true, note = "REINDEX TABLE; each index ACCESS EXCLUSIVE" },
  ["reindex_concurrently"] = { lock = SUE, rewrite = false, scan = true, transactional = false },
  ["create_trigger"] = { lock = SRE, rewrite = false, scan = false, transactional = true },
  ["drop_trigger"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["drop_table"] = { lock = AEL, rewrite = false, scan = false, transactional = true },
  ["truncate"] = { lock = AEL, rewrite = true, scan = false, transactional = true, note = "new, empty relfilenode" },
  ["alter_type_add_value"] = { lock = nil, rewrite = false, scan = false, transactional = "since PG 12",
    note = "the new label cannot be used before commit (55P04)" },
  ["refresh_matview"] = { lock = AEL, rewrite = true, scan = true, transactional = true },
  ["refresh_matview_concurrently"] = { lock = EX, rewrite = false, scan = true, transactional = true },
  ["vacuum"] = { lock = SUE, rewrite = false, scan = true, transactional = false },
  ["vacuum_full"] = { lock = AEL, rewrite = true, scan = true, transactional = false },
  ["analyze"] = { lock = SUE, rewrite = false, scan = false, transactional = true, note = "samples the table" },
  ["cluster"] = { lock = AEL, rewrite = true, scan = true, transactional = true },
  ["comment"] = { lock = SUE, rewrite = false, scan = false, transactional = true },
  ["lock_table"] = { lock = nil, rewrite = false, scan = false, transactional = true, note = "the mode the statement names" },
  ["insert"] = { lock = RE, rewrite = false, scan = false, transactional = true, dml = true },
  ["update"] = { lock = RE, rewrite = false, scan = false, transactional = true, dml = true },
  ["delete"] = { lock = RE, rewrite = false, scan = false, transactional = true, dml = true },
  ["merge"] = { lock = RE, rewrite = false, scan = false, transactional = true, dml = true },
  ["copy"] = { lock = RE, rewrite = false, scan = false, transactional = true, dml = true },
  ["set"] = { lock = nil, rewrite = false, scan = false, transactional = true },
  ["tx_control"] = { lock = nil, rewrite = false, scan = false, transactional = true },
  ["other"] = { lock = nil, rewrite = false, scan = false, transactional = true,
    note = "no lock on an existing table (CREATE TYPE/FUNCTION/VIEW/SEQUENCE, DROP of those, DO, ...)" },
}

--- Rank of a level (0 for nil).
---@param level string?
---@return integer
function M.rank(level)
  if level == nil then return 0 end
  local r = M.RANK[level]
  if not r then error(("unrecognized lock level \"%s\" (expected one of %s)"):format(tostring(level), table.concat(M.LEVELS, ", ")), 2) end
  return r
end

--- The stronger of two levels.
function M.max(a, b)
  if M.rank(a) >= M.rank(b) then return a end
  return b
end

--- Only ACCESS EXCLUSIVE conflicts with ACCESS SHARE (plain SELECT).
function M.blocks_reads(level) return level == AEL end

--- SHARE and stronger conflict with ROW EXCLUSIVE (INSERT/UPDATE/DELETE).
function M.blocks_writes(level) return M.rank(level) >= M.RANK[SH] end

--- The fact for a key; raises on an unknown key.
function M.fact(key)
  local f = M.FACTS[key]
  if not f then error(("unrecognized statement kind \"%s\" (see migfix.locks FACTS)"):format(tostring(key)), 2) end
  return f
end

-- Functions whose result is not volatile: a default calling only these is
-- stored in the catalog, with no rewrite.
local NONVOLATILE = {}
for w in ([[now current_timestamp current_date localtimestamp transaction_timestamp statement_timestamp
  lower upper coalesce nullif greatest least concat to_timestamp to_date to_char make_date make_timestamp
  jsonb_build_object json_build_object jsonb_build_array json_build_array array row length abs round
  current_user session_user current_schema]]):gmatch("%S+") do NONVOLATILE[w] = true end

--- True when a default expression (source text) may be volatile: it calls a
--- function that is not known to be stable or immutable.
---@param expr string?
---@return boolean
function M.volatile_default(expr)
  if not expr then return false end
  local s = expr:gsub("'[^']*'", "''"):gsub('"[^"]*"', '""')
  for name in s:gmatch("([%a_][%w_]*)%s*%(") do
    local n = name:lower()
    if not NONVOLATILE[n] and not ({ numeric = true, varchar = true, character = true, timestamp = true,
                                      decimal = true, time = true, interval = true, bit = true })[n] then
      return true
    end
  end
  return false
end

local function parse_type(t)
  t = t:gsub("%s+", " "):lower()
  local base, mods, rest = t:match("^(.-)%((.-)%)(.*)$")
  if base then return (base .. rest):gsub("%s+$", ""), mods end
  return t, nil
end

--- True when ALTER COLUMN TYPE from `old` to `new` (format_type spellings)
--- needs no table rewrite: same type with a wider or removed limit,
--- varchar -> text, text -> unbounded varchar, cidr -> inet.
---@param old string
---@param new string
---@return boolean
function M.binary_coercible(old, new)
  if not old or not new then return false end
  local ob, om = parse_type(old)
  local nb, nm = parse_type(new)
  if old:lower() == new:lower() then return true end
  local text_like = { text = true, ["character varying"] = true }
  if text_like[ob] and (nb == "text" or (nb == "character varying" and (nm == nil or (ob == "character varying" and om and tonumber(nm) >= tonumber(om))))) then
    return not (ob == "text" and nm ~= nil)
  end
  if ob == "numeric" and nb == "numeric" then
    if nm == nil then return true end
    if om == nil then return false end
    local op, os_ = om:match("(%d+),?(%d*)")
    local np, ns = nm:match("(%d+),?(%d*)")
    return (tonumber(os_) or 0) == (tonumber(ns) or 0) and tonumber(np) >= tonumber(op)
  end
  if ob == nb and (ob:find("^timestamp") or ob:find("^time ") or ob == "bit varying" or ob == "character varying") then
    if nm == nil then return true end
    return om ~= nil and tonumber(nm) >= tonumber(om)
  end
  if ob == "cidr" and nb == "inet" then return true end
  return false
end

local function sval(n) return type(n) == "table" and n.String and n.String.sval or nil end

local function rv_name(rv, default_schema)
  if not rv then return nil end
  return rv.schemaname or default_schema, rv.relname
end

local LOCKMODE = { [1] = AS, [2] = RS, [3] = RE, [4] = SUE, [5] = SH, [6] = SRE, [7] = EX, [8] = AEL }

--- The statement kind of one effect of a statement.
---@param stmt table a statement of effects.analyze
---@param effect table|nil one of its effects (nil: classify the statement itself)
---@param node table|nil the statement's parse node ({ [NodeName] = {...} }), for statements without effects
---@return string key, table? extra { schema=, table=, ref_schema=, ref_table=, index=, level= }
function M.classify(stmt, effect, node)
  local kind = stmt.kind
  local n = node and node[kind]
  if stmt.tx_control or kind == "TransactionStmt" then return "tx_control", {} end
  if kind == "VariableSetStmt" or kind == "VariableShowStmt" then return "set", {} end
  local e = effect
  if e then
    local where = { schema = e.schema, table = e.table }
    if kind == "CreateStmt" then
      where.table = e.table or e.name
      if e.kind == "constraint" and e.contype == "f" then
        where.ref_schema, where.ref_table = e.ref_schema or e.schema, e.ref_table
        return e.not_valid and "alter_table.add_constraint_fk_not_valid" or "alter_table.add_constraint_fk", where
      end
      return "create_table", where
    end
    if kind == "AlterTableStmt" then
      if e.kind == "column" then
        if e.action == "create" then
          if e.generated then return "alter_table.add_column_generated", where end
          if e.identity then return "alter_table.add_column_identity", where end
          if e.has_default and M.volatile_default(e.default) then return "alter_table.add_column_volatile_default", where end
          return "alter_table.add_column", where
        elseif e.action == "drop" then return "alter_table.drop_column", where
        elseif e.action == "alter" then
          local s = e.set or {}
          if s.type then where.column, where.new_type = e.name, s.type; return "alter_table.alter_type", where end
          if s.expression then where.column = e.name; return "alter_table.set_expression", where end
          if s.not_null == true then where.column = e.name; return "alter_table.set_not_null", where end
          if s.not_null == false then return "alter_table.drop_not_null", where end
          if s.has_default == false then return "alter_table.drop_default", where end
          return "alter_table.set_default", where
        end
      elseif e.kind == "constraint" then
        if e.action == "create" then
          if e.contype == "f" then
            where.ref_schema, where.ref_table = e.ref_schema or e.schema, e.ref_table
            return e.not_valid and "alter_table.add_constraint_fk_not_valid" or "alter_table.add_constraint_fk", where
          elseif e.contype == "c" then
            return e.not_valid and "alter_table.add_constraint_check_not_valid" or "alter_table.add_constraint_check", where
          elseif e.using_index then return "alter_table.add_constraint_using_index", where
          elseif e.contype == "u" then return "alter_table.add_constraint_unique", where
          elseif e.contype == "p" then return "alter_table.add_constraint_primary_key", where
          else return "alter_table.add_constraint_exclusion", where end
        elseif e.action == "drop" then return "alter_table.drop_constraint", where
        else where.constraint = e.name; return "alter_table.validate_constraint", where end
      elseif e.kind == "sequence" then
        return "other", {}
      elseif e.action == "unverifiable" then
        local sub = e.subcommand
        local t = n and n.relation
        where.schema, where.table = rv_name(t, nil)
        if sub == "AT_AttachPartition" then return "alter_table.attach_partition", where end
        if sub == "AT_DetachPartition" then
          return stmt.non_transactional and "alter_table.detach_partition_concurrently" or "alter_table.detach_partition", where
        end
        if sub == "AT_SetStatistics" or sub == "AT_SetOptions" or sub == "AT_ResetOptions" then return "alter_table.set_statistics", where end
        if sub and sub:find("^AT_EnableTrig") or sub and sub:find("^AT_DisableTrig") then return "alter_table.enable_trigger", where end
        return "alter_table.other", where
      end
      return "alter_table.other", where
    end
    if kind == "AlterObjectSchemaStmt" and e.kind == "table" then
      return "alter_table.set_schema", { schema = e.schema, table = e.name }
    end
    if kind == "RenameStmt" then
      if e.kind == "table" then return "rename", { schema = e.schema, table = e.name } end
      if e.kind == "column" or e.kind == "constraint" then return "rename", where end
      return "other", {}
    end
    if kind == "IndexStmt" then
      where.index = e.name
      return e.concurrently and "create_index_concurrently" or "create_index", where
    end
    if kind == "DropStmt" then
      if e.kind == "table" then return "drop_table", { schema = e.schema, table = e.name } end
      if e.kind == "index" then
        return e.concurrently and "drop_index_concurrently" or "drop_index", { schema = e.schema, index = e.name }
      end
      if e.kind == "trigger" then return "drop_trigger", where end
      return "other", {}
    end
    if kind == "CreateTrigStmt" then return "create_trigger", where end
    if kind == "AlterEnumStmt" and e.kind == "enum_value" and e.action == "create" then
      return "alter_type_add_value", { enum_schema = e.schema, enum = e.enum, label = e.name }
    end
    if kind == "CommentStmt" and (e.on == "table" or e.on == "column") then
      return "comment", { schema = e.schema, table = e.on == "table" and e.name or e.table }
    end
    if kind == "TruncateStmt" then return "truncate", where end
    if e.kind == "data" then
      local k = ({ InsertStmt = "insert", UpdateStmt = "update", DeleteStmt = "delete", MergeStmt = "merge", CopyStmt = "copy" })[kind]
      if k then return k, where end
    end
  end
  -- statements without a table effect
  if kind == "VacuumStmt" and n then
    local full, analyze_only = false, not n.is_vacuumcmd
    for _, w in ipairs(n.options or {}) do
      if w.DefElem and w.DefElem.defname == "full" then full = true end
    end
    local r = n.rels and n.rels[1] and n.rels[1].VacuumRelation
    local where = {}
    if r and r.relation then where.schema, where.table = rv_name(r.relation) end
    if analyze_only then return "analyze", where end
    return full and "vacuum_full" or "vacuum", where
  end
  if kind == "ClusterStmt" and n then
    local where = {}
    if n.relation then where.schema, where.table = rv_name(n.relation) end
    return "cluster", where
  end
  if kind == "ReindexStmt" and n then
    local where = {}
    if n.relation and n.kind == "REINDEX_OBJECT_TABLE" then where.schema, where.table = rv_name(n.relation) end
    if n.relation and n.kind == "REINDEX_OBJECT_INDEX" then where.schema, where.index = rv_name(n.relation) end
    return stmt.non_transactional and "reindex_concurrently" or "reindex", where
  end
  if kind == "RefreshMatViewStmt" and n then
    local where = {}
    if n.relation then where.schema, where.table = rv_name(n.relation) end
    return n.concurrent and "refresh_matview_concurrently" or "refresh_matview", where
  end
  if kind == "LockStmt" and n then
    local where = {}
    local r = n.relations and n.relations[1] and n.relations[1].RangeVar
    if r then where.schema, where.table = rv_name(r) end
    where.level = LOCKMODE[n.mode or 8] or AEL
    return "lock_table", where
  end
  return "other", {}
end

--- Every (key, place) a statement implies: one per effect that touches a
--- table, or one for the statement itself. Entries:
--- { key, fact, schema, table, ref_schema, ref_table, index, effect, lock, also }
---@param stmt table
---@param effects table[] the statement's effects (those with effect.stmt == stmt.index)
---@param node table|nil parse node
---@return table[]
function M.actions(stmt, effects, node)
  local out = {}
  local function add(key, where, e)
    local f = M.fact(key)
    local a = { key = key, fact = f, effect = e, lock = where.level or f.lock, also = f.also,
                rewrite = f.rewrite, scan = f.scan, transactional = f.transactional }
    for k, v in pairs(where) do if k ~= "level" then a[k] = v end end
    out[#out + 1] = a
  end
  local seen_stmt = false
  for _, e in ipairs(effects) do
    local key, where = M.classify(stmt, e, node)
    if key ~= "other" then add(key, where, e); seen_stmt = true end
  end
  if not seen_stmt then
    local key, where = M.classify(stmt, nil, node)
    add(key, where or {}, nil)
  end
  return out
end

return M
