--- migfix backups: list the environment's backups, newest first; --verify checks each one.
local ui = require "migfix.ui"
local json = require "migfix.json"
local backup = require "migfix.backup"

local C = {
  name = "backups",
  summary = "list the backups of the environment, newest first (--verify: size, SHA-256 and pg_restore --list of each)",
  usage = "backups [--verify] [--json]",
  options = {
    { long = "verify", help = "check every archive against its manifest; exit 1 if any fails" },
    { long = "json", help = "print a JSON document" },
  },
}

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  local dir = ctx:project().backup_dir
  local list, problems = backup.list(dir)
  local bad = 0
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
    ui.out(json.encode({ directory = dir, backups = json.array(items), problems = json.array(problems),
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
