--- migfix completion: print the bash or zsh completion script (generated from the
--- command tables), or, for those scripts, the names they complete.
local ui = require "migfix.ui"
local docgen = require "migfix.docgen"

local LISTS = { "commands", "environments", "migrations" }

local C = {
  name = "completion",
  summary = "print the bash or zsh completion script (commands, options, environments, migration names)",
  usage = "completion bash|zsh | completion --list commands|environments|migrations",
  description = [[bash:  eval "$(migfix completion bash)" in ~/.bashrc, or install the script as
       /usr/share/bash-completion/completions/migfix (make install does, under its PREFIX).
zsh:   migfix completion zsh > ~/.zfunc/_migfix with ~/.zfunc in $fpath before compinit
       (make install puts _migfix in share/zsh/site-functions).
--list prints one name a line for the scripts: environments are those of migfix.lua, migrations the
folders of the project's migrations directory (both found as every command finds them: -C, --config,
--migrations); nothing is printed, and the exit code is 0, when there is no such project.]],
  options = {
    { long = "list", arg = "WHAT", help = "print the names to complete: commands, environments or migrations", values = LISTS },
  },
  operands = { "bash", "zsh" },
}

local function list(ctx, what)
  if what == "commands" then
    local names = {}
    for _, c in ipairs(docgen.commands()) do names[#names + 1] = c.name end
    names[#names + 1] = "help"
    return names
  end
  -- the project may be absent or broken: completion then offers nothing
  local ok, p = pcall(ctx.project, ctx)
  if not ok then return {} end
  if what == "environments" then
    local names = {}
    for n in pairs((p.config and p.config.environments) or {}) do names[#names + 1] = n end
    table.sort(names)
    return names
  end
  local okm, migs = pcall(ctx.migrations, ctx)
  if not okm then return {} end
  local names = {}
  for _, m in ipairs(migs) do names[#names + 1] = m.name end
  return names
end

function C.run(ctx, opts, args)
  if opts.list then
    local known = false
    for _, l in ipairs(LISTS) do if l == opts.list then known = true end end
    if not known then
      ui.fail { message = ("unrecognized list \"%s\""):format(opts.list), hint = "use --list commands, environments or migrations",
                code = ui.EXIT.USAGE }
    end
    for _, n in ipairs(list(ctx, opts.list)) do io.stdout:write(n, "\n") end
    return ui.EXIT.OK
  end
  local shell = args[1]
  if #args ~= 1 or (shell ~= "bash" and shell ~= "zsh") then
    ui.fail { message = shell and ("unrecognized shell \"%s\""):format(table.concat(args, " ")) or "completion needs a shell",
              hint = "migfix completion bash, or migfix completion zsh", code = ui.EXIT.USAGE }
  end
  io.stdout:write(shell == "bash" and docgen.bash() or docgen.zsh())
  return ui.EXIT.OK
end

return C
