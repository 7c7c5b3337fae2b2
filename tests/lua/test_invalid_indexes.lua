-- INVALID indexes a migration leaves (issue 10, item 4): an interrupted
-- CREATE INDEX CONCURRENTLY, with or without IF NOT EXISTS (a rerun with IF
-- NOT EXISTS skips the INVALID index and "succeeds"), and REINDEX
-- CONCURRENTLY's <index>_ccnew leftover. Each made for real on the test
-- server: the build fails inside an index expression (boom() raises while
-- migfix.boom is on) or on duplicate keys. The diagnosis is never
-- complete, lists the indexes in invalid_indexes, and the shipped chain's
-- rollback-and-redeploy refuses with the exact DROP INDEX CONCURRENTLY.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"

local T = {}

local EARLIER = { "20240101000000_init", [[
CREATE FUNCTION "boom"(i integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF current_setting('migfix.boom', true) = 'on' THEN RAISE EXCEPTION 'boom'; END IF;
  RETURN i;
END $$;
CREATE TABLE "Item" ("id" INTEGER NOT NULL, "code" TEXT NOT NULL, CONSTRAINT "Item_pkey" PRIMARY KEY ("id"));
CREATE INDEX "Item_boom_idx" ON "Item" ("boom"("id"));
INSERT INTO "Item" VALUES (1, 'a'), (2, 'a'), (3, 'b');
]] }

--- a project whose last migration is `sql`, the earlier one deployed; the
--- failed statement run for real with migfix.boom on; the ledger row as
--- given (logs nil = NULL, the process was killed)
local function state(name, sql, logs)
  local dir, mdir = h.project { EARLIER, { name, sql } }
  local _, url = h.fresh_db()
  assert(L.deploy(url, nil, mdir, EARLIER[1]).ok)
  local out, rc = h.sh(("PGOPTIONS='-c migfix.boom=on' psql -qAtX -d %s -c %s 2>&1"):format(h.shq(url), h.shq(sql)))
  h.ok(rc ~= 0, "the build must fail: " .. out)
  L.failed(url, name, L.checksum(sql), logs)
  return dir, mdir, url
end

local function invalid_index(url, name)
  return h.psql(url, ("SELECT indisvalid FROM pg_index WHERE indexrelid = '%s'::regclass"):format(('"' .. name .. '"'):gsub("'", "''"))):match("%S+")
end

local function diagnose(mdir, url)
  local out, err, rc = h.migfix { "--migrations", mdir, "--url", url, "diagnose", "--json" }
  local doc = json.decode(out)
  h.ok(doc, "JSON: " .. out .. err)
  return doc.migrations[1], rc
end

local function plan(mdir, url)
  local out, err, rc = h.migfix { "--migrations", mdir, "--url", url, "plan", "--json" }
  local doc = json.decode(out)
  h.ok(doc, "JSON: " .. out .. err)
  return doc.migrations[1], rc, out
end

local function refusal(p)
  for _, a in ipairs(p.actions) do if a.action == "refuse" then return a end end
  error("no refusal in the plan: " .. json.encode(p))
end

T["CREATE INDEX CONCURRENTLY IF NOT EXISTS killed mid-build: not complete, listed, redeploy refused"] = function()
  local name = "20240201000000_item_boom2"
  local sql = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Item_boom2_idx" ON "Item" ("boom"("id"));\n'
  local _, mdir, url = state(name, sql, nil)
  h.eq(invalid_index(url, "Item_boom2_idx"), "f", "a real INVALID index")
  local d, rc = diagnose(mdir, url)
  h.eq(rc, 1)
  h.ok(d.verdict ~= "complete", "never complete over an INVALID index")
  h.eq(d.verdict, "absent")
  h.same(d.invalid_indexes, { { schema = "public", name = "Item_boom2_idx", table = "Item" } })
  h.eq(d.error.class, "transient", "NULL logs: the process was killed")
  -- the shipped chain: a transient error would redeploy, and IF NOT EXISTS would skip the INVALID index
  local p, prc, out = plan(mdir, url)
  h.eq(prc, 1, "refused")
  h.eq(p.policy, "rollback-and-redeploy")
  local r = refusal(p)
  h.contains(r.reason, '"public"."Item_boom2_idx"')
  h.contains(r.hint, 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Item_boom2_idx";')
  for _, a in ipairs(p.actions) do h.ok(a.action ~= "redeploy", "no redeploy: " .. out) end
  -- after the DROP the hint gives, the same state redeploys
  h.psql(url, 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Item_boom2_idx"')
  p = plan(mdir, url)
  h.eq(p.policy, "rollback-and-redeploy")
  local kinds = {}
  for _, a in ipairs(p.actions) do kinds[#kinds + 1] = a.action end
  h.contains(table.concat(kinds, ","), "redeploy")
end

T["CREATE UNIQUE INDEX CONCURRENTLY on duplicates (23505): INVALID listed, refusal names the DROP first"] = function()
  local name = "20240201000000_item_code_key"
  local sql = 'CREATE UNIQUE INDEX CONCURRENTLY "Item_code_key" ON "Item" ("code");\n'
  local dir, mdir = h.project { EARLIER, { name, sql } }
  local _, url = h.fresh_db()
  local r = L.deploy(url, nil, mdir)
  h.eq(r.code, "P3018", "the CIC fails on the duplicate codes")
  h.eq(invalid_index(url, "Item_code_key"), "f")
  local d = diagnose(mdir, url)
  h.eq(d.verdict, "absent")
  h.eq(d.error.sqlstate, "23505")
  h.same(d.invalid_indexes, { { schema = "public", name = "Item_code_key", table = "Item" } })
  local o
  for _, x in ipairs(d.objects) do if x.name == "Item_code_key" then o = x end end
  h.eq(o.state, "different")
  h.eq(o.diffs[1].field, "valid")
  local p = plan(dir .. "/prisma/migrations", url)
  local ref = refusal(p)
  h.contains(ref.hint, 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Item_code_key";')
  -- the text diagnosis says it too
  local out = h.migfix { "--migrations", mdir, "--url", url, "diagnose" }
  h.contains(out, 'INVALID indexes: "public"."Item_code_key"')
end

T["REINDEX INDEX CONCURRENTLY interrupted: the _ccnew leftover is listed and blocks complete"] = function()
  local name = "20240201000000_reindex"
  local sql = 'REINDEX INDEX CONCURRENTLY "Item_boom_idx";\n'
  local _, mdir, url = state(name, sql, nil)
  h.eq(invalid_index(url, "Item_boom_idx_ccnew"), "f", "REINDEX CONCURRENTLY left its new index INVALID")
  local d = diagnose(mdir, url)
  h.ok(d.verdict ~= "complete", d.verdict)
  h.same(d.invalid_indexes, { { schema = "public", name = "Item_boom_idx_ccnew", table = "Item" } })
  local left
  for _, o in ipairs(d.objects) do if o.name == "Item_boom_idx_ccnew" then left = o end end
  h.ok(left, "the leftover is an object of the diagnosis")
  h.eq(left.state, "still_present")
  local p = plan(mdir, url)
  h.contains(refusal(p).hint, 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Item_boom_idx_ccnew";')
  -- a REINDEX CONCURRENTLY that finished leaves nothing to list
  h.psql(url, 'DROP INDEX CONCURRENTLY "Item_boom_idx_ccnew"')
  h.psql(url, 'REINDEX INDEX CONCURRENTLY "Item_boom_idx"')
  d = diagnose(mdir, url)
  h.same(d.invalid_indexes, {})
end

return T
