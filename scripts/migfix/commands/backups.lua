--- migfix backups: list the environment's backups, newest first; --verify checks each one.
local ui = require "migfix.ui"
local json = require "migfix.json"
local backup = require "migfix.backup"
local health = require "migfix.health"
local journal = require "migfix.journal"

local C = {
  name = "backups",
  summary = "list the backups of the environment, newest first (--verify: size, SHA-256 and pg_restore --list of each)",
  usage = "backups [--verify] [--json] | backups --prune (--keep N | --older-than DURATION) [--dry-run] [--json]",
  description = [[--prune deletes old backups of the environment's backup directory (an archive and its manifest
together): --keep N keeps the N newest, --older-than 30d keeps those younger than that; with both, a
backup goes only when both rules let it go. Archives without a readable manifest are never touched.
Each prune that removes something is recorded in the journal file (.migfix/journal.jsonl, action
backup_prune, with every removed file, its size and SHA-256). --dry-run only says what would go.
Archives (.dump) without a manifest and manifests whose archive is gone are always listed as
warnings (JSON: orphans); with --verify they make the exit 1.]],
  options = {
    { long = "verify", help = "check every archive against its manifest; exit 1 if any fails, or an archive has no manifest or a manifest no archive" },
    { long = "prune", help = "delete the backups outside the retention given by --keep and/or --older-than" },
    { long = "keep", arg = "N", help = "with --prune: keep the N newest backups (N >= 1)" },
    { long = "older-than", arg = "DURATION", help = "with --prune: delete backups older than DURATION (e.g. 30d, 12h)" },
    { long = "dry-run", help = "with --prune: list what would be deleted, delete nothing" },
    { long = "json", help = "print a JSON document" },
  },
}

local function prune(ctx, opts)
  local p = ctx:project()
  local rule = {}
  if opts.keep then
    local n = tonumber(opts.keep)
    if not n or math.type(n) ~= "integer" or n < 1 then
      ui.fail { message = ("invalid --keep \"%s\": expected an integer >= 1"):format(opts.keep),
                hint = "to delete every backup, remove the directory yourself: " .. p.backup_dir, code = ui.EXIT.USAGE }
    end
    rule.keep = n
  end
  if opts["older-than"] then
    local sec, err = health.duration(opts["older-than"])
    if not sec then ui.fail { message = "invalid --older-than: " .. err, code = ui.EXIT.USAGE } end
    rule.older_than = sec
  end
  if not rule.keep and not rule.older_than then
    ui.fail { message = "--prune needs --keep N or --older-than DURATION", hint = "e.g. migfix backups --prune --keep 10", code = ui.EXIT.USAGE }
  end
  rule.dry_run = opts["dry-run"] or false
  local r, err = backup.prune(p.backup_dir, rule)
  if not r then ui.fail { message = err, hint = "nothing else was removed; fix the permissions and run it again", code = ui.EXIT.FAILURE } end
  local removed = {}
  for _, m in ipairs(r.removed) do
    removed[#removed + 1] = { file = m.file, created_at = m.created_at, size = m.size, sha256 = m.sha256, scope = m.scope,
                              database = type(m.database) == "table" and m.database.name or nil }
  end
  local jerr
  if #removed > 0 and not rule.dry_run then
    local _, e = journal.append_file(p.journal_file, {
      action = "backup_prune", outcome = "ok", environment = p.env_name, command = "backups --prune",
      details = { directory = p.backup_dir, removed = json.array(removed), kept = #r.kept,
                  keep = rule.keep, older_than_s = rule.older_than },
    })
    jerr = e
  end
  if opts.json then
    ui.out(json.encode({ directory = p.backup_dir, dry_run = rule.dry_run, removed = json.array(removed), kept = #r.kept,
                         problems = json.array(r.problems), journal_error = jerr or json.null }, { pretty = true, sort_keys = true }))
  else
    local verb = rule.dry_run and "would remove" or "removed"
    if #removed == 0 then
      ui.out(("nothing to prune in %s (%d backup%s kept)"):format(p.backup_dir, #r.kept, #r.kept == 1 and "" or "s"))
    else
      local bytes = 0
      for _, m in ipairs(removed) do bytes = bytes + (tonumber(m.size) or 0) end
      ui.out(ui.paint(("%s %d backup%s (%s) from %s; %d kept"):format(verb, #removed, #removed == 1 and "" or "s",
        backup.fmt_bytes(bytes), p.backup_dir, #r.kept), "bold"))
      for _, m in ipairs(removed) do ui.out(("  %s  %s  %s"):format(m.file, m.created_at, backup.fmt_bytes(tonumber(m.size) or 0))) end
    end
    for _, pr in ipairs(r.problems) do ui.warn(pr.error .. " (left alone)") end
    if jerr then ui.warn("could not record the prune in the journal file: " .. tostring(jerr)) end
  end
  return ui.EXIT.OK
end

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  if opts.prune then return prune(ctx, opts) end
  if opts.keep or opts["older-than"] or opts["dry-run"] then
    ui.fail { message = "--keep, --older-than and --dry-run go with --prune", hint = "migfix backups --prune --keep 10", code = ui.EXIT.USAGE }
  end
  local dir = ctx:project().backup_dir
  local list, problems = backup.list(dir)
  local orphans = backup.orphans(dir, list)
  local bad = 0
  for _, o in ipairs(orphans) do if o.kind == "no_manifest" then bad = bad + 1 end end
  if opts.verify then
    for _, m in ipairs(list) do
      local ok, err = backup.verify(m)
      m.verified = ok and true or false
      m.verify_error = err
      if not ok then bad = bad + 1 end
    end
  end
  if opts.json then
    local items = {}
    for _, m in ipairs(list) do
      local o = {}
      for k, v in pairs(m) do o[k] = v end
      items[#items + 1] = o
    end
    ui.out(json.encode({ directory = dir, backups = json.array(items), problems = json.array(problems), orphans = json.array(orphans),
                         verified = opts.verify and (bad == 0) or json.null }, { pretty = true, sort_keys = true }))
  else
    if #list == 0 then
      ui.out(("no backups in %s"):format(dir))
    else
      ui.out(ui.paint(("%d backup%s in %s"):format(#list, #list == 1 and "" or "s", dir), "bold"))
      local rows = {}
      for _, m in ipairs(list) do
        rows[#rows + 1] = {
          file = m.file, created = m.created_at, scope = m.scope, size = backup.fmt_bytes(tonumber(m.size) or 0),
          database = type(m.database) == "table" and m.database.name or "",
          reason = m.reason or m.migration or "",
          check = opts.verify and (m.verified and "ok" or ("FAILED: " .. tostring(m.verify_error))) or nil,
        }
      end
      local cols = {
        { key = "file", title = "FILE" }, { key = "created", title = "CREATED" }, { key = "scope", title = "SCOPE" },
        { key = "size", title = "SIZE" }, { key = "database", title = "DATABASE" }, { key = "reason", title = "REASON" },
      }
      if opts.verify then
        cols[#cols + 1] = { key = "check", title = "VERIFY", color = function(r) return r.check == "ok" and "green" or "red" end }
      end
      ui.table(cols, rows, "  ")
    end
    for _, pr in ipairs(problems) do ui.warn(pr.error) end
    for _, o in ipairs(orphans) do
      ui.warn(o.error, o.kind == "no_manifest" and "a backup still being written has no manifest yet; else restore its manifest, or delete the file" or nil)
    end
  end
  if opts.verify and (bad > 0 or #problems > 0) then
    if not opts.json then
      ui.warn(("%d backup%s failed verification"):format(bad + #problems, bad + #problems == 1 and "" or "s"),
              "do not restore a backup that fails verification; take a new one with 'migfix backup'")
    end
    return ui.EXIT.ATTENTION
  end
  return ui.EXIT.OK
end

return C
