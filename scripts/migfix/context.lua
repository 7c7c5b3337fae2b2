--- The run context of one command: options, project (config, environment,
--- URL, migrations folder), database connections and cleanups.
local ui = require "migfix.ui"
local config = require "migfix.config"

local Ctx = {}
Ctx.__index = Ctx

local M = {}

local function abspath(p, base)
  if p:sub(1, 1) == "/" then return p end
  if base == nil or base == "." then
    local cwd = os.getenv("PWD")
    local ok, unistd = pcall(require, "posix.unistd")
    if ok then cwd = unistd.getcwd() or cwd end
    base = cwd or "."
  end
  local full = (base .. "/" .. p):gsub("/%./", "/"):gsub("/%.$", "")
  return full
end
M.abspath = abspath

local exists = require("migfix.fs").exists

--- During a fleet run (migfix.fleet), the contexts of all targets share one
--- read of the configuration and of the migrations folder (texts and checksums).
---@type {config: table, migrations: table}|nil
M.shared = nil
function M.share() M.shared = M.shared or { config = {}, migrations = {} } end

function M.new(opts, info, command)
  return setmetatable({ opts = opts, info = info, command = command, cleanups = {}, conns = {} }, Ctx)
end

--- Run fn at the end of the command, in reverse order of registration.
function Ctx:defer(fn) table.insert(self.cleanups, fn) end

function Ctx:cleanup()
  for i = #self.cleanups, 1, -1 do pcall(self.cleanups[i]) end
  self.cleanups = {}
  for _, c in ipairs(self.conns) do pcall(c.close, c) end
  self.conns = {}
end

--- Resolve the project: root, configuration, environment, URL, migrations.
function Ctx:project()
  if self._project then return self._project end
  local o = self.opts
  local root = abspath(o.project or ".")
  local p = { root = root }
  local cfg_path = o.config and abspath(o.config) or (root .. "/migfix.lua")
  if o.config and not exists(cfg_path) then
    ui.fail { message = ("configuration file \"%s\" does not exist"):format(o.config), code = ui.EXIT.USAGE }
  end
  p.config_path = cfg_path
  if exists(cfg_path) then
    p.config = M.shared and M.shared.config[cfg_path] or config.load(cfg_path, { home = self.info.home, root = root })
    if M.shared then M.shared.config[cfg_path] = p.config end
  end

  local env_name = o.env or os.getenv("MIGFIX_ENV")
  if env_name == "" then env_name = nil end
  local env = {}
  if p.config then
    env_name = env_name or p.config.default_environment
    if env_name then
      env = p.config.environments[env_name]
      if not env then
        local names = {}
        for n in pairs(p.config.environments) do names[#names + 1] = n end
        table.sort(names)
        ui.fail { message = ("unrecognized environment \"%s\" (%s)"):format(env_name, cfg_path),
                  hint = #names > 0 and config.suggest(env_name, names, "environments declared there")
                                    or "declare it under environments = { ... } in migfix.lua",
                  code = ui.EXIT.USAGE }
      end
    end
  elseif env_name then
    ui.fail { message = ("unrecognized environment \"%s\": there is no migfix.lua in %s"):format(env_name, root),
              hint = "create migfix.lua declaring environments, or drop --env", code = ui.EXIT.USAGE }
  end
  p.env_name = env_name or "default"
  p.env = env

  -- URL: --url > environment's url > $DATABASE_URL > .env / prisma/.env
  local dot
  local function dotenv(name)
    if dot == nil then dot = config.dotenv_load({ root .. "/.env", root .. "/prisma/.env" }) end
    return dot[name]
  end
  local function from_env(name)
    local v = os.getenv(name)
    if v and v ~= "" then return v, "$" .. name end
    v = dotenv(name)
    if v and v ~= "" then return v, name .. " in .env" end
    return nil
  end
  -- Prisma's own layout (prisma.config.*, package.json, schema folders), read, never run
  local layout = require("migfix.prisma_config").locate(root)
  p.prisma = layout
  local purl = layout.url
  if o.url then
    p.url, p.url_source = o.url, "--url"
  elseif type(env.url) == "string" then
    p.url, p.url_source = env.url, "migfix.lua"
  elseif type(env.url) == "table" then
    p.url, p.url_source = from_env(env.url.env)
    p.url_wanted = env.url.env
  elseif purl and purl.literal then
    p.url, p.url_source = purl.literal, layout.url_source
  elseif layout.dynamic.url then
    p.url_dynamic = layout.dynamic.url
  else
    p.url_wanted = purl and purl.env or "DATABASE_URL"
    p.url, p.url_source = from_env(p.url_wanted)
    if p.url and purl then p.url_source = p.url_source .. " (named in " .. layout.url_source .. ")" end
  end

  if o.migrations or env.migrations then
    p.migrations_dir = abspath(o.migrations or env.migrations, o.migrations and nil or root)
  else
    p.migrations_dir = layout.migrations or (root .. "/prisma/migrations")
    p.migrations_source = layout.migrations_source
    p.migrations_dynamic = layout.dynamic.migrations
  end
  p.policies = env.policies or config.DEFAULT_CHAIN
  p.policy_paths = {}
  for _, d in ipairs((p.config and p.config.policy_paths) or {}) do table.insert(p.policy_paths, abspath(d, root)) end
  for _, d in ipairs(env.policy_paths or {}) do table.insert(p.policy_paths, abspath(d, root)) end
  p.timeouts = env.timeouts or {}
  p.backup = env.backup or {}
  p.backup_dir = abspath((env.backup and env.backup.dir) or (".migfix/backups/" .. p.env_name), root)
  p.journal_schema = (env.journal and env.journal.schema) or "migfix"
  p.journal_file = abspath((env.journal and env.journal.file) or ".migfix/journal.jsonl", root)
  p.confirm = env.confirm or "none"
  p.forbid = {}
  for _, a in ipairs(env.forbid or {}) do p.forbid[a] = true end
  p.after = env.after or {}
  p.unit = env.unit or "file"
  self._project = p
  return p
end

--- The database URL, or a usage error saying where migfix looked.
function Ctx:url()
  local p = self:project()
  if not p.url and p.url_dynamic then
    local d = p.url_dynamic
    ui.fail { message = ("cannot read the database URL from %s: datasource.url is computed (%s)"):format(d.where, d.text),
              detail = "migfix reads prisma.config.* without running it: only string literals, env(\"NAME\") and process.env.NAME are understood",
              hint = "pass --url postgresql://USER@HOST:5432/DB, or set url = env \"NAME\" for the environment in migfix.lua",
              code = ui.EXIT.USAGE }
  end
  if not p.url then
    local var = p.url_wanted or "DATABASE_URL"
    local looked = { "--url (not given)" }
    if p.config then
      looked[#looked + 1] = ("the url of environment \"%s\" in %s (%s)"):format(p.env_name, p.config.file,
        type(p.env.url) == "table" and ("env \"" .. p.env.url.env .. "\"") or "not set")
    else
      looked[#looked + 1] = ("%s (no such file)"):format(p.config_path or (p.root .. "/migfix.lua"))
    end
    local layout = p.prisma or {}
    if layout.url_source then
      looked[#looked + 1] = ("datasource.url of %s (names %s)"):format(layout.url_source, var)
    else
      looked[#looked + 1] = ("prisma.config.ts/.mts/.cts/.js/.mjs/.cjs in %s (%s)"):format(p.root,
        layout.config_name and ("no datasource.url in " .. layout.config_name) or "none")
    end
    looked[#looked + 1] = ("$%s in the process environment (not set)"):format(var)
    looked[#looked + 1] = ("%s in %s/.env and %s/prisma/.env (%s)"):format(var, p.root, p.root, "not there")
    ui.fail { message = "no database URL",
              detail = "looked at, in this order:\n  " .. table.concat(looked, "\n  "),
              hint = "set DATABASE_URL (as for Prisma), or pass --url postgresql://USER@HOST:5432/DB?schema=public",
              code = ui.EXIT.USAGE }
  end
  require("migfix.policy").add_url_secrets(p.url) -- what policies emit is redacted for it
  return p.url
end

--- The ledger schema: migfix.lua's schema, else the URL's ?schema=, else public.
function Ctx:schema()
  local p = self:project()
  if p.schema then return p.schema end
  local db = require "migfix.db"
  local parsed, err = db.parse_url(self:url())
  if not parsed then
    ui.fail { message = err, hint = ui.URL_HINT, code = ui.EXIT.USAGE }
  end
  p.parsed_url = parsed
  p.schema = p.env.schema or parsed.schema or "public"
  return p.schema
end

--- Connect to the project's database. opts.readonly makes the server refuse
--- every write (default_transaction_read_only). Failures end the command
--- with exit 3 (unreachable, authentication) or 2 (malformed URL).
function Ctx:connect(opts)
  opts = opts or {}
  local db = require "migfix.db"
  local p = self:project()
  local url = opts.url or self:url()
  if not opts.url then self:schema() end
  local t = p.timeouts
  local conn, err, info = db.connect(url, {
    readonly = opts.readonly or false,
    application_name = "migfix",
    connect_timeout = tonumber(t.connect) or 10,
    lock_timeout = t.lock_timeout and tostring(t.lock_timeout) or nil,
    statement_timeout = t.statement_timeout and tostring(t.statement_timeout) or nil,
  })
  if not conn then
    info = info or {}
    if info.kind == "url" then
      ui.fail { message = err, hint = ui.URL_HINT, code = ui.EXIT.USAGE }
    elseif info.sqlstate == "3D000" then
      ui.fail { message = err, hint = "create the database, or fix its name in " .. (p.url_source or "the URL"),
                code = ui.EXIT.CONNECT }
    elseif info.kind == "auth" then
      ui.fail { message = err, hint = "check the user and password in " .. (p.url_source or "the URL"), code = ui.EXIT.CONNECT }
    end
    ui.fail { message = err, hint = "is the server running and reachable? the URL came from " .. (p.url_source or "--url"),
              code = ui.EXIT.CONNECT }
  end
  table.insert(self.conns, conn)
  return conn
end

--- Local migration folders in Prisma's order, with the lock file checked.
function Ctx:migrations()
  if self._migrations then return self._migrations end
  local mig = require "migfix.migrations"
  local p = self:project()
  if M.shared and M.shared.migrations[p.migrations_dir] then
    self._migrations = M.shared.migrations[p.migrations_dir]
    return self._migrations
  end
  if p.migrations_dynamic then
    local d = p.migrations_dynamic
    ui.fail { message = ("cannot read the migrations folder from %s: %s is computed (%s)"):format(d.where, d.key, d.text),
              detail = "migfix reads prisma.config.* without running it: only string literals and path.join of literals are understood",
              hint = "pass --migrations DIR, or set migrations = \"DIR\" for the environment in migfix.lua", code = ui.EXIT.USAGE }
  end
  local list, err, info = mig.list(p.migrations_dir)
  if not list then
    ui.fail { message = err,
              detail = p.migrations_source and ("the folder comes from " .. p.migrations_source) or nil,
              hint = (info and info.missing) and "pass --migrations DIR, or run migfix from the project root (where prisma/migrations is), or -C DIR" or nil,
              code = ui.EXIT.USAGE }
  end
  local provider, perr = mig.lock_provider(p.migrations_dir)
  if perr then ui.fail { message = perr, code = ui.EXIT.USAGE } end
  if provider and provider ~= "postgresql" then
    ui.fail { message = ("migrations in \"%s\" are for provider \"%s\"; migfix supports postgresql only"):format(p.migrations_dir, provider),
              detail = "migration_lock.toml names the provider the migrations were generated for (Prisma refuses a switch with P3019)",
              code = ui.EXIT.USAGE }
  end
  self._migrations = list
  if M.shared then M.shared.migrations[p.migrations_dir] = list end
  return list
end


--- A migration.sql Prisma cannot run as it is (a NUL byte, invalid UTF-8):
--- the usage error every command but status gives (exit 2, file:line:byte).
---@param err string "PATH:LINE:BYTE: ..." from migrations.read
---@param info table {kind = "nul"|"utf8", line, byte, offset, value}
function M.bad_file(err, info)
  if info.kind == "nul" then
    ui.fail { message = err .. ": migfix does not read or run this file",
              detail = "PostgreSQL cannot take a NUL byte in a query: Prisma's deploy fails on this file " ..
                       "(\"invalid message format\"), and libpq would send only the text before it",
              hint = "remove the NUL byte (e.g. tr -d '\\000'); the file must be plain UTF-8 text", code = ui.EXIT.USAGE }
  end
  ui.fail { message = err .. ": migfix does not read or run this file",
            detail = "Prisma reads migration.sql as UTF-8 and replaces every invalid sequence with U+FFFD: what it runs, " ..
                     "and the checksum it records, are not this file's bytes",
            hint = "save the file as UTF-8 (iconv -f LATIN1 -t UTF-8); for a migration already applied, replacing the " ..
                   "invalid bytes with U+FFFD (the text Prisma read) keeps the checksum Prisma recorded",
            code = ui.EXIT.USAGE }
end

--- Local migrations with their text and checksum, the ledger, and Prisma's
--- classification of both. Unreadable migration.sql files are errors, and
--- so are files Prisma cannot run as they are (a NUL byte, invalid UTF-8:
--- exit 2 naming file:line:byte) — unless opts.report_files (status): then
--- they are listed in st.file_problems and checksummed as Prisma reads them
--- (every invalid sequence as U+FFFD).
---@param conn userdata
---@param opts {report_files: boolean?}?
function Ctx:state(conn, opts)
  opts = opts or {}
  local mig = require "migfix.migrations"
  local ledger = require "migfix.ledger"
  local list = self:migrations()
  local file_problems = {}
  -- every clean migration.sql read and hashed in one call (relative to the
  -- folder); what it leaves unread (an error, a NUL byte, invalid UTF-8) is
  -- read below one by one, for the error
  mig.read_all(self:project().migrations_dir, list)
  for _, m in ipairs(list) do
    if not m.has_sql then
      -- a migration.sql that exists but cannot be read is an error, not "no file"
      local f, ferr = io.open(m.sql_path, "rb")
      if f then
        f:close()
      elseif ferr and not ferr:find("No such file", 1, true) then
        ui.fail { message = ("could not read migration file \"%s\": %s"):format(m.sql_path, ferr:gsub("^.-: ", "")),
                  hint = "fix its permissions (Prisma fails on it with P3015)", code = ui.EXIT.USAGE }
      end
    end
    if m.has_sql and not m.text then
      local text, err, info = mig.read(m.sql_path)
      if not text and info and info.text then -- the text is there, but not valid (kind "nul" | "utf8")
        m.invalid = { kind = info.kind, line = info.line, byte = info.byte, offset = info.offset, value = info.value, message = err }
        m.text = info.text
        m.prisma_text = mig.prisma_text(info.text)
        m.checksum = mig.checksum(m.prisma_text)
      elseif not text then
        ui.fail { message = err, hint = "restore the file or fix its permissions (Prisma fails on it with P3015)", code = ui.EXIT.USAGE }
      else
        m.text = text
        m.checksum = mig.checksum(text)
      end
    end
    if m.invalid then
      if not opts.report_files then M.bad_file(m.invalid.message, m.invalid) end
      file_problems[#file_problems + 1] = { name = m.name, path = m.sql_path, kind = m.invalid.kind, line = m.invalid.line,
                                            byte = m.invalid.byte, message = m.invalid.message }
    end
  end
  local schema = self:schema()
  local l, err, info = ledger.read(conn, schema)
  if not l then
    ui.fail { message = "could not read the Prisma ledger: " .. err, detail = info and info.detail, code = ui.EXIT.FAILURE }
  end
  local st = ledger.classify(list, l)
  st.locals = list
  st.ledger = l
  st.file_problems = file_problems
  return st
end

return M
