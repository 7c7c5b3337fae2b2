--- migfix config check: the configuration as migfix resolved it, per environment.
local ui = require "migfix.ui"
local json = require "migfix.json"
local config = require "migfix.config"

local C = {
  name = "config",
  summary = "check migfix.lua and print the resolved configuration of every environment",
  usage = "config check [--json]",
  description = [[Loads migfix.lua (or --config FILE) and checks all of it, as every command does before it
connects: keys and values, durations, backup scopes, confirm modes, units, the actions in
forbid, every policy of every chain (found in policy_paths or the shipped policies and loaded),
and the lint rule ids. A mistake exits 2 naming migfix.lua:LINE and the nearest valid name.
Then prints, per environment: where the URL comes from (never the URL itself), the migrations
folder, the ledger schema, the policy chain with the file each policy comes from and what it
needs, forbid, confirm, backup, timeouts (with their milliseconds), unit, lint thresholds and
severities, lint_before_deploy, deploy retries, journal and after hooks. Nothing connects.
Without migfix.lua it shows the defaults. Exit 0 when the configuration is valid.]],
  options = { { long = "json", help = "print a JSON document (README \"config check --json\")" } },
  operands = { "check" },
}

local function sorted_keys(t)
  local out = {}
  for k, v in pairs(t or {}) do if v then out[#out + 1] = k end end
  table.sort(out)
  return out
end

local function set_list(set)
  local out = {}
  for k, v in pairs(set or {}) do if v then out[#out + 1] = k end end
  table.sort(out)
  return out
end

--- The resolved configuration of one environment, as a plain table.
local function resolve_env(ctx, name)
  local opts = {}
  for k, v in pairs(ctx.opts) do opts[k] = v end
  opts.env = name
  opts.url = nil
  local c2 = require("migfix.context").new(opts, ctx.info, "config")
  local p = c2:project()
  local paths = require("migfix.resolve").policy_paths(c2)
  local team = {}
  for _, d in ipairs(p.policy_paths) do team[d] = true end
  local chain = {}
  local policy = require "migfix.policy"
  for _, pname in ipairs(p.policies) do
    local file = policy.find(pname, paths)
    local pol = policy.load(file)
    local dir = file:match("^(.*)/[^/]*$")
    chain[#chain + 1] = { name = pname, file = file, origin = team[dir] and "team" or "shipped",
                          description = pol.description or json.null, needs = json.array(pol.needs or {}) }
  end
  local url
  if type(p.env.url) == "string" then
    url = { source = "migfix.lua", kind = "literal", redacted = ui.redact(p.env.url) }
  elseif type(p.env.url) == "table" then
    url = { source = "migfix.lua", kind = "env", env = p.env.url.env, set = p.url ~= nil, from = p.url_source or json.null }
  elseif p.url_dynamic then
    url = { source = p.url_dynamic.where, kind = "computed", set = false }
  else
    url = { source = p.url_source or "not found", kind = "env", env = p.url_wanted or json.null, set = p.url ~= nil }
  end
  local t = p.timeouts or {}
  local function dur(v, pg, default)
    if v == nil then return default and { value = json.null, ms = default, default = true } or json.null end
    return { value = v, ms = config.duration(v, pg) }
  end
  local lint = require("migfix.lint").settings(p.env.lint)
  local dep = p.env.deploy or {}
  return {
    name = name, selected = false, config_default = false,
    url = url,
    migrations = p.migrations_dir, migrations_source = p.migrations_source or (p.env.migrations and "migfix.lua") or json.null,
    schema = p.env.schema or json.null,
    policy_paths = json.array(paths),
    policies = json.array(chain),
    needs = json.array(sorted_keys((function()
      local set = {}
      for _, c in ipairs(chain) do for _, n in ipairs(c.needs) do set[n] = true end end
      return set
    end)())),
    forbid = json.array(set_list(p.forbid)),
    confirm = p.confirm,
    backup = { required = p.backup.required == true, scope = p.backup.scope or "full", dir = p.backup_dir },
    timeouts = {
      lock_timeout = dur(t.lock_timeout, true), statement_timeout = dur(t.statement_timeout, true),
      advisory_lock = dur(t.advisory_lock, false, 10000), connect_s = tonumber(t.connect) or 10,
      data_check = dur(t.data_check, false, config.millis(t.statement_timeout) or require("migfix.datacheck").DEFAULT_TIMEOUT_MS),
    },
    unit = p.unit,
    lint = { large_rows = lint.large_rows, large_bytes = lint.large_bytes, warn_rows = lint.warn_rows, warn_bytes = lint.warn_bytes,
             dml_rows = lint.dml_rows, max_tables = lint.max_tables, require_lock_timeout = lint.require_lock_timeout,
             errors = json.array(set_list(lint.errors)), warnings = json.array(set_list(lint.warnings)), off = json.array(set_list(lint.off)) },
    lint_before_deploy = p.env.lint_before_deploy == true,
    deploy = { lock_timeout = dur(dep.lock_timeout, true), retries = dep.retries or json.null, retry_pause = dur(dep.retry_pause) },
    journal = { schema = p.journal_schema, file = p.journal_file },
    after = json.array(p.after or {}),
  }
end

--- The document of `config check --json`.
function C.document(ctx)
  local p = ctx:project()
  local cfg = p.config
  local names = {}
  if cfg then for n in pairs(cfg.environments) do names[#names + 1] = n end end
  table.sort(names)
  local envs = {}
  if #names == 0 then
    local e = resolve_env(ctx, nil)
    e.name = "default"
    envs[1] = e
  else
    for _, n in ipairs(names) do envs[#envs + 1] = resolve_env(ctx, n) end
  end
  for _, e in ipairs(envs) do
    e.selected = e.name == p.env_name
    e.config_default = cfg ~= nil and cfg.default_environment == e.name
  end
  return {
    valid = true, file = cfg and cfg.file or json.null, root = p.root,
    default_environment = cfg and cfg.default_environment or json.null,
    selected = p.env_name, environments = json.array(envs),
  }
end

local function dur_text(d)
  if d == nil or d == json.null then return "-" end
  if d.default then return ("%d ms (default)"):format(d.ms) end
  if tostring(d.value) == tostring(d.ms) then return ("%s ms"):format(tostring(d.ms)) end
  return ("%s (%s ms)"):format(tostring(d.value), tostring(d.ms))
end

local function list_text(l)
  local t = {}
  for _, x in ipairs(l or {}) do t[#t + 1] = tostring(x) end
  return #t > 0 and table.concat(t, ", ") or "-"
end

function C.print(doc)
  ui.out(ui.paint(doc.file ~= json.null and ("configuration %s: valid"):format(doc.file)
    or ("no migfix.lua in %s: the defaults"):format(doc.root), "green"))
  for _, e in ipairs(doc.environments) do
    ui.out("")
    local marks = {}
    if e.selected then marks[#marks + 1] = "selected" end
    if e.config_default then marks[#marks + 1] = "default_environment" end
    ui.out(ui.paint("environment " .. e.name, "bold") .. (#marks > 0 and (" (" .. table.concat(marks, ", ") .. ")") or ""))
    local u = e.url
    local url
    if u.kind == "literal" then url = "literal in migfix.lua: " .. u.redacted
    elseif u.kind == "computed" then url = "computed in " .. u.source .. " (pass --url)"
    else url = ("$%s (%s)"):format(tostring(u.env), u.set and ("set, from " .. tostring(u.from ~= json.null and u.from or u.source)) or "not set") end
    local rows = {
      { "url", url },
      { "migrations", e.migrations .. (e.migrations_source ~= json.null and (" (" .. e.migrations_source .. ")") or "") },
      { "ledger schema", e.schema ~= json.null and e.schema or "the URL's ?schema=, else public" },
    }
    for i, pol in ipairs(e.policies) do
      local needs = #pol.needs > 0 and (" [needs " .. list_text(pol.needs) .. "]") or ""
      rows[#rows + 1] = { i == 1 and "policies" or "", ("%d. %s — %s (%s)%s"):format(i, pol.name, pol.file, pol.origin, needs) }
    end
    rows[#rows + 1] = { "forbid", list_text(e.forbid) }
    rows[#rows + 1] = { "confirm", e.confirm }
    rows[#rows + 1] = { "backup", ("%s, scope %s, into %s"):format(e.backup.required and "required" or "when a policy asks",
      e.backup.scope, e.backup.dir) }
    local t = e.timeouts
    rows[#rows + 1] = { "timeouts", ("lock_timeout %s, statement_timeout %s, advisory_lock %s, connect %d s, data_check %s"):format(
      dur_text(t.lock_timeout), dur_text(t.statement_timeout), dur_text(t.advisory_lock), t.connect_s, dur_text(t.data_check)) }
    rows[#rows + 1] = { "unit", e.unit }
    local l = e.lint
    rows[#rows + 1] = { "lint", ("large_rows %d, large_bytes %d (warnings from a tenth), dml_rows %d, max_tables %d, lock_timeout required: %s"):format(
      l.large_rows, l.large_bytes, l.dml_rows, l.max_tables, tostring(l.require_lock_timeout)) }
    rows[#rows + 1] = { "", ("errors %s; warnings %s; off %s"):format(list_text(l.errors), list_text(l.warnings), list_text(l.off)) }
    rows[#rows + 1] = { "lint_before_deploy", tostring(e.lint_before_deploy) }
    local d = e.deploy
    rows[#rows + 1] = { "deploy", ("lock_timeout %s, retries %s, retry_pause %s"):format(dur_text(d.lock_timeout),
      d.retries ~= json.null and tostring(d.retries) or "-", dur_text(d.retry_pause)) }
    rows[#rows + 1] = { "journal", ("table %s.journal, file %s"):format(e.journal.schema, e.journal.file) }
    rows[#rows + 1] = { "after", list_text(e.after) }
    for _, r in ipairs(rows) do ui.out(("  %-19s %s"):format(r[1], r[2])) end
  end
end

function C.run(ctx, opts, args)
  if args[1] ~= "check" or #args ~= 1 then
    ui.fail { message = args[1] and ("unrecognized config subcommand \"%s\""):format(table.concat(args, " ")) or "config needs a subcommand",
              hint = "migfix config check [--json]", code = ui.EXIT.USAGE }
  end
  local doc = C.document(ctx)
  if opts.json then
    ui.json(doc)
  else
    C.print(doc)
  end
  return ui.EXIT.OK
end

return C
