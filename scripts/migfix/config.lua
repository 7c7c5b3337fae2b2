--- migfix.lua: per-environment configuration, written in Lua.
---
---   return {
---     default_environment = "development",
---     policy_paths = { "ops/migfix-policies" },
---     environments = {
---       development = { url = env "DATABASE_URL", policies = { "apply-if-complete", "rollback-and-redeploy", "refuse-partial-or-drifted" } },
---       production  = { url = env "PROD_DATABASE_URL", confirm = "flag", backup = { required = true, scope = "full" },
---                       forbid = { "redeploy" }, timeouts = { lock_timeout = "5s", statement_timeout = "15min" } },
---     },
---   }
---
--- Unknown keys and unknown environments are errors naming the file and line.
local ui = require "migfix.ui"

local M = {}

M.DEFAULT_CHAIN = { "apply-if-complete", "split-large-migration", "rollback-and-redeploy", "refuse-partial-or-drifted" }

-- key -> validator; a table value means a nested record with its own keys
local function is_string(v) return type(v) == "string" end
local function is_bool(v) return type(v) == "boolean" end
local function is_list_of_strings(v)
  if type(v) ~= "table" then return false end
  for k, x in pairs(v) do if math.type(k) ~= "integer" or type(x) ~= "string" then return false end end
  return true
end
local function one_of(...)
  local set = {}
  for _, x in ipairs({ ... }) do set[x] = true end
  local f = function(v) return set[v] == true end
  return f, "one of " .. table.concat({ ... }, ", ")
end
local function is_url(v) return type(v) == "string" or (type(v) == "table" and v.env ~= nil) end
local function is_number_or_string(v) return type(v) == "number" or type(v) == "string" end

local scope_ok, scope_desc = one_of("full", "schema", "ledger")
local confirm_ok, confirm_desc = one_of("none", "flag", "interactive")
local unit_ok, unit_desc = one_of("file", "statement")

M.ENV_KEYS = {
  url = { is_url, "a URL string or env \"NAME\"" },
  migrations = { is_string, "a directory path" },
  schema = { is_string, "a schema name" },
  policies = { is_list_of_strings, "a list of policy names" },
  policy_paths = { is_list_of_strings, "a list of directories" },
  confirm = { confirm_ok, confirm_desc },
  forbid = { is_list_of_strings, "a list of actions (mark_applied, mark_rolled_back, redeploy, deploy)" },
  after = { is_list_of_strings, "a list of shell commands" },
  unit = { unit_ok, unit_desc },
  lint_before_deploy = { is_bool, "true or false" },
  backup = { {
    required = { is_bool, "true or false" },
    scope = { scope_ok, scope_desc },
    dir = { is_string, "a directory path" },
  } },
  timeouts = { {
    lock_timeout = { is_number_or_string, "a PostgreSQL duration such as \"5s\"" },
    statement_timeout = { is_number_or_string, "a PostgreSQL duration such as \"15min\"" },
    advisory_lock = { is_number_or_string, "milliseconds or a duration such as \"10s\"" },
    connect = { is_number_or_string, "seconds" },
  } },
  journal = { {
    schema = { is_string, "a schema name" },
    file = { is_string, "a file path" },
  } },
  deploy = { {
    lock_timeout = { is_number_or_string, "a PostgreSQL duration such as \"2s\"" },
    retries = { function(v) return math.type(v) == "integer" and v >= 0 end, "a non-negative integer" },
    retry_pause = { is_number_or_string, "milliseconds or a duration" },
  } },
  lint = { {
    large_rows = { function(v) return type(v) == "number" end, "a number of rows" },
    large_bytes = { function(v) return type(v) == "number" end, "a number of bytes" },
    dml_rows = { function(v) return type(v) == "number" end, "a number of rows" },
    max_tables = { function(v) return math.type(v) == "integer" end, "an integer" },
    errors = { is_list_of_strings, "a list of rule ids" },
    warnings = { is_list_of_strings, "a list of rule ids" },
    off = { is_list_of_strings, "a list of rule ids" },
    require_lock_timeout = { is_bool, "true or false" },
  } },
}

M.TOP_KEYS = {
  default_environment = { is_string, "an environment name" },
  policy_paths = { is_list_of_strings, "a list of directories" },
  environments = { "environments" },
}

local function find_line(src, key, after_line)
  local n = 0
  for line in (src .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if n >= (after_line or 1) and (line:find("[%s{,]" .. key .. "%s*=") or line:find("^" .. key .. "%s*=")
        or line:find("%[%s*[\"']" .. key .. "[\"']%s*%]%s*=")) then
      return n
    end
  end
  return nil
end

local function where(file, src, key, after)
  local line = find_line(src, key, after)
  return line and (file .. ":" .. line) or file
end

local function check_record(file, src, rec, spec, path, after)
  for k, v in pairs(rec) do
    local s = spec[k]
    if type(k) ~= "string" then
      ui.fail { message = ("%s: %s: keys must be names, found %s"):format(file, path, tostring(k)), code = ui.EXIT.USAGE }
    end
    if not s then
      local known = {}
      for name in pairs(spec) do known[#known + 1] = name end
      table.sort(known)
      ui.fail { message = ("%s: unrecognized key \"%s\" in %s"):format(where(file, src, k, after), k, path),
                hint = "known keys: " .. table.concat(known, ", "), code = ui.EXIT.USAGE }
    end
    if type(s[1]) == "table" then
      if type(v) ~= "table" then
        ui.fail { message = ("%s: \"%s\" in %s must be a table"):format(where(file, src, k, after), k, path), code = ui.EXIT.USAGE }
      end
      check_record(file, src, v, s[1], path .. "." .. k, find_line(src, k, after) or after)
    elseif type(s[1]) == "function" and not s[1](v) then
      ui.fail { message = ("%s: \"%s\" in %s must be %s"):format(where(file, src, k, after), k, path, s[2]), code = ui.EXIT.USAGE }
    end
  end
end

--- Load and validate a configuration file. Raises a usage error (exit 2)
--- naming file:line on any problem.
---@param path string
---@return table cfg
function M.load(path)
  local f, ferr = io.open(path, "rb")
  if not f then
    ui.fail { message = ("could not read configuration file \"%s\": %s"):format(path, ferr), code = ui.EXIT.USAGE }
  end
  local src = f:read("a")
  f:close()
  -- migfix.lua runs in a Lua state of its own (migfix.guest: the sandbox's
  -- deadline and memory budget); what it returns comes back as data
  local guest = require "migfix.guest"
  local g <close> = guest.new("migfix.lua", { "config" })
  local ok, r, info = g:call("config_eval", src, "@" .. path)
  if not ok then
    if guest.is_limit(info) then
      ui.fail { message = ("%s: the configuration %s"):format(info.where or path, r), code = ui.EXIT.USAGE,
                hint = info.kind == "deadline" and "migfix.lua must return its table at once: look for a loop that never ends"
                  or "migfix.lua must return a small table: look for a loop that keeps adding data" }
    end
    local at = r:match("^result 1%.value%.?([^:]*):")
    if at then
      local key = at:match("([%w_]+)[%]%[%d]*$") or at
      ui.fail { message = ("%s: the configuration must be plain data (text, numbers, booleans, tables): %s"):format(
                  where(path, src, key), (r:gsub("^result 1%.value%.?", ""))), code = ui.EXIT.USAGE,
                hint = "migfix.lua returns a table of settings; see README \"Configuration\"" }
    end
    ui.fail { message = "error in configuration file: " .. tostring(r), code = ui.EXIT.USAGE }
  end
  if r.syntax then
    ui.fail { message = "syntax error in configuration file: " .. r.syntax, code = ui.EXIT.USAGE,
              hint = "migfix.lua is a Lua file that returns a table; see README \"Configuration\"" }
  end
  if r.error then
    ui.fail { message = "error in configuration file: " .. r.error, code = ui.EXIT.USAGE }
  end
  local cfg = r.value
  if r.type ~= "table" then
    ui.fail { message = ("%s: the configuration must return a table, got %s"):format(path, r.type), code = ui.EXIT.USAGE,
              hint = "end migfix.lua with: return { environments = { ... } }" }
  end
  check_record(path, src, cfg, M.TOP_KEYS, "the configuration", 1)
  cfg.environments = cfg.environments or {}
  if type(cfg.environments) ~= "table" then
    ui.fail { message = ("%s: \"environments\" must be a table of name = { ... }"):format(where(path, src, "environments")), code = ui.EXIT.USAGE }
  end
  for name, e in pairs(cfg.environments) do
    local line = find_line(src, name, 1)
    if type(e) ~= "table" then
      ui.fail { message = ("%s: environment \"%s\" must be a table"):format(line and (path .. ":" .. line) or path, name), code = ui.EXIT.USAGE }
    end
    check_record(path, src, e, M.ENV_KEYS, ("environment \"%s\""):format(name), line or 1)
  end
  if cfg.default_environment and not cfg.environments[cfg.default_environment] then
    ui.fail { message = ("%s: default_environment \"%s\" is not declared in environments"):format(where(path, src, "default_environment"), cfg.default_environment),
              code = ui.EXIT.USAGE }
  end
  cfg.file = path
  cfg.source = src
  return cfg
end

--- Parse a .env file (KEY=value, optional export, quotes, # comments).
---@return table<string,string>|nil
function M.dotenv(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local vars = {}
  for line in f:lines() do
    line = line:gsub("^%s*export%s+", "")
    local k, v = line:match("^%s*([%w_%.%-]+)%s*=%s*(.-)%s*$")
    if k then
      local q = v:sub(1, 1)
      if (q == '"' or q == "'" or q == "`") and v:sub(-1) == q and #v >= 2 then
        v = v:sub(2, -2)
        if q == '"' then v = v:gsub("\\n", "\n") end
      else
        v = v:gsub("%s+#.*$", "")
      end
      vars[k] = v
    end
  end
  f:close()
  return vars
end

--- Parse a duration ("10s", "500ms", "2min", 1500) into milliseconds.
function M.millis(v, default)
  if v == nil then return default end
  if type(v) == "number" then return math.floor(v) end
  local n, unit = tostring(v):match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  n = tonumber(n)
  if not n then return nil end
  local mult = ({ [""] = 1, ms = 1, s = 1000, sec = 1000, min = 60000, h = 3600000 })[unit]
  return mult and math.floor(n * mult) or nil
end

return M
