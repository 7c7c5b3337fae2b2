--- migfix lint: lock- and size-aware checks of migration files (rules in
--- policies/checks/), with live table sizes when the database is reachable.
local ui = require "migfix.ui"
local json = require "migfix.json"
local lint = require "migfix.lint"

local C = {
  name = "lint",
  summary = "check migrations for locks, rewrites and scans that would stall production (rules S1-S11)",
  usage = "lint [NAME...|--pending|--all] [--offline] [--json] [--format text|json|github]",
  description = [[Default: the pending migrations when the database is reachable, every migration otherwise.
With a database, table sizes (pg_class.reltuples, pg_total_relation_size) decide what is large;
with --offline, or when no database is reachable, size-dependent findings are warnings.
Thresholds and severities: the environment's lint = { ... } in migfix.lua (README "Lint").
Suppress a finding with a comment in the file: -- migfix:ignore S6 <reason> (the reason is required).]],
  options = {
    { long = "pending", help = "lint the migrations prisma migrate deploy would apply (needs the database)" },
    { long = "all", help = "lint every migration" },
    { long = "offline", help = "do not connect: lint from the files alone (sizes unknown)" },
    { long = "json", help = "print a JSON document (README \"lint --json\")" },
    { long = "format", arg = "FMT", help = "text (default), json, or github (workflow annotations)" },
  },
  exit_help = [[Exit codes:
  0  no finding at error level
  1  at least one finding at error level (including a suppression without a reason)
  2  usage or configuration error, or a migration that does not parse (named with its line)
  3  --pending and the database cannot be reached]],
}

local function relpath(p, root)
  if root and p:sub(1, #root + 1) == root .. "/" then return p:sub(#root + 2) end
  return p
end

local function jv(v) if v == nil then return json.null end return v end

local function gh_escape(s, prop)
  s = tostring(s):gsub("%%", "%%25"):gsub("\r", "%%0D"):gsub("\n", "%%0A")
  if prop then s = s:gsub(":", "%%3A"):gsub(",", "%%2C") end
  return s
end

--- Table sizes of the given schemas: { ["schema.table"] = {rows=, bytes=} }, and the snapshot
--- (of the objects with these names, or all of them).
local function sizes_of(conn, schemas, names)
  local catalog = require "migfix.catalog"
  local snap, err = catalog.snapshot(conn, schemas, names)
  if not snap then ui.fail { message = "could not read the catalog: " .. tostring(err), code = ui.EXIT.FAILURE } end
  local sizes = {}
  for key, t in pairs(snap.tables or {}) do
    if t.kind == "r" or t.kind == "p" or t.kind == "m" then
      local rows = tonumber(t.reltuples)
      if rows and rows < 0 then rows = nil end -- never vacuumed or analyzed (PostgreSQL 14+)
      sizes[key] = { rows = rows, bytes = tonumber(t.bytes) }
    end
  end
  return sizes, snap
end


function C.run(ctx, opts, args)
  local format = opts.format or (opts.json and "json") or "text"
  if format ~= "text" and format ~= "json" and format ~= "github" then
    ui.fail { message = ("unrecognized format \"%s\" (expected text, json or github)"):format(format), code = ui.EXIT.USAGE }
  end
  local chosen = (opts.pending and 1 or 0) + (opts.all and 1 or 0) + (#args > 0 and 1 or 0)
  if chosen > 1 then
    ui.fail { message = "give migration names, --pending or --all, not several", hint = "run 'migfix help lint' for usage", code = ui.EXIT.USAGE }
  end
  if opts.pending and opts.offline then
    ui.fail { message = "--pending needs the database: the ledger says what is pending",
              hint = "name the migrations, or use --all, with --offline", code = ui.EXIT.USAGE }
  end
  local p = ctx:project()
  local settings_ok, settings = pcall(lint.settings, p.env.lint)
  if not settings_ok then ui.fail { message = tostring(settings), code = ui.EXIT.USAGE } end
  local rules, rerr = lint.load_rules(lint.rule_paths(ctx:project().policy_paths, ctx.info.home))
  if not rules then ui.fail { message = rerr, hint = "fix the rule file (README \"Lint\" shows the shape)", code = ui.EXIT.USAGE } end
  local list = ctx:migrations()

  -- the database, when reachable
  local conn, offline_reason
  if opts.offline then
    offline_reason = "--offline"
  elseif not p.url then
    if opts.pending then ctx:url() end
    offline_reason = "no database URL"
  else
    local ok, c = pcall(ctx.connect, ctx, { readonly = true })
    if ok then
      conn = c
    elseif ui.is_error(c) and c.code == ui.EXIT.CONNECT and not opts.pending then
      offline_reason = "database not reachable: " .. tostring(c.message)
      if format == "text" then ui.warn(offline_reason, "linting from the files alone: table sizes are unknown") end
    else
      error(c, 0)
    end
  end

  -- which migrations
  local targets = {}
  if #args > 0 then
    local by = {}
    for _, m in ipairs(list) do by[m.name] = m end
    for _, n in ipairs(args) do
      local m = by[n] or by[(n:gsub("/+$", ""):match("([^/]+)$"))]
      if not m then
        ui.fail { message = ("no migration named \"%s\" in %s"):format(n, p.migrations_dir),
                  hint = "give the folder name, e.g. 20240312141500_sla_kb_forms_email", code = ui.EXIT.USAGE }
      end
      targets[#targets + 1] = m
    end
  elseif opts.all or not conn then
    targets = list
  else
    local st = ctx:state(conn)
    local pend = {}
    for _, n in ipairs(st.deploy.pending or {}) do pend[n] = true end
    for _, m in ipairs(list) do if pend[m.name] then targets[#targets + 1] = m end end
  end

  -- file by file: read, parse and lint it, keep its findings, drop the rest
  -- (peak memory is one file's, not the history's). With a database, a few
  -- files (<= BATCH) are read first so that one catalog snapshot restricted
  -- to the names they use gives the sizes; more files take a snapshot of
  -- each schema they use, once.
  local mig = require "migfix.migrations"
  local schema = conn and ctx:schema() or (p.env.schema or "public")
  local function prepare(m)
    local text = m.text
    if not text then
      local t, err = mig.read(m.sql_path)
      if not t then ui.fail { message = err, code = ui.EXIT.USAGE } end
      text = t
    end
    local path = relpath(m.sql_path, p.root)
    local P, err = lint.prepare(text, path, { relations = conn ~= nil })
    if not P then
      if format == "github" then
        ui.out(("::error file=%s,line=%s,title=%s::%s"):format(gh_escape(path, true), err.line or 1,
          gh_escape("migfix: syntax error", true), gh_escape(err.message)))
      end
      ui.fail { message = ("%s:%s: %s"):format(path, err.line or "?", err.message),
                detail = "the file is not valid PostgreSQL SQL (checked with PostgreSQL's own parser, libpg_query)",
                hint = "fix the statement at that line; Prisma would fail on it too", code = ui.EXIT.USAGE }
    end
    return P
  end

  local db = { sizes = nil, snap = nil, schemas = {} }
  local server_version = conn and conn:server_version() or nil
  local function add_snapshot(schemas, names)
    local sizes, snap = sizes_of(conn, schemas, names)
    if not db.snap then
      db.sizes, db.snap = sizes, snap
    else
      for k, v in pairs(sizes) do db.sizes[k] = v end
      for k, v in pairs(snap) do
        if type(v) == "table" and type(db.snap[k]) == "table" and k ~= "comments" then
          for kk, vv in pairs(v) do db.snap[k][kk] = vv end
        end
      end
      lint.forget_catalog(db.snap)
    end
    for _, sc in ipairs(schemas) do db.schemas[sc] = true end
  end

  local results, totals = {}, { error = 0, warning = 0, info = 0, suppressed = 0 }
  local function finish(m, P)
    local r = { name = m.name, file = relpath(m.sql_path, p.root), findings = {}, suppressions = {}, statements = 0 }
    if P then
      r.statements = #P.statements
      r.findings, r.suppressions = lint.check(P, {
        settings = settings, rules = rules, sizes = db.sizes, catalog = db.snap, unit_mode = p.unit,
        server_version = server_version, schema = schema })
      for _, f in ipairs(r.findings) do totals[f.severity] = totals[f.severity] + 1 end
      for _, sp in ipairs(r.suppressions) do if sp.matched then totals.suppressed = totals.suppressed + 1 end end
    else
      r.note = "no migration.sql"
    end
    results[#results + 1] = r
  end

  local BATCH = 200
  if conn and #targets <= BATCH then
    local prepared, names, schemas, seen = {}, {}, {}, {}
    for i, m in ipairs(targets) do
      if m.has_sql then
        prepared[i] = prepare(m)
        lint.names(prepared[i], schema, names, schemas, seen)
      end
    end
    add_snapshot(#schemas > 0 and schemas or { schema }, names)
    for i, m in ipairs(targets) do finish(m, prepared[i]); prepared[i] = nil end
  else
    if conn then add_snapshot({ schema }) end
    for _, m in ipairs(targets) do
      local P = m.has_sql and prepare(m) or nil
      if conn and P then
        local _, schemas = lint.names(P, schema, {})
        local more = {}
        for _, sc in ipairs(schemas) do if not db.schemas[sc] then more[#more + 1] = sc end end
        if #more > 0 then add_snapshot(more) end
      end
      finish(m, P)
    end
  end
  local rc = totals.error > 0 and ui.EXIT.ATTENTION or ui.EXIT.OK

  if format == "json" then
    local migs = {}
    for _, r in ipairs(results) do
      local fs, ss = {}, {}
      for _, f in ipairs(r.findings) do
        fs[#fs + 1] = { rule = f.rule, title = jv(f.title), severity = f.severity, file = f.file, line = f.line,
                        statement = jv(f.statement), table = jv(f.table), lock = jv(f.lock), why = f.why,
                        alternative = jv(f.alternative), rows = jv(f.rows), bytes = jv(f.bytes) }
      end
      for _, s in ipairs(r.suppressions) do
        ss[#ss + 1] = { rule = s.rule, reason = s.reason, file = s.file, line = s.line, statement = jv(s.statement),
                        scope = s.scope, matched = s.matched, severity = jv(s.severity) }
      end
      migs[#migs + 1] = { name = r.name, file = r.file, statements = r.statements,
                          findings = json.array(fs), suppressions = json.array(ss) }
    end
    ui.out(json.encode({
      mode = conn and "online" or "offline", offline_reason = jv(offline_reason),
      environment = p.env_name, unit = p.unit, server_version = jv(server_version),
      thresholds = { large_rows = settings.large_rows, large_bytes = settings.large_bytes, warn_rows = settings.warn_rows,
                     warn_bytes = settings.warn_bytes, dml_rows = settings.dml_rows, max_tables = settings.max_tables },
      rules = json.array((function() local o = {} for _, r in ipairs(rules) do
        o[#o + 1] = { id = r.id, title = r.title, severity = settings.off[r.id] and "off" or (settings.errors[r.id] and "error")
                      or (settings.warnings[r.id] and "warning") or r.default_severity } end return o end)()),
      summary = { migrations = #results, errors = totals.error, warnings = totals.warning, info = totals.info,
                  suppressed = totals.suppressed },
      migrations = json.array(migs), exit = rc,
    }, { pretty = true }))
    return rc
  end

  if format == "github" then
    for _, r in ipairs(results) do
      for _, f in ipairs(r.findings) do
        local level = ({ error = "error", warning = "warning", info = "notice" })[f.severity]
        local msg = f.why .. (f.alternative and ("\nfix: " .. f.alternative) or "")
        ui.out(("::%s file=%s,line=%d,title=%s::%s"):format(level, gh_escape(f.file, true), f.line,
          gh_escape(("migfix %s: %s"):format(f.rule, f.title or f.rule), true), gh_escape(msg)))
      end
      for _, s in ipairs(r.suppressions) do
        if s.matched then
          ui.out(("::notice file=%s,line=%d,title=%s::%s"):format(gh_escape(s.file, true), s.line,
            gh_escape("migfix " .. s.rule .. " suppressed", true), gh_escape(s.reason)))
        end
      end
    end
    ui.out(("migfix lint: %d error(s), %d warning(s), %d suppressed in %d migration(s)"):format(
      totals.error, totals.warning, totals.suppressed, #results))
    return rc
  end

  local SEV_COLOR = { error = "red", warning = "yellow", info = "cyan" }
  local clean = 0
  for _, r in ipairs(results) do
    local shown = #r.findings > 0 or #r.suppressions > 0
    if not shown then clean = clean + 1 else
      ui.out(ui.paint(r.name, "bold") .. ui.paint("  " .. r.file, "dim"))
      for _, f in ipairs(r.findings) do
        local where = f.table and (" " .. f.table .. (f.lock and (" [" .. f.lock .. "]") or "")) or ""
        ui.out(("  %s %s line %d%s: %s"):format(ui.paint(("%-7s"):format(f.severity), SEV_COLOR[f.severity]),
          ("%-4s"):format(f.rule == "suppression" and "--" or f.rule), f.line, where, f.why))
        if f.alternative then ui.out("               fix: " .. f.alternative) end
      end
      for _, s in ipairs(r.suppressions) do
        ui.out(("  %s %-4s line %d: %s%s"):format(ui.paint("ignored", "dim"), s.rule, s.line, s.reason,
          s.matched and "" or " (matched nothing)"))
      end
      ui.out("")
    end
  end
  local mode = conn and "sizes from the database" or ("offline (" .. (offline_reason or "") .. "): table sizes unknown")
  ui.out(("%s: %d error(s), %d warning(s), %d info, %d suppressed in %d migration(s) (%d clean) · unit = %s · %s"):format(
    totals.error > 0 and ui.paint("lint failed", "red") or ui.paint("lint ok", "green"),
    totals.error, totals.warning, totals.info, totals.suppressed, #results, clean, p.unit, mode))
  return rc
end

return C
