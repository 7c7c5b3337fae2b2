-- migfix.verify: expected NET state of a unit, compared with hand-made snapshots
local H = require "helper"
local verify = require "migfix.verify"

local T = {}

-- a unit from statements { {text, {effects...}, flags...} }
local function unit(stmts, flags)
  local u = { file = "m/migration.sql", statements = {}, effects = {}, flags = flags or {} }
  for i, s in ipairs(stmts) do
    u.statements[i] = { index = i, line = i * 2 - 1, end_line = i * 2, text = s[1], kind = s.kind or "X",
                        tx_control = s.tx_control or false, non_transactional = s.non_transactional or false,
                        unverifiable = s.unverifiable or false }
    for _, e in ipairs(s[2] or {}) do
      e.stmt, e.line = i, i * 2 - 1
      u.effects[#u.effects + 1] = e
    end
    if s.tx_control then u.flags.tx_control = true end
    if s.non_transactional then u.flags.non_transactional = true end
  end
  return u
end

local function col(name, type_, not_null, default)
  return { name = name, type = type_, not_null = not_null or false, default = default, has_default = default ~= nil }
end

-- a snapshot from a compact description
local function snap(d)
  local s = { server_version = 150000, schemas = { public = true }, requested = { public = true }, extensions = {},
              tables = {}, views = {}, matviews = {}, indexes = {}, constraints = {}, enums = {}, sequences = {},
              functions = {}, triggers = {}, types = {}, comments = { table = {}, column = {}, type = {} } }
  for name, cols in pairs(d.tables or {}) do
    local t = { schema = "public", name = name, kind = "r", columns = {}, column_order = {} }
    for i, c in ipairs(cols) do
      t.columns[c[1]] = { name = c[1], type = c[2], not_null = c[3] or false, default = c[4], has_default = c[4] ~= nil, position = i }
      t.column_order[i] = c[1]
    end
    s.tables["public." .. name] = t
  end
  for name, ix in pairs(d.indexes or {}) do
    ix.schema, ix.name = "public", name
    if ix.valid == nil then ix.valid = true end
    ix.unique = ix.unique or false
    ix.primary = ix.primary or false
    ix.method = ix.method or "btree"
    s.indexes["public." .. name] = ix
  end
  for _, c in ipairs(d.constraints or {}) do
    c.schema = "public"
    if c.validated == nil then c.validated = true end
    s.constraints["public." .. c.table .. "." .. c.name] = c
  end
  for name, labels in pairs(d.enums or {}) do
    s.enums["public." .. name] = { schema = "public", name = name, labels = labels }
  end
  return s
end

-- CREATE TYPE; CREATE TABLE (+pkey, +unique index); CREATE INDEX; ADD FK
local function ticket_unit(flags_stmt)
  return unit({
    { 'CREATE TYPE "Status" AS ENUM (\'OPEN\', \'DONE\')',
      { { kind = "enum", action = "create", name = "Status", labels = { "OPEN", "DONE" } } } },
    { 'CREATE TABLE "Ticket" (...)',
      { { kind = "table", action = "create", name = "Ticket",
          columns = { col("id", "integer", true), col("title", "text", true), col("status", '"Status"', true, "'OPEN'::\"Status\"") } },
        { kind = "constraint", action = "create", table = "Ticket", name = "Ticket_pkey", contype = "p", columns = { "id" } } } },
    { 'CREATE UNIQUE INDEX "Ticket_title_key" ON "Ticket"("title")',
      { { kind = "index", action = "create", table = "Ticket", name = "Ticket_title_key", unique = true, columns = { "title" }, method = "btree" } },
      non_transactional = flags_stmt },
  })
end

local function ticket_snap(opts)
  opts = opts or {}
  return snap({
    enums = { Status = opts.labels or { "OPEN", "DONE" } },
    tables = { Ticket = { { "id", "integer", true }, { "title", opts.title_type or "text", true }, { "status", '"Status"', true, "'OPEN'::\"Status\"" } } },
    indexes = {
      Ticket_pkey = { table = "Ticket", unique = true, primary = true, columns = { "id" } },
      Ticket_title_key = not opts.no_index and { table = "Ticket", unique = true, columns = { "title" }, valid = not opts.invalid } or nil,
    },
    constraints = { { table = "Ticket", name = "Ticket_pkey", contype = "p", columns = { "id" } } },
  })
end

local function item(ev, kind, name)
  for _, it in ipairs(ev.items) do if it.kind == kind and it.name == name then return it end end
  error(("no item %s %s"):format(kind, name), 2)
end

T["complete: every object present and equal"] = function()
  local ev = verify.compare(ticket_unit(), ticket_snap(), "public")
  H.eq(ev.verdict, "complete", ev.summary)
  H.eq(ev.counts.missing, 0)
  H.eq(ev.counts.different, 0)
  H.eq(item(ev, "table", "Ticket").state, "present")
  H.eq(item(ev, "column", "status").state, "present")
  H.eq(item(ev, "column", "status").stmt, 2)
  H.eq(item(ev, "column", "status").line, 3)
  H.eq(item(ev, "index", "Ticket_title_key").schema, "public")
  H.ok(ev.summary:find("every checked object", 1, true), ev.summary)
  local lf = verify.likely_failed_statement(ticket_unit(), ev)
  H.eq(lf.index, nil)
end

T["absent: nothing applied; all-or-nothing file points to the error"] = function()
  local ev = verify.compare(ticket_unit(), snap({}), "public")
  H.eq(ev.verdict, "absent", ev.summary)
  H.eq(item(ev, "enum", "Status").state, "missing")
  H.eq(ev.counts.present, 0)
  local lf = verify.likely_failed_statement(ticket_unit(), ev)
  H.eq(lf.all_or_nothing, true)
  H.eq(lf.index, nil)
  H.contains(lf.reason, "rolled back together")
  -- with the error's object, the statement that names it
  local lf2 = verify.likely_failed_statement(ticket_unit(), ev, { object = "Ticket_title_key" })
  H.eq(lf2.index, 3)
  H.eq(lf2.line, 5)
end

T["partial: first statement not done is named"] = function()
  local u = ticket_unit(true)
  local ev = verify.compare(u, ticket_snap({ no_index = true }), "public")
  H.eq(ev.verdict, "partial", ev.summary)
  H.eq(item(ev, "index", "Ticket_title_key").state, "missing")
  local lf = verify.likely_failed_statement(u, ev)
  H.eq(lf.index, 3)
  H.eq(lf.line, 5)
  H.eq(lf.text, 'CREATE UNIQUE INDEX "Ticket_title_key" ON "Ticket"("title")')
  H.contains(lf.reason, "statement 3")
  H.eq(lf.all_or_nothing, false)
end

T["drifted: column of another type"] = function()
  local ev = verify.compare(ticket_unit(), ticket_snap({ title_type = "character varying(10)" }), "public")
  H.eq(ev.verdict, "drifted")
  local it = item(ev, "column", "title")
  H.eq(it.state, "different")
  H.same(it.diffs[1], { field = "type", expected = "text", found = "character varying(10)" })
end

T["INVALID index is different with field valid"] = function()
  local u = ticket_unit(true)
  local ev = verify.compare(u, ticket_snap({ invalid = true }), "public")
  local it = item(ev, "index", "Ticket_title_key")
  H.eq(it.state, "different")
  H.eq(it.diffs[1].field, "valid")
  H.eq(it.diffs[1].expected, true)
  H.eq(it.diffs[1].found, false)
  -- what an interrupted CREATE INDEX CONCURRENTLY leaves: not done, so partial
  H.eq(ev.verdict, "partial")
  H.eq(verify.likely_failed_statement(u, ev).index, 3)
end

T["enum missing a label is different"] = function()
  local ev = verify.compare(ticket_unit(), ticket_snap({ labels = { "OPEN" } }), "public")
  local it = item(ev, "enum", "Status")
  H.eq(it.state, "different")
  H.eq(it.diffs[1].field, "labels")
  H.same(it.diffs[1].missing, { "DONE" })
end

T["ADD VALUE folds into an enum created in the same file; alone it is an enum_value item"] = function()
  local u = unit({
    { "CREATE TYPE", { { kind = "enum", action = "create", name = "S", labels = { "A" } } } },
    { "ALTER TYPE ADD VALUE", { { kind = "enum_value", action = "create", enum = "S", name = "B", after = "A" } } },
  })
  local m = verify.expected(u, "public")
  H.eq(#m.list, 1)
  H.same(m.list[1].props.labels, { "A", "B" })
  local u2 = unit({ { "ALTER TYPE ADD VALUE", { { kind = "enum_value", action = "create", enum = "S", name = "B" } } } })
  H.eq(verify.compare(u2, snap({ enums = { S = { "A" } } })).verdict, "absent")
  H.eq(verify.compare(u2, snap({ enums = { S = { "A", "B" } } })).verdict, "complete")
end

T["renames are followed: table moves its columns, indexes and constraints"] = function()
  local u = unit({
    { "CREATE TABLE a", { { kind = "table", action = "create", name = "a", columns = { col("id", "integer", true) } },
                          { kind = "constraint", action = "create", table = "a", name = "a_pkey", contype = "p", columns = { "id" } } } },
    { "CREATE INDEX", { { kind = "index", action = "create", table = "a", name = "a_idx", columns = { "id" } } } },
    { "ALTER TABLE a RENAME TO b", { { kind = "table", action = "rename", name = "a", new_name = "b" } } },
    { "ALTER TABLE b RENAME COLUMN id TO key", { { kind = "column", action = "rename", table = "b", name = "id", new_name = "key" } } },
  })
  local m = verify.expected(u, "public")
  local keys = {}
  for _, e in ipairs(m.list) do keys[#keys + 1] = e.key end
  H.same(keys, { "relation:public.b", "column:public.b.key", "constraint:public.b.a_pkey", "relation:public.a_idx" })
  local s = snap({
    tables = { b = { { "key", "integer", true } } },
    indexes = { a_pkey = { table = "b", primary = true, unique = true, columns = { "key" } }, a_idx = { table = "b", columns = { "key" } } },
    constraints = { { table = "b", name = "a_pkey", contype = "p", columns = { "key" } } },
  })
  local ev = verify.compare(u, s, "public")
  H.eq(ev.verdict, "complete", ev.summary)
  H.eq(item(ev, "index", "a_idx").table, "b")
end

T["rename of a pre-existing object: old name still there means missing"] = function()
  local u = unit({ { "ALTER TYPE RENAME", { { kind = "enum", action = "rename", name = "Old", new_name = "New" } } } })
  local ev = verify.compare(u, snap({ enums = { Old = { "A" } } }))
  H.eq(ev.verdict, "absent")
  H.eq(ev.items[1].state, "missing")
  H.eq(ev.items[1].old_present, true)
  H.eq(verify.compare(u, snap({ enums = { New = { "A" } } })).verdict, "complete")
end

T["renaming an enum moves its values"] = function()
  local u = unit({
    { "ADD VALUE", { { kind = "enum_value", action = "create", enum = "E", name = "X" } } },
    { "RENAME", { { kind = "enum", action = "rename", name = "E", new_name = "F" } } },
  })
  local m = verify.expected(u)
  local ok = false
  for _, e in ipairs(m.list) do if e.kind == "enum_value" then ok = e.enum == "F" end end
  H.ok(ok, "enum_value moved to F")
end

T["created then dropped in the same file: expected absent, not evidence"] = function()
  local u = unit({
    { "CREATE TABLE tmp", { { kind = "table", action = "create", name = "tmp", columns = { col("x", "integer") } } } },
    { "CREATE TABLE keep", { { kind = "table", action = "create", name = "keep", columns = { col("y", "text") } } } },
    { "DROP TABLE tmp", { { kind = "table", action = "drop", name = "tmp" } } },
  })
  local m = verify.expected(u)
  H.eq(#m.list, 3) -- tmp (absent), keep, keep.y; tmp.x went with tmp
  local ev = verify.compare(u, snap({}))
  H.eq(item(ev, "table", "tmp").state, "absent")
  H.eq(item(ev, "table", "tmp").informative, false)
  H.eq(ev.verdict, "absent", "an uninformative absence does not make it partial")
  H.eq(verify.compare(u, snap({ tables = { keep = { { "y", "text" } } } })).verdict, "complete")
end

T["drop: still_present vs absent"] = function()
  local u = unit({
    { "DROP INDEX old_idx", { { kind = "index", action = "drop", name = "old_idx" } } },
    { "ALTER TABLE t DROP COLUMN c", { { kind = "column", action = "drop", table = "t", name = "c" } } },
  })
  local ev = verify.compare(u, snap({ tables = { t = { { "c", "text" } } }, indexes = { old_idx = { table = "t", columns = { "c" } } } }))
  H.eq(ev.verdict, "absent")
  H.eq(ev.counts.still_present, 2)
  ev = verify.compare(u, snap({ tables = { t = { { "c", "text" } } } }))
  H.eq(ev.verdict, "partial")
  H.eq(item(ev, "index", "old_idx").state, "absent")
  H.eq(item(ev, "column", "c").state, "still_present")
  H.eq(verify.likely_failed_statement(u, ev).index, 2)
end

T["DROP TABLE drops the foreign keys pointing at it (CASCADE: also unknown ones)"] = function()
  local u = unit({
    { "ADD FK", { { kind = "constraint", action = "create", table = "t", name = "t_u_fkey", contype = "f", columns = { "u" },
                    ref_table = "u", ref_columns = { "id" } } } },
    { "VALIDATE", { { kind = "constraint", action = "alter", table = "t", name = "t_v_fkey", set = { not_valid = false } } } },
    { "DROP TABLE u CASCADE", { { kind = "table", action = "drop", name = "u", cascade = true } } },
  })
  local m = verify.expected(u)
  H.eq(#m.list, 1)
  H.eq(m.list[1].kind, "table")
  H.eq(verify.compare(u, snap({ tables = { t = { { "u", "integer" } } } })).verdict, "complete")
end

T["unnamed constraints match by table, type and columns"] = function()
  local u = unit({
    { "ALTER TABLE t ADD CHECK (x > 0), ADD FOREIGN KEY (o) REFERENCES u(id)", {
      { kind = "constraint", action = "create", table = "t", name = "t_x_check", name_generated = true, contype = "c", columns = { "x" }, expr = "x > 0" },
      { kind = "constraint", action = "create", table = "t", name = "t_o_fkey", name_generated = true, contype = "f", columns = { "o" },
        ref_table = "u", ref_columns = { "id" }, on_delete = "a" } } },
  })
  local s = snap({ tables = { t = { { "x", "integer" }, { "o", "integer" } } }, constraints = {
    { table = "t", name = "t_x_check1", contype = "c", columns = { "x" }, expr = "CHECK (x > 0)" },
    { table = "t", name = "t_o_fkey", contype = "f", columns = { "o" }, ref_schema = "public", ref_table = "u", ref_columns = { "id" }, on_delete = "a", on_update = "a" },
  } })
  local ev = verify.compare(u, s)
  H.eq(ev.verdict, "complete", ev.summary)
  H.eq(item(ev, "constraint", "t_x_check").found.name, "t_x_check1")
end

T["NOT VALID constraint when the migration validates it; nullability"] = function()
  local u = unit({
    { "ALTER TABLE t VALIDATE CONSTRAINT fk", { { kind = "constraint", action = "alter", table = "t", name = "fk", set = { not_valid = false } } } },
    { "ALTER TABLE t ALTER COLUMN c SET NOT NULL", { { kind = "column", action = "alter", table = "t", name = "c", set = { not_null = true } } } },
  })
  local s = snap({ tables = { t = { { "c", "text", false } } }, constraints = { { table = "t", name = "fk", contype = "f", columns = { "c" }, validated = false } } })
  local ev = verify.compare(u, s)
  -- the file only ALTERs existing objects and neither ALTER happened: absent
  H.eq(ev.verdict, "absent")
  H.eq(item(ev, "constraint", "fk").diffs[1].field, "validated")
  H.same(item(ev, "column", "c").diffs[1], { field = "not_null", expected = true, found = false })
  local lf = verify.likely_failed_statement(u, ev)
  H.eq(lf.all_or_nothing, true)
  H.eq(lf.index, nil)
  H.eq(lf.first_not_done, 1)
  u.statements[2].non_transactional, u.flags.non_transactional = true, true
  H.eq(verify.likely_failed_statement(u, ev).index, 1)
end

T["defaults: a created column's by presence; a default SET on an existing column by its text"] = function()
  local u = unit({ { "ALTER TABLE t ALTER COLUMN c SET DEFAULT 'x'", {
    { kind = "column", action = "alter", table = "t", name = "c", set = { default = "'x'", has_default = true } } } } })
  -- the old default is still there: the ALTER did not happen
  local ev = verify.compare(u, snap({ tables = { t = { { "c", "text", false, "'y'::text" } } } }))
  H.eq(ev.verdict, "absent")
  H.eq(ev.items[1].state, "different")
  H.same(ev.items[1].diffs[1], { field = "default", expected = "'x'", found = "'y'::text" })
  ev = verify.compare(u, snap({ tables = { t = { { "c", "text", false, "'x'::text" } } } }))
  H.eq(ev.verdict, "complete")
  H.eq(ev.items[1].expected.default, "'x'")
  H.eq(ev.items[1].found.default, "'x'::text")
  ev = verify.compare(u, snap({ tables = { t = { { "c", "text" } } } }))
  H.eq(ev.items[1].state, "different")
  H.eq(ev.items[1].diffs[1].field, "default")
  -- a column this file creates: any spelling of a default is its default
  local u2 = unit({ { "ALTER TABLE t ADD COLUMN d integer DEFAULT -1", {
    { kind = "column", action = "create", table = "t", name = "d", type = "integer", default = "-1", has_default = true } } } })
  H.eq(verify.compare(u2, snap({ tables = { t = { { "d", "integer", false, "'-1'::integer" } } } })).verdict, "complete")
  H.eq(verify.norm_expr("'-1'::integer"), verify.norm_expr("-1"))
  H.eq(verify.norm_expr("'OPEN'::\"TicketStatus\""), verify.norm_expr("'OPEN'"))
  H.ok(verify.norm_expr("'open'") ~= verify.norm_expr("'OPEN'"), "case kept inside literals")
  H.eq(verify.norm_expr("CURRENT_TIMESTAMP"), verify.norm_expr("current_timestamp"))
end

T["SET EXPRESSION (PostgreSQL 17): the catalog's generation expression, matched or no evidence"] = function()
  local set = { kind = "column", action = "alter", table = "P", name = "b", set = { expression = '"a" * 3' } }
  local u = unit({ { 'ALTER TABLE "P" ALTER COLUMN "b" SET EXPRESSION AS ("a" * 3)', { set } } })
  local function gsnap(expr, generated, locked)
    local s = snap({ tables = { P = { { "a", "integer" }, { "b", "integer", false, expr } } } })
    local c = s.tables["public.P"].columns.b
    c.generated = generated
    if locked then c.default = nil end
    return s
  end
  -- the new expression is there (pg_get_expr's spelling): done
  local ev = verify.compare(u, gsnap("(a * 3)", "s"))
  H.eq(ev.items[1].state, "present")
  H.eq(ev.verdict, "complete")
  -- another expression: the file cannot tell "not run" from a spelling it cannot match
  ev = verify.compare(u, gsnap("(a * 2)", "s"))
  H.eq(ev.items[1].state, "unverifiable")
  H.contains(ev.items[1].reason, "could not be matched")
  H.eq(ev.verdict, "unverifiable")
  -- a column that is not generated: SET EXPRESSION cannot have run
  ev = verify.compare(u, gsnap(nil, nil))
  H.eq(ev.items[1].state, "different")
  H.eq(ev.items[1].diffs[1].field, "generated")
  H.eq(ev.verdict, "absent")
  -- the table was locked: the expression was not read
  ev = verify.compare(u, gsnap("(a * 3)", "s", true))
  H.eq(ev.items[1].state, "unverifiable")
  H.contains(ev.items[1].reason, "was not read")
  -- the file created the column: its first expression still there shows the ALTER did not run
  local u2 = unit({
    { 'CREATE TABLE "P" (...)', { { kind = "table", action = "create", name = "P", columns = {
        col("a", "integer"), { name = "b", type = "integer", not_null = false, has_default = true, default = '"a" * 2', generated = "s" } } } } },
    { 'ALTER TABLE "P" ALTER COLUMN "b" SET EXPRESSION AS ("a" * 3)', { set } } }, {})
  u2.effects[1].stmt, u2.effects[2].stmt = 1, 2
  ev = verify.compare(u2, gsnap("(a * 2)", "s"), "public", { unit = "statement" })
  local b = item(ev, "column", "b")
  H.eq(b.state, "different")
  H.eq(b.diffs[1].field, "expression")
  H.eq(verify.compare(u2, gsnap("(a * 3)", "s")).verdict, "complete")
end

T["unverifiable: DML and DO only"] = function()
  local u = unit({
    { "UPDATE t SET x = 1", { { kind = "data", action = "unverifiable" } }, unverifiable = true },
    { "DO $$ BEGIN END $$", { { kind = "do", action = "unverifiable" } }, unverifiable = true },
  })
  local ev = verify.compare(u, snap({}))
  H.eq(ev.verdict, "unverifiable")
  H.eq(ev.counts.unverifiable, 2)
  H.eq(ev.items[1].state, "unverifiable")
end

T["schema qualification: nil schema is the default schema; other schemas outside the snapshot are unverifiable"] = function()
  local u = unit({ { "CREATE TABLE app.x", { { kind = "table", action = "create", schema = "app", name = "x", columns = {} } } } })
  H.same(verify.schemas(u, "public"), { "public", "app" })
  local ev = verify.compare(u, snap({}), "public")
  H.eq(ev.items[1].state, "unverifiable")
  local u2 = unit({ { "CREATE TABLE x", { { kind = "table", action = "create", name = "x", columns = {} } } } })
  local s = snap({})
  s.tables["tenant.x"] = { schema = "tenant", name = "x", kind = "r", columns = {}, column_order = {} }
  s.requested.tenant, s.schemas.tenant = true, true
  H.eq(verify.compare(u2, s, "tenant").verdict, "complete")
end

T["evidence shape"] = function()
  local ev = verify.compare(ticket_unit(), ticket_snap())
  H.same(ev.counts, { present = ev.counts.present, missing = 0, different = 0, absent = 0, still_present = 0, unverifiable = 0 })
  for _, it in ipairs(ev.items) do
    H.ok(it.kind and it.name and it.action and it.state and it.diffs and it.stmt and it.line and it.expected, "item fields")
  end
  H.eq(type(ev.summary), "string")
end

T["one unit compared with many snapshots (a fleet): each comparison stands alone"] = function()
  local u = ticket_unit()
  local first = verify.compare(u, ticket_snap(), "public")
  local missing = verify.compare(u, ticket_snap({ no_index = true }), "public")
  local drifted = verify.compare(u, ticket_snap({ title_type = "varchar" }), "public")
  local again = verify.compare(u, ticket_snap(), "public")
  H.eq(first.verdict, "complete", first.summary)
  H.eq(item(missing, "index", "Ticket_title_key").state, "missing")
  H.eq(item(drifted, "column", "title").state, "different")
  H.same(again, first)
  H.eq(verify.compare(u, ticket_snap(), "tenant").verdict, "unverifiable")
end

T["bad arguments raise"] = function()
  H.raises(function() verify.compare(nil, {}) end, "bad argument #1 to 'compare'")
  H.raises(function() verify.compare(unit({}), {}) end, "bad argument #2 to 'compare'")
  H.raises(function() verify.expected("x") end, "bad argument #1 to 'expected'")
end

return T
