--- The man page and the shell completions, generated from the same declared
--- tables that feed --help: cli.COMMANDS / cli.GLOBAL_OPTIONS and each command's
--- {name, summary, usage, description, options, exit_help}. Nothing here is
--- written by hand twice: `migfix help --man` and `migfix completion bash|zsh`
--- print these, and `make` writes them into build/ for `make install`.
---
---   docgen.man(info)              -> roff text (man(7) macros) of migfix.1
---   docgen.bash()                 -> bash completion script
---   docgen.zsh()                  -> zsh completion script (#compdef migfix)
---   docgen.values(cmd, long)      -> list of words | "@environments" | "@migrations" | "@files" | "@dirs" | nil
local M = {}

--- Environment variables migfix reads (for the man page and --help).
M.ENVIRONMENT = {
  { "DATABASE_URL", "the database URL when neither --url nor migfix.lua names one (also read from .env and prisma/.env, as Prisma does); prisma.config.* may name another variable with datasource.url: env(\"NAME\")" },
  { "MIGFIX_ENV", "the environment of migfix.lua to use when --env is not given" },
  { "MIGFIX_HOME", "the directory holding scripts/ and policies/ (default: beside the binary in a source checkout, else <bindir>/../share/migfix)" },
  { "MIGFIX_PG_BINDIR", "the directory of pg_dump and pg_restore (default: the server's major under /usr/lib/postgresql, then $PATH)" },
  { "MIGFIX_SANDBOX_DEADLINE", "CPU seconds each sandboxed evaluation may take (a policy's applies or decide, a team's lint rules on one statement, one shipped lint rule on one statement, migfix.lua), more than 0 and at most 3600 (default 5)" },
  { "NO_COLOR", "any non-empty value turns colours off (as --no-color)" },
}

--- Files migfix reads and writes, relative to the project root.
M.FILES = {
  { "migfix.lua", "the configuration (environments, policies, backups, timeouts); optional" },
  { ".env, prisma/.env", "DATABASE_URL and other variables, as Prisma reads them" },
  { "prisma.config.ts, .mts, .js, .mjs, .cjs", "Prisma 7 configuration: migrations.path, schema and datasource.url: env(\"NAME\") are read without running it" },
  { "package.json", "its \"prisma\": {\"schema\": ...} entry, as Prisma reads it" },
  { "prisma/migrations/", "the migrations (or next to the schema file or folder the configuration names)" },
  { ".migfix/", "backups (.migfix/backups/<environment>/) and the journal mirror (.migfix/journal.jsonl); created with a .gitignore of *" },
}

-- completion hints for options and operands that the command tables do not declare
local VALUES = {
  ["lint --format"] = { "text", "json", "github" },
  ["backup --scope"] = { "full", "schema", "ledger" },
  ["simulate --from"] = { "template", "backup", "schema" },
  ["resolve --applied"] = "@migrations",
  ["resolve --rolled-back"] = "@migrations",
  ["simulate --backup"] = "@files",
  ["* --env"] = "@environments",
  ["* --project"] = "@dirs",
  ["* --migrations"] = "@dirs",
  ["* --config"] = "@files",
}
local OPERANDS = {
  diagnose = "@migrations", lint = "@migrations", split = "@migrations",
  restore = "@files", exec = "@files", help = "@commands",
  completion = { "bash", "zsh" },
}

local function cli() return require "migfix.cli" end

--- the loaded command tables, in cli.COMMANDS order
local function commands()
  local out = {}
  for _, name in ipairs(cli().COMMANDS) do
    local ok, mod = pcall(require, "migfix.commands." .. name)
    if ok and type(mod) == "table" then out[#out + 1] = mod end
  end
  return out
end
M.commands = commands

--- What completes the argument of option `long` of command `cmd` (nil: anything).
---@param cmd string|nil
---@param long string
---@return string[]|string|nil
function M.values(cmd, long)
  local spec
  for _, c in ipairs(commands()) do
    if c.name == cmd then
      for _, s in ipairs(c.options or {}) do if s.long == long then spec = s end end
    end
  end
  if spec and spec.values then return spec.values end
  return VALUES[(cmd or "*") .. " --" .. long] or VALUES["* --" .. long]
end

--- What completes the operands of a command (nil: nothing).
function M.operands(cmd)
  for _, c in ipairs(commands()) do
    if c.name == cmd and c.operands then return c.operands end
  end
  return OPERANDS[cmd]
end

-- ---------------------------------------------------------------- man page

--- roff-escape one line of text (not a request)
local function esc(s)
  s = tostring(s):gsub("\\", "\\e")
  s = s:gsub("%-", "\\-")
  if s:match("^[.']") then s = "\\&" .. s end
  return s
end
M.roff_escape = esc

local function opt_head(s)
  local parts = {}
  if s.short then parts[#parts + 1] = "\\fB\\-" .. s.short .. "\\fR" end
  parts[#parts + 1] = "\\fB\\-\\-" .. esc(s.long) .. "\\fR" .. (s.arg and ("=\\fI" .. esc(s.arg) .. "\\fR") or "")
  return table.concat(parts, ", ")
end

local function options_block(out, specs)
  for _, s in ipairs(specs) do
    out[#out + 1] = ".TP"
    out[#out + 1] = opt_head(s)
    out[#out + 1] = esc(s.help or "")
  end
end

--- paragraphs of a --help text: filled lines, with indented lines kept as they are
local function text_block(out, text)
  local pre = false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*$") then
      if pre then out[#out + 1] = ".fi" pre = false end
      out[#out + 1] = ".PP"
    elseif line:match("^%s%s") then
      if not pre then out[#out + 1] = ".nf" pre = true end
      out[#out + 1] = esc(line)
    else
      if pre then out[#out + 1] = ".fi" pre = false end
      out[#out + 1] = esc(line)
    end
  end
  if pre then out[#out + 1] = ".fi" end
end

--- "Exit codes:\n  0  ok ..." -> .TP items
local function exit_block(out, text)
  for line in text:gmatch("[^\n]+") do
    local code, meaning = line:match("^%s*(%d+)%s+(.*)$")
    if code then
      out[#out + 1] = ".TP"
      out[#out + 1] = ".B " .. code
      out[#out + 1] = esc(meaning)
    elseif not line:match("^Exit codes") then
      out[#out + 1] = esc(line)
    end
  end
end

--- The man page migfix.1 in man(7) macros.
---@param info {version:string, date?:string}
---@return string
function M.man(info)
  local c = cli()
  local o = {}
  o[#o + 1] = ('.\\" migfix.1, generated by `migfix help --man` from the command tables; do not edit')
  o[#o + 1] = ('.TH MIGFIX 1 "%s" "migfix %s" "User Commands"'):format(info.date or "", info.version)
  o[#o + 1] = ".SH NAME"
  o[#o + 1] = "migfix \\- get Prisma Migrate out of failed\\-migration states (P3009), with evidence"
  o[#o + 1] = ".SH SYNOPSIS"
  o[#o + 1] = ".B migfix"
  o[#o + 1] = "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]"
  o[#o + 1] = ".br"
  o[#o + 1] = ".B migfix help"
  o[#o + 1] = "[\\fICOMMAND\\fR]"
  o[#o + 1] = ".SH DESCRIPTION"
  text_block(o, c.ABOUT)
  o[#o + 1] = ".SH OPTIONS"
  o[#o + 1] = "Global options; they may come before or after the command."
  options_block(o, c.GLOBAL_OPTIONS)
  o[#o + 1] = ".SH FLEET OPTIONS"
  o[#o + 1] = "With \\fBstatus\\fR, \\fBcheck\\fR, \\fBdiagnose\\fR, \\fBplan\\fR, \\fBsimulate\\fR, \\fBlint\\fR, \\fBbackup\\fR, \\fBrun\\fR, \\fBresolve\\fR, \\fBdeploy\\fR and \\fBundo\\fR: the command runs on every target (a database, or a schema of one database)."
  options_block(o, require("migfix.fleet").OPTIONS)
  o[#o + 1] = ".SH PROJECT DISCOVERY"
  text_block(o, c.PROJECT_HELP)
  o[#o + 1] = ".SH COMMANDS"
  for _, cmd in ipairs(commands()) do
    o[#o + 1] = ".SS " .. '"' .. esc("migfix " .. (cmd.usage or cmd.name)):gsub('"', '""') .. '"'
    o[#o + 1] = esc(cmd.summary or "")
    if cmd.description then
      o[#o + 1] = ".PP"
      text_block(o, cmd.description)
    end
    if cmd.options and #cmd.options > 0 then
      o[#o + 1] = ".PP"
      o[#o + 1] = "Options:"
      o[#o + 1] = ".RS"
      options_block(o, cmd.options)
      o[#o + 1] = ".RE"
    end
    if cmd.exit_help then
      o[#o + 1] = ".PP"
      o[#o + 1] = "Exit status of \\fB" .. esc(cmd.name) .. "\\fR:"
      o[#o + 1] = ".RS"
      exit_block(o, cmd.exit_help)
      o[#o + 1] = ".RE"
    end
  end
  o[#o + 1] = ".SH EXIT STATUS"
  o[#o + 1] = "Commands with their own table above (for example \\fBcheck\\fR and \\fBlint\\fR) say so; all others:"
  exit_block(o, c.EXIT_HELP)
  o[#o + 1] = ".SH ENVIRONMENT"
  for _, e in ipairs(M.ENVIRONMENT) do
    o[#o + 1] = ".TP"
    o[#o + 1] = ".B " .. e[1]
    o[#o + 1] = esc(e[2])
  end
  o[#o + 1] = ".SH FILES"
  for _, f in ipairs(M.FILES) do
    o[#o + 1] = ".TP"
    o[#o + 1] = ".I " .. esc(f[1])
    o[#o + 1] = esc(f[2])
  end
  o[#o + 1] = ".SH SEE ALSO"
  o[#o + 1] = ".BR pg_dump (1),"
  o[#o + 1] = ".BR pg_restore (1),"
  o[#o + 1] = ".BR psql (1)."
  o[#o + 1] = "The README, docs/policies.md, docs/journal.md and docs/simulate.md (installed under share/doc/migfix)."
  return table.concat(o, "\n") .. "\n"
end

-- ---------------------------------------------------------------- bash

local function words_of(list) return table.concat(list, " ") end

local function opt_words(specs)
  local w = {}
  for _, s in ipairs(specs) do
    w[#w + 1] = "--" .. s.long
    if s.short then w[#w + 1] = "-" .. s.short end
  end
  return w
end

local function bash_action(v)
  if type(v) == "table" then return ('COMPREPLY=($(compgen -W %q -- "$cur"))'):format(words_of(v)) end
  if v == "@environments" or v == "@migrations" then
    return ('COMPREPLY=($(compgen -W "$(_migfix_list %s)" -- "$cur"))'):format(v:sub(2))
  end
  if v == "@commands" then return 'COMPREPLY=($(compgen -W "$_migfix_commands" -- "$cur"))' end
  if v == "@dirs" then return 'COMPREPLY=($(compgen -d -- "$cur"))' end
  return 'COMPREPLY=($(compgen -f -- "$cur"))'
end

--- The bash completion script.
---@return string
function M.bash()
  local c = cli()
  local cmds = {}
  for _, cmd in ipairs(commands()) do cmds[#cmds + 1] = cmd.name end
  cmds[#cmds + 1] = "help"
  local global_arg = {}
  for _, s in ipairs(c.GLOBAL_OPTIONS) do
    if s.arg then
      global_arg[#global_arg + 1] = "--" .. s.long
      if s.short then global_arg[#global_arg + 1] = "-" .. s.short end
    end
  end
  local o = {}
  local function add(s) o[#o + 1] = s end
  add("# bash completion for migfix; generated by `migfix completion bash` from the command tables")
  add("# (commands, options, environments of migfix.lua and migration names from the project).")
  add("_migfix_commands=" .. ("%q"):format(words_of(cmds)))
  add("")
  add("# the words of the command line that locate the project, for `migfix completion --list`")
  add("_migfix_list() {")
  add('  "${_migfix_bin:-migfix}" "${_migfix_proj[@]}" completion --list "$1" 2>/dev/null')
  add("}")
  add("")
  add("_migfix() {")
  add('  local cur prev cword i cmd="" w')
  add("  local -a words")
  add('  words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD')
  add('  cur=${words[cword]}; prev=""; [ "$cword" -gt 0 ] && prev=${words[cword-1]}')
  add('  # --opt=value: bash splits at "=" (COMP_WORDBREAKS)')
  add('  if [ "$cur" = "=" ]; then prev=${words[cword-1]}; cur=""')
  add('  elif [ "$prev" = "=" ] && [ "$cword" -gt 1 ]; then prev=${words[cword-2]}; fi')
  add("  COMPREPLY=()")
  add('  _migfix_bin=${words[0]}')
  add("  _migfix_proj=()")
  add("  for ((i = 1; i < cword; i++)); do")
  add('    w=${words[i]}')
  add('    case $w in')
  add('      -C|--project|--config|--migrations) _migfix_proj+=("$w" "${words[i+1]}"); i=$((i + 1)) ;;')
  add('      --project=*|--config=*|--migrations=*) _migfix_proj+=("$w") ;;')
  add('      ' .. table.concat(global_arg, "|") .. ') i=$((i + 1)) ;;')
  add('      -*) ;;')
  add('      *) if [ -z "$cmd" ]; then cmd=$w; fi ;;')
  add("    esac")
  add("  done")
  -- option arguments
  add('  case "$prev" in')
  for _, s in ipairs(c.GLOBAL_OPTIONS) do
    if s.arg then
      local v = M.values(nil, s.long)
      add(("    --%s%s) %s; return 0 ;;"):format(s.long, s.short and ("|-" .. s.short) or "", v and bash_action(v) or "return 0"))
    end
  end
  add("  esac")
  add('  case "$cmd $prev" in')
  for _, cmd in ipairs(commands()) do
    for _, s in ipairs(cmd.options or {}) do
      if s.arg then
        local v = M.values(cmd.name, s.long)
        add(("    %q) %s; return 0 ;;"):format(cmd.name .. " --" .. s.long, v and bash_action(v) or "return 0"))
        if s.short then add(("    %q) %s; return 0 ;;"):format(cmd.name .. " -" .. s.short, v and bash_action(v) or "return 0")) end
      end
    end
  end
  add("  esac")
  local gw = words_of(opt_words(c.GLOBAL_OPTIONS))
  add('  if [ -z "$cmd" ]; then')
  add('    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W ' .. ("%q"):format(gw) .. ' -- "$cur"))')
  add('    else COMPREPLY=($(compgen -W "$_migfix_commands" -- "$cur")); fi')
  add("    return 0")
  add("  fi")
  add('  if [[ $cur == -* ]]; then')
  add('    case $cmd in')
  for _, cmd in ipairs(commands()) do
    add(("      %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;"):format(cmd.name, words_of(opt_words(cmd.options or {})) .. " " .. gw))
  end
  add(('      *) COMPREPLY=($(compgen -W %q -- "$cur")) ;;'):format(gw))
  add("    esac")
  add("    return 0")
  add("  fi")
  add("  case $cmd in")
  for _, cmd in ipairs(commands()) do
    local v = M.operands(cmd.name)
    if v then add(("    %s) %s ;;"):format(cmd.name, bash_action(v))) end
  end
  add(("    help) %s ;;"):format(bash_action("@commands")))
  add("  esac")
  add("  return 0")
  add("}")
  add("complete -F _migfix migfix")
  return table.concat(o, "\n") .. "\n"
end

-- ---------------------------------------------------------------- zsh

local function zq(s) -- a single-quoted zsh word
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function zdesc(s) return (tostring(s or ""):gsub("[%[%]]", "\\%0"):gsub(":", "\\:")) end

local function zsh_action(v)
  if type(v) == "table" then return "(" .. table.concat(v, " ") .. ")" end
  if v == "@environments" then return "_migfix_envs" end
  if v == "@migrations" then return "_migfix_migrations" end
  if v == "@commands" then return "_migfix_commands" end
  if v == "@dirs" then return "_files -/" end
  if v == "@files" then return "_files" end
  return " "
end

local function zspecs(cmd, specs)
  local out = {}
  for _, s in ipairs(specs) do
    local names = s.short and ("(-" .. s.short .. " --" .. s.long .. ")'{-" .. s.short .. (s.arg and "+" or "") .. ",--" .. s.long .. (s.arg and "=" or "") .. "}'")
                           or ("--" .. s.long .. (s.arg and "=" or ""))
    local body = "[" .. zdesc(s.help) .. "]"
    if s.arg then
      local v = M.values(cmd, s.long)
      body = body .. ":" .. zdesc(s.arg:lower()) .. ":" .. (v and zsh_action(v) or " ")
    end
    if s.repeatable then names = "*" .. names end
    if s.short then
      out[#out + 1] = "'" .. names .. (body:gsub("'", "'\\''")) .. "'"
    else
      out[#out + 1] = zq(names .. body)
    end
  end
  return out
end

--- The zsh completion script (install as _migfix in a $fpath directory).
---@return string
function M.zsh()
  local c = cli()
  local o = {}
  local function add(s) o[#o + 1] = s end
  add("#compdef migfix")
  add("# zsh completion for migfix; generated by `migfix completion zsh` from the command tables.")
  add("")
  add("# the words of the whole command line (saved before _arguments shifts them)")
  add("_migfix_projargs() {")
  add("  local i; reply=()")
  add("  for ((i = 2; i <= ${#_migfix_words}; i++)); do")
  add("    case ${_migfix_words[i]} in")
  add("      -C|--project|--config|--migrations) reply+=(${_migfix_words[i]} ${(Q)_migfix_words[i+1]}); ((i++)) ;;")
  add("      --project=*|--config=*|--migrations=*) reply+=(${(Q)_migfix_words[i]}) ;;")
  add("    esac")
  add("  done")
  add("}")
  add("_migfix_list() {")
  add("  local -a reply; _migfix_projargs")
  add("  ${~_migfix_words[1]:-migfix} $reply completion --list $1 2>/dev/null")
  add("}")
  add("_migfix_envs() { local -a envs; envs=(${(f)\"$(_migfix_list environments)\"}); _describe -t environments 'environment' envs }")
  add("_migfix_migrations() { local -a migs; migs=(${(f)\"$(_migfix_list migrations)\"}); _describe -t migrations 'migration' migs }")
  add("_migfix_commands() {")
  add("  local -a cmds; cmds=(")
  for _, cmd in ipairs(commands()) do add("    " .. zq(cmd.name .. ":" .. (cmd.summary or ""):gsub(":", "\\:"))) end
  add("    'help:show help for a command'")
  add("  )")
  add("  _describe -t commands 'migfix command' cmds")
  add("}")
  add("")
  add("_migfix() {")
  add("  local curcontext=\"$curcontext\" state line ret=1")
  add("  local -a _migfix_words; _migfix_words=(\"${words[@]}\")")
  add("  typeset -A opt_args")
  add("  local -a globals; globals=(")
  for _, s in ipairs(zspecs(nil, c.GLOBAL_OPTIONS)) do add("    " .. s) end
  add("  )")
  add("  _arguments -C $globals '1: :_migfix_commands' '*:: :->args' && ret=0")
  add("  case $state in")
  add("    args)")
  add("      curcontext=\"${curcontext%:*:*}:migfix-${words[1]}:\"")
  add("      case ${words[1]} in")
  for _, cmd in ipairs(commands()) do
    local specs = zspecs(cmd.name, cmd.options or {})
    local v = M.operands(cmd.name)
    if v then specs[#specs + 1] = zq("*:" .. (v == "@migrations" and "migration" or "argument") .. ":" .. zsh_action(v)) end
    add("        " .. cmd.name .. ") _arguments $globals " .. table.concat(specs, " ") .. " && ret=0 ;;")
  end
  add("        help) _arguments '1: :_migfix_commands' && ret=0 ;;")
  add("      esac ;;")
  add("  esac")
  add("  return ret")
  add("}")
  add("")
  add("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then")
  add("  _migfix \"$@\"")
  add("else")
  add("  compdef _migfix migfix")
  add("fi")
  return table.concat(o, "\n") .. "\n"
end

return M
