-- make install / make uninstall: a relocatable tree (bin/../share/migfix), the
-- man page (rendered by man -l, checked by groff -ww and mandoc -Tlint), bash
-- and zsh completion (commands, options, environments, migration names).
-- One install per run (its own build directory, so ./migfix is not rebuilt).
local h = require "helper"
local L = require "prisma_ledger"

local T = {}

local installed -- {prefix, moved, build}

local function have(cmd) return select(2, h.sh("command -v " .. cmd .. " >/dev/null 2>&1")) == 0 end

--- install once into a temporary PREFIX, then move the whole tree elsewhere
local function install()
  if installed then return installed end
  local base = h.tmpdir()
  local prefix, build = base .. "/prefix", base .. "/build"
  local out, rc = h.sh(("make -s -C %s install PREFIX=%s BUILD=%s BIN=%s 2>&1"):format(
    h.shq(h.root), h.shq(prefix), h.shq(build), h.shq(build .. "/migfix")))
  if rc ~= 0 then error("make install failed:\n" .. out) end
  local moved = base .. "/moved/elsewhere"
  h.sh(("mkdir -p %s && mv %s %s"):format(h.shq(base .. "/moved"), h.shq(prefix), h.shq(moved)))
  installed = { base = base, prefix = prefix, moved = moved, build = build }
  return installed
end

local function files_under(dir)
  local out = h.sh(("cd %s && find . -type f | sort"):format(h.shq(dir)))
  local t = {}
  for f in out:gmatch("[^\n]+") do t[#t + 1] = f:gsub("^%./", "") end
  return t
end

T["install: the tree holds binary, scripts, policies, docs, man page, completions"] = function()
  local i = install()
  local files = {}
  for _, f in ipairs(files_under(i.moved)) do files[f] = true end
  for _, want in ipairs({ "bin/migfix", "share/migfix/scripts/migfix/cli.lua", "share/migfix/luac/migfix/cli.luac", "share/migfix/scripts/migfix/commands/check.lua",
                          "share/migfix/policies/apply-if-complete.lua", "share/migfix/policies/checks/S6-blocking-index.lua",
                          "share/migfix/scripts/examples/list-failed.lua", "share/doc/migfix/README.md", "share/doc/migfix/journal.md",
                          "share/man/man1/migfix.1", "share/bash-completion/completions/migfix", "share/zsh/site-functions/_migfix" }) do
    h.ok(files[want], "installed " .. want)
  end
  for f in pairs(files) do
    h.ok(not f:find("tests/", 1, true) and not f:find("%.c$") and not f:find("%.o$"), "nothing of the build or tests: " .. f)
  end
end

T["install: the moved tree runs on its own files (--version, a status on the real server, policies)"] = function()
  local i = install()
  local bin = i.moved .. "/bin/migfix"
  local out, rc = h.sh(h.shq(bin) .. " --version")
  h.eq(rc, 0)
  h.contains(out, "migfix ")
  local script = i.base .. "/home.lua"
  h.write(script, "print(migfix.home)\n")
  local home = h.sh(("cd / && env -u MIGFIX_HOME %s exec %s"):format(h.shq(bin), h.shq(script)))
  h.eq(home:gsub("%s+$", ""), i.moved .. "/share/migfix", "found relative to bin/, not the source tree")
  h.write(script, 'print(debug.getinfo(require("migfix.ui").paint, "S").source)\n')
  h.eq(h.sh(("env -u MIGFIX_HOME %s exec %s"):format(h.shq(bin), h.shq(script))):gsub("%s+$", ""), "@scripts/migfix/ui.lua",
       "the installed bytecode is loaded")
  local dir, mdir = h.project { { "20240101000000_init", "CREATE TABLE a (id int);\n" } }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir)
  local sout, src = h.sh(("cd %s && env -u MIGFIX_HOME %s --url %s status 2>&1"):format(h.shq(dir), h.shq(bin), h.shq(url)))
  h.eq(src, 0, sout)
  h.contains(sout, "up to date")
  local cout, crc = h.sh(("cd %s && env -u MIGFIX_HOME %s --url %s check 2>&1"):format(h.shq(dir), h.shq(bin), h.shq(url)))
  h.eq(crc, 0, cout)
  -- lint uses the installed policies/checks
  local lout, lrc = h.sh(("cd %s && env -u MIGFIX_HOME %s lint --offline --all 2>&1"):format(h.shq(dir), h.shq(bin)))
  h.eq(lrc, 0, lout)
end

T["install: a binary copied away from its tree says where it looked"] = function()
  local i = install()
  local lonely = i.base .. "/lonely"
  h.sh(("mkdir -p %s && cp %s %s/migfix"):format(h.shq(lonely), h.shq(i.moved .. "/bin/migfix"), h.shq(lonely)))
  local out, rc = h.sh(("env -u MIGFIX_HOME %s --version 2>&1"):format(h.shq(lonely .. "/migfix")))
  h.eq(rc, 4)
  h.contains(out, "scripts/migfix/cli.lua not found")
  h.contains(out, lonely)
  h.contains(out, i.prefix .. "/share/migfix", "the baked-in PREFIX is the last place")
  h.contains(out, "MIGFIX_HOME")
  local ok_out, ok_rc = h.sh(("MIGFIX_HOME=%s %s --version 2>&1"):format(h.shq(i.moved .. "/share/migfix"), h.shq(lonely .. "/migfix")))
  h.eq(ok_rc, 0, ok_out)
end

T["man page: renders with man -l, no groff warnings, mandoc lint clean, matches --help"] = function()
  local i = install()
  local page = i.moved .. "/share/man/man1/migfix.1"
  local out, rc = h.sh(("MANWIDTH=100 man -l %s 2>&1 | col -b"):format(h.shq(page)))
  h.eq(rc, 0, out)
  for _, want in ipairs({ "NAME", "migfix - get Prisma Migrate", "SYNOPSIS", "COMMANDS", "migfix check", "migfix metrics",
                          "--max-pending=N", "EXIT STATUS", "ENVIRONMENT", "MIGFIX_HOME", "FILES", "PROJECT DISCOVERY",
                          "prisma.config.ts" }) do
    h.contains(out, want)
  end
  -- every command of --help has its section
  local help = h.migfix { "--help" }
  -- justified lines may stretch the blanks of a section heading
  local flat = out:gsub("[ \t]+", " ")
  for name in help:gmatch("\n  (%l+) ") do
    if name ~= "help" then h.contains(flat, "migfix " .. name, "man page section for " .. name) end
  end
  local warn = h.sh(("groff -man -Tutf8 -ww %s 2>&1 >/dev/null"):format(h.shq(page)))
  h.eq(warn, "", "groff warnings")
  if have("mandoc") then
    local lint, lrc = h.sh(("mandoc -Tlint -W warning %s 2>&1"):format(h.shq(page)))
    h.eq(lrc, 0, lint)
    h.eq(lint, "")
  end
  -- the same text as `migfix help --man` (one source)
  local gen = h.migfix { "help", "--man" }
  h.eq(gen:gsub('%.TH MIGFIX 1 "[^"]*"', ""), h.read(page):gsub('%.TH MIGFIX 1 "[^"]*"', ""))
end

--- run the installed bash completion for a command line; returns COMPREPLY joined by spaces
local function bash_complete(i, words, cwd)
  local w = {}
  for _, x in ipairs(words) do w[#w + 1] = h.shq(x) end
  local script = ([[
[ -f /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion
. %s
COMP_WORDS=(%s); COMP_CWORD=%d
_migfix
printf '%%s\n' "${COMPREPLY[@]}"
complete -p migfix >/dev/null || echo NOT-REGISTERED
]]):format(h.shq(i.moved .. "/share/bash-completion/completions/migfix"), table.concat(w, " "), #words - 1)
  local f = i.base .. "/complete.bash"
  h.write(f, script)
  local out, rc = h.sh(("cd %s && PATH=%s:$PATH bash --norc --noprofile %s 2>&1"):format(h.shq(cwd or "/"), h.shq(i.moved .. "/bin"), h.shq(f)))
  h.eq(rc, 0, out)
  h.not_contains(out, "NOT-REGISTERED")
  local items = {}
  for l in out:gmatch("[^\n]+") do items[#items + 1] = l end
  table.sort(items)
  return table.concat(items, " ")
end

local function completion_project()
  local dir = h.project { { "20240101000000_init", "SELECT 1;\n" }, { "20240202000000_users", "SELECT 2;\n" } }
  h.write(dir .. "/migfix.lua", 'return { environments = { production = {}, staging = {} } }\n')
  return dir
end

T["completion, bash: commands, options, option values, environments and migration names"] = function()
  local i = install()
  local dir = completion_project()
  h.eq(bash_complete(i, { "migfix", "ch" }), "check")
  h.eq(bash_complete(i, { "migfix", "check", "--max" }), "--max-age --max-pending")
  h.eq(bash_complete(i, { "migfix", "backup", "--scope", "" }), "full ledger schema")
  h.eq(bash_complete(i, { "migfix", "backup", "--scope", "=", "sch" }), "schema", "--scope=sch (bash splits at =)")
  h.eq(bash_complete(i, { "migfix", "backups", "--pr" }), "--project --prune")
  h.eq(bash_complete(i, { "migfix", "-e", "" }, dir), "production staging")
  h.eq(bash_complete(i, { "migfix", "-C", dir, "resolve", "--applied", "2024020" }), "20240202000000_users")
  h.eq(bash_complete(i, { "migfix", "--project", dir, "diagnose", "" }), "20240101000000_init 20240202000000_users")
  h.eq(bash_complete(i, { "migfix", "help", "met" }), "metrics")
  h.eq(bash_complete(i, { "migfix", "completion", "" }), "bash zsh")
  h.eq(bash_complete(i, { "migfix", "-e", "" }, "/"), "", "no project: nothing, no error")
end

T["completion, zsh: commands, options, environments and migration names (zsh in a pty)"] = function()
  if not have("zsh") then
    print("# skip: zsh is not installed (apt-get install zsh)")
    return
  end
  local i = install()
  local dir = completion_project()
  local function z(line, cwd)
    local out, rc = h.sh(("%s %s %s %s %s 2>&1"):format(h.shq(h.root .. "/tests/ops/zsh-complete"), h.shq(i.moved .. "/share/zsh/site-functions"),
      h.shq(i.moved .. "/bin"), h.shq(cwd or dir), h.shq(line)))
    h.eq(rc, 0, "zsh answered: " .. out)
    return (out:gsub("\n$", ""))
  end
  h.eq(z("migfix chec"), "migfix check ")
  h.eq(z("migfix check --max-p"), "migfix check --max-pending=")
  h.eq(z("migfix backup --scope sch"), "migfix backup --scope schema ")
  h.eq(z("migfix -e prod"), "migfix -e production ")
  h.eq(z("migfix resolve --applied 2024020"), "migfix resolve --applied 20240202000000_users ")
  h.eq(z("migfix -C " .. dir .. " diagnose 2024010", "/"), "migfix -C " .. dir .. " diagnose 20240101000000_init ")
end

T["uninstall: removes every installed file"] = function()
  local i = install()
  local out, rc = h.sh(("make -s -C %s uninstall PREFIX=%s BUILD=%s BIN=%s 2>&1"):format(
    h.shq(h.root), h.shq(i.moved), h.shq(i.build), h.shq(i.build .. "/migfix")))
  h.eq(rc, 0, out)
  h.eq(#files_under(i.moved), 0, "left: " .. table.concat(files_under(i.moved), ", "))
  installed = nil
end

return T
