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

T["an internal error on one migration: that one unverifiable with the error, the others diagnosed, exit 4"] = function()
  local a, b = "CREATE TABLE a (id int);\n", "CREATE TABLE b (id int);\n"
  local dir = h.project { { "20240101000000_a", a }, { "20240102000000_b", b } }
  local _, url = h.fresh_db()
  L.failed(url, "20240101000000_a", L.checksum(a), nil)
  L.failed(url, "20240102000000_b", L.checksum(b), nil)
  h.psql(url, "CREATE TABLE b (id int)")
  -- a bug in the verifier for one migration only, injected into the real command
  local script = dir .. "/inject.lua"
  h.write(script, [[
local verify = require "migfix.verify"
local real = verify.compare
verify.compare = function(unit, ...)
  if unit.file:find("20240101000000_a", 1, true) then error("simulated bug in the verifier") end
  return real(unit, ...)
end
return require("migfix.commands.diagnose").run(migfix.ctx, { json = arg[1] == "--json" }, {})
]])
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "exec", script, "--json" }
  h.eq(rc, 4, "internal error: exit 4 " .. err)
  local doc = h.ok(json.decode(out), out .. err)
  h.eq(#doc.migrations, 2, "both migrations diagnosed")
  local ma, mb = doc.migrations[1], doc.migrations[2]
  h.eq(ma.name, "20240101000000_a")
  h.eq(ma.verdict, "unverifiable")
  h.contains(ma.internal_error, "simulated bug in the verifier")
  h.contains(ma.summary, "internal error")
  h.eq(mb.verdict, "complete", "the other migration is still diagnosed")
  h.eq(mb.internal_error, json.null)
  out, err, rc = h.migfix { "-C", dir, "--url", url, "exec", script }
  h.eq(rc, 4)
  h.contains(out, "internal error: ")
  h.contains(out, "simulated bug in the verifier")
  h.contains(out, "20240102000000_b: COMPLETE")
end

T["errclass.engine: the driver-adapter engine's logs, the native P3018 text, nothing"] = function()
  local errclass = require "migfix.errclass"
  h.eq(errclass.engine("external connector error\nError querying the database: ERROR: x\n   0: sql_schema_connector"), "adapter")
  h.eq(errclass.engine("\27[31mexternal connector error\27[0m\nNo such table: X"), "adapter")
  h.eq(errclass.engine("A migration failed to apply. ...\n\nDatabase error code: 23505\n"), "native")
  h.eq(errclass.engine(nil), nil)
  h.eq(errclass.engine(""), nil)
  h.eq(errclass.engine("ERROR:  relation \"x\" already exists"), nil)
end

T["logs of the driver-adapter engine: unit statement, a partial state is expected, not blamed on drift"] = function()
  local sql = 'CREATE TABLE "A" ("id" INTEGER);\nCREATE TABLE "B" ("id" INTEGER);\nALTER TABLE "Nope" ADD COLUMN "x" INTEGER;\n'
  local dir = h.project { { "20240101000000_ab", sql } }
  local _, url = h.fresh_db()
  h.psql(url, 'CREATE TABLE "A" ("id" INTEGER); CREATE TABLE "B" ("id" INTEGER)')
  local logs = "external connector error\nNo such table: Nope\n   0: sql_schema_connector::apply_migration::apply_script\n" ..
    "           with migration_name=\"20240101000000_ab\"\n             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:113"
  L.failed(url, "20240101000000_ab", L.checksum(sql), logs)
  local doc = diagnose(dir .. "/prisma/migrations", url)
  local d = doc.migrations[1]
  h.eq(d.verdict, "partial")
  h.eq(d.execution.unit, "statement")
  h.eq(d.execution.all_or_nothing, false)
  h.eq(d.execution.engine, "adapter")
  h.contains(d.execution.reason, "statement by statement")
  h.eq(d.inconsistent, json.null, "not blamed on a hand fix, another deploy, or drift")
  h.eq(d.likely_failed_statement.index, 3)
  local out = h.migfix { "--migrations", dir .. "/prisma/migrations", "--url", url, "diagnose" }
  h.contains(out, "driver-adapter engine sends it statement by statement")
  h.contains(out, "expected with this engine")
  h.not_contains(out, "a hand fix, another deploy, or drift")
  -- the same state under the native engine's logs is inconsistent
  local dir2 = h.project { { "20240101000000_ab", sql } }
  local _, url2 = h.fresh_db()
  h.psql(url2, 'CREATE TABLE "A" ("id" INTEGER); CREATE TABLE "B" ("id" INTEGER)')
  L.failed(url2, "20240101000000_ab", L.checksum(sql), "A migration failed to apply.\n\nDatabase error code: 42P01\n\nDatabase error:\nERROR: relation \"Nope\" does not exist\n")
  local d2 = diagnose(dir2 .. "/prisma/migrations", url2).migrations[1]
  h.eq(d2.execution.unit, "file")
  h.contains(d2.inconsistent, "a hand fix, another deploy, or drift")
end

T["analyze: the same text at a path is analysed once; a changed file is analysed again"] = function()
  local diagnose = require "migfix.diagnose"
  local a = diagnose.analyze("m1/migration.sql", 'CREATE TABLE "A" (id int);')
  h.eq(diagnose.analyze("m1/migration.sql", 'CREATE TABLE "A" (id int);'), a)
  local b = diagnose.analyze("m1/migration.sql", 'CREATE TABLE "B" (id int);')
  h.ok(b ~= a, "a new text gives a new unit")
  h.eq(b.effects[1].name, "B")
  h.eq(diagnose.analyze("m2/migration.sql", 'CREATE TABLE "A" (id int);').effects[1].name, "A")
end

return T
