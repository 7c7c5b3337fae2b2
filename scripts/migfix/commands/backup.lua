--- migfix backup: pg_dump the project's database into the backup directory, with a manifest.
local ui = require "migfix.ui"
local backup = require "migfix.backup"

local C = {
  name = "backup",
  summary = "back up the database with pg_dump (custom format), checksum and verify it, write a manifest",
  usage = "backup [--scope full|schema|ledger] [--reason TEXT] [--json]",
  description = [[The archive goes to the environment's backup directory (backup.dir in migfix.lua,
default .migfix/backups/<environment>), as <db>_<YYYYMMDDTHHMMSSZ>_<scope>.dump (mode 0600)
next to <file>.json, its manifest (database, pg_dump version, size, SHA-256, object counts).
Scopes: full (default) = the whole database; schema = definitions only (--schema-only);
ledger = the "_prisma_migrations" table of the ledger schema plus the migfix journal tables.
pg_dump gets the connection through PG* environment variables: the password is never in its
command line. pg_dump must not be older than the server; MIGFIX_PG_BINDIR picks its directory.]],
  options = {
    { long = "scope", arg = "SCOPE", help = "full (default), schema or ledger" },
    { long = "reason", arg = "TEXT", help = "why this backup was taken (kept in the manifest)" },
    { long = "json", help = "print the manifest as JSON" },
  },
}

local KIND_EXIT = { usage = ui.EXIT.USAGE, connect = ui.EXIT.CONNECT }

--- the newest failed migration in the ledger, if any (for the manifest)
local function failed_migration(conn, schema)
  local ok, ledger = pcall(require, "migfix.ledger")
  if not ok then return nil end
  local okr, l = pcall(ledger.read, conn, schema)
  if not okr or not l or not l.exists then return nil end
  local name
  for _, r in ipairs(l.rows) do
    if ledger.is_failed(r) then name = r.migration_name end
  end
  return name
end

--- "3 TABLE, 2 INDEX, ..." in a stable order
function C.objects_line(objects)
  local keys = {}
  for k in pairs(objects or {}) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if objects[a] ~= objects[b] then return objects[a] > objects[b] end
    return a < b
  end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%d %s"):format(objects[k], k) end
  return table.concat(parts, ", ")
end

function C.run(ctx, opts, args)
  if #args > 0 then
    ui.fail { message = ("unexpected argument \"%s\""):format(args[1]), hint = "usage: migfix " .. C.usage, code = ui.EXIT.USAGE }
  end
  local scope = opts.scope or "full"
  if not backup.SCOPES[scope] then
    ui.fail { message = ("unrecognized scope \"%s\""):format(scope), hint = "use --scope full, schema or ledger",
              code = ui.EXIT.USAGE }
  end
  local p = ctx:project()
  local conn = ctx:connect { readonly = true }
  local schema = ctx:schema()
  local m, err, info = backup.dump {
    url = ctx:url(), dir = p.backup_dir, scope = scope, schema = schema, reason = opts.reason,
    migration = failed_migration(conn, schema), environment = p.env_name, progress = not opts.json,
    conn = conn, journal_schema = p.journal_schema,
  }
  if not m then
    info = info or {}
    ui.fail { message = err, detail = info.detail, hint = info.hint, code = KIND_EXIT[info.kind] or ui.EXIT.FAILURE }
  end
  if opts.json then
    ui.json(m)
    return ui.EXIT.OK
  end
  ui.out(ui.paint(("backup written: %s"):format(m.path), "green"))
  ui.out(("  database \"%s\" on %s:%s (PostgreSQL %s), scope %s, %s, pg_dump %s"):format(
    m.database.name, m.database.host, m.database.port, backup.major_of(m.database.server_version), m.scope,
    backup.fmt_bytes(m.size), m.pg_dump_version))
  ui.out(("  sha256 %s"):format(m.sha256))
  ui.out(("  verified with pg_restore --list: %s"):format(C.objects_line(m.objects)))
  ui.out(("  manifest %s.json"):format(m.path))
  ui.out(("next: migfix restore %s --into postgresql://USER@HOST:5432/OTHER_DB   (to check it restores)"):format(m.file))
  return ui.EXIT.OK
end

return C
