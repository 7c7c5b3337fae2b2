-- fixture_cases: the diagnosis cases of tests/fixtures/cases, built on the
-- test server as each case.lua describes them (earlier migrations deployed
-- as Prisma deploys them, state.sql, the failed row).
--
--   local FC = require "fixture_cases"
--   for _, name in ipairs(FC.names()) do local c, dir = FC.load(name) ... end
--   local url, mdir = FC.build(dir, c [, {template = true}])
local h = require "helper"
local L = require "prisma_ledger"
local mig = require "migfix.migrations"

local FC = {}

FC.DIR = h.root .. "/tests/fixtures/cases"

--- case folder names, sorted
function FC.names()
  local names = {}
  for d in h.sh("ls " .. h.shq(FC.DIR)):gmatch("[^\n]+") do
    local f = io.open(FC.DIR .. "/" .. d .. "/case.lua")
    if f then f:close(); names[#names + 1] = d end
  end
  return names
end

--- the case table and its folder
function FC.load(name)
  local dir = FC.DIR .. "/" .. name
  return dofile(dir .. "/case.lua"), dir
end

--- build the state the case describes in a fresh database; returns the url
--- (with ?schema= when the case has one), the migrations folder and the
--- database name
function FC.build(case_dir, c)
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
  if state:find("%S") then h.psql_file(url, case_dir .. "/state.sql") end
  local text = h.read(mdir .. "/" .. c.failed .. "/migration.sql")
  L.failed(url, c.failed, L.checksum(text), c.logs, { schema = schema })
  return url, mdir, name
end

return FC
