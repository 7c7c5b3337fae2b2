--- migfix.catalog — one-round-trip snapshot of the PostgreSQL catalog for a
--- set of schemas, in the shape described in docs/effects.md ("Catalog
--- snapshot"). The server builds one JSON document (json_build_object /
--- json_agg over pg_catalog); `from_document` turns it into keyed maps.
--- `relations` (every relkind) and `type_names` (every typtype) are the two
--- namespaces verify resolves a name in, so "not found" means "not there";
--- names compare as `name`, and the query runs with JIT off (`snapshot`).
---
--- Locks: pg_total_relation_size and the deparse functions (pg_get_expr,
--- pg_get_indexdef, pg_get_constraintdef) open the relation with ACCESS SHARE,
--- which waits behind an ACCESS EXCLUSIVE lock (a hung or concurrent
--- migration). They are skipped for a relation on which another session holds
--- or awaits ACCESS EXCLUSIVE: the table, index or constraint then has
--- `locked = true` and those fields (bytes, default, predicate, expression
--- columns, definitions) are nil. A lock taken between the check and the call
--- can still make the query wait, so callers should set lock_timeout.
-- @module migfix.catalog
local M = {}

local function quote_literal(s)
  return "'" .. tostring(s):gsub("'", "''") .. "'"
end

local function check_schemas(schemas, fname)
  if type(schemas) == "string" then schemas = { schemas } end
  if type(schemas) ~= "table" or #schemas == 0 then
    error(("bad argument #%d to '%s' (expected a non-empty list of schema names, e.g. %s(conn, {\"public\"}))")
      :format(fname == "query_text" and 1 or 2, fname, fname), 3)
  end
  for i, s in ipairs(schemas) do
    if type(s) ~= "string" or s == "" or s:find("\0", 1, true) then
      error(("bad argument to '%s' (schema name #%d must be a non-empty string)"):format(fname, i), 3)
    end
  end
  return schemas
end

-- The query. `%s` is replaced by the schema array literal.
local QUERY = [[
WITH ns AS (
  SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
  WHERE n.nspname = ANY (%s::name[])
),
want AS (@WANT@),
xlocked AS (
  SELECT DISTINCT l.relation FROM pg_catalog.pg_locks l
  WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
    AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
    AND l.pid <> pg_catalog.pg_backend_pid()
),
rels AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.relfilenode, c.reltuples,
         (c.oid IN (SELECT relation FROM xlocked)) AS locked
  FROM pg_catalog.pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND @IN(c.relname)@
)
SELECT pg_catalog.json_build_object(
  'server_version', pg_catalog.current_setting('server_version_num')::int,
  'database', pg_catalog.current_database(),
  'requested', pg_catalog.to_json(%s::text[]),
  'names', @NAMELIST@,
  'schemas', (SELECT coalesce(pg_catalog.json_agg(ns.nspname ORDER BY ns.nspname), '[]') FROM ns),
  'extensions', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'name', e.extname, 'version', e.extversion, 'schema', en.nspname) ORDER BY e.extname), '[]')
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace en ON en.oid = e.extnamespace),
  'tables', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', r.nspname, 'name', r.relname, 'kind', r.relkind, 'oid', r.oid::int8,
        'relfilenode', r.relfilenode::int8, 'reltuples', r.reltuples,
        'bytes', CASE WHEN r.locked THEN NULL ELSE pg_catalog.pg_total_relation_size(r.oid) END,
        'locked', r.locked,
        'columns', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
              'name', a.attname,
              'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
              'not_null', a.attnotnull,
              'has_default', ad.oid IS NOT NULL,
              'default', CASE WHEN NOT r.locked THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END,
              'identity', nullif(a.attidentity, ''),
              'generated', nullif(a.attgenerated, ''),
              'position', a.attnum) ORDER BY a.attnum), '[]')
            FROM pg_catalog.pg_attribute a
            LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped)
      ) ORDER BY r.nspname, r.relname), '[]') FROM rels r),
  'relations', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', c.relname, 'kind', c.relkind, 'persistence', c.relpersistence,
        'comment', pg_catalog.obj_description(c.oid, 'pg_class')
      ) ORDER BY n.nspname, c.relname), '[]')
      FROM pg_catalog.pg_class c JOIN ns n ON n.oid = c.relnamespace
      WHERE @IN(c.relname)@),
  'type_names', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', t.typname, 'typtype', t.typtype, 'relkind', tr.relkind,
        'comment', pg_catalog.obj_description(t.oid, 'pg_type')
      ) ORDER BY n.nspname, t.typname), '[]')
      FROM pg_catalog.pg_type t JOIN ns n ON n.oid = t.typnamespace
      LEFT JOIN pg_catalog.pg_class tr ON tr.oid = t.typrelid
      WHERE @IN(t.typname)@),
  'indexes', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', ic.relname, 'table', tc.relname, 'oid', ic.oid::int8,
        'locked', (i.indrelid IN (SELECT relation FROM xlocked) OR i.indexrelid IN (SELECT relation FROM xlocked)),
        'unique', i.indisunique, 'primary', i.indisprimary, 'valid', i.indisvalid,
        'ready', i.indisready, 'method', am.amname,
        'predicate', CASE WHEN NOT (i.indrelid IN (SELECT relation FROM xlocked) OR i.indexrelid IN (SELECT relation FROM xlocked)) THEN pg_catalog.pg_get_expr(i.indpred, i.indrelid) END,
        'columns', (SELECT coalesce(pg_catalog.json_agg(
              CASE WHEN k.attnum <> 0 THEN pg_catalog.to_json(a.attname)
                   WHEN i.indrelid IN (SELECT relation FROM xlocked) OR i.indexrelid IN (SELECT relation FROM xlocked) THEN pg_catalog.json_build_object('expr', NULL, 'locked', true)
                   ELSE pg_catalog.json_build_object('expr', pg_catalog.pg_get_indexdef(i.indexrelid, k.ord::int, true)) END
              ORDER BY k.ord), '[]')
            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE k.ord <= i.indnkeyatts),
        'include', (SELECT coalesce(pg_catalog.json_agg(a.attname ORDER BY k.ord), '[]')
            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE k.ord > i.indnkeyatts)
      ) ORDER BY n.nspname, ic.relname), '[]')
      -- which indexes: all (no names), else those of the named tables, the
      -- named ones and every invalid index, each found by a catalog index
      -- (one OR over the joined rows made this section scan every index of a
      -- 30,000-index catalog)
      FROM (SELECT xa.indexrelid AS oid FROM pg_catalog.pg_index xa WHERE @ALL@
            UNION
            SELECT xi.indexrelid FROM pg_catalog.pg_class xt
              JOIN pg_catalog.pg_index xi ON xi.indrelid = xt.oid
             WHERE @IN(xt.relname)@
            UNION
            SELECT xc.oid FROM pg_catalog.pg_class xc WHERE @IN(xc.relname)@
            UNION
            SELECT xv.indexrelid FROM pg_catalog.pg_index xv WHERE NOT xv.indisvalid) sel
      JOIN pg_catalog.pg_index i ON i.indexrelid = sel.oid
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
      JOIN ns n ON n.oid = ic.relnamespace
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam),
  'constraints', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'table', tc.relname, 'name', co.conname, 'contype', co.contype,
        'columns', (SELECT coalesce(pg_catalog.json_agg(a.attname ORDER BY k.ord), '[]')
            FROM unnest(co.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum),
        'ref_schema', rn.nspname, 'ref_table', rc.relname,
        'ref_columns', CASE WHEN co.confrelid <> 0 THEN (SELECT coalesce(pg_catalog.json_agg(a.attname ORDER BY k.ord), '[]')
            FROM unnest(co.confkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.attnum) END,
        'on_delete', CASE WHEN co.contype = 'f' THEN co.confdeltype END,
        'on_update', CASE WHEN co.contype = 'f' THEN co.confupdtype END,
        'validated', co.convalidated,
        'locked', (co.conrelid IN (SELECT relation FROM xlocked) OR co.confrelid IN (SELECT relation FROM xlocked)),
        'index', ixc.relname,
        'comment', pg_catalog.obj_description(co.oid, 'pg_constraint'),
        'expr', CASE WHEN co.contype = 'c' AND NOT (co.conrelid IN (SELECT relation FROM xlocked) OR co.confrelid IN (SELECT relation FROM xlocked)) THEN pg_catalog.pg_get_constraintdef(co.oid, true) END
      ) ORDER BY n.nspname, tc.relname, co.conname), '[]')
      -- which constraints: all (no names), else those of the relations and
      -- the named ones, each found by a catalog index (as for indexes)
      FROM (SELECT xa.oid FROM pg_catalog.pg_constraint xa WHERE @ALL@
            UNION
            SELECT xr.oid FROM pg_catalog.pg_constraint xr WHERE xr.conrelid IN (SELECT oid FROM rels)
            UNION
            SELECT xn.oid FROM pg_catalog.pg_constraint xn WHERE @IN(xn.conname)@) sel
      JOIN pg_catalog.pg_constraint co ON co.oid = sel.oid
      JOIN pg_catalog.pg_class tc ON tc.oid = co.conrelid
      JOIN ns n ON n.oid = tc.relnamespace
      LEFT JOIN pg_catalog.pg_class rc ON rc.oid = co.confrelid
      LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
      LEFT JOIN pg_catalog.pg_class ixc ON ixc.oid = co.conindid AND co.contype IN ('p', 'u', 'x')
      WHERE co.conrelid <> 0),
  'enums', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', t.typname, 'oid', t.oid::int8,
        'labels', (SELECT coalesce(pg_catalog.json_agg(e.enumlabel ORDER BY e.enumsortorder), '[]')
            FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid)
      ) ORDER BY n.nspname, t.typname), '[]')
      FROM pg_catalog.pg_type t JOIN ns n ON n.oid = t.typnamespace
      WHERE t.typtype = 'e' AND @IN(t.typname)@),
  'sequences', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', c.relname, 'oid', c.oid::int8,
        'type', pg_catalog.format_type(s.seqtypid, NULL),
        'start', s.seqstart, 'increment', s.seqincrement,
        'owned_by_table', otc.relname, 'owned_by_column', oa.attname
      ) ORDER BY n.nspname, c.relname), '[]')
      FROM pg_catalog.pg_class c JOIN ns n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
      LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
           AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
      LEFT JOIN pg_catalog.pg_class otc ON otc.oid = d.refobjid
      LEFT JOIN pg_catalog.pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
      WHERE c.relkind = 'S' AND @IN(c.relname)@),
  'functions', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', p.proname, 'oid', p.oid::int8, 'kind', p.prokind,
        'identity_args', pg_catalog.pg_get_function_identity_arguments(p.oid),
        'args', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.format_type(t.typ, NULL) ORDER BY t.ord), '[]')
            FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS t(typ, ord)),
        'result', pg_catalog.pg_get_function_result(p.oid),
        'language', l.lanname, 'body', p.prosrc,
        'comment', pg_catalog.obj_description(p.oid, 'pg_proc')
      ) ORDER BY n.nspname, p.proname, p.oid), '[]')
      FROM pg_catalog.pg_proc p JOIN ns n ON n.oid = p.pronamespace
      JOIN pg_catalog.pg_language l ON l.oid = p.prolang
      WHERE @IN(p.proname)@),
  'triggers', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'table', c.relname, 'name', tg.tgname, 'enabled', tg.tgenabled,
        'function', pn.nspname || '.' || p.proname,
        'comment', pg_catalog.obj_description(tg.oid, 'pg_trigger')
      ) ORDER BY n.nspname, c.relname, tg.tgname), '[]')
      FROM pg_catalog.pg_trigger tg
      JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
      JOIN ns n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
      JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
      WHERE NOT tg.tgisinternal AND (@ALL@ OR tg.tgrelid IN (SELECT oid FROM rels) OR @IN(tg.tgname)@)),
  'types', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', n.nspname, 'name', t.typname, 'oid', t.oid::int8, 'typtype', t.typtype,
        'base_type', CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END,
        'not_null', t.typnotnull,
        'default', t.typdefault,
        'attributes', CASE WHEN t.typtype = 'c' THEN (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
              'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum), '[]')
            FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
        'checks', CASE WHEN t.typtype = 'd' THEN (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
              'name', dc.conname, 'expr', pg_catalog.pg_get_constraintdef(dc.oid, true), 'validated', dc.convalidated)
              ORDER BY dc.conname), '[]')
            FROM pg_catalog.pg_constraint dc WHERE dc.contypid = t.oid) END
      ) ORDER BY n.nspname, t.typname), '[]')
      FROM pg_catalog.pg_type t JOIN ns n ON n.oid = t.typnamespace
      LEFT JOIN pg_catalog.pg_class tr ON tr.oid = t.typrelid
      WHERE ((t.typtype = 'c' AND tr.relkind = 'c') OR t.typtype IN ('d', 'r', 'm'))
        AND @IN(t.typname)@),
  'comments', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'on', x.o, 'schema', x.s, 'table', x.t, 'name', x.nm, 'text', x.txt) ORDER BY x.o, x.s, x.t, x.nm), '[]') FROM (
      SELECT 'table' AS o, n.nspname AS s, NULL::name AS t, c.relname AS nm, d.description AS txt
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objoid
        JOIN ns n ON n.oid = c.relnamespace
        WHERE d.objsubid = 0 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      UNION ALL
      SELECT 'column', n.nspname, c.relname, a.attname, d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objoid
        JOIN ns n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
        WHERE d.objsubid > 0
      UNION ALL
      SELECT 'type', n.nspname, NULL, t.typname, d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_type t ON d.classoid = 'pg_catalog.pg_type'::regclass AND t.oid = d.objoid
        JOIN ns n ON n.oid = t.typnamespace
      UNION ALL
      SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'index' END, n.nspname, NULL, c.relname, d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objoid
        JOIN ns n ON n.oid = c.relnamespace
        WHERE d.objsubid = 0 AND c.relkind IN ('i', 'I', 'S')
      UNION ALL
      SELECT 'constraint', n.nspname, c.relname, co.conname, d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_constraint co ON d.classoid = 'pg_catalog.pg_constraint'::regclass AND co.oid = d.objoid
        JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
        JOIN ns n ON n.oid = c.relnamespace
      UNION ALL
      SELECT 'trigger', n.nspname, c.relname, tg.tgname, d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_trigger tg ON d.classoid = 'pg_catalog.pg_trigger'::regclass AND tg.oid = d.objoid
        JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
        JOIN ns n ON n.oid = c.relnamespace
      UNION ALL
      SELECT 'schema', NULL, NULL, n.nspname, d.description
        FROM pg_catalog.pg_description d
        JOIN ns n ON d.classoid = 'pg_catalog.pg_namespace'::regclass AND n.oid = d.objoid
      UNION ALL
      SELECT 'extension', NULL, NULL, e.extname, d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_extension e ON d.classoid = 'pg_catalog.pg_extension'::regclass AND e.oid = d.objoid
    ) x)
)::text AS snapshot]]

---Text of the snapshot query for the given schemas (no parameters: the
---names are embedded as literals, once: the CTE `want` holds the array and
---every section compares with it, so the server neither parses nor estimates
---the list once per section — 22 inline copies of a 440-name array made a
---130 KB query).
---@param schemas string[]|string
---@return string sql
---@param names? string[] only objects with these names (relations, types,
---  functions, constraints, triggers) and whatever hangs off those tables;
---  nil = everything in the schemas
function M.query_text(schemas, names)
  schemas = check_schemas(schemas, "query_text")
  local lits = {}
  for i, s in ipairs(schemas) do lits[i] = quote_literal(s) end
  local arr = "ARRAY[" .. table.concat(lits, ", ") .. "]"
  local sub
  if names then
    local nl = {}
    for _, n in ipairs(names) do nl[#nl + 1] = quote_literal(n) end
    sub = {
      WANT = "SELECT ARRAY[" .. table.concat(nl, ", ") .. "]::name[] AS names",
      ALL = "false",
      NAMELIST = "(SELECT pg_catalog.to_json(w.names) FROM want w)",
    }
  else
    sub = { WANT = "SELECT NULL::name[] AS names", ALL = "true", NAMELIST = "NULL::json" }
  end
  local q = QUERY:gsub("%%s", function() return arr end)
  -- = ANY of a sub-select: an index condition still (an InitPlan's value),
  -- estimated without going through the list
  q = q:gsub("@IN%(([%w_.]+)%)@", function(x) return names and (x .. " = ANY ((SELECT w.names FROM want w)::name[])") or "true" end)
  return (q:gsub("@(%u+)@", sub))
end

-- Copy a decoded JSON value, turning the null sentinel into nil.
local function clean(v, null)
  if v == null then return nil end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if x ~= null then out[k] = clean(x, null) end
  end
  return out
end

local function list(v) return type(v) == "table" and v or {} end
local build

---Build the keyed snapshot from the decoded JSON document of `query_text`.
---@param doc table decoded document
---@param null any the decoder's null sentinel (default: migfix.json.null)
---@return table snap
function M.from_document(doc, null)
  if type(doc) ~= "table" then
    error("bad argument #1 to 'from_document' (expected the decoded snapshot document, a table)", 2)
  end
  if null == nil then
    local ok, json = pcall(require, "migfix.json")
    null = ok and type(json) == "table" and json.null or nil
  end
  return build(clean(doc, null))
end

-- the keyed snapshot from a document without nulls
build = function(doc)
  local snap = {
    server_version = doc.server_version,
    database = doc.database,
    requested = {},                 -- set of the schema names asked for
    schemas = {}, extensions = {}, extension_info = {},
    tables = {}, views = {}, matviews = {}, foreign_tables = {},
    indexes = {}, constraints = {}, enums = {}, sequences = {},
    functions = {}, triggers = {}, types = {},
    relations = {}, type_names = {},
    names = nil,                    -- set of the object names asked for (nil: every name)
    comments = { table = {}, column = {}, type = {}, index = {}, sequence = {}, view = {}, matview = {},
                 constraint = {}, trigger = {}, schema = {}, extension = {} },
  }
  if type(doc.names) == "table" then
    snap.names = {}
    for _, n in ipairs(doc.names) do snap.names[n] = true end
  end
  for _, s in ipairs(list(doc.schemas)) do snap.schemas[s] = true end
  for _, s in ipairs(list(doc.requested)) do snap.requested[s] = true end
  for _, e in ipairs(list(doc.extensions)) do
    snap.extensions[e.name] = e.version
    snap.extension_info[e.name] = e
  end
  for _, t in ipairs(list(doc.tables)) do
    local cols = {}
    for _, c in ipairs(list(t.columns)) do cols[c.name] = c end
    t.column_order = {}
    for i, c in ipairs(list(t.columns)) do t.column_order[i] = c.name end
    t.columns = cols
    local key = t.schema .. "." .. t.name
    snap.tables[key] = t
    if t.kind == "v" then snap.views[key] = t
    elseif t.kind == "m" then snap.matviews[key] = t
    elseif t.kind == "f" then snap.foreign_tables[key] = t end
    if t.locked then t.bytes_skipped = "locked" end
  end
  for _, r in ipairs(list(doc.relations)) do
    snap.relations[r.schema .. "." .. r.name] = r
  end
  for _, t in ipairs(list(doc.type_names)) do
    snap.type_names[t.schema .. "." .. t.name] = t
  end
  for _, i in ipairs(list(doc.indexes)) do
    i.columns = list(i.columns); i.include = list(i.include)
    snap.indexes[i.schema .. "." .. i.name] = i
  end
  for _, c in ipairs(list(doc.constraints)) do
    c.columns = list(c.columns)
    snap.constraints[c.schema .. "." .. c.table .. "." .. c.name] = c
  end
  for _, e in ipairs(list(doc.enums)) do
    e.labels = list(e.labels)
    snap.enums[e.schema .. "." .. e.name] = e
  end
  for _, s in ipairs(list(doc.sequences)) do
    if s.owned_by_table then s.owned_by = { table = s.owned_by_table, column = s.owned_by_column } end
    s.owned_by_table, s.owned_by_column = nil, nil
    snap.sequences[s.schema .. "." .. s.name] = s
  end
  for _, f in ipairs(list(doc.functions)) do
    f.args = list(f.args)
    f.procedure = f.kind == "p"
    local key = f.schema .. "." .. f.name
    local l = snap.functions[key]
    if not l then l = {}; snap.functions[key] = l end
    l[#l + 1] = f
  end
  for _, t in ipairs(list(doc.triggers)) do
    snap.triggers[t.schema .. "." .. t.table .. "." .. t.name] = t
  end
  for _, t in ipairs(list(doc.types)) do
    t.kind = ({ c = "composite", d = "domain", r = "range", m = "multirange" })[t.typtype] or t.typtype
    snap.types[t.schema .. "." .. t.name] = t
  end
  for _, c in ipairs(list(doc.comments)) do
    local key = (c.schema and (c.schema .. ".") or "") .. (c.table and (c.table .. ".") or "") .. c.name
    local bucket = snap.comments[c.on]
    if bucket then bucket[key] = c.text end
    -- views and materialized views are in the "table" bucket too (pg_class)
    if c.on == "table" then
      local r = snap.relations[key]
      local by_kind = r and ({ v = "view", m = "matview" })[r.kind]
      if by_kind then snap.comments[by_kind][key] = c.text end
    end
  end
  return snap
end

---Snapshot the catalog of `schemas` in one round trip.
---@param conn table a migfix.db connection
---@param schemas string[]|string schema names, e.g. {"public"}
---@return table|nil snap
---@return string? err
---@return table? info the error record from conn:query
---@param names? string[] restrict to these object names (see query_text)
function M.snapshot(conn, schemas, names)
  if type(conn) ~= "table" and type(conn) ~= "userdata" then
    error("bad argument #1 to 'snapshot' (expected a connection, e.g. snapshot(conn, {\"public\"}))", 2)
  end
  schemas = check_schemas(schemas, "snapshot")
  -- JIT off for this query: on a big catalog its cost crosses jit_above_cost,
  -- and compiling takes longer than running it. SET LOCAL needs a
  -- transaction: a read-only one of our own when the connection is idle
  -- (inside a caller's transaction the query runs as it is).
  local tx = conn.begin and select(2, pcall(conn.begin, conn, { readonly = true }))
  if type(tx) ~= "userdata" and type(tx) ~= "table" then tx = nil end
  if tx and not conn:exec("SET LOCAL jit = off") then tx:rollback(); tx = nil end
  local rows, cols_or_err, info = conn:query(M.query_text(schemas, names))
  if tx then
    if rows then tx:commit() else tx:rollback() end
  end
  if not rows then
    return nil, "could not read the catalog: " .. tostring(cols_or_err), info
  end
  local row = rows[1]
  local text = row and row.snapshot
  if type(text) ~= "string" then
    return nil, "could not read the catalog: the snapshot query returned no document"
  end
  -- (decoded without nulls: what from_document's copy would make)
  local doc, derr = require("migfix.json").decode(text, { nulls = false })
  if type(doc) ~= "table" then
    return nil, "could not decode the catalog snapshot: " .. tostring(derr)
  end
  return build(doc)
end

return M
