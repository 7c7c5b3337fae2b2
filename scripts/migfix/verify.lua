--- migfix.verify — what a migration file should leave behind (its NET
--- effect, from the effect records of migfix.effects) and how that compares
--- with a catalog snapshot of migfix.catalog, object by object.
---
--- expected(unit, default_schema) -> model
--- compare(unit, snap, default_schema) -> evidence
--- likely_failed_statement(unit, evidence[, err]) -> { index, line, text, reason }
--- schemas(unit, default_schema) -> list of schema names to snapshot
-- @module migfix.verify
local M = {}

local DEPENDENT_KINDS = { column = true, index = true, constraint = true, trigger = true, comment = true }
local DONE = { present = true, absent = true }
local NOT_DONE = { missing = true, still_present = true }

local function copy(t)
  if type(t) ~= "table" then return t end
  local o = {}
  for k, v in pairs(t) do o[k] = copy(v) end
  return o
end

---------------------------------------------------------------------------
-- Keys
---------------------------------------------------------------------------
local function key_of(e)
  local k = e.kind
  if k == "schema" or k == "extension" then return k .. ":" .. e.name end
  if k == "column" or k == "constraint" or k == "trigger" then
    return ("%s:%s.%s.%s"):format(k, e.schema, e.table, e.name)
  end
  if k == "enum_value" then return ("enum_value:%s.%s.%s"):format(e.schema, e.enum, e.name) end
  if k == "comment" then
    return ("comment:%s:%s.%s%s"):format(e.on or "?", e.schema or "", e.table and (e.table .. ".") or "", e.name)
  end
  -- table, view, matview, sequence, enum, type, function, index: schema-wide names
  local family = k
  if k == "table" or k == "view" or k == "matview" or k == "sequence" or k == "index" then family = "relation" end
  if k == "enum" then family = "type" end
  return ("%s:%s.%s"):format(family, e.schema, e.name)
end

---------------------------------------------------------------------------
-- Expected model
---------------------------------------------------------------------------
local PROPS = {
  column = { "type", "not_null", "default", "has_default" },
  index = { "unique", "primary", "columns", "method", "predicate", "concurrently" },
  constraint = { "contype", "columns", "ref_schema", "ref_table", "ref_columns", "on_delete", "on_update",
                 "not_valid", "expr", "name_generated" },
  enum = { "labels" },
  table = { "partitioned" },
  ["function"] = { "args", "procedure" },
  enum_value = { "before", "after" },
  comment = { "text", "on" },
}

local Model = {}
Model.__index = Model

local function new_model(default_schema)
  return setmetatable({ entries = {}, order = {}, default_schema = default_schema, seq = 0 }, Model)
end

function Model:get(key) return self.entries[key] end

function Model:put(entry)
  local key = key_of(entry)
  entry.key = key
  if not self.entries[key] then
    self.seq = self.seq + 1
    entry.order = entry.order or self.seq
  end
  self.entries[key] = entry
  return entry
end

function Model:remove(entry)
  if self.entries[entry.key] == entry then self.entries[entry.key] = nil end
end

function Model:rekey(entry)
  self:remove(entry)
  local old = self.entries[key_of(entry)]
  if old and old ~= entry then entry.order = math.min(entry.order, old.order) end
  self:put(entry)
end

--- all entries in first-seen order
function Model:list()
  local l = {}
  for _, e in pairs(self.entries) do l[#l + 1] = e end
  table.sort(l, function(a, b) return a.order < b.order end)
  return l
end

local function normalize(e, ds)
  local n = copy(e)
  if n.kind ~= "schema" and n.kind ~= "extension" then n.schema = n.schema or ds end
  if n.kind == "constraint" and n.ref_table then n.ref_schema = n.ref_schema or ds end
  return n
end

local function new_entry(e, expect)
  local entry = {
    kind = e.kind, schema = e.schema, name = e.name, table = e.table, enum = e.enum, on = e.on,
    action = e.action, expect = expect, props = {}, set_by = {},
    stmt = e.stmt, line = e.line, first_stmt = e.stmt, stmts = { e.stmt },
    created = e.action == "create",
  }
  return entry
end

local function touch(entry, e)
  entry.stmt, entry.line = e.stmt, e.line
  if entry.stmts[#entry.stmts] ~= e.stmt then entry.stmts[#entry.stmts + 1] = e.stmt end
end

local function set_props(entry, src, stmt)
  for _, p in ipairs(PROPS[entry.kind] or {}) do
    if src[p] ~= nil then
      entry.props[p] = copy(src[p])
      entry.set_by[p] = stmt
    end
  end
  if entry.kind == "column" and src.default ~= nil and src.has_default == nil then
    entry.props.has_default = true
    entry.set_by.has_default = stmt
  end
end

local function dependents(model, schema, tbl)
  local out = {}
  for _, d in pairs(model.entries) do
    if DEPENDENT_KINDS[d.kind] and d.schema == schema and d.table == tbl then out[#out + 1] = d end
  end
  return out
end

local function apply_create(model, e)
  local key = key_of(e)
  local entry = model:get(key)
  if entry and entry.expect == "present" and entry.kind == e.kind then
    touch(entry, e)                    -- CREATE OR REPLACE, or a repeated create
  else
    local recreated = entry ~= nil
    entry = new_entry(e, "present")
    entry.recreated = recreated
    model:put(entry)
  end
  entry.action = "create"
  entry.created = true
  set_props(entry, e, e.stmt)
  if e.kind == "table" then
    for _, c in ipairs(e.columns or {}) do
      local ce = copy(c)
      ce.kind, ce.action, ce.schema, ce.table = "column", "create", e.schema, e.name
      ce.stmt, ce.line = e.stmt, c.line or e.line
      apply_create(model, ce)
    end
    for _, c in ipairs(e.constraints or {}) do
      local ce = normalize(c, model.default_schema)
      ce.kind, ce.action = "constraint", "create"
      ce.schema, ce.table = e.schema, e.name
      ce.stmt, ce.line = e.stmt, c.line or e.line
      apply_create(model, ce)
    end
  elseif e.kind == "enum_value" then
    -- fold into an enum created in this file
    local en = model:get(("type:%s.%s"):format(e.schema, e.enum))
    if en and en.kind == "enum" and en.expect == "present" and en.props.labels then
      local labels = en.props.labels
      local pos = #labels + 1
      for i, l in ipairs(labels) do
        if e.before and l == e.before then pos = i break end
        if e.after and l == e.after then pos = i + 1 break end
      end
      table.insert(labels, pos, e.name)
      en.set_by.labels = e.stmt
      touch(en, e)
      model:remove(entry)
    end
  end
end

local function apply_drop(model, e)
  local key = key_of(e)
  local entry = model:get(key)
  if entry then
    touch(entry, e)
    entry.expect, entry.action = "absent", "drop"
    -- created and dropped here: absent whether or not the file ran
    if entry.created and not entry.recreated then entry.informative = false end
  else
    entry = new_entry(e, "absent")
    model:put(entry)
  end
  entry.props = {}
  if e.kind == "table" or e.kind == "view" or e.kind == "matview" then
    for _, d in ipairs(dependents(model, e.schema, e.name)) do model:remove(d) end
    -- foreign keys pointing at it go with it; with CASCADE so may views and
    -- constraints whose target we do not know: stop expecting those
    for _, d in pairs(model.entries) do
      local p = d.props
      if d.kind == "constraint" and d.expect == "present" then
        if p.ref_table == e.name and (p.ref_schema or e.schema) == e.schema then model:remove(d)
        elseif e.cascade and p.ref_table == nil and (p.contype == nil or p.contype == "f") then model:remove(d) end
      elseif e.cascade and (d.kind == "view" or d.kind == "matview") and d.expect == "present" then
        model:remove(d)
      end
    end
  elseif e.kind == "enum" then
    for _, d in pairs(model.entries) do
      if d.kind == "enum_value" and d.schema == e.schema and d.enum == e.name then model:remove(d) end
    end
  elseif e.kind == "schema" then
    for _, d in pairs(model.entries) do
      if d ~= entry and d.schema == e.name then model:remove(d) end
    end
  end
end

local function rename_columns_in(list, old, new)
  if type(list) ~= "table" then return end
  for i, c in ipairs(list) do if c == old then list[i] = new end end
end

-- PostgreSQL's quoting (keywords included), as format_type prints names
local function ident_sql(n) return require("migfix.effects").quote_ident(n) end

--- A format_type spelling with the type `old` renamed to `new`
--- (quoting, schema qualification and [] kept).
function M.rename_type_ref(t, old, new)
  local base, arr = t, ""
  while base:sub(-2) == "[]" do base, arr = base:sub(1, -3), arr .. "[]" end
  -- an optional schema qualifier: name. or "name". before the type name
  local prefix, name = base:match('^([%w_$]+%.)(.+)$')
  if not prefix then prefix, name = base:match('^(".-"%.)(.+)$') end
  if not prefix then prefix, name = "", base end
  if name == ident_sql(old) or name == old then
    return prefix .. ident_sql(new) .. arr
  end
  return t
end

local function apply_rename(model, e)
  local new_name = e.new_name
  local key = key_of(e)
  local entry = model:get(key)
  local moved = copy(e)
  moved.name = new_name
  if not entry then
    -- renaming an object that existed before this file: expect the new name
    -- present and the old one gone
    entry = new_entry(e, "present")
    entry.old_name = e.name
    entry.name = new_name
    model:put(entry)
  else
    touch(entry, e)
    entry.name = new_name
    entry.renamed_from = entry.renamed_from or e.name
    model:rekey(entry)
  end
  entry.set_by.name = e.stmt
  if e.kind == "table" or e.kind == "view" or e.kind == "matview" then
    for _, d in ipairs(dependents(model, e.schema, e.name)) do
      d.table = new_name
      model:rekey(d)
    end
    for _, d in pairs(model.entries) do
      if d.kind == "index" and d.schema == e.schema and d.table == e.name then d.table = new_name end
      if d.kind == "constraint" and d.props.ref_table == e.name and d.props.ref_schema == e.schema then
        d.props.ref_table = new_name
      end
    end
  elseif e.kind == "enum" or e.kind == "type" then
    -- columns typed with the renamed type follow it ("Role_new" -> "Role")
    for _, d in pairs(model.entries) do
      if d.kind == "column" and type(d.props.type) == "string" then
        d.props.type = M.rename_type_ref(d.props.type, e.name, new_name)
      elseif d.kind == "table" and type(d.props.columns) == "table" then
        for _, c in ipairs(d.props.columns) do
          if type(c.type) == "string" then c.type = M.rename_type_ref(c.type, e.name, new_name) end
        end
      end
    end
    local moving = {}
    for _, d in pairs(model.entries) do
      if d.kind == "enum_value" and d.schema == e.schema and d.enum == e.name then moving[#moving + 1] = d end
    end
    for _, d in ipairs(moving) do d.enum = new_name; model:rekey(d) end
  elseif e.kind == "column" then
    for _, d in pairs(model.entries) do
      if (d.kind == "index" or d.kind == "constraint") and d.schema == e.schema and d.table == e.table then
        rename_columns_in(d.props.columns, e.name, new_name)
      end
      if d.kind == "constraint" and d.props.ref_table == e.table and d.props.ref_schema == e.schema then
        rename_columns_in(d.props.ref_columns, e.name, new_name)
      end
    end
  elseif e.kind == "enum_value" then
    local en = model:get(("type:%s.%s"):format(e.schema, e.enum))
    if en and en.props.labels then rename_columns_in(en.props.labels, e.name, new_name) end
  elseif e.kind == "constraint" then
    -- the index behind a primary key / unique constraint follows its name
    local ix = model:get(("relation:%s.%s"):format(e.schema, e.name))
    if ix and ix.kind == "index" then ix.name = new_name; model:rekey(ix) end
  elseif e.kind == "index" then
    local moving = {}
    for _, d in pairs(model.entries) do
      if d.kind == "constraint" and d.schema == e.schema and d.name == e.name then moving[#moving + 1] = d end
    end
    for _, d in ipairs(moving) do d.name = new_name; model:rekey(d) end
  end
end

local function apply_alter(model, e)
  local set = e.set
  if set == nil then
    set = {}
    for _, p in ipairs(PROPS[e.kind] or {}) do set[p] = e[p] end
    if e.validated ~= nil then set.validated = e.validated end
  end
  local key = key_of(e)
  local entry = model:get(key)
  if not entry or entry.expect ~= "present" then
    entry = new_entry(e, "present")
    model:put(entry)
  else
    touch(entry, e)
  end
  if entry.action ~= "create" then entry.action = "alter" end
  if set.schema and set.schema ~= entry.schema then
    -- SET SCHEMA: the object and what hangs off it move
    local old_schema = entry.schema
    entry.schema = set.schema
    entry.old_schema = entry.old_schema or old_schema
    entry.set_by.schema = e.stmt
    model:rekey(entry)
    if e.kind == "table" or e.kind == "view" or e.kind == "matview" then
      local moving = {}
      for _, d in pairs(model.entries) do
        if DEPENDENT_KINDS[d.kind] and d.schema == old_schema and d.table == e.name then moving[#moving + 1] = d end
      end
      for _, d in ipairs(moving) do d.schema = set.schema; model:rekey(d) end
    end
  end
  if set.validated ~= nil and set.not_valid == nil then set.not_valid = not set.validated end
  set_props(entry, set, e.stmt)
  if e.kind == "column" and set.has_default == false then
    entry.props.default = nil
  end
end

local function check_unit(unit, fname)
  if type(unit) ~= "table" or type(unit.effects) ~= "table" then
    error(("bad argument #1 to '%s' (expected a unit from migfix.effects.analyze)"):format(fname), 3)
  end
end

---The NET state a migration file leaves behind.
---@param unit table from migfix.effects.analyze
---@param default_schema string? schema of unqualified names (default "public")
---@return table model { entries = { [key] = entry }, list = { entry... }, unverifiable = { ... }, default_schema }
function M.expected(unit, default_schema)
  check_unit(unit, "expected")
  default_schema = default_schema or "public"
  local model = new_model(default_schema)
  local unverifiable = {}
  for _, raw in ipairs(unit.effects) do
    local e = normalize(raw, default_schema)
    if e.action == "unverifiable" then
      unverifiable[#unverifiable + 1] = { kind = e.kind, action = "unverifiable", stmt = e.stmt, line = e.line,
                                          schema = raw.schema, name = e.name, table = e.table }
    elseif e.action == "create" then apply_create(model, e)
    elseif e.action == "drop" then apply_drop(model, e)
    elseif e.action == "rename" then apply_rename(model, e)
    elseif e.action == "alter" then apply_alter(model, e)
    else
      unverifiable[#unverifiable + 1] = { kind = e.kind, action = tostring(e.action), stmt = e.stmt, line = e.line,
                                          name = e.name, reason = "unrecognized action" }
    end
  end
  -- statements flagged unverifiable that produced no effect record
  local seen = {}
  for _, u in ipairs(unverifiable) do seen[u.stmt] = true end
  for _, s in ipairs(unit.statements or {}) do
    if s.unverifiable and not seen[s.index] then
      local has = false
      for _, e in ipairs(unit.effects) do if e.stmt == s.index then has = true break end end
      if not has then
        unverifiable[#unverifiable + 1] = { kind = "other", action = "unverifiable", stmt = s.index, line = s.line }
      end
    end
  end
  model.unverifiable = unverifiable
  model.list = model:list()
  return model
end

---Schema names a snapshot must cover to verify `unit`.
---@return string[]
function M.schemas(unit, default_schema)
  check_unit(unit, "schemas")
  default_schema = default_schema or "public"
  local set, out = { [default_schema] = true }, { default_schema }
  local function add(s) if s and not set[s] then set[s] = true; out[#out + 1] = s end end
  for _, e in ipairs(unit.effects) do
    if e.kind == "schema" then add(e.name) else add(e.schema) end
    add(e.ref_schema)
    if type(e.set) == "table" then add(e.set.schema) end
  end
  return out
end

---------------------------------------------------------------------------
-- Comparison
---------------------------------------------------------------------------
local function norm_type(t, ds)
  if type(t) ~= "string" then return t end
  t = t:gsub('"', "")
  for _, s in ipairs({ ds or "public", "public", "pg_catalog" }) do
    if t:sub(1, #s + 1) == s .. "." then t = t:sub(#s + 2) break end
  end
  return t
end

local function norm_expr(x)
  if type(x) ~= "string" then return x end
  x = x:lower():gsub("::[%w_ %.\"%[%]]+", ""):gsub("[%s%(%)\"]", "")
  return x
end

local function same_cols(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
  for i = 1, #a do
    local x, y = a[i], b[i]
    if type(x) == "table" or type(y) == "table" then
      local xe = type(x) == "table" and x.expr or x
      local ye = type(y) == "table" and y.expr or y
      if type(y) == "table" and y.locked then -- deparse skipped: unknown, assume equal
      elseif norm_expr(xe) ~= norm_expr(ye) then return false end
    elseif x ~= y then return false end
  end
  return true
end

local function label_set(l)
  local s = {}
  for _, v in ipairs(l or {}) do s[v] = true end
  return s
end

local function find_relation(snap, schema, name, kinds)
  local t = snap.tables and snap.tables[schema .. "." .. name]
  if t and (not kinds or kinds[t.kind]) then return t end
  if t then return nil, t end
  return nil
end

local REL_KINDS = {
  table = { r = true, p = true, f = true },
  view = { v = true },
  matview = { m = true },
}

local function in_pk(snap, schema, tbl, col)
  for _, c in pairs(snap.constraints or {}) do
    if c.contype == "p" and c.schema == schema and c.table == tbl then
      for _, n in ipairs(c.columns or {}) do if n == col then return true end end
    end
  end
  return false
end

local function find_constraint(snap, entry)
  local p = entry.props
  local c = snap.constraints and snap.constraints[("%s.%s.%s"):format(entry.schema, entry.table, entry.name)]
  if c and not p.name_generated then return c end
  if p.name_generated and p.contype then
    -- PostgreSQL chose the name: match by table, type and columns
    local best
    for _, x in pairs(snap.constraints or {}) do
      if x.schema == entry.schema and x.table == entry.table and x.contype == p.contype
        and (p.columns == nil or same_cols(p.columns, x.columns))
        and (p.ref_table == nil or x.ref_table == p.ref_table) then
        if x.name == entry.name then return x end
        if not best or x.name < best.name then best = x end
      end
    end
    return best or c
  end
  return c
end

local function diff(diffs, field, expected, found, extra)
  local d = { field = field, expected = expected, found = found }
  for k, v in pairs(extra or {}) do d[k] = v end
  diffs[#diffs + 1] = d
  return d
end

-- Look up an entry's object; returns found-record (or nil) and diffs.
local function lookup(entry, snap, ds)
  local k, p = entry.kind, entry.props
  local diffs = {}
  if k == "schema" then
    return snap.schemas[entry.name] and { name = entry.name } or nil, diffs
  elseif k == "extension" then
    local v = snap.extensions and snap.extensions[entry.name]
    return v and { name = entry.name, version = v } or nil, diffs
  elseif k == "table" or k == "view" or k == "matview" then
    local t, other = find_relation(snap, entry.schema, entry.name, REL_KINDS[k])
    if not t and other then
      if entry.expect == "absent" then return nil, diffs end
      diff(diffs, "kind", k, other.kind)
      return other, diffs
    end
    if t and k == "table" and p.partitioned ~= nil and (t.kind == "p") ~= p.partitioned then
      diff(diffs, "partitioned", p.partitioned, t.kind == "p")
    end
    return t, diffs
  elseif k == "column" then
    local t = snap.tables and snap.tables[entry.schema .. "." .. entry.table]
    local c = t and t.columns and t.columns[entry.name]
    if not c then return nil, diffs end
    if p.type ~= nil and norm_type(p.type, ds) ~= norm_type(c.type, ds) then diff(diffs, "type", p.type, c.type) end
    if p.not_null ~= nil and p.not_null ~= c.not_null then
      local implicit = p.not_null == false and c.not_null and entry.set_by.not_null == entry.first_stmt
        and in_pk(snap, entry.schema, entry.table, entry.name)
      if not implicit then diff(diffs, "not_null", p.not_null, c.not_null) end
    end
    local found_default = c.has_default
    if found_default == nil then found_default = c.default ~= nil end
    local want_default = p.has_default
    if want_default == nil and p.default ~= nil then want_default = true end
    if want_default == nil and entry.created then want_default = false end
    if want_default ~= nil and want_default ~= found_default then
      diff(diffs, "default", p.default or (want_default and "(a default)" or nil), c.default or (found_default and "(a default)" or nil))
    end
    return c, diffs
  elseif k == "index" then
    local ix = snap.indexes and snap.indexes[entry.schema .. "." .. entry.name]
    if not ix then return nil, diffs end
    if entry.table and ix.table ~= entry.table then diff(diffs, "table", entry.table, ix.table) end
    if p.columns and not same_cols(p.columns, ix.columns) then diff(diffs, "columns", p.columns, ix.columns) end
    if p.unique ~= nil and p.unique ~= ix.unique then diff(diffs, "unique", p.unique, ix.unique) end
    if p.primary ~= nil and p.primary ~= ix.primary then diff(diffs, "primary", p.primary, ix.primary) end
    if p.method and ix.method and p.method ~= ix.method then diff(diffs, "method", p.method, ix.method) end
    if p.predicate ~= nil and ix.predicate == nil and not ix.locked then diff(diffs, "predicate", p.predicate, nil) end
    if p.predicate == nil and ix.predicate ~= nil and entry.created then diff(diffs, "predicate", nil, ix.predicate) end
    if ix.valid == false then
      diff(diffs, "valid", true, false, { note = "INVALID index (a failed CREATE INDEX CONCURRENTLY leaves one)" })
    end
    return ix, diffs
  elseif k == "constraint" then
    local c = find_constraint(snap, entry)
    if not c then return nil, diffs end
    if p.contype and p.contype ~= c.contype then diff(diffs, "contype", p.contype, c.contype) end
    if p.columns and p.contype ~= "c" and not same_cols(p.columns, c.columns) then diff(diffs, "columns", p.columns, c.columns) end
    if p.ref_table and p.ref_table ~= c.ref_table then diff(diffs, "ref_table", p.ref_table, c.ref_table) end
    if p.ref_table and p.ref_schema and c.ref_schema and p.ref_schema ~= c.ref_schema then
      diff(diffs, "ref_schema", p.ref_schema, c.ref_schema)
    end
    if p.ref_columns and not same_cols(p.ref_columns, c.ref_columns) then diff(diffs, "ref_columns", p.ref_columns, c.ref_columns) end
    if p.on_delete and c.on_delete and p.on_delete ~= c.on_delete then diff(diffs, "on_delete", p.on_delete, c.on_delete) end
    if p.on_update and c.on_update and p.on_update ~= c.on_update then diff(diffs, "on_update", p.on_update, c.on_update) end
    if p.not_valid == false and c.validated == false then
      diff(diffs, "validated", true, false, { note = "constraint is NOT VALID" })
    end
    return c, diffs
  elseif k == "enum" then
    local en = snap.enums and snap.enums[entry.schema .. "." .. entry.name]
    if not en then return nil, diffs end
    if p.labels then
      local have, missing = label_set(en.labels), {}
      for _, l in ipairs(p.labels) do if not have[l] then missing[#missing + 1] = l end end
      if #missing > 0 then diff(diffs, "labels", p.labels, en.labels, { missing = missing }) end
    end
    return en, diffs
  elseif k == "enum_value" then
    local en = snap.enums and snap.enums[entry.schema .. "." .. entry.enum]
    if not en then return nil, diffs end
    for i, l in ipairs(en.labels or {}) do
      if l == entry.name then return { enum = entry.enum, name = l, position = i }, diffs end
    end
    return nil, diffs
  elseif k == "sequence" then
    return snap.sequences and snap.sequences[entry.schema .. "." .. entry.name], diffs
  elseif k == "type" then
    return snap.types and snap.types[entry.schema .. "." .. entry.name], diffs
  elseif k == "function" then
    local l = snap.functions and snap.functions[entry.schema .. "." .. entry.name]
    if not l or #l == 0 then return nil, diffs end
    if p.args then
      for _, f in ipairs(l) do
        local ok = #f.args == #p.args
        for i = 1, #p.args do
          if not ok then break end
          ok = norm_type(p.args[i], ds) == norm_type(f.args[i], ds)
        end
        if ok then return f, diffs end
      end
      -- no overload with these arguments
      if entry.expect == "absent" then return nil, diffs end
      local sigs = {}
      for i, f in ipairs(l) do sigs[i] = f.identity_args end
      diff(diffs, "args", table.concat(p.args, ", "), table.concat(sigs, " | "))
      return l[1], diffs
    end
    return l[1], diffs
  elseif k == "trigger" then
    return snap.triggers and snap.triggers[("%s.%s.%s"):format(entry.schema, entry.table, entry.name)], diffs
  elseif k == "comment" then
    local on = entry.on or "table"
    local bucket = on == "column" and "column" or ((on == "type" or on == "enum" or on == "domain") and "type" or "table")
    local key = entry.schema .. "." .. (entry.table and (entry.table .. ".") or "") .. entry.name
    local text = snap.comments and snap.comments[bucket] and snap.comments[bucket][key]
    if text == nil then return nil, diffs end
    if p.text ~= nil and p.text ~= text then diff(diffs, "text", p.text, text) end
    return { text = text }, diffs
  end
  return nil, diffs, "unsupported"
end

local function schema_of(entry)
  if entry.kind == "schema" or entry.kind == "extension" then return nil end
  return entry.schema
end

local function public_found(f)
  if type(f) ~= "table" then return f end
  local o = {}
  for k, v in pairs(f) do o[k] = v end
  if f.column_order then
    -- a relation: list its column names rather than the whole column map
    o.columns = copy(f.column_order)
    o.column_order = nil
  end
  return o
end

local function stmt_line(unit, idx, fallback)
  local s = unit.statements and unit.statements[idx]
  return s and s.line or fallback
end

local function earliest_set(entry, diffs)
  local best
  for _, d in ipairs(diffs) do
    local s = entry.set_by[d.field]
    if s and (not best or s < best) then best = s end
  end
  return best or entry.stmt
end


--- True when the only difference of an item is that its index is INVALID.
function M.only_invalid(item)
  local diffs = item.diffs or {}
  if #diffs == 0 then return false end
  for _, d in ipairs(diffs) do if d.field ~= "valid" then return false end end
  return true
end

---Compare what `unit` should leave behind with a catalog snapshot.
---@param unit table from migfix.effects.analyze
---@param snap table from migfix.catalog.snapshot
---@param default_schema string? (default "public")
---@return table evidence { verdict, items, counts, summary }
function M.compare(unit, snap, default_schema)
  check_unit(unit, "compare")
  if type(snap) ~= "table" or type(snap.tables) ~= "table" then
    error("bad argument #2 to 'compare' (expected a snapshot from migfix.catalog.snapshot)", 2)
  end
  default_schema = default_schema or "public"
  local model = M.expected(unit, default_schema)
  local items = {}
  local counts = { present = 0, missing = 0, different = 0, absent = 0, still_present = 0, unverifiable = 0 }
  local requested = snap.requested

  for _, entry in ipairs(model.list) do
    local item = {
      kind = entry.kind, schema = schema_of(entry), name = entry.name, table = entry.table,
      enum = entry.enum, action = entry.action, diffs = {},
      expected = copy(entry.props), stmts = entry.stmts,
      informative = entry.informative ~= false,
    }
    item.expected.present = entry.expect == "present"
    if entry.old_name then item.old_name = entry.old_name end
    if entry.renamed_from then item.renamed_from = entry.renamed_from end
    local sch = schema_of(entry)
    if sch and requested and next(requested) and not requested[sch] then
      item.state, item.reason = "unverifiable", ("schema \"%s\" is not in the snapshot"):format(sch)
      item.stmt = entry.stmt
    else
      local found, diffs, unsupported = lookup(entry, snap, default_schema)
      if unsupported then
        item.state, item.reason = "unverifiable", ("no catalog check for %s objects"):format(entry.kind)
        item.stmt = entry.stmt
      elseif entry.expect == "absent" then
        item.found = public_found(found)
        item.state = found and "still_present" or "absent"
        item.stmt = entry.stmt
      elseif not found then
        item.state = "missing"
        item.stmt = entry.first_stmt
        if entry.old_name or entry.renamed_from then
          -- a rename that did not happen leaves the old name in place
          local old = copy(entry)
          old.name = entry.old_name or entry.renamed_from
          local of = lookup(old, snap, default_schema)
          if of then
            item.old_present = true
            item.stmt = entry.set_by.name or entry.stmt
          end
        end
      else
        item.found = public_found(found)
        item.diffs = diffs
        if #diffs > 0 then
          item.state = "different"
          item.stmt = earliest_set(entry, diffs)
        else
          item.state = "present"
          item.stmt = entry.stmt
          if entry.old_name then
            local old = copy(entry)
            old.name = entry.old_name
            if lookup(old, snap, default_schema) then
              item.state = "different"
              item.diffs = { { field = "name", expected = entry.name .. " only",
                               found = ("both \"%s\" and \"%s\""):format(entry.old_name, entry.name) } }
            end
          end
        end
      end
    end
    item.line = stmt_line(unit, item.stmt, entry.line)
    counts[item.state] = counts[item.state] + 1
    items[#items + 1] = item
  end
  for _, u in ipairs(model.unverifiable) do
    items[#items + 1] = {
      kind = u.kind, schema = u.schema, name = u.name, table = u.table, action = u.action,
      state = "unverifiable", diffs = {}, stmt = u.stmt, line = stmt_line(unit, u.stmt, u.line),
      expected = {}, reason = u.reason or "the catalog cannot show this statement's effect",
      informative = false, stmts = { u.stmt },
    }
    counts.unverifiable = counts.unverifiable + 1
  end
  table.sort(items, function(a, b)
    if (a.stmt or 0) ~= (b.stmt or 0) then return (a.stmt or 0) < (b.stmt or 0) end
    return false
  end)

  -- verdict
  local done, not_done, different, verifiable, informative_done = 0, 0, 0, 0, 0
  for _, it in ipairs(items) do
    if it.state ~= "unverifiable" then
      verifiable = verifiable + 1
      if it.state == "different" and (M.only_invalid(it) or it.action == "alter") then
        -- an INVALID index is what an interrupted CREATE INDEX CONCURRENTLY
        -- leaves, and an object the file only ALTERs that still has its old
        -- property is an ALTER that did not happen: both count as not done
        not_done = not_done + 1
      elseif it.state == "different" then different = different + 1
      elseif NOT_DONE[it.state] then not_done = not_done + 1
      elseif DONE[it.state] and it.informative then informative_done = informative_done + 1 end
      if DONE[it.state] then done = done + 1 end
    end
  end
  local verdict
  if verifiable == 0 then verdict = "unverifiable"
  elseif different > 0 then verdict = "drifted"
  elseif not_done == 0 then verdict = "complete"
  elseif informative_done == 0 then verdict = "absent"
  else verdict = "partial" end

  local parts = {}
  for _, s in ipairs({ "present", "absent", "missing", "still_present", "different", "unverifiable" }) do
    if counts[s] > 0 then parts[#parts + 1] = ("%d %s"):format(counts[s], s:gsub("_", " ")) end
  end
  local lead = ({
    complete = "every checked object is as the migration leaves it",
    absent = "none of the migration's changes are in the database",
    partial = "some of the migration's changes are in the database, some are not",
    drifted = "the database differs from what the migration would leave",
    unverifiable = "nothing in the migration can be checked in the catalog",
  })[verdict]
  local summary = lead .. (#parts > 0 and (" (" .. table.concat(parts, ", ") .. ")") or "")
  return { verdict = verdict, items = items, counts = counts, summary = summary }
end

---------------------------------------------------------------------------
-- Which statement failed
---------------------------------------------------------------------------
local function all_or_nothing(unit)
  local f = unit.flags or {}
  if f.tx_control or f.non_transactional then return false end
  for _, s in ipairs(unit.statements or {}) do
    if s.tx_control or s.non_transactional then return false end
  end
  return true
end

local function describe(it)
  local n = it.name or "?"
  if it.table and (it.kind == "column" or it.kind == "constraint" or it.kind == "trigger") then n = it.table .. "." .. n end
  if it.schema then n = it.schema .. "." .. n end
  return ("%s \"%s\" is %s"):format(it.kind, n, it.state:gsub("_", " "))
end

local function stmt_record(unit, idx, reason)
  local s = unit.statements and unit.statements[idx] or {}
  return { index = idx, line = s.line, text = s.text, reason = reason }
end

---The statement most likely to have failed.
---@param unit table from migfix.effects.analyze
---@param evidence table from compare
---@param err table? from migfix.errclass.parse (used to point at the error's object)
---@return table { index, line, text, reason, all_or_nothing } (index nil when no statement can be named)
function M.likely_failed_statement(unit, evidence, err)
  check_unit(unit, "likely_failed_statement")
  if type(evidence) ~= "table" or type(evidence.items) ~= "table" then
    error("bad argument #2 to 'likely_failed_statement' (expected evidence from verify.compare)", 2)
  end
  local first
  for _, it in ipairs(evidence.items) do
    if (NOT_DONE[it.state] or it.state == "different") and it.stmt and (not first or it.stmt < first.stmt) then
      first = it
    end
  end
  if not first then
    return { all_or_nothing = all_or_nothing(unit), reason = "every checked effect is in the database" }
  end
  if all_or_nothing(unit) and evidence.verdict ~= "partial" then
    local r = {
      all_or_nothing = true,
      first_not_done = first.stmt,
      reason = "the file has no transaction control and no statement that must run outside a transaction, " ..
        "so PostgreSQL ran it as one transaction and every statement rolled back together; " ..
        "the failing statement is the one the error names",
    }
    if type(err) == "table" and type(err.object) == "string" and err.object ~= "" then
      for _, s in ipairs(unit.statements or {}) do
        if type(s.text) == "string" and s.text:find(err.object, 1, true) then
          r.index, r.line, r.text = s.index, s.line, s.text
          r.reason = r.reason .. (" (statement %d mentions \"%s\")"):format(s.index, err.object)
          break
        end
      end
    end
    return r
  end
  local reason = ("statement %d is the first whose effects are not in the database: %s"):format(first.stmt, describe(first))
  local skipped = {}
  for _, it in ipairs(evidence.items) do
    if it.state == "unverifiable" and it.stmt and it.stmt < first.stmt then skipped[#skipped + 1] = it.stmt end
  end
  if #skipped > 0 then
    reason = reason .. ("; earlier statement(s) %s could not be checked"):format(table.concat(skipped, ", "))
  end
  local r = stmt_record(unit, first.stmt, reason)
  r.all_or_nothing = all_or_nothing(unit)
  return r
end

return M
