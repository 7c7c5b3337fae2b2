-- Bad inputs: each a clear message and the right exit code.
local h = require "helper"

local M1 = { "20240101000000_init", "CREATE TABLE t (id int);\n" }

local T = {}

T["--version and --help"] = function()
  local out, _, rc = h.migfix { "--version" }
  h.eq(rc, 0)
  h.contains(out, "migfix ")
  out, _, rc = h.migfix { "--help" }
  h.eq(rc, 0)
  h.contains(out, "Exit codes:")
  for _, c in ipairs({ "status", "diagnose", "plan", "run", "resolve", "deploy", "exec" }) do
    local o, _, r = h.migfix { c, "--help" }
    h.eq(r, 0, c .. " --help")
    h.contains(o, "Usage: migfix " .. c)
  end
end

T["unrecognized command and option: exit 2"] = function()
  local _, err, rc = h.migfix { "frobnicate" }
  h.eq(rc, 2)
  h.contains(err, 'unrecognized command "frobnicate"')
  _, err, rc = h.migfix { "status", "--frob" }
  h.eq(rc, 2)
  h.contains(err, "unrecognized option '--frob'")
end

T["unreachable server: exit 3, names host and port"] = function()
  local dir = h.project { M1 }
  local _, err, rc = h.migfix { "-C", dir, "--url", "postgresql://postgres@127.0.0.1:1/nope", "status" }
  h.eq(rc, 3)
  h.contains(err, "127.0.0.1")
  h.contains(err, "migfix: error:")
end

T["wrong password: exit 3, the password never printed"] = function()
  local dir = h.project { M1 }
  local port = h.admin_url:match(":(%d+)/")
  local secret = "Wr0ng-" .. os.time() .. "-pw"
  local out, err, rc = h.migfix { "-C", dir, "--url", ("postgresql://migfix_pw:%s@127.0.0.1:%s/postgres"):format(secret, port), "status" }
  h.eq(rc, 3)
  h.contains(err, "migfix_pw")
  h.not_contains(out .. err, secret)
end

T["malformed URL: exit 2"] = function()
  local dir = h.project { M1 }
  local _, err, rc = h.migfix { "-C", dir, "--url", "mysql://x@y/z", "status" }
  h.eq(rc, 2)
  h.contains(err, "URL")
end

T["no URL at all: exit 2 with where migfix looked"] = function()
  local dir = h.project { M1 }
  local _, err, rc = h.migfix({ "-C", dir, "status" }, { env = { DATABASE_URL = "" } })
  h.eq(rc, 2)
  h.contains(err, "no database URL")
end

T["DATABASE_URL from .env, as Prisma"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  h.write(dir .. "/.env", 'DATABASE_URL="' .. url .. '?schema=public&connection_limit=5"\n')
  local out, err, rc = h.migfix({ "-C", dir, "status" }, { env = { DATABASE_URL = "" } })
  h.eq(rc, 1, err)
  h.contains(out, "pending")
end

T["missing migrations folder: exit 2 naming it"] = function()
  local dir = h.tmpdir()
  local _, url = h.fresh_db()
  local _, err, rc = h.migfix { "-C", dir, "--url", url, "status" }
  h.eq(rc, 2)
  h.contains(err, "prisma/migrations")
  h.contains(err, "does not exist")
end

T["unreadable migration.sql: exit 2 naming the path"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  local path = dir .. "/prisma/migrations/" .. M1[1] .. "/migration.sql"
  h.sh("chmod 000 " .. h.shq(path))
  local out, err, rc
  if h.sh("id -u"):match("^0") then
    -- root reads anything: drop the capabilities that let it (setpriv, util-linux)
    out, rc = h.sh(("setpriv --bounding-set=-dac_override,-dac_read_search %s -C %s --url %s status 2>&1"):format(h.shq(h.bin), h.shq(dir), h.shq(url)))
    err = out
  else
    out, err, rc = h.migfix { "-C", dir, "--url", url, "status" }
  end
  h.eq(rc, 2, err)
  h.contains(err, "migration.sql")
  h.contains(err, "Permission denied")
end

T["migration_lock.toml for another provider: exit 2"] = function()
  local dir = h.project({ M1 }, { provider = "mysql" })
  local _, url = h.fresh_db()
  local _, err, rc = h.migfix { "-C", dir, "--url", url, "status" }
  h.eq(rc, 2)
  h.contains(err, '"mysql"')
end

T["config: syntax error names file and line; unknown key; unknown environment"] = function()
  local dir = h.project { M1 }
  local _, url = h.fresh_db()
  h.write(dir .. "/migfix.lua", "return {\n  environments = {\n    dev = { url = \"x\" \n  }\n")
  local _, err, rc = h.migfix { "-C", dir, "status" }
  h.eq(rc, 2)
  h.contains(err, "migfix.lua:")
  h.write(dir .. "/migfix.lua", "return {\n  environments = {\n    dev = {\n      url = '" .. url .. "',\n      polcies = { 'x' },\n    },\n  },\n}\n")
  _, err, rc = h.migfix { "-C", dir, "--env", "dev", "status" }
  h.eq(rc, 2)
  h.contains(err, "migfix.lua:5")
  h.contains(err, 'unrecognized key "polcies"')
  h.write(dir .. "/migfix.lua", "return { environments = { dev = { url = '" .. url .. "' } } }\n")
  _, err, rc = h.migfix { "-C", dir, "--env", "prod", "status" }
  h.eq(rc, 2)
  h.contains(err, 'unrecognized environment "prod"')
  h.contains(err, "dev")
  local out
  out, err, rc = h.migfix { "-C", dir, "--env", "dev", "status" }
  h.eq(rc, 1, err)
  h.contains(out, "environment dev")
end

T["exec: a script error reaches the user with file:line and a traceback"] = function()
  local d = h.tmpdir()
  h.write(d .. "/bad.lua", "local x = 1\nlocal function f() error('boom here') end\nf()\n")
  local _, err, rc = h.migfix { "exec", d .. "/bad.lua" }
  h.eq(rc, 4)
  h.contains(err, "bad.lua:2: boom here")
  h.contains(err, "stack traceback")
  h.write(d .. "/ok.lua", "return tonumber(arg[1])\n")
  local _, _, rc2 = h.migfix { "exec", d .. "/ok.lua", "7" }
  h.eq(rc2, 7)
end

T["the password of --url is blanked in the process arguments"] = function()
  local port = h.admin_url:match(":(%d+)/")
  local secret = "Sup3r-" .. os.time()
  local d = h.tmpdir()
  h.write(d .. "/ps.lua", "local f = io.open('/proc/self/cmdline', 'rb'); local s = f:read('a'); f:close(); io.write(s); return 0\n")
  local out, _, rc = h.migfix { "--url", ("postgresql://u:%s@127.0.0.1:%s/x"):format(secret, port), "exec", d .. "/ps.lua" }
  h.eq(rc, 0)
  h.not_contains(out, secret)
  h.contains(out, "u:")
end

T["help lists every command with its module's summary (read with its requires deferred)"] = function()
  local out, _, rc = h.migfix { "help" }
  h.eq(rc, 0)
  local cli = require "migfix.cli"
  for _, name in ipairs(cli.COMMANDS) do
    local mod = require("migfix.commands." .. name)
    h.contains(out, ("  %-10s %s"):format(name, mod.summary), name)
    h.eq(cli.summary(name), mod.summary, name)
  end
end

T["modules load from make's bytecode when it is current, else from the source"] = function()
  -- a home of its own: the scripts and build/luac of this tree, copied
  local home = h.tmpdir()
  h.sh(("cp -a %s/scripts %s/ && mkdir -p %s/build && cp -a %s/build/luac %s/build/"):format(
    h.shq(h.root), h.shq(home), h.shq(home), h.shq(h.root), h.shq(home)))
  local script = home .. "/src.lua"
  h.write(script, 'print(debug.getinfo(require("migfix.ui").paint, "S").source)\n')
  local function source()
    local out, rc = h.sh(("MIGFIX_HOME=%s %s exec %s"):format(h.shq(home), h.shq(h.bin), h.shq(script)))
    h.eq(rc, 0, out)
    return (out:gsub("%s+$", ""))
  end
  h.eq(source(), "@scripts/migfix/ui.lua", "the bytecode (compiled from scripts/, line information kept)")
  h.sh(("touch -d '+1 minute' %s/scripts/migfix/ui.lua"):format(h.shq(home)))
  h.eq(source(), "@" .. home .. "/scripts/migfix/ui.lua", "a source edited after make: the source")
  h.sh(("printf 'junk' > %s/build/luac/migfix/ui.luac && touch -d '+2 minutes' %s/build/luac/migfix/ui.luac"):format(
    h.shq(home), h.shq(home)))
  h.eq(source(), "@" .. home .. "/scripts/migfix/ui.lua", "an unloadable bytecode file: the source")
  h.sh(("rm %s/scripts/migfix/ui.lua"):format(h.shq(home)))
  local out, rc = h.sh(("MIGFIX_HOME=%s %s --version 2>&1"):format(h.shq(home), h.shq(h.bin)))
  h.ok(rc ~= 0, "no source, no bytecode either: " .. out)
end

return T
