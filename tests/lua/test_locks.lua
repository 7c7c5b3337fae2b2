-- migfix.locks against a real server: every row of locks.FACTS is run.
-- Transactional kinds: BEGIN; statement; read pg_locks of our own backend
-- and pg_class.relfilenode; ROLLBACK. Non-transactional kinds: 25001 inside
-- a transaction block, then the lock the statement requests is read from
-- pg_locks while a second session blocks it (psql in the background), and
-- relfilenode after it ran. Each case also checks that locks.classify maps
-- the statement (parsed with effects.analyze) to the key.
local H = require "helper"
local db = require "migfix.db"
local proc = require "migfix.proc"
local sys = require "migfix.sys"
local locks = require "migfix.locks"
local effects = require "migfix.effects"
local sql = require "migfix.sql"

local T = {}

local BASE = [[
DROP SCHEMA IF EXISTS c CASCADE; DROP SCHEMA IF EXISTS c2 CASCADE; CREATE SCHEMA c;
CREATE TABLE c.r (id int PRIMARY KEY);
INSERT INTO c.r SELECT g FROM generate_series(1, 100) g;
CREATE TABLE c.t (id int PRIMARY KEY, a int, v varchar(10), s text, rid int);
INSERT INTO c.t SELECT g, g, 'x', 'y', g FROM generate_series(1, 100) g;
CREATE INDEX t_a_idx ON c.t (a);
CREATE FUNCTION c.trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
]]

-- key -> { stmt, table = relation to read locks on, ref = referenced relation,
--          setup = extra SQL, rewrite = expected (default: fact.rewrite == true) }
local CASES = {
  { "create_table", "CREATE TABLE c.n (id int)", table = "c.n" },
  { "alter_table.add_column", "ALTER TABLE c.t ADD COLUMN x int DEFAULT 0" },
  { "alter_table.add_column_volatile_default", "ALTER TABLE c.t ADD COLUMN x float8 DEFAULT random()" },
  { "alter_table.add_column_volatile_default", "ALTER TABLE c.t ADD COLUMN x uuid DEFAULT gen_random_uuid()" },
  { "alter_table.add_column_identity", "ALTER TABLE c.t ADD COLUMN x int GENERATED ALWAYS AS IDENTITY" },
  { "alter_table.add_column_generated", "ALTER TABLE c.t ADD COLUMN x int GENERATED ALWAYS AS (a * 2) STORED" },
  { "alter_table.drop_column", "ALTER TABLE c.t DROP COLUMN s" },
  { "alter_table.alter_type", "ALTER TABLE c.t ALTER COLUMN a TYPE bigint", rewrite = true, old = "integer", new = "bigint" },
  { "alter_table.alter_type", "ALTER TABLE c.t ALTER COLUMN v TYPE varchar(20)", rewrite = false, old = "character varying(10)", new = "character varying(20)" },
  { "alter_table.alter_type", "ALTER TABLE c.t ALTER COLUMN v TYPE text", rewrite = false, old = "character varying(10)", new = "text" },
  { "alter_table.set_not_null", "ALTER TABLE c.t ALTER COLUMN a SET NOT NULL" },
  { "alter_table.drop_not_null", "ALTER TABLE c.t ALTER COLUMN s DROP NOT NULL", setup = "ALTER TABLE c.t ALTER COLUMN s SET NOT NULL" },
  { "alter_table.set_default", "ALTER TABLE c.t ALTER COLUMN a SET DEFAULT 1" },
  { "alter_table.drop_default", "ALTER TABLE c.t ALTER COLUMN a DROP DEFAULT" },
  { "alter_table.add_constraint_fk", "ALTER TABLE c.t ADD CONSTRAINT f FOREIGN KEY (rid) REFERENCES c.r (id)", ref = "c.r" },
  { "alter_table.add_constraint_fk_not_valid", "ALTER TABLE c.t ADD CONSTRAINT f FOREIGN KEY (rid) REFERENCES c.r (id) NOT VALID", ref = "c.r" },
  { "alter_table.add_constraint_check", "ALTER TABLE c.t ADD CONSTRAINT ck CHECK (a > 0)" },
  { "alter_table.add_constraint_check_not_valid", "ALTER TABLE c.t ADD CONSTRAINT ck CHECK (a > 0) NOT VALID" },
  { "alter_table.add_constraint_unique", "ALTER TABLE c.t ADD CONSTRAINT u UNIQUE (a)" },
  { "alter_table.add_constraint_primary_key", "ALTER TABLE c.t ADD PRIMARY KEY (id)", setup = "ALTER TABLE c.t DROP CONSTRAINT t_pkey" },
  { "alter_table.add_constraint_exclusion", "ALTER TABLE c.t ADD CONSTRAINT x EXCLUDE USING btree (a WITH =)" },
  { "alter_table.add_constraint_using_index", "ALTER TABLE c.t ADD CONSTRAINT u UNIQUE USING INDEX t_a_u", setup = "CREATE UNIQUE INDEX t_a_u ON c.t (a)" },
  { "alter_table.validate_constraint", "ALTER TABLE c.t VALIDATE CONSTRAINT ck", setup = "ALTER TABLE c.t ADD CONSTRAINT ck CHECK (a > 0) NOT VALID" },
  { "alter_table.drop_constraint", "ALTER TABLE c.t DROP CONSTRAINT ck", setup = "ALTER TABLE c.t ADD CONSTRAINT ck CHECK (a > 0)" },
  { "alter_table.set_schema", "ALTER TABLE c.t SET SCHEMA c2", setup = "CREATE SCHEMA c2" },
  { "alter_table.attach_partition", "ALTER TABLE c.p ATTACH PARTITION c.p1 FOR VALUES FROM (0) TO (10)", table = "c.p",
    setup = "CREATE TABLE c.p (id int) PARTITION BY RANGE (id); CREATE TABLE c.p1 (id int)" },
  { "alter_table.detach_partition", "ALTER TABLE c.p DETACH PARTITION c.p1", table = "c.p",
    setup = "CREATE TABLE c.p (id int) PARTITION BY RANGE (id); CREATE TABLE c.p1 PARTITION OF c.p FOR VALUES FROM (0) TO (10)" },
  { "alter_table.detach_partition_concurrently", "ALTER TABLE c.p DETACH PARTITION c.p1 CONCURRENTLY", table = "c.p",
    setup = "CREATE TABLE c.p (id int) PARTITION BY RANGE (id); CREATE TABLE c.p1 PARTITION OF c.p FOR VALUES FROM (0) TO (10)" },
  { "alter_table.set_statistics", "ALTER TABLE c.t ALTER COLUMN a SET STATISTICS 200" },
  { "alter_table.enable_trigger", "ALTER TABLE c.t DISABLE TRIGGER tr",
    setup = "CREATE TRIGGER tr BEFORE UPDATE ON c.t FOR EACH ROW EXECUTE FUNCTION c.trg()" },
  { "alter_table.other", "ALTER TABLE c.t ALTER COLUMN s SET STORAGE EXTERNAL" },
  { "rename", "ALTER TABLE c.t RENAME COLUMN s TO s2" },
  { "rename", "ALTER TABLE c.t RENAME TO t2" },
  { "create_index", "CREATE INDEX i ON c.t (s)" },
  { "create_index", "CREATE UNIQUE INDEX i ON c.t (id, a)" },
  { "create_index_concurrently", "CREATE INDEX CONCURRENTLY i ON c.t (s)" },
  { "drop_index", "DROP INDEX c.t_a_idx" },
  { "drop_index_concurrently", "DROP INDEX CONCURRENTLY c.t_a_idx" },
  { "reindex", "REINDEX TABLE c.t" },
  { "reindex_concurrently", "REINDEX TABLE CONCURRENTLY c.t" },
  { "create_trigger", "CREATE TRIGGER tr BEFORE UPDATE ON c.t FOR EACH ROW EXECUTE FUNCTION c.trg()" },
  { "drop_trigger", "DROP TRIGGER tr ON c.t", setup = "CREATE TRIGGER tr BEFORE UPDATE ON c.t FOR EACH ROW EXECUTE FUNCTION c.trg()" },
  { "drop_table", "DROP TABLE c.t" },
  { "truncate", "TRUNCATE c.t" },
  { "alter_type_add_value", "ALTER TYPE c.e ADD VALUE 'b'", setup = "CREATE TYPE c.e AS ENUM ('a')" },
  { "refresh_matview", "REFRESH MATERIALIZED VIEW c.m", table = "c.m", setup = "CREATE MATERIALIZED VIEW c.m AS SELECT * FROM c.t" },
  { "refresh_matview_concurrently", "REFRESH MATERIALIZED VIEW CONCURRENTLY c.m", table = "c.m",
    setup = "CREATE MATERIALIZED VIEW c.m AS SELECT * FROM c.t; CREATE UNIQUE INDEX ON c.m (id)" },
  { "vacuum", "VACUUM c.t" },
  { "vacuum_full", "VACUUM FULL c.t" },
  { "analyze", "ANALYZE c.t" },
  { "cluster", "CLUSTER c.t USING t_pkey" },
  { "comment", "COMMENT ON TABLE c.t IS 'tickets'" },
  { "lock_table", "LOCK TABLE c.t IN SHARE ROW EXCLUSIVE MODE", level = "SHARE ROW EXCLUSIVE" },
  { "insert", "INSERT INTO c.t (id) SELECT g FROM generate_series(1000, 1010) g" },
  { "update", "UPDATE c.t SET a = a + 1" },
  { "delete", "DELETE FROM c.t WHERE id < 10" },
  { "merge", "MERGE INTO c.t USING c.r ON c.t.id = c.r.id WHEN MATCHED THEN UPDATE SET a = 1" },
  { "copy", "COPY c.t (id) FROM '/dev/null'" },
  { "set", "SET lock_timeout = '1s'" },
  { "tx_control", "SAVEPOINT sp1", in_tx_only = true },
  { "other", "CREATE TYPE c.mood AS ENUM ('ok')" },
}

local conn, url
local function setup_db()
  if conn then return end
  local _, u = H.fresh_db()
  url = u
  conn = assert(db.connect(url))
end

local function must(c, q)
  local ok, err = c:exec(q)
  if not ok then error(("could not run %q: %s"):format(q, tostring(err)), 2) end
end

local function relfilenode(c, oid)
  if not oid then return nil end
  local rows = assert(c:query("SELECT relfilenode::int8 AS f FROM pg_class WHERE oid = $1::oid", oid))
  return rows[1] and rows[1].f or nil
end

local function oid_of(c, rel)
  local rows = assert(c:query("SELECT to_regclass($1)::oid::int8 AS o", rel))
  return not db.isnull(rows[1].o) and rows[1].o or nil
end

-- strongest lock our backend holds on relation oid
local function own_lock(c, oid)
  local rows = assert(c:query([[SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'
    AND relation = $1::oid AND granted]], oid))
  local best
  for _, r in ipairs(rows) do best = locks.max(best, locks.FROM_PG_MODE[r.mode]) end
  return best
end

-- the lock a non-transactional statement requests on rel, read while a
-- second session holds EXCLUSIVE on rel (psql waits in the background;
-- EXCLUSIVE lets the ACCESS SHARE name lookup of VACUUM through, and
-- conflicts with every level from ROW SHARE up)
local function requested_lock(stmt, rel)
  local blocker = assert(db.connect(url))
  must(blocker, "BEGIN")
  must(blocker, ("LOCK TABLE %s IN EXCLUSIVE MODE"):format(rel))
  local h = assert(proc.spawn { argv = { "psql", "-qAtX", "-d", (url:gsub("%?.*$", "")), "-c", stmt },
                                env = { PGAPPNAME = "migfix_lockprobe" }, stdout = "/dev/null", stderr = "/dev/null" })
  local mode
  local deadline = sys.now_ms() + 5000
  while sys.now_ms() < deadline do
    local rows = assert(conn:query([[SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE a.application_name = 'migfix_lockprobe' AND NOT l.granted AND l.relation = to_regclass($1)]], rel))
    if rows[1] then mode = rows[1].mode break end
    sys.sleep_ms(20)
  end
  must(blocker, "ROLLBACK")
  local st = h:wait()
  blocker:close()
  return mode and locks.FROM_PG_MODE[mode], st
end

local function classify_keys(stmt)
  local unit = assert(effects.analyze(stmt .. ";\n", "case.sql"))
  local s = unit.statements[1]
  local tree = sql.parse(s.text)
  local node = tree.stmts[1].stmt
  local list = {}
  local e = {}
  for _, x in ipairs(unit.effects) do if x.stmt == 1 then e[#e + 1] = x end end
  for _, a in ipairs(locks.actions(s, e, node)) do list[#list + 1] = a end
  return list
end

T["every key of locks.FACTS has a case here"] = function()
  local have = {}
  for _, c in ipairs(CASES) do have[c[1]] = true end
  for key in pairs(locks.FACTS) do H.ok(have[key], "no server case for " .. key) end
end

T["lock levels: order, pg_locks names, blocks reads/writes"] = function()
  H.eq(locks.rank("ACCESS SHARE"), 1)
  H.eq(locks.rank("ACCESS EXCLUSIVE"), 8)
  H.eq(locks.max("SHARE", "ROW EXCLUSIVE"), "SHARE")
  H.eq(locks.PG_MODE["SHARE UPDATE EXCLUSIVE"], "ShareUpdateExclusiveLock")
  H.eq(locks.FROM_PG_MODE.AccessExclusiveLock, "ACCESS EXCLUSIVE")
  H.eq(locks.blocks_reads("ACCESS EXCLUSIVE"), true)
  H.eq(locks.blocks_reads("EXCLUSIVE"), false)
  H.eq(locks.blocks_writes("SHARE"), true)
  H.eq(locks.blocks_writes("SHARE UPDATE EXCLUSIVE"), false)
  H.raises(function() locks.rank("BIG") end, "unrecognized lock level")
  H.raises(function() locks.fact("nope") end, "unrecognized statement kind")
end

T["binary-coercible type changes and volatile defaults"] = function()
  H.eq(locks.binary_coercible("character varying(10)", "character varying(20)"), true)
  H.eq(locks.binary_coercible("character varying(20)", "character varying(10)"), false)
  H.eq(locks.binary_coercible("character varying(191)", "text"), true)
  H.eq(locks.binary_coercible("text", "character varying(10)"), false)
  H.eq(locks.binary_coercible("integer", "bigint"), false)
  H.eq(locks.binary_coercible("numeric(10,2)", "numeric(12,2)"), true)
  H.eq(locks.binary_coercible("numeric(10,2)", "numeric(12,3)"), false)
  H.eq(locks.volatile_default("CURRENT_TIMESTAMP"), false)
  H.eq(locks.volatile_default("now()"), false)
  H.eq(locks.volatile_default("'OPEN'::\"Status\""), false)
  H.eq(locks.volatile_default("gen_random_uuid()"), true)
  H.eq(locks.volatile_default("nextval('x_seq'::regclass)"), true)
end

T["facts match the server: pg_locks of our own backend, relfilenode, 25001"] = function()
  setup_db()
  local problems = {}
  for _, c in ipairs(CASES) do
    local key, stmt = c[1], c[2]
    local f = locks.FACTS[key]
    local rel = c.table or "c.t"
    local function bad(msg) problems[#problems + 1] = ("%s (%s): %s"):format(key, stmt, msg) end
    -- the classifier
    local found = false
    for _, a in ipairs(classify_keys(stmt)) do
      if a.key == key then
        found = true
        if c.level and a.lock ~= c.level then bad("classified lock " .. tostring(a.lock)) end
      end
    end
    if not found then bad("locks.classify does not give this key") end
    must(conn, BASE)
    if c.setup then must(conn, c.setup) end
    local oid = oid_of(conn, rel)
    local before = relfilenode(conn, oid)
    local want_lock = c.level or f.lock
    local want_rewrite = c.rewrite
    if want_rewrite == nil then want_rewrite = f.rewrite == true end
    if c.old then
      if locks.binary_coercible(c.old, c.new) == want_rewrite then bad("binary_coercible disagrees") end
    end
    if f.transactional == false then
      must(conn, "BEGIN")
      local ok, _, info = conn:exec(stmt)
      must(conn, "ROLLBACK")
      if ok or (info and info.sqlstate) ~= "25001" then bad("ran inside a transaction block (expected 25001)") end
      local got = requested_lock(stmt, rel)
      if got ~= want_lock then bad(("requests %s, table says %s"):format(tostring(got), tostring(want_lock))) end
      local after = relfilenode(conn, oid)
      if (after ~= before) ~= want_rewrite then bad(("relfilenode %s -> %s, rewrite %s"):format(before, after, tostring(want_rewrite))) end
    else
      must(conn, "BEGIN")
      local ok, err = conn:exec(stmt)
      if not ok then
        bad("failed: " .. tostring(err))
      else
        if not oid then oid = oid_of(conn, rel) end
        local got = own_lock(conn, oid)
        if key ~= "drop_table" or got ~= nil then
          if got ~= want_lock then bad(("holds %s, table says %s"):format(tostring(got), tostring(want_lock))) end
        end
        if f.also then
          local g2 = own_lock(conn, oid_of(conn, c.ref))
          if g2 ~= f.also then bad(("holds %s on %s, table says %s"):format(tostring(g2), c.ref, f.also)) end
        end
        local after = relfilenode(conn, oid)
        if before and after and (after ~= before) ~= want_rewrite then
          bad(("relfilenode %s -> %s, rewrite %s"):format(before, after, tostring(want_rewrite)))
        end
      end
      must(conn, "ROLLBACK")
      if f.transactional == "since PG 12" and conn:server_version() < 120000 then bad("ran in a transaction before PG 12") end
    end
  end
  if #problems > 0 then error(#problems .. " fact(s) disagree with the server:\n  " .. table.concat(problems, "\n  ")) end
end

return T
