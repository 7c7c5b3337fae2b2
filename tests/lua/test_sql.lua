-- migfix.sql: libpg_query parse / split / span / fingerprint
local H = require "helper"
local sql = require "migfix.sql"

local T = {}

T["module leaves globals alone and exports the API"] = function()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  package.loaded["migfix.sql"] = nil
  local m = require "migfix.sql"
  for k in pairs(_G) do H.ok(before[k], "new global " .. tostring(k)) end
  for _, f in ipairs { "parse", "split", "span", "fingerprint", "statements" } do
    H.eq(type(m[f]), "function", f)
  end
end

T["parse returns the tree as Lua tables"] = function()
  local t = assert(sql.parse('CREATE TABLE "SLAPolicy" ("id" TEXT NOT NULL, "n" INTEGER DEFAULT 3)'))
  H.eq(math.type(t.version), "integer")
  H.eq(#t.stmts, 1)
  local cs = t.stmts[1].stmt.CreateStmt
  H.eq(cs.relation.relname, "SLAPolicy")
  H.eq(cs.relation.inh, true)
  local col = cs.tableElts[1].ColumnDef
  H.eq(col.colname, "id")
  H.eq(col.typeName.names[1].String.sval, "text")
  H.eq(col.constraints[1].Constraint.contype, "CONSTR_NOTNULL")
  local def = cs.tableElts[2].ColumnDef.constraints[1].Constraint.raw_expr.A_Const
  H.eq(def.ival.ival, 3)
  H.eq(math.type(def.ival.ival), "integer")
end

T["the parser is PostgreSQL 17's (libpg_query 17): its syntax and JSON shapes"] = function()
  local t = assert(sql.parse("SELECT 1"))
  H.ok(t.version >= 170000 and t.version < 180000, "libpg_query 17: " .. tostring(t.version))
  -- PostgreSQL 17 syntax parses
  local a = assert(sql.parse('ALTER TABLE "P" ALTER COLUMN "b" SET EXPRESSION AS ("a" * 3)')).stmts[1].stmt
  local cmd = a.AlterTableStmt.cmds[1].AlterTableCmd
  H.eq(cmd.subtype, "AT_SetExpression")
  H.eq(cmd.name, "b")
  H.ok(cmd.def.A_Expr, "the expression")
  -- MERGE: matchKind (15 had a boolean "matched"), WHEN NOT MATCHED BY SOURCE, RETURNING
  local m = assert(sql.parse("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE " ..
    "WHEN NOT MATCHED BY SOURCE THEN DELETE RETURNING t.id")).stmts[1].stmt.MergeStmt
  H.eq(m.mergeWhenClauses[1].MergeWhenClause.matchKind, "MERGE_WHEN_MATCHED")
  H.eq(m.mergeWhenClauses[1].MergeWhenClause.matched, nil)
  H.eq(m.mergeWhenClauses[2].MergeWhenClause.matchKind, "MERGE_WHEN_NOT_MATCHED_BY_SOURCE")
  H.eq(#m.returningList, 1)
  -- PARTITION BY: the strategy is an enum name (15: "range")
  local c = assert(sql.parse("CREATE TABLE p (a int) PARTITION BY RANGE (a)")).stmts[1].stmt.CreateStmt
  H.eq(c.partspec.strategy, "PARTITION_STRATEGY_RANGE")
  -- negative integers are written (15 left them out)
  local v = assert(sql.parse("SELECT -1")).stmts[1].stmt.SelectStmt.targetList[1].ResTarget.val
  H.eq(v.A_Const.ival.ival, -1)
  -- JSON_TABLE
  assert(sql.parse("SELECT * FROM JSON_TABLE('[1]'::jsonb, '$[*]' COLUMNS (x int PATH '$')) jt"))
end

T["parse folds unquoted identifiers only"] = function()
  local t = assert(sql.parse('ALTER TABLE Users ADD COLUMN "Name" text'))
  local a = t.stmts[1].stmt.AlterTableStmt
  H.eq(a.relation.relname, "users")
  H.eq(a.cmds[1].AlterTableCmd.def.ColumnDef.colname, "Name")
end

T["parse error: nil, message, {kind = \"parse\", message, cursorpos, line, column}"] = function()
  local t, msg, err = sql.parse("SELECT 1;\n\nCREATE TABL x (a int);")
  H.eq(t, nil)
  H.eq(msg, 'syntax error at or near "TABL"')
  H.same(err, { kind = "parse", message = msg, cursorpos = 19, line = 3, column = 8 })
end

T["parse error columns count characters, not bytes"] = function()
  local _, msg, err = sql.parse("SELECT 'é€';\nSELECT 'ü' FORM x;")
  H.eq(msg, 'syntax error at or near "x"')
  H.eq(err.line, 2)
  H.eq(err.column, 17) -- "FORM" is an alias; the error is at x, character 17 (byte 18)
  H.eq(err.cursorpos, 30)
end

T["parse error at end of input"] = function()
  local _, msg, err = sql.parse("CREATE TABLE x (\n  a int")
  H.eq(msg, "syntax error at end of input")
  H.eq(err.line, 2)
end

T["parse of an empty or comment-only text has no statements"] = function()
  for _, s in ipairs { "", "   \n", "-- nothing\n/* here */" } do
    local t = assert(sql.parse(s))
    H.eq(t.stmts == nil or #t.stmts == 0, true, ("%q"):format(s))
  end
end

T["split: comments, strings and dollar quotes with ';'"] = function()
  local text = table.concat({
    "-- CreateEnum; with a semicolon",
    "CREATE TYPE \"TicketStatus\" AS ENUM ('OPEN', 'CLOSED');",
    "",
    "/* block; comment /* nested; */ */",
    "INSERT INTO t VALUES ('a;b', E'c\\';d');",
    "CREATE FUNCTION f() RETURNS trigger AS $fn$",
    "BEGIN",
    "  NEW.x := 1; -- ;",
    "  RETURN NEW;",
    "END; $fn$ LANGUAGE plpgsql;",
    "DO $$ BEGIN PERFORM 1; END $$;",
    "SELECT 1 -- trailing comment",
  }, "\n")
  local list = assert(sql.split(text))
  H.eq(#list, 5)
  H.same(list[1], { text = "CREATE TYPE \"TicketStatus\" AS ENUM ('OPEN', 'CLOSED')",
                    offset = 32, length = 53, line = 2, end_line = 2 })
  H.eq(list[2].text, "INSERT INTO t VALUES ('a;b', E'c\\';d')")
  H.eq(list[2].line, 5)
  H.eq(list[3].line, 6)
  H.eq(list[3].end_line, 10)
  H.ok(list[3].text:find("END; $fn$ LANGUAGE plpgsql$"), list[3].text)
  H.eq(list[4].text, "DO $$ BEGIN PERFORM 1; END $$")
  H.eq(list[5].text, "SELECT 1")
  H.eq(list[5].line, 12)
  for _, s in ipairs(list) do
    H.eq(text:sub(s.offset + 1, s.offset + s.length), s.text)
  end
end

T["split: empty input, and the parse error shape"] = function()
  H.same(assert(sql.split("")), {})
  H.same(assert(sql.split("-- only a comment\n")), {})
  local r, msg, err = sql.split("SELECT 1;\nSELEC 2;")
  H.eq(r, nil)
  H.contains(msg, 'syntax error at or near "SELEC"')
  H.eq(err.line, 2)
  H.eq(err.column, 1)
end

T["span: a RawStmt location/length, leading comments skipped"] = function()
  local text = "SELECT 1;\n  -- x\n  SELECT 2 ;"
  local t = assert(sql.parse(text))
  local r = t.stmts[2]
  local s = sql.span(text, r.stmt_location, r.stmt_len)
  H.same(s, { text = "SELECT 2", offset = 19, length = 8, line = 3, end_line = 3 })
  H.eq(sql.span("  -- nothing", 0, 0), nil)
  H.raises(function() sql.span("abc", 10, 0) end, "location out of range")
end

T["fingerprint: same shape, same hex"] = function()
  local a = assert(sql.fingerprint("SELECT * FROM t WHERE id = 1"))
  local b = assert(sql.fingerprint("select *   from t where id = 42"))
  H.eq(a, b)
  H.ok(a:find("^%x+$"), a)
  local c, msg, err = sql.fingerprint("SELEC 1")
  H.eq(c, nil)
  H.contains(msg, "syntax error")
  H.eq(err.line, 1)
end

T["bad arguments raise"] = function()
  H.raises(function() sql.parse() end, "bad argument #1 to 'parse'")
  H.raises(function() sql.parse({}) end, "string expected")
  H.raises(function() sql.parse("select 1", "extra") end, "expected sql.parse(text)")
  H.raises(function() sql.split("select 1", 2) end, "expected sql.split(text)")
  H.raises(function() sql.fingerprint(nil) end, "bad argument #1 to 'fingerprint'")
end

T["many statements and repeated calls stay consistent"] = function()
  local parts = {}
  for i = 1, 300 do parts[#parts + 1] = ("ALTER TYPE \"S\" ADD VALUE 'V%d';"):format(i) end
  local text = table.concat(parts, "\n")
  for _ = 1, 3 do
    local list = assert(sql.split(text))
    H.eq(#list, 300)
    H.eq(list[300].line, 300)
    H.eq(#assert(sql.parse(text)).stmts, 300)
  end
end

-- sql.statements gives what sql.parse + sql.span give, a part of the text at
-- a time: the same trees (locations in the whole text), the same spans
local TRICKY = table.concat({
  "-- a comment that ends with a semicolon;",
  'CREATE TABLE "A" ("id" INTEGER NOT NULL, -- note;',
  "  \"b\" TEXT DEFAULT 'x;",
  "y', CONSTRAINT \"A_pkey\" PRIMARY KEY (\"id\"));",
  "/* block comment;",
  "still comment; */",
  "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$",
  "BEGIN",
  "  NEW.b := 'z';",
  "  RETURN NEW;",
  "END;",
  "$$;",
  "CREATE FUNCTION g() RETURNS int LANGUAGE sql",
  "BEGIN ATOMIC",
  "  SELECT 1;",
  "  SELECT 2;",
  "END;",
  'CREATE RULE r AS ON INSERT TO "A" DO ALSO (',
  "  NOTIFY a;",
  "  NOTIFY b;",
  ");",
  "SELECT 1 -- x;",
  "+ 2;",
  ";;",
  "INSERT INTO \"A\" (\"id\", \"b\") VALUES (1, E'it\\'s;",
  "fine');",
  "SELECT 'é;",
  "ü'", -- no final ';'
}, "\n")

local function same(a, b, path)
  if type(a) ~= type(b) then error(("%s: %s vs %s"):format(path, tostring(a), tostring(b)), 0) end
  if type(a) ~= "table" then
    if a ~= b then error(("%s: %s vs %s"):format(path, tostring(a), tostring(b)), 0) end
    return
  end
  for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
  for k in pairs(b) do if a[k] == nil then error(path .. "." .. tostring(k) .. " missing", 0) end end
end

T["statements: the trees and spans of parse + span, in parts of any size"] = function()
  local tree = assert(sql.parse(TRICKY))
  for _, part in ipairs({ 1, 2, 7, 40, 300, 100000 }) do
    local i = 0
    for raw, span in sql.statements(TRICKY, part) do
      H.ok(raw ~= false, "no error")
      i = i + 1
      local want = tree.stmts[i]
      same(raw.stmt, want.stmt, ("part %d stmt %d"):format(part, i))
      same(span, sql.span(TRICKY, want.stmt_location or 0, want.stmt_len or 0), ("part %d span %d"):format(part, i))
    end
    H.eq(i, #tree.stmts, "statements with parts of " .. part .. " bytes")
  end
end

T["statements: a syntax error comes as false, message, err with the whole text's position"] = function()
  local text = "SELECT 1;\nSELECT 2;\nSELEC 3;\nSELECT 4;\n"
  local _, msg, err = sql.parse(text)
  for _, part in ipairs({ 1, 4, 1000 }) do
    local got
    for raw, m, e in sql.statements(text, part) do
      if raw == false then got = { m, e } break end
    end
    H.ok(got, "an error")
    H.eq(got[1], msg)
    H.eq(got[2].line, err.line)
    H.eq(got[2].column, err.column)
    H.eq(got[2].cursorpos, err.cursorpos)
  end
  -- characters, not bytes, before the part
  local t2 = "SELECT 'é';\nSELECT 'ü';\nSELECT $$x;\n"
  local _, m2, e2 = sql.parse(t2)
  for raw, m, e in sql.statements(t2, 3) do
    if raw == false then H.eq(m, m2); H.eq(e.cursorpos, e2.cursorpos); H.eq(e.line, e2.line) end
  end
end

T["statements: 20,000 statements in parts, lines counted once"] = function()
  local lines = {}
  for i = 1, 20000 do lines[i] = ("INSERT INTO t VALUES (%d, 'x;');"):format(i) end
  local text = table.concat(lines, "\n") .. "\n"
  local n, last = 0, nil
  for raw, span in sql.statements(text, 4096) do
    n = n + 1
    H.eq(span.line, n)
    H.eq(raw.stmt.InsertStmt.relation.relname, "t")
    last = raw
  end
  H.eq(n, 20000)
  H.eq(last.stmt_location, #text - #lines[20000] - 2) -- just after the previous ';', as sql.parse has it
  H.raises(function() sql.statements(text, 0) end, "part_bytes")
  H.raises(function() sql.statements(text, 1, 2) end, "too many arguments")
end

return T
