-- Environment rules are a floor, through the CLI on the real test server:
-- plan verbs checked when called (exit 2 with the policy's file:line, in plan
-- as in run), applies() must return a boolean, plan --json keeps every
-- declining policy's reason, a required backup scope raises a policy's smaller
-- one, resolve honours forbid and the backup floor, exec scripts get the
-- confirmation, the required backup and forbid; status reports P3005.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"

local T = {}

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }

--- M1 applied, M2's statement executed, its row failed: verdict complete
local function complete_state()
  local dir, mdir = h.project { M1, M2 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, M1[1])
  h.psql(url, M2[2])
  L.failed(url, M2[1], L.checksum(M2[2]), nil)
  return dir, url
end

local function policy(dir, name, applies, decide)
  h.write(dir .. "/pol/" .. name .. ".lua", ("local p = { name = %q }\nfunction p.applies(m) %s end\nfunction p.decide(m, plan)\n  %s\nend\nreturn p\n")
    :format(name, applies, decide))
end

local function env(dir, body)
  h.sh("mkdir -p " .. h.shq(dir .. "/pol"))
  h.write(dir .. "/migfix.lua", ('return { policy_paths = { "pol" }, default_environment = "e", environments = { e = { %s } } }\n'):format(body))
end

local function mf(dir, url, args, opts)
  local full = { "-C", dir, "--url", url }
  for _, a in ipairs(args) do full[#full + 1] = a end
  return h.migfix(full, opts)
end

local function ledger(url) return h.psql(url, "SELECT string_agg(migration_name || ':' || coalesce(finished_at::text, '-') || ':' || coalesce(rolled_back_at::text, '-'), ',' ORDER BY started_at) FROM _prisma_migrations") end

T["plan verbs and applies() are checked when called: exit 2 with the policy's file:line, in plan as in run"] = function()
  local dir, url = complete_state()
  for src, want in pairs {
    ['plan:backup { scope = "everything" }'] = 'unrecognized scope "everything"',
    ['plan:backup { scop = "full" }'] = 'unrecognized option "scop"',
    ['plan:mark_applied("now")'] = "plan:mark_applied() takes no arguments",
    ['plan:refuse("no", { hint = "x" }, "extra")'] = "takes one table argument",
  } do
    policy(dir, "verbs", "return true", src)
    env(dir, 'policies = { "verbs" }')
    local before = ledger(url)
    for _, cmd in ipairs({ "plan", "run" }) do
      local out, err, rc = mf(dir, url, { cmd })
      h.eq(rc, 2, cmd .. " " .. src .. ":\n" .. out .. err)
      h.contains(err, want, src)
      h.contains(err, "verbs.lua:4:", src)
    end
    h.eq(ledger(url), before, "nothing written")
  end
  policy(dir, "yes", 'return "yes"', "plan:mark_applied()")
  env(dir, 'policies = { "yes" }')
  local _, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 2, err)
  h.contains(err, 'applies() must return true or false, got "yes"')
end

T["plan --json keeps the reason of every policy that declined"] = function()
  local dir, url = complete_state()
  policy(dir, "no1", 'return false, "not the first"', 'plan:refuse("x")')
  policy(dir, "no2", 'return false', 'plan:refuse("x")')
  env(dir, 'policies = { "no1", "no2", "apply-if-complete" }')
  local out, err, rc = mf(dir, url, { "plan", "--json" })
  h.eq(rc, 0, err)
  local m = json.decode(out).migrations[1]
  h.eq(m.policy, "apply-if-complete")
  h.same(m.not_applied, { { policy = "no1", why = "not the first" }, { policy = "no2", why = "does not apply" } })
end

T["a required backup scope is a floor: a policy's ledger backup is raised to full, and plan says so"] = function()
  local dir, url = complete_state()
  policy(dir, "small", 'return m.verdict == "complete"', 'plan:backup { scope = "ledger" } plan:mark_applied() plan:check()')
  env(dir, 'policies = { "small" }, backup = { required = true, scope = "full" }')
  local out, err, rc = mf(dir, url, { "plan" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "scope full")
  h.contains(out, "[raised from ledger: the environment requires full]")
  out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
  local man = h.sh("cat " .. h.shq(dir) .. "/.migfix/backups/e/*.json")
  h.contains(man, '"scope": "full"')
end

T["resolve honours forbid and the backup floor"] = function()
  local dir, url = complete_state()
  env(dir, 'forbid = { "mark_applied" }')
  local before = ledger(url)
  local _, err, rc = mf(dir, url, { "resolve", "--applied", M2[1] })
  h.eq(rc, 1, err)
  h.contains(err, 'environment "e" forbids mark applied')
  h.eq(ledger(url), before)
  env(dir, 'backup = { required = true, scope = "schema" }')
  local out
  out, err, rc = mf(dir, url, { "resolve", "--applied", M2[1], "--no-backup" })
  h.eq(rc, 0, out .. err)
  -- --no-backup cannot undercut it: ledger (resolve's own) joined with schema = full
  local man = h.sh("cat " .. h.shq(dir) .. "/.migfix/backups/e/*.json")
  h.contains(man, '"scope": "full"')
end

local SCRIPT = [==[
local conn = migfix.connect {}
local how = arg[1]
if how == "act" then
  local ok, msg = migfix.act(conn, "mark_applied", arg[2])
  print("act", ok, msg)
elseif how == "lw" then
  local lw = require "migfix.ledger_write"
  local st = migfix.state(conn)
  lw.mark_applied(conn, st.schema, st.by_name[arg[2]], st.by_name[arg[2]]["local"].text, {})
  print("built")
else
  assert(conn:exec("CREATE TABLE script_wrote (x int)"))
  print("wrote")
end
return 0
]==]

T["exec: confirmation and the required backup before a writable connection; forbid binds migfix.act and ledger_write"] = function()
  local dir, url = complete_state()
  local script = dir .. "/fix.lua"
  h.write(script, SCRIPT)
  env(dir, 'confirm = "flag", backup = { required = true, scope = "schema" }')
  -- no --yes: nothing written, no backup
  local out, err, rc = mf(dir, url, { "exec", script, "raw" })
  h.eq(rc, 1, out .. err)
  h.contains(err, "requires confirmation before writing")
  h.eq(h.psql(url, "SELECT count(*) FROM pg_class WHERE relname = 'script_wrote'"), "0\n")
  h.eq(h.sh("ls " .. h.shq(dir) .. "/.migfix/backups/e/ 2>/dev/null | grep -c dump"), "0\n")
  -- --yes: the required backup first (journaled), then the script's write
  out, err, rc = mf(dir, url, { "exec", "--yes", script, "raw" })
  h.eq(rc, 0, out .. err)
  h.contains(out, "wrote")
  h.contains(err, "backup (required by environment e)")
  h.contains(h.sh("cat " .. h.shq(dir) .. "/.migfix/backups/e/*.json"), '"scope": "schema"')
  h.eq(h.psql(url, "SELECT count(*) FROM migfix.journal WHERE action = 'backup' AND command = 'exec'"), "1\n")
  -- a read-only connection needs neither
  h.write(dir .. "/ro.lua", 'local c = migfix.connect { readonly = true }\nprint(#migfix.state(c).migrations)\nreturn 0\n')
  out, err, rc = mf(dir, url, { "exec", dir .. "/ro.lua" })
  h.eq(rc, 0, out .. err)
  -- forbid: migfix.act and ledger_write refuse, the ledger is unchanged
  env(dir, 'forbid = { "mark_applied" }')
  local before = ledger(url)
  for _, how in ipairs({ "act", "lw" }) do
    out, err, rc = mf(dir, url, { "exec", script, how, M2[1] })
    h.eq(rc, 1, how .. ": " .. out .. err)
    h.contains(err, 'environment "e" forbids mark applied', how)
    h.eq(ledger(url), before, how)
  end
  -- allowed: migfix.act runs the action as `migfix run` does
  env(dir, 'forbid = { "redeploy" }')
  out, err, rc = mf(dir, url, { "exec", script, "act", M2[1] })
  h.eq(rc, 0, out .. err)
  h.contains(out, "act\ttrue")
  local _, _, src = mf(dir, url, { "status" })
  h.eq(src, 0, "resolved")
end

T["status: P3005 for a non-empty schema without a ledger, as migrate deploy"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  h.psql(url, "CREATE TABLE legacy (id int); CREATE TABLE spatial_ref_sys (srid int)")
  local out, err, rc = mf(dir, url, { "status" })
  h.eq(rc, 1, err)
  h.contains(out, 'P3005: prisma migrate deploy would refuse: the database schema "public" is not empty')
  h.contains(out, "(tables: legacy)")
  h.contains(out, "The database schema is not empty. Read more about how to baseline")
  out = mf(dir, url, { "status", "--json" })
  local doc = json.decode(out)
  h.eq(doc.status, "unmanaged")
  h.eq(doc.deploy.code, "P3005")
  h.eq(doc.deploy.refuses, true)
  -- what deploy does with it
  local _, derr, drc = mf(dir, url, { "deploy" })
  h.eq(drc, 1)
  h.contains(derr, "P3005")
  -- an empty schema (PostGIS tables do not count) is not P3005
  h.psql(url, "DROP TABLE legacy")
  out = mf(dir, url, { "status", "--json" })
  h.eq(json.decode(out).deploy.code, json.null)
end

return T
