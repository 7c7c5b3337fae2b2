--- The command line: getopt_long-style options, git-style subcommands.
--- Each command is a declared table in scripts/migfix/commands/<name>.lua:
---   { name, summary, usage, description, options = { {long, short, arg, help} }, run = function(ctx, opts, args) }
local ui = require "migfix.ui"

local M = {}

M.COMMANDS = { "status", "check", "metrics", "diagnose", "plan", "run", "resolve", "deploy", "exec",
               "journal", "undo", "backup", "backups", "restore", "lint", "split", "simulate", "report", "config", "completion" }

--- What migfix is (the man page's DESCRIPTION).
M.ABOUT = [[When prisma migrate deploy dies half way, Prisma leaves a row in _prisma_migrations with
finished_at NULL and refuses every later deploy with P3009. migfix parses the failed migration with
PostgreSQL's own parser, checks every object it creates, alters or drops against the live catalog,
and lets small Lua policies decide: mark it applied when everything is there, roll back and redeploy
when nothing is and a rerun can succeed, refuse with the exact objects otherwise. Every write is
preceded by a verified pg_dump backup, made under Prisma's advisory lock exactly as Prisma writes
the ledger, and journaled in a hash-chained audit table in the same transaction.

migfix check, migfix metrics and migfix status watch the ledger for cron, CI, probes and Prometheus.]]

--- Where the project's settings come from, in order (README "Configuration").
M.PROJECT_HELP = [[Project root: -C DIR (--project), else the current directory; everything below is relative to it.

Configuration: --config FILE, else migfix.lua in the root (optional; environments, policies, backups).

Database URL, first found: --url; the environment's url in migfix.lua; datasource.url of
prisma.config.ts (.mts .cts .js .mjs .cjs; a literal, env("NAME") or process.env.NAME names the
variable); else DATABASE_URL. Variables come from the process environment, then .env, then prisma/.env.

Migrations folder, first found: --migrations; the environment's migrations; migrations.path of
prisma.config.*; next to the schema that prisma.config.*'s schema or package.json's prisma.schema names
(a file: its folder; a folder: inside it); next to schema.prisma, prisma/schema.prisma or the folder
prisma/schema/ when that migrations folder exists; else prisma/migrations.

prisma.config.* is read, never run: a value computed any other way is an error that asks for
--url or --migrations. The ledger schema: migfix.lua's schema, else the URL's ?schema=, else public.]]

M.GLOBAL_OPTIONS = {
  { long = "env", short = "e", arg = "NAME", help = "environment from migfix.lua (default: $MIGFIX_ENV, the config's default, or none)" },
  { long = "url", arg = "URL", help = "database URL (Prisma style; default: migfix.lua, prisma.config.*, $DATABASE_URL or .env)" },
  { long = "migrations", arg = "DIR", help = "migrations directory (default: migfix.lua, prisma.config.*, next to the schema, prisma/migrations)" },
  { long = "config", arg = "FILE", help = "configuration file (default: migfix.lua in the project root)" },
  { long = "project", short = "C", arg = "DIR", help = "project root (default: the current directory)" },
  { long = "no-color", help = "no colours (also NO_COLOR=1)" },
  { long = "help", short = "h", help = "show help" },
  { long = "version", short = "V", help = "show the version" },
}

M.EXIT_HELP = [[
Exit codes:
  0  ok: nothing failed, nothing to do, or the action succeeded
  1  needs attention or refused (failed/pending migrations, findings, a policy refused)
  2  usage or configuration error (bad option, malformed URL, unknown environment, bad migrations folder)
  3  cannot reach the database (unreachable server, authentication failed, missing database)
  4  an action failed mid-way, a write did not verify, or an internal error: migfix's own ledger
     edits roll back with their transaction; a redeploy whose script fails is recorded as Prisma
     records it (a new failed row); the journal says what happened (deploy: a failing script is 1)]]

--- `migfix help` as a command table (for `migfix help help`).
M.HELP_COMMAND = {
  name = "help",
  summary = "show help for a command, the command list, or the man page",
  usage = "help [COMMAND | --man]",
  description = [[Without COMMAND: the commands, global options, project discovery and exit codes.
With COMMAND: its usage, options and exit codes (the same as `migfix COMMAND --help`).
--man prints the man page migfix(1) in man(7) macros, generated from the same command tables
(MIGFIX_MAN_DATE sets its date).]],
  options = {},
}

local function usage_error(msg, cmd)
  ui.fail { message = msg, hint = "run 'migfix " .. (cmd and ("help " .. cmd) or "--help") .. "' for usage", code = ui.EXIT.USAGE }
end

--- Parse argv[from..] against option specs. Options may follow operands
--- (GNU permutation) unless stop_at_operand is set; "--" ends options.
--- Returns opts (long name -> value or true; repeatable -> list), operands.
function M.parse(argv, from, specs, opts, stop_at_operand, cmd)
  opts = opts or {}
  local operands = {}
  local by_long, by_short = {}, {}
  for _, s in ipairs(specs) do
    by_long[s.long] = s
    if s.short then by_short[s.short] = s end
  end
  local function set(spec, value)
    if spec.repeatable then
      opts[spec.long] = opts[spec.long] or {}
      table.insert(opts[spec.long], value)
    else
      opts[spec.long] = value
    end
  end
  local i = from
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do operands[#operands + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local spec = by_long[name]
      if not spec then
        -- unique prefix, as getopt_long allows
        local found
        for long, s in pairs(by_long) do
          if long:sub(1, #name) == name then
            if found then usage_error(("option '--%s' is ambiguous"):format(name), cmd) end
            found = s
          end
        end
        spec = found
      end
      if not spec then usage_error(("unrecognized option '--%s'"):format(name), cmd) end
      if spec.arg then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then usage_error(("option '--%s' requires an argument (%s)"):format(spec.long, spec.arg), cmd) end
        end
        set(spec, value)
      else
        if value ~= nil then usage_error(("option '--%s' doesn't allow an argument"):format(spec.long), cmd) end
        set(spec, true)
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local j = 2
      while j <= #a do
        local c = a:sub(j, j)
        local spec = by_short[c]
        if not spec then usage_error(("invalid option -- '%s'"):format(c), cmd) end
        if spec.arg then
          local value = a:sub(j + 1)
          if value == "" then
            i = i + 1
            value = argv[i]
            if value == nil then usage_error(("option requires an argument -- '%s'"):format(c), cmd) end
          end
          set(spec, value)
          break
        end
        set(spec, true)
        j = j + 1
      end
    else
      operands[#operands + 1] = a
      if stop_at_operand then
        for j = i + 1, #argv do operands[#operands + 1] = argv[j] end
        break
      end
    end
    i = i + 1
  end
  return opts, operands
end

local function option_lines(specs)
  local lines = {}
  for _, s in ipairs(specs) do
    local left = (s.short and ("-" .. s.short .. ", ") or "    ") .. "--" .. s.long .. (s.arg and ("=" .. s.arg) or "")
    lines[#lines + 1] = ("  %-28s %s"):format(left, s.help or "")
  end
  return table.concat(lines, "\n")
end

local function load_command(name)
  for _, c in ipairs(M.COMMANDS) do
    if c == name then
      local ok, mod = pcall(require, "migfix.commands." .. name)
      if ok then return mod end
      if type(mod) == "string" and mod:find("module 'migfix.commands." .. name .. "' not found", 1, true) then
        ui.fail { message = ("command \"%s\" is not available in this build"):format(name), code = ui.EXIT.USAGE }
      end
      error(mod, 0)
    end
  end
  return nil
end

-- A module that is loaded only when something in it is used: a command's
-- table can be read (its summary) without loading everything it requires.
local function lazy_require(name)
  if package.loaded[name] ~= nil then return package.loaded[name] end
  local real
  local function load()
    real = real or require(name)
    return real
  end
  return setmetatable({}, {
    __index = function(_, k) return load()[k] end,
    __newindex = function(_, k, v) load()[k] = v end,
    __call = function(_, ...) return load()(...) end,
    __pairs = function() return next, load(), nil end,
    __len = function() return #load() end,
  })
end

--- The summary line of a command, read from its module with its requires
--- deferred (`migfix help` lists 19 commands: loading every module they
--- use would be most of its run time). Falls back to the real module.
function M.summary(name)
  local mod = package.loaded["migfix.commands." .. name]
  if type(mod) == "table" then return mod.summary end
  local path = package.searchpath("migfix.commands." .. name, package.path)
  if path then
    local env = setmetatable({ require = lazy_require }, { __index = _G })
    local chunk = loadfile(path, "t", env)
    local ok, m = false, nil
    if chunk then ok, m = pcall(chunk, "migfix.commands." .. name, path) end
    if ok and type(m) == "table" and type(m.summary) == "string" then return m.summary end
  end
  local ok, m = pcall(require, "migfix.commands." .. name)
  if ok and type(m) == "table" then return m.summary or "" end
  return nil
end

function M.main_help(info)
  local lines = {
    "migfix " .. info.version .. " — get Prisma Migrate out of failed-migration states (P3009), with evidence",
    "",
    "Usage: migfix [OPTIONS] COMMAND [ARGS]",
    "",
    "Commands:",
  }
  for _, name in ipairs(M.COMMANDS) do
    local summary = M.summary(name)
    if summary then
      lines[#lines + 1] = ("  %-10s %s"):format(name, summary)
    end
  end
  lines[#lines + 1] = ("  %-10s %s"):format("help", "show help for a command")
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Options:"
  lines[#lines + 1] = option_lines(M.GLOBAL_OPTIONS)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Project discovery:"
  for l in M.PROJECT_HELP:gmatch("[^\n]+") do lines[#lines + 1] = "  " .. l end
  lines[#lines + 1] = ""
  lines[#lines + 1] = M.EXIT_HELP
  return table.concat(lines, "\n")
end

function M.command_help(cmd)
  local lines = {
    "Usage: migfix " .. (cmd.usage or cmd.name),
    "",
    cmd.summary or "",
  }
  if cmd.description then
    lines[#lines + 1] = ""
    lines[#lines + 1] = cmd.description
  end
  if cmd.options and #cmd.options > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Options:"
    lines[#lines + 1] = option_lines(cmd.options)
  end
  local fleet = require "migfix.fleet"
  if fleet.COMMANDS[cmd.name] ~= nil then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Fleet options (many databases or schemas in one run; docs/fleets.md):"
    lines[#lines + 1] = option_lines(fleet.OPTIONS)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Global options:"
  lines[#lines + 1] = option_lines(M.GLOBAL_OPTIONS)
  lines[#lines + 1] = ""
  lines[#lines + 1] = cmd.exit_help or M.EXIT_HELP
  return table.concat(lines, "\n")
end

--- Whether the running command was asked for --json (its errors are then a
--- JSON document on stdout as well as text on stderr).
M.json_errors = false

local function wants_json(cmd, rest)
  local has = false
  for _, s in ipairs(cmd.options or {}) do if s.long == "json" then has = true end end
  if not has then return false end
  for i = 2, #rest do
    if rest[i] == "--" then break end
    if rest[i] == "--json" then return true end
    if cmd.stop_at_operand and rest[i]:sub(1, 1) ~= "-" then break end
  end
  return false
end

local function dispatch(argv, info)
  local gopts, rest = M.parse(argv, 1, M.GLOBAL_OPTIONS, {}, true)
  if gopts["no-color"] then ui.color = false end
  if gopts.version then ui.out("migfix " .. info.version) return 0 end
  local name = rest[1]
  if name == nil then
    if gopts.help then ui.out(M.main_help(info)) return 0 end
    usage_error("no command given")
  end
  if name == "help" then
    if rest[2] == "--man" then
      local date = os.getenv("MIGFIX_MAN_DATE")
      if not date or date == "" then date = os.date("!%Y-%m-%d") end
      ui.out(require("migfix.docgen").man { version = info.version, date = date })
      return 0
    end
    if rest[2] == "help" or rest[2] == "--help" or rest[2] == "-h" then
      ui.out(M.command_help(M.HELP_COMMAND))
      return 0
    end
    if rest[2] then
      local cmd = load_command(rest[2])
      if not cmd then usage_error(("unrecognized command \"%s\""):format(rest[2])) end
      ui.out(M.command_help(cmd))
    else
      ui.out(M.main_help(info))
    end
    return 0
  end
  local cmd = load_command(name)
  if not cmd then usage_error(("unrecognized command \"%s\""):format(name)) end
  M.json_errors = wants_json(cmd, rest)
  local specs = {}
  for _, s in ipairs(M.GLOBAL_OPTIONS) do specs[#specs + 1] = s end
  for _, s in ipairs(cmd.options or {}) do specs[#specs + 1] = s end
  local fleet = require "migfix.fleet"
  if fleet.COMMANDS[name] ~= nil then
    for _, s in ipairs(fleet.OPTIONS) do specs[#specs + 1] = s end
  end
  local opts, args = M.parse(rest, 2, specs, gopts, cmd.stop_at_operand, name)
  M.json_errors = opts.json == true
  if opts["no-color"] then ui.color = false end
  if opts.help then ui.out(M.command_help(cmd)) return 0 end
  local ctx = require("migfix.context").new(opts, info, name)
  local run = cmd.run
  if fleet.wanted(opts) then
    run = function(c, o, a) return require("migfix.commands.common").fleet(cmd, c, o, a, info) end
  else
    for _, s in ipairs(fleet.OPTIONS) do
      if opts[s.long] ~= nil then usage_error(("--%s goes with --targets, --targets-query or --schemas"):format(s.long), name) end
    end
  end
  local ok, rc = pcall(run, ctx, opts, args)
  ctx:cleanup()
  if not ok then error(rc, 0) end
  return rc or 0
end

function M.main(argv, info)
  local ok, rc = xpcall(dispatch, function(e)
    if ui.is_error(e) then return e end
    return { internal = true, message = tostring(e), traceback = debug.traceback(tostring(e), 2) }
  end, argv, info)
  if ok then return math.type(rc) == "integer" and rc or 0 end
  local e = rc
  if not ui.is_error(rc) then
    e = { message = "internal error: " .. rc.message, detail = rc.traceback, code = ui.EXIT.FAILURE,
          hint = "this is a bug in migfix or in a Lua script it ran; nothing further was written" }
  end
  e.code = e.code or ui.EXIT.FAILURE
  ui.print_error(e)
  if M.json_errors then ui.print_json_error(e) end
  return e.code
end

return M
