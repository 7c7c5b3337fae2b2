--- Split one migration into several Prisma migration folders that together
--- do the same thing without the dangerous parts: each non-transactional
--- statement alone, NOT VALID then VALIDATE in a later folder, SET NOT NULL
--- through a validated CHECK, a blocking CREATE INDEX made CONCURRENTLY,
--- ADD VALUE committed before its use, backfills apart from DDL, and
--- `SET lock_timeout` at the head of every transactional folder when the
--- environment asks (README "Lint", `migfix split`).
---
--- The split is computed from the unit's statements and effects alone
--- (migfix.effects), so it is correct without lint findings; findings, when
--- given, only narrow the optional rewrites (S4 NOT VALID, S5 NOT NULL,
--- S6 CONCURRENTLY) to the statements they flag.
---
--- Names keep the original folder name as a prefix and add `_pNN_<slug>`:
--- they sort (Prisma's ICU localeCompare, and bytewise as older engines)
--- right where the original stood; `M.names` checks that against the
--- neighbours and falls back to `__pNN_` when a neighbour shares the prefix.
local effects = require "migfix.effects"
local execution = require "migfix.execution"
local mig = require "migfix.migrations"

local M = {}

local DML = { InsertStmt = true, UpdateStmt = true, DeleteStmt = true, CopyStmt = true, MergeStmt = true }

M.WHY = {
  schema = "DDL in one transaction",
  backfill = "data changes apart from the DDL, so the DDL locks are not held while rows are written (batch large backfills)",
  enum = "ALTER TYPE ... ADD VALUE committed before the value is used (PostgreSQL refuses its use in the same transaction: 55P04)",
  nontx = "%s cannot run inside a transaction block (25001 when sent with other statements): alone in its folder",
  concurrent_index = "CREATE INDEX on an existing table holds a SHARE lock (writes blocked) for the whole build: "
    .. "CREATE INDEX CONCURRENTLY instead, alone in its folder (it cannot run inside a transaction block)",
  validate = "VALIDATE CONSTRAINT scans under SHARE UPDATE EXCLUSIVE (reads and writes go on), "
    .. "in a later folder than the NOT VALID add",
  not_null = "SET NOT NULL uses the validated CHECK and skips the scan (PostgreSQL 12+): "
    .. "ACCESS EXCLUSIVE for a moment only; then the helper CHECK is dropped",
  using_index = "ADD CONSTRAINT UNIQUE/PRIMARY KEY builds its index under ACCESS EXCLUSIVE: "
    .. "the unique index is built CONCURRENTLY alone in its folder, then attached with USING INDEX (a moment's lock)",
}

local function q(name) return effects.quote_ident(name) end

local function qualified(schema, name)
  if schema then return q(schema) .. "." .. q(name) end
  return q(name)
end

local function table_key(schema, name) return (schema or "") .. "." .. tostring(name) end

--- The lock_timeout the environment asks split folders to start with, or nil.
---@param p table the project (context:project())
---@return string|nil
function M.lock_timeout(p)
  local d = p.env.deploy or {}
  if d.lock_timeout then return tostring(d.lock_timeout) end
  if p.env.lint and p.env.lint.require_lock_timeout then return "2s" end
  return nil
end

--- Partitioned tables of `schema` (and schema-qualified names of every
--- schema), for propose's `partitioned` option.
function M.partitioned(conn, schema)
  local out = {}
  local rows = conn:query([[SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p']])
  for _, r in ipairs(rows or {}) do
    out[r.nspname .. "." .. r.relname] = true
    if r.nspname == schema then out[r.relname] = true end
  end
  return out
end

--- A slug for folder names: lower case letters, digits and single '_'.
---@param s string
---@param max integer?
---@return string
function M.slug(s, max)
  s = tostring(s):lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  max = max or 40
  if #s > max then s = s:sub(1, max):gsub("_+$", "") end
  return s
end

local function bytewise(a, b)
  if a == b then return 0 end
  return a < b and -1 or 1
end

--- Both orders Prisma has used: ICU localeCompare (current CLI) and
--- bytewise (older engines).
local function before(a, b)
  return mig.compare(a, b) < 0 and bytewise(a, b) < 0
end
M.before = before

--- Folder names for the parts of `original`, one per slug, checked to sort
--- after `prev` and before `next` (the original's neighbours, either may be
--- nil), in order, and not to collide with `existing` names.
---@param original string
---@param slugs string[]
---@param nb {prev: string?, next: string?, existing: table<string, boolean>?}?
---@return string[]|nil names
---@return string? err
function M.names(original, slugs, nb)
  nb = nb or {}
  local width = #slugs >= 100 and 3 or 2
  local tried = {}
  -- "_" sorts before letters and digits under ICU; "-" before digits and
  -- letters in both orders (for a neighbour such as NAME2 or NAMEX)
  for _, sep in ipairs({ "_p", "__p", "-p" }) do
    local names = {}
    for i, s in ipairs(slugs) do
      names[i] = ("%s%s%0" .. width .. "d%s"):format(original, sep, i, s ~= "" and ("_" .. s) or "")
    end
    local ok = true
    if nb.prev and not before(nb.prev, names[1]) then ok = false end
    if nb.next and not before(names[#names], nb.next) then ok = false end
    for i = 2, #names do if not before(names[i - 1], names[i]) then ok = false end end
    for _, n in ipairs(names) do
      if #n > 200 then ok = false end
      if nb.existing and nb.existing[n] then ok = false end
    end
    if ok then return names end
    tried[#tried + 1] = names[1]
  end
  return nil, ("no name of the form %s sorts between \"%s\" and \"%s\" (tried %s)"):format(
    original .. "_pNN_...", nb.prev or "(start)", nb.next or "(end)", table.concat(tried, ", "))
end

-- the comment lines written just before a statement in the file (Prisma's
-- "-- CreateIndex" headers), so the parts read like the original
local function leading_comments(text, prev_end, offset)
  if not text then return nil end
  local gap = text:sub(prev_end + 1, offset)
  local lines = {}
  for line in (gap .. "\n"):gmatch("(.-)\r?\n") do
    if line:match("^%s*%-%-") then lines[#lines + 1] = line:match("^%s*(.-)%s*$") end
  end
  return #lines > 0 and table.concat(lines, "\n") or nil
end

local function upper(s) return s:upper() end

-- CREATE [UNIQUE] INDEX -> CREATE [UNIQUE] INDEX CONCURRENTLY
local function concurrently(text)
  local u = upper(text)
  local s, e = u:find("^CREATE%s+UNIQUE%s+INDEX")
  if not s then s, e = u:find("^CREATE%s+INDEX") end
  if not s then return nil end
  return text:sub(1, e) .. " CONCURRENTLY" .. text:sub(e + 1)
end

local function label_used(stmts, from, label)
  local lit = "'" .. label:gsub("'", "''") .. "'"
  for i = from, #stmts do
    if stmts[i].text:find(lit, 1, true) then return true end
  end
  return false
end

local function truncate63(s)
  if #s <= 63 then return s end
  return s:sub(1, 63)
end

--- Propose the split of one analyzed migration.
---@param unit table from migfix.effects.analyze (statements, effects)
---@param opts {name: string, lock_timeout: string?, findings: table[]?, server_version: integer?, unit: string?, text: string?, prev: string?, next: string?, existing: table<string, boolean>?, partitioned: table<string, boolean>?}?
---  partitioned: tables known to be partitioned ("name" or "schema.name"): PostgreSQL
---  refuses CREATE INDEX CONCURRENTLY on them, so their index builds are not rewritten
---@return table[]|nil parts { {suffix, name, sql, statements, why, kind, transactional}, ... }
---@return string? err
function M.propose(unit, opts)
  if type(unit) ~= "table" or type(unit.statements) ~= "table" then
    error("bad argument #1 to 'propose' (analyzed unit expected) (expected split.propose(unit, {name = ...}))", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not ({ name = true, lock_timeout = true, findings = true, server_version = true, unit = true, text = true,
              prev = true, next = true, existing = true, partitioned = true })[k] then
      error(("split.propose: unrecognized option \"%s\""):format(tostring(k)), 2)
    end
  end
  local name = opts.name or "migration"
  local sv = opts.server_version or 150000
  local stmts = unit.statements

  -- findings narrow the optional rewrites to the statements they flag
  local flagged
  if opts.findings then
    flagged = {}
    for _, f in ipairs(opts.findings) do
      if f.statement and f.rule then flagged[f.rule .. ":" .. f.statement] = true end
    end
  end
  local function wants(rule, idx) return flagged == nil or flagged[rule .. ":" .. idx] == true end

  local by_stmt = {}
  for _, e in ipairs(unit.effects or {}) do
    by_stmt[e.stmt] = by_stmt[e.stmt] or {}
    table.insert(by_stmt[e.stmt], e)
  end

  local parts = {}
  local cur            -- the open transactional part
  local validates, finishes = {}, {}
  local settings = {}  -- SET statements of the file, carried into later parts
  local part = opts.partitioned or {}
  -- PostgreSQL refuses CREATE INDEX CONCURRENTLY on a partitioned table
  local function is_partitioned(e)
    return part[e.table] or (e.schema and part[e.schema .. "." .. e.table]) or false
  end
  local function plain_columns(cols)
    if type(cols) ~= "table" or #cols == 0 then return false end
    for _, c in ipairs(cols) do if type(c) ~= "string" then return false end end
    return true
  end
  local created = {}   -- tables created earlier in the file
  local dropped_tx = {}
  local rewritten = false

  local function push(p) parts[#parts + 1] = p end
  local function new_part(kind, transactional)
    local p = { kind = kind, transactional = transactional, body = {}, statements = {}, seen = {}, why = {} }
    if transactional then
      for _, s in ipairs(settings) do p.body[#p.body + 1] = { sql = s } end
    end
    return p
  end
  local function add(p, sql, idx, comment)
    p.body[#p.body + 1] = { sql = sql, comment = comment, stmt = idx }
    if idx and not p.seen[idx] then
      p.seen[idx] = true
      p.statements[#p.statements + 1] = idx
    end
  end
  local function has_statements(p) return p and #p.statements > 0 end
  local function close()
    if has_statements(cur) then push(cur) end
    cur = nil
    if #validates > 0 then
      local p = new_part("validate", true)
      for _, v in ipairs(validates) do add(p, v.sql, v.idx, v.comment) end
      p.why[1] = M.WHY.validate
      p.slug = "validate"
      push(p)
      validates = {}
    end
    if #finishes > 0 then
      local p = new_part("not_null", true)
      for _, v in ipairs(finishes) do add(p, v.sql, v.idx, v.comment) end
      p.why[1] = M.WHY.not_null
      p.slug = "not_null"
      push(p)
      finishes = {}
    end
  end
  local function open(kind)
    if cur and cur.kind ~= kind then close() end
    if not cur then
      cur = new_part(kind, true)
      cur.why[1] = M.WHY[kind]
      cur.slug = kind
    end
    return cur
  end
  local function alone(kind, sql, idx, comment, why, slug)
    close()
    local p = new_part(kind, false)
    add(p, sql, idx, comment)
    p.why[1] = why
    p.slug = slug
    push(p)
  end

  local prev_end = 0
  for i, s in ipairs(stmts) do
    local comment = leading_comments(opts.text, prev_end, s.offset)
    prev_end = (s.offset or 0) + (s.length or 0)
    local effs = by_stmt[i] or {}
    local nontx = execution.non_transactional(s, sv)
    local handled = false

    if s.tx_control then
      dropped_tx[#dropped_tx + 1] = s.text
      handled = true
    elseif nontx then
      local slug = "nontx"
      for _, e in ipairs(effs) do
        if e.kind == "index" and e.name then slug = "index_" .. e.name break end
      end
      alone("nontx", s.text, i, comment, M.WHY.nontx:format(s.non_transactional_reason or s.kind), slug)
      handled = true
    elseif s.kind == "VariableSetStmt" then
      settings[#settings + 1] = s.text .. ";"
      -- in place too, for the statements after it in the current part
      if cur then add(cur, s.text, nil, comment) end
      handled = true
    elseif DML[s.kind] then
      add(open("backfill"), s.text, i, comment)
      handled = true
    elseif s.kind == "IndexStmt" then
      local e = effs[1]
      if e and e.kind == "index" and not e.concurrently and e.table
          and not created[table_key(e.schema, e.table)] and wants("S6", i) and not is_partitioned(e) then
        local text = concurrently(s.text)
        if text then
          rewritten = true
          alone("concurrent_index", text, i, comment, M.WHY.concurrent_index, "index_" .. (e.name or e.table))
          handled = true
        end
      end
    elseif s.kind == "AlterEnumStmt" then
      local e = effs[1]
      if e and e.kind == "enum_value" and e.action == "create" and label_used(stmts, i + 1, e.name) then
        add(open("enum"), s.text, i, comment)
        handled = true
      end
    elseif s.kind == "AlterTableStmt" and #effs > 0 then
      local t = effs[1].table
      local tschema = effs[1].schema
      local existing = t and not created[table_key(tschema, t)]
      -- S5: every subcommand is SET NOT NULL on an existing table
      local all_nn = existing
      for _, e in ipairs(effs) do
        if not (e.action == "alter" and e.kind == "column" and e.table == t and e.schema == tschema and e.set
                and e.set.not_null == true and next(e.set, next(e.set)) == nil) then
          all_nn = false
        end
      end
      if all_nn and wants("S5", i) then
        local tq = qualified(tschema, t)
        local adds, drops = {}, {}
        for _, e in ipairs(effs) do
          local cname = truncate63(("%s_%s_not_null_check"):format(t, e.name))
          adds[#adds + 1] = ("ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID"):format(q(cname), q(e.name))
          validates[#validates + 1] = { sql = ("ALTER TABLE %s VALIDATE CONSTRAINT %s"):format(tq, q(cname)), idx = i }
          drops[#drops + 1] = ("DROP CONSTRAINT %s"):format(q(cname))
        end
        add(open("schema"), ("ALTER TABLE %s %s"):format(tq, table.concat(adds, ", ")), i, comment)
        finishes[#finishes + 1] = { sql = s.text, idx = i, comment = comment }
        finishes[#finishes + 1] = { sql = ("ALTER TABLE %s %s"):format(tq, table.concat(drops, ", ")), idx = i }
        rewritten = true
        handled = true
      elseif existing and #effs == 1 and effs[1].action == "create" and effs[1].kind == "constraint"
          and (effs[1].contype == "u" or effs[1].contype == "p") and not effs[1].name_generated
          and plain_columns(effs[1].columns) and not is_partitioned(effs[1]) and wants("S6", i) then
        -- UNIQUE / PRIMARY KEY on an existing table: concurrent unique index, then USING INDEX
        local e = effs[1]
        local cols = {}
        for _, c in ipairs(e.columns) do cols[#cols + 1] = q(c) end
        local tq = qualified(e.schema, e.table)
        alone("concurrent_index", ("CREATE UNIQUE INDEX CONCURRENTLY %s ON %s (%s)"):format(q(e.name), tq, table.concat(cols, ", ")),
          i, comment, M.WHY.using_index, "index_" .. e.name)
        add(open("schema"), ("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s"):format(
          tq, q(e.name), e.contype == "p" and "PRIMARY KEY" or "UNIQUE", q(e.name)), i)
        rewritten = true
        handled = true
      elseif existing and #effs == 1 and effs[1].action == "create" and effs[1].kind == "constraint"
          and (effs[1].contype == "f" or effs[1].contype == "c") and not effs[1].not_valid
          and not effs[1].name_generated and wants("S4", i) then
        local e = effs[1]
        add(open("schema"), s.text .. " NOT VALID", i, comment)
        validates[#validates + 1] = { sql = ("ALTER TABLE %s VALIDATE CONSTRAINT %s"):format(qualified(e.schema, e.table), q(e.name)), idx = i }
        rewritten = true
        handled = true
      end
    end
    if not handled then add(open("schema"), s.text, i, comment) end
    for _, e in ipairs(effs) do
      if e.kind == "table" and e.action == "create" then created[table_key(e.schema, e.name)] = true end
    end
  end
  close()

  if #parts == 0 then return nil, "the migration has no statements to split" end

  -- folder names, checked against the neighbours
  local slugs = {}
  for k, p in ipairs(parts) do slugs[k] = M.slug(p.slug or p.kind) end
  local names, nerr = M.names(name, slugs, { prev = opts.prev, next = opts.next, existing = opts.existing })
  if not names then return nil, nerr end

  local lock_set
  if opts.lock_timeout then
    lock_set = ("SET %slock_timeout = '%s';"):format(opts.unit == "statement" and "" or "LOCAL ",
      tostring(opts.lock_timeout):gsub("'", "''"))
  end
  for k, p in ipairs(parts) do
    p.name = names[k]
    p.suffix = names[k]:sub(#name + 1)
    if k == 1 and #dropped_tx > 0 then
      p.why[#p.why + 1] = ("transaction control left out (%s): each folder is its own transaction"):format(table.concat(dropped_tx, ", "))
    end
    if not p.transactional and lock_set then
      p.why[#p.why + 1] = "no SET lock_timeout here: it would make the folder a transaction block (25001); use migfix deploy's lock_timeout"
    end
    local out = { ("-- migfix split of %s: part %d of %d (%s)"):format(name, k, #parts, p.kind) }
    for _, w in ipairs(p.why) do out[#out + 1] = "-- " .. w end
    if p.transactional and lock_set then out[#out + 1] = lock_set end
    for _, b in ipairs(p.body) do
      out[#out + 1] = ""
      if b.comment then out[#out + 1] = b.comment end
      out[#out + 1] = b.sql:match(";%s*$") and b.sql or (b.sql .. ";")
    end
    p.sql = table.concat(out, "\n") .. "\n"
    p.why = table.concat(p.why, "; ")
    p.body, p.seen, p.slug = nil, nil, nil
    -- every part must parse, and a non-transactional one must be alone
    local pu, perr = effects.analyze(p.sql, p.name .. "/migration.sql")
    if not pu then
      return nil, ("part %s does not parse: %s (line %s)"):format(p.name, perr.message, tostring(perr.line))
    end
    if not p.transactional and #pu.statements ~= 1 then
      return nil, ("part %s must hold one statement, it holds %d"):format(p.name, #pu.statements)
    end
  end
  parts.rewritten = rewritten
  return parts
end

--- Whether the proposal changes anything: more than one part, or one part
--- whose statements differ from the original's.
function M.changes(unit, parts)
  if #parts ~= 1 then return true end
  if parts.rewritten then return true end
  return parts[1].sql:find("\nSET LOCAL lock_timeout", 1, true) ~= nil
      or parts[1].sql:find("\nSET lock_timeout", 1, true) ~= nil
end

local function lines_of(text)
  local out = {}
  for line in (text:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do out[#out + 1] = line end
  if text == "" then out = {} end
  return out
end

--- A unified-diff-like text: the original folder removed, each part added.
---@param original_text string
---@param parts table[] from propose
---@param original_name string?
---@return string
function M.diff(original_text, parts, original_name)
  local out = {}
  local ol = lines_of(original_text)
  out[#out + 1] = ("--- a/%s/migration.sql"):format(original_name or "original")
  out[#out + 1] = "+++ /dev/null"
  out[#out + 1] = ("@@ -1,%d +0,0 @@"):format(#ol)
  for _, l in ipairs(ol) do out[#out + 1] = "-" .. l end
  for _, p in ipairs(parts) do
    local pl = lines_of(p.sql)
    out[#out + 1] = "--- /dev/null"
    out[#out + 1] = ("+++ b/%s/migration.sql"):format(p.name)
    out[#out + 1] = ("@@ -0,0 +1,%d @@"):format(#pl)
    for _, l in ipairs(pl) do out[#out + 1] = "+" .. l end
  end
  return table.concat(out, "\n") .. "\n"
end

--- A short summary of parts for evidence and JSON: {name, kind, why, statements}.
function M.summary(parts)
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = { name = p.name, kind = p.kind, why = p.why, statements = p.statements,
                      transactional = p.transactional }
  end
  return out
end

return M
