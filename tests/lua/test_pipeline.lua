-- One pipeline: plan, simulate and run decide from the same evidence
-- (migfix.evidence), execute the same actions (migfix.actions) and verify
-- after every write. Checked on every fixture case and on the lint case of
-- the issue: a refusal in plan is a refusal in simulate and in run; when
-- plan writes, simulate says safe exactly when run succeeds.
local h = require "helper"
local L = require "prisma_ledger"
local FC = require "fixture_cases"
local json = require "migfix.json"

local T = {}

local function mf(dir, url, args)
  local argv = { "--migrations", dir, "--url", url }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local out, err, rc = h.migfix(argv, { cwd = h.tmpdir() })
  return out, err, rc
end

local function doc_of(out, err, what)
  local d = json.decode(out)
  if type(d) ~= "table" then error(("%s: no JSON:\n%s%s"):format(what, out, err), 2) end
  return d
end

--- plan, simulate and run of one state (two clones of the database)
local function three(url, mdir, db_name, proj)
  local run_db = select(1, h.fresh_db(db_name))
  local run_url = h.url(run_db, url:match("%?(.*)$"))
  local pout, perr, prc = mf(mdir, url, { "plan", "--json" })
  local plan = doc_of(pout, perr, "plan")
  local sout, serr, src = mf(mdir, url, { "simulate", "--json", "--from", "template" })
  local sim = doc_of(sout, serr, "simulate")
  local rout, rerr, rrc = mf(mdir, run_url, { "run", "--yes", "--json" })
  local run = doc_of(rout, rerr, "run")
  return { plan = plan, prc = prc, sim = sim, src = src, run = run, rrc = rrc,
           text = ("plan %d / simulate %d / run %d\n--- plan\n%s%s\n--- simulate\n%s%s\n--- run\n%s%s"):format(
             prc, src, rrc, pout, perr, sout:sub(1, 3000), serr, rout, rerr) }
end

local function policies_of(list)
  local out = {}
  for _, m in ipairs(list) do out[#out + 1] = tostring(m.policy) end
  return table.concat(out, ",")
end

local function sim_policies(sim)
  local out = {}
  for _, c in ipairs(sim.chain or {}) do if c.pass == "rehearsal" then out[#out + 1] = tostring(c.policy) end end
  return table.concat(out, ",")
end

local function agree(r, what)
  -- the same decision everywhere
  h.eq(policies_of(r.plan.migrations), sim_policies(r.sim), what .. ": plan and simulate chose the same policy\n" .. r.text)
  h.eq(policies_of(r.plan.migrations), policies_of(r.run.migrations), what .. ": plan and run chose the same policy\n" .. r.text)
  if r.prc == 1 then
    h.eq(r.sim.verdict.safe, false, what .. ": a refusal in plan is not 'safe' in simulate\n" .. r.text)
    h.eq(r.src, 1, what .. ": simulate exit\n" .. r.text)
    h.eq(r.rrc, 1, what .. ": a refusal in plan is a refusal in run\n" .. r.text)
  else
    h.eq(r.prc, 0, what .. ": plan exit\n" .. r.text)
    h.eq(r.src == 0, r.rrc == 0, what .. ": simulate safe <=> run succeeds\n" .. r.text)
  end
end

for _, cname in ipairs(FC.names()) do
  T["agree: case " .. cname] = function()
    local c, dir = FC.load(cname)
    local url, mdir, name = FC.build(dir, c)
    agree(three(url, mdir, name), cname)
  end
end

-- the issue's repro: lint = { large_rows = 1000 } and a failed CREATE INDEX on a
-- 5,000-row table. plan refuses (split-large-migration); simulate used to
-- rehearse the redeploy and say "safe to run: yes".
T["agree: lint evidence reaches simulate (split-large-migration refuses in plan, simulate and run)"] = function()
  local init = { "20240101000000_init", 'CREATE TABLE "Ticket" ("id" SERIAL PRIMARY KEY, "title" TEXT NOT NULL);\n' }
  local idx = { "20240102000000_ticket_title_idx", 'CREATE INDEX "Ticket_title_idx" ON "Ticket"("title");\n' }
  local dir, mdir = h.project { init, idx }
  h.write(dir .. "/migfix.lua", 'return { default_environment = "prod", environments = { prod = { lint = { large_rows = 1000 } } } }\n')
  local name, url = h.fresh_db()
  L.deploy(url, nil, mdir, init[1])
  h.psql(url, [[INSERT INTO "Ticket" ("title") SELECT 'ticket ' || g FROM generate_series(1, 5000) g; ANALYZE "Ticket";]])
  L.failed(url, idx[1], L.checksum(idx[2]), "A migration failed to apply.\n\nDatabase error code: 55P03\n\nDatabase error:\nERROR: canceling statement due to lock timeout\n")
  local run_db = select(1, h.fresh_db(name))
  local function go(u, args)
    local argv = { "-C", dir, "--url", u }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local out, err, rc = h.migfix(argv)
    return doc_of(out, err, args[1]), rc, out .. err
  end
  local plan, prc, ptxt = go(url, { "plan", "--json" })
  h.eq(prc, 1, ptxt)
  h.eq(plan.migrations[1].policy, "split-large-migration", ptxt)
  local sim, src, stxt = go(url, { "simulate", "--json", "--from", "template" })
  h.eq(src, 1, stxt)
  h.eq(sim.verdict.safe, false, stxt)
  h.eq(sim.chain[1].policy, "split-large-migration", stxt)
  local run, rrc, rtxt = go(h.url(run_db), { "run", "--yes", "--json" })
  h.eq(rrc, 1, rtxt)
  h.eq(run.migrations[1].policy, "split-large-migration", rtxt)
  -- plan keeps the reasons of the policy that declined before it
  h.eq(plan.migrations[1].not_applied[1].policy, "apply-if-complete", ptxt)
end

-- verification after every write: a redeploy whose script succeeds but does
-- not leave what the file creates fails the run (exit 4) naming the objects
T["a redeploy that leaves the migration incomplete exits 4 with the missing objects"] = function()
  local init = { "20240101000000_init", 'CREATE TABLE "Base" ("id" INTEGER PRIMARY KEY);\n' }
  local ghost = { "20240102000000_ghost", 'CREATE TABLE "Ghost" ("id" INTEGER);\nDO $$ BEGIN EXECUTE \'DROP TABLE "Ghost"\'; END $$;\n' }
  local dir, mdir = h.project { init, ghost }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, init[1])
  L.failed(url, ghost[1], L.checksum(ghost[2]), "A migration failed to apply.\n\nDatabase error code: 55P03\n\nDatabase error:\nERROR: canceling statement due to lock timeout\n")
  local out, err, rc = h.migfix({ "-C", dir, "--url", url, "run", "--yes" })
  h.eq(rc, 4, out .. err)
  h.contains(out .. err, "verification after the redeploy")
  h.contains(out .. err, "table Ghost: missing")
  -- the failure is in the journal: the deploy entry carries the verification
  local v = h.psql(url, [[SELECT details->'verification'->>'verdict' FROM migfix.journal WHERE action = 'deploy' ORDER BY seq DESC LIMIT 1]])
  h.contains(v, "absent")
end

return T
