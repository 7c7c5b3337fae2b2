--- migfix.verify — what a migration file should leave behind (its NET
--- effect, from the effect records of migfix.effects) and how that compares
--- with a catalog snapshot of migfix.catalog, object by object.
---
--- The rule (docs/effects.md "Evidence"): an effect counts as done — or, for
--- a drop, as gone — only when its object's kind and identity are positively
--- resolved in the snapshot. "Not found" means "not there" only when the
--- snapshot covered that name in that namespace (relations of every relkind,
--- pg_type of every typtype, ...). Anything else is `unverifiable`, with a
--- reason, and the verdict is `complete` only when every statement either
--- has its effect in the catalog or is proven to have run by one that has.
---
--- expected(unit, default_schema) -> model
--- compare(unit, snap, default_schema[, opts]) -> evidence
--- likely_failed_statement(unit, evidence[, err]) -> { index, line, text, reason }
--- schemas(unit, default_schema) -> list of schema names to snapshot
--- names(unit) -> list of object names to snapshot
--- checks() -> set of (kind, action) with a catalog check
-- @module migfix.verify
local M = {}

local DEPENDENT_KINDS = { column = true, index = true, constraint = true, trigger = true, comment = true }
local RELATION_KINDS = { table = true, view = true, matview = true, sequence = true, index = true }

local function copy(t)
  if type(t) ~= "table" then return t end
  local o = {}
  for k, v in pairs(t) do o[k] = copy(v) end
  return o
end

---------------------------------------------------------------------------
-- Type names (format_type spellings) and expressions
---------------------------------------------------------------------------
local function norm_type(t, ds)
  if type(t) ~= "string" then return t end
  t = t:gsub('"', "")
  for _, s in ipairs({ ds or "public", "public", "pg_catalog" }) do
    if t:sub(1, #s + 1) == s .. "." then t = t:sub(#s + 2) break end
  end
  return t
end

-- a function argument type without its typmod (format_type(oid, NULL))
local function norm_arg(t, ds)
  t = norm_type(t, ds)
  if type(t) ~= "string" then return t end
  return (t:gsub("%b()", ""):gsub("%s+", " "):gsub("^%s+", ""):gsub("%s+$", ""):gsub(" %[", "["))
end

local function args_key(args, ds)
  local out = {}
  for i, a in ipairs(args or {}) do out[i] = norm_arg(a, ds) end
  return table.concat(out, ",")
end

-- Expression text for comparison: casts, blanks, parentheses and quotes of
-- identifiers dropped; case folded outside string literals; a quoted number
-- ('-1'::integer) is the number.
local CAST_WORDS = { varying = true, precision = true, without = true, with = true, time = true, zone = true }

local function norm_expr(x)
  if type(x) ~= "string" then return x end
  local out, i, n = {}, 1, #x
  while i <= n do
    local c = x:sub(i, i)
    if (c == "E" or c == "e") and x:sub(i + 1, i + 1) == "'" and not x:sub(i - 1, i - 1):match("[%w_]") then
      -- E'...': the same string (its backslash escapes are rare in defaults)
      i = i + 1
      c = "'"
    end
    if c == "'" then
      local j = i + 1
      while j <= n do
        if x:sub(j, j) == "'" then
          if x:sub(j + 1, j + 1) == "'" then j = j + 2 else break end
        else j = j + 1 end
      end
      local lit = x:sub(i, j)
      local num = lit:match("^'(%-?[%d%.]+)'$")
      out[#out + 1] = num or { lit }
      i = j + 1
    elseif c == ":" and x:sub(i + 1, i + 1) == ":" then
      -- a cast: skip the type name (schema.name, quoted or not, several
      -- words as in "timestamp(3) without time zone", a typmod, [])
      local j = x:find("[^ ]", i + 2) or (n + 1)
      local function word_at(k) return x:match('^"[^"]*"', k) or x:match("^[%w_]+", k) end
      local w = word_at(j)
      while w do
        j = j + #w
        if x:sub(j, j) == "(" then local _, e = x:find("%b()", j); j = (e or n) + 1 end
        if x:sub(j, j) == "." then
          j = j + 1
          w = word_at(j)
        else
          local sp, word = x:match("^( +)(%a+)", j)
          if word and CAST_WORDS[word:lower()] then j = j + #sp; w = word else w = nil end
        end
      end
      while x:sub(j, j) == "[" do
        local e = x:find("]", j, true)
        if not e or not x:sub(j + 1, e - 1):match("^%d*$") then break end
        j = e + 1
      end
      i = j
    else
      out[#out + 1] = c:lower()
      i = i + 1
    end
  end
  -- outside string literals: != is <>, 09 is 9, blanks, parentheses and quotes go
  local parts, run = {}, {}
  local function flush()
    local r = table.concat(run):gsub("!=", "<>"):gsub("%f[%w_.]0+(%d)", "%1"):gsub("[%s%(%)\"]", "")
    parts[#parts + 1] = r
    run = {}
  end
  for _, piece in ipairs(out) do
    if type(piece) == "table" then flush(); parts[#parts + 1] = piece[1] else run[#run + 1] = piece end
  end
  flush()
  return table.concat(parts)
end
M.norm_expr = norm_expr

-- A JSON text as a tree (nil when it does not parse): objects keep the last
-- of repeated keys (as jsonb does), numbers and strings keep their text with
-- the simple escapes decoded (a \u escape stays as written).
local function json_tree(s)
  local i = 1
  local function ws() i = s:find("[^ \t\r\n]", i) or (#s + 1) end
  local value
  local function str()
    local j, buf = i + 1, {}
    while j <= #s do
      local c = s:sub(j, j)
      if c == '"' then i = j + 1; return table.concat(buf) end
      if c == "\\" then
        local e = s:sub(j + 1, j + 1)
        local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if map[e] then buf[#buf + 1] = map[e]; j = j + 2
        elseif e == "u" then buf[#buf + 1] = s:sub(j, j + 5); j = j + 6
        else return nil end
      else buf[#buf + 1] = c; j = j + 1 end
    end
    return nil
  end
  function value()
    ws()
    local c = s:sub(i, i)
    if c == "{" then
      local obj = { t = "obj", map = {} }
      i = i + 1; ws()
      if s:sub(i, i) == "}" then i = i + 1; return obj end
      while true do
        ws()
        if s:sub(i, i) ~= '"' then return nil end
        local k = str(); if not k then return nil end
        ws(); if s:sub(i, i) ~= ":" then return nil end
        i = i + 1
        local v = value(); if not v then return nil end
        obj.map[k] = v
        ws()
        local d = s:sub(i, i); i = i + 1
        if d == "}" then return obj elseif d ~= "," then return nil end
      end
    elseif c == "[" then
      local arr = { t = "arr", list = {} }
      i = i + 1; ws()
      if s:sub(i, i) == "]" then i = i + 1; return arr end
      while true do
        local v = value(); if not v then return nil end
        arr.list[#arr.list + 1] = v
        ws()
        local d = s:sub(i, i); i = i + 1
        if d == "]" then return arr elseif d ~= "," then return nil end
      end
    elseif c == '"' then
      local v = str(); if not v then return nil end
      return { t = "str", v = v }
    else
      local lit = s:match("^%-?%d+%.?%d*[eE]?[%+%-]?%d*", i) or s:match("^true", i) or s:match("^false", i) or s:match("^null", i)
      if not lit or lit == "" then return nil end
      i = i + #lit
      if lit:match("^%-?%d") then return { t = "num", v = tonumber(lit) } end
      return { t = lit }
    end
  end
  local v = value()
  ws()
  if not v or i <= #s then return nil end
  return v
end

local function json_equal(a, b)
  if a.t ~= b.t then return false end
  if a.t == "str" or a.t == "num" then return a.v ~= nil and a.v == b.v end
  if a.t == "arr" then
    if #a.list ~= #b.list then return false end
    for k, x in ipairs(a.list) do if not json_equal(x, b.list[k]) then return false end end
    return true
  end
  if a.t == "obj" then
    for k, x in pairs(a.map) do if not b.map[k] or not json_equal(x, b.map[k]) then return false end end
    for k in pairs(b.map) do if not a.map[k] then return false end end
    return true
  end
  return true
end

-- the string of a default that is one literal (E'...' or '...', an optional
-- cast), '' unescaped; nil otherwise
local function one_literal(x)
  local i = x:find("[^%s]") or 1
  if x:sub(i, i) == "E" or x:sub(i, i) == "e" then i = i + 1 end
  if x:sub(i, i) ~= "'" then return nil end
  local j, buf = i + 1, {}
  while true do
    local q = x:find("'", j, true)
    if not q then return nil end
    buf[#buf + 1] = x:sub(j, q - 1)
    if x:sub(q + 1, q + 1) == "'" then buf[#buf + 1] = "'"; j = q + 2 else j = q + 1; break end
  end
  local rest = x:sub(j)
  if not rest:match("^%s*$") and not rest:match('^%s*::%s*[%w_"]+%s*$') then return nil end
  return table.concat(buf)
end

--- Whether two defaults are the same value: the same text (norm_expr), or,
--- on a jsonb column, two literals holding the same JSON value (jsonb stores
--- '{"a":1}' as '{"a": 1}'::jsonb, keys reordered).
local function same_default(want, found, coltype)
  if norm_expr(want) == norm_expr(found) then return true end
  if coltype ~= "jsonb" then return false end
  local a, b = one_literal(want), one_literal(found)
  if not a or not b then return false end
  local ta, tb = json_tree(a), json_tree(b)
  return ta ~= nil and tb ~= nil and json_equal(ta, tb)
end
M.same_default = same_default

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

---------------------------------------------------------------------------
-- Keys
---------------------------------------------------------------------------
local function key_of(e, ds)
  local k = e.kind
  if k == "schema" or k == "extension" then return k .. ":" .. e.name end
  if k == "column" or k == "constraint" or k == "trigger" then
    return ("%s:%s.%s.%s"):format(k, e.schema, e.table, e.name)
  end
  if k == "enum_value" then return ("enum_value:%s.%s.%s"):format(e.schema, e.enum, e.name) end
  if k == "comment" then
    local args = e.on == "function" and e.args and ("(" .. args_key(e.args, ds) .. ")") or ""
    return ("comment:%s:%s.%s%s%s"):format(e.on or "?", e.schema or "", e.table and (e.table .. ".") or "", e.name, args)
  end
  if k == "function" then
    if e.args then return ("function:%s.%s(%s)"):format(e.schema, e.name, args_key(e.args, ds)) end
    return ("function:%s.%s"):format(e.schema, e.name)
  end
  -- table, view, matview, sequence, index share pg_class; enum and type share pg_type
  local family = k
  if RELATION_KINDS[k] then family = "relation" end
  if k == "enum" then family = "type" end
  return ("%s:%s.%s"):format(family, e.schema, e.name)
end

---------------------------------------------------------------------------
-- Expected model
---------------------------------------------------------------------------
local PROPS = {
  column = { "type", "not_null", "default", "has_default", "expression" },
  index = { "unique", "primary", "columns", "method", "predicate", "concurrently" },
  constraint = { "contype", "columns", "ref_schema", "ref_table", "ref_columns", "on_delete", "on_update",
                 "not_valid", "expr", "name_generated" },
  enum = { "labels" },
  table = { "partitioned" },
  ["function"] = { "args", "procedure", "body", "language" },
  enum_value = { "before", "after" },
  comment = { "text", "on", "args" },
  type = { "composite", "domain", "range" },
}

-- ALTER properties the catalog check compares (others make the item unverifiable)
local COMPARED_SET = {
  column = { type = true, not_null = true, default = true, has_default = true, expression = true },
  constraint = { not_valid = true, validated = true },
  sequence = { owned_by = true },
}
PROPS.sequence = { "owned_by" }
PROPS.view = { "out_columns" }
PROPS.matview = { "out_columns" }

local Model = {}
Model.__index = Model

local function new_model(default_schema)
  return setmetatable({ entries = {}, default_schema = default_schema, seq = 0, vacated = {}, interim = {},
                        dropped_columns = {} }, Model)
end

function Model:key(e) return key_of(e, self.default_schema) end
function Model:get(key) return self.entries[key] end

--- Place entry under its key. An entry already there is replaced: its
--- position is kept, and when it stood for an object that existed before the
--- file (dropped or renamed away here), the new entry "replaces" it.
function Model:put(entry)
  local key = self:key(entry)
  local old = self.entries[key]
  if old and old ~= entry then
    entry.order = math.min(entry.order or old.order, old.order)
    if old.preexisting or old.replaces then entry.replaces = true end
  end
  if not entry.order then
    self.seq = self.seq + 1
    entry.order = self.seq
  end
  if self.vacated[key] and not entry.preexisting then entry.replaces = true end
  entry.key = key
  self.entries[key] = entry
  return entry
end

function Model:remove(entry)
  if entry.key and self.entries[entry.key] == entry then self.entries[entry.key] = nil end
end

function Model:rekey(entry)
  self:remove(entry)
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
    kind = e.kind, schema = e.schema, name = e.name, table = e.table, enum = e.enum, on = e.on, args = e.args,
    action = e.action, expect = expect, props = {}, set_by = {},
    stmt = e.stmt, line = e.line, first_stmt = e.stmt, stmts = { e.stmt },
    created = e.action == "create",
    preexisting = e.action ~= "create",      -- the file changes an object that existed before it
    conditional = e.conditional, in_do = e.in_do,
  }
  -- the catalog cannot tell these from the state before the file: no proof
  -- that the statement ran (progress_only: the object usually did not exist,
  -- so finding it still tells a partial run from none)
  if e.action == "create" and e.if_not_exists then
    entry.progress_only = "IF NOT EXISTS: it may have existed before"
    entry.keeps_existing = true -- an object of that name already there stays as it is
  end
  if e.action == "create" and e.or_replace then
    entry.maybe_replaces = true
    entry.progress_only = "OR REPLACE: an older version may have existed before"
  end
  if e.action == "drop" and e.if_exists then
    entry.uninformative = "IF EXISTS: it may have been absent before"
    entry.maybe_ran = true -- gone: the drop ran, or there was nothing to drop
  end
  if e.kind == "comment" then entry.progress_only = "the same comment may have been set before" end
  if e.conditional then entry.uninformative = e.conditional end
  return entry
end

local function touch(entry, e)
  entry.stmt, entry.line = e.stmt, e.line
  if entry.stmts[#entry.stmts] ~= e.stmt then entry.stmts[#entry.stmts + 1] = e.stmt end
  if e.conditional then entry.conditional = entry.conditional or e.conditional end
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

-- function entries of schema.name (any arguments)
local function overloads(model, schema, name)
  local out = {}
  for _, d in pairs(model.entries) do
    if d.kind == "function" and d.schema == schema and d.name == name then out[#out + 1] = d end
  end
  return out
end

local function apply_create(model, e)
  local key = model:key(e)
  local entry = model:get(key)
  if entry and entry.expect == "present" and entry.kind == e.kind and e.if_not_exists then
    return                             -- IF NOT EXISTS of what the file already made: skipped
  end
  if entry and entry.expect == "present" and entry.kind == e.kind then
    touch(entry, e)                    -- CREATE OR REPLACE, or a repeated create
  else
    local prior = entry
    if not prior and e.kind == "function" and e.args then
      -- DROP FUNCTION f (no argument list) before CREATE FUNCTION f(...)
      local bare = model:get(("function:%s.%s"):format(e.schema, e.name))
      if bare and bare.expect == "absent" then model:remove(bare); prior = bare end
    end
    entry = new_entry(e, "present")
    entry.recreated = prior ~= nil
    if prior then
      entry.order = prior.order
      if prior.preexisting or prior.replaces then entry.replaces = true end
      if prior.expect == "absent" and prior.preexisting then
        -- DROP x; CREATE x: not finding x at all shows the DROP ran (when the
        -- DROP had no IF EXISTS, x existed before it)
        entry.dropped_by = { stmt = prior.stmt, certain = prior.uninformative == nil }
      end
      model:remove(prior)
    end
    model:put(entry)
  end
  entry.action = "create"
  entry.created = true
  entry.preexisting = false
  set_props(entry, e, e.stmt)
  if e.kind == "column" then entry.generated_expr = e.generated and e.default or nil end
  if (e.kind == "index" or e.kind == "constraint") and e.table then
    -- on a column of the name of one the file dropped: an index or constraint
    -- of this name may have gone with the old column, and be found here
    local gone = model.dropped_columns[e.schema .. "." .. e.table]
    for _, c in ipairs(gone and e.columns or {}) do
      if type(c) == "string" and gone[c] then
        entry.maybe_replaces = true
        entry.progress_only = entry.progress_only or
          ("it is on \"%s\", a name of a column the file dropped: one of that name may have gone with the old column"):format(c)
      end
    end
  end
  if e.kind == "table" then
    for _, c in ipairs(e.columns or {}) do
      local ce = copy(c)
      ce.kind, ce.action, ce.schema, ce.table = "column", "create", e.schema, e.name
      ce.stmt, ce.line, ce.conditional = e.stmt, c.line or e.line, e.conditional
      ce.if_not_exists = e.if_not_exists
      apply_create(model, ce)
    end
  elseif e.kind == "enum_value" then
    -- fold into an enum created in this file
    local en = model:get(("type:%s.%s"):format(e.schema, e.enum))
    if en and en.kind == "enum" and en.expect == "present" and en.props.labels and en.created then
      local labels = en.props.labels
      local pos = #labels + 1
      for i, l in ipairs(labels) do
        if e.before and l == e.before then pos = i break end
        if e.after and l == e.after then pos = i + 1 break end
      end
      local dup = false
      for _, l in ipairs(labels) do if l == e.name then dup = true end end
      if not dup then table.insert(labels, pos, e.name) end
      en.set_by.labels = e.stmt
      touch(en, e)
      model:remove(entry)
    end
  end
end

local function apply_drop(model, e)
  if e.kind == "function" and not e.args then
    -- DROP FUNCTION f without arguments: whatever overload this file made
    local list = overloads(model, e.schema, e.name)
    for _, d in ipairs(list) do
      if d.args then model:remove(d) end
    end
  end
  local key = model:key(e)
  local entry = model:get(key)
  if entry then
    touch(entry, e)
    if entry.created and not entry.recreated and not entry.replaces then
      -- created and dropped here: absent whether or not the file ran
      entry.uninformative = "created and dropped by the same file"
      entry.created_then_dropped = true
    elseif entry.old_name then
      -- renamed here, then dropped: the object that goes is the one of the old name
      local old = copy(entry)
      old.name = entry.old_name
      if not model:get(model:key(old)) then
        model:remove(entry)
        model.vacated[model:key(old)] = nil
        entry.name, entry.old_name = entry.old_name, nil
        model:put(entry)
      else
        entry.uninformative = ("renamed from \"%s\" and dropped by the same file"):format(entry.old_name)
      end
    end
    entry.expect, entry.action = "absent", "drop"
    if e.if_exists and not entry.created then
      entry.uninformative = entry.uninformative or "IF EXISTS: it may have been absent before"
      entry.maybe_ran = true
    end
  else
    entry = new_entry(e, "absent")
    model:put(entry)
  end
  if e.kind == "column" and entry.preexisting then
    -- PostgreSQL drops the indexes and constraints on the column with it
    local k = e.schema .. "." .. e.table
    model.dropped_columns[k] = model.dropped_columns[k] or {}
    model.dropped_columns[k][e.name] = true
  end
  entry.props = {}
  if e.kind == "table" or e.kind == "view" or e.kind == "matview" then
    for _, d in ipairs(dependents(model, e.schema, e.name)) do
      model:remove(d)
      -- what an earlier statement did to the table: gone with it, but while
      -- the table is still there it tells a partial run from none
      if entry.preexisting and d.kind ~= "comment"
        and ((d.expect == "absent" and d.preexisting) or (d.expect == "present" and d.created)) then
        model.interim[#model.interim + 1] = d
      end
    end
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
  elseif e.kind == "enum" or e.kind == "type" then
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
  local key = model:key(e)
  local entry = model:get(key)
  if not entry then
    -- renaming an object that existed before this file: expect the new name
    -- present and the old one gone
    entry = new_entry(e, "present")
    entry.old_name = e.name
    entry.name = new_name
    model.vacated[key] = true
    model:put(entry)
  else
    touch(entry, e)
    if entry.preexisting and not entry.old_name and not entry.created then
      entry.old_name = e.name
      model.vacated[key] = true
    elseif not entry.old_name then
      entry.renamed_from = entry.renamed_from or e.name
    end
    entry.name = new_name
    model:rekey(entry)
  end
  entry.set_by.name = e.stmt
  local new_key = entry.key
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
      local o = d.kind == "sequence" and d.props.owned_by
      if type(o) == "table" and o.table == e.name and d.schema == e.schema then o.table = new_name end
    end
  elseif e.kind == "enum" or e.kind == "type" then
    -- columns typed with the renamed type follow it ("Role_new" -> "Role");
    -- when the new name was an older type's, the spelling cannot tell them apart
    local reused = entry.replaces or model.vacated[new_key]
    for _, d in pairs(model.entries) do
      if d.kind == "column" and type(d.props.type) == "string" then
        local t = M.rename_type_ref(d.props.type, e.name, new_name)
        if t ~= d.props.type then
          d.props.type = t
          if reused then d.reused_type = new_name end
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
      local o = d.kind == "sequence" and d.props.owned_by
      if type(o) == "table" and o.table == e.table and o.column == e.name and d.schema == e.schema then o.column = new_name end
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
  local key = model:key(e)
  local entry = model:get(key)
  if not entry or entry.expect ~= "present" then
    entry = new_entry(e, "present")
    model:put(entry)
  else
    touch(entry, e)
  end
  if entry.action ~= "create" then
    entry.action = "alter"
    -- what an ALTER sets may have been so before (the same ALTER in an
    -- earlier migration): finding it is no proof the statement ran
    if not set.schema and not entry.progress_only then
      entry.progress_only = "an ALTER finds what it sets: it may have been so before"
    end
  end
  if e.kind == "extension" and set.schema then
    -- ALTER EXTENSION ... SET SCHEMA: the extension stays, its objects move
    entry.props.ext_schema = set.schema
    entry.set_by.ext_schema = e.stmt
  elseif set.schema and set.schema ~= entry.schema then
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
    elseif e.kind == "enum" or e.kind == "type" then
      local moving = {}
      for _, d in pairs(model.entries) do
        if d.kind == "enum_value" and d.schema == old_schema and d.enum == e.name then moving[#moving + 1] = d end
      end
      for _, d in ipairs(moving) do d.schema = set.schema; model:rekey(d) end
    end
  end
  -- properties the catalog check does not compare (ALTER SEQUENCE ... RESTART, ...)
  local compared = COMPARED_SET[e.kind] or {}
  for k, v in pairs(set) do
    if k == "owned_by" and type(v) ~= "table" then compared = {} end
    if k ~= "schema" and not compared[k] then
      entry.uncompared = entry.uncompared or {}
      entry.uncompared[#entry.uncompared + 1] = k
      entry.uncompared_stmt = e.stmt
    end
  end
  if set.validated ~= nil and set.not_valid == nil then set.not_valid = not set.validated end
  if e.kind == "column" and set.expression ~= nil then
    -- SET EXPRESSION: the expression before it, when this file gave it (a
    -- catalog still showing that one shows the statement did not run)
    entry.expression_before = entry.props.expression or entry.generated_expr
  end
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

-- Statements that leave nothing in the catalog: whether they ran does not
-- change what the migration leaves behind.
local NO_LASTING_EFFECT = {
  VariableSetStmt = "SET changes a session setting; it leaves nothing in the catalog",
  VariableShowStmt = "SHOW only reads a setting",
  ReindexStmt = "REINDEX rebuilds indexes in place; the catalog looks the same afterwards (INVALID leftovers are checked)",
  VacuumStmt = "VACUUM/ANALYZE changes no definition",
  LockStmt = "LOCK only takes a lock",
  CheckPointStmt = "CHECKPOINT changes no definition",
  NotifyStmt = "NOTIFY changes no definition",
  ListenStmt = "LISTEN changes no definition",
  UnlistenStmt = "UNLISTEN changes no definition",
  DiscardStmt = "DISCARD changes no definition",
}
local DATA_VERB = { InsertStmt = "INSERT", UpdateStmt = "UPDATE", DeleteStmt = "DELETE", MergeStmt = "MERGE",
                    CopyStmt = "COPY", TruncateStmt = "TRUNCATE" }

-- reason and whether the statement must be proven to have run
local function unverifiable_reason(raw)
  if raw.temp then
    return ("a temporary %s: it is gone when the session ends (ON COMMIT DROP: at commit), so it is no evidence"):format(
      raw.kind == "data" and "table's data" or (raw.kind == "table" and "table" or raw.kind)), false
  end
  if raw.reason then return raw.reason, true end
  local node = raw.node
  if NO_LASTING_EFFECT[node] then return NO_LASTING_EFFECT[node], false end
  if raw.kind == "data" then
    return ("%s changes data, which the catalog does not show"):format(DATA_VERB[node] or "the statement"), true
  end
  if raw.subcommand then
    return ("ALTER TABLE ... %s is not modelled: migfix has no catalog check for it"):format(
      raw.subcommand:gsub("^AT_", "")), true
  end
  if node == "SelectStmt" then
    return "a SELECT: what it (or a function it calls) changes cannot be seen in the catalog", true
  end
  if raw.kind == "do" then return "a DO block: what it does cannot be read", true end
  return ("%s is not modelled: migfix has no catalog check for it"):format(node or "the statement"), true
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
  local function unv(raw, e, reason, needs_cover)
    local r, nc = unverifiable_reason(raw)
    if needs_cover == nil then needs_cover = nc end  -- (not `x == nil and nc or x`: nc may be false)
    unverifiable[#unverifiable + 1] = {
      kind = e.kind, action = e.action == "unverifiable" and "unverifiable" or e.action, stmt = e.stmt, line = e.line,
      schema = raw.schema, name = e.name, table = e.table, reason = reason or r,
      needs_cover = needs_cover, reindex = raw.reindex, node = raw.node, temp = raw.temp,
      in_do = raw.in_do,
    }
  end
  for _, raw in ipairs(unit.effects) do
    local e = normalize(raw, default_schema)
    -- a function named without its argument types: the one overload this file knows
    local fk = e.kind == "function" and e.action ~= "drop" and e or (e.kind == "comment" and e.on == "function" and e)
    if fk and not fk.args then
      local l = {}
      for _, d in ipairs(overloads(model, e.schema, e.name)) do if d.expect == "present" and d.args then l[#l + 1] = d end end
      if #l == 1 then fk.args = copy(l[1].args) end
    end
    if raw.temp then
      unv(raw, e)
    elseif e.action == "unverifiable" then
      unv(raw, e)
    elseif e.action == "create" then apply_create(model, e)
    elseif e.action == "drop" then apply_drop(model, e)
    elseif e.action == "rename" then apply_rename(model, e)
    elseif e.action == "alter" then apply_alter(model, e)
    else
      unv(raw, e, ("unrecognized action \"%s\""):format(tostring(e.action)), true)
    end
  end
  -- statements flagged unverifiable that produced no effect record
  local has = {}
  for _, e in ipairs(unit.effects) do has[e.stmt] = true end
  for _, s in ipairs(unit.statements or {}) do
    if s.unverifiable and not has[s.index] then
      unverifiable[#unverifiable + 1] = { kind = "other", action = "unverifiable", stmt = s.index, line = s.line,
        reason = ("%s is not modelled: migfix has no catalog check for it"):format(s.kind or "the statement"),
        needs_cover = true }
    end
  end
  model.unverifiable = unverifiable
  model.list = model:list()
  -- tables this file drops and creates again (or renames another onto):
  -- what hangs off them may be the old table's
  local replaced_tables = {}
  for _, entry in ipairs(model.list) do
    if (entry.kind == "table" or entry.kind == "view" or entry.kind == "matview") and entry.replaces then
      replaced_tables[entry.schema .. "." .. entry.name] = true
    end
  end
  for _, entry in ipairs(model.list) do
    if entry.table and replaced_tables[entry.schema .. "." .. entry.table] then entry.on_replaced_table = true end
  end
  return model
end

---Schema names a snapshot must cover to verify `unit`.
---@return string[]
function M.schemas(unit, default_schema)
  check_unit(unit, "schemas")
  default_schema = default_schema or "public"
  local set, out = { [default_schema] = true }, { default_schema }
  local function add(s) if type(s) == "string" and s ~= "pg_temp" and not set[s] then set[s] = true; out[#out + 1] = s end end
  for _, e in ipairs(unit.effects) do
    if e.kind == "schema" then add(e.name); add(e.new_name) else add(e.schema) end
    if e.kind == "comment" and e.on == "schema" then add(e.name) end
    add(e.ref_schema)
    if type(e.set) == "table" then add(e.set.schema) end
    if type(e.reindex) == "table" then add(e.reindex.schema) end
  end
  return out
end

---Object names a snapshot must cover to verify `unit` (relations, types,
---functions, constraints and triggers of these names, and what hangs off
---the tables among them).
---@return string[]
function M.names(unit)
  check_unit(unit, "names")
  local set, out = {}, {}
  local function add(n) if type(n) == "string" and not set[n] then set[n] = true; out[#out + 1] = n end end
  for _, e in ipairs(unit.effects) do
    for _, f in ipairs({ "name", "new_name", "table", "ref_table", "enum", "using_index" }) do add(e[f]) end
    if type(e.reindex) == "table" then add(e.reindex.name) end
  end
  return out
end

---------------------------------------------------------------------------
-- Lookups: positive resolution in the snapshot
---------------------------------------------------------------------------
local function label_list_equal(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local REL_KINDS = {
  table = { r = true, p = true, f = true },
  view = { v = true },
  matview = { m = true },
  index = { i = true, I = true },
  sequence = { S = true },
}
local RELKIND_NAME = { r = "table", p = "partitioned table", f = "foreign table", v = "view", m = "materialized view",
                       i = "index", I = "partitioned index", S = "sequence", c = "composite type", t = "TOAST table" }
local TYPTYPE_NAME = { e = "enum", c = "composite", d = "domain", r = "range", m = "multirange", b = "base", p = "pseudo" }

--- nil when `name` in `schema` is covered by the snapshot, else the reason
local function uncovered(snap, schema, name)
  local req = snap.requested
  if schema and req and next(req) and not req[schema] then
    return ("schema \"%s\" is not in the snapshot"):format(schema)
  end
  if snap.names and name and not snap.names[name] then
    return ("\"%s\" is not among the names the snapshot read"):format(name)
  end
  return nil
end

-- The relation of a name in pg_class, whatever its relkind ({kind=...}).
local function relation_at(snap, key)
  if snap.relations then return snap.relations[key] end
  -- a hand-made snapshot: the maps it has
  local t = snap.tables and snap.tables[key]
  if t then return { kind = t.kind or "r" } end
  local ix = snap.indexes and snap.indexes[key]
  if ix then return { kind = "i" } end
  local sq = snap.sequences and snap.sequences[key]
  if sq then return { kind = "S" } end
  return nil
end

-- The type of a name in pg_type, whatever its typtype ({typtype=, relkind=}).
local function type_at(snap, key)
  if snap.type_names then return snap.type_names[key] end
  if snap.enums and snap.enums[key] then return { typtype = "e" } end
  local t = snap.types and snap.types[key]
  if t then return { typtype = t.typtype or "c", relkind = t.typtype == "c" and "c" or nil } end
  if snap.tables and snap.tables[key] then return { typtype = "c", relkind = snap.tables[key].kind } end
  return nil
end

local function diff(diffs, field, expected, found, extra)
  local d = { field = field, expected = expected, found = found }
  for k, v in pairs(extra or {}) do d[k] = v end
  diffs[#diffs + 1] = d
  return d
end

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

-- A relation lookup: record (or nil) and diffs; a name taken by another
-- relkind is "not this object" (absent for a drop, a kind difference for
-- a create). Third value: the reason it cannot be resolved.
local function lookup_relation(entry, snap, diffs)
  local k = entry.kind
  local key = entry.schema .. "." .. entry.name
  local why = uncovered(snap, entry.schema, entry.name)
  if why then return nil, diffs, why end
  local map = k == "index" and snap.indexes or (k == "sequence" and snap.sequences or snap.tables)
  local rec = map and map[key]
  local rel = relation_at(snap, key)
  if rec and rel and not REL_KINDS[k][rel.kind] then rec = nil end
  if rec and k ~= "index" and k ~= "sequence" and not REL_KINDS[k][rec.kind or "r"] then rec = nil end
  if rec then return rec, diffs end
  if rel then
    if REL_KINDS[k][rel.kind] then
      -- in pg_class with the right relkind but not in the detail map: cannot compare
      return nil, diffs, ("%s \"%s\" is in pg_class but its details are not in the snapshot"):format(k, entry.name)
    end
    if entry.expect == "absent" then return nil, diffs end
    diff(diffs, "kind", k, RELKIND_NAME[rel.kind] or rel.kind)
    return { schema = entry.schema, name = entry.name, kind = rel.kind }, diffs
  end
  return nil, diffs
end

local function lookup_type(entry, snap, diffs, ds)
  local key = entry.schema .. "." .. entry.name
  local why = uncovered(snap, entry.schema, entry.name)
  if why then return nil, diffs, why end
  local t = type_at(snap, key)
  local standalone = t and not (t.typtype == "c" and t.relkind and t.relkind ~= "c")
  local p = entry.props
  if entry.kind == "enum" then
    local en = snap.enums and snap.enums[key]
    if en then
      if p.labels and not label_list_equal(p.labels, en.labels or {}) then
        local have, missing, extra = {}, {}, {}
        for _, l in ipairs(en.labels or {}) do have[l] = true end
        local want = {}
        for _, l in ipairs(p.labels) do want[l] = true; if not have[l] then missing[#missing + 1] = l end end
        for _, l in ipairs(en.labels or {}) do if not want[l] then extra[#extra + 1] = l end end
        diff(diffs, "labels", p.labels, en.labels, { missing = missing, extra = extra })
      end
      return en, diffs
    end
    if standalone or t then
      if entry.expect == "absent" then return nil, diffs end
      diff(diffs, "kind", "enum", t.relkind and t.relkind ~= "c" and (RELKIND_NAME[t.relkind] or t.relkind) .. " row type"
        or (TYPTYPE_NAME[t.typtype] or t.typtype))
      return { schema = entry.schema, name = entry.name, typtype = t.typtype }, diffs
    end
    return nil, diffs
  end
  -- kind "type": a composite, domain or range this file creates, or a type
  -- whose kind the file does not show (an enum of an earlier migration)
  if not t then return nil, diffs end
  if not standalone then
    -- the row type of a table, view, ...: no standalone type of that name
    if entry.expect == "absent" then return nil, diffs end
    diff(diffs, "kind", "type", (RELKIND_NAME[t.relkind] or t.relkind) .. " row type")
    return { schema = entry.schema, name = entry.name, typtype = t.typtype }, diffs
  end
  local want = p.composite and "c" or (p.domain and "d" or (p.range and "r" or nil))
  if want and t.typtype ~= want and entry.expect ~= "absent" then
    diff(diffs, "kind", TYPTYPE_NAME[want], TYPTYPE_NAME[t.typtype] or t.typtype)
  end
  local rec = (t.typtype == "e" and snap.enums and snap.enums[key]) or (snap.types and snap.types[key]) or t
  return rec, diffs
end

local function lookup_function(entry, snap, diffs, ds)
  local why = uncovered(snap, entry.schema, entry.name)
  if why then return nil, diffs, why end
  local p = entry.props
  local l = snap.functions and snap.functions[entry.schema .. "." .. entry.name]
  if not l or #l == 0 then return nil, diffs end
  local args = p.args or entry.args
  local f
  if args then
    local want = args_key(args, ds)
    local same_count
    for _, o in ipairs(l) do
      if args_key(o.args, ds) == want then f = o break end
      if #o.args == #args then same_count = o end
    end
    if not f then
      if same_count then
        local sigs = {}
        for i, o in ipairs(l) do sigs[i] = ("%s(%s)"):format(entry.name, o.identity_args or table.concat(o.args, ", ")) end
        return nil, diffs, ("could not match the argument types (%s) with the overloads found: %s"):format(
          table.concat(args, ", "), table.concat(sigs, "; "))
      end
      return nil, diffs
    end
  else
    if #l > 1 and entry.expect ~= "absent" then
      return nil, diffs, ("%d overloads of \"%s\" and the file gives no argument types"):format(#l, entry.name)
    end
    f = l[1]
  end
  if entry.expect ~= "absent" then
    if p.procedure ~= nil and f.procedure ~= nil and p.procedure ~= f.procedure then
      diff(diffs, "procedure", p.procedure, f.procedure)
    end
    if p.body ~= nil and f.body ~= nil and p.body ~= f.body then
      diff(diffs, "body", "(the file's body)", "(another body)", { note = "the function's source differs from the file's" })
    end
  end
  return f, diffs
end

-- Look up an entry's object: found record (or nil), diffs, and the reason
-- when it cannot be resolved (nil: resolved, so nil found means not there).
local lookup
lookup = function(entry, snap, ds)
  local k, p = entry.kind, entry.props
  local diffs = {}
  if k == "schema" then
    local req = snap.requested
    if req and next(req) and not req[entry.name] then
      return nil, diffs, ("schema \"%s\" is not in the snapshot"):format(entry.name)
    end
    return snap.schemas[entry.name] and { name = entry.name } or nil, diffs
  elseif k == "extension" then
    if not snap.extensions then return nil, diffs, "the snapshot has no extensions" end
    local v = snap.extensions[entry.name]
    if not v then return nil, diffs end
    local info = snap.extension_info and snap.extension_info[entry.name] or {}
    if p.ext_schema and entry.expect ~= "absent" then
      if info.schema == nil then return nil, diffs, "the snapshot does not say which schema the extension is in" end
      if info.schema ~= p.ext_schema then diff(diffs, "schema", p.ext_schema, info.schema) end
    end
    return { name = entry.name, version = v, schema = info.schema }, diffs
  elseif k == "table" or k == "view" or k == "matview" then
    local t, d, why = lookup_relation(entry, snap, diffs)
    if why then return nil, d, why end
    if t and k == "table" and p.partitioned ~= nil and t.kind and (t.kind == "p") ~= p.partitioned and #d == 0 then
      diff(d, "partitioned", p.partitioned, t.kind == "p")
    end
    return t, d
  elseif k == "index" or k == "sequence" then
    local rec, d, why = lookup_relation(entry, snap, diffs)
    if why or not rec or #d > 0 then return rec, d, why end
    if k == "sequence" then
      local o = p.owned_by
      if type(o) == "table" and entry.expect ~= "absent" then
        local f = rec.owned_by
        if o.none then
          if f then diff(d, "owned_by", "none", ("%s.%s"):format(f.table, f.column)) end
        elseif o.table and (not f or f.table ~= o.table or f.column ~= o.column) then
          diff(d, "owned_by", ("%s.%s"):format(o.table, o.column), f and ("%s.%s"):format(f.table, f.column) or "none")
        end
      end
    end
    if k == "index" then
      local ix = rec
      if entry.table and ix.table and ix.table ~= entry.table then diff(d, "table", entry.table, ix.table) end
      if p.columns and not same_cols(p.columns, ix.columns) then diff(d, "columns", p.columns, ix.columns) end
      if p.unique ~= nil and p.unique ~= ix.unique then diff(d, "unique", p.unique, ix.unique) end
      if p.primary ~= nil and p.primary ~= ix.primary then diff(d, "primary", p.primary, ix.primary) end
      if p.method and ix.method and p.method ~= ix.method then diff(d, "method", p.method, ix.method) end
      if p.predicate ~= nil and ix.predicate == nil and not ix.locked then diff(d, "predicate", p.predicate, nil) end
      if p.predicate == nil and ix.predicate ~= nil and entry.created then diff(d, "predicate", nil, ix.predicate) end
      if p.predicate ~= nil and ix.predicate ~= nil and (entry.replaces or entry.on_replaced_table)
        and norm_expr(p.predicate) ~= norm_expr(ix.predicate) then
        -- the file's text and pg_get_expr's rarely match: neither same nor different
        return rec, d, ("index \"%s\" takes the place of one of the same name, and its predicate %s could not be matched with the catalog's %s")
          :format(entry.name, p.predicate, ix.predicate)
      end
      if ix.valid == false then
        diff(d, "valid", true, false, { note = "INVALID index (a failed CREATE INDEX CONCURRENTLY leaves one)" })
      end
    end
    return rec, d
  elseif k == "column" then
    local why = uncovered(snap, entry.schema, entry.table)
    if why then return nil, diffs, why end
    local key = entry.schema .. "." .. entry.table
    local rel = relation_at(snap, key)
    local t = snap.tables and snap.tables[key]
    if not t then
      if rel and REL_KINDS.table[rel.kind] then
        return nil, diffs, ("table \"%s\" is in pg_class but its columns are not in the snapshot"):format(entry.table)
      end
      return nil, diffs -- no such table: no such column
    end
    local c = t.columns and t.columns[entry.name]
    if not c then return nil, diffs end
    if p.type ~= nil and norm_type(p.type, ds) ~= norm_type(c.type, ds) then diff(diffs, "type", p.type, c.type) end
    if p.not_null ~= nil and p.not_null ~= c.not_null then
      local implicit = entry.created and p.not_null == false and c.not_null and entry.set_by.not_null == entry.first_stmt
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
    elseif want_default and found_default and p.default ~= nil and c.default ~= nil
      and (not entry.created or entry.replaces or entry.on_replaced_table)
      and not same_default(p.default, c.default, c.type) then
      -- a default set on an existing column (or a re-created one) must be the file's
      diff(diffs, "default", p.default, c.default)
    end
    if p.expression ~= nil then
      -- ALTER COLUMN ... SET EXPRESSION (PostgreSQL 17): the catalog's
      -- generation expression (pg_get_expr) must be the file's; one that
      -- matches neither it nor the expression before it is no evidence
      if c.generated ~= "s" then
        diff(diffs, "generated", "stored", c.generated or "not generated",
          { note = "SET EXPRESSION needs a stored generated column" })
      elseif c.default == nil then
        return c, diffs, ("the generation expression of column \"%s\" was not read (its table is locked)"):format(entry.name)
      elseif not same_default(p.expression, c.default, c.type) then
        if entry.expression_before and same_default(entry.expression_before, c.default, c.type) then
          diff(diffs, "expression", p.expression, c.default)
        else
          return c, diffs, ("the generation expression of column \"%s\", %s, could not be matched with the catalog's %s")
            :format(entry.name, p.expression, c.default)
        end
      end
    end
    return c, diffs
  elseif k == "constraint" then
    local why = uncovered(snap, entry.schema, entry.table)
    if why and uncovered(snap, entry.schema, entry.name) then return nil, diffs, why end
    local c = find_constraint(snap, entry)
    if not c then return nil, diffs end
    if entry.expect == "absent" then return c, diffs end
    if p.contype and p.contype ~= c.contype then diff(diffs, "contype", p.contype, c.contype) end
    local want_cols = p.columns
    if p.contype == "x" and want_cols then
      -- conkey holds the plain columns of an EXCLUDE; expressions are not in it
      want_cols = {}
      for _, col in ipairs(p.columns) do if type(col) == "string" then want_cols[#want_cols + 1] = col end end
    end
    if want_cols and p.contype ~= "c" and not same_cols(want_cols, c.columns) then diff(diffs, "columns", p.columns, c.columns) end
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
    if p.contype == "c" and p.expr and c.expr and (entry.replaces or entry.on_replaced_table) then
      local want, got = norm_expr(p.expr), norm_expr(c.expr):gsub("^check", ""):gsub("notvalid$", "")
      if want ~= got then
        return c, diffs, "the CHECK expression replaces one of the same name and could not be compared with the catalog's text"
      end
    end
    return c, diffs
  elseif k == "enum" or k == "type" then
    return lookup_type(entry, snap, diffs, ds)
  elseif k == "enum_value" then
    local en_entry = { kind = "enum", schema = entry.schema, name = entry.enum, props = {}, expect = "present" }
    local en, _, why = lookup_type(en_entry, snap, {}, ds)
    if why then return nil, diffs, why end
    if not en or not en.labels then return nil, diffs end -- no such enum: no such label
    for i, l in ipairs(en.labels) do
      if l == entry.name then return { enum = entry.enum, name = l, position = i }, diffs end
    end
    return nil, diffs
  elseif k == "function" then
    return lookup_function(entry, snap, diffs, ds)
  elseif k == "trigger" then
    local why = uncovered(snap, entry.schema, entry.table)
    if why and uncovered(snap, entry.schema, entry.name) then return nil, diffs, why end
    return snap.triggers and snap.triggers[("%s.%s.%s"):format(entry.schema, entry.table, entry.name)], diffs
  elseif k == "comment" then
    -- first the object the comment is on, then its comment
    local on = entry.on or "table"
    local target = { kind = on, schema = entry.schema, name = entry.name, table = entry.table, props = { args = entry.args },
                     args = entry.args, expect = "present", set_by = {} }
    if on == "column" or on == "constraint" or on == "trigger" then target.table = entry.table end
    local obj, _, why = lookup(target, snap, ds)
    if why then return nil, diffs, "the object of the comment: " .. why end
    if not obj then return nil, diffs end -- no object, no comment
    local text
    if on == "function" then
      text = obj.comment
    else
      local bucket = (on == "enum" or on == "domain") and "type" or on
      local key = (on == "schema" or on == "extension") and entry.name
        or (entry.schema .. "." .. (entry.table and (entry.table .. ".") or "") .. entry.name)
      local b = snap.comments and snap.comments[bucket]
      if not b then return nil, diffs, ("the snapshot has no comments on %s objects"):format(on) end
      text = b[key]
    end
    if text == nil then return nil, diffs end
    if p.text ~= nil and p.text ~= text then diff(diffs, "text", p.text, text) end
    return { text = text }, diffs
  end
  return nil, diffs, ("no catalog check for %s objects"):format(k)
end

local CHECKS = {
  schema = true, extension = true, table = true, view = true, matview = true, index = true, sequence = true,
  column = true, constraint = true, enum = true, type = true, enum_value = true, ["function"] = true,
  trigger = true, comment = true,
}

---The kinds the catalog check resolves (every action of these: create,
---alter, drop, rename); any other kind is reported unverifiable.
---@return table<string, boolean>
function M.checks() return copy(CHECKS) end

-- kinds whose definition the snapshot does not hold: a version replacing an
-- older one of the same name cannot be told from it
-- kinds whose whole definition is compared: a replacement found equal to the
-- file's is most likely the file's (a migration replaces an object to change it)
local REPLACE_COMPARED = { enum = true, ["function"] = true, index = true, constraint = true, column = true }

local DEFINITION_NOT_COMPARED = { view = "its query", matview = "its query", trigger = "its definition" }

-- a view's output column names in order (nil when the snapshot has none)
local function view_columns(rec)
  if type(rec) ~= "table" or type(rec.columns) ~= "table" then return nil end
  local list = {}
  for name, c in pairs(rec.columns) do
    if type(c) ~= "table" or type(c.position) ~= "number" then return nil end
    list[#list + 1] = { name = name, pos = c.position }
  end
  if #list == 0 then return nil end
  table.sort(list, function(a, b) return a.pos < b.pos end)
  local out = {}
  for i, c in ipairs(list) do out[i] = c.name end
  return out
end

-- the object under its old name, of the same kind (a view made under a
-- renamed table's old name is not the table)
local function old_still_there(old, snap, ds)
  old.expect = "present"
  local f, d, why = lookup(old, snap, ds)
  if why or not f then return false end
  for _, x in ipairs(d or {}) do if x.field == "kind" then return false end end
  return true
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
  o.body = nil
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

---------------------------------------------------------------------------
-- Transactions: which statements commit together
---------------------------------------------------------------------------
local execution = require "migfix.execution"

--- Whether a failure leaves all of the file or none of it (migfix.execution).
local function all_or_nothing(unit, unit_mode, server_version)
  return execution.of(unit, { unit = unit_mode or "file", server_version = server_version }).all_or_nothing
end

--- Segment number of each statement: statements of one segment commit
--- together (or not at all), from migfix.execution. A file the native
--- engine cannot run at all (a statement that cannot run in a transaction
--- block among others) got in only statement by statement, so it is
--- segmented as a splitting engine runs it.
local function segments(unit, unit_mode, server_version)
  local ex = execution.of(unit, { unit = unit_mode, server_version = server_version })
  if unit_mode == "file" and ex.note then
    ex = execution.of(unit, { unit = "statement", server_version = server_version })
  end
  local seg = {}
  for i, s in ipairs(unit.statements or {}) do seg[i] = ex.segment_of[s.index or i] or i end
  return seg
end

---------------------------------------------------------------------------
-- compare
---------------------------------------------------------------------------

--- INVALID indexes a REINDEX ... CONCURRENTLY of the file left behind
--- (<index>_ccnew[N], <index>_ccold[N]).
local function reindex_leftovers(u, snap)
  local r = u.reindex
  local out = {}
  if not r or not r.concurrently then return out end
  for _, ix in pairs(snap.indexes or {}) do
    if ix.valid == false and ix.schema == (r.schema or ix.schema) then
      local base = ix.name:match("^(.-)_cc[no][el][wd]%d*$")
      if base and ((r.kind == "index" and base == r.name) or (r.kind == "table" and ix.table == r.name)) then
        out[#out + 1] = ix
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- unit -> default schema -> model: a fleet compares one file with many
-- snapshots, and the model depends on the file alone (compare only reads it)
local models = setmetatable({}, { __mode = "k" })
local function expected_of(unit, ds)
  local per = models[unit]
  if not per then per = {}; models[unit] = per end
  local m = per[ds]
  if not m then m = M.expected(unit, ds); per[ds] = m end
  return m
end

---Compare what `unit` should leave behind with a catalog snapshot.
---@param unit table from migfix.effects.analyze
---@param snap table from migfix.catalog.snapshot
---@param default_schema string? (default "public")
---@param opts? { unit: "file"|"statement", server_version: integer } how the file ran (default: unit "file")
---@return table evidence { verdict, items, counts, summary, invalid_indexes, all_or_nothing, unit, proven }
function M.compare(unit, snap, default_schema, opts)
  check_unit(unit, "compare")
  if type(snap) ~= "table" or type(snap.tables) ~= "table" then
    error("bad argument #2 to 'compare' (expected a snapshot from migfix.catalog.snapshot)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #4 to 'compare' (expected a table { unit = \"file\"|\"statement\", data = fixpoints } or nil)", 2)
  end
  opts = opts or {}
  default_schema = default_schema or "public"
  local unit_mode = opts.unit or "file"
  local model = expected_of(unit, default_schema)
  local items = {}
  local counts = { present = 0, missing = 0, different = 0, absent = 0, still_present = 0, unverifiable = 0 }
  local invalid = {}
  local invalid_seen = {}
  local function add_invalid(ix)
    local k = (ix.schema or default_schema) .. "." .. ix.name
    if invalid_seen[k] then return end
    invalid_seen[k] = true
    invalid[#invalid + 1] = { schema = ix.schema or default_schema, name = ix.name, table = ix.table }
  end

  local extra_items = {}

  -- the views whose query was compared by its plan (datacheck.viewplans),
  -- under the statement that creates them
  local viewplans = type(opts.views) == "table" and opts.views or {}
  local function view_plan(entry)
    if entry.kind ~= "view" and entry.kind ~= "matview" then return nil end
    if entry.old_name or entry.renamed_from or not entry.created then return nil end
    local r = viewplans[entry.first_stmt]
    if not r or r.kind ~= entry.kind or r.name ~= entry.name or (r.schema or default_schema) ~= entry.schema then return nil end
    return r
  end

  for _, entry in ipairs(model.list) do
    local vcheck = view_plan(entry)
    local vplan = vcheck and vcheck.state ~= "unknown" and vcheck or nil
    local item = {
      kind = entry.kind, schema = schema_of(entry), name = entry.name, table = entry.table,
      enum = entry.enum, action = entry.action, diffs = {},
      expected = copy(entry.props), stmts = entry.stmts,
    }
    item.expected.present = entry.expect == "present"
    item.expected.body = nil
    if entry.old_name then item.old_name = entry.old_name end
    if entry.renamed_from then item.renamed_from = entry.renamed_from end
    if entry.conditional then item.conditional = entry.conditional end
    -- what finding it done shows: `informative` — the statement ran (the
    -- state before the file cannot look like this); `shows_progress` —
    -- something of the file ran (it usually did not look like this before)
    local why_none = entry.uninformative
      or (entry.on_replaced_table and "its table takes the place of one of the same name")
      or (entry.reused_type and ("its type name \"%s\" was another type's before"):format(entry.reused_type))
      or ((entry.replaces and not vplan and not (REPLACE_COMPARED[entry.kind] and (entry.kind ~= "function" or entry.props.body)))
          and "it takes the place of an object of the same name" or nil)
    local why_not = why_none or entry.progress_only
      or (entry.replaces and "it takes the place of an object of the same name (with another definition, presumably)" or nil)
    item.informative = why_not == nil
    local shows_progress = why_none == nil
    local replaced = entry.replaces or entry.maybe_replaces or entry.on_replaced_table
    local found, diffs, why = lookup(entry, snap, default_schema)
    -- class: done | not_done | drift | unverifiable; progress: proves the creating statement ran
    local class, progress
    if why then
      item.state, item.reason = "unverifiable", why
      item.stmt = entry.stmt
    elseif entry.expect == "absent" then
      item.found = public_found(found)
      item.stmt = entry.stmt
      if found then
        item.state = "still_present"
        if entry.created_then_dropped then progress = entry.first_stmt end
        if entry.conditional then
          item.state, item.reason = "unverifiable", "the drop is conditional (" .. entry.conditional .. "): finding the object does not show the block did not run"
        end
      else
        item.state = "absent"
        if entry.table and DEPENDENT_KINDS[entry.kind]
          and not relation_at(snap, entry.schema .. "." .. entry.table) then
          -- its table is not there (under the name the file leaves): no
          -- sign of the drop; it may sit on the table's old name
          why_none = why_none or ("its table \"%s\" is not there either"):format(entry.table)
          item.informative, shows_progress = false, false
          why_not = why_none
        end
      end
    elseif not found then
      item.state = "missing"
      item.stmt = entry.first_stmt
      if entry.dropped_by and not entry.on_replaced_table then
        if entry.dropped_by.certain then
          progress = entry.dropped_by.stmt
        else
          -- DROP ... IF EXISTS ran and the CREATE did not, or it never existed
          item.ambiguous = ("either the DROP ... IF EXISTS of statement %d ran and the CREATE did not, or \"%s\" never existed")
            :format(entry.dropped_by.stmt, entry.name)
        end
      end
      if entry.old_name or entry.renamed_from then
        -- a rename that did not happen leaves the old name in place
        local old = copy(entry)
        old.name = entry.old_name or entry.renamed_from
        if old_still_there(old, snap, default_schema) then
          item.old_present = true
          item.stmt = entry.set_by.name or entry.stmt
          -- created here under the old name: the create ran, the rename did not
          if entry.renamed_from and entry.created then progress = entry.first_stmt end
        end
      end
      if entry.conditional then
        item.state, item.reason = "unverifiable",
          "the DDL is conditional (" .. entry.conditional .. "): not finding the object does not show the block did not run"
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
          if old_still_there(old, snap, default_schema) then
            item.state = "different"
            item.diffs = { { field = "name", expected = entry.name .. " only",
                             found = ("both \"%s\" and \"%s\""):format(entry.old_name, entry.name) } }
          end
        end
        if item.state == "present" and replaced and (entry.kind == "view" or entry.kind == "matview") then
          -- the query is not compared, but other output columns than the
          -- file's show the older definition is still there
          local want, have = entry.props.out_columns, view_columns(found)
          if want and have and table.concat(want, "\0") ~= table.concat(have, "\0") then
            item.state = "different"
            item.diffs = { { field = "columns", expected = table.concat(want, ", "), found = table.concat(have, ", "),
                             note = "the output columns of the view in the database are not the file's" } }
          end
        end
        if item.state == "present" and replaced and vplan and vplan.state == "differs" then
          item.state = "different"
          item.diffs = { { field = "query", expected = "the file's", found = "another",
                           note = "the view's query in the database plans otherwise than the file's" } }
        end
        if item.state == "present" then
          if replaced and DEFINITION_NOT_COMPARED[entry.kind] and not vplan then
            item.state, item.reason = "unverifiable",
              ("%s \"%s\" takes the place of one of the same name, and %s is not compared with the catalog"):format(
                entry.kind, entry.name, DEFINITION_NOT_COMPARED[entry.kind])
            if vcheck and vcheck.reason then
              item.reason = ("%s \"%s\" takes the place of one of the same name, and its query could not be compared: %s"):format(
                entry.kind, entry.name, vcheck.reason)
            end
          elseif replaced and entry.kind == "function" and entry.props.body == nil then
            item.state, item.reason = "unverifiable",
              ("function \"%s\" takes the place of one of the same name, and its body is not a string to compare"):format(entry.name)
          elseif entry.uncompared and entry.created then
            -- the create is there; the later ALTER of what is not compared is its own item
            item.stmt = entry.first_stmt
            extra_items[#extra_items + 1] = {
              kind = entry.kind, schema = schema_of(entry), name = entry.name, table = entry.table, action = "alter",
              state = "unverifiable", class = "unverifiable", diffs = {}, stmt = entry.uncompared_stmt,
              line = stmt_line(unit, entry.uncompared_stmt, entry.line), expected = {}, stmts = { entry.uncompared_stmt },
              reason = ("ALTER %s ... %s is not compared with the catalog"):format(entry.kind:upper(), table.concat(entry.uncompared, ", ")),
              informative = false, needs_cover = true,
            }
          elseif entry.uncompared then
            item.state, item.reason = "unverifiable",
              ("ALTER %s ... %s is not compared with the catalog"):format(entry.kind:upper(), table.concat(entry.uncompared, ", "))
          end
        end
      end
    end
    if item.state == "different" then
      -- an INVALID index is what an interrupted CREATE INDEX CONCURRENTLY
      -- leaves; an object the file only ALTERs (or COMMENTs), or one that
      -- takes the place of an older one of the same name, still having the
      -- old property is a change that did not happen: not done
      local later_only = entry.created and not replaced
      for _, d in ipairs(item.diffs) do
        local s = entry.set_by[d.field]
        if d.field == "valid" or d.field == "name" or not s or s == entry.first_stmt then later_only = false end
      end
      -- CREATE ... IF NOT EXISTS over an object of that name: PostgreSQL keeps
      -- the existing one, whatever its definition (a rerun would too); only
      -- what later statements change, and validity, still count
      local kept = 0
      if entry.keeps_existing then
        for _, d in ipairs(item.diffs) do
          local s = entry.set_by[d.field]
          if d.field ~= "valid" and d.field ~= "kind" and (not s or s == entry.first_stmt) then
            d.note = d.note or "IF NOT EXISTS kept the existing object"
            d.kept = true
            kept = kept + 1
          end
        end
      end
      if kept > 0 and kept == #item.diffs then
        item.state = "present"
        item.kept_existing = true
        class = "done"
      elseif kept > 0 then
        local rest = {}
        for _, d in ipairs(item.diffs) do if not d.kept then rest[#rest + 1] = d end end
        local s = entry.set_by[rest[1].field]
        if rest[1].field == "valid" then class = "not_done"
        elseif s and s ~= entry.first_stmt then class, progress = "not_done", entry.first_stmt
        else class = "drift" end
      elseif M.only_invalid(item) or entry.action == "alter" or entry.kind == "comment" or replaced
        or entry.reused_type or entry.old_name then
        class = "not_done"
      elseif later_only then
        -- created by one statement, changed by a later one that did not run
        class, progress = "not_done", entry.first_stmt
      else
        class = "drift"
      end
      if class == "not_done" and not progress and entry.renamed_from and entry.created then
        -- created here under another name and renamed onto this one (which
        -- an older object still holds): the create ran, the rename did not
        local old = copy(entry)
        old.name = entry.renamed_from
        if old_still_there(old, snap, default_schema) then
          item.old_present = true
          progress = entry.first_stmt
        end
      end
      if entry.kind == "index" and found and found.valid == false then add_invalid(found) end
    elseif item.state == "present" or item.state == "absent" then class = "done"
    elseif item.state == "missing" or item.state == "still_present" then class = "not_done"
    else class = "unverifiable" end
    -- progress: a statement of the file ran (partial vs absent); proves: the
    -- latest statement that certainly ran (for what cannot be checked)
    local proves
    if class == "done" then
      if item.informative then proves = item.stmt end
      if shows_progress and not progress then
        progress = item.stmt
        -- IF NOT EXISTS / OR REPLACE / a replacement: it usually was not there
        -- before, but in one transaction with what did not run it must have been
        if not item.informative then item.weak_progress = true end
      end
    elseif progress and (item.informative or (item.state == "missing" and entry.dropped_by)) then
      proves = progress
    elseif progress and not shows_progress and not (item.state == "missing" and entry.dropped_by) then
      progress = nil
    end
    item.class, item.progress, item.proves = class, progress, proves
    if not item.informative then item.uninformative = why_not end
    if entry.maybe_ran and item.state == "absent" then item.maybe_ran = true end
    -- inside a DO block, the line of the statement in the block
    item.line = (entry.in_do and item.stmt == entry.stmt) and entry.line or stmt_line(unit, item.stmt, entry.line)
    counts[item.state] = counts[item.state] + 1
    items[#items + 1] = item
  end
  for _, x in ipairs(extra_items) do
    items[#items + 1] = x
    counts.unverifiable = counts.unverifiable + 1
  end
  local fixpoints = type(opts.data) == "table" and opts.data or {}
  for _, u in ipairs(model.unverifiable) do
    local fp = u.kind == "data" and not u.in_do and fixpoints[u.stmt] or nil
    if fp and (fp.state == "done" or fp.state == "not_done") then
      -- the rows show the statement's fixed point (docs/effects.md "Data"):
      -- a check, but not proof that anything before it ran (it may have
      -- matched no row at all)
      local state = fp.state == "done" and "present" or "missing"
      items[#items + 1] = {
        kind = "data", schema = fp.schema or u.schema, name = fp.table or u.table,
        action = "data", state = state, class = fp.state == "done" and "done" or "not_done", diffs = {},
        stmt = u.stmt, line = stmt_line(unit, u.stmt, u.line), expected = { present = true },
        informative = false, stmts = { u.stmt },
        reason = ("%s: %s"):format(fp.verb or "the statement", fp.summary or fp.state),
        data = { rows = fp.rows, sql = fp.sql, verb = fp.verb },
      }
      counts[state] = counts[state] + 1
      goto next_unverifiable
    end
    items[#items + 1] = {
      kind = u.kind, schema = u.schema, name = u.name, table = u.table, action = u.action,
      state = "unverifiable", class = "unverifiable", diffs = {}, stmt = u.stmt,
      line = u.in_do and u.line or stmt_line(unit, u.stmt, u.line),
      expected = {}, reason = u.reason or "the catalog cannot show this statement's effect",
      informative = false, stmts = { u.stmt }, needs_cover = u.needs_cover ~= false,
      data = fp and { reason = fp.reason, verb = fp.verb } or nil,
    }
    if fp and fp.reason then items[#items].reason = items[#items].reason .. "; its rows were not read: " .. fp.reason end
    counts.unverifiable = counts.unverifiable + 1
    -- REINDEX CONCURRENTLY interrupted: its temporary indexes stay, INVALID
    for _, ix in ipairs(reindex_leftovers(u, snap)) do
      add_invalid(ix)
      items[#items + 1] = {
        kind = "index", schema = ix.schema, name = ix.name, table = ix.table, action = "drop",
        state = "still_present", class = "not_done", stmt = u.stmt, line = stmt_line(unit, u.stmt, u.line),
        diffs = { { field = "valid", expected = true, found = false,
                    note = "left INVALID by an interrupted REINDEX CONCURRENTLY" } },
        expected = { present = false }, informative = false, stmts = { u.stmt },
        reason = "REINDEX CONCURRENTLY builds <index>_ccnew and drops <index>_ccold; one is still there",
      }
      counts.still_present = counts.still_present + 1
    end
    ::next_unverifiable::
  end
  -- changes to a table the file then drops (class "interim"): nothing to
  -- expect at the end, but while the table is there they show what ran
  for _, d in ipairs(model.interim) do
    local rel = relation_at(snap, d.schema .. "." .. d.table)
    if rel and REL_KINDS.table[rel.kind] then
      local found, _, why = lookup(d, snap, default_schema)
      if not why then
        local done = (d.expect == "absent") == (found == nil)
        local state = d.expect == "absent" and (found and "still_present" or "absent") or (found and "present" or "missing")
        local proof = done and not d.uninformative and not d.progress_only
        items[#items + 1] = {
          kind = d.kind, schema = d.schema, name = d.name, table = d.table, action = d.action, state = state,
          class = "interim", diffs = {}, stmt = d.stmt, line = stmt_line(unit, d.stmt, d.line), expected = copy(d.props),
          stmts = d.stmts, informative = proof, progress = done and not d.uninformative and d.stmt or nil,
          proves = proof and d.stmt or nil, maybe_ran = d.maybe_ran and state == "absent" or nil,
          reason = ("the file drops table \"%s\" afterwards; this shows whether statement %d ran"):format(d.table, d.stmt),
        }
        items[#items].expected.present = d.expect == "present"
        counts[state] = counts[state] + 1
      end
    end
  end
  table.sort(items, function(a, b)
    if (a.stmt or 0) ~= (b.stmt or 0) then return (a.stmt or 0) < (b.stmt or 0) end
    return false
  end)

  -- which statements are proven to have run: the latest one with an
  -- informative effect in the catalog, and every statement before it or
  -- committed with it (Prisma stops at the first failing statement)
  local seg = segments(unit, unit_mode, opts.server_version or snap.server_version)
  local proven = 0
  for _, it in ipairs(items) do
    if it.proves and it.proves > proven then proven = it.proves end
  end
  local proven_upto = proven
  if proven > 0 and seg[proven] then
    for i = proven, #(unit.statements or {}) do
      if seg[i] == seg[proven] then proven_upto = i else break end
    end
  end

  -- a data statement proven to have run by the catalog (a later effect of
  -- its transaction is there) whose rows are no longer its fixed point:
  -- the rows changed afterwards (the application writes on); it ran
  for _, it in ipairs(items) do
    if it.kind == "data" and it.class == "not_done" and it.stmt and it.stmt <= proven_upto then
      it.class, it.state = "done", "present"
      counts.missing, counts.present = counts.missing - 1, counts.present + 1
      it.reason = it.reason .. ("; statement %d is proven to have run (a later change of its transaction is in the catalog), so these rows changed afterwards"):format(it.stmt)
    end
  end

  -- verdict
  local done, not_done, drift, verifiable, progress = 0, 0, 0, 0, 0
  local uncovered_items = {}
  local first_seg -- the first transaction with something not done
  for _, it in ipairs(items) do
    if it.class == "not_done" and it.stmt and seg[it.stmt] and (not first_seg or seg[it.stmt] < first_seg) then
      first_seg = seg[it.stmt]
    end
  end
  for _, it in ipairs(items) do
    if it.weak_progress and first_seg and it.stmt and seg[it.stmt] and seg[it.stmt] >= first_seg then
      it.progress = nil
    end
  end
  for _, it in ipairs(items) do
    if it.class == "unverifiable" then
      if it.needs_cover ~= false and (it.stmt or 0) > proven_upto then uncovered_items[#uncovered_items + 1] = it end
    elseif it.class == "interim" then
      if it.progress then progress = progress + 1 end
    else
      verifiable = verifiable + 1
      if it.class == "drift" then drift = drift + 1
      elseif it.class == "not_done" then not_done = not_done + 1
      elseif it.class == "done" then done = done + 1 end
      if it.progress then progress = progress + 1 end
    end
  end
  local verdict, why_unverifiable
  if verifiable == 0 then verdict = "unverifiable"
  elseif drift > 0 then verdict = "drifted"
  elseif not_done == 0 then
    if #uncovered_items > 0 then
      verdict = "unverifiable"
      local first = uncovered_items[1]
      why_unverifiable = ("statement %d (line %s) cannot be checked (%s), and no statement after it shows that it ran"):format(
        first.stmt or 0, tostring(first.line or "?"), first.reason or "?")
    else
      verdict = "complete"
    end
  elseif progress == 0 then
    verdict = "absent"
    -- nothing of the file is in the catalog; but what commits before the
    -- first statement that surely did not run may have run unseen
    for _, it in ipairs(items) do
      if verdict == "absent" and it.class == "unverifiable" and it.needs_cover ~= false and it.stmt and seg[it.stmt]
        and first_seg and seg[it.stmt] < first_seg then
        verdict = "unverifiable"
        why_unverifiable = ("statement %d (line %s) commits on its own before the first statement that did not run, " ..
          "and cannot be checked (%s): it may have run"):format(it.stmt, tostring(it.line or "?"), it.reason or "?")
      end
      if verdict == "absent" and it.kind == "data" and it.class == "done" and it.stmt and seg[it.stmt]
        and first_seg and seg[it.stmt] < first_seg then
        verdict = "unverifiable"
        why_unverifiable = ("statement %d (line %s) leaves the rows as it would (%s), and commits on its own before the first statement that did not run: it may have run, or had nothing to change"):format(
          it.stmt, tostring(it.line or "?"), it.reason or "?")
      end
      if verdict == "absent" and it.ambiguous then
        verdict = "unverifiable"
        why_unverifiable = it.ambiguous
      end
      if verdict == "absent" and it.maybe_ran and it.stmt and seg[it.stmt] and first_seg and seg[it.stmt] < first_seg then
        verdict = "unverifiable"
        why_unverifiable = ("%s \"%s\" is gone: the DROP ... IF EXISTS of statement %d commits on its own before the first statement that did not run, so it ran, or there was nothing to drop"):format(
          it.kind, it.name or "?", it.stmt)
      end
    end
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
    unverifiable = verifiable == 0 and "nothing in the migration can be checked in the catalog"
      or (not_done > 0 and "some of the migration's changes are not in the database, and the catalog cannot tell whether the rest ran")
      or "every checked object is as the migration leaves it, but not everything can be checked",
  })[verdict]
  local summary = lead .. (#parts > 0 and (" (" .. table.concat(parts, ", ") .. ")") or "")
  if why_unverifiable then summary = summary .. ": " .. why_unverifiable end
  return {
    verdict = verdict, items = items, counts = counts, summary = summary,
    invalid_indexes = invalid, unit = unit_mode, reason = why_unverifiable,
    proven = proven > 0 and proven_upto or nil,
    all_or_nothing = all_or_nothing(unit, unit_mode, opts.server_version or snap.server_version),
  }
end

---------------------------------------------------------------------------
-- Which statement failed
---------------------------------------------------------------------------
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
  local atomic = all_or_nothing(unit, evidence.unit)
  local first
  for _, it in ipairs(evidence.items) do
    local not_done = it.state == "missing" or it.state == "still_present" or it.state == "different"
    if not_done and it.stmt and (not first or it.stmt < first.stmt) then first = it end
  end
  if not first then
    return { all_or_nothing = atomic, reason = "every checked effect is in the database" }
  end
  if atomic and evidence.verdict ~= "partial" then
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
  r.all_or_nothing = atomic
  return r
end

return M
