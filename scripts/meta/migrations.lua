---@meta migfix.migrations
-- LuaLS stub for the C module engine/migrations.c: the migrations folder as
-- Prisma's CLI reads it (listMigrations.ts, schema-connector checksum.rs).
local migrations = {}

---@class migfix.migrations.Entry
---@field name string folder name = migration name
---@field path string dir .. "/" .. name
---@field sql_path string path .. "/migration.sql"
---@field has_sql boolean migration.sql is a readable regular file

---@class migfix.migrations.FailInfo
---@field missing boolean ENOENT or ENOTDIR
---@field errno integer

---Immediate real subdirectories (no symlinks, no files), sorted like
---`a.localeCompare(b)` (ICU root collation), ties broken bytewise.
---@param dir string
---@return migfix.migrations.Entry[]
---@overload fun(dir: string): nil, string, migfix.migrations.FailInfo
function migrations.list(dir) end

---@class migfix.migrations.TextProblem
---@field kind "nul"|"utf8" a NUL byte, or the start of an ill-formed UTF-8 sequence
---@field offset integer 0-based byte offset
---@field line integer 1-based
---@field byte integer 1-based byte column in the line
---@field value integer the byte
---@field text string? (read only) the file's bytes

---The file's bytes as they are (BOM and CRLF kept). A file with a NUL byte
---or invalid UTF-8 is refused: nil, "PATH:LINE:BYTE: a NUL byte (0x00)" or
---"PATH:LINE:BYTE: invalid UTF-8 (byte 0xE9)", and the problem with the bytes in info.text.
---@param path string
---@return string text
---@overload fun(path: string): nil, string, migfix.migrations.FailInfo -- could not read migration file "PATH": reason
---@overload fun(path: string): nil, string, migfix.migrations.TextProblem
function migrations.read(path) end

---For each entry of list(dir) with has_sql and no text yet: its migration.sql
---read relative to the folder (one open per file, no walk of the whole path)
---and, when it is clean text (no NUL byte, valid UTF-8), entry.text and
---entry.checksum set. An entry it cannot read, or whose text has a problem, is
---left as it was: read(entry.sql_path) gives the error. Returns how many it filled.
---@param dir string
---@param list migfix.migrations.Entry[]
---@return integer filled
function migrations.read_all(dir, list) end

---The first byte Prisma cannot run as it is: a NUL byte or the start of an
---ill-formed UTF-8 sequence (Unicode D92: no overlongs, surrogates or values past U+10FFFF).
---@param text string
---@return migfix.migrations.TextProblem|nil
function migrations.check(text) end

---The text as Prisma's CLI reads migration.sql (Node's fs.readFile(path, 'utf-8'),
---the WHATWG decoder): each maximal ill-formed UTF-8 subpart becomes U+FFFD; the
---text itself when it is valid UTF-8. Prisma's checksum of such a file is
---checksum(prisma_text(bytes)).
---@param text string
---@return string
function migrations.prisma_text(text) end

---Prisma's checksum: lowercase zero-padded hex SHA-256 of the bytes.
---@param text string
---@return string
function migrations.checksum(text) end

---Prisma's tolerant comparison (as is, CRLF->LF, LF->CRLF; legacy
---non-padded format when stored is non-empty and not 64 characters).
---@param text string
---@param stored string
---@return boolean
function migrations.matches(text, stored) end

---Provider from <dir>/migration_lock.toml, parsed like Prisma; nil without
---a lock file; "<PROVIDER NOT FOUND>" when no line starts with "provider".
---@param dir string
---@return string|nil provider
---@overload fun(dir: string): nil, string, migfix.migrations.FailInfo
function migrations.lock_provider(dir) end

---Collation order of two names: -1, 0 or 1 (0 only for collation-equal names).
---@param a string
---@param b string
---@return integer
function migrations.compare(a, b) end

return migrations
