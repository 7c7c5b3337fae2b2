--- migfix.datacheck — evidence about data, not only schema. When a failed
--- migration's error is a data error, the statement that tripped on it says
--- what the data must satisfy; this module derives that precondition from the
--- statement and counts, read-only, the rows that still violate it:
---
---   23505  CREATE UNIQUE INDEX / ADD ... UNIQUE | PRIMARY KEY  duplicate groups of the
---          key columns or expressions (only rows the index's WHERE covers; NULLs are
---          distinct unless NULLS NOT DISTINCT; a primary key also counts NULL rows)
---   23502  SET NOT NULL / ADD PRIMARY KEY                      rows with NULL in the column(s)
---          ADD COLUMN ... NOT NULL without DEFAULT             every existing row
---   23503  ADD FOREIGN KEY (not NOT VALID)                     orphan rows (MATCH SIMPLE / FULL)
---   23514  ADD CHECK (not NOT VALID)                           rows for which the expression is false
---   22xxx  ALTER COLUMN TYPE [USING expr]                      rows whose conversion fails (bounded)
---
--- Every check runs in a READ ONLY transaction (the server refuses writes) with
--- search_path = the ledger schema (as Prisma's session has it) and
--- SET LOCAL statement_timeout; a check that cannot be derived, errs or times
--- out is `unknown` — never `holds`.
---
---   datacheck.check(conn, d, o) -> data
---     d: a diagnose record (d.error, d.unit); o: {schema, timeout_ms, samples, connect}
---     data = { status = "holds"|"violated"|"unknown"|"not_applicable", sqlstate, reason,
---              violations, summary, advice, checks = { check... } }
---     check = { kind = "unique"|"not_null"|"new_not_null"|"foreign_key"|"check"|"cast",
---               statement, line, schema, table, columns, where, status, violations,
---               groups, samples = { {key, rows, text} }, summary, advice, sql, ms, reason }
---
--- The same read-only session also compares the query of a view a file
--- replaces with the catalog's, by their plans (`viewplans`, never run).
-- @module migfix.datacheck
local json = require "migfix.json"
local sql = require "migfix.sql"

local M = {}

M.DEFAULT_TIMEOUT_MS = 30000
M.SAMPLES = 3
--- a conversion check stops counting after this many failing rows
M.CAST_CAP = 1000

local KNOWN_OPTS = { schema = true, timeout_ms = true, samples = true, connect = true }

-- ------------------------------------------------------------------ text

local function qi(name) return '"' .. tostring(name):gsub('"', '""') .. '"' end
local function ql(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

--- a JSON value as SQL-ish text: 'ann@example.com', 42, NULL
local function value_text(v)
  if v == nil or v == json.null then return "NULL" end
  if type(v) == "string" then return ql(v) end
  if type(v) == "table" then return ql(json.encode(v)) end
  return tostring(v)
end

local function key_text(labels, values)
  local parts = {}
  for i, l in ipairs(labels) do parts[#parts + 1] = ("%s = %s"):format(l, value_text(values[i])) end
  return table.concat(parts, ", ")
end

local function plural(n, one, many) return n == 1 and one or (many or (one .. "s")) end

-- ------------------------------------------------------------------ lexing

--- Tokens of s as migfix.effects lexes SQL (words, quoted identifiers,
--- strings, numbers, parameters, operators, punctuation): enough to find a
--- keyword at parenthesis depth 0 outside strings and comments.
local function lex(s) return require("migfix.effects").lex(s, 1, #s) end

--- The text of the USING expression of the k-th ALTER COLUMN ... TYPE of
--- column `col` in statement text s (nil when there is none).
local function using_text(s, col)
  local toks = lex(s)
  local depth, k = 0, 1
  -- find "type" (or "data type") after the column name, then "using" at depth 0
  while k <= #toks do
    local t = toks[k]
    if t.t == "(" then depth = depth + 1 elseif t.t == ")" then depth = depth - 1 end
    local name = t.t == "qident" and s:sub(t.s + 1, t.e - 1):gsub('""', '"') or (t.t == "word" and t.w or nil)
    if depth == 0 and name == col and toks[k + 1] then
      local j = k + 1
      local d2 = 0
      while j <= #toks do
        local u = toks[j]
        if u.t == "(" then d2 = d2 + 1
        elseif u.t == ")" then d2 = d2 - 1
        elseif d2 == 0 and (u.t == "," or u.t == ";") then break
        elseif d2 == 0 and u.t == "word" and u.w == "using" then
          local first, last = toks[j + 1], nil
          local d3 = 0
          for m = j + 1, #toks do
            local v = toks[m]
            if v.t == "(" then d3 = d3 + 1 elseif v.t == ")" then d3 = d3 - 1 end
            if d3 < 0 or (d3 == 0 and (v.t == "," or v.t == ";")) then break end
            last = v
          end
          if first and last then return (s:sub(first.s, last.e):match("^%s*(.-)%s*$")) end
          return nil
        end
        j = j + 1
      end
      return nil
    end
    k = k + 1
  end
  return nil
end
M.using_text = using_text

-- ------------------------------------------------------------------ parse tree details

--- Flags the effect records do not carry: NULLS NOT DISTINCT, MATCH FULL.
local function tree_flags(text)
  local tree = sql.parse(text)
  local flags = { nulls_not_distinct = {}, match_full = {}, index_nnd = false }
  if not tree or not tree.stmts or not tree.stmts[1] then return flags end
  local function walk(node)
    if type(node) ~= "table" then return end
    if node.Constraint then
      local c = node.Constraint
      if c.nulls_not_distinct and c.conname then flags.nulls_not_distinct[c.conname] = true end
      if c.nulls_not_distinct and not c.conname then flags.nulls_not_distinct["?"] = true end
      if c.fk_matchtype == "f" then flags.match_full[c.conname or "?"] = true end
    end
    if node.IndexStmt and node.IndexStmt.nulls_not_distinct then flags.index_nnd = true end
    for _, v in pairs(node) do walk(v) end
  end
  walk(tree.stmts[1].stmt)
  return flags
end

-- ------------------------------------------------------------------ candidates

local CODE_KIND = { ["23505"] = "unique", ["23502"] = "not_null", ["23503"] = "foreign_key", ["23514"] = "check" }

--- the kind of precondition an error code asks for, or nil
local function kind_of(code)
  if type(code) ~= "string" then return nil end
  if CODE_KIND[code] then return CODE_KIND[code] end
  if code:sub(1, 2) == "22" then return "cast" end
  return nil
end
M.kind_of = kind_of

--- the effects of statements of the file that can raise this kind of data error
local function candidates(unit, kind, created)
  local out = {}
  for _, e in ipairs(unit.effects or {}) do
    local t = e.table
    local existing = t and not created[(e.schema or "") .. "." .. t]
    if existing and e.action == "create" then
      if kind == "unique" and ((e.kind == "index" and e.unique) or
          (e.kind == "constraint" and (e.contype == "u" or e.contype == "p") and not e.using_index)) then
        out[#out + 1] = e
      elseif kind == "not_null" and ((e.kind == "column" and e.not_null and not e.has_default and not e.identity)
          or (e.kind == "constraint" and e.contype == "p" and not e.using_index)) then
        out[#out + 1] = e
      elseif kind == "foreign_key" and e.kind == "constraint" and e.contype == "f" and not e.not_valid then
        out[#out + 1] = e
      elseif kind == "check" and e.kind == "constraint" and e.contype == "c" and not e.not_valid then
        out[#out + 1] = e
      end
    elseif existing and e.action == "alter" and e.kind == "column" and e.set then
      if kind == "not_null" and e.set.not_null == true then out[#out + 1] = e end
      if kind == "cast" and e.set.type then out[#out + 1] = e end
    end
  end
  return out
end

--- every double-quoted name in the error's message and detail, and its object
local function named_in(err)
  local names = {}
  for _, s in ipairs({ err.message or "", err.detail or "" }) do
    for n in s:gmatch('"([^"]+)"') do names[n] = true end
    for n in s:gmatch("%(([^)]+)%)") do
      for part in n:gmatch("[^,%s`]+") do names[part] = true end
    end
  end
  if type(err.object) == "string" and err.object ~= "" then names[err.object] = true end
  if type(err.relation) == "string" then names[err.relation] = true end
  return names
end

--- keep the candidates the error names (by index/constraint name, or column and table)
local function narrow(cands, err)
  local names = named_in(err)
  if next(names) == nil then return cands, false end
  local keep = {}
  for _, e in ipairs(cands) do
    local hit = false
    if e.kind == "index" or e.kind == "constraint" then hit = e.name ~= nil and names[e.name] == true end
    if e.kind == "column" then hit = names[e.name] == true and (not err.relation or err.relation == e.table) end
    if (e.kind == "index" or (e.kind == "constraint" and e.contype ~= "c")) and not hit and e.columns and #e.columns > 0 then
      local all = true
      for _, c in ipairs(e.columns) do if type(c) ~= "string" or not names[c] then all = false end end
      if all and (e.contype == "p" or not err.relation or err.relation == e.table) then hit = e.contype == "p" or e.kind == "index" or e.contype == "u" end
    end
    if e.kind == "constraint" and e.contype == "p" and not hit then
      for _, c in ipairs(e.columns or {}) do if names[c] and (not err.relation or err.relation == e.table) then hit = true end end
    end
    if hit then keep[#keep + 1] = e end
  end
  return keep, true
end

--- an earlier statement of the file that changes what this one would see
local DML = { InsertStmt = true, UpdateStmt = true, DeleteStmt = true, MergeStmt = true, CopyStmt = true,
              TruncateStmt = true, DoStmt = true, ExecuteStmt = true, CallStmt = true, SelectStmt = false }

local function earlier_change(unit, e, cols)
  for _, s in ipairs(unit.statements or {}) do
    if s.index >= e.stmt then break end
    if DML[s.kind] then
      return ("statement %d (line %d) changes rows before it runs: the rows now are not the rows it would see"):format(s.index, s.line)
    end
  end
  for _, o in ipairs(unit.effects or {}) do
    if o.stmt >= e.stmt then break end
    if o.table == e.table and (o.schema or "") == (e.schema or "") and o.kind == "column" then
      for _, c in ipairs(cols) do
        if o.name == c or o.new_name == c then
          return ("statement %d (line %d) changes column \"%s\" before it runs"):format(o.stmt, o.line or 0, c)
        end
      end
    end
    if o.action == "rename" and (o.table == e.table or o.name == e.table) then
      return ("statement %d renames something of \"%s\" before it runs"):format(o.stmt, e.table)
    end
  end
  return nil
end

-- ------------------------------------------------------------------ running

--- run fn(conn) in a READ ONLY transaction with the timeout and search_path
local function in_readonly(R, fn)
  local conn = R.conn
  local tx, err, info = conn:begin { readonly = true }
  if not tx then return nil, err, info end
  local ok, e2, i2 = conn:query("SELECT set_config('statement_timeout', $1, true), set_config('search_path', $2, true)",
    tostring(R.timeout_ms), qi(R.schema))
  if not ok then tx:rollback() return nil, e2, i2 end
  local res = table.pack(pcall(fn, conn))
  tx:rollback()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

local function query(conn, q, ...)
  local rows, err, info = conn:query(q, ...)
  if not rows then error({ datacheck = true, message = err, info = info or {} }, 0) end
  return rows
end

local function failure_reason(R, e)
  if type(e) == "table" and e.datacheck then
    local st = e.info.sqlstate
    if st == "57014" then
      return ("the check ran longer than its bound (statement_timeout %d ms)"):format(R.timeout_ms), st
    end
    return ("the check query failed: %s%s"):format(st and (st .. " ") or "", tostring(e.message)), st
  end
  return "the check failed: " .. tostring(e)
end

-- the session the checks read in: conn, or (conn inside a transaction) the
-- second read-only connection o.connect gives; nil and why without one
local function reader(conn, o, schema)
  if conn:info().in_transaction then
    if not o.connect then return nil, "the connection is inside a transaction and no other was given" end
    conn = o.connect()
  end
  return { conn = conn, schema = schema, timeout_ms = o.timeout_ms or M.DEFAULT_TIMEOUT_MS }
end

-- the reader for a list of checks {r = result, ...}: nil when there is none
-- to run, or (each r.reason said) no session to read in
local function plans_reader(conn, o, schema, plans)
  if #plans == 0 then return nil end
  local R, why = reader(conn, o, schema)
  if not R then for _, p in ipairs(plans) do p.r.reason = why end end
  return R
end

--- primary-key columns of a table (row identity for samples), or nil
local function pk_columns(conn, rel)
  local rows = query(conn, [[
    SELECT a.attname FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = $1::regclass AND i.indisprimary
     ORDER BY array_position(i.indkey::int2[], a.attnum)]], rel)
  if #rows == 0 then return nil end
  local cols = {}
  for _, r in ipairs(rows) do cols[#cols + 1] = r.attname end
  return cols
end

--- identity expressions and labels of a table's rows: its primary key, else ctid
local function identity(conn, rel, alias)
  local pk = pk_columns(conn, rel)
  local p = alias and (alias .. ".") or ""
  if not pk then return { p .. "ctid::text" }, { "ctid" } end
  local ex = {}
  for _, c in ipairs(pk) do ex[#ex + 1] = p .. qi(c) end
  return ex, pk
end

local function decode_key(text)
  local v = json.decode(text)
  return type(v) == "table" and v or {}
end

-- one check per kind: fills c (status, violations, samples, summary, advice, sql)

local CHECKS = {}

CHECKS.unique = function(R, conn, c, e, flags)
  local exprs, labels = {}, {}
  for _, col in ipairs(e.columns or {}) do
    if type(col) == "string" then
      exprs[#exprs + 1] = qi(col); labels[#labels + 1] = col
    elseif type(col) == "table" and col.expr and col.expr ~= "" then
      exprs[#exprs + 1] = "(" .. col.expr .. ")"; labels[#labels + 1] = col.expr
    else
      return nil, "an index element could not be read from the statement"
    end
  end
  if #exprs == 0 then return nil, "no key columns" end
  local primary = e.kind == "constraint" and e.contype == "p" or e.primary
  local nnd = primary or (e.kind == "index" and flags.index_nnd) or (e.kind == "constraint" and
    (flags.nulls_not_distinct[e.name] or flags.nulls_not_distinct["?"]))
  local conds = {}
  if e.predicate then conds[#conds + 1] = "(" .. e.predicate .. ")" end
  if not nnd then for _, x in ipairs(exprs) do conds[#conds + 1] = x .. " IS NOT NULL" end end
  if primary then for _, x in ipairs(exprs) do conds[#conds + 1] = x .. " IS NOT NULL" end end
  local where = #conds > 0 and (" WHERE " .. table.concat(conds, " AND ")) or ""
  local keys = table.concat(exprs, ", ")
  local groups_sql = ("SELECT count(*) AS n FROM %s%s GROUP BY %s HAVING count(*) > 1"):format(c.rel, where, keys)
  c.sql = ("SELECT count(*) AS groups, coalesce(sum(n), 0) AS rows FROM (%s) g"):format(groups_sql)
  local r = query(conn, c.sql)[1]
  c.groups, c.violations = tonumber(r.groups) or 0, tonumber(r.rows) or 0
  c.columns, c.where, c.nulls_distinct = labels, e.predicate, not nnd
  local nulls = 0
  if primary then
    local nc = {}
    for _, x in ipairs(exprs) do nc[#nc + 1] = x .. " IS NULL" end
    nulls = tonumber(query(conn, ("SELECT count(*) AS n FROM %s WHERE %s"):format(c.rel, table.concat(nc, " OR ")))[1].n) or 0
    c.null_rows = nulls
  end
  c.samples = {}
  if c.groups > 0 then
    local rows = query(conn, ("SELECT json_build_array(%s)::text AS key, count(*) AS n FROM %s%s GROUP BY %s HAVING count(*) > 1 ORDER BY count(*) DESC, 1 LIMIT %d"):format(
      keys, c.rel, where, keys, R.samples))
    for _, row in ipairs(rows) do
      local vals = decode_key(row.key)
      local n = tonumber(row.n)
      c.samples[#c.samples + 1] = { key = vals, rows = n, text = ("%d rows share %s"):format(n, key_text(labels, vals)) }
    end
  end
  if c.groups == 0 and nulls == 0 then
    c.status = "holds"
    c.summary = ("no two rows of \"%s\" share (%s)%s"):format(e.table, table.concat(labels, ", "), e.predicate and (" where " .. e.predicate) or "")
    return true
  end
  c.status = "violated"
  local texts = {}
  for _, s in ipairs(c.samples) do texts[#texts + 1] = s.text end
  local parts = {}
  if c.groups > 0 then
    if c.groups == 1 then
      parts[#parts + 1] = ("\"%s\": %s"):format(e.table, texts[1])
    else
      parts[#parts + 1] = ("\"%s\": %d duplicate groups (%d rows) of (%s)%s: %s%s"):format(e.table, c.groups, c.violations,
        table.concat(labels, ", "), e.predicate and (" where " .. e.predicate) or "", table.concat(texts, "; "),
        c.groups > #texts and "; ..." or "")
    end
  end
  if nulls > 0 then
    parts[#parts + 1] = ("%d %s of \"%s\" %s NULL in the primary key"):format(nulls, plural(nulls, "row"), e.table, nulls == 1 and "has" or "have")
  end
  c.violations = c.violations + nulls
  c.summary = table.concat(parts, "; ")
  c.advice = c.groups > 0 and "remove or merge them" or "set the key of those rows, or delete them"
  return true
end

local function sample_rows(R, conn, c, where, extra_label, extra_expr)
  local ids, labels = identity(conn, c.rel)
  local cols = {}
  for _, x in ipairs(ids) do cols[#cols + 1] = x end
  if extra_expr then cols[#cols + 1] = extra_expr end
  local rows = query(conn, ("SELECT json_build_array(%s)::text AS key FROM %s WHERE %s LIMIT %d"):format(
    table.concat(cols, ", "), c.rel, where, R.samples))
  local out = {}
  for _, row in ipairs(rows) do
    local vals = decode_key(row.key)
    local idv = {}
    for i = 1, #labels do idv[i] = vals[i] end
    local text = key_text(labels, idv)
    if extra_label then text = text .. (" (%s)"):format(key_text(extra_label, { vals[#labels + 1] })) end
    out[#out + 1] = { key = idv, text = text }
  end
  return out
end

local function sample_list(c)
  local t = {}
  for _, s in ipairs(c.samples or {}) do t[#t + 1] = s.text end
  local more = (c.violations or 0) > #t and ", ..." or ""
  return #t > 0 and (" (" .. table.concat(t, "; ") .. more .. ")") or ""
end

CHECKS.not_null = function(R, conn, c, e)
  local cols = e.kind == "column" and { e.name } or e.columns or {}
  if #cols == 0 then return nil, "no columns" end
  local conds = {}
  for _, col in ipairs(cols) do conds[#conds + 1] = qi(col) .. " IS NULL" end
  local where = table.concat(conds, " OR ")
  c.columns = cols
  c.sql = ("SELECT count(*) AS n FROM %s WHERE %s"):format(c.rel, where)
  c.violations = tonumber(query(conn, c.sql)[1].n) or 0
  local names = {}
  for _, col in ipairs(cols) do names[#names + 1] = ("\"%s\""):format(col) end
  if c.violations == 0 then
    c.status, c.samples = "holds", {}
    c.summary = ("no row of \"%s\" has NULL in %s"):format(e.table, table.concat(names, ", "))
    return true
  end
  c.status = "violated"
  c.samples = sample_rows(R, conn, c, where)
  c.summary = ("%d %s of \"%s\" %s NULL in %s%s"):format(c.violations, plural(c.violations, "row"), e.table,
    c.violations == 1 and "has" or "have", table.concat(names, ", "), sample_list(c))
  c.advice = "set a value in them or delete them"
  return true
end

CHECKS.new_not_null = function(R, conn, c, e)
  c.kind, c.columns = "new_not_null", { e.name }
  c.sql = ("SELECT count(*) AS n FROM %s"):format(c.rel)
  c.violations = tonumber(query(conn, c.sql)[1].n) or 0
  if c.violations == 0 then
    c.status, c.samples = "holds", {}
    c.summary = ("\"%s\" has no rows, so the new NOT NULL column \"%s\" without a DEFAULT can be added"):format(e.table, e.name)
    return true
  end
  c.status = "violated"
  c.samples = sample_rows(R, conn, c, "true")
  c.summary = ("%d existing %s of \"%s\" would get NULL in the new NOT NULL column \"%s\" (it has no DEFAULT)%s"):format(
    c.violations, plural(c.violations, "row"), e.table, e.name, sample_list(c))
  c.advice = "give the column a DEFAULT, or add it nullable, backfill it and SET NOT NULL in a later migration"
  return true
end

CHECKS.foreign_key = function(R, conn, c, e, flags)
  local cols = e.columns or {}
  local pschema = e.ref_schema or R.schema
  local prel = qi(pschema) .. "." .. qi(e.ref_table)
  local pcols = e.ref_columns
  if not pcols or #pcols == 0 then
    pcols = pk_columns(conn, prel)
    if not pcols then return nil, ("\"%s\" has no primary key for the reference to use"):format(e.ref_table) end
  end
  if #cols == 0 or #cols ~= #pcols then return nil, "the referencing and referenced columns do not pair up" end
  local eq, nn, anynull, allnull = {}, {}, {}, {}
  for i, col in ipairs(cols) do
    eq[#eq + 1] = ("p.%s = c.%s"):format(qi(pcols[i]), qi(col))
    nn[#nn + 1] = ("c.%s IS NOT NULL"):format(qi(col))
    anynull[#anynull + 1] = ("c.%s IS NULL"):format(qi(col))
    allnull[#allnull + 1] = ("c.%s IS NULL"):format(qi(col))
  end
  local orphan = ("(%s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s))"):format(table.concat(nn, " AND "), prel, table.concat(eq, " AND "))
  if flags.match_full[e.name] and #cols > 1 then
    orphan = ("(%s OR ((%s) AND NOT (%s)))"):format(orphan, table.concat(anynull, " OR "), table.concat(allnull, " AND "))
  end
  c.columns, c.references = cols, { schema = pschema, table = e.ref_table, columns = pcols }
  c.sql = ("SELECT count(*) AS n FROM %s c WHERE %s"):format(c.rel, orphan)
  c.violations = tonumber(query(conn, c.sql)[1].n) or 0
  local fk = {}
  for _, col in ipairs(cols) do fk[#fk + 1] = ("\"%s\""):format(col) end
  if c.violations == 0 then
    c.status, c.samples = "holds", {}
    c.summary = ("every row of \"%s\" with %s set has its row in \"%s\""):format(e.table, table.concat(fk, ", "), e.ref_table)
    return true
  end
  c.status = "violated"
  local ids, labels = identity(conn, c.rel, "c")
  local sel = {}
  for _, x in ipairs(ids) do sel[#sel + 1] = x end
  for _, col in ipairs(cols) do sel[#sel + 1] = "c." .. qi(col) end
  local rows = query(conn, ("SELECT json_build_array(%s)::text AS key FROM %s c WHERE %s LIMIT %d"):format(
    table.concat(sel, ", "), c.rel, orphan, R.samples))
  c.samples = {}
  for _, row in ipairs(rows) do
    local vals = decode_key(row.key)
    local idv, refv = {}, {}
    for i = 1, #labels do idv[i] = vals[i] end
    for i = 1, #cols do refv[i] = vals[#labels + i] end
    c.samples[#c.samples + 1] = { key = idv, value = refv,
                                  text = ("%s in the row %s"):format(key_text(cols, refv), key_text(labels, idv)) }
  end
  c.summary = ("%d %s of \"%s\" %s no row in \"%s\"%s"):format(c.violations, plural(c.violations, "row"), e.table,
    c.violations == 1 and "references" or "reference", e.ref_table, sample_list(c))
  c.advice = ("delete them, set %s to NULL, or insert the missing rows into \"%s\""):format(table.concat(fk, ", "), e.ref_table)
  return true
end

CHECKS.check = function(R, conn, c, e)
  if not e.expr or e.expr == "" then return nil, "the CHECK expression could not be read from the statement" end
  local where = ("(%s) IS FALSE"):format(e.expr)
  c.expr = e.expr
  c.sql = ("SELECT count(*) AS n FROM %s WHERE %s"):format(c.rel, where)
  c.violations = tonumber(query(conn, c.sql)[1].n) or 0
  if c.violations == 0 then
    c.status, c.samples = "holds", {}
    c.summary = ("every row of \"%s\" satisfies CHECK (%s)"):format(e.table, e.expr)
    return true
  end
  c.status = "violated"
  c.samples = sample_rows(R, conn, c, where)
  c.summary = ("%d %s of \"%s\" %s CHECK (%s)%s"):format(c.violations, plural(c.violations, "row"), e.table,
    c.violations == 1 and "violates" or "violate", e.expr, sample_list(c))
  c.advice = "fix those rows (or the expression)"
  return true
end

CHECKS.cast = function(R, conn, c, e, _, stmt)
  local col, typ = e.name, e.set.type
  local using = using_text(stmt.text, col)
  local expr = using or qi(col)
  c.columns, c.type, c.using = { col }, typ, using
  local ids, labels = identity(conn, c.rel)
  local body = ([[
#variable_conflict use_column
DECLARE _mf_v %s; _mf_r record; _mf_n bigint := 0; _mf_seen bigint := 0; _mf_s jsonb := '[]'; _mf_err text; _mf_ok boolean := true;
BEGIN
  BEGIN
    FOR _mf_r IN SELECT (%s) AS x FROM %s LOOP _mf_v := _mf_r.x; END LOOP;
  EXCEPTION WHEN data_exception THEN _mf_ok := false;
  END;
  IF NOT _mf_ok THEN
    FOR _mf_r IN SELECT ctid AS tid, json_build_array(%s)::text AS k, (%s)::text AS old FROM %s LOOP
      _mf_seen := _mf_seen + 1;
      BEGIN
        SELECT (%s) INTO _mf_v FROM %s WHERE ctid = _mf_r.tid;
      EXCEPTION WHEN data_exception THEN
        _mf_n := _mf_n + 1;
        IF _mf_n <= %d THEN _mf_s := _mf_s || jsonb_build_array(jsonb_build_object('key', _mf_r.k, 'old', _mf_r.old, 'sqlstate', SQLSTATE, 'error', SQLERRM)); END IF;
        IF _mf_n >= %d THEN EXIT; END IF;
      END;
    END LOOP;
  END IF;
  PERFORM set_config('migfix.datacheck', jsonb_build_object('rows', _mf_n, 'capped', _mf_n >= %d, 'samples', _mf_s)::text, true);
END]]):format(typ, expr, c.rel, table.concat(ids, ", "), qi(col), c.rel, expr, c.rel, R.samples, M.CAST_CAP, M.CAST_CAP)
  local tag = "$mf$"
  while body:find(tag, 1, true) do tag = "$mf" .. tostring(math.random(1000, 9999)) .. "$" end
  c.sql = "DO " .. tag .. body .. tag
  local ok, err, info = conn:exec(c.sql)
  if not ok then error({ datacheck = true, message = err, info = info or {} }, 0) end
  local res = json.decode(query(conn, "SELECT current_setting('migfix.datacheck', true) AS r")[1].r or "{}") or {}
  c.violations, c.capped = tonumber(res.rows) or 0, res.capped == true
  c.samples = {}
  for _, s in ipairs(res.samples or {}) do
    local idv = decode_key(s.key)
    c.samples[#c.samples + 1] = { key = idv, value = s.old, sqlstate = s.sqlstate, error = s.error,
      text = ("%s: %s = %s (%s)"):format(key_text(labels, idv), col, value_text(s.old), tostring(s.error)) }
  end
  local what = using and ("USING %s"):format(using) or ("the conversion of \"%s\""):format(col)
  if c.violations == 0 then
    c.status = "holds"
    c.summary = ("%s to %s succeeds for every row of \"%s\""):format(what, typ, e.table)
    return true
  end
  c.status = "violated"
  c.summary = ("%s%d %s of \"%s\" cannot be converted to %s by %s%s"):format(c.capped and "at least " or "", c.violations,
    plural(c.violations, "row"), e.table, typ, what, sample_list(c))
  c.advice = "fix those values (or the USING expression)"
  return true
end

local function check_one(R, e, kind, unit, created)
  local stmt = unit.statements[e.stmt] or {}
  local schema = e.schema or R.schema
  if kind == "not_null" and e.kind == "column" and e.action == "create" then kind = "new_not_null" end
  local c = { kind = kind, statement = e.stmt, line = e.line or stmt.line, schema = schema, table = e.table,
              name = (e.kind ~= "column") and e.name or nil, rel = qi(schema) .. "." .. qi(e.table) }
  local cols = {}
  for _, col in ipairs(e.columns or {}) do if type(col) == "string" then cols[#cols + 1] = col end end
  if e.kind == "column" then cols[#cols + 1] = e.name end
  local why = earlier_change(unit, e, cols)
  if e.ref_table and created[(e.ref_schema or "") .. "." .. e.ref_table] then
    why = ("\"%s\" is created by the same file"):format(e.ref_table)
  end
  if why then
    c.status, c.reason = "unknown", why
    return c
  end
  local t0 = os.clock()
  local ok, done, why2 = pcall(in_readonly, R, function(conn)
    return CHECKS[kind](R, conn, c, e, R.flags[e.stmt] or {}, stmt)
  end)
  c.ms = math.floor((os.clock() - t0) * 1000 + 0.5)
  if not ok then
    c.status, c.reason, c.check_sqlstate = "unknown", failure_reason(R, done)
  elseif not done then
    c.status, c.reason = "unknown", tostring(why2 or "the precondition could not be derived from the statement")
  end
  c.rel = nil
  return c
end

---The data evidence of one failed migration (docs/policies.md "Evidence").
---@param conn userdata a connection (checks run in their own READ ONLY transaction; when it is inside a transaction, o.connect() gives another)
---@param d table a diagnose record
---@param o {schema: string, timeout_ms: integer?, samples: integer?, connect: function?}
---@return table data
function M.check(conn, d, o)
  o = o or {}
  for k in pairs(o) do
    if not KNOWN_OPTS[k] then
      error(("bad option \"%s\" to 'check' (expected datacheck.check(conn, d, {schema=, timeout_ms=, samples=, connect=}))"):format(tostring(k)), 2)
    end
  end
  local err = d.error or {}
  local data = { sqlstate = err.sqlstate, checks = {} }
  if err.class ~= "data" then
    data.status, data.reason = "not_applicable", "the recorded error is not a data error"
    return data
  end
  local kind = kind_of(err.sqlstate)
  if not kind then
    data.status, data.reason = "unknown", ("no data check is known for SQLSTATE %s"):format(tostring(err.sqlstate))
    return data
  end
  data.kind = kind
  if not d.unit then
    data.status, data.reason = "unknown", "no local migration.sql to derive the precondition from"
    return data
  end
  local created = {}
  for _, e in ipairs(d.unit.effects or {}) do
    if e.kind == "table" and e.action == "create" then created[(e.schema or "") .. "." .. e.name] = true end
  end
  local cands = candidates(d.unit, kind, created)
  local narrowed = false
  -- conversion errors name the value, not the column: every ALTER ... TYPE is checked
  if kind ~= "cast" then cands, narrowed = narrow(cands, err) end
  if #cands == 0 then
    data.status = "unknown"
    data.reason = narrowed and "no statement of the file matches the object the error names"
      or "no statement of the file is of the kind that raises this error on existing rows"
    return data
  end
  local R, no_reader = reader(conn, o, o.schema or "public")
  if not R then
    data.status, data.reason = "unknown", no_reader
    return data
  end
  R.samples, R.flags = o.samples or M.SAMPLES, {}
  data.timeout_ms = R.timeout_ms
  for _, e in ipairs(cands) do
    if not R.flags[e.stmt] then R.flags[e.stmt] = tree_flags(d.unit.statements[e.stmt].text) end
    data.checks[#data.checks + 1] = check_one(R, e, kind, d.unit, created)
  end
  -- one violated check is enough to refuse; all must hold to say it holds
  local status, n = "holds", 0
  local lines, advice, reasons = {}, {}, {}
  for _, c in ipairs(data.checks) do
    if c.status == "violated" then
      status = "violated"
      n = n + (c.violations or 0)
      lines[#lines + 1] = c.summary
      if c.advice then advice[#advice + 1] = c.advice end
    elseif c.status == "unknown" and status ~= "violated" then
      status = "unknown"
      reasons[#reasons + 1] = ("statement %d: %s"):format(c.statement, c.reason)
    end
  end
  data.status = status
  if status == "violated" then
    data.violations = n
    data.summary = table.concat(lines, "; ")
    data.advice = advice[1]
  elseif status == "holds" then
    data.violations = 0
    local t = {}
    for _, c in ipairs(data.checks) do t[#t + 1] = c.summary end
    data.summary = table.concat(t, "; ")
  else
    data.reason = table.concat(reasons, "; ")
  end
  return data
end

-- ------------------------------------------------------------------ fixed points of data statements

--- A data statement (UPDATE, DELETE, INSERT) leaves the rows in a state the
--- catalog does not show. Its fixed point can be read from the rows: an
--- UPDATE has run when no row it selects still differs from what it sets, a
--- DELETE when no row it selects is left, an INSERT when every row it would
--- insert is there. `fixpoints` counts, read-only, the rows that would still
--- change. Only statements whose meaning does not move with time are read:
--- every function immutable, no DEFAULT, no sequence, no CTE, no trigger on
--- the target, no later statement of the file touching a table it reads or
--- writes. Anything else stays unverifiable (docs/effects.md "Data").

local FP_VERBS = { UpdateStmt = "UPDATE", DeleteStmt = "DELETE", InsertStmt = "INSERT" }
-- nodes whose value is not a function of the rows: the statement is not read
local FP_REFUSE = {
  SQLValueFunction = "it reads the clock or the session (CURRENT_TIMESTAMP, CURRENT_USER, ...)",
  SetToDefault = "it sets a column's DEFAULT, which the rows cannot be compared with",
  MultiAssignRef = "it sets several columns from one row expression",
  ParamRef = "it has a parameter",
  CurrentOfExpr = "it uses WHERE CURRENT OF",
  NextValueExpr = "it draws from a sequence",
  RangeFunction = "it reads rows from a function",
}

local function fp_name(s, t)
  if t.t == "qident" then return (s:sub(t.s + 1, t.e - 1):gsub('""', '"')) end
  return t.w
end

--- the tree's facts: function names, referenced tables, the first refusal
local function fp_walk(node, acc)
  if type(node) ~= "table" then return end
  for k, v in pairs(node) do
    if type(k) == "string" and FP_REFUSE[k] and not acc.refuse then acc.refuse = FP_REFUSE[k] end
    if k == "FuncCall" and type(v) == "table" then
      local parts = {}
      for _, s in ipairs(v.funcname or {}) do parts[#parts + 1] = s.String and (s.String.sval or s.String.str) end
      if #parts > 0 then acc.funcs[parts[#parts]] = true end
      if v.over and not acc.refuse then acc.refuse = "it uses a window function" end
    elseif k == "RangeVar" and type(v) == "table" and v.relname then
      acc.tables[#acc.tables + 1] = { schema = v.schemaname, name = v.relname }
    elseif (k == "withClause" or k == "intoClause") and v and not acc.refuse then
      acc.refuse = k == "withClause" and "it has a WITH clause" or "it creates a table"
    elseif k == "lockingClause" and v and not acc.refuse then
      acc.refuse = "it locks rows (FOR UPDATE)"
    end
    if type(v) == "table" then fp_walk(v, acc) end
  end
end

--- tokens at depth 0 of s between token indexes a and b (inclusive): the source text
local function fp_text(s, toks, a, b)
  if not toks[a] or not toks[b] or b < a then return nil end
  return s:sub(toks[a].s, toks[b].e)
end

--- depth-0 clause keywords of an UPDATE/DELETE/INSERT: name -> token index
local function fp_clauses(toks)
  local at, depth = {}, 0
  for k, t in ipairs(toks) do
    if t.t == "(" or t.t == "[" then depth = depth + 1
    elseif t.t == ")" or t.t == "]" then depth = depth - 1
    elseif depth == 0 and t.t == "word" then
      local prev = toks[k - 1]
      local w = t.w
      if w == "from" and prev and prev.t == "word" and prev.w == "distinct" then w = nil end
      if w and (w == "set" or w == "from" or w == "where" or w == "returning" or w == "using"
        or w == "values" or w == "select" or w == "overriding" or w == "default") and not at[w] then
        at[w] = k
      end
      if w == "on" and toks[k + 1] and toks[k + 1].t == "word" and toks[k + 1].w == "conflict" and not at.on_conflict then
        at.on_conflict = k
      end
    end
  end
  return at
end

--- the first of the clause indexes after k (or #toks + 1)
local function fp_next(at, k, n, names)
  local best = n + 1
  for _, nm in ipairs(names) do
    local i = at[nm]
    if i and i > k and i < best then best = i end
  end
  return best
end

--- depth-0 comma-separated parts of tokens a..b: list of {a, b}
local function fp_split(toks, a, b)
  local parts, depth, st = {}, 0, a
  for k = a, b do
    local t = toks[k]
    if t.t == "(" or t.t == "[" then depth = depth + 1
    elseif t.t == ")" or t.t == "]" then depth = depth - 1
    elseif depth == 0 and t.t == "," then parts[#parts + 1] = { st, k - 1 }; st = k + 1 end
  end
  parts[#parts + 1] = { st, b }
  return parts
end

local function strip_semicolon(toks)
  while toks[#toks] and toks[#toks].t == ";" do toks[#toks] = nil end
  return toks
end

--- the target relation as SQL, and the key of its snapshot entry
local function fp_target(rv, schema)
  local s = rv.schemaname or schema
  local rel = (rv.inh == false and "ONLY " or "") .. qi(s) .. "." .. qi(rv.relname)
  local alias = rv.alias and rv.alias.aliasname
  return rel .. (alias and (" AS " .. qi(alias)) or ""), s .. "." .. rv.relname, alias or rv.relname
end

--- Derive the fixed-point query of statement s (or nil, why).
local function fp_query(s, node, kind, tbl, schema)
  local toks = strip_semicolon(lex(s.text))
  local at = fp_clauses(toks)
  local n = #toks
  local target, _, ref = fp_target(node.relation, schema)
  if kind == "DeleteStmt" then
    local from = {}
    if at.using then
      local b = fp_next(at, at.using, n, { "where", "returning" }) - 1
      from[#from + 1] = fp_text(s.text, toks, at.using + 1, b)
      if not from[1] then return nil, "its USING list could not be read" end
    end
    local where
    if node.whereClause then
      if not at.where then return nil, "its WHERE clause could not be read" end
      where = fp_text(s.text, toks, at.where + 1, fp_next(at, at.where, n, { "returning" }) - 1)
      if not where then return nil, "its WHERE clause could not be read" end
    end
    return ("SELECT count(*) AS n FROM %s%s%s"):format(target,
      from[1] and (", " .. from[1]) or "", where and (" WHERE (" .. where .. ")") or ""),
      "%d %s it deletes %s still there", "no row it deletes is left"
  elseif kind == "UpdateStmt" then
    if not at.set then return nil, "its SET list could not be read" end
    local set_end = fp_next(at, at.set, n, { "from", "where", "returning" }) - 1
    local parts = fp_split(toks, at.set + 1, set_end)
    local targets = node.targetList or {}
    if #parts ~= #targets then return nil, "its SET list could not be read" end
    local conds = {}
    for i, p in ipairs(parts) do
      local rt = targets[i].ResTarget or {}
      local t1, t2 = toks[p[1]], toks[p[1] + 1]
      if rt.indirection or not t1 or (t1.t ~= "word" and t1.t ~= "qident") or not t2
        or t2.t ~= "op" or s.text:sub(t2.s, t2.e) ~= "=" then
        return nil, "it sets part of a column (a field or an array element)"
      end
      if fp_name(s.text, t1) ~= rt.name then
        return nil, "its SET list could not be read"
      end
      local col = tbl.columns[rt.name]
      if not col or not col.type then return nil, ("column \"%s\" is not in the catalog"):format(rt.name) end
      if col.generated then return nil, ("column \"%s\" is generated"):format(rt.name) end
      local expr = fp_text(s.text, toks, p[1] + 2, p[2])
      if not expr then return nil, "its SET list could not be read" end
      conds[#conds + 1] = ("%s.%s IS NOT DISTINCT FROM CAST((%s) AS %s)"):format(qi(ref), qi(rt.name), expr, col.type)
    end
    local from
    if node.fromClause then
      if not at.from then return nil, "its FROM list could not be read" end
      from = fp_text(s.text, toks, at.from + 1, fp_next(at, at.from, n, { "where", "returning" }) - 1)
      if not from then return nil, "its FROM list could not be read" end
    end
    local where
    if node.whereClause then
      if not at.where then return nil, "its WHERE clause could not be read" end
      where = fp_text(s.text, toks, at.where + 1, fp_next(at, at.where, n, { "returning" }) - 1)
      if not where then return nil, "its WHERE clause could not be read" end
    end
    return ("SELECT count(*) AS n FROM %s%s WHERE %sNOT (%s)"):format(target, from and (", " .. from) or "",
      where and ("(" .. where .. ") AND ") or "", table.concat(conds, " AND ")),
      "%d %s it selects %s not what it sets", "no row it selects differs from what it sets"
  else -- InsertStmt
    if node.onConflictClause and node.onConflictClause.action ~= "ONCONFLICT_NOTHING" then
      return nil, "it updates rows ON CONFLICT"
    end
    if at.overriding then return nil, "it overrides an identity column" end
    local sel = node.selectStmt and node.selectStmt.SelectStmt
    if not sel then return nil, "it inserts DEFAULT VALUES" end
    local src_a = at.values or at.select
    if at.values and at.select then src_a = math.min(at.values, at.select) end
    if not src_a then return nil, "its source rows could not be read" end
    local src_b = fp_next(at, src_a, n, { "on_conflict", "returning" }) - 1
    local src = fp_text(s.text, toks, src_a, src_b)
    if not src then return nil, "its source rows could not be read" end
    local width
    if sel.valuesLists then
      local first = sel.valuesLists[1]
      width = first and first.List and #(first.List.items or {}) or nil
    elseif sel.targetList then
      width = #sel.targetList
      for _, rt in ipairs(sel.targetList) do
        local v = rt.ResTarget and rt.ResTarget.val
        if v and v.ColumnRef and v.ColumnRef.fields then
          for _, f in ipairs(v.ColumnRef.fields) do
            if f.A_Star then return nil, "it inserts SELECT *" end
          end
        end
      end
    end
    if not width or width == 0 then return nil, "its source rows could not be read" end
    local cols = {}
    if node.cols then
      for _, c in ipairs(node.cols) do
        local rt = c.ResTarget or {}
        if rt.indirection then return nil, "it inserts into part of a column" end
        cols[#cols + 1] = rt.name
      end
    else
      for _, name in ipairs(tbl.column_order or {}) do
        if #cols < width then cols[#cols + 1] = name end
      end
    end
    if #cols ~= width then return nil, "its column list could not be matched with its rows" end
    -- columns whose value is drawn anew on every run cannot be matched
    local volatile_cols = {}
    if sel.valuesLists then
      for _, row in ipairs(sel.valuesLists) do
        for i, item in ipairs(row.List and row.List.items or {}) do
          local acc = { funcs = {}, tables = {} }
          fp_walk({ item }, acc)
          if next(acc.funcs) then volatile_cols[i] = acc.funcs end
        end
      end
    else
      for i, rt in ipairs(sel.targetList) do
        local acc = { funcs = {}, tables = {} }
        fp_walk({ rt }, acc)
        if next(acc.funcs) then volatile_cols[i] = acc.funcs end
      end
    end
    local names, conds = {}, {}
    for i, c in ipairs(cols) do
      local col = tbl.columns[c]
      if not col or not col.type then return nil, ("column \"%s\" is not in the catalog"):format(c) end
      names[i] = qi("c" .. i)
      if not volatile_cols[i] then
        conds[#conds + 1] = ("t.%s IS NOT DISTINCT FROM CAST(v.%s AS %s)"):format(qi(c), names[i], col.type)
      end
    end
    return ("SELECT count(*) AS n FROM (%s) AS v(%s) WHERE NOT EXISTS (SELECT 1 FROM %s AS t WHERE %s)"):format(
      src, table.concat(names, ", "), fp_target({ schemaname = node.relation.schemaname, relname = node.relation.relname,
        inh = node.relation.inh }, schema), #conds > 0 and table.concat(conds, " AND ") or "true"),
      "%d %s it inserts %s not there", "every row it inserts is there", volatile_cols, #conds, cols
  end
end

--- Whether a later statement of the file changes what this one's fixed
--- point reads: the tables it reads or writes, the columns it names. On the
--- target itself a later DELETE (rows only go), a later UPDATE of other
--- columns, and DDL that leaves the named columns' values alone (indexes,
--- constraints, triggers, comments, new columns, NOT NULL, defaults) do not
--- move an UPDATE's or DELETE's fixed point; anything else does.
local FP_HARMLESS = { VariableSetStmt = true, VariableShowStmt = true, CommentStmt = true }
local FP_DDL_OK = { index = true, constraint = true, trigger = true, comment = true }

--- column names a statement names (ColumnRef's last field, SET targets, INSERT columns)
local function fp_columns(node, out)
  out = out or {}
  if type(node) ~= "table" then return out end
  if node.ColumnRef and node.ColumnRef.fields then
    local f = node.ColumnRef.fields
    local last = f[#f]
    if last and last.String then out[last.String.sval or last.String.str] = true end
  end
  if node.ResTarget and node.ResTarget.name then out[node.ResTarget.name] = true end
  for _, v in pairs(node) do if type(v) == "table" then fp_columns(v, out) end end
  return out
end

local function fp_later(unit, idx, kind, target, tables, refcols, schema)
  local set = {}
  for _, t in ipairs(tables) do set[(t.schema or schema) .. "." .. t.name] = true end
  local tkey = (target.schema or schema) .. "." .. target.name
  local later_kind = {}
  for _, st in ipairs(unit.statements or {}) do later_kind[st.index] = st end
  for _, e in ipairs(unit.effects or {}) do
    if e.stmt and e.stmt > idx then
      local sch = e.schema or schema
      local key = (e.table and (sch .. "." .. e.table)) or ((e.kind == "table" or e.kind == "view" or e.kind == "matview")
        and e.name and (sch .. "." .. e.name)) or nil
      local hit = (key and set[key]) or (e.new_name and set[sch .. "." .. e.new_name])
      if hit and key == tkey and kind ~= "InsertStmt" then
        local st = later_kind[e.stmt] or {}
        if e.kind == "data" and st.kind == "DeleteStmt" then
          hit = false
        elseif e.kind == "data" and st.kind == "UpdateStmt" then
          local tree = sql.parse(st.text)
          local node = tree and tree.stmts and tree.stmts[1] and tree.stmts[1].stmt and tree.stmts[1].stmt.UpdateStmt
          if node then
            hit = false
            for _, rt in ipairs(node.targetList or {}) do
              local n = rt.ResTarget and rt.ResTarget.name
              if not n or refcols[n] then hit = true end
            end
          end
        elseif FP_DDL_OK[e.kind] and e.action ~= "rename" then
          hit = false
        elseif e.kind == "column" and not refcols[e.name] and e.action ~= "rename" then
          hit = false
        elseif e.kind == "column" and e.action == "alter" and type(e.set) == "table" and e.set.type == nil then
          hit = false
        end
      end
      if hit then
        return ("statement %d (line %s) changes \"%s\" afterwards: the rows now are not the rows this statement left"):format(
          e.stmt, tostring(e.line or "?"), e.table or e.name or e.new_name)
      end
      if e.action == "unverifiable" and e.kind ~= "data" and not FP_HARMLESS[e.node or ""] then
        return ("statement %d (line %s) runs afterwards and what it changes cannot be read"):format(e.stmt, tostring(e.line or "?"))
      end
    end
  end
  return nil
end

---Read-only fixed-point checks of a file's data statements.
---@param conn userdata a connection, not inside a transaction (o.connect gives another otherwise)
---@param unit table from migfix.effects.analyze
---@param snap table the catalog snapshot (the target tables and their triggers)
---@param o {schema: string, timeout_ms: integer?, connect: function?}
---@return table by statement index: { state = "done"|"not_done"|"unknown", verb, table, schema,
---        rows, sql, summary, reason }
function M.fixpoints(conn, unit, snap, o)
  o = o or {}
  local schema = o.schema or "public"
  local out, plans = {}, {}
  local temp, in_do = {}, {}
  for _, e in ipairs(unit.effects or {}) do
    if e.kind == "data" and e.stmt then
      if e.temp then temp[e.stmt] = true end
      if e.in_do then in_do[e.stmt] = true end
    end
  end
  for _, s in ipairs(unit.statements or {}) do
    local verb = FP_VERBS[s.kind]
    if verb and not temp[s.index] and not in_do[s.index] then
      local r = { verb = verb, state = "unknown" }
      out[s.index] = r
      local tree = sql.parse(s.text)
      local st = tree and tree.stmts and #tree.stmts == 1 and tree.stmts[1].stmt
      local node = st and st[s.kind]
      if not node or not node.relation then
        r.reason = "the statement could not be read again"
      else
        r.schema, r.table = node.relation.schemaname or schema, node.relation.relname
        local key = r.schema .. "." .. r.table
        local tbl = snap.tables and snap.tables[key]
        -- the target (a bare RangeVar in the tree) and every table it reads
        local acc = { funcs = {}, tables = { { schema = node.relation.schemaname, name = node.relation.relname } } }
        fp_walk(node, acc)
        local has_trigger = false
        for _, tg in pairs(snap.triggers or {}) do
          if tg.schema == r.schema and tg.table == r.table and tg.enabled ~= "D" then has_trigger = true end
        end
        -- the target read again (a self-join, a subquery over it): what it
        -- selects moves with what it wrote, re-running may change more rows
        for k = 2, #acc.tables do
          local t = acc.tables[k]
          if (t.schema or schema) == r.schema and t.name == r.table and not acc.refuse then
            acc.refuse = ("it reads \"%s\" again while writing it: what it selects moves with what it wrote"):format(r.table)
          end
        end
        -- an UPDATE whose new values read the columns it sets is not
        -- idempotent ("qty" = "qty" + 1): its rows never show a fixed point
        if s.kind == "UpdateStmt" and not acc.refuse then
          local setcols = {}
          for _, rt in ipairs(node.targetList or {}) do
            if rt.ResTarget and rt.ResTarget.name then setcols[rt.ResTarget.name] = true end
          end
          for _, rt in ipairs(node.targetList or {}) do
            local used = fp_columns(rt.ResTarget and rt.ResTarget.val or {})
            for c in pairs(used) do
              if setcols[c] and not acc.refuse then
                acc.refuse = ("the value it sets reads column \"%s\", which it also sets: running it again may change the row again"):format(c)
              end
            end
          end
        end
        if acc.refuse then r.reason = acc.refuse
        elseif not tbl or (tbl.kind ~= "r" and tbl.kind ~= "p") then
          r.reason = ("table \"%s\" is not in the catalog"):format(r.table)
        elseif tbl.locked then r.reason = ("table \"%s\" is locked by another session"):format(r.table)
        elseif has_trigger then r.reason = ("table \"%s\" has triggers, which may change what the statement wrote"):format(r.table)
        else
          local why = fp_later(unit, s.index, s.kind, acc.tables[1], acc.tables, fp_columns(node), schema)
          if why then r.reason = why
          else
            local q, not_done_text, done_text, volatile_cols, matched, cols = fp_query(s, node, s.kind, tbl, schema)
            local weak
            if q and volatile_cols and next(volatile_cols) then
              -- rows matched on some columns only: "there" counts only when
              -- those columns hold a unique key (the row cannot have been
              -- there before, or the INSERT would have failed on it)
              local compared = {}
              for i, c in ipairs(cols or {}) do if not volatile_cols[i] then compared[c] = true end end
              local keyed = false
              for _, ix in pairs(snap.indexes or {}) do
                if ix.schema == r.schema and ix.table == r.table and ix.unique and ix.valid ~= false and not ix.predicate
                  and #ix.columns > 0 then
                  local all = true
                  for _, c in ipairs(ix.columns) do if type(c) ~= "string" or not compared[c] then all = false end end
                  if all then keyed = true end
                end
              end
              if not keyed then
                local drawn = {}
                for i, c in ipairs(cols or {}) do if volatile_cols[i] then drawn[#drawn + 1] = '"' .. c .. '"' end end
                weak = ("%s drawn anew on each run, and the other columns hold no unique key: rows like these may have been there before"):format(
                  table.concat(drawn, ", ") .. (#drawn == 1 and " is" or " are"))
              end
            end
            if not q then r.reason = not_done_text
            elseif matched == 0 then r.reason = "every column it inserts is drawn anew on each run"
            else
              -- functions: those of a drawn-anew INSERT column are allowed (not compared)
              local need = {}
              for f in pairs(acc.funcs) do need[f] = true end
              for _, fs in pairs(volatile_cols or {}) do for f in pairs(fs) do need[f] = nil end end
              local check = sql.parse(q)
              if not check or not check.stmts or #check.stmts ~= 1 then
                r.reason = "the check query could not be derived from the statement"
              else
                plans[#plans + 1] = { r = r, q = q, need = need, not_done = not_done_text, done = done_text, stmt = s,
                                      weak = weak }
              end
            end
          end
        end
      end
    end
  end
  local R = plans_reader(conn, o, schema, plans)
  if not R then return out end
  for _, p in ipairs(plans) do
    local names = {}
    for f in pairs(p.need) do names[#names + 1] = f end
    table.sort(names)
    local ok, n_or_err, why = pcall(in_readonly, R, function(c)
      query(c, "SELECT set_config('row_security', 'off', true), set_config('lock_timeout', $1, true)",
        tostring(math.min(R.timeout_ms, 5000)))
      if #names > 0 then
        local rows = query(c, [[SELECT f.name, bool_and(p.provolatile = 'i') AS immutable, count(p.oid) AS n
          FROM unnest($1::text[]) AS f(name) LEFT JOIN pg_catalog.pg_proc p ON p.proname = f.name GROUP BY f.name]],
          "{" .. table.concat((function() local t = {} for i, v in ipairs(names) do t[i] = '"' .. v:gsub('[\\"]', "\\%0") .. '"' end return t end)(), ",") .. "}")
        for _, row in ipairs(rows) do
          if row.immutable == "f" then row.immutable = false end
          if tonumber(row.n) == 0 then return nil, ("function %s() is not in the catalog"):format(row.name) end
          if row.immutable ~= true and row.immutable ~= "t" then
            return nil, ("function %s() is not immutable: its result moves with time or the session"):format(row.name)
          end
        end
      end
      local rows = query(c, p.q)
      return tonumber(rows[1] and rows[1].n)
    end)
    p.r.sql = p.q
    if not ok then
      p.r.reason, p.r.check_sqlstate = failure_reason(R, n_or_err)
    elseif not n_or_err then
      p.r.reason = why or "the check gave no count"
    else
      p.r.rows = n_or_err
      if n_or_err == 0 and p.weak then
        p.r.reason = p.weak
      elseif n_or_err == 0 then
        p.r.state, p.r.summary = "done", p.done
      else
        p.r.state, p.r.summary = "not_done", p.not_done:format(n_or_err, plural(n_or_err, "row"), n_or_err == 1 and "is" or "are")
      end
    end
  end
  return out
end

-- ------------------------------------------------------------------ views

-- the query of CREATE [OR REPLACE] VIEW / CREATE MATERIALIZED VIEW text: what
-- follows the first AS at depth 0, without WITH [CASCADED|LOCAL] CHECK OPTION
-- or WITH [NO] DATA and the semicolon (nil when it cannot be told)
local function view_query(text, matview)
  local toks = lex(text)
  local depth, from = 0, nil
  for i, t in ipairs(toks) do
    if t.t == "(" then depth = depth + 1
    elseif t.t == ")" then depth = depth - 1
    elseif depth == 0 and t.t == "word" and t.w == "as" then from = i + 1 break end
  end
  if not from or not toks[from] then return nil end
  local to = #toks
  if toks[to] and toks[to].t == ";" then to = to - 1 end
  local function w(i) return toks[i] and toks[i].t == "word" and toks[i].w end
  if matview then
    if w(to) == "data" and w(to - 1) == "with" then to = to - 2
    elseif w(to) == "data" and w(to - 1) == "no" and w(to - 2) == "with" then to = to - 3 end
  elseif w(to) == "option" and w(to - 1) == "check" then
    to = to - 2
    if w(to) == "cascaded" or w(to) == "local" then to = to - 1 end
    if w(to) ~= "with" then return nil end
    to = to - 1
  end
  if to < from then return nil end
  return text:sub(toks[from].s, toks[to].e)
end
M.view_query = view_query

-- does the tree hold a `*` in a target list (its expansion follows the
-- columns the tables have when it is planned)
local function has_star(node)
  if type(node) ~= "table" then return false end
  if node.A_Star then return true end
  for _, v in pairs(node) do if has_star(v) then return true end end
  return false
end

-- the identifiers of a plan line's scan target: { text... } split on blanks
-- outside double quotes
local function words(text)
  local out, i, n = {}, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c == " " then i = i + 1
    else
      local j, q = i, false
      while j <= n do
        local d = text:sub(j, j)
        if d == '"' then q = not q elseif d == " " and not q then break end
        j = j + 1
      end
      out[#out + 1] = text:sub(i, j - 1)
      i = j
    end
  end
  return out
end

-- a plan without its range-table aliases: pg_get_viewdef renames a repeated
-- alias (u, u_1) and EXPLAIN then names the scans otherwise (u_1_1 for u_3)
-- although the query is the same. Each scan's alias (the word after its
-- relation, else the relation's own name) becomes $n in the order the scans
-- come, and so does every `alias.` qualifier: a bijection, so two plans are
-- equal after it exactly when they differ in alias names only.
local function plan_shape(lines)
  local map, n = {}, 0
  for i, line in ipairs(lines) do
    local body = not line:find("Bitmap Index Scan", 1, true)
      and (line:match("Scan using .+ on (.+)$") or line:match("Scan on (.+)$"))
    if body then
      local w = words(body)
      local alias = #w >= 2 and w[#w] or (w[1] and w[1]:match('([^.]+)$'))
      if alias then
        if not map[alias] then n = n + 1; map[alias] = "$" .. n end
        if #w >= 2 then w[#w] = map[alias] else w[2] = map[alias] end
        lines[i] = line:sub(1, #line - #body) .. table.concat(w, " ")
      end
    end
  end
  local text = "\n" .. table.concat(lines, "\n")
  for alias, to in pairs(map) do
    text = text:gsub('([^%w_$."])' .. alias:gsub("%p", "%%%0") .. "%.", function(pre) return pre .. to .. "." end)
  end
  return text
end
M.plan_shape = plan_shape

--- The queries of the views a file creates, compared with the catalog's by
--- their plans. The catalog keeps a view's query only as a rewritten tree
--- (pg_get_viewdef prints it back); the file's text and the printed one are
--- both planned, never run (EXPLAIN (VERBOSE, COSTS OFF), READ ONLY, the
--- search_path of the ledger schema, the data-check bound) and the plans
--- compared: the same plan is the file's query, another plan is another
--- query — unless the file's query says `*`, whose expansion moves with the
--- tables' columns (then unknown).
---   datacheck.viewplans(conn, unit, snap, o) -> { [stmt index] = r }
---     r = { schema, name, kind = "view"|"matview", state = "same"|"differs"|"unknown", reason }
---     o: {schema, timeout_ms, connect}
function M.viewplans(conn, unit, snap, o)
  o = o or {}
  local schema = o.schema or "public"
  local out, plans = {}, {}
  local in_do = {}
  for _, e in ipairs(unit.effects or {}) do
    if e.stmt and e.in_do then in_do[e.stmt] = true end
  end
  for _, s in ipairs(unit.statements or {}) do
    if (s.kind == "ViewStmt" or s.kind == "CreateTableAsStmt") and not in_do[s.index] then
      local tree = sql.parse(s.text)
      local st = tree and tree.stmts and #tree.stmts == 1 and tree.stmts[1].stmt
      local node = st and st[s.kind]
      local rel = node and (s.kind == "ViewStmt" and node.view or (node.into and node.into.rel))
      local matview = s.kind == "CreateTableAsStmt"
      if rel and (not matview or node.objtype == "OBJECT_MATVIEW") and rel.relpersistence ~= "t" then
        local r = { schema = rel.schemaname or schema, name = rel.relname, kind = matview and "matview" or "view",
                    state = "unknown" }
        out[s.index] = r
        local q = view_query(s.text, matview)
        local probe = q and sql.parse("SELECT * FROM (" .. q .. ") AS _migfix_view")
        if not (probe and probe.stmts and #probe.stmts == 1) then
          r.reason = "its query could not be read from the statement"
        else
          r.star = has_star(node.query)
          plans[#plans + 1] = { r = r, q = q }
        end
      end
    end
  end
  local R = plans_reader(conn, o, schema, plans)
  if not R then return out end
  local function plan(c, q)
    local rows = query(c, "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM (" .. q .. ") AS _migfix_view")
    local lines = {}
    for i, row in ipairs(rows) do lines[i] = row["QUERY PLAN"] end
    return plan_shape(lines)
  end
  for _, p in ipairs(plans) do
    local r = p.r
    local ok, res, why = pcall(in_readonly, R, function(c)
      query(c, "SELECT set_config('lock_timeout', $1, true)", tostring(math.min(R.timeout_ms, 5000)))
      local rows = query(c, [[SELECT c.relkind, pg_catalog.pg_get_viewdef(c.oid) AS def
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2]], r.schema, r.name)
      local row = rows[1]
      if not row then return nil, "not in the catalog" end
      if row.relkind ~= (r.kind == "matview" and "m" or "v") then return nil, "another kind of relation holds the name" end
      local def = tostring(row.def):gsub("%s*;%s*$", "")
      local have = plan(c, def)
      -- the file's query may name what is not there (yet): no plan, unknown
      local fok, want = pcall(plan, c, p.q)
      if not fok then
        return nil, "the file's query cannot be planned now (" .. tostring((failure_reason(R, want))) .. ")"
      end
      return want == have
    end)
    if not ok then
      r.reason = (failure_reason(R, res))
    elseif res == nil then
      r.reason = why
    elseif res then
      r.state, r.summary = "same", "its query plans as the file's does"
    elseif r.star then
      r.reason = "its query plans otherwise than the file's, whose * follows the tables' columns of now"
    else
      r.state, r.summary = "differs", "its query plans otherwise than the file's: another definition"
    end
  end
  return out
end

-- the project's settings for the checks: the ledger schema, the bound
-- (timeouts.data_check, else timeouts.statement_timeout, else 30 s) and a
-- second, read-only connection for when conn is inside a transaction
local function project_opts(ctx)
  local millis = require("migfix.config").millis
  local t = ctx:project().timeouts or {}
  local ms = millis(t.data_check) or millis(t.statement_timeout) or M.DEFAULT_TIMEOUT_MS
  return { schema = ctx:schema(), timeout_ms = ms, connect = function() return ctx:connect { readonly = true } end }
end

--- The data evidence of a diagnosis with the project's settings: the ledger
--- schema, the bound (timeouts.data_check, else timeouts.statement_timeout,
--- else 30 s) and, when conn is inside a transaction, a read-only connection.
---@param ctx table the command context
---@return table data
function M.evidence(ctx, conn, d) return M.check(conn, d, project_opts(ctx)) end

--- The fixed-point checks of a file's data statements with the project's
--- settings (the same schema, bound and second connection as `evidence`).
function M.fixpoint_evidence(ctx, conn, unit, snap) return M.fixpoints(conn, unit, snap, project_opts(ctx)) end

--- The view-query comparisons of a file with the project's settings (the
--- same schema, bound and second connection as `evidence`).
function M.viewplan_evidence(ctx, conn, unit, snap) return M.viewplans(conn, unit, snap, project_opts(ctx)) end

return M
