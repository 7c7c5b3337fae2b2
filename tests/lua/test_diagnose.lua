-- migfix diagnose on every fixture case (tests/fixtures/cases): verdict and
-- objects as each case.lua states them, plus the seed case and bad inputs.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local mig = require "migfix.migrations"

local CASES = h.root .. "/tests/fixtures/cases"

local function key(o)
  for k, v in pairs(o) do if v == json.null then o[k] = nil end end
  local n = o.name or "?"
  if o.kind == "enum_value" and o.enum then n = o.enum .. "." .. n
  elseif o.table and (o.kind == "column" or o.kind == "constraint" or o.kind == "trigger") then n = o.table .. "." .. n end
  return o.kind .. " " .. (o.schema or "public") .. "." .. n
end

--- build the state the case describes; returns url (with ?schema=) and project dir
local function build(case_dir, c)
  local name = h.fresh_db()
  local url = h.url(name, c.url_query and c.url_query:gsub("^%?", "") or nil)
  local schema = c.schema
  if c.setup then h.psql(url, c.setup) end
  local mdir = case_dir .. "/migrations"
  local list = assert(mig.list(mdir))
  local prev
  for _, m in ipairs(list) do
    if m.name == c.failed then break end
    prev = m.name
  end
  local r = L.deploy(url, schema, mdir, prev)
  assert(r.ok ~= false or r.code == nil, "deploy of earlier migrations failed: " .. tostring(r.error))
  local state = h.read(case_dir .. "/state.sql")
  if state:find("%S") then
    h.psql_file(url, case_dir .. "/state.sql")
  end
  local text = h.read(mdir .. "/" .. c.failed .. "/migration.sql")
  L.failed(url, c.failed, L.checksum(text), c.logs, { schema = schema })
  return url, mdir
end

local function diagnose(mdir, url, extra)
  local args = { "--migrations", mdir, "--url", url, "diagnose", "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local out, err, rc = h.migfix(args)
  local doc = json.decode(out)
  if not doc then error(("no JSON (rc %s): %s%s"):format(tostring(rc), out, err)) end
  return doc, rc, err
end

local T = {}

local names = {}
for d in h.sh("ls " .. h.shq(CASES)):gmatch("[^\n]+") do
  local f = io.open(CASES .. "/" .. d .. "/case.lua")
  if f then f:close(); names[#names + 1] = d end
end

for _, cname in ipairs(names) do
  T["case " .. cname] = function()
    local dir = CASES .. "/" .. cname
    local c = dofile(dir .. "/case.lua")
    local url, mdir = build(dir, c)
    local doc, rc = diagnose(mdir, url)
    h.eq(rc, 1, "exit (a failed migration)")
    h.eq(#doc.migrations, 1)
    local d = doc.migrations[1]
    h.eq(d.name, c.failed)
    if d.verdict ~= c.verdict then
      local lines = {}
      for _, o in ipairs(d.objects) do
        if o.state ~= "present" and o.state ~= "absent" then lines[#lines + 1] = key(o) .. " " .. o.state .. " " .. json.encode(o.diffs) end
      end
      error(("%s: verdict %s, expected %s:\n%s"):format(cname, d.verdict, c.verdict, table.concat(lines, "\n")))
    end
    local by = {}
    for _, o in ipairs(d.objects) do by[key(o)] = o end
    for _, want in ipairs(c.missing or {}) do
      local o = by[want]
      h.ok(o, cname .. ": " .. want .. " should be reported")
      h.ok(o.state == "missing" or o.state == "still_present", cname .. ": " .. want .. " should be missing, is " .. o.state)
    end
    for _, want in ipairs(c.different or {}) do
      local o = by[want]
      h.ok(o, cname .. ": " .. want .. " should be reported")
      h.eq(o.state, "different", cname .. ": " .. want)
      h.ok(#o.diffs > 0, "diffs say what differs")
    end
    for _, want in ipairs(c.present or {}) do
      local o = by[want]
      if o then h.eq(o.state, "present", cname .. ": " .. want) end
    end
  end
end

T["seed case: complete, with every table, enum, index and foreign key present"] = function()
  local exp = dofile(h.root .. "/tests/fixtures/ticketing/expected.lua")
  local dir = h.project {}
  local src = h.root .. "/tests/fixtures/ticketing/prisma/migrations/"
  local mdir = dir .. "/prisma/migrations"
  h.sh(("cp -r %s20240105093000_init %s20240312141500_sla_kb_forms_email %s/"):format(src, src, mdir))
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir)
  h.psql(url, "UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0 WHERE migration_name = '20240312141500_sla_kb_forms_email'")
  local doc, rc = diagnose(mdir, url)
  h.eq(rc, 1)
  local d = doc.migrations[1]
  h.eq(d.verdict, "complete")
  h.eq(d.file.changed_since_failure, false)
  h.eq(d.execution.all_or_nothing, true)
  local present = {}
  for _, o in ipairs(d.objects) do
    if o.state == "present" then present[o.kind .. ":" .. o.name] = true end
    h.eq(o.state == "present" or o.state == "absent", true, key(o) .. " is " .. o.state .. " " .. json.encode(o.diffs))
  end
  for _, t in ipairs(exp.tables) do h.ok(present["table:" .. t], "table " .. t) end
  for e in pairs(exp.enums) do h.ok(present["enum:" .. e], "enum " .. e) end
  for _, i in ipairs(exp.indexes) do
    h.ok(present["index:" .. i] or present["constraint:" .. i], "index " .. i)
  end
  for _, f in ipairs(exp.foreign_keys) do h.ok(present["constraint:" .. f], "foreign key " .. f) end
  h.ok(#exp.tables >= 20 and #exp.indexes >= 50)
end

T["the seed migration rolled back (error in the last statement): absent, error class from the logs"] = function()
  local dir = h.project {}
  local src = h.root .. "/tests/fixtures/ticketing/prisma/migrations/"
  local mdir = dir .. "/prisma/migrations"
  h.sh(("cp -r %s20240105093000_init %s20240312141500_sla_kb_forms_email %s/"):format(src, src, mdir))
  local path = mdir .. "/20240312141500_sla_kb_forms_email/migration.sql"
  h.write(path, h.read(path) .. '\nALTER TABLE "NoSuchTable" ADD COLUMN "x" INTEGER;\n')
  local _, url = h.fresh_db()
  local r = L.deploy(url, nil, mdir)
  h.eq(r.ok, false, "the last statement fails, the file rolls back")
  local doc = diagnose(mdir, url)
  local d = doc.migrations[1]
  h.eq(d.verdict, "absent")
  h.eq(d.error.sqlstate, "42P01")
  h.eq(d.error.class, "schema")
  h.eq(d.counts.present, 0)
end

T["no failed migration: exit 0"] = function()
  local dir = h.project { { "20240101000000_a", "CREATE TABLE a (id int);\n" } }
  local _, url = h.fresh_db()
  L.deploy(url, nil, dir .. "/prisma/migrations")
  local out, _, rc = h.migfix { "-C", dir, "--url", url, "diagnose" }
  h.eq(rc, 0)
  h.contains(out, "no failed migrations")
end

T["malformed SQL: file:line and the parser's message, exit 2"] = function()
  local bad = h.root .. "/tests/fixtures/bad/syntax_error/migrations"
  local line = h.read(h.root .. "/tests/fixtures/bad/syntax_error/line.txt"):match("%d+")
  local name = assert(mig.list(bad))[1].name
  local _, url = h.fresh_db()
  L.failed(url, name, L.checksum("x"), nil)
  local _, err, rc = h.migfix { "--migrations", bad, "--url", url, "diagnose" }
  h.eq(rc, 2)
  h.contains(err, "migration.sql:" .. line .. ":")
  h.contains(err, "syntax error at or near")
end

T["missing migration.sql and empty file: clear results"] = function()
  local miss = h.root .. "/tests/fixtures/bad/missing_sql/migrations"
  local name = assert(mig.list(miss))[1].name
  local _, url = h.fresh_db()
  L.failed(url, name, L.checksum("x"), nil)
  local out, err, rc = h.migfix { "--migrations", miss, "--url", url, "diagnose", "--json" }
  h.eq(rc, 1)
  local d = json.decode(out).migrations[1]
  h.eq(d.verdict, "unverifiable")
  h.contains(d.summary, "no migration.sql")
  local empty = h.root .. "/tests/fixtures/bad/empty_file/migrations"
  name = assert(mig.list(empty))[1].name
  local _, url2 = h.fresh_db()
  L.failed(url2, name, L.checksum(""), nil)
  out, err, rc = h.migfix { "--migrations", empty, "--url", url2, "diagnose", "--json" }
  h.eq(rc, 1, err)
  d = json.decode(out).migrations[1]
  h.eq(d.verdict, "unverifiable")
end

T["a file changed since the failed attempt is reported"] = function()
  local dir = h.project { { "20240101000000_a", "CREATE TABLE a (id int);\n" } }
  local _, url = h.fresh_db()
  L.failed(url, "20240101000000_a", L.checksum("CREATE TABLE a (id text);\n"), "Database error code: 42601\n\nDatabase error:\nERROR: syntax error")
  local doc = diagnose(dir .. "/prisma/migrations", url)
  h.eq(doc.migrations[1].file.changed_since_failure, true)
  h.eq(doc.migrations[1].error.class, "syntax")
end

return T
