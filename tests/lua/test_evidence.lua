-- Every (kind, action) migfix.effects can emit has a positive catalog check
-- in migfix.verify, proved on the test server: the object is built for
-- real, snapshotted, and the check finds the effect done; in the state
-- before it (the object not there, or still there for a drop) the check
-- reports it not done. Kinds the catalog cannot show are `unverifiable`,
-- with a reason, in both states. The walk enumerates effects.EMITS, the
-- table emit() refuses to go beyond, so a new kind or action without a
-- recipe here — and a check in verify — fails this test.
local h = require "helper"
local effects = require "migfix.effects"
local verify = require "migfix.verify"
local catalog = require "migfix.catalog"
local db = require "migfix.db"

local T = {}

-- Shared setup objects (each recipe lists what it needs).
local S = {
  schema = "CREATE SCHEMA w_s;",
  other = "CREATE SCHEMA w_o;",
  table = "CREATE TABLE w_t (a integer, b text);",
  index = "CREATE INDEX w_i ON w_t (a);",
  check = "ALTER TABLE w_t ADD CONSTRAINT w_c CHECK (a > 0);",
  check_nv = "ALTER TABLE w_t ADD CONSTRAINT w_c CHECK (a > 0) NOT VALID;",
  enum = "CREATE TYPE w_e AS ENUM ('a');",
  seq = "CREATE SEQUENCE w_q;",
  view = "CREATE VIEW w_v AS SELECT 1 AS x;",
  matview = "CREATE MATERIALIZED VIEW w_m AS SELECT 1 AS x;",
  func = "CREATE FUNCTION w_f(a integer) RETURNS integer LANGUAGE sql AS 'SELECT 1';",
  trigfunc = "CREATE FUNCTION w_tf() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';",
  trigger = "CREATE TRIGGER w_tg BEFORE INSERT ON w_t FOR EACH ROW EXECUTE FUNCTION w_tf();",
  ext = "CREATE EXTENSION pg_trgm;",
  composite = "CREATE TYPE w_ty AS (a integer);",
  domain = "CREATE DOMAIN w_d AS integer;",
}

-- recipes[kind][action] = { { setup = {S keys}, sql = ..., expect = "checked"|"unverifiable", name = ... }, ... }
local R = {
  schema = {
    create = { { sql = "CREATE SCHEMA w_s" } },
    drop = { { setup = { "schema" }, sql = "DROP SCHEMA w_s" } },
    rename = { { setup = { "schema" }, sql = "ALTER SCHEMA w_s RENAME TO w_s2" } },
  },
  table = {
    create = { { sql = "CREATE TABLE w_t (a integer)" }, { sql = "CREATE TABLE w_t AS SELECT 1 AS a", name = "CREATE TABLE AS" } },
    alter = { { setup = { "other", "table" }, sql = "ALTER TABLE w_t SET SCHEMA w_o" } },
    drop = { { setup = { "table" }, sql = "DROP TABLE w_t" } },
    rename = { { setup = { "table" }, sql = "ALTER TABLE w_t RENAME TO w_t2" } },
  },
  column = {
    create = { { setup = { "table" }, sql = "ALTER TABLE w_t ADD COLUMN c text" } },
    alter = { { setup = { "table" }, sql = "ALTER TABLE w_t ALTER COLUMN a TYPE bigint" },
              { setup = { "table" }, sql = "ALTER TABLE w_t ALTER COLUMN a SET NOT NULL" },
              { setup = { "table" }, sql = "ALTER TABLE w_t ALTER COLUMN a SET DEFAULT 7" } },
    drop = { { setup = { "table" }, sql = "ALTER TABLE w_t DROP COLUMN b" } },
    rename = { { setup = { "table" }, sql = "ALTER TABLE w_t RENAME COLUMN a TO z" } },
  },
  index = {
    create = { { setup = { "table" }, sql = "CREATE INDEX w_i ON w_t (a)" } },
    drop = { { setup = { "table", "index" }, sql = "DROP INDEX w_i" } },
    rename = { { setup = { "table", "index" }, sql = "ALTER INDEX w_i RENAME TO w_i2" } },
  },
  constraint = {
    create = { { setup = { "table" }, sql = "ALTER TABLE w_t ADD CONSTRAINT w_c CHECK (a > 0)" },
               { setup = { "table" }, sql = "ALTER TABLE w_t ADD PRIMARY KEY (a)", name = "generated name" } },
    alter = { { setup = { "table", "check_nv" }, sql = "ALTER TABLE w_t VALIDATE CONSTRAINT w_c" } },
    drop = { { setup = { "table", "check" }, sql = "ALTER TABLE w_t DROP CONSTRAINT w_c" } },
    rename = { { setup = { "table", "check" }, sql = "ALTER TABLE w_t RENAME CONSTRAINT w_c TO w_c2" } },
  },
  enum = {
    create = { { sql = "CREATE TYPE w_e AS ENUM ('a', 'b')" } },
    -- "enum" only when the file shows the type is one (here: ADD VALUE first)
    alter = { { setup = { "other", "enum" }, sql = "ALTER TYPE w_e ADD VALUE 'b'; ALTER TYPE w_e SET SCHEMA w_o" } },
    drop = { { setup = { "enum" }, sql = "ALTER TYPE w_e ADD VALUE 'b'; DROP TYPE w_e" } },
    rename = { { setup = { "enum" }, sql = "ALTER TYPE w_e ADD VALUE 'b'; ALTER TYPE w_e RENAME TO w_e2" } },
  },
  enum_value = {
    create = { { setup = { "enum" }, sql = "ALTER TYPE w_e ADD VALUE 'b'" } },
    rename = { { setup = { "enum" }, sql = "ALTER TYPE w_e RENAME VALUE 'a' TO 'z'" } },
  },
  sequence = {
    create = { { sql = "CREATE SEQUENCE w_q" } },
    alter = { { setup = { "other", "seq" }, sql = "ALTER SEQUENCE w_q SET SCHEMA w_o" },
              { setup = { "seq" }, sql = "ALTER SEQUENCE w_q RESTART WITH 100", expect = "unverifiable" } },
    drop = { { setup = { "seq" }, sql = "DROP SEQUENCE w_q" } },
    rename = { { setup = { "seq" }, sql = "ALTER SEQUENCE w_q RENAME TO w_q2" } },
  },
  view = {
    create = { { sql = "CREATE VIEW w_v AS SELECT 1 AS x" } },
    alter = { { setup = { "other", "view" }, sql = "ALTER VIEW w_v SET SCHEMA w_o" } },
    drop = { { setup = { "view" }, sql = "DROP VIEW w_v" } },
    rename = { { setup = { "view" }, sql = "ALTER VIEW w_v RENAME TO w_v2" } },
  },
  matview = {
    create = { { sql = "CREATE MATERIALIZED VIEW w_m AS SELECT 1 AS x" } },
    alter = { { setup = { "other", "matview" }, sql = "ALTER MATERIALIZED VIEW w_m SET SCHEMA w_o" } },
    drop = { { setup = { "matview" }, sql = "DROP MATERIALIZED VIEW w_m" } },
    rename = { { setup = { "matview" }, sql = "ALTER MATERIALIZED VIEW w_m RENAME TO w_m2" } },
  },
  ["function"] = {
    create = { { sql = "CREATE FUNCTION w_f(a integer) RETURNS integer LANGUAGE sql AS 'SELECT 2'" } },
    alter = { { setup = { "other", "func" }, sql = "ALTER FUNCTION w_f(integer) SET SCHEMA w_o" } },
    drop = { { setup = { "func" }, sql = "DROP FUNCTION w_f(integer)" } },
    rename = { { setup = { "func" }, sql = "ALTER FUNCTION w_f(integer) RENAME TO w_f2" } },
  },
  trigger = {
    create = { { setup = { "table", "trigfunc" }, sql = "CREATE TRIGGER w_tg BEFORE INSERT ON w_t FOR EACH ROW EXECUTE FUNCTION w_tf()" } },
    drop = { { setup = { "table", "trigfunc", "trigger" }, sql = "DROP TRIGGER w_tg ON w_t" } },
    rename = { { setup = { "table", "trigfunc", "trigger" }, sql = "ALTER TRIGGER w_tg ON w_t RENAME TO w_tg2" } },
  },
  extension = {
    create = { { sql = "CREATE EXTENSION pg_trgm" } },
    alter = { { setup = { "other", "ext" }, sql = "ALTER EXTENSION pg_trgm SET SCHEMA w_o" } },
    drop = { { setup = { "ext" }, sql = "DROP EXTENSION pg_trgm" } },
  },
  type = {
    create = { { sql = "CREATE TYPE w_ty AS (a integer)" }, { sql = "CREATE DOMAIN w_d AS integer" },
               { sql = "CREATE TYPE w_r AS RANGE (subtype = integer)" } },
    alter = { { setup = { "other", "composite" }, sql = "ALTER TYPE w_ty SET SCHEMA w_o" } },
    -- the file cannot tell what kind of type it drops or renames: an enum of an earlier migration
    drop = { { setup = { "composite" }, sql = "DROP TYPE w_ty" }, { setup = { "enum" }, sql = "DROP TYPE w_e", name = "an enum" },
             { setup = { "domain" }, sql = "DROP DOMAIN w_d" } },
    rename = { { setup = { "composite" }, sql = "ALTER TYPE w_ty RENAME TO w_ty2" },
               { setup = { "enum" }, sql = "ALTER TYPE w_e RENAME TO w_e2", name = "an enum" } },
  },
  data = { unverifiable = { { setup = { "table" }, sql = "INSERT INTO w_t VALUES (1, 'x')", expect = "unverifiable" },
                            { setup = { "table" }, sql = "UPDATE w_t SET a = 1", expect = "unverifiable" } } },
  ["do"] = { unverifiable = { { setup = { "table" }, sql = "DO $$ BEGIN EXECUTE 'ALTER TABLE w_t ADD COLUMN q int'; END $$", expect = "unverifiable" },
                              { setup = { "table" }, sql = "DO $$ BEGIN PERFORM count(*) FROM w_t; END $$", expect = "unverifiable", name = "PERFORM" } } },
  other = { unverifiable = { { setup = { "table" }, sql = "GRANT SELECT ON w_t TO PUBLIC", expect = "unverifiable" },
                             { setup = { "table" }, sql = "ALTER TABLE w_t ENABLE ROW LEVEL SECURITY", expect = "unverifiable" },
                             { sql = "SET lock_timeout = '2s'", expect = "unverifiable" } } },
}

-- COMMENT ON every kind effects can name: set (create) and removed (drop)
local COMMENT_TARGET = {
  table = { { "table" }, "TABLE w_t" }, view = { { "view" }, "VIEW w_v" }, matview = { { "matview" }, "MATERIALIZED VIEW w_m" },
  index = { { "table", "index" }, "INDEX w_i" }, sequence = { { "seq" }, "SEQUENCE w_q" },
  column = { { "table" }, "COLUMN w_t.a" }, type = { { "composite" }, "TYPE w_ty" },
  enum = { { "enum" }, "TYPE w_e", "ALTER TYPE w_e ADD VALUE 'b'; " },
  schema = { { "schema" }, "SCHEMA w_s" }, extension = { { "ext" }, "EXTENSION pg_trgm" },
  ["function"] = { { "func" }, "FUNCTION w_f(integer)" }, constraint = { { "table", "check" }, "CONSTRAINT w_c ON w_t" },
  trigger = { { "table", "trigfunc", "trigger" }, "TRIGGER w_tg ON w_t" },
}
R.comment = { create = {}, drop = {} }
for _, on in ipairs(effects.COMMENT_ON) do
  local t = COMMENT_TARGET[on]
  if t then
    local pre = t[3] or ""
    table.insert(R.comment.create, { setup = t[1], sql = pre .. "COMMENT ON " .. t[2] .. " IS 'hello'", name = "on " .. on, on = on })
    local setup = {}
    for _, k in ipairs(t[1]) do setup[#setup + 1] = k end
    setup[#setup + 1] = "COMMENT ON " .. t[2] .. " IS 'old';"
    table.insert(R.comment.drop, { setup = setup, sql = pre .. "COMMENT ON " .. t[2] .. " IS NULL", name = "on " .. on, on = on })
  end
end

local function setup_sql(list)
  local out = {}
  for _, k in ipairs(list or {}) do out[#out + 1] = S[k] or k end
  return table.concat(out, "\n")
end

local function snapshot(conn, unit)
  return assert(catalog.snapshot(conn, verify.schemas(unit, "public"), verify.names(unit)))
end

-- the item for the recipe's effect: the last effect of (kind, action)
local function item_for(ev, unit, kind, action)
  local eff
  for _, e in ipairs(unit.effects) do if e.kind == kind and e.action == action then eff = e end end
  assert(eff, ("the recipe emits no (%s, %s) effect"):format(kind, action))
  local name = eff.new_name or eff.name
  local cands = {}
  for _, it in ipairs(ev.items) do
    if it.kind == kind and (it.stmt == eff.stmt or (it.stmts and it.stmts[#it.stmts] == eff.stmt)) then cands[#cands + 1] = it end
  end
  for _, it in ipairs(cands) do if it.name == name then return it, eff end end
  return cands[1], eff
end

local function show(ev)
  local l = { ev.verdict .. ": " .. ev.summary }
  for _, it in ipairs(ev.items) do
    l[#l + 1] = ("  %s %s %s %s %s"):format(it.kind, tostring(it.name), it.action, it.state, it.reason or "")
  end
  return table.concat(l, "\n")
end

T["every (kind, action) effects.lua emits has a recipe, and verify a check for every checkable kind"] = function()
  local checks = verify.checks()
  for kind, actions in pairs(effects.EMITS) do
    local r = R[kind]
    h.ok(r, ("kind %s: no recipe in test_evidence.lua (a new effect kind needs one, and a catalog check in verify)"):format(kind))
    for _, action in ipairs(actions) do
      h.ok(r[action] and #r[action] > 0, ("(%s, %s): no recipe"):format(kind, action))
      local checked = false
      for _, rec in ipairs(r[action]) do if rec.expect ~= "unverifiable" then checked = true end end
      if action ~= "unverifiable" then
        h.ok(checked, ("(%s, %s): no recipe with a positive check"):format(kind, action))
        h.ok(checks[kind], ("verify has no catalog check for kind %s"):format(kind))
      else
        h.ok(not checks[kind], ("kind %s is declared unverifiable but verify claims a check"):format(kind))
      end
    end
  end
  for _, on in ipairs(effects.COMMENT_ON) do
    h.ok(COMMENT_TARGET[on], ("COMMENT ON %s: no recipe"):format(on))
  end
  -- and the handlers emit no kind outside the table (emit() would raise): scan them
  local src = h.read(h.root .. "/scripts/migfix/effects.lua")
  local seen = {}
  for k in src:gmatch('[%s{,]kind = "([%w_]+)"') do seen[k] = true end
  for k in src:gmatch('e%.kind = "([%w_]+)"') do seen[k] = true end
  for k in src:gmatch('unverifiable%(ctx, "([%w_]+)"') do seen[k] = true end
  for _, map in ipairs({ "DROPKIND", "RELKIND" }) do
    local body = src:match("local " .. map .. " = (%b{})")
    h.ok(body, map .. " table found")
    for k in body:gmatch('= "([%w_]+)"') do seen[k] = true end
  end
  for k in pairs(seen) do
    h.ok(effects.EMITS[k], ("effects.lua emits kind %s, which effects.EMITS does not declare"):format(k))
  end
end

-- one test per recipe
local kinds = {}
for k in pairs(R) do kinds[#kinds + 1] = k end
table.sort(kinds)
for _, kind in ipairs(kinds) do
  local actions = {}
  for a in pairs(R[kind]) do actions[#actions + 1] = a end
  table.sort(actions)
  for _, action in ipairs(actions) do
    for i, rec in ipairs(R[kind][action]) do
      local label = ("walk (%s, %s)%s: %s"):format(kind, action, rec.name and (" " .. rec.name) or "", rec.sql)
      T[label] = function()
        local unit = assert(effects.analyze(rec.sql))
        local _, url = h.fresh_db()
        local conn <close> = assert(db.connect(url))
        local setup = setup_sql(rec.setup)
        if setup ~= "" then assert(conn:exec(setup)) end
        local before = snapshot(conn, unit)
        assert(conn:exec(rec.sql))
        local after = snapshot(conn, unit)
        local ev0 = verify.compare(unit, before, "public")
        local ev1 = verify.compare(unit, after, "public")
        local it0, eff = item_for(ev0, unit, kind, action)
        local it1 = item_for(ev1, unit, kind, action)
        h.ok(it0 and it1, "an item for the effect:\n" .. show(ev1))
        if rec.on then h.eq(eff.on, rec.on, "COMMENT ON target kind") end
        if rec.expect == "unverifiable" then
          for _, it in ipairs({ it0, it1 }) do
            h.eq(it.state, "unverifiable", label)
            h.ok(type(it.reason) == "string" and #it.reason > 0, "a reason")
          end
        else
          h.ok(it1.class == "done", ("after the statement ran, the check finds it done:\n%s"):format(show(ev1)))
          h.eq(it1.reason, nil, "resolved, no reason")
          h.ok(it0.class == "not_done", ("before it ran, the check finds it not done:\n%s"):format(show(ev0)))
          h.eq(ev1.verdict, "complete", show(ev1))
          h.ok(ev0.verdict == "absent", show(ev0))
        end
      end
    end
  end
end

T["a name the snapshot did not read is unverifiable, not missing"] = function()
  local _, url = h.fresh_db()
  local conn <close> = assert(db.connect(url))
  local unit = assert(effects.analyze("DROP TYPE \"Plan\"; CREATE TABLE x (a int);"))
  -- the snapshot read other names only
  local snap = assert(catalog.snapshot(conn, { "public" }, { "x" }))
  local ev = verify.compare(unit, snap, "public")
  local it = ev.items[1]
  h.eq(it.kind, "type")
  h.eq(it.state, "unverifiable")
  h.contains(it.reason, "not among the names")
  -- and a schema it did not read
  local unit2 = assert(effects.analyze("CREATE TABLE app.y (a int);"))
  local ev2 = verify.compare(unit2, assert(catalog.snapshot(conn, { "public" })), "public")
  h.eq(ev2.items[1].state, "unverifiable")
  h.contains(ev2.items[1].reason, "schema \"app\"")
end

T["a name taken by another kind of relation: absent for a drop, a kind difference for a create"] = function()
  local _, url = h.fresh_db()
  local conn <close> = assert(db.connect(url))
  assert(conn:exec("CREATE TABLE t (a int); CREATE INDEX x ON t (a); CREATE SEQUENCE s;"))
  local unit = assert(effects.analyze("DROP TABLE x; CREATE VIEW s AS SELECT 1;"))
  local ev = verify.compare(unit, snapshot(conn, unit), "public")
  h.eq(ev.items[1].state, "absent", "no table named x: the index x is another relation")
  h.eq(ev.items[2].state, "different")
  h.eq(ev.items[2].diffs[1].field, "kind")
  h.eq(ev.items[2].diffs[1].found, "sequence")
end

return T
