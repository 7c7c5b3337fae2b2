-- migfix.lua checked at load (every mistake: exit 2, migfix.lua:LINE, the
-- nearest valid name, before anything connects), `migfix config check`,
-- .env as Prisma's dotenv reads it, and the small truths of the CLI (JSON
-- errors, help help, exit 4, no document cited that is not in the repository).
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local config = require "migfix.config"

local T = {}

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT);\n' }

local GOOD = [[
return {
  default_environment = "development",
  policy_paths = { "ops/pol" },
  environments = {
    development = {
      url = env "DATABASE_URL",
      policies = { "apply-if-complete", "rollback-and-redeploy" },
    },
    production = {
      url = env "PROD_DATABASE_URL",
      confirm = "flag",
      backup = { required = true, scope = "full" },
      forbid = { "redeploy" },
      policies = { "mine", "apply-if-complete", "refuse-partial-or-drifted" },
      timeouts = { lock_timeout = "5s", statement_timeout = "15min", advisory_lock = "10s", connect = 10 },
      lint = { errors = { "S6" }, off = { "S9" } },
      deploy = { lock_timeout = "2s", retries = 3, retry_pause = "10s" },
    },
  },
}
]]

local MINE = 'local p = { name = "mine", needs = { "data" } }\nfunction p.applies(m) return false, "never" end\nfunction p.decide(m, plan) end\nreturn p\n'

--- a project with GOOD (after `edit`, a gsub pair) and a real database; the status it gives
local function project(edit)
  local dir = h.project { M1 }
  h.write(dir .. "/ops/pol/mine.lua", MINE)
  local text = GOOD
  if edit then
    local n
    text, n = text:gsub(edit[1], edit[2], 1)
    h.ok(n == 1, "the edit applies: " .. edit[1])
  end
  h.write(dir .. "/migfix.lua", text)
  return dir, text
end

local function line_of(text, needle)
  local n = 0
  for l in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if l:find(needle, 1, true) then return n end
  end
end

T["every mistake exits 2 with migfix.lua:LINE and the nearest name, before anything connects"] = function()
  local _, url = h.fresh_db()
  L.deploy(url, nil, h.project { M1 } .. "/prisma/migrations")
  local cases = {
    { { '"redeploy" }', '"re-deploy" }' }, '"re-deploy"', 'unrecognized action "re-deploy"', "did you mean redeploy?" },
    { { '"mine", "apply%-if%-complete"', '"mine", "aply-if-complete"' }, '"aply-if-complete"', 'unrecognized policy "aply-if-complete"', "did you mean apply-if-complete?" },
    { { '"S6"', '"S66"' }, '"S66"', 'unrecognized lint rule "S66"', "did you mean S6?" },
    { { '"15min"', '"15mins"' }, "statement_timeout", 'is not a duration: "15mins"', 'did you mean "15min"?' },
    { { 'retry_pause = "10s"', 'retry_pause = "10 parsecs"' }, "retry_pause", "is not a duration", nil },
    { { 'scope = "full"', 'scope = "fulll"' }, 'scope = "fulll"', 'must be one of full, schema, ledger, not "fulll"', "did you mean full?" },
    { { 'confirm = "flag"', 'confirm = "flags"' }, 'confirm = "flags"', "must be one of none, flag, interactive", "did you mean flag?" },
    { { 'confirm = "flag"', 'confirm = "flag", unit = "statment"' }, 'unit = "statment"', "must be one of file, statement", "did you mean statement?" },
    { { 'connect = 10', 'connect = "ten"' }, 'connect = "ten"', "whole number of seconds", nil },
    { { 'default_environment = "development"', 'default_environment = "developmnt"' }, "default_environment", "is not declared", "did you mean development?" },
    { { 'confirm = "flag"', 'confrim = "flag"' }, "confrim", 'unrecognized key "confrim"', "did you mean confirm?" },
    { { '"ops/pol"', '"ops/pols"' }, '"mine"', 'unrecognized policy "mine"', "ops/pols" },
    { { 'url = env "PROD_DATABASE_URL"', 'url = "mysql://x"' }, 'url = "mysql://x"', "url of environment", nil },
  }
  for _, c in ipairs(cases) do
    local dir, text = project(c[1])
    -- a real, reachable database: had migfix connected, status would say so (exit 0/1)
    local out, err, rc = h.migfix { "-C", dir, "--url", url, "status" }
    local what = c[3] .. ":\n" .. out .. err
    h.eq(rc, 2, what)
    h.contains(err, "migfix.lua:" .. line_of(text, c[2]) .. ":", what)
    h.contains(err, c[3], what)
    if c[4] then h.contains(err, c[4], what) end
    h.eq(out, "", "nothing printed on stdout")
    -- config check says the same
    local _, err2, rc2 = h.migfix { "-C", dir, "config", "check" }
    h.eq(rc2, 2)
    h.contains(err2, c[3])
  end
  -- a policy of another environment's chain that does not load is caught too
  local dir = project()
  h.write(dir .. "/ops/pol/mine.lua", 'local p = { name = "mine" }\nreturn p\n')
  local _, err, rc = h.migfix { "-C", dir, "--url", url, "--env", "development", "status" }
  h.eq(rc, 2, err)
  h.contains(err, 'policy "mine" of environment "production" cannot be loaded')
  h.contains(err, "migfix.lua:" .. line_of(GOOD, '"mine"') .. ":")
  -- the valid file passes
  dir = project()
  local out
  out, err, rc = h.migfix { "-C", dir, "--url", url, "status" }
  h.eq(rc, 0, out .. err)
end

T["config check: the resolved configuration per environment, text and --json"] = function()
  local dir = project()
  local out, err, rc = h.migfix({ "-C", dir, "config", "check" }, { env = { PROD_DATABASE_URL = "postgresql://u:s3cret@db/x" } })
  h.eq(rc, 0, err)
  h.contains(out, "valid")
  h.contains(out, "environment development (selected, default_environment)")
  h.contains(out, "environment production")
  h.contains(out, dir .. "/ops/pol/mine.lua (team) [needs data]")
  h.contains(out, h.root .. "/policies/apply-if-complete.lua (shipped)")
  h.contains(out, "statement_timeout 15min (900000 ms)")
  h.contains(out, "$PROD_DATABASE_URL (set")
  h.not_contains(out, "s3cret")
  out, err, rc = h.migfix { "-C", dir, "config", "check", "--json" }
  h.eq(rc, 0, err)
  local doc = assert(json.decode(out), out)
  h.eq(doc.valid, true)
  h.eq(doc.default_environment, "development")
  local prod
  for _, e in ipairs(doc.environments) do if e.name == "production" then prod = e end end
  h.ok(prod, "production listed")
  h.same(prod.forbid, { "redeploy" })
  h.eq(prod.confirm, "flag")
  h.same(prod.backup, { required = true, scope = "full", dir = dir .. "/.migfix/backups/production" })
  h.eq(prod.timeouts.lock_timeout.ms, 5000)
  h.eq(prod.timeouts.advisory_lock.ms, 10000)
  h.eq(prod.policies[1].name, "mine")
  h.eq(prod.policies[1].origin, "team")
  h.same(prod.lint.errors, { "S6" })
  h.same(prod.lint.off, { "S9" })
  h.eq(prod.deploy.retries, 3)
  h.eq(prod.url.env, "PROD_DATABASE_URL")
  -- no migfix.lua: the defaults, one environment
  local bare = h.project { M1 }
  out, err, rc = h.migfix { "-C", bare, "config", "check", "--json" }
  h.eq(rc, 0, err)
  doc = json.decode(out)
  h.eq(#doc.environments, 1)
  h.eq(#doc.environments[1].policies, 4)
  -- bad subcommand
  local _, err3, rc3 = h.migfix { "-C", bare, "config", "show" }
  h.eq(rc3, 2)
  h.contains(err3, 'unrecognized config subcommand "show"')
end

T[".env: the dotenv cases Prisma's bundled dotenv 16 documents, and ${VAR} expansion"] = function()
  local vars = config.dotenv_parse(table.concat({
    "BASIC=basic", "", "# previous line intentionally left blank", "AFTER_LINE=after_line", "EMPTY=",
    "EMPTY_SINGLE_QUOTES=''", 'EMPTY_DOUBLE_QUOTES=""', "EMPTY_BACKTICKS=``", "SINGLE_QUOTES='single_quotes'",
    "SINGLE_QUOTES_SPACED='    single quotes    '", 'DOUBLE_QUOTES="double_quotes"', 'DOUBLE_QUOTES_SPACED="    double quotes    "',
    [[DOUBLE_QUOTES_INSIDE_SINGLE='double "quotes" work inside single quotes']],
    [[SINGLE_QUOTES_INSIDE_DOUBLE="single 'quotes' work inside double quotes"]],
    "BACKTICKS=`backticks`", [[DOUBLE_AND_SINGLE_QUOTES_INSIDE_BACKTICKS=`double "quotes" and single 'quotes' work inside backticks`]],
    [[EXPAND_NEWLINES="expand\nnew\nlines"]], [[DONT_EXPAND_UNQUOTED=dontexpand\nnewlines]], [[DONT_EXPAND_SQUOTED='dontexpand\nnewlines']],
    "# COMMENTS=work", "INLINE_COMMENTS=inline comments # work #very #well",
    "INLINE_COMMENTS_SINGLE_QUOTES='inline comments outside of #singlequotes' # work",
    'INLINE_COMMENTS_DOUBLE_QUOTES="inline comments outside of #doublequotes" # work',
    "INLINE_COMMENTS_SPACE=inline comments start with a#number sign. no space required.",
    "EQUAL_SIGNS=equals==", [[RETAIN_INNER_QUOTES={"foo": "bar"}]], [[RETAIN_INNER_QUOTES_AS_STRING='{"foo": "bar"}']],
    "TRIM_SPACE_FROM_UNQUOTED=    some spaced out string", "USERNAME=therealnerdybeast@example.tld",
    "    SPACED_KEY = parsed", "export EXPORTED=yes", "COLON: value", 'MULTI_DOUBLE_QUOTED="THIS', "IS", "A", 'MULTILINE"',
    "DATABASE_URL=\"postgresql://u:p@h:5432/db?schema=public\" # the app's", "WINDOWS=crlf\r", "LAST=last",
  }, "\n"))
  local want = {
    BASIC = "basic", AFTER_LINE = "after_line", EMPTY = "", EMPTY_SINGLE_QUOTES = "", EMPTY_DOUBLE_QUOTES = "",
    EMPTY_BACKTICKS = "", SINGLE_QUOTES = "single_quotes", SINGLE_QUOTES_SPACED = "    single quotes    ",
    DOUBLE_QUOTES = "double_quotes", DOUBLE_QUOTES_SPACED = "    double quotes    ",
    DOUBLE_QUOTES_INSIDE_SINGLE = 'double "quotes" work inside single quotes',
    SINGLE_QUOTES_INSIDE_DOUBLE = "single 'quotes' work inside double quotes", BACKTICKS = "backticks",
    DOUBLE_AND_SINGLE_QUOTES_INSIDE_BACKTICKS = [[double "quotes" and single 'quotes' work inside backticks]],
    EXPAND_NEWLINES = "expand\nnew\nlines", DONT_EXPAND_UNQUOTED = [[dontexpand\nnewlines]],
    DONT_EXPAND_SQUOTED = [[dontexpand\nnewlines]], INLINE_COMMENTS = "inline comments",
    INLINE_COMMENTS_SINGLE_QUOTES = "inline comments outside of #singlequotes",
    INLINE_COMMENTS_DOUBLE_QUOTES = "inline comments outside of #doublequotes",
    INLINE_COMMENTS_SPACE = "inline comments start with a", EQUAL_SIGNS = "equals==",
    RETAIN_INNER_QUOTES = '{"foo": "bar"}', RETAIN_INNER_QUOTES_AS_STRING = '{"foo": "bar"}',
    TRIM_SPACE_FROM_UNQUOTED = "some spaced out string", USERNAME = "therealnerdybeast@example.tld",
    SPACED_KEY = "parsed", EXPORTED = "yes", COLON = "value", MULTI_DOUBLE_QUOTED = "THIS\nIS\nA\nMULTILINE",
    DATABASE_URL = "postgresql://u:p@h:5432/db?schema=public", WINDOWS = "crlf", LAST = "last",
  }
  h.same(vars, want)
  -- ${VAR} expansion (not $VAR; \${X} stays literal): process environment first, then the files
  local dir = h.tmpdir()
  h.write(dir .. "/.env", 'HOST=db.internal\nDATABASE_URL="postgresql://app@${HOST}:${PORT}/app"\nRAW=$HOST\nLIT=\\${HOST}\nMISSING=${NOPE}x\n')
  h.write(dir .. "/prisma/.env", "HOST=ignored\nSECOND=${HOST}-2\n")
  local env = config.dotenv_load({ dir .. "/.env", dir .. "/prisma/.env" }, function(n) return ({ PORT = "6543", HOST = "" })[n] end)
  h.same(env, { HOST = "db.internal", DATABASE_URL = "postgresql://app@db.internal:6543/app", RAW = "$HOST", LIT = "${HOST}",
                MISSING = "x", SECOND = "db.internal-2" })
end

T["no database URL: the detail names every place looked at"] = function()
  local dir = h.project { M1 }
  local _, err, rc = h.migfix({ "-C", dir, "status" }, { env = { DATABASE_URL = "" } })
  h.eq(rc, 2)
  for _, s in ipairs({ "--url (not given)", "migfix.lua (no such file)", "prisma.config.ts", "$DATABASE_URL in the process environment",
                       dir .. "/.env", dir .. "/prisma/.env" }) do h.contains(err, s) end
  -- prisma.config.ts naming another variable
  h.write(dir .. "/prisma.config.ts", 'import { defineConfig, env } from "prisma/config"\nexport default defineConfig({\n  datasource: { url: env("APP_URL") },\n})\n')
  _, err, rc = h.migfix({ "-C", dir, "status" }, { env = { DATABASE_URL = "", APP_URL = "" } })
  h.eq(rc, 2)
  h.contains(err, "datasource.url of prisma.config.ts:3 (names APP_URL)")
  h.contains(err, "$APP_URL in the process environment")
end

T["--json errors: a JSON document on stdout and the text on stderr"] = function()
  local dir = h.project { M1 }
  for _, args in ipairs({ { "status", "--json" }, { "diagnose", "--json" }, { "plan", "--json" }, { "run", "--json" },
                          { "lint", "--pending", "--json" }, { "config", "check", "--json" }, { "status", "--json", "--bogus" } }) do
    local full = { "-C", dir, "--url", "postgresql://nobody@127.0.0.1:1/none" }
    for _, a in ipairs(args) do full[#full + 1] = a end
    local out, err, rc = h.migfix(full)
    local what = table.concat(args, " ") .. ": " .. out .. err
    if args[1] ~= "config" and args[1] ~= "lint" then
      h.ok(rc == 3 or rc == 2, what)
      local doc = json.decode(out)
      h.ok(doc and doc.error, what)
      h.eq(doc.error.code, rc, what)
      h.ok(type(doc.error.message) == "string" and doc.error.message ~= "", what)
      h.ok(doc.error.hint ~= nil, what)
      h.contains(err, "migfix: error: " .. doc.error.message, what)
    end
  end
  -- a configuration error is a JSON document too
  h.write(dir .. "/migfix.lua", 'return { environments = { dev = { forbid = { "deploi" } } } }\n')
  local out, _, rc = h.migfix { "-C", dir, "config", "check", "--json" }
  h.eq(rc, 2)
  h.contains(json.decode(out).error.message, "migfix.lua:1:")
  h.contains(json.decode(out).error.hint, "did you mean deploy?")
end

T["help help, and exit 4 described as it happens in --help, README and the man page"] = function()
  local out, _, rc = h.migfix { "help", "help" }
  h.eq(rc, 0)
  h.contains(out, "Usage: migfix help [COMMAND | --man]")
  out, _, rc = h.migfix { "help", "config" }
  h.eq(rc, 0)
  h.contains(out, "Usage: migfix config check [--json]")
  local cli = require "migfix.cli"
  h.contains(cli.EXIT_HELP, "a redeploy whose script fails is recorded as Prisma")
  h.not_contains(cli.EXIT_HELP, "the ledger was left as it was")
  local readme = h.read(h.root .. "/README.md")
  h.contains(readme, "| 4 | an action failed mid-way, a write did not verify, or an internal error")
  h.contains(readme, "a redeploy whose script fails is recorded as Prisma records it")
  local man = h.migfix({ "help", "--man" }, { env = { MIGFIX_MAN_DATE = "2026-01-01" } })
  h.contains(man, "a write did not verify")
  h.contains(man, "migfix config check")
end

T["no comment or help text cites a document that is not in the repository"] = function()
  local out = h.sh(("cd %s && grep -rnoE '[A-Za-z0-9_./-]+\\.md' scripts policies docs README.md tests/lua tests/compat 2>/dev/null"):format(h.shq(h.root)))
  local missing = {}
  for line in out:gmatch("[^\n]+") do
    local file, ref = line:match("^([^:]+):%d+:(.*)$")
    if ref and not ref:match("^https?") and not ref:find("share/doc/", 1, true) then
      local base = file:match("^(.*)/[^/]*$") or "."
      local candidates = { ref, base .. "/" .. ref, "docs/" .. ref:gsub("^docs/", "") }
      local found = false
      for _, c in ipairs(candidates) do
        if io.open(h.root .. "/" .. c, "rb") then found = true end
      end
      if not found then missing[#missing + 1] = line end
    end
  end
  h.eq(#missing, 0, "cited but not in the repository:\n" .. table.concat(missing, "\n"))
end

return T
