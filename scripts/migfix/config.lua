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
--- The file is checked when it is loaded, all of it, before any command
--- connects (M.validate, on the loaded table): keys, value shapes, durations,
--- backup scopes, confirm modes, units, the actions in forbid, every policy of
--- every chain (found in policy_paths or the shipped policies/, and loaded),
--- and the lint rule ids. A mistake is a usage error (exit 2) naming
--- migfix.lua:LINE and, for a misspelt name, the nearest valid one.
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
  return f, "one of " .. table.concat({ ... }, ", "), { ... }
end
local function is_url(v) return type(v) == "string" or (type(v) == "table" and v.env ~= nil) end
local function is_number_or_string(v) return type(v) == "number" or type(v) == "string" end

--- PostgreSQL's duration units (statement_timeout, lock_timeout) and migfix's own.
M.PG_UNITS = { "us", "ms", "s", "min", "h", "d" }
M.UNITS = { "ms", "s", "sec", "min", "h", "d" }

local scope_ok, scope_desc, scopes = one_of("full", "schema", "ledger")
local confirm_ok, confirm_desc, confirms = one_of("none", "flag", "interactive")
local unit_ok, unit_desc, units = one_of("file", "statement")

M.ENV_KEYS = {
  url = { is_url, "a URL string or env \"NAME\"" },
  migrations = { is_string, "a directory path" },
  schema = { is_string, "a schema name" },
  policies = { is_list_of_strings, "a list of policy names" },
  policy_paths = { is_list_of_strings, "a list of directories" },
  confirm = { confirm_ok, confirm_desc, values = confirms },
  forbid = { is_list_of_strings, "a list of actions (mark_applied, mark_rolled_back, redeploy, drop_invalid_index, deploy)" },
  after = { is_list_of_strings, "a list of shell commands" },
  unit = { unit_ok, unit_desc, values = units },
  lint_before_deploy = { is_bool, "true or false" },
  backup = { {
    required = { is_bool, "true or false" },
    scope = { scope_ok, scope_desc, values = scopes },
    dir = { is_string, "a directory path" },
  } },
  timeouts = { {
    lock_timeout = { is_number_or_string, "a PostgreSQL duration such as \"5s\"" },
    statement_timeout = { is_number_or_string, "a PostgreSQL duration such as \"15min\"" },
    advisory_lock = { is_number_or_string, "milliseconds or a duration such as \"10s\"" },
    connect = { is_number_or_string, "seconds" },
    data_check = { is_number_or_string, "milliseconds or a duration such as \"30s\"" },
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

--- Edit distance (insertions, deletions, substitutions, transpositions).
local function distance(a, b)
  a, b = a:lower():gsub("[-_]", ""), b:lower():gsub("[-_]", "")
  local la, lb = #a, #b
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    for j = 1, lb do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:sub(i, i) == b:sub(j - 1, j - 1) and a:sub(i - 1, i - 1) == b:sub(j, j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[la][lb]
end

--- The valid name nearest to `word`, when it is near enough to be a typo.
---@param word string
---@param names string[]
---@return string|nil
function M.nearest(word, names)
  if type(word) ~= "string" then return nil end
  local best, bd
  for _, n in ipairs(names) do
    local dd = distance(word, n)
    if not bd or dd < bd or (dd == bd and n < best) then best, bd = n, dd end
  end
  if best and bd <= math.max(2, #word // 3) and bd < #word then return best end
  return nil
end

--- "did you mean X?" or, without a near name, the list of valid ones.
local function suggest(word, names, what)
  local near = M.nearest(word, names)
  local sorted = {}
  for _, n in ipairs(names) do sorted[#sorted + 1] = n end
  table.sort(sorted)
  if near then return ("did you mean %s? (%s: %s)"):format(near, what or "valid", table.concat(sorted, ", ")) end
  return ("%s: %s"):format(what or "valid", table.concat(sorted, ", "))
end
M.suggest = suggest

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

--- The line of the string literal `value` at or after line `after`.
local function value_line(src, value, after_line)
  local n = 0
  local q1, q2 = '"' .. value .. '"', "'" .. value .. "'"
  for line in (src .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if n >= (after_line or 1) and (line:find(q1, 1, true) or line:find(q2, 1, true)) then return n end
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
                hint = suggest(k, known, "known keys"), code = ui.EXIT.USAGE }
    end
    if type(s[1]) == "table" then
      if type(v) ~= "table" then
        ui.fail { message = ("%s: \"%s\" in %s must be a table"):format(where(file, src, k, after), k, path), code = ui.EXIT.USAGE }
      end
      check_record(file, src, v, s[1], path .. "." .. k, find_line(src, k, after) or after)
    elseif type(s[1]) == "function" and not s[1](v) then
      local hint
      if s.values and type(v) == "string" then hint = suggest(v, s.values, "valid values") end
      ui.fail { message = ("%s: \"%s\" in %s must be %s%s"):format(where(file, src, k, after), k, path, s[2],
                  type(v) == "string" and (", not \"" .. v .. "\"") or ""), hint = hint, code = ui.EXIT.USAGE }
    end
  end
end

--- Load and validate a configuration file. Raises a usage error (exit 2)
--- naming file:line on any problem.
---@param path string
---@param opts? {home: string?, root: string?} see M.validate
---@return table cfg
function M.load(path, opts)
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
  if r.type ~= "table" then
    ui.fail { message = ("%s: the configuration must return a table, got %s"):format(path, r.type), code = ui.EXIT.USAGE,
              hint = "end migfix.lua with: return { environments = { ... } }" }
  end
  return M.validate(r.value, path, src, opts)
end

-- ------------------------------------------------------------------ validation

local function fail_at(path, line, message, hint, detail)
  ui.fail { message = ("%s: %s"):format(line and (path .. ":" .. line) or path, message), hint = hint, detail = detail,
            code = ui.EXIT.USAGE }
end

local function abs(p, root)
  if p:sub(1, 1) == "/" or not root then return p end
  return root .. "/" .. p
end

--- Directories a chain's policies are looked for in, team ones first.
---@param cfg table the loaded configuration
---@param env table one environment of it
---@param root string the project root (policy_paths are relative to it)
---@param home string MIGFIX_HOME (the shipped policies/)
---@return string[] paths
---@return string[] team the team directories only
function M.policy_dirs(cfg, env, root, home)
  local team = {}
  for _, d in ipairs(cfg.policy_paths or {}) do team[#team + 1] = abs(d, root) end
  for _, d in ipairs(env.policy_paths or {}) do team[#team + 1] = abs(d, root) end
  local paths = {}
  for _, d in ipairs(team) do paths[#paths + 1] = d end
  if home then paths[#paths + 1] = home .. "/policies" end
  return paths, team
end

--- The policy names available in some directories (their *.lua files).
local function names_in(dirs)
  local ok, dirent = pcall(require, "posix.dirent")
  local out, seen = {}, {}
  if not ok then return out end
  for _, d in ipairs(dirs) do
    local okf, it = pcall(dirent.files, d)
    if okf then
      for f in it do
        local n = f:match("^(.+)%.lua$")
        if n and not seen[n] then seen[n] = true; out[#out + 1] = n end
      end
    end
  end
  table.sort(out)
  return out
end

--- A duration in milliseconds, or nil and why. `pg`: the value goes to
--- PostgreSQL as a setting, so only its units are accepted.
---@param v any
---@param pg? boolean
---@return integer|nil ms
---@return string? err
function M.duration(v, pg)
  if math.type(v) == "integer" and v >= 0 then return v end
  if type(v) == "number" and v >= 0 then return math.floor(v) end
  if type(v) ~= "string" then return nil, "a number of milliseconds or a duration string" end
  local n, unit = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  if not n then return nil, "a number followed by a unit" end
  local units = pg and M.PG_UNITS or M.UNITS
  local ok = unit == ""
  for _, u in ipairs(units) do if u == unit then ok = true end end
  if not ok then
    local near = M.nearest(unit, units)
    return nil, ("unit \"%s\" is not one of %s"):format(unit, table.concat(units, ", ")), near and (n .. near)
  end
  if unit == "us" then return math.floor(tonumber(n) / 1000) end
  return M.millis(v)
end

local DURATIONS = {
  { "timeouts", "lock_timeout", true }, { "timeouts", "statement_timeout", true },
  { "timeouts", "advisory_lock" }, { "timeouts", "data_check" },
  { "deploy", "lock_timeout", true }, { "deploy", "retry_pause" },
}

--- The actions `forbid` may name (every action that writes).
function M.forbiddable()
  local out = {}
  for name, def in pairs(require("migfix.actions").ACTIONS) do
    if def.writes then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

--- Check a loaded configuration table, all of it (see the header). opts.home
--- (MIGFIX_HOME) enables the policy and lint-rule checks; opts.root is the
--- project root that relative policy_paths start from (default: the file's
--- directory). Raises a usage error naming file:line; returns cfg.
---@param cfg any what the file returned
---@param path string the file
---@param src string its text (for line numbers)
---@param opts? {home: string?, root: string?}
---@return table cfg
function M.validate(cfg, path, src, opts)
  opts = opts or {}
  local root = opts.root or path:match("^(.*)/[^/]*$")
  if type(cfg) ~= "table" then
    ui.fail { message = ("%s: the configuration must return a table, got %s"):format(path, type(cfg)), code = ui.EXIT.USAGE,
              hint = "end migfix.lua with: return { environments = { ... } }" }
  end
  check_record(path, src, cfg, M.TOP_KEYS, "the configuration", 1)
  cfg.environments = cfg.environments or {}
  if type(cfg.environments) ~= "table" then
    ui.fail { message = ("%s: \"environments\" must be a table of name = { ... }"):format(where(path, src, "environments")), code = ui.EXIT.USAGE }
  end
  local env_names = {}
  for name, e in pairs(cfg.environments) do
    if type(name) ~= "string" then fail_at(path, nil, ("environment names must be strings, found %s"):format(tostring(name))) end
    env_names[#env_names + 1] = name
    local line = find_line(src, name, 1)
    if type(e) ~= "table" then
      ui.fail { message = ("%s: environment \"%s\" must be a table"):format(line and (path .. ":" .. line) or path, name), code = ui.EXIT.USAGE }
    end
    check_record(path, src, e, M.ENV_KEYS, ("environment \"%s\""):format(name), line or 1)
  end
  table.sort(env_names)
  if cfg.default_environment and not cfg.environments[cfg.default_environment] then
    ui.fail { message = ("%s: default_environment \"%s\" is not declared in environments"):format(where(path, src, "default_environment"), cfg.default_environment),
              hint = #env_names > 0 and suggest(cfg.default_environment, env_names, "environments declared") or "declare it under environments = { ... }",
              code = ui.EXIT.USAGE }
  end

  local forbiddable = M.forbiddable()
  local forbid_set = {}
  for _, a in ipairs(forbiddable) do forbid_set[a] = true end
  local policies_seen, rules_cache = {}, {}
  for _, name in ipairs(env_names) do
    local e = cfg.environments[name]
    local eline = find_line(src, name, 1) or 1
    local function line_of(key) return find_line(src, key, eline) end
    -- durations
    for _, d in ipairs(DURATIONS) do
      local v = e[d[1]] and e[d[1]][d[2]]
      if v ~= nil then
        local ms, why, near = M.duration(v, d[3])
        if not ms then
          fail_at(path, find_line(src, d[2], line_of(d[1]) or eline),
            ("%s.%s of environment \"%s\" is not a duration: %s (%s)"):format(d[1], d[2], name,
              type(v) == "string" and ("\"" .. v .. "\"") or tostring(v), why),
            (near and ("did you mean \"" .. near .. "\"? ") or "") ..
            (d[3] and "PostgreSQL durations: 500ms, 5s, 2min, 1h (units us, ms, s, min, h, d)" or "durations: 500ms, 10s, 2min, 1h"))
        end
      end
    end
    if e.timeouts and e.timeouts.connect ~= nil then
      local c = tonumber(e.timeouts.connect)
      if not c or c <= 0 or c % 1 ~= 0 then
        fail_at(path, find_line(src, "connect", line_of("timeouts") or eline),
          ("timeouts.connect of environment \"%s\" must be a whole number of seconds, not %s"):format(name, tostring(e.timeouts.connect)),
          "e.g. connect = 10")
      end
    end
    -- the URL, when it is written out
    if type(e.url) == "string" then
      local okdb, db = pcall(require, "migfix.db")
      if okdb then
        local parsed, perr = db.parse_url(e.url)
        if not parsed then fail_at(path, line_of("url"), ("url of environment \"%s\": %s"):format(name, db.redact(tostring(perr))), ui.URL_HINT) end
      end
    elseif type(e.url) == "table" and (type(e.url.env) ~= "string" or e.url.env == "") then
      fail_at(path, line_of("url"), ("url of environment \"%s\" must name a variable: url = env \"DATABASE_URL\""):format(name))
    end
    -- forbid
    for _, a in ipairs(e.forbid or {}) do
      if not forbid_set[a] then
        fail_at(path, value_line(src, a, line_of("forbid") or eline),
          ("unrecognized action \"%s\" in forbid of environment \"%s\""):format(a, name),
          suggest(a, forbiddable, "actions that can be forbidden"))
      end
    end
    if opts.home then
      -- every policy of the chain, found and loaded
      local dirs, team = M.policy_dirs(cfg, e, root, opts.home)
      local chain = e.policies or M.DEFAULT_CHAIN
      local policy = require "migfix.policy"
      for _, pname in ipairs(chain) do
        local pline = e.policies and value_line(src, pname, line_of("policies") or eline) or eline
        local file
        for _, d in ipairs(dirs) do
          local f = d .. "/" .. pname .. ".lua"
          if pname:match("^[%w_%-%.]+$") and require("migfix.fs").exists(f) then file = f break end
        end
        if not file then
          fail_at(path, pline, ("unrecognized policy \"%s\" in the chain of environment \"%s\""):format(pname, name),
            suggest(pname, names_in(dirs), "policies found"), "looked in: " .. table.concat(dirs, ", "))
        end
        if not policies_seen[file] then
          local ok, perr = pcall(policy.load, file)
          if not ok then
            local m = ui.is_error(perr) and perr.message or tostring(perr)
            fail_at(path, pline, ("policy \"%s\" of environment \"%s\" cannot be loaded: %s"):format(pname, name, m),
              ui.is_error(perr) and perr.hint or nil, ui.is_error(perr) and perr.detail or nil)
          end
          policies_seen[file] = true
        end
      end
      -- lint rule ids
      if e.lint then
        local lint = require "migfix.lint"
        local key = table.concat(team, "\0")
        local ids = rules_cache[key]
        if not ids then
          local rules, rerr = lint.load_rules(lint.rule_paths(team, opts.home))
          if not rules then fail_at(path, line_of("lint"), ("the lint rules of environment \"%s\" cannot be loaded: %s"):format(name, tostring(rerr))) end
          ids = {}
          for _, r in ipairs(rules) do ids[#ids + 1] = r.id end
          rules_cache[key] = ids
        end
        local set = {}
        for _, id in ipairs(ids) do set[id] = true end
        for _, list in ipairs({ "errors", "warnings", "off" }) do
          for _, id in ipairs(e.lint[list] or {}) do
            if not set[id] then
              fail_at(path, value_line(src, id, find_line(src, list, line_of("lint") or eline) or eline),
                ("unrecognized lint rule \"%s\" in lint.%s of environment \"%s\""):format(id, list, name),
                suggest(id, ids, "rules"))
            end
          end
        end
      end
    end
  end
  cfg.file = path
  cfg.source = src
  return cfg
end

-- ------------------------------------------------------------------ .env

-- One value as dotenv 16 (the version Prisma 6 bundles) reads it: its line
-- regex, /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|
-- \s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/mg, written out.

--- after a value ends at i: blanks, an optional # comment, then the end of the line
local function line_end(s, i)
  local j = i
  while j <= #s and s:sub(j, j):match("[ \t\f\v]") do j = j + 1 end
  if s:sub(j, j) == "#" then
    local nl = s:find("\n", j, true)
    return nl or (#s + 1)
  end
  if j > #s or s:sub(j, j) == "\n" then return j end
  return nil
end

--- a quoted value opening at i (the quote): raw text and where the line ends, or nil
local function quoted(s, i)
  local q = s:sub(i, i)
  -- the closing quote: the first unescaped one, else (backtracking) an escaped one before it
  local cands, j = {}, i + 1
  while j <= #s do
    local c = s:sub(j, j)
    if c == "\\" and s:sub(j + 1, j + 1) == q then
      cands[#cands + 1] = j + 1
      j = j + 2
    elseif c == q then
      cands[#cands + 1] = j
      break
    else
      j = j + 1
    end
  end
  for k = #cands, 1, -1 do
    local close = cands[k]
    if k == #cands or true then
      local e = line_end(s, close + 1)
      if e then return s:sub(i, close), e end
    end
  end
  return nil
end

--- Parse the text of a .env file as Prisma's dotenv does.
---@param text string
---@return table<string,string> vars
---@return string[] order the names in the order they appear
function M.dotenv_parse(text)
  local s = text:gsub("\r\n?", "\n")
  local vars, order = {}, {}
  local pos = 1
  while pos <= #s do
    local nl = s:find("\n", pos, true) or (#s + 1)
    local i = pos
    local matched
    -- \s* may cross blank lines: the same as trying the next line
    while i <= #s and s:sub(i, i):match("[ \t\f\v]") do i = i + 1 end
    local rest = s:sub(i)
    local ex = rest:match("^export[ \t\f\v]+()")
    local k0 = i + (ex and (ex - 1) or 0)
    local key, after = s:match("^([%w_%.%-]+)()", k0)
    if key then
      local j = after
      local sep
      local ws = s:match("^[ \t\f\v]*()", j)
      if s:sub(ws, ws) == "=" then
        sep = ws + 1
      elseif s:sub(j, j) == ":" and s:sub(j + 1, j + 1):match("[ \t\f\v\n]") then
        sep = j + 2
      end
      if sep then
        local value, stop
        local v0 = s:match("^[ \t\f\v]*()", sep)
        local c = s:sub(v0, v0)
        if c == "'" or c == '"' or c == "`" then
          value, stop = quoted(s, v0)
        end
        if not value then
          local plain = s:match("^([^#\n]+)", sep)
          local e = line_end(s, sep + (plain and #plain or 0))
          if e then value, stop = plain or "", e end
        end
        if value then
          value = value:match("^%s*(.-)%s*$")
          local q = value:sub(1, 1)
          if #value >= 2 and (q == "'" or q == '"' or q == "`") and value:sub(-1) == q then
            value = value:sub(2, -2)
          end
          if q == '"' then value = value:gsub("\\n", "\n"):gsub("\\r", "\r") end
          if vars[key] == nil then order[#order + 1] = key end
          vars[key] = value
          matched = stop
        end
      end
    end
    if matched then
      local nx = s:find("\n", matched, true)
      pos = nx and (nx + 1) or (#s + 1)
    else
      pos = nl + 1
    end
  end
  return vars, order
end

--- Parse a .env file (see dotenv_parse); nil when it cannot be read.
---@return table<string,string>|nil vars
---@return string[]? order
function M.dotenv(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return M.dotenv_parse(text)
end

--- `${NAME}` expansion as Prisma does it after dotenv (not `$NAME`; `\${X}`
--- stays `${X}`): the process environment first, then the file's values, else "".
local function expand(v, lookup, depth)
  if depth > 20 then return v end
  return (v:gsub("(\\?)%${([%w_]*)}", function(bs, name)
    if bs == "\\" then return "${" .. name .. "}" end
    return expand(lookup(name) or "", lookup, depth + 1)
  end))
end
M.dotenv_expand = function(v, lookup) return expand(v, lookup, 0) end

--- Load .env files in order, as Prisma does: a variable already in the
--- process environment (or set by an earlier file) wins; values are ${}-expanded.
--- An empty process variable counts as unset (as everywhere in migfix).
---@param paths string[]
---@param getenv? fun(name: string): string|nil default os.getenv
---@return table<string,string> vars what the files add
---@return string[] read the files that were read
function M.dotenv_load(paths, getenv)
  local raw_getenv = getenv or os.getenv
  getenv = function(n)
    local v = raw_getenv(n)
    if v == "" then return nil end
    return v
  end
  local env, read = {}, {}
  for _, p in ipairs(paths) do
    local parsed, order = M.dotenv(p)
    if parsed then
      read[#read + 1] = p
      local function lookup(n)
        local v = getenv(n)
        if v ~= nil then return v end
        if env[n] ~= nil then return env[n] end
        return parsed[n]
      end
      for _, k in ipairs(order) do
        local raw = getenv(k) or env[k] or parsed[k]
        local v = M.dotenv_expand(raw, lookup)
        parsed[k] = v
        if getenv(k) == nil and env[k] == nil then env[k] = v end
      end
    end
  end
  return env, read
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
