-- migfix.effects — what a migration file does to the catalog, statement by
-- statement, read from PostgreSQL's own parse tree (migfix.sql).
-- The contract is docs/effects.md.
local sql = require "migfix.sql"

local M = {}

local insert, concat = table.insert, table.concat

---------------------------------------------------------------------------
-- Lexing (only to find the source text of expressions)
---------------------------------------------------------------------------

--- Tokens of text[p..q] (1-based, inclusive): {s=, e=, t=, w=}; t is
--- "word" (w = lower case), "qident", "string", "number", "param", "op" or
--- the punctuation itself ("(", ")", "[", "]", ",", ";").
local byte = string.byte

local function lex(text, p, q)
  local toks = {}
  local i = p
  while i <= q do
    local b, b2 = byte(text, i, i + 1)
    local s = i
    if b == 32 or b == 10 or b == 9 or b == 13 or b == 12 or b == 11 then
      local _, e = text:find("^%s+", i)
      i = e + 1
    elseif b == 45 and b2 == 45 then -- --
      i = (text:find("\n", i, true) or q) + 1
    elseif b == 47 and b2 == 42 then -- /*
      local depth = 1
      i = i + 2
      while i <= q and depth > 0 do
        local two = text:sub(i, i + 1)
        if two == "/*" then depth = depth + 1; i = i + 2
        elseif two == "*/" then depth = depth - 1; i = i + 2
        else i = i + 1 end
      end
    elseif b == 39 or ((b == 69 or b == 101) and b2 == 39) then -- ' or E'
      local esc = b ~= 39
      i = i + (esc and 2 or 1)
      while i <= q do
        -- jump to the next quote (or backslash in an E'' string)
        local nx = text:find(esc and "['\\]" or "'", i)
        if not nx then i = q + 1 break end
        i = nx
        local ch = text:sub(i, i)
        if esc and ch == "\\" then i = i + 2
        elseif text:sub(i + 1, i + 1) == "'" then i = i + 2
        else break end
      end
      insert(toks, { s = s, e = math.min(i, q), t = "string" })
      i = i + 1
    elseif b == 34 then -- "
      i = i + 1
      while i <= q do
        local nx = text:find('"', i, true)
        if not nx then i = q + 1 break end
        i = nx
        if text:sub(i + 1, i + 1) == '"' then i = i + 2 else break end
      end
      insert(toks, { s = s, e = math.min(i, q), t = "qident" })
      i = i + 1
    elseif b == 36 then -- $
      local tag = text:match("^%$[%a_\128-\255][%w_\128-\255]*%$", i) or text:match("^%$%$", i)
      if tag then
        local _, close = text:find(tag, i + #tag, true)
        i = (close or q) + 1
        insert(toks, { s = s, e = i - 1, t = "string" })
      else
        local _, e = text:find("^%$%d*", i)
        insert(toks, { s = s, e = e, t = "param" })
        i = e + 1
      end
    elseif (b >= 97 and b <= 122) or (b >= 65 and b <= 90) or b == 95 or b >= 128 then
      local _, e = text:find("^[%w_$\128-\255]*", i + 1)
      insert(toks, { s = s, e = e, t = "word", w = text:sub(s, e):lower() })
      i = e + 1
    elseif (b >= 48 and b <= 57) or (b == 46 and b2 and b2 >= 48 and b2 <= 57) then
      local _, e = text:find("^[%d%.]*", i)
      local _, ex = text:find("^[eE][+-]?%d+", e + 1)
      e = ex or e
      insert(toks, { s = s, e = e, t = "number" })
      i = e + 1
    elseif b == 40 or b == 41 or b == 91 or b == 93 or b == 44 or b == 59 then -- ( ) [ ] , ;
      insert(toks, { s = s, e = s, t = text:sub(i, i) })
      i = i + 1
    else
      local _, e = text:find("^[%+%-%*/<>=~!@#%%%^&|`%?:]+", i)
      e = e or i
      local cut = text:sub(s, e):find("%-%-") or text:sub(s, e):find("/%*")
      if cut and cut > 1 then e = s + cut - 2 end
      insert(toks, { s = s, e = e, t = "op" })
      i = e + 1
    end
  end
  return toks
end

--- The tokens of text[p..q] ({s, e, t, w}), also datacheck's lexer.
M.lex = lex

-- Index of the first token starting at or after byte position pos (1-based).
local function tok_at(toks, pos)
  for k, t in ipairs(toks) do
    if t.s >= pos then return k end
  end
  return #toks + 1
end

-- Column-constraint words that end a DEFAULT expression.
local DEFAULT_STOP = {
  ["not"] = true, null = true, constraint = true, check = true, default = true, primary = true,
  unique = true, references = true, generated = true, collate = true, deferrable = true,
  initially = true,
}

--- Source text of the expression starting at token k: up to a depth-0 ',',
--- an unbalanced ')', ';', or (after the first token) a word in `stop`.
local function expr_text(st, k, stop)
  local toks, depth, last = st.toks, 0, nil
  local first = toks[k]
  if not first then return nil, k end
  local j = k
  while j <= #toks do
    local t = toks[j]
    if t.t == "(" or t.t == "[" then depth = depth + 1
    elseif t.t == ")" or t.t == "]" then
      if depth == 0 then break end
      depth = depth - 1
    elseif depth == 0 and (t.t == "," or t.t == ";") then break
    elseif depth == 0 and j > k and stop and t.t == "word" and stop[t.w] then break
    end
    last = t
    j = j + 1
  end
  if not last then return nil, j end
  return st.src:sub(first.s, last.e), j
end

--- Inner text of the parenthesised group opening at token k (a "(").
local function group_text(st, k)
  local toks, depth = st.toks, 0
  for j = k, #toks do
    local t = toks[j]
    if t.t == "(" or t.t == "[" then depth = depth + 1
    elseif t.t == ")" or t.t == "]" then
      depth = depth - 1
      if depth == 0 then
        if j == k + 1 then return "", j end
        return st.src:sub(toks[k + 1].s, toks[j - 1].e), j
      end
    end
  end
  return nil, #toks
end

-- Smallest "location" inside a node (the start of most expressions).
local function min_location(node, best)
  if type(node) ~= "table" then return best end
  for key, v in pairs(node) do
    if key == "location" and math.type(v) == "integer" and v >= 0 then
      if not best or v < best then best = v end
    elseif type(v) == "table" then
      best = min_location(v, best)
    end
  end
  return best
end

--- Text of an expression introduced by keyword `kw` (e.g. "default")
--- somewhere before the node's first location.
local function expr_after_keyword(st, node, kw, stop)
  local loc = min_location(node)
  if not loc then return nil end
  local k = tok_at(st.toks, loc + 1)
  for j = math.min(k, #st.toks), 1, -1 do
    local t = st.toks[j]
    if t.s <= loc and t.t == "word" and t.w == kw then
      return (expr_text(st, j + 1, stop))
    end
  end
  return nil
end

---------------------------------------------------------------------------
-- Names and types
---------------------------------------------------------------------------

local KEYWORDS = {}
for w in ([[all analyse analyze and any array as asc asymmetric both case cast check collate column
  constraint create current_catalog current_date current_role current_time current_timestamp
  current_user default deferrable desc distinct do else end except false fetch for foreign from
  grant group having in initially intersect into lateral leading limit localtime localtimestamp
  not null offset on only or order placing primary references returning select session_user some
  symmetric table then to trailing true union unique user using variadic when where window with
  authorization binary collation concurrently cross current_schema freeze full ilike inner is
  isnull join left like natural notnull outer overlaps right similar tablesample verbose
  between bigint bit boolean char character coalesce dec decimal exists extract float greatest
  grouping inout int integer interval least national nchar none normalize nullif numeric out
  overlay position precision real row setof smallint substring time timestamp treat trim values
  varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi
  xmlroot xmlserialize xmltable]]):gmatch("%S+") do KEYWORDS[w] = true end

--- quote_ident(): quotes only when needed.
---@param name string
---@return string
function M.quote_ident(name)
  if name:find("^[a-z_][a-z0-9_$]*$") and not KEYWORDS[name] then return name end
  return '"' .. name:gsub('"', '""') .. '"'
end
local quote_ident = M.quote_ident

local function sval(node)
  if type(node) ~= "table" then return node end
  if node.String then return node.String.sval or "" end
  return nil
end

local function strings(list)
  local out = {}
  for _, n in ipairs(list or {}) do out[#out + 1] = sval(n) end
  return out
end

-- {schema, name} from a list of names ([catalog.]schema.name)
local function qualified(parts)
  local n = #parts
  return parts[n - 1], parts[n]
end

local function ival(node)
  if type(node) ~= "table" then return nil end
  local c = node.A_Const
  if c then
    if c.ival then return c.ival.ival or 0 end
    return nil
  end
  if node.Integer then return node.Integer.ival or 0 end
  return nil
end

local BUILTIN = {
  int4 = "integer", int = "integer", integer = "integer", int8 = "bigint", int2 = "smallint",
  bool = "boolean", float4 = "real", float8 = "double precision", text = "text",
  varchar = "character varying", bpchar = "character", numeric = "numeric", decimal = "numeric",
  timestamp = "timestamp", timestamptz = "timestamptz", time = "time", timetz = "timetz",
  date = "date", interval = "interval", bit = "bit", varbit = "bit varying",
}

--- format_type() spelling of a TypeName node.
---@param tn table TypeName
---@return string
function M.type_name(tn)
  local names = strings(tn.names)
  local mods = {}
  for _, m in ipairs(tn.typmods or {}) do mods[#mods + 1] = ival(m) end
  local base
  local last, schema = names[#names], names[#names - 1]
  local builtin = (schema == nil or schema == "pg_catalog") and BUILTIN[last]
  if builtin then
    local function p() return #mods > 0 and ("(" .. concat(mods, ",") .. ")") or "" end
    if builtin == "numeric" then
      base = #mods == 1 and ("numeric(%d,0)"):format(mods[1]) or ("numeric" .. p())
    elseif builtin == "timestamp" then base = "timestamp" .. p() .. " without time zone"
    elseif builtin == "timestamptz" then base = "timestamp" .. p() .. " with time zone"
    elseif builtin == "time" then base = "time" .. p() .. " without time zone"
    elseif builtin == "timetz" then base = "time" .. p() .. " with time zone"
    elseif builtin == "interval" then base = "interval"
    else base = builtin .. p() end
  elseif schema == "pg_catalog" or schema == nil then
    base = quote_ident(last)
  else
    local q = {}
    for _, n in ipairs(names) do q[#q + 1] = quote_ident(n) end
    base = concat(q, ".")
  end
  if tn.arrayBounds then base = base .. "[]" end -- format_type prints one [] whatever the dimensions
  if tn.setof then base = "SETOF " .. base end
  return base
end
local type_name = M.type_name

local SERIAL = {
  serial = "integer", serial4 = "integer", bigserial = "bigint", serial8 = "bigint",
  smallserial = "smallint", serial2 = "smallint",
}

-- PostgreSQL's makeObjectName(): name1[_name2][_label], truncated to 63
-- bytes by shortening the longer of name1/name2 (on a UTF-8 boundary).
local NAMEDATALEN = 64
local function clip(s, n)
  if #s <= n then return s end
  while n > 0 and (s:byte(n + 1) or 0) >= 0x80 and (s:byte(n + 1) or 0) < 0xC0 do n = n - 1 end
  return s:sub(1, n)
end

local function object_name(name1, name2, label)
  local n1, n2 = #name1, name2 and #name2 or 0
  local overhead = (label and #label + 1 or 0) + (name2 and 1 or 0)
  local avail = NAMEDATALEN - 1 - overhead
  while n1 + n2 > avail do
    if n1 > n2 then n1 = n1 - 1 else n2 = n2 - 1 end
  end
  local out = clip(name1, n1)
  if name2 then out = out .. "_" .. clip(name2, n2) end
  if label then out = out .. "_" .. label end
  return out
end

-- ChooseIndexNameAddition / ChooseForeignKeyConstraintNameAddition
local function name_addition(cols)
  local buf = ""
  for _, c in ipairs(cols) do
    if #buf > 0 then buf = buf .. "_" end
    buf = buf .. c:sub(1, NAMEDATALEN - 1)
    if #buf >= NAMEDATALEN then break end
  end
  return buf
end

-- ChooseRelationName/ChooseConstraintName against the names taken so far
-- in this file (the catalog may hold more: name_generated says so).
local function choose_name(ctx, name1, name2, label)
  local pass, name = 0, object_name(name1, name2, label)
  while ctx.taken[name] do
    pass = pass + 1
    name = object_name(name1, name2, label .. pass)
  end
  ctx.taken[name] = true
  return name
end

---------------------------------------------------------------------------
-- Effects
---------------------------------------------------------------------------

local function node_of(wrapper)
  local k, v = next(wrapper)
  return k, v
end

local function line_of(ctx, loc)
  if not loc then return ctx.stmt.line end
  local starts = ctx.line_starts
  local lo, hi = 1, #starts
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if starts[mid] <= loc then lo = mid else hi = mid - 1 end
  end
  return math.max(lo, ctx.stmt.line)
end

--- Every (kind, action) an effect record can have: emit() refuses any
--- other, so a new kind cannot appear without being declared here, and
--- tests/lua/test_evidence.lua proves each has a positive catalog check in
--- migfix.verify (or that verify reports it unverifiable).
M.EMITS = {
  schema = { "create", "drop", "rename" },
  table = { "create", "alter", "drop", "rename" },
  column = { "create", "alter", "drop", "rename" },
  index = { "create", "drop", "rename" },
  constraint = { "create", "alter", "drop", "rename" },
  enum = { "create", "alter", "drop", "rename" },
  enum_value = { "create", "rename" },
  sequence = { "create", "alter", "drop", "rename" },
  view = { "create", "alter", "drop", "rename" },
  matview = { "create", "alter", "drop", "rename" },
  ["function"] = { "create", "alter", "drop", "rename" },
  trigger = { "create", "drop", "rename" },
  extension = { "create", "alter", "drop" },
  comment = { "create", "drop" },
  type = { "create", "alter", "drop", "rename" },
  data = { "unverifiable" },
  ["do"] = { "unverifiable" },
  other = { "unverifiable" },
}
local EMITS = {}
for k, actions in pairs(M.EMITS) do
  EMITS[k] = {}
  for _, a in ipairs(actions) do EMITS[k][a] = true end
end

-- Temporary relations live in the session's pg_temp schema and are gone
-- when it ends (ON COMMIT DROP: at commit): an unqualified name that this
-- file created TEMP refers to it, as pg_temp comes first in search_path.
local function is_temp(ctx, e)
  if e.temp ~= nil then return e.temp end
  if e.schema ~= nil and e.schema ~= "pg_temp" then return false end
  if e.schema == "pg_temp" then return true end
  if e.table and e.kind ~= "table" and ctx.temps[e.table] then return true end
  if (e.kind == "table" or e.kind == "data") and ctx.temps[e.name or e.table] then return true end
  if e.kind == "index" and ctx.temp_indexes[e.name] then return true end
  return false
end

local function emit(ctx, e, loc)
  local kinds = EMITS[e.kind]
  if not kinds or not kinds[e.action] then
    error(("effects: undeclared effect (%s, %s): add it to effects.EMITS and give it a catalog check in migfix.verify")
      :format(tostring(e.kind), tostring(e.action)), 2)
  end
  e.stmt = ctx.stmt.index
  local nested = ctx.nested
  if nested then
    -- a statement inside a DO block: its line in the file, and how it runs
    e.line = nested.line
    e.in_do = true
    if nested.conditional then e.conditional = nested.conditional end
    if nested.guard then
      -- an existence guard makes its creates IF NOT EXISTS; anything else it holds may not run
      if e.action == "create" then e.if_not_exists = true; e.guarded = nested.guard
      elseif e.action ~= "unverifiable" then e.conditional = e.conditional or nested.guard end
    end
    if nested.guard_drop then
      if e.action == "drop" then e.if_exists = true; e.guarded = nested.guard_drop
      elseif e.action ~= "unverifiable" then e.conditional = e.conditional or nested.guard_drop end
    end
  else
    e.line = line_of(ctx, loc)
  end
  if is_temp(ctx, e) then e.temp = true end
  if e.action == "unverifiable" then ctx.stmt.unverifiable = true end
  insert(ctx.effects, e)
  return e
end

local function unverifiable(ctx, kind, extra)
  local e = { action = "unverifiable", kind = kind, text = ctx.stmt.text }
  for k, v in pairs(extra or {}) do e[k] = v end
  return emit(ctx, e)
end

local function rangevar(ctx, rv)
  return rv.schemaname or ctx.schema_default, rv.relname
end

local function nontx(ctx, reason, before_pg)
  local s = ctx.stmt
  s.non_transactional = true
  s.non_transactional_reason = reason
  s.before_pg = before_pg
end

local CONTYPE = {
  CONSTR_PRIMARY = "p", CONSTR_UNIQUE = "u", CONSTR_FOREIGN = "f", CONSTR_CHECK = "c",
  CONSTR_EXCLUSION = "x",
}

-- Distinct single-name column references in an expression (for CHECK names).
local function column_refs(node, seen, list)
  seen, list = seen or {}, list or {}
  if type(node) ~= "table" then return list end
  if node.ColumnRef then
    local f = node.ColumnRef.fields or {}
    local name = sval(f[#f])
    if name and not seen[name] then seen[name] = true; list[#list + 1] = name end
    return list
  end
  if node.SubLink then return list end
  for _, v in pairs(node) do column_refs(v, seen, list) end
  return list
end

-- Source text inside "<kw> ( ... )", the first <kw> at or after location
-- (CHECK for a check constraint, AS for a generated column).
local function paren_after(ctx, location, kw)
  local toks = ctx.stmt.toks
  for j = tok_at(toks, (location or 0) + 1), #toks do
    local t = toks[j]
    if t.t == "word" and t.w == kw and toks[j + 1] and toks[j + 1].t == "(" then
      local txt = group_text(ctx.stmt, j + 1)
      return txt and txt:match("^%s*(.-)%s*$")
    end
  end
  return nil
end

local function check_text(ctx, con) return paren_after(ctx, con.location, "check") end

--- A constraint effect for Constraint node `con` on table schema.table;
--- `column` is set for a column constraint.
local function constraint_effect(ctx, action, schema, table, con, column)
  local contype = CONTYPE[con.contype]
  if not contype then return nil end
  local e = { action = action, kind = "constraint", schema = schema, table = table,
              contype = contype, not_valid = con.skip_validation == true }
  if contype == "f" then
    e.columns = column and { column } or strings(con.fk_attrs)
    e.ref_schema, e.ref_table = con.pktable.schemaname, con.pktable.relname
    e.ref_columns = con.pk_attrs and strings(con.pk_attrs) or nil -- nil: the referenced primary key
    e.on_delete = con.fk_del_action or "a"
    e.on_update = con.fk_upd_action or "a"
  elseif contype == "c" then
    e.expr = check_text(ctx, con)
  elseif contype == "x" then
    e.columns = {}
    for _, ex in ipairs(con.exclusions or {}) do
      local items = ex.List and ex.List.items or ex
      local ie = items[1] and items[1].IndexElem
      e.columns[#e.columns + 1] = ie and (ie.name or { expr = "expr" }) or "?"
    end
  else
    e.columns = column and { column } or strings(con.keys)
    if con.indexname then e.columns, e.using_index = nil, con.indexname end
  end
  if con.conname then
    e.name, e.name_generated = con.conname, false
    ctx.taken[con.conname] = true
  else
    e.name_generated = true
    if contype == "p" then
      e.name = choose_name(ctx, table, nil, "pkey")
    elseif contype == "u" then
      e.name = choose_name(ctx, table, name_addition(e.columns or {}), "key")
    elseif contype == "f" then
      e.name = choose_name(ctx, table, name_addition(e.columns), "fkey")
    elseif contype == "x" then
      local cols = {}
      for _, c in ipairs(e.columns) do cols[#cols + 1] = type(c) == "string" and c or "expr" end
      e.name = choose_name(ctx, table, name_addition(cols), "excl")
    else
      local refs = column_refs(con.raw_expr)
      e.name = choose_name(ctx, table, #refs == 1 and refs[1] or nil, "check")
    end
  end
  return emit(ctx, e, con.location)
end

--- Column record from a ColumnDef; returns column, list of deferred
--- constraint nodes, serial sequence name (or nil).
local function column_record(ctx, schema, table, cd)
  local col = { name = cd.colname, not_null = false, has_default = false }
  local serial = #(cd.typeName.names or {}) == 1 and SERIAL[sval(cd.typeName.names[1])]
  local seq
  if serial and not cd.typeName.arrayBounds then
    col.type, col.not_null, col.has_default = serial, true, true
    seq = object_name(table, cd.colname, "seq")
    col.default = ("nextval('%s'::regclass)"):format(
      (schema and (quote_ident(schema) .. ".") or "") .. quote_ident(seq):gsub("'", "''"))
  else
    col.type = type_name(cd.typeName)
  end
  if cd.is_not_null then col.not_null = true end
  local cons = {}
  for _, w in ipairs(cd.constraints or {}) do
    local c = w.Constraint
    if c.contype == "CONSTR_NOTNULL" then col.not_null = true
    elseif c.contype == "CONSTR_NULL" then col.not_null = false
    elseif c.contype == "CONSTR_DEFAULT" then
      col.has_default = true
      col.default = (expr_text(ctx.stmt, tok_at(ctx.stmt.toks, c.location + 1) + 1, DEFAULT_STOP))
    elseif c.contype == "CONSTR_IDENTITY" then
      col.identity = c.generated_when or "a"
      col.not_null = true
      seq = object_name(table, cd.colname, "seq")
    elseif c.contype == "CONSTR_GENERATED" then
      col.generated = "s"
      col.has_default = true
      col.default = paren_after(ctx, c.location, "as")
    elseif CONTYPE[c.contype] then
      if c.contype == "CONSTR_PRIMARY" then col.not_null = true end
      cons[#cons + 1] = c
    end
  end
  return col, cons, seq
end

local function sequence_effect(ctx, schema, table, column, seq, loc)
  emit(ctx, { action = "create", kind = "sequence", schema = schema, name = seq,
              owned_by = { table = table, column = column } }, loc)
end

local H = {} -- node name -> handler(ctx, node)

H.CreateSchemaStmt = function(ctx, n)
  emit(ctx, { action = "create", kind = "schema", name = n.schemaname,
              if_not_exists = n.if_not_exists == true })
  local saved = ctx.schema_default
  ctx.schema_default = n.schemaname
  for _, el in ipairs(n.schemaElts or {}) do
    local name, node = node_of(el)
    local h = H[name]
    if h then h(ctx, node) else unverifiable(ctx, "other", { node = name }) end
  end
  ctx.schema_default = saved
end

-- A CREATE [TEMP] TABLE's relation: temporary or not, remembered for the
-- statements after it.
local function created_relation(ctx, rv)
  local schema, name = rangevar(ctx, rv)
  local temp = rv.relpersistence == "t" or schema == "pg_temp"
  if temp then ctx.temps[name] = true elseif schema == nil and ctx.temps[name] then
    ctx.temps[name] = nil
    temp = false -- a permanent table of the name the temp one had: not temp (emit must not guess)
  end
  return schema, name, temp
end

H.CreateStmt = function(ctx, n)
  local schema, name, temp = created_relation(ctx, n.relation)
  ctx.taken[name] = true
  local t = { action = "create", kind = "table", schema = schema, name = name, columns = {},
              partitioned = n.partspec ~= nil, if_not_exists = n.if_not_exists == true, temp = temp or nil }
  if temp and n.oncommit == "ONCOMMIT_DROP" then t.on_commit_drop = true end
  if n.inhRelations or n.ofTypename or n.partbound then t.columns_complete = false end
  if n.partbound and n.inhRelations and n.inhRelations[1] then
    local rv = n.inhRelations[1].RangeVar
    t.partition_of = { schema = rv.schemaname or ctx.schema_default, name = rv.relname }
  end
  local byname, deferred, seqs = {}, {}, {}
  for _, el in ipairs(n.tableElts or {}) do
    if el.ColumnDef then
      local col, cons, seq = column_record(ctx, schema, name, el.ColumnDef)
      t.columns[#t.columns + 1] = col
      byname[col.name] = col
      for _, c in ipairs(cons) do deferred[#deferred + 1] = { c, col.name } end
      if seq then seqs[#seqs + 1] = { col.name, seq, el.ColumnDef.location } end
    elseif el.Constraint then
      deferred[#deferred + 1] = { el.Constraint }
    elseif el.TableLikeClause then
      t.columns_complete = false
    end
  end
  for _, d in ipairs(deferred) do
    if d[1].contype == "CONSTR_PRIMARY" then
      for _, k in ipairs(strings(d[1].keys)) do
        if byname[k] then byname[k].not_null = true end
      end
    end
  end
  emit(ctx, t, n.relation.location)
  for _, s in ipairs(seqs) do sequence_effect(ctx, schema, name, s[1], s[2], s[3]) end
  for _, d in ipairs(deferred) do constraint_effect(ctx, "create", schema, name, d[1], d[2]) end
end

local ALTER = {}

ALTER.AT_AddColumn = function(ctx, schema, table, cmd)
  local cd = cmd.def.ColumnDef
  local col, cons, seq = column_record(ctx, schema, table, cd)
  local e = { action = "create", kind = "column", schema = schema, table = table,
              if_not_exists = cmd.missing_ok == true }
  for k, v in pairs(col) do e[k] = v end
  emit(ctx, e, cd.location)
  if seq then sequence_effect(ctx, schema, table, col.name, seq, cd.location) end
  for _, c in ipairs(cons) do constraint_effect(ctx, "create", schema, table, c, col.name) end
end

ALTER.AT_DropColumn = function(ctx, schema, table, cmd)
  emit(ctx, { action = "drop", kind = "column", schema = schema, table = table, name = cmd.name,
              if_exists = cmd.missing_ok == true, cascade = cmd.behavior == "DROP_CASCADE" })
end

local function alter_column(ctx, schema, table, name, set, loc)
  emit(ctx, { action = "alter", kind = "column", schema = schema, table = table, name = name,
              set = set }, loc)
end

ALTER.AT_AlterColumnType = function(ctx, schema, table, cmd)
  local cd = cmd.def.ColumnDef
  alter_column(ctx, schema, table, cmd.name, { type = type_name(cd.typeName) }, cd.location)
end

ALTER.AT_SetNotNull = function(ctx, schema, table, cmd)
  alter_column(ctx, schema, table, cmd.name, { not_null = true })
end

ALTER.AT_DropNotNull = function(ctx, schema, table, cmd)
  alter_column(ctx, schema, table, cmd.name, { not_null = false })
end

ALTER.AT_ColumnDefault = function(ctx, schema, table, cmd)
  if cmd.def then
    alter_column(ctx, schema, table, cmd.name,
      { has_default = true, default = expr_after_keyword(ctx.stmt, cmd.def, "default") },
      min_location(cmd.def))
  else
    alter_column(ctx, schema, table, cmd.name, { has_default = false })
  end
end

-- Inner text of the "AS ( ... )" group that holds a node (the expression of
-- ALTER COLUMN ... SET EXPRESSION AS (...)), nil when it cannot be found.
local function as_group_text(st, node)
  local loc = min_location(node)
  if not loc then return nil end
  local toks = st.toks
  for j = math.min(tok_at(toks, loc + 1), #toks), 1, -1 do
    local t = toks[j]
    if t.s <= loc and t.t == "word" and t.w == "as" then
      if not (toks[j + 1] and toks[j + 1].t == "(") then return nil end
      local txt = group_text(st, j + 1)
      return txt and txt:match("^%s*(.-)%s*$")
    end
  end
  return nil
end

-- PostgreSQL 17: ALTER COLUMN ... SET EXPRESSION AS (...) gives a stored
-- generated column a new expression (the table is rewritten); the catalog
-- shows it as the column's pg_attrdef expression.
ALTER.AT_SetExpression = function(ctx, schema, table, cmd)
  local text = cmd.def and as_group_text(ctx.stmt, cmd.def)
  if not text or text == "" then
    return unverifiable(ctx, "other", { node = "AlterTableStmt", subcommand = cmd.subtype })
  end
  alter_column(ctx, schema, table, cmd.name, { expression = text }, min_location(cmd.def))
end

ALTER.AT_AddConstraint = function(ctx, schema, table, cmd)
  constraint_effect(ctx, "create", schema, table, cmd.def.Constraint)
end

ALTER.AT_DropConstraint = function(ctx, schema, table, cmd)
  emit(ctx, { action = "drop", kind = "constraint", schema = schema, table = table, name = cmd.name,
              if_exists = cmd.missing_ok == true, cascade = cmd.behavior == "DROP_CASCADE" })
end

ALTER.AT_ValidateConstraint = function(ctx, schema, table, cmd)
  emit(ctx, { action = "alter", kind = "constraint", schema = schema, table = table, name = cmd.name,
              set = { not_valid = false } })
end

ALTER.AT_DetachPartition = function(ctx, schema, table, cmd)
  local pc = cmd.def and cmd.def.PartitionCmd
  if pc and pc.concurrent then nontx(ctx, "DETACH PARTITION CONCURRENTLY") end
  unverifiable(ctx, "other", { node = "AlterTableStmt", subcommand = cmd.subtype })
end

local RELKIND = {
  OBJECT_TABLE = "table", OBJECT_FOREIGN_TABLE = "table", OBJECT_VIEW = "view",
  OBJECT_MATVIEW = "matview", OBJECT_INDEX = "index", OBJECT_SEQUENCE = "sequence",
}

H.AlterTableStmt = function(ctx, n)
  local schema, table = rangevar(ctx, n.relation)
  for _, w in ipairs(n.cmds or {}) do
    local cmd = w.AlterTableCmd
    local h = ALTER[cmd.subtype]
    if h and (n.objtype == "OBJECT_TABLE" or n.objtype == "OBJECT_FOREIGN_TABLE") then
      h(ctx, schema, table, cmd)
    else
      unverifiable(ctx, "other", { node = "AlterTableStmt", subcommand = cmd.subtype })
    end
  end
end

-- Index column names as ChooseIndexColumnNames/FigureIndexColname see them.
local function figure_colname(node)
  if type(node) ~= "table" then return nil end
  local k, v = node_of(node)
  if k == "ColumnRef" then
    local f = v.fields or {}
    return sval(f[#f])
  elseif k == "FuncCall" then
    local f = v.funcname or {}
    return sval(f[#f])
  elseif k == "TypeCast" then
    return figure_colname(v.arg) or (v.typeName and sval(v.typeName.names[#v.typeName.names]))
  elseif k == "CaseExpr" then return "case"
  elseif k == "CoalesceExpr" then return "coalesce"
  elseif k == "A_ArrayExpr" then return "array"
  elseif k == "MinMaxExpr" then return v.op == "IS_GREATEST" and "greatest" or "least"
  elseif k == "A_Expr" and v.kind == "AEXPR_NULLIF" then return "nullif"
  end
  return nil
end

H.IndexStmt = function(ctx, n)
  local schema, table = rangevar(ctx, n.relation)
  local st = ctx.stmt
  local e = { action = "create", kind = "index", schema = schema, table = table,
              unique = n.unique == true, primary = n.primary == true,
              method = n.accessMethod or "btree", concurrently = n.concurrent == true,
              if_not_exists = n.if_not_exists == true, columns = {} }
  if n.concurrent then nontx(ctx, "CREATE INDEX CONCURRENTLY") end
  -- the element list: first depth-0 "(" after the table name
  local toks = st.toks
  local k = tok_at(toks, (n.relation.location or 0) + 1)
  while toks[k] and toks[k].t ~= "(" do k = k + 1 end
  local elems, close = {}, nil
  if toks[k] then
    local depth, start = 0, k + 1
    for j = k, #toks do
      local t = toks[j]
      if t.t == "(" or t.t == "[" then depth = depth + 1
      elseif t.t == ")" or t.t == "]" then
        depth = depth - 1
        if depth == 0 then elems[#elems + 1] = { start, j - 1 }; close = j; break end
      elseif t.t == "," and depth == 1 then elems[#elems + 1] = { start, j - 1 }; start = j + 1 end
    end
  end
  local colnames = {}
  for i, w in ipairs(n.indexParams or {}) do
    local ie = w.IndexElem
    if ie.name then
      e.columns[i] = ie.name
    else
      local r, txt = elems[i], nil
      if r and toks[r[1]] then
        if toks[r[1]].t == "(" then
          txt = group_text(st, r[1])
        else
          local j = r[1]
          while j <= r[2] and toks[j].t ~= "(" do j = j + 1 end
          local _, cl = group_text(st, j)
          txt = st.src:sub(toks[r[1]].s, toks[math.min(cl or r[2], r[2])].e)
        end
      end
      e.columns[i] = { expr = txt and txt:match("^%s*(.-)%s*$") }
    end
    colnames[#colnames + 1] = ie.indexcolname or ie.name or figure_colname(ie.expr) or "expr"
  end
  if n.indexIncludingParams then
    e.include = {}
    for _, w in ipairs(n.indexIncludingParams) do
      e.include[#e.include + 1] = w.IndexElem.name
      colnames[#colnames + 1] = w.IndexElem.name or "expr"
    end
  end
  if n.whereClause and close then
    for j = close + 1, #toks do
      if toks[j].t == "word" and toks[j].w == "where" and toks[j + 1] then
        e.predicate = st.src:sub(toks[j + 1].s, toks[#toks].e):gsub(";$", ""):match("^%s*(.-)%s*$")
        break
      end
    end
  end
  if n.idxname then
    e.name, e.name_generated = n.idxname, false
    ctx.taken[n.idxname] = true
  else
    local seen, uniq = {}, {}
    for _, c in ipairs(colnames) do
      local name, i = c, 0
      while seen[name] do i = i + 1; name = c .. i end
      seen[name] = true
      uniq[#uniq + 1] = name
    end
    e.name_generated = true
    e.name = choose_name(ctx, table, n.primary and nil or name_addition(uniq),
      n.primary and "pkey" or ((n.unique or n.isconstraint) and "key" or "idx"))
  end
  emit(ctx, e, n.relation.location)
  if e.temp then ctx.temp_indexes[e.name] = true end
end

H.CreateEnumStmt = function(ctx, n)
  local parts = strings(n.typeName)
  local schema, name = qualified(parts)
  schema = schema or ctx.schema_default
  ctx.enums[(schema or "") .. "." .. name] = true
  emit(ctx, { action = "create", kind = "enum", schema = schema, name = name, labels = strings(n.vals) })
end

H.AlterEnumStmt = function(ctx, n)
  local schema, name = qualified(strings(n.typeName))
  schema = schema or ctx.schema_default
  ctx.enums[(schema or "") .. "." .. name] = true
  if n.oldVal then
    emit(ctx, { action = "rename", kind = "enum_value", schema = schema, enum = name,
                name = n.oldVal, new_name = n.newVal })
  else
    local e = { action = "create", kind = "enum_value", schema = schema, enum = name, name = n.newVal,
                if_not_exists = n.skipIfNewValExists == true }
    if n.newValNeighbor then
      if n.newValIsAfter then e.after = n.newValNeighbor else e.before = n.newValNeighbor end
    end
    nontx(ctx, "ALTER TYPE ... ADD VALUE (cannot run in a transaction block before PostgreSQL 12)", 120000)
    emit(ctx, e)
  end
end

-- "enum" when this file shows the type is an enum, else "type".
local function type_kind(ctx, schema, name)
  return ctx.enums[(schema or "") .. "." .. name] and "enum" or "type"
end

local function typename_parts(ctx, tn)
  local schema, name = qualified(strings(tn.names))
  return schema or ctx.schema_default, name
end

local function func_args(params, procedure)
  local args = {}
  for _, w in ipairs(params or {}) do
    local p = w.FunctionParameter
    local mode = p.mode or "FUNC_PARAM_DEFAULT"
    if mode ~= "FUNC_PARAM_TABLE" and (mode ~= "FUNC_PARAM_OUT" or procedure) then
      args[#args + 1] = type_name(p.argType)
    end
  end
  return args
end

-- argument types of an ObjectWithArgs (nil when the statement gives none)
local function object_args(owa)
  if not owa or owa.args_unspecified then return nil end
  local args = {}
  for _, a in ipairs(owa.objargs or {}) do args[#args + 1] = type_name(a.TypeName) end
  return args
end

local DROPKIND = {
  OBJECT_TABLE = "table", OBJECT_FOREIGN_TABLE = "table", OBJECT_VIEW = "view",
  OBJECT_MATVIEW = "matview", OBJECT_INDEX = "index", OBJECT_SEQUENCE = "sequence",
  OBJECT_TYPE = "type", OBJECT_DOMAIN = "type", OBJECT_SCHEMA = "schema",
  OBJECT_EXTENSION = "extension", OBJECT_FUNCTION = "function", OBJECT_PROCEDURE = "function",
  OBJECT_ROUTINE = "function", OBJECT_TRIGGER = "trigger",
}

-- The identity of the object node of a DROP or COMMENT ON of kind (schema,
-- name, table for what hangs off a table, args of a function) set on e;
-- for a type, returns its kind as the file shows it (enum or type).
local function object_identity(ctx, kind, obj, e)
  if kind == "schema" or kind == "extension" then
    e.name = sval(obj)
  elseif kind == "type" then
    e.schema, e.name = typename_parts(ctx, obj.TypeName)
    return type_kind(ctx, e.schema, e.name)
  elseif kind == "function" then
    local owa = obj.ObjectWithArgs
    e.schema, e.name = qualified(strings(owa.objname))
    e.schema = e.schema or ctx.schema_default
    e.args = object_args(owa)
  else
    local parts = strings(obj.List and obj.List.items or {})
    if kind == "column" or kind == "constraint" or kind == "trigger" then
      e.name = table.remove(parts)
      e.schema, e.table = qualified(parts)
    else
      e.schema, e.name = qualified(parts)
    end
    e.schema = e.schema or ctx.schema_default
  end
end

H.DropStmt = function(ctx, n)
  local kind = DROPKIND[n.removeType]
  if not kind then return unverifiable(ctx, "other", { node = "DropStmt" }) end
  if n.concurrent then nontx(ctx, "DROP INDEX CONCURRENTLY") end
  for _, obj in ipairs(n.objects or {}) do
    local e = { action = "drop", kind = kind, if_exists = n.missing_ok == true,
                cascade = n.behavior == "DROP_CASCADE" }
    local resolved = object_identity(ctx, kind, obj, e)
    if kind == "type" then e.kind = resolved end
    if kind == "function" then e.procedure = n.removeType == "OBJECT_PROCEDURE" end
    if kind == "index" then e.concurrently = n.concurrent == true end
    emit(ctx, e)
    if e.temp and kind == "table" then ctx.temps[e.name] = nil end
    if e.temp and kind == "index" then ctx.temp_indexes[e.name] = nil end
  end
end

H.RenameStmt = function(ctx, n)
  local rt = n.renameType
  local e = { action = "rename", new_name = n.newname, if_exists = n.missing_ok == true }
  if RELKIND[rt] then
    e.kind = RELKIND[rt]
    e.schema, e.name = rangevar(ctx, n.relation)
  elseif rt == "OBJECT_COLUMN" or rt == "OBJECT_TABCONSTRAINT" or rt == "OBJECT_TRIGGER" then
    e.kind = rt == "OBJECT_COLUMN" and "column" or rt == "OBJECT_TRIGGER" and "trigger" or "constraint"
    e.schema, e.table = rangevar(ctx, n.relation)
    e.name = n.subname
  elseif rt == "OBJECT_TYPE" or rt == "OBJECT_DOMAIN" then
    e.schema, e.name = qualified(strings(n.object.List and n.object.List.items or {}))
    e.schema = e.schema or ctx.schema_default
    e.kind = type_kind(ctx, e.schema, e.name)
    if e.kind == "enum" then ctx.enums[(e.schema or "") .. "." .. n.newname] = true end
  elseif rt == "OBJECT_SCHEMA" then
    e.kind, e.name = "schema", n.subname
  elseif rt == "OBJECT_FUNCTION" or rt == "OBJECT_PROCEDURE" then
    local owa = n.object.ObjectWithArgs
    e.kind = "function"
    e.schema, e.name = qualified(strings(owa.objname))
    e.schema = e.schema or ctx.schema_default
    e.args = object_args(owa)
  else
    return unverifiable(ctx, "other", { node = "RenameStmt" })
  end
  emit(ctx, e)
end

H.AlterObjectSchemaStmt = function(ctx, n)
  local ot = n.objectType
  local e = { action = "alter", set = { schema = n.newschema }, if_exists = n.missing_ok == true }
  if RELKIND[ot] then
    e.kind = RELKIND[ot]
    e.schema, e.name = rangevar(ctx, n.relation)
  elseif ot == "OBJECT_TYPE" or ot == "OBJECT_DOMAIN" then
    e.schema, e.name = qualified(strings(n.object.List and n.object.List.items or {}))
    e.schema = e.schema or ctx.schema_default
    e.kind = type_kind(ctx, e.schema, e.name)
  elseif ot == "OBJECT_FUNCTION" or ot == "OBJECT_PROCEDURE" then
    e.kind = "function"
    e.schema, e.name = qualified(strings(n.object.ObjectWithArgs.objname))
    e.schema = e.schema or ctx.schema_default
    e.args = object_args(n.object.ObjectWithArgs)
  elseif ot == "OBJECT_EXTENSION" then
    e.kind, e.name = "extension", sval(n.object)
  else
    return unverifiable(ctx, "other", { node = "AlterObjectSchemaStmt" })
  end
  emit(ctx, e)
end

-- OWNED BY t.c (a table and column; "none" for OWNED BY NONE)
local function owned_by(d)
  local items = strings(d.arg and d.arg.List and d.arg.List.items or {})
  if #items == 1 and items[1] == "none" then return { none = true } end
  if #items >= 2 then return { table = items[#items - 1], column = items[#items] } end
  return nil
end

H.CreateSeqStmt = function(ctx, n)
  local schema, name = rangevar(ctx, n.sequence)
  local e = { action = "create", kind = "sequence", schema = schema, name = name,
              if_not_exists = n.if_not_exists == true }
  for _, w in ipairs(n.options or {}) do
    if w.DefElem and w.DefElem.defname == "owned_by" then e.owned_by = owned_by(w.DefElem) end
  end
  emit(ctx, e)
end

H.AlterSeqStmt = function(ctx, n)
  local schema, name = rangevar(ctx, n.sequence)
  local set = {}
  for _, w in ipairs(n.options or {}) do
    local d = w.DefElem
    set[d.defname] = true
    if d.defname == "owned_by" then set.owned_by = owned_by(d) or true end
  end
  emit(ctx, { action = "alter", kind = "sequence", schema = schema, name = name, set = set,
              if_exists = n.missing_ok == true })
end

-- The output column name PostgreSQL gives a select-list item without an
-- alias (parse_target.c FigureColnameInternal), for the node kinds modelled
-- here: name, strength (2 a real name, 1 a fallback, 0 none); nil when the
-- item is of a kind not modelled (the caller then gives up).
local function figure_colname(v)
  if type(v) ~= "table" then return nil end
  if v.ColumnRef then
    local f = v.ColumnRef.fields or {}
    local last = f[#f]
    if type(last) ~= "table" or not last.String then return nil end -- t.*: expanded, not one column
    return sval(last), 2
  elseif v.FuncCall then
    local f = v.FuncCall.funcname or {}
    local nm = sval(f[#f])
    if type(nm) ~= "string" then return nil end
    return nm, 2
  elseif v.A_Const then
    return "?column?", 0
  elseif v.CoalesceExpr then
    return "coalesce", 2
  elseif v.TypeCast then
    local nm, strength = figure_colname(v.TypeCast.arg)
    if nm == nil then return nil end
    if strength <= 1 then
      local names = v.TypeCast.typeName and v.TypeCast.typeName.names or {}
      local t = sval(names[#names])
      if type(t) ~= "string" then return nil end
      return t, 1
    end
    return nm, strength
  elseif v.CaseExpr then
    local nm, strength = "?column?", 0
    if v.CaseExpr.defresult then
      nm, strength = figure_colname(v.CaseExpr.defresult)
      if nm == nil then return nil end
    end
    if strength <= 1 then return "case", 1 end
    return nm, strength
  end
  return nil
end

--- The output column names of a view's query (its column list first), in
--- order, when every one is certain; nil otherwise (SELECT *, VALUES,
--- expressions PostgreSQL names "?column?" or by rules not modelled here).
local function query_columns(query, aliases)
  local q = query and query.SelectStmt
  while q and q.op and q.op ~= "SETOP_NONE" do q = q.larg end
  if not q or not q.targetList then return nil end
  local out = {}
  for i, t in ipairs(q.targetList) do
    local r = t.ResTarget
    if not r then return nil end
    local nm = aliases and aliases[i] and sval(aliases[i]) or r.name or figure_colname(r.val)
    if nm ~= nil and #nm > 63 then return nil end -- truncated by PostgreSQL
    if type(nm) ~= "string" or nm == "" then return nil end
    out[i] = nm
  end
  if aliases and #aliases > #out then return nil end
  return out
end

H.ViewStmt = function(ctx, n)
  local schema, name = rangevar(ctx, n.view)
  emit(ctx, { action = "create", kind = "view", schema = schema, name = name, or_replace = n.replace == true,
              out_columns = query_columns(n.query, n.aliases) })
end

H.CreateTableAsStmt = function(ctx, n)
  local schema, name, temp = created_relation(ctx, n.into.rel)
  local kind = n.objtype == "OBJECT_MATVIEW" and "matview" or "table"
  local e = { action = "create", kind = kind, schema = schema, name = name,
              if_not_exists = n.if_not_exists == true, temp = temp or nil }
  if temp and n.into.onCommit == "ONCOMMIT_DROP" then e.on_commit_drop = true end
  if kind == "table" then e.columns_complete = false; e.columns = {}; e.partitioned = false end
  if kind == "matview" then e.out_columns = query_columns(n.query, n.into and n.into.colNames) end
  emit(ctx, e)
end

H.CreateFunctionStmt = function(ctx, n)
  local schema, name = qualified(strings(n.funcname))
  local proc = n.is_procedure == true
  local e = { action = "create", kind = "function", schema = schema or ctx.schema_default, name = name,
              args = func_args(n.parameters, proc), procedure = proc, or_replace = n.replace == true }
  for _, w in ipairs(n.options or {}) do
    local d = w.DefElem
    if d and d.defname == "language" then e.language = sval(d.arg) end
    if d and d.defname == "as" then
      local items = d.arg and d.arg.List and d.arg.List.items
      -- AS 'body' (prosrc); AS 'file', 'symbol' (C) has no comparable body
      if items and #items == 1 then e.body = sval(items[1]) end
    end
  end
  emit(ctx, e)
end

H.CreateTrigStmt = function(ctx, n)
  local schema, table = rangevar(ctx, n.relation)
  emit(ctx, { action = "create", kind = "trigger", schema = schema, table = table, name = n.trigname,
              or_replace = n.replace == true })
end

H.CreateExtensionStmt = function(ctx, n)
  emit(ctx, { action = "create", kind = "extension", name = n.extname, if_not_exists = n.if_not_exists == true })
end

H.CompositeTypeStmt = function(ctx, n)
  local schema, name = rangevar(ctx, n.typevar)
  emit(ctx, { action = "create", kind = "type", schema = schema, name = name, composite = true })
end

H.CreateDomainStmt = function(ctx, n)
  local schema, name = qualified(strings(n.domainname))
  emit(ctx, { action = "create", kind = "type", schema = schema or ctx.schema_default, name = name, domain = true })
end

H.CreateRangeStmt = function(ctx, n)
  local schema, name = qualified(strings(n.typeName))
  emit(ctx, { action = "create", kind = "type", schema = schema or ctx.schema_default, name = name, range = true })
end

local COMMENTKIND = {
  OBJECT_TABLE = "table", OBJECT_FOREIGN_TABLE = "table", OBJECT_VIEW = "view",
  OBJECT_MATVIEW = "matview", OBJECT_INDEX = "index", OBJECT_SEQUENCE = "sequence",
  OBJECT_COLUMN = "column", OBJECT_TYPE = "type", OBJECT_DOMAIN = "type", OBJECT_SCHEMA = "schema",
  OBJECT_EXTENSION = "extension", OBJECT_FUNCTION = "function", OBJECT_PROCEDURE = "function",
  OBJECT_TABCONSTRAINT = "constraint", OBJECT_TRIGGER = "trigger",
}

--- The object kinds a `comment` effect can be `on` (an enum is "enum" when
--- the file shows it is one, else "type").
M.COMMENT_ON = { "enum" }
do
  local seen = { enum = true }
  for _, v in pairs(COMMENTKIND) do
    if not seen[v] then seen[v] = true; M.COMMENT_ON[#M.COMMENT_ON + 1] = v end
  end
  table.sort(M.COMMENT_ON)
end

H.CommentStmt = function(ctx, n)
  local on = COMMENTKIND[n.objtype]
  if not on then return unverifiable(ctx, "other", { node = "CommentStmt" }) end
  local e = { action = n.comment and "create" or "drop", kind = "comment", on = on, text = n.comment }
  local resolved = object_identity(ctx, on, n.object, e)
  if on == "type" then e.on = resolved end
  emit(ctx, e)
end

local function data(ctx, n, rv, node)
  local extra = { node = node or ctx.stmt.kind }
  if rv then extra.schema, extra.table = rangevar(ctx, rv) end
  unverifiable(ctx, "data", extra)
end

-- SELECT ... INTO [TEMP] t creates a table (as CREATE TABLE AS does); a
-- WITH of INSERT/UPDATE/DELETE changes data; any other SELECT is unverifiable
H.SelectStmt = function(ctx, n)
  local seen = false
  if n.intoClause and n.intoClause.rel then
    local schema, name, temp = created_relation(ctx, n.intoClause.rel)
    local e = { action = "create", kind = "table", schema = schema, name = name, columns = {},
                columns_complete = false, partitioned = false, temp = temp or nil }
    if temp and n.intoClause.onCommit == "ONCOMMIT_DROP" then e.on_commit_drop = true end
    emit(ctx, e, n.intoClause.rel.location)
    seen = true
  end
  for _, w in ipairs(n.withClause and n.withClause.ctes or {}) do
    local q = w.CommonTableExpr and w.CommonTableExpr.ctequery
    local k, v
    if q then k, v = node_of(q) end
    if k == "InsertStmt" or k == "UpdateStmt" or k == "DeleteStmt" or k == "MergeStmt" then
      data(ctx, v, v.relation, k)
      seen = true
    end
  end
  if not seen then unverifiable(ctx, "other", { node = "SelectStmt" }) end
end

H.InsertStmt = function(ctx, n) data(ctx, n, n.relation) end
H.UpdateStmt = function(ctx, n) data(ctx, n, n.relation) end
H.DeleteStmt = function(ctx, n) data(ctx, n, n.relation) end
H.MergeStmt = function(ctx, n) data(ctx, n, n.relation) end
H.CopyStmt = function(ctx, n) data(ctx, n, n.relation) end
H.TruncateStmt = function(ctx, n)
  local r = n.relations and n.relations[1]
  data(ctx, n, r and r.RangeVar)
end
---------------------------------------------------------------------------
-- DO blocks: PL/pgSQL's own parser (sql.parse_plpgsql) reads the body; each
-- static SQL statement in it is parsed again and gives its effects, marked
-- in_do, and `conditional` (a reason) when an IF, CASE, loop or exception
-- handler decides whether it runs. Under an existence guard
-- (IF NOT EXISTS (SELECT ... FROM pg_.../information_schema...) THEN, or a
-- one-statement block whose handler only catches duplicate_*), creates are
-- IF NOT EXISTS creates. EXECUTE, PERFORM, CALL stay unverifiable.
---------------------------------------------------------------------------

local DUPLICATE = { duplicate_object = true, duplicate_table = true, duplicate_column = true,
                    duplicate_schema = true, duplicate_function = true }
local UNDEFINED = { undefined_object = true, undefined_table = true, undefined_column = true,
                    undefined_function = true }
local PL_QUIET = { PLpgSQL_stmt_assign = true, PLpgSQL_stmt_raise = true, PLpgSQL_stmt_return = true,
                   PLpgSQL_stmt_exit = true, PLpgSQL_stmt_getdiag = true, PLpgSQL_stmt_assert = true,
                   PLpgSQL_stmt_open = true, PLpgSQL_stmt_fetch = true, PLpgSQL_stmt_close = true,
                   PLpgSQL_stmt_return_next = true }
local PL_LOOPS = { PLpgSQL_stmt_loop = "LOOP", PLpgSQL_stmt_while = "WHILE", PLpgSQL_stmt_fori = "FOR",
                   PLpgSQL_stmt_fors = "FOR ... IN query", PLpgSQL_stmt_forc = "FOR ... IN cursor",
                   PLpgSQL_stmt_foreach_a = "FOREACH", PLpgSQL_stmt_dynfors = "FOR ... IN EXECUTE" }

local pl_stmts

local function pl_query(x) return type(x) == "table" and x.PLpgSQL_expr and x.PLpgSQL_expr.query or nil end

local function with(st, k, v)
  local o = {}
  for a, b in pairs(st) do o[a] = b end
  if o[k] == nil then o[k] = v end
  return o
end

-- IF NOT EXISTS (SELECT ... FROM pg_catalog/information_schema ...)
local function existence_guard(cond)
  local c = (cond or ""):lower()
  return c:find("^%s*not%s+exists%s*%(") ~= nil and (c:find("pg_", 1, true) or c:find("information_schema", 1, true)) ~= nil
end

local function nested_unverifiable(ctx, line, st, reason)
  local saved = ctx.nested
  ctx.nested = { line = line, conditional = st.conditional }
  unverifiable(ctx, "do", { node = "DoStmt", reason = reason })
  ctx.nested = saved
end

-- One static SQL statement of the body, at file line `line`.
local function pl_sql(ctx, q, line, st)
  local tree, msg = sql.parse(q)
  if not tree then
    return nested_unverifiable(ctx, line, st, ("the statement at line %d inside DO does not parse on its own (%s)"):format(line, msg))
  end
  local outer = ctx.stmt
  local saved = ctx.nested
  ctx.nested = { line = line, conditional = st.conditional, guard = st.guard, guard_drop = st.guard_drop }
  for _, raw in ipairs(tree.stmts or {}) do
    local kind, node = node_of(raw.stmt)
    ctx.stmt = setmetatable({ src = q, text = q }, {
      __index = function(t, k)
        if k == "toks" then
          local toks = lex(q, 1, #q)
          rawset(t, "toks", toks)
          return toks
        end
        return outer[k]
      end,
      __newindex = function(_, k, v) outer[k] = v end,
    })
    local h = H[kind]
    if kind == "TransactionStmt" then
      unverifiable(ctx, "do", { node = "DoStmt", reason = ("transaction control at line %d inside DO"):format(line) })
    elseif h then h(ctx, node) else unverifiable(ctx, "other", { node = kind }) end
  end
  ctx.stmt, ctx.nested = outer, saved
end

local function pl_stmt(ctx, w, base, st)
  local k, v = node_of(w)
  local line = base + (v.lineno or 1) - 1
  if k == "PLpgSQL_stmt_block" then
    local exc = v.exceptions and v.exceptions.PLpgSQL_exception_block
    if not exc then return pl_stmts(ctx, v.body, base, st) end
    local dup, undef = true, true
    for _, x in ipairs(exc.exc_list or {}) do
      local e = x.PLpgSQL_exception or {}
      for _, c in ipairs(e.conditions or {}) do
        local name = c.PLpgSQL_condition and c.PLpgSQL_condition.condname
        if not DUPLICATE[name] then dup = false end
        if not UNDEFINED[name] then undef = false end
      end
    end
    local inner
    if #(v.body or {}) == 1 and dup then inner = with(st, "guard", ("EXCEPTION WHEN duplicate_... at line %d"):format(line))
    elseif #(v.body or {}) == 1 and undef then inner = with(st, "guard_drop", ("EXCEPTION WHEN undefined_... at line %d"):format(line))
    else inner = with(st, "conditional", ("a block with an EXCEPTION handler (line %d) rolls back when it catches an error"):format(line)) end
    pl_stmts(ctx, v.body, base, inner)
    for _, x in ipairs(exc.exc_list or {}) do
      local e = x.PLpgSQL_exception or {}
      pl_stmts(ctx, e.action, base, with(st, "conditional", ("an EXCEPTION handler (line %d) runs only on an error"):format(line)))
    end
  elseif k == "PLpgSQL_stmt_if" then
    local cond = pl_query(v.cond)
    local then_st
    if existence_guard(cond) then then_st = with(st, "guard", ("IF %s (line %d)"):format(cond, line))
    else then_st = with(st, "conditional", ("under IF %s (line %d)"):format(cond or "?", line)) end
    pl_stmts(ctx, v.then_body, base, then_st)
    for _, x in ipairs(v.elsif_list or {}) do
      local e = x.PLpgSQL_if_elsif or {}
      pl_stmts(ctx, e.stmts, base, with(st, "conditional", ("under ELSIF %s (line %d)"):format(pl_query(e.cond) or "?", line)))
    end
    pl_stmts(ctx, v.else_body, base, with(st, "conditional", ("under the ELSE of IF %s (line %d)"):format(cond or "?", line)))
  elseif k == "PLpgSQL_stmt_case" then
    local c = with(st, "conditional", ("under CASE (line %d)"):format(line))
    for _, x in ipairs(v.case_when_list or {}) do pl_stmts(ctx, (x.PLpgSQL_case_when or {}).stmts, base, c) end
    pl_stmts(ctx, v.else_stmts, base, c)
  elseif PL_LOOPS[k] then
    if k == "PLpgSQL_stmt_dynfors" then
      nested_unverifiable(ctx, line, st, ("dynamic SQL (FOR ... IN EXECUTE at line %d) inside DO: the statement is built when it runs"):format(line))
    end
    pl_stmts(ctx, v.body, base, with(st, "conditional", ("inside a %s loop (line %d) that may run any number of times"):format(PL_LOOPS[k], line)))
  elseif k == "PLpgSQL_stmt_execsql" then
    pl_sql(ctx, pl_query(v.sqlstmt) or "", line, st)
  elseif k == "PLpgSQL_stmt_dynexecute" then
    nested_unverifiable(ctx, line, st, ("dynamic SQL (EXECUTE at line %d) inside DO: the statement is built when it runs"):format(line))
  elseif k == "PLpgSQL_stmt_perform" or k == "PLpgSQL_stmt_call" or k == "PLpgSQL_stmt_return_query" then
    nested_unverifiable(ctx, line, st, ("%s at line %d inside DO: what it changes cannot be seen in the catalog"):format(
      k == "PLpgSQL_stmt_call" and "CALL" or (k == "PLpgSQL_stmt_perform" and "PERFORM" or "RETURN QUERY"), line))
  elseif k == "PLpgSQL_stmt_commit" or k == "PLpgSQL_stmt_rollback" then
    nested_unverifiable(ctx, line, st, ("%s at line %d inside DO ends the transaction mid-block"):format(
      k == "PLpgSQL_stmt_commit" and "COMMIT" or "ROLLBACK", line))
  elseif not PL_QUIET[k] then
    nested_unverifiable(ctx, line, st, ("%s at line %d inside DO is not modelled"):format(k, line))
  end
end

pl_stmts = function(ctx, list, base, st)
  for _, w in ipairs(list or {}) do pl_stmt(ctx, w, base, st) end
end

H.DoStmt = function(ctx, n)
  local body, lang, loc
  for _, w in ipairs(n.args or {}) do
    local d = w.DefElem or {}
    if d.defname == "as" then body, loc = sval(d.arg), d.location
    elseif d.defname == "language" then lang = sval(d.arg) end
  end
  lang = lang or "plpgsql"
  if lang ~= "plpgsql" or type(body) ~= "string" then
    return unverifiable(ctx, "do", { node = "DoStmt", reason = ("a DO block in LANGUAGE %s: its body is not read"):format(lang) })
  end
  -- PL/pgSQL's parser reads function bodies: wrap the block in one
  local tag, k = "$migfix$", 0
  while body:find(tag, 1, true) do k = k + 1; tag = "$migfix" .. k .. "$" end
  local funcs, msg = sql.parse_plpgsql("CREATE FUNCTION migfix_do() RETURNS void LANGUAGE plpgsql AS " .. tag .. body .. tag)
  local fn = funcs and funcs[1] and funcs[1].PLpgSQL_function
  if not fn then
    return unverifiable(ctx, "do", { node = "DoStmt",
      reason = ("the DO block's PL/pgSQL could not be read without the database (%s)"):format(tostring(msg)) })
  end
  -- body line 1 is the line of the string that holds it
  local base = line_of(ctx, loc)
  pl_stmt(ctx, fn.action, base, {})
end

local TX = {
  TRANS_STMT_BEGIN = true, TRANS_STMT_START = true, TRANS_STMT_COMMIT = true,
  TRANS_STMT_ROLLBACK = true, TRANS_STMT_SAVEPOINT = true, TRANS_STMT_RELEASE = true,
  TRANS_STMT_ROLLBACK_TO = true, TRANS_STMT_PREPARE = true, TRANS_STMT_COMMIT_PREPARED = true,
  TRANS_STMT_ROLLBACK_PREPARED = true,
}

H.TransactionStmt = function(ctx, n)
  if TX[n.kind] then ctx.stmt.tx_control = true end
end

local NONTX = {
  VacuumStmt = "VACUUM", CreatedbStmt = "CREATE DATABASE", DropdbStmt = "DROP DATABASE",
  CreateTableSpaceStmt = "CREATE TABLESPACE", DropTableSpaceStmt = "DROP TABLESPACE",
  AlterSystemStmt = "ALTER SYSTEM",
}

H.ReindexStmt = function(ctx, n)
  for _, w in ipairs(n.params or {}) do
    local d = w.DefElem
    if d and d.defname == "concurrently" then
      local a = d.arg
      local off = a and ((a.String and (a.String.sval == "false" or a.String.sval == "off"))
                         or (a.Integer and (a.Integer.ival or 0) == 0)
                         or (a.Boolean and not a.Boolean.boolval))
      if not off then nontx(ctx, "REINDEX CONCURRENTLY") end
    end
  end
  local target
  if n.relation and (n.kind == "REINDEX_OBJECT_INDEX" or n.kind == "REINDEX_OBJECT_TABLE") then
    local schema, name = rangevar(ctx, n.relation)
    target = { kind = n.kind == "REINDEX_OBJECT_INDEX" and "index" or "table", schema = schema, name = name,
               concurrently = ctx.stmt.non_transactional == true }
  end
  unverifiable(ctx, "other", { node = "ReindexStmt", reindex = target })
end

---------------------------------------------------------------------------
-- analyze
---------------------------------------------------------------------------

local function line_starts(text)
  local starts, pos = { 0 }, 1
  while true do
    local nl = text:find("\n", pos, true)
    if not nl then break end
    starts[#starts + 1] = nl -- 0-based offset of the next line's first byte
    pos = nl + 1
  end
  return starts
end

---@class migfix.effects.unit
---@field file string?
---@field statements table[]
---@field effects table[]
---@field flags { tx_control: boolean, non_transactional: boolean, before_pg: integer? }

--- Statements and effects of one migration file (docs/effects.md). The
--- file is parsed a part at a time (sql.statements): its parse trees are
--- never all in memory; opts.on_statement(st, node, unit), called after each
--- statement's effects are added, is where a caller reads a tree (lint).
---@param text string the file's SQL
---@param file string? its path (copied into the unit and errors)
---@param opts? { on_statement: fun(st: table, node: table, unit: table)? }
---@return migfix.effects.unit|nil unit
---@return table? err { message, file, line, column } on a syntax error
function M.analyze(text, file, opts)
  if type(text) ~= "string" then
    error(("bad argument #1 to 'analyze' (string expected, got %s) (expected effects.analyze(text, file))"):format(type(text)), 2)
  end
  if file ~= nil and type(file) ~= "string" then
    error(("bad argument #2 to 'analyze' (string expected, got %s) (expected effects.analyze(text, file))"):format(type(file)), 2)
  end
  local on_statement = opts and opts.on_statement
  local unit = { file = file, statements = {}, effects = {},
                 flags = { tx_control = false, non_transactional = false } }
  local ctx = { effects = unit.effects, taken = {}, enums = {}, temps = {}, temp_indexes = {},
                line_starts = line_starts(text) }
  local before_pg, always = nil, false
  for raw, span, perr in sql.statements(text) do
    if raw == false then
      return nil, { message = span, file = file, line = perr.line, column = perr.column,
                    cursorpos = perr.cursorpos }
    end
    if span then
      local kind, node = node_of(raw.stmt)
      local st = {
        index = #unit.statements + 1, line = span.line, end_line = span.end_line,
        text = span.text, offset = span.offset, length = span.length, kind = kind,
        tx_control = false, non_transactional = false, unverifiable = false,
      }
      unit.statements[st.index] = st
      -- tokens are only needed for expression text (defaults, checks,
      -- predicates): lex a statement the first time something asks
      local p1, p2 = span.offset + 1, span.offset + span.length
      ctx.stmt = setmetatable({ src = text }, {
        __index = function(t, k)
          if k == "toks" then
            local toks = lex(text, p1, p2)
            rawset(t, "toks", toks)
            return toks
          end
          return st[k]
        end,
        __newindex = st,
      })
      if NONTX[kind] then nontx(ctx, NONTX[kind]) end
      local h = H[kind]
      if h then h(ctx, node) else unverifiable(ctx, "other", { node = kind }) end
      if on_statement then on_statement(st, raw.stmt, unit) end
      if st.tx_control then unit.flags.tx_control = true end
      if st.non_transactional then
        unit.flags.non_transactional = true
        if st.before_pg then
          before_pg = math.max(before_pg or 0, st.before_pg)
        else
          always = true
        end
      end
    end
  end
  if unit.flags.non_transactional and not always then unit.flags.before_pg = before_pg end
  return unit
end

return M
