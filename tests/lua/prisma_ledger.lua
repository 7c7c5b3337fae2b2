-- prisma_ledger: build the `_prisma_migrations` states Prisma Migrate leaves
-- on PostgreSQL, without Node (fast fixtures for the non-compat tests).
-- Follows Prisma's schema engine (the ledger DDL, v4 ids, deploy,
-- resolve --applied, resolve --rolled-back, ?schema=); the compat
-- test tests/compat/test_fixture_vs_prisma.lua checks it against the real CLI.
--
--   local L = require "prisma_ledger"
--   L.create_table(url [, schema])
--   local id = L.applied(url, name, checksum [, opts])
--   local id = L.failed(url, name, checksum, logs_or_nil [, opts])
--   L.rolled_back(url, id [, opts])
--   local id = L.resolved_applied(url, name, checksum [, opts])
--   L.resolve_rolled_back(url, name) / L.resolve_applied(url, name, checksum)
--   local r = L.deploy(url, schema, migrations_dir [, upto_name [, opts]])
--   local rows, exists = L.rows(url [, schema])
--   L.checksum(text)  L.uuid4()  L.now()  L.url_schema(url)
--
-- URLs may carry ?schema=NAME: every statement then runs with
-- search_path = "NAME" (set as a connection option, as Prisma's quaint does),
-- and `_prisma_migrations` is written unqualified, so it lands in NAME.
-- Timestamps are client-side (like chrono::Utc::now()), microsecond
-- precision, strictly increasing across calls in one process.
-- NULL columns are absent (nil) in the tables L.rows returns.
local H = require "helper"
local posix_ok, ptime = pcall(require, "posix.time")

local L = {}

L.TABLE = "_prisma_migrations"
-- exact DDL of prisma-engines flavour/postgres.rs (create_migrations_table)
L.DDL = [[CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);]]
L.COLUMNS = { "id", "checksum", "finished_at", "migration_name", "logs",
  "rolled_back_at", "started_at", "applied_steps_count" }
L.ADVISORY_LOCK = 72707369

local shq = H.shq

local function lit(v) -- SQL literal (standard_conforming_strings = on)
  if v == nil then return "NULL" end
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end
L.literal = lit

local function ident(s) return '"' .. s:gsub('"', '""') .. '"' end

--- the ?schema= of a URL (percent-decoded, '+' = space, as url::Url
--- query_pairs), or nil
function L.url_schema(url)
  local q = url:match("%?(.*)$")
  if not q then return nil end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    local function dec(s)
      return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
    if dec(k) == "schema" then return dec(v) end
  end
  return nil
end

local function base_url(url) return (url:gsub("%?.*$", "")) end

-- the effective schema for (url, schema)
local function schema_of(url, schema) return schema or L.url_schema(url) end

-- libpq PGOPTIONS for search_path = "<schema>" (quaint sets exactly that,
-- double-quoted, only when ?schema= is given); spaces/backslashes escaped
-- for libpq's options parser
local function pgoptions(schema)
  if not schema then return "" end
  local v = ("-c search_path=%s"):format(ident(schema):gsub("\\", "\\\\"):gsub(" ", "\\ "))
  return "PGOPTIONS=" .. shq(v) .. " "
end

--- run SQL (one psql -c = one simple query) on url [with schema's search_path];
--- returns output; raises on error unless opts.may_fail (then: out, rc)
local function run(url, sql, schema, may_fail, extra)
  local cmd = ("%spsql -qAtX -v ON_ERROR_STOP=1 %s-d %s -c %s 2>&1"):format(
    pgoptions(schema_of(url, schema)), extra or "", shq(base_url(url)), shq(sql))
  local out, rc = H.sh(cmd)
  if rc ~= 0 and not may_fail then error("prisma_ledger: psql failed: " .. out, 3) end
  return out, rc
end
L.run = run

-- ------------------------------------------------------------------ values

local function urandom(n)
  local f = io.open("/dev/urandom", "rb")
  if f then
    local s = f:read(n)
    f:close()
    if s and #s == n then return s end
  end
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

--- random v4 UUID, lowercase, hyphenated (Uuid::new_v4().to_string())
function L.uuid4()
  local b = { urandom(16):byte(1, 16) }
  b[7] = (b[7] & 0x0f) | 0x40
  b[9] = (b[9] & 0x3f) | 0x80
  local h = {}
  for i = 1, 16 do h[i] = ("%02x"):format(b[i]) end
  local s = table.concat(h)
  return ("%s-%s-%s-%s-%s"):format(s:sub(1, 8), s:sub(9, 12), s:sub(13, 16), s:sub(17, 20), s:sub(21, 32))
end

L.UUID4_PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
function L.is_uuid4(s)
  return type(s) == "string" and s:match(L.UUID4_PATTERN) ~= nil and s == s:lower()
end

--- lowercase hex SHA-256 of text (the checksum column): migfix.crypto when
--- it has a sha256, else sha256sum(1)
function L.checksum(text)
  local ok, crypto = pcall(require, "migfix.crypto")
  if ok and type(crypto) == "table" then
    for _, fname in ipairs({ "sha256_hex", "sha256hex", "sha256" }) do
      local fn = crypto[fname]
      if type(fn) == "function" then
        local got_ok, h = pcall(fn, text)
        if got_ok and type(h) == "string" then
          if #h == 32 then h = (h:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
          if #h == 64 and h:match("^%x+$") then return h:lower() end
        end
      end
    end
  end
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  local out, rc = H.sh("sha256sum " .. shq(tmp))
  os.remove(tmp)
  local h = out:match("^(%x+)")
  if rc ~= 0 or not h or #h ~= 64 then error("prisma_ledger: sha256sum failed: " .. out, 2) end
  return h
end

--- checksum of a migration folder's migration.sql (Prisma reads it as UTF-8
--- text and hashes the bytes)
function L.file_checksum(path) return L.checksum(H.read(path)) end

-- client clock, microseconds since the epoch, strictly increasing
local last_us = 0
local function now_us()
  local us
  if posix_ok then
    local ts = ptime.clock_gettime(ptime.CLOCK_REALTIME)
    us = ts.tv_sec * 1000000 + ts.tv_nsec // 1000
  else
    us = os.time() * 1000000
  end
  if us <= last_us then us = last_us + 1 end
  last_us = us
  return us
end

local function fmt_us(us)
  return os.date("!%Y-%m-%d %H:%M:%S", us // 1000000) .. (".%06d+00"):format(us % 1000000)
end

--- a client-side timestamp literal text ('YYYY-MM-DD HH:MM:SS.ffffff+00')
function L.now() return fmt_us(now_us()) end

-- ------------------------------------------------------------------ table

local function table_exists(url, schema)
  local s = schema_of(url, schema) or "public"
  local out = run(url, ("SELECT to_regclass(%s) IS NOT NULL"):format(lit(ident(s) .. "." .. L.TABLE)), schema)
  return out:match("^t") ~= nil
end
L.table_exists = table_exists

--- create `_prisma_migrations` with Prisma's exact DDL, unqualified, in the
--- URL schema (or `schema`); creates the schema first if missing, as the
--- engine does on connect
function L.create_table(url, schema)
  local s = schema_of(url, schema)
  if s then run(url, "CREATE SCHEMA IF NOT EXISTS " .. ident(s), schema) end
  run(url, L.DDL, s)
end

--- create the table unless it exists
function L.ensure_table(url, schema)
  if not table_exists(url, schema) then L.create_table(url, schema) end
end

-- ------------------------------------------------------------------ rows

--- one deploy-applied row (as `migrate deploy` leaves it after success):
--- new v4 id, applied_steps_count 1, logs NULL, rolled_back_at NULL,
--- started_at < finished_at (client times).
--- opts: id, started_at, finished_at (timestamp text), schema, no_create
--- (do not create the table when missing). Returns the id.
function L.applied(url, name, checksum, opts)
  opts = opts or {}
  if not opts.no_create then L.ensure_table(url, opts.schema) end
  local id = opts.id or L.uuid4()
  local started = opts.started_at or L.now()
  local finished = opts.finished_at or L.now()
  run(url, ([[INSERT INTO "_prisma_migrations" ("id","checksum","started_at","migration_name","finished_at","applied_steps_count") VALUES (%s,%s,%s,%s,%s,1)]])
    :format(lit(id), lit(checksum), lit(started), lit(name), lit(finished)), opts.schema)
  return id
end

--- one failed row (deploy's INSERT, then the script failed): finished_at
--- NULL, rolled_back_at NULL, applied_steps_count 0; logs = the error text,
--- or nil for a process killed before the logs UPDATE (logs NULL).
--- opts: id, started_at, schema, no_create. Returns the id.
function L.failed(url, name, checksum, logs, opts)
  opts = opts or {}
  if not opts.no_create then L.ensure_table(url, opts.schema) end
  local id = opts.id or L.uuid4()
  local started = opts.started_at or L.now()
  run(url, ([[INSERT INTO "_prisma_migrations" ("id","checksum","started_at","migration_name","logs") VALUES (%s,%s,%s,%s,%s)]])
    :format(lit(id), lit(checksum), lit(started), lit(name), lit(logs)), opts.schema)
  return id
end

--- set rolled_back_at = client now on row `id` (what resolve does to each
--- failed row). opts: at (timestamp text), schema
function L.rolled_back(url, id, opts)
  opts = opts or {}
  run(url, ([[UPDATE "_prisma_migrations" SET "rolled_back_at" = %s WHERE "id" = %s]])
    :format(lit(opts.at or L.now()), lit(id)), opts.schema)
end

--- the row `migrate resolve --applied` inserts: new v4 id, logs '' (not
--- NULL), applied_steps_count 0 (default), started_at = finished_at = one
--- client now, rolled_back_at NULL. Only inserts (see L.resolve_applied for
--- the whole command). opts: id, at, schema, no_create. Returns the id.
function L.resolved_applied(url, name, checksum, opts)
  opts = opts or {}
  if not opts.no_create then L.ensure_table(url, opts.schema) end
  local id = opts.id or L.uuid4()
  local at = opts.at or L.now()
  run(url, ([[INSERT INTO "_prisma_migrations" ("id","checksum","logs","started_at","finished_at","migration_name") VALUES (%s,%s,'',%s,%s,%s)]])
    :format(lit(id), lit(checksum), lit(at), lit(at), lit(name)), opts.schema)
  return id
end

local function failed_ids(url, name, schema)
  local out = run(url, ([[SELECT "id" FROM "_prisma_migrations" WHERE "migration_name" = %s AND "finished_at" IS NULL AND "rolled_back_at" IS NULL ORDER BY "started_at"]])
    :format(lit(name)), schema)
  local ids = {}
  for id in out:gmatch("[^\n]+") do ids[#ids + 1] = id end
  return ids
end

--- the whole `migrate resolve --rolled-back NAME`:
--- returns true, or nil + "P3011"/"P3012"/"no table"
function L.resolve_rolled_back(url, name, opts)
  opts = opts or {}
  if not table_exists(url, opts.schema) then return nil, "no table" end
  local out = run(url, ([[SELECT count(*), count(*) FILTER (WHERE "finished_at" IS NULL) FROM "_prisma_migrations" WHERE "migration_name" = %s]])
    :format(lit(name)), opts.schema)
  local total, unfinished = out:match("^(%d+)|(%d+)")
  if tonumber(total) == 0 then return nil, "P3011" end
  if tonumber(unfinished) == 0 then return nil, "P3012" end
  for _, id in ipairs(failed_ids(url, name, opts.schema)) do L.rolled_back(url, id, opts) end
  return true
end

--- the whole `migrate resolve --applied NAME` (§5): P3008 if any row of NAME
--- is finished, else roll back its failed rows and insert the signature row.
--- returns the new id, or nil + "P3008"
function L.resolve_applied(url, name, checksum, opts)
  opts = opts or {}
  L.ensure_table(url, opts.schema)
  local out = run(url, ([[SELECT count(*) FROM "_prisma_migrations" WHERE "migration_name" = %s AND "finished_at" IS NOT NULL]])
    :format(lit(name)), opts.schema)
  if tonumber(out:match("%d+")) > 0 then return nil, "P3008" end
  for _, id in ipairs(failed_ids(url, name, opts.schema)) do L.rolled_back(url, id, opts) end
  return L.resolved_applied(url, name, checksum, { schema = opts.schema, no_create = true })
end

-- ------------------------------------------------------------------ reading

local function unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

--- the `_prisma_migrations` rows of the URL schema (or `schema`, default
--- public), ordered by started_at (then finished_at, rolled_back_at, id), as
--- tables with the 8 columns; NULL columns are absent (nil). Timestamps are
--- text 'YYYY-MM-DD HH:MM:SS.ffffff+00' (UTC, so they sort as strings);
--- applied_steps_count is an integer. Second result: whether the table
--- exists (no table -> {}, false).
function L.rows(url, schema)
  local s = schema_of(url, schema) or "public"
  local q = ident(s) .. "." .. L.TABLE
  local exists = run(url, ("SELECT to_regclass(%s) IS NOT NULL"):format(lit(q))):match("^t") ~= nil
  if not exists then return {}, false end
  local function col(c, ts)
    local expr = ts and ([[to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00']]):format(ident(c))
      or (ident(c) .. "::text")
    return ("coalesce('V' || encode(convert_to(%s, 'UTF8'), 'hex'), 'N')"):format(expr)
  end
  local parts = {}
  for _, c in ipairs(L.COLUMNS) do parts[#parts + 1] = col(c, c:match("_at$") ~= nil) end
  local out = run(url, ("SELECT %s FROM %s ORDER BY started_at, finished_at NULLS LAST, rolled_back_at NULLS FIRST, id")
    :format(table.concat(parts, " || '|' || "), q))
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    local row, i = {}, 0
    for f in (line .. "|"):gmatch("([^|]*)|") do
      i = i + 1
      local c = L.COLUMNS[i]
      if f:sub(1, 1) == "V" then row[c] = unhex(f:sub(2)) end
    end
    row.applied_steps_count = math.tointeger(tonumber(row.applied_steps_count))
    rows[#rows + 1] = row
  end
  return rows, true
end

-- ------------------------------------------------------------------ deploy

--- migration folder names in a migrations dir, sorted (bytewise; equal to
--- Prisma's localeCompare order for timestamp-prefixed names)
function L.list_migrations(dir)
  local out = H.sh("cd " .. shq(dir) .. " && for d in */; do [ -d \"$d\" ] && [ ! -L \"${d%/}\" ] && printf '%s\\n' \"${d%/}\"; done")
  local names = {}
  for n in out:gmatch("[^\n]+") do if n ~= "*" then names[#names + 1] = n end end
  table.sort(names)
  return names
end

local function p3018_logs(name, err)
  -- psql -v VERBOSITY=verbose prints "ERROR:  42P01: msg" + "LOCATION: ..."
  local code = err:match("ERROR:%s+(%w%w%w%w%w):") or "none"
  local lines = {}
  for line in err:gmatch("[^\n]+") do
    if not line:match("^LOCATION:") then
      line = line:gsub("^psql:[^\n]-ERROR:", "ERROR:"):gsub("^(%u+):%s+%w%w%w%w%w:%s*", "%1: "):gsub("^(%u+):%s+", "%1: ")
      lines[#lines + 1] = line
    end
  end
  local msg = table.concat(lines, "\n")
  return ("A migration failed to apply. New migrations cannot be applied before the error is recovered from. Read more about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve\n\nMigration name: %s\n\nDatabase error code: %s\n\nDatabase error:\n%s\n")
    :format(name, code, msg)
end

--- apply the folders of migrations_dir in order, as native `migrate deploy`
--- does: create the table if missing (P3005 if the
--- schema has other tables), stop with P3009 if a failed row exists, then
--- for each pending folder (no row with rolled_back_at NULL), up to and
--- including `upto_name` (nil: all): INSERT the started row, run
--- migration.sql as ONE simple query (psql -c, one implicit transaction;
--- search_path from the schema), then applied_steps_count + 1 and
--- finished_at; on failure set logs (P3018 text) and stop.
--- schema: nil = the URL's ?schema=. opts.logs: override the failure logs text
--- (string, or false for NULL as a killed process leaves).
--- Returns { ok = bool, code = nil|"P3005"|"P3009"|"P3015"|"P3018",
---           applied = {names}, failed = name|nil, id = failed row id,
---           error = text }
function L.deploy(url, schema, migrations_dir, upto_name, opts)
  opts = opts or {}
  local s = schema_of(url, schema)
  local res = { ok = false, applied = {} }
  if s then run(url, "CREATE SCHEMA IF NOT EXISTS " .. ident(s), s) end
  if not table_exists(url, s) then
    local others = run(url, ([[SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname NOT IN ('spatial_ref_sys','geometry_columns','geography_columns','raster_columns','raster_overviews')]])
      :format(lit(s or "public")), s)
    if tonumber(others:match("%d+")) > 0 then
      res.code, res.error = "P3005", "The database schema is not empty."
      return res
    end
    L.create_table(url, s)
  end
  local rows = L.rows(url, s or "public")
  local present = {}
  for _, r in ipairs(rows) do
    if r.finished_at == nil and r.rolled_back_at == nil then
      res.code, res.failed = "P3009", r.migration_name
      res.error = ("The `%s` migration started at %s failed"):format(r.migration_name, r.started_at)
      return res
    end
    if r.rolled_back_at == nil then present[r.migration_name] = true end
  end
  for _, name in ipairs(L.list_migrations(migrations_dir)) do
    if not present[name] then
      local path = migrations_dir .. "/" .. name .. "/migration.sql"
      local f = io.open(path, "rb")
      if not f then
        res.code, res.failed = "P3015", name
        res.error = "Could not find the migration file at " .. path .. ". Please delete the directory or restore the migration file."
        return res
      end
      local script = f:read("a")
      f:close()
      local id = L.uuid4()
      run(url, ([[INSERT INTO "_prisma_migrations" ("id","checksum","started_at","migration_name") VALUES (%s,%s,%s,%s)]])
        :format(lit(id), lit(L.checksum(script)), lit(L.now()), lit(name)), s)
      -- the file as ONE simple query: psql -c (not -f, which splits)
      local out, rc = H.sh(("%spsql -qX -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d %s -c \"$(cat %s)\" 2>&1 >/dev/null")
        :format(pgoptions(s), shq(base_url(url)), shq(path)))
      if rc ~= 0 then
        local logs = opts.logs
        if logs == nil then logs = p3018_logs(name, out) end
        if logs ~= false then
          run(url, ([[UPDATE "_prisma_migrations" SET "logs" = %s WHERE "id" = %s]]):format(lit(logs), lit(id)), s)
        end
        res.code, res.failed, res.id, res.error = "P3018", name, id, out
        return res
      end
      run(url, ([[UPDATE "_prisma_migrations" SET "applied_steps_count" = ("applied_steps_count" + 1) WHERE "id" = %s]]):format(lit(id)), s)
      run(url, ([[UPDATE "_prisma_migrations" SET "finished_at" = %s WHERE "id" = %s]]):format(lit(L.now()), lit(id)), s)
      res.applied[#res.applied + 1] = name
    end
    if upto_name and name == upto_name then break end
  end
  res.ok = true
  return res
end

return L
