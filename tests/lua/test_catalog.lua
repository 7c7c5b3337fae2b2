-- migfix.catalog against the test server: build objects with psql, take a
-- snapshot, check its fields. Uses migfix.db/migfix.json when they are built
-- in; without migfix.db the same SQL (catalog.query_text) runs through psql.
local H = require "helper"
local catalog = require "migfix.catalog"
local db_ok, db = pcall(require, "migfix.db")
local json_ok, json = pcall(require, "migfix.json")
local have_db = db_ok and type(db) == "table" and type(db.connect) == "function"
local have_json = json_ok and type(json) == "table" and type(json.decode) == "function"

local T = {}

local SETUP = [[
CREATE SCHEMA app;
CREATE TYPE app."Role" AS ENUM ('USER', 'ADMIN');
CREATE TYPE "TicketStatus" AS ENUM ('OPEN', 'DONE', 'CLOSED');
ALTER TYPE "TicketStatus" ADD VALUE 'NEW' BEFORE 'OPEN';
CREATE TABLE "User" (id SERIAL PRIMARY KEY, email varchar(191) NOT NULL, role app."Role" NOT NULL DEFAULT 'USER');
CREATE UNIQUE INDEX "User_email_key" ON "User"(email);
CREATE TABLE "Ticket" (
  id integer NOT NULL, title text NOT NULL, status "TicketStatus" NOT NULL DEFAULT 'OPEN',
  price numeric(65,30), "createdAt" timestamp(3) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "ownerId" integer, tags text[], dropped_col int,
  CONSTRAINT "Ticket_pkey" PRIMARY KEY (id), CHECK (price > 0));
ALTER TABLE "Ticket" DROP COLUMN dropped_col;
ALTER TABLE "Ticket" ADD CONSTRAINT "Ticket_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "User"(id) ON DELETE SET NULL ON UPDATE CASCADE NOT VALID;
CREATE INDEX "Ticket_lower_title_idx" ON "Ticket" (lower(title), id) INCLUDE (price) WHERE status <> 'CLOSED';
CREATE INDEX "Ticket_tags_idx" ON "Ticket" USING gin (tags);
CREATE TABLE "Part" (id int, at date) PARTITION BY RANGE (at);
CREATE VIEW open_tickets AS SELECT id, title FROM "Ticket";
CREATE MATERIALIZED VIEW ticket_counts AS SELECT count(*) AS n FROM "Ticket";
CREATE SEQUENCE app.counter INCREMENT 5;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE FUNCTION add2(a integer, b text) RETURNS integer LANGUAGE sql AS 'SELECT a';
CREATE FUNCTION add2(a bigint) RETURNS integer LANGUAGE sql AS 'SELECT 1';
CREATE PROCEDURE app.noop() LANGUAGE sql AS 'SELECT 1';
CREATE TRIGGER ticket_touch BEFORE UPDATE ON "Ticket" FOR EACH ROW EXECUTE FUNCTION touch(1, 'x');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN positive AS int NOT NULL CHECK (VALUE > 0);
CREATE EXTENSION IF NOT EXISTS pgcrypto;
COMMENT ON TABLE "Ticket" IS 'tickets';
COMMENT ON COLUMN "Ticket".title IS 'the title';
COMMENT ON TYPE "TicketStatus" IS 'status';
INSERT INTO "Ticket" (id, title) VALUES (1, 'a'), (2, 'a');
]]

local function setup(extra)
  local _, url = H.fresh_db()
  local dir = H.tmpdir()
  H.write(dir .. "/setup.sql", SETUP .. (extra or ""))
  H.psql_file(url, dir .. "/setup.sql")
  return url
end

-- snapshot through migfix.db, or through psql with the same SQL
local function take(url, schemas)
  if have_db then
    local conn = assert(db.connect(url))
    local snap, err = catalog.snapshot(conn, schemas)
    conn:close()
    return snap, err
  end
  H.ok(have_json, "migfix.json is needed to decode the snapshot")
  local dir = H.tmpdir()
  H.write(dir .. "/q.sql", catalog.query_text(schemas))
  local text = H.psql_file(url, dir .. "/q.sql")
  return catalog.from_document(json.decode(text), json.null)
end

T["query_text embeds the schema names as literals and is one statement"] = function()
  local q = catalog.query_text({ "public", "it's" })
  H.contains(q, "ARRAY['public', 'it''s']::name[]")
  H.ok(not q:find(";", 1, true), "no statement separator")
  -- names compare as name, not text (a hashed lookup on relname)
  local qn = catalog.query_text({ "public" }, { "User", "Ticket" })
  H.contains(qn, "ARRAY['User', 'Ticket']::name[]")
  H.not_contains(qn, "= ANY (ARRAY['User', 'Ticket']::text[]")
  H.contains(q, "json_build_object")
  H.raises(function() catalog.query_text({}) end, "bad argument #1 to 'query_text'")
  H.raises(function() catalog.snapshot({}, nil) end, "bad argument #2 to 'snapshot'")
end

T["snapshot: tables, columns, sizes"] = function()
  local url = setup()
  local s = assert(take(url, { "public", "app" }))
  H.ok(s.server_version >= 100000, "server_version")
  H.ok(s.schemas.public and s.schemas.app, "schemas")
  H.ok(s.requested.app, "requested")
  H.eq(s.extensions.pgcrypto ~= nil, true, "extension")
  H.eq(s.extensions.plpgsql, "1.0")
  local t = H.ok(s.tables["public.Ticket"], "Ticket")
  H.eq(t.kind, "r")
  H.ok(math.type(t.oid) == "integer" and t.relfilenode > 0, "oid and relfilenode are numbers")
  H.ok(t.bytes > 0, "bytes")
  H.eq(type(t.reltuples), "number")
  H.eq(t.columns.dropped_col, nil, "dropped column skipped")
  H.eq(t.columns.ctid, nil, "system column skipped")
  H.same(t.column_order, { "id", "title", "status", "price", "createdAt", "ownerId", "tags" })
  H.eq(t.columns.price.type, "numeric(65,30)")
  H.eq(t.columns.createdAt.type, "timestamp(3) without time zone")
  H.eq(t.columns.createdAt.default, "CURRENT_TIMESTAMP")
  H.eq(t.columns.status.type, '"TicketStatus"')
  H.eq(t.columns.status.default, "'OPEN'::\"TicketStatus\"")
  H.eq(t.columns.status.not_null, true)
  H.eq(t.columns.status.position, 3)
  H.eq(t.columns.tags.type, "text[]")
  H.eq(t.columns.price.default, nil)
  H.eq(t.columns.price.has_default, false)
  local u = s.tables["public.User"]
  H.eq(u.columns.email.type, "character varying(191)")
  H.eq(u.columns.role.type, 'app."Role"')
  H.contains(u.columns.id.default, "nextval(")
  H.eq(s.tables["public.Part"].kind, "p")
  H.eq(s.tables["public.open_tickets"].kind, "v")
  H.ok(s.views["public.open_tickets"], "views map")
  H.ok(s.matviews["public.ticket_counts"], "matviews map")
  H.eq(s.tables["public.open_tickets"].columns.title.type, "text")
end

T["snapshot: indexes, constraints, enums, sequences"] = function()
  local url = setup()
  local s = assert(take(url, { "public", "app" }))
  local ix = s.indexes["public.Ticket_lower_title_idx"]
  H.eq(ix.table, "Ticket")
  H.same(ix.columns, { { expr = "lower(title)" }, "id" })
  H.same(ix.include, { "price" })
  H.eq(ix.method, "btree")
  H.eq(ix.predicate, "(status <> 'CLOSED'::\"TicketStatus\")")
  H.eq(ix.unique, false)
  H.eq(ix.valid, true)
  H.eq(s.indexes["public.Ticket_tags_idx"].method, "gin")
  local pk = s.indexes["public.Ticket_pkey"]
  H.eq(pk.primary, true)
  H.eq(pk.unique, true)
  H.eq(s.indexes["public.User_email_key"].unique, true)

  local c = s.constraints["public.Ticket.Ticket_pkey"]
  H.eq(c.contype, "p")
  H.same(c.columns, { "id" })
  H.eq(c.index, "Ticket_pkey")
  local fk = s.constraints["public.Ticket.Ticket_ownerId_fkey"]
  H.eq(fk.contype, "f")
  H.same(fk.columns, { "ownerId" })
  H.eq(fk.ref_schema, "public")
  H.eq(fk.ref_table, "User")
  H.same(fk.ref_columns, { "id" })
  H.eq(fk.on_delete, "n")
  H.eq(fk.on_update, "c")
  H.eq(fk.validated, false)
  local ck = s.constraints["public.Ticket.Ticket_price_check"]
  H.eq(ck.contype, "c")
  H.contains(ck.expr, "CHECK (price > ")
  H.same(ck.columns, { "price" })

  H.same(s.enums["public.TicketStatus"].labels, { "NEW", "OPEN", "DONE", "CLOSED" })
  H.same(s.enums["app.Role"].labels, { "USER", "ADMIN" })
  H.eq(s.sequences["app.counter"].increment, 5)
  H.same(s.sequences["public.User_id_seq"].owned_by, { table = "User", column = "id" })
end

T["snapshot: functions, triggers, types, comments"] = function()
  local url = setup()
  local s = assert(take(url, { "public", "app" }))
  local f = s.functions["public.add2"]
  H.eq(#f, 2, "both overloads")
  local sigs = {}
  for _, o in ipairs(f) do sigs[o.identity_args] = o.args end
  H.same(sigs["a integer, b text"], { "integer", "text" })
  H.same(sigs["a bigint"], { "bigint" })
  H.same(s.functions["public.touch"][1].args, {})
  H.eq(s.functions["app.noop"][1].procedure, true)
  local tg = s.triggers["public.Ticket.ticket_touch"]
  H.eq(tg.table, "Ticket")
  H.eq(tg["function"], "public.touch")
  for k in pairs(s.triggers) do H.ok(not k:find("RI_ConstraintTrigger", 1, true), "internal trigger listed: " .. k) end
  H.eq(s.types["public.pair"].kind, "composite")
  H.same(s.types["public.pair"].attributes, { { name = "a", type = "integer" }, { name = "b", type = "text" } })
  H.eq(s.types["public.positive"].kind, "domain")
  H.eq(s.types["public.positive"].base_type, "integer")
  H.eq(s.types["public.positive"].not_null, true)
  H.eq(s.types["public.Ticket"], nil, "table row types are not user types")
  H.eq(s.comments.table["public.Ticket"], "tickets")
  H.eq(s.comments.column["public.Ticket.title"], "the title")
  H.eq(s.comments.type["public.TicketStatus"], "status")
end

T["snapshot: INVALID index after a failed CREATE UNIQUE INDEX CONCURRENTLY"] = function()
  local url = setup()
  local ok = pcall(H.psql, url, 'CREATE UNIQUE INDEX CONCURRENTLY "Ticket_title_key" ON "Ticket"(title)')
  H.eq(ok, false, "duplicate titles make it fail")
  local s = assert(take(url, { "public" }))
  local ix = H.ok(s.indexes["public.Ticket_title_key"], "the failed index is left behind")
  H.eq(ix.valid, false)
  H.eq(ix.unique, true)
end

T["snapshot: only the schemas asked for; a missing schema is not listed"] = function()
  local url = setup()
  local s = assert(take(url, { "public", "nosuch" }))
  H.eq(s.enums["app.Role"], nil)
  H.eq(s.schemas.nosuch, nil)
  H.eq(s.requested.nosuch, true)
  H.eq(s.schemas.public, true)
end

T["snapshot does not wait behind an ACCESS EXCLUSIVE lock"] = function()
  if not have_db then return end
  local url = setup()
  local plain = url:gsub("%?.*$", "")
  -- another session holds the lock for 4 s
  H.sh(("(psql -qAtX -d %s -c %s >/dev/null 2>&1 &)"):format(H.shq(plain),
    H.shq('BEGIN; LOCK TABLE "Ticket"; SELECT pg_sleep(4); COMMIT;')))
  local conn = assert(db.connect(url))
  local waited = 0
  while waited < 50 do
    local rows = assert(conn:query("SELECT count(*)::int AS n FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = '\"Ticket\"'::regclass"))
    if rows[1].n > 0 then break end
    H.sh("sleep 0.1"); waited = waited + 1
  end
  assert(conn:query("SET statement_timeout = '2s'"))
  local s, err = catalog.snapshot(conn, { "public" })
  conn:close()
  H.ok(s, "snapshot while locked: " .. tostring(err))
  local t = s.tables["public.Ticket"]
  H.eq(t.locked, true)
  H.eq(t.bytes, nil)
  H.eq(t.columns.title.type, "text", "catalog-only fields are still there")
  H.eq(s.tables["public.User"].locked, false)
  H.ok(s.tables["public.User"].bytes > 0, "other tables still sized")
end

T["snapshot runs with JIT off in a read-only transaction of its own, and leaves the session as it was"] = function()
  if not have_db then return end
  local url = setup()
  local conn = assert(db.connect(url, { readonly = true }))
  -- a recording proxy: what the snapshot sends
  local calls = {}
  local proxy = setmetatable({}, { __index = function(_, k)
    local f = conn[k]
    if type(f) ~= "function" then return f end
    return function(_, ...)
      local a = ...
      calls[#calls + 1] = k .. (type(a) == "string" and (":" .. a:sub(1, 30)) or "")
      return f(conn, ...)
    end
  end })
  local s = assert(catalog.snapshot(proxy, { "public" }))
  H.ok(s.tables["public.Ticket"], "the snapshot works on a read-only connection")
  H.eq(calls[1], "begin")
  H.eq(calls[2], "exec:SET LOCAL jit = off")
  H.ok(calls[3]:find("^query:"), calls[3])
  local rows = assert(conn:query("SELECT current_setting('jit') AS jit, current_setting('transaction_read_only') AS ro"))
  H.eq(rows[1].jit, "on", "SET LOCAL ended with the snapshot's transaction")
  -- inside a caller's transaction: the query runs as it is, the transaction stays open
  local tx = assert(conn:begin())
  s = assert(catalog.snapshot(conn, { "public" }))
  H.ok(s.tables["public.Ticket"])
  H.eq(tx:active(), true)
  assert(tx:commit())
  conn:close()
end

T["snapshot: relations of every relkind, pg_type of every typtype, the names read, comments on every object"] = function()
  local url = setup([[
COMMENT ON INDEX "User_email_key" IS 'one per address';
COMMENT ON SEQUENCE app.counter IS 'ticks';
COMMENT ON VIEW open_tickets IS 'open';
COMMENT ON CONSTRAINT "Ticket_pkey" ON "Ticket" IS 'pk';
COMMENT ON TRIGGER ticket_touch ON "Ticket" IS 'touch';
COMMENT ON SCHEMA app IS 'the app';
COMMENT ON EXTENSION pgcrypto IS 'crypto';
COMMENT ON FUNCTION add2(bigint) IS 'one arg';
]])
  local s = assert(take(url, { "public", "app" }))
  H.eq(s.relations["public.User_email_key"].kind, "i")
  H.eq(s.relations["app.counter"].kind, "S")
  H.eq(s.relations["public.Ticket"].kind, "r")
  H.eq(s.type_names["public.TicketStatus"].typtype, "e", "enums are in type_names")
  H.eq(s.type_names["public.Ticket"].relkind, "r", "a table's row type says so")
  H.eq(s.names, nil, "no names filter: every name")
  H.eq(s.comments.index["public.User_email_key"], "one per address")
  H.eq(s.comments.sequence["app.counter"], "ticks")
  H.eq(s.comments.view["public.open_tickets"], "open")
  H.eq(s.comments.table["public.open_tickets"], "open", "views stay in the table bucket too")
  H.eq(s.comments.constraint["public.Ticket.Ticket_pkey"], "pk")
  H.eq(s.comments.trigger["public.Ticket.ticket_touch"], "touch")
  H.eq(s.comments.schema.app, "the app")
  H.eq(s.comments.extension.pgcrypto, "crypto")
  local one
  for _, f in ipairs(s.functions["public.add2"]) do if #f.args == 1 then one = f end end
  H.eq(one.comment, "one arg")
  H.eq(one.body, "SELECT 1")
  H.eq(one.language, "sql")
  -- with a names filter: the names are in the snapshot, INVALID indexes always
  if have_db then
    assert(pcall(H.psql, url, 'CREATE UNIQUE INDEX CONCURRENTLY "Ticket_title_key" ON "Ticket"(title)') == false)
    local conn = assert(db.connect(url))
    local f = assert(catalog.snapshot(conn, { "public" }, { "User" }))
    conn:close()
    H.same(f.names, { User = true })
    H.ok(f.relations["public.User"] and not f.relations["public.Ticket"], "only the names asked")
    H.ok(f.indexes["public.Ticket_title_key"], "an INVALID index is always read")
  end
end

T["snapshot feeds verify.compare"] = function()
  local url = setup()
  local s = assert(take(url, { "public", "app" }))
  local verify = require "migfix.verify"
  local u = { statements = { { index = 1, line = 1, text = "x" } }, flags = {}, effects = {
    { stmt = 1, line = 1, kind = "index", action = "create", table = "Ticket", name = "Ticket_lower_title_idx",
      columns = { { expr = "lower(title)" }, "id" }, unique = false, method = "btree", predicate = "status <> 'CLOSED'" },
    { stmt = 1, line = 1, kind = "constraint", action = "create", table = "Ticket", name = "Ticket_price_check",
      name_generated = true, contype = "c", columns = { "price" }, expr = "price > 0" },
    { stmt = 1, line = 1, kind = "enum_value", action = "create", enum = "TicketStatus", name = "NEW", before = "OPEN" },
    { stmt = 1, line = 1, kind = "column", action = "alter", table = "User", name = "email", set = { type = "character varying(191)", not_null = true } },
  } }
  local ev = verify.compare(u, s, "public")
  H.eq(ev.verdict, "complete", ev.summary)
end

return T
