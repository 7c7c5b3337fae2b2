--- migfix restore: pg_restore a verified backup into an existing database.
local ui = require "migfix.ui"
local json = require "migfix.json"
local backup = require "migfix.backup"

local C = {
  name = "restore",
  summary = "restore a backup into an existing database (never into its source unless --force)",
  usage = "restore BACKUP --into URL [--force] [--json]",
  description = [[BACKUP is a .dump file, its .json manifest, or a file name in the backup directory.
The archive is verified against its manifest first (size, SHA-256, pg_restore --list).
migfix creates nothing: the target database must exist. pg_restore runs with --no-owner
--no-privileges --exit-on-error --single-transaction, so a failed restore leaves the target
as it was. Restoring into the database the backup came from (or the project's own URL) is
refused unless --force, which also adds --clean --if-exists.]],
  options = {
    { long = "into", arg = "URL", help = "the database to restore into (must exist)" },
    { long = "force", help = "allow restoring over the backup's source database (drops and recreates its objects)" },
    { long = "json", help = "print the result as JSON" },
  },
}

local KIND_EXIT = { usage = ui.EXIT.USAGE, connect = ui.EXIT.CONNECT, refused = ui.EXIT.ATTENTION, verify = ui.EXIT.ATTENTION }

local exists = require("migfix.fs").exists

--- BACKUP as given, else in the backup directory (with or without .dump)
local function resolve(ctx, name)
  if exists(name) then return name end
  local dir = ctx:project().backup_dir
  for _, cand in ipairs { dir .. "/" .. name, dir .. "/" .. name .. ".dump" } do
    if exists(cand) then return cand end
  end
  ui.fail { message = ("backup \"%s\" does not exist"):format(name),
            hint = ("name a file listed by 'migfix backups' (looked in the current directory and %s)"):format(dir),
            code = ui.EXIT.USAGE }
end

function C.run(ctx, opts, args)
  if #args ~= 1 then
    ui.fail { message = #args == 0 and "restore needs a backup" or ("unexpected argument \"%s\""):format(args[2]),
              hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  if not opts.into then
    ui.fail { message = "restore needs --into URL", hint = "usage: migfix " .. C.usage .. " (the target database must exist)",
              code = ui.EXIT.USAGE }
  end
  local file = resolve(ctx, args[1])
  local ok, source_url = pcall(ctx.url, ctx)
  local r, err, info = backup.restore { file = file, url = opts.into, force = opts.force or false,
                                        source_url = ok and source_url or nil }
  if not r then
    info = info or {}
    ui.fail { message = err, detail = info.detail, hint = info.hint, code = KIND_EXIT[info.kind] or ui.EXIT.FAILURE }
  end
  if opts.json then
    ui.out(json.encode({ file = r.manifest.path, scope = r.manifest.scope, database = r.database, forced = r.forced,
                         objects = r.objects, duration_ms = r.duration_ms }, { pretty = true, sort_keys = true }))
  else
    ui.out(ui.paint(("restored %s into database \"%s\""):format(r.manifest.file, r.database.name), "green"))
    ui.out(("  scope %s, taken %s from \"%s\", %.1f s"):format(r.manifest.scope, r.manifest.created_at,
      type(r.manifest.database) == "table" and r.manifest.database.name or "?", r.duration_ms / 1000))
  end
  return ui.EXIT.OK
end

return C
