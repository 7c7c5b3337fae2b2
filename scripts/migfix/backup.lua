--- Backups with pg_dump (custom format), their manifests, verification and
--- restore with pg_restore. pg_dump and pg_restore run through migfix.proc
--- (no shell); the connection reaches them through PGHOST/PGPORT/PGUSER/
--- PGDATABASE/PGPASSWORD/PGSSLMODE... in the child's environment only, so the
--- password is never in an argv (`ps`) nor in a manifest or a message.
---
--- Failures return nil, message, info where info = {kind, hint, detail}:
--- kind "usage" (bad URL or option value), "connect" (cannot reach the
--- database), "refused" (restore over the source without force),
--- "verify" (archive does not match its manifest), "failure" (anything else).
local proc = require "migfix.proc"
local sys = require "migfix.sys"
local db = require "migfix.db"
local crypto = require "migfix.crypto"
local json = require "migfix.json"
local stat = require "posix.sys.stat"
local fcntl = require "posix.fcntl"
local unistd = require "posix.unistd"
local dirent = require "posix.dirent"
local stdlib = require "posix.stdlib"

local M = {}

M.SCOPES = { full = true, schema = true, ledger = true }
M.LEDGER_TABLE = "_prisma_migrations"
M.MANIFEST_VERSION = 1

-- Query parameters of a Prisma URL that libpq also reads from the environment.
local PARAM_ENV = {
  host = "PGHOST", sslmode = "PGSSLMODE", sslcert = "PGSSLCERT", sslkey = "PGSSLKEY",
  sslrootcert = "PGSSLROOTCERT", sslcrl = "PGSSLCRL", sslcrldir = "PGSSLCRLDIR", sslsni = "PGSSLSNI",
  sslcompression = "PGSSLCOMPRESSION", ssl_min_protocol_version = "PGSSLMINPROTOCOLVERSION",
  ssl_max_protocol_version = "PGSSLMAXPROTOCOLVERSION", connect_timeout = "PGCONNECT_TIMEOUT",
  application_name = "PGAPPNAME", options = "PGOPTIONS", target_session_attrs = "PGTARGETSESSIONATTRS",
  channel_binding = "PGCHANNELBINDING", gssencmode = "PGGSSENCMODE", krbsrvname = "PGKRBSRVNAME",
  gsslib = "PGGSSLIB", requirepeer = "PGREQUIREPEER",
}

local function fail(msg, kind, hint, detail)
  return nil, msg, { kind = kind or "failure", hint = hint, detail = detail }
end

local function checkfields(t, call, allowed)
  if type(t) ~= "table" then error(("bad argument #1 (expected %s)"):format(call), 3) end
  for k in pairs(t) do
    if not allowed[k] then error(("unrecognized option \"%s\" (expected %s)"):format(tostring(k), call), 3) end
  end
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- ---- the password: db.parse_url does not hand it out ------------------------

local function pct_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The decoded password of a postgresql:// URL, or nil. (Local helper until
--- migfix.db exposes it: the authority's userinfo ends at its last "@".)
---@param url string
---@return string|nil
function M.url_password(url)
  local rest = url:match("^[%a][%w+.-]*://(.*)$")
  if not rest then return nil end
  local authority = rest:match("^([^/?#]*)")
  local userinfo = authority:match("^(.*)@")
  if not userinfo then return nil end
  local pw = userinfo:match("^[^:]*:(.*)$")
  if pw == nil or pw == "" then return nil end
  return pct_decode(pw)
end

-- ---- messages never carry the password ---------------------------------------

local function redactor(password)
  return function(s)
    if s == nil then return nil end
    s = db.redact(tostring(s))
    if password and #password >= 3 then
      local pat = password:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
      s = s:gsub(pat, "****")
    end
    return s
  end
end

-- ---- connection through environment variables ---------------------------------

--- The child environment for pg_dump/pg_restore: every inherited PG* variable
--- removed, then PGHOST/PGPORT/PGUSER/PGDATABASE/PGPASSWORD and the libpq
--- parameters of the URL.
---@param url string
---@return table|nil env
---@return table|string parsed URL, or error message
function M.connection_env(url)
  local parsed, err = db.parse_url(url)
  if not parsed then return nil, err end
  local env = {}
  for k in pairs(stdlib.getenv() or {}) do
    if k:match("^PG") then env[k] = false end
  end
  if parsed.host then env.PGHOST = parsed.host end
  env.PGPORT = tostring(parsed.port or 5432)
  if parsed.user then env.PGUSER = parsed.user end
  if parsed.dbname then env.PGDATABASE = parsed.dbname end
  local pw = M.url_password(url)
  if pw then env.PGPASSWORD = pw end
  for k, v in pairs(parsed.params or {}) do
    if PARAM_ENV[k] then env[PARAM_ENV[k]] = v end
  end
  if env.PGAPPNAME == nil then env.PGAPPNAME = "migfix" end
  return env, parsed
end

-- ---- files ---------------------------------------------------------------------

local function basename(p) return p:match("([^/]*)$") end
local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function file_size(path)
  local st = stat.stat(path)
  return st and st.st_size or nil
end


local fs = require "migfix.fs"
local is_dir = fs.is_dir
local mkdirs = fs.mkdirs -- directories it creates get mode 0700

--- Create path exclusively with mode 0600 (whatever the umask).
local function create_private(path)
  local fd, err, errno = fcntl.open(path, fcntl.O_WRONLY | fcntl.O_CREAT | fcntl.O_EXCL | fcntl.O_CLOEXEC,
                                    tonumber("600", 8))
  if not fd then return nil, err, errno end
  unistd.close(fd)
  stat.chmod(path, tonumber("600", 8))
  return true
end

local function write_private(path, text)
  local ok, err = create_private(path)
  if not ok then return nil, err end
  local f, ferr = io.open(path, "wb")
  if not f then os.remove(path) return nil, ferr end
  local wok, werr = f:write(text)
  local cok, cerr = f:close()
  if not wok or not cok then os.remove(path) return nil, werr or cerr end
  return true
end

local read_file = fs.read

-- ---- pg_dump / pg_restore binaries ---------------------------------------------

--- "pg_dump (PostgreSQL) 15.20 (Debian ...)" -> 150020, "15.20"
local function parse_version(text)
  local a, b = (text or ""):match("%(PostgreSQL%)%s+(%d+)%.?(%d*)")
  if not a then a, b = (text or ""):match("(%d+)%.?(%d*)") end
  if not a then return nil end
  a, b = tonumber(a), tonumber(b) or 0
  if a >= 10 then return a * 10000 + b, ("%d.%d"):format(a, b) end
  return a * 10000 + b * 100, ("%d.%d"):format(a, b) -- 9.6 style (x.y are the major)
end
M.parse_version = parse_version

local function major_of(num)
  if num >= 100000 then return tostring(num // 10000) end
  return ("%d.%d"):format(num // 10000, (num // 100) % 100)
end
M.major_of = major_of

local function tool_version(path)
  local r = proc.run { argv = { path, "--version" }, stdin = "/dev/null" }
  if not r or r.code ~= 0 then return nil end
  return parse_version(r.stdout)
end

local function installed_majors()
  local out = {}
  local ok, files = pcall(dirent.dir, "/usr/lib/postgresql")
  if not ok or type(files) ~= "table" then return out end
  for _, f in ipairs(files) do
    local n = tonumber(f)
    if n then out[#out + 1] = n end
  end
  table.sort(out, function(x, y) return x > y end)
  return out
end

--- Find pg_dump/pg_restore for a server of version `server_num` (150020):
--- $MIGFIX_PG_BINDIR (or bindir) only when set; else
--- /usr/lib/postgresql/<major>/bin, then $PATH, then the newest installed
--- major that is not older than the server.
---@return table|nil tool {path, version_num, version}
---@return string|nil err
---@return table|nil info
function M.find_tool(name, server_num, bindir)
  bindir = bindir or os.getenv("MIGFIX_PG_BINDIR")
  if bindir == "" then bindir = nil end
  local function probe(path)
    if not path or not proc.which(path) then return nil end
    local num, v = tool_version(path)
    if not num then return nil end
    return { path = path, version_num = num, version = v }
  end
  local cands = {}
  if bindir then
    cands[1] = probe(bindir .. "/" .. name)
  else
    if server_num then
      cands[#cands + 1] = probe(("/usr/lib/postgresql/%s/bin/%s"):format(major_of(server_num), name))
    end
    cands[#cands + 1] = probe(proc.which(name))
    for _, major in ipairs(installed_majors()) do
      cands[#cands + 1] = probe(("/usr/lib/postgresql/%d/bin/%s"):format(major, name))
    end
  end
  if #cands == 0 then
    return fail(("could not find \"%s\""):format(name), "failure",
      bindir and ("MIGFIX_PG_BINDIR is set to \"%s\" and has no working %s; fix or unset it"):format(bindir, name)
             or ("install the PostgreSQL client%s (Debian: apt-get install postgresql-client%s), or set MIGFIX_PG_BINDIR to the directory holding %s")
                :format(server_num and (" " .. major_of(server_num)) or "", server_num and ("-" .. major_of(server_num)) or "", name))
  end
  if not server_num then return cands[1] end
  local smajor = major_of(server_num)
  for _, c in ipairs(cands) do
    if major_of(c.version_num) == smajor then return c end
  end
  for _, c in ipairs(cands) do
    if c.version_num // 100 >= server_num // 100 then return c end
  end
  local c = cands[1]
  return fail(("%s %s is older than the server (PostgreSQL %s)"):format(name, c.version, major_of(server_num)), "failure",
    ("install the PostgreSQL %s client (Debian: apt-get install postgresql-client-%s), or set MIGFIX_PG_BINDIR to its bin directory")
      :format(smajor, smajor),
    ("found %s; %s refuses to work with a newer server (\"aborting because of server version mismatch\")"):format(c.path, name))
end

-- ---- pg_restore --list -----------------------------------------------------------

-- TOC entry kinds of pg_dump, longest first so "TABLE DATA" wins over "TABLE".
local KINDS = {
  "PUBLICATION TABLES IN SCHEMA", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "MATERIALIZED VIEW DATA",
  "TEXT SEARCH TEMPLATE", "FOREIGN DATA WRAPPER", "DATABASE PROPERTIES", "PROCEDURAL LANGUAGE", "TEXT SEARCH PARSER",
  "PUBLICATION TABLE", "SEQUENCE OWNED BY", "MATERIALIZED VIEW", "OPERATOR FAMILY", "CHECK CONSTRAINT",
  "SECURITY LABEL", "FOREIGN SERVER", "OPERATOR CLASS", "ACCESS METHOD", "EVENT TRIGGER", "FK CONSTRAINT",
  "FOREIGN TABLE", "INDEX ATTACH", "LARGE OBJECT", "ROW SECURITY", "SEQUENCE SET", "TABLE ATTACH", "USER MAPPING",
  "DEFAULT ACL", "SEARCH PATH", "SHELL TYPE", "BLOB DATA", "CONSTRAINT", "CONVERSION", "PUBLICATION", "STATISTICS",
  "STDSTRINGS", "SUBSCRIPTION", "TABLE DATA", "COLLATION", "AGGREGATE", "EXTENSION", "PROCEDURE", "TRANSFORM",
  "DATABASE", "ENCODING", "FUNCTION", "OPERATOR", "SEQUENCE", "COMMENT", "DEFAULT", "TRIGGER", "POLICY", "SCHEMA",
  "SERVER", "DOMAIN", "BLOBS", "INDEX", "TABLE", "BLOB", "CAST", "RULE", "TYPE", "VIEW", "ACL",
}

--- Object counts by kind from `pg_restore --list` output.
---@param text string
---@return table<string, integer>
function M.count_objects(text)
  local counts = {}
  for line in text:gmatch("[^\n]+") do
    local rest = line:match("^%d+;%s+%d+%s+%d+%s+(.*)$")
    if rest then
      local kind
      for _, k in ipairs(KINDS) do
        if rest:sub(1, #k + 1) == k .. " " or rest == k then kind = k break end
      end
      kind = kind or rest:match("^(%S+)")
      counts[kind] = (counts[kind] or 0) + 1
    end
  end
  return counts
end

local function list_archive(pg_restore, path)
  local r, err = proc.run { argv = { pg_restore, "--list", path }, stdin = "/dev/null" }
  if not r then return nil, err end
  if r.code ~= 0 then
    return nil, ("pg_restore --list failed (exit code %d): %s"):format(r.code, (r.stderr or ""):gsub("%s+$", ""))
  end
  return M.count_objects(r.stdout)
end

-- ---- dump ---------------------------------------------------------------------------

local function qident(s) return '"' .. s:gsub('"', '""') .. '"' end

local function fmt_bytes(n)
  if n < 1024 then return ("%d B"):format(n) end
  local units = { "KiB", "MiB", "GiB", "TiB" }
  local v, i = n / 1024, 1
  while v >= 1024 and i < #units do v, i = v / 1024, i + 1 end
  return ("%.1f %s"):format(v, units[i])
end
M.fmt_bytes = fmt_bytes

-- ---- progress without a terminal ---------------------------------------------------

M.PROGRESS_INTERVAL = 5 -- seconds between two progress lines on a non-TTY

--- The tables pg_dump will copy, in the order it dumps them (schema, then name,
--- bytewise), with their heap sizes: the base of the percentage.
local function data_plan(conn)
  local rows = conn:query([[
    SELECT n.nspname AS s, c.relname AS t, pg_relation_size(c.oid)::float8 AS bytes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
     ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"]])
  if not rows then return nil end
  local total = 0
  for _, r in ipairs(rows) do total = total + (tonumber(r.bytes) or 0) end
  return rows, total
end

--- How far pg_dump is: the table it copies now (from pg_stat_activity), the
--- tables before it in the plan, and the bytes of the current COPY (PostgreSQL 14+).
local function dump_position(conn, appname, plan, total)
  local v = conn:server_version() or 0
  local rows = conn:query(([[
    SELECT a.query, %s AS copied
      FROM pg_stat_activity a %s
     WHERE a.application_name = $1 AND a.state = 'active' LIMIT 1]]):format(
      v >= 140000 and "p.bytes_processed::float8" or "NULL::float8",
      v >= 140000 and "LEFT JOIN pg_stat_progress_copy p ON p.pid = a.pid" or ""), appname)
  if not rows or not rows[1] then return nil end
  local q = tostring(rows[1].query or "")
  local sch, tbl = q:match('^COPY%s+("?[^%s"]*"?)%.("?[^%s"(]*"?)')
  if not sch then return nil end
  local function unq(x) return (x:gsub('^"(.*)"$', "%1"):gsub('""', '"')) end
  sch, tbl = unq(sch), unq(tbl)
  local before = 0
  for _, r in ipairs(plan) do
    if r.s == sch and r.t == tbl then
      local cur = math.min(tonumber(rows[1].copied) or 0, tonumber(r.bytes) or 0)
      return (before + cur) / total, sch .. "." .. tbl
    end
    before = before + (tonumber(r.bytes) or 0)
  end
  return nil, sch .. "." .. tbl
end

--- Wait for pg_dump, printing a progress line to stderr every `interval` seconds:
--- bytes written, rate, elapsed, and a percentage of the table data when the sizes
--- are known. Returns the child's status.
---@param h table proc handle
---@param o {path:string, conn?:table, dbname:string, scope:string, appname:string, t0:number, interval:number}
function M.watch(h, o)
  local plan, total
  if o.conn and o.scope == "full" then
    local ok, p, t = pcall(data_plan, o.conn)
    if ok and p and t and t > 0 then plan, total = p, t end
  end
  local next_at = o.t0 + o.interval * 1000
  while true do
    local st = h:poll()
    if st then return st end
    local now = sys.now_ms()
    if now >= next_at then
      next_at = now + o.interval * 1000
      local bytes = file_size(o.path) or 0
      local secs = (now - o.t0) / 1000
      local line = ("migfix: backing up \"%s\" (%s): %s written, %s/s, %.0f s elapsed"):format(
        o.dbname, o.scope, fmt_bytes(bytes), fmt_bytes(math.floor(bytes / math.max(secs, 0.001))), secs)
      if plan then
        local ok, frac, where = pcall(dump_position, o.conn, o.appname, plan, total)
        if ok and frac then
          line = line .. (", %d%% of the table data (%s)"):format(math.floor(math.min(frac, 1) * 100), where)
        elseif ok and where then
          line = line .. (" (%s)"):format(where)
        end
      end
      io.stderr:write(line, "\n")
      io.stderr:flush()
    end
    sys.sleep_ms(100)
  end
end

local DUMP_CALL = "backup.dump{url=, dir=, scope=full|schema|ledger, schema=, reason=, migration=, environment=, progress=, conn=, journal_schema=, bindir=}"
local DUMP_FIELDS = set { "url", "dir", "scope", "schema", "reason", "migration", "environment", "progress", "conn",
                          "journal_schema", "bindir" }

--- Back up a database with pg_dump -Fc, verify the archive and write its
--- manifest next to it.
---@param opts {url:string, dir:string, scope?:"full"|"schema"|"ledger", schema?:string, reason?:string, migration?:string, environment?:string, progress?:boolean, conn?:table, journal_schema?:string, bindir?:string}
---@return table|nil manifest
---@return string|nil err
---@return table|nil info {kind, hint, detail}
function M.dump(opts)
  checkfields(opts, DUMP_CALL, DUMP_FIELDS)
  if type(opts.url) ~= "string" then error("option \"url\" must be a string (expected " .. DUMP_CALL .. ")", 2) end
  if type(opts.dir) ~= "string" or opts.dir == "" then error("option \"dir\" must be a string (expected " .. DUMP_CALL .. ")", 2) end
  local scope = opts.scope or "full"
  if not M.SCOPES[scope] then
    error(("unrecognized scope \"%s\" (expected full, schema or ledger)"):format(tostring(scope)), 2)
  end
  local schema = opts.schema or "public"
  local journal_schema = opts.journal_schema or "migfix"
  local t0 = sys.now_ms()

  local env, parsed = M.connection_env(opts.url)
  if not env then
    return fail(parsed, "usage", require("migfix.ui").URL_HINT)
  end
  local redact = redactor(env.PGPASSWORD)

  -- the server: version, database name, ledger and journal
  local conn = opts.conn
  local own
  if not conn then
    local cerr, cinfo
    own, cerr, cinfo = db.connect(opts.url, { readonly = true, application_name = "migfix" })
    if not own then
      return fail(redact(cerr), (cinfo and cinfo.kind == "url") and "usage" or "connect",
        "is the server running and reachable with this URL?")
    end
    conn = own
  end
  local function close_own() if own then own:close() own = nil end end
  local server_num = conn:server_version()
  local rows, qerr = conn:query([[
    SELECT current_database() AS dbname, current_user AS usr,
           to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL AS ledger,
           EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $3) AS journal]], schema, M.LEDGER_TABLE, journal_schema)
  if not rows then close_own() return fail(redact(qerr), "failure") end
  local info = rows[1]
  local dbname = info.dbname
  if scope == "ledger" and not info.ledger then
    close_own()
    return fail(("there is no Prisma ledger \"%s\".\"%s\" in database \"%s\" to back up"):format(schema, M.LEDGER_TABLE, dbname),
      "failure", "back up the whole database with --scope full, or check the schema (?schema= in the URL)")
  end

  -- pg_dump and pg_restore
  local dump_tool, terr, tinfo = M.find_tool("pg_dump", server_num, opts.bindir)
  if not dump_tool then close_own() return nil, terr, tinfo end
  local restore_tool = M.find_tool("pg_restore", server_num, opts.bindir or dirname(dump_tool.path))
  if not restore_tool then
    local rerr, rinfo
    restore_tool, rerr, rinfo = M.find_tool("pg_restore", server_num, opts.bindir)
    if not restore_tool then close_own() return nil, rerr, rinfo end
  end

  -- the directory and the file (created empty, 0600, before pg_dump starts)
  local dir = opts.dir
  local ok, derr = mkdirs(dir)
  if not ok then
    close_own()
    return fail(("could not create backup directory \"%s\": %s"):format(dir, derr), "failure",
      "choose another directory with backup.dir in migfix.lua, or fix the permissions")
  end
  local started = os.time()
  local stamp = os.date("!%Y%m%dT%H%M%SZ", started)
  local safe = dbname:gsub("[^%w_.-]", "_")
  local path, n = nil, 1
  while true do
    path = ("%s/%s_%s_%s%s.dump"):format(dir, safe, stamp, scope, n > 1 and ("_" .. n) or "")
    local cok, cerr, errno = create_private(path)
    if cok then break end
    if errno ~= require("posix.errno").EEXIST or n > 100 then
      close_own()
      return fail(("could not create backup file \"%s\": %s"):format(path, cerr), "failure",
        ("check that \"%s\" is a writable directory (or set backup.dir in migfix.lua)"):format(dir))
    end
    n = n + 1
  end

  local argv = { dump_tool.path, "--format=custom", "--no-password", "--file=" .. path }
  if scope == "schema" then
    argv[#argv + 1] = "--schema-only"
  elseif scope == "ledger" then
    argv[#argv + 1] = "--table=" .. qident(schema) .. "." .. qident(M.LEDGER_TABLE)
    -- -n is ignored next to -t, so the journal's tables are selected by pattern
    if info.journal then argv[#argv + 1] = "--table=" .. qident(journal_schema) .. ".*" end
  end
  M.last_argv = argv -- for tests and --debug: never holds the password

  -- pg_dump's session is found by its application_name, for the progress lines
  env.PGAPPNAME = ("migfix-backup-%d"):format(unistd.getpid())
  local h, serr = proc.spawn { argv = argv, env = env, stdin = "/dev/null", stdout = "/dev/null", stderr = "pipe",
                               umask = tonumber("077", 8) }
  if not h then
    close_own()
    os.remove(path)
    return fail(("could not back up database \"%s\": %s"):format(dbname, serr), "failure")
  end
  local tty = opts.progress and sys.isatty(2)
  local st
  if opts.progress and not tty then
    st = M.watch(h, { path = path, conn = conn, dbname = dbname, scope = scope, appname = env.PGAPPNAME, t0 = t0,
                      interval = tonumber(os.getenv("MIGFIX_PROGRESS_INTERVAL") or "") or M.PROGRESS_INTERVAL })
  elseif tty then
    while true do
      st = h:poll()
      if st then break end
      io.stderr:write(("\r\27[Kmigfix: backing up \"%s\" (%s): %s written, %.1f s"):format(
        dbname, scope, fmt_bytes(file_size(path) or 0), (sys.now_ms() - t0) / 1000))
      io.stderr:flush()
      sys.sleep_ms(200)
    end
    io.stderr:write("\r\27[K")
    io.stderr:flush()
  else
    st = h:wait()
  end
  close_own()
  local stderr_text = redact((h:read_stderr():gsub("%s+$", "")))
  h = nil
  if st.code ~= 0 then
    os.remove(path)
    local hint = "see pg_dump's message above; nothing was kept"
    if stderr_text:find("No space left on device", 1, true) or stderr_text:find("could not write", 1, true) then
      hint = ("free some space on the file system holding \"%s\" (or set backup.dir in migfix.lua), then try again"):format(dir)
    elseif stderr_text:find("server version mismatch", 1, true) then
      hint = "install the pg_dump of the server's major version, or set MIGFIX_PG_BINDIR"
    elseif stderr_text:find("password authentication failed", 1, true) or stderr_text:find("no password supplied", 1, true) then
      hint = "check the user and password of the database URL"
    end
    return fail(("could not back up database \"%s\": pg_dump %s (the partial file was removed)"):format(
      dbname, st.signal and ("was killed by signal " .. st.signal) or ("exited with code " .. st.code)),
      "failure", hint, stderr_text ~= "" and stderr_text or nil)
  end
  stat.chmod(path, tonumber("600", 8))

  -- checksum, then prove the archive readable
  local size = file_size(path)
  local sha, herr = crypto.sha256_file(path)
  if not sha then os.remove(path) return fail("could not checksum the backup: " .. tostring(herr), "failure") end
  local objects, lerr = list_archive(restore_tool.path, path)
  if not objects then
    os.remove(path)
    return fail(("pg_dump wrote an archive pg_restore cannot read (it was removed): %s"):format(redact(lerr)), "failure",
      "check that pg_dump and pg_restore come from the same PostgreSQL installation")
  end

  local manifest = {
    version = M.MANIFEST_VERSION,
    file = basename(path),
    path = path,
    created_at = os.date("!%Y-%m-%dT%H:%M:%SZ", started), -- when pg_dump started (its snapshot)
    database = { name = dbname, host = parsed.host or "localhost", port = parsed.port or 5432,
                 user = parsed.user or info.usr, server_version = server_num },
    pg_dump_version = dump_tool.version,
    scope = scope,
    schema = schema,
    size = size,
    sha256 = sha,
    objects = objects,
    reason = opts.reason,
    migration = opts.migration,
    environment = opts.environment,
    duration_ms = math.floor(sys.now_ms() - t0 + 0.5),
  }
  if scope == "ledger" then manifest.journal_schema = info.journal and journal_schema or nil end
  local wok, werr = write_private(path .. ".json", json.encode(manifest, { pretty = true, sort_keys = true }) .. "\n")
  if not wok then
    os.remove(path)
    return fail(("could not write the backup manifest \"%s.json\": %s"):format(path, werr), "failure")
  end
  return manifest
end

-- ---- manifests ---------------------------------------------------------------------

--- Read a manifest; `p` is the archive or its .json. The returned table has
--- manifest_path and path set to where the files are now.
---@return table|nil manifest
---@return string|nil err
function M.load(p)
  local mpath = p:match("%.json$") and p or (p .. ".json")
  local text, err = read_file(mpath)
  if not text then return nil, ("could not read backup manifest \"%s\": %s"):format(mpath, err) end
  local ok, m = pcall(json.decode, text)
  if not ok or type(m) ~= "table" then
    return nil, ("could not read backup manifest \"%s\": %s"):format(mpath, ok and "not a JSON object" or tostring(m))
  end
  if m.version ~= M.MANIFEST_VERSION or type(m.file) ~= "string" or type(m.sha256) ~= "string" then
    return nil, ("could not read backup manifest \"%s\": not a migfix manifest (version %s)"):format(mpath, tostring(m.version))
  end
  m.manifest_path = mpath
  m.path = dirname(mpath) .. "/" .. m.file
  return m
end

--- Manifests in dir, newest first; unreadable ones are reported in problems.
---@param dir string
---@return table manifests
---@return table problems list of {path, error}
function M.list(dir)
  local out, problems = {}, {}
  if not is_dir(dir) then return out, problems end
  local ok, files = pcall(dirent.dir, dir)
  if not ok or type(files) ~= "table" then
    problems[1] = { path = dir, error = ("could not read directory \"%s\""):format(dir) }
    return out, problems
  end
  for _, f in ipairs(files) do
    if f:match("%.json$") and f:sub(1, 1) ~= "." then
      local m, err = M.load(dir .. "/" .. f)
      if m then out[#out + 1] = m else problems[#problems + 1] = { path = dir .. "/" .. f, error = err } end
    end
  end
  table.sort(out, function(a, b)
    if a.created_at ~= b.created_at then return tostring(a.created_at) > tostring(b.created_at) end
    return a.file > b.file
  end)
  table.sort(problems, function(a, b) return a.path < b.path end)
  return out, problems
end

--- Archives and manifests of dir that have no partner: a .dump no manifest
--- names (kind "no_manifest": it cannot be verified, and prune never
--- touches it) and a manifest whose archive is gone (kind "no_dump").
---@param dir string
---@param manifests table? from M.list(dir) (read again when nil)
---@return table orphans list of {path, kind, error}, sorted by path
function M.orphans(dir, manifests)
  local out = {}
  if not is_dir(dir) then return out end
  manifests = manifests or M.list(dir)
  local named = {}
  for _, m in ipairs(manifests) do
    named[m.file] = true
    if not file_size(m.path) then
      out[#out + 1] = { path = m.manifest_path, kind = "no_dump",
                        error = ("backup manifest \"%s\" has no archive: \"%s\" is missing"):format(m.manifest_path, m.path) }
    end
  end
  local ok, files = pcall(dirent.dir, dir)
  if ok and type(files) == "table" then
    for _, f in ipairs(files) do
      if f:match("%.dump$") and f:sub(1, 1) ~= "." and not named[f] then
        local path = dir .. "/" .. f
        local mpath = path .. ".json"
        -- an unreadable manifest is reported by M.list already
        if not file_size(mpath) then
          out[#out + 1] = { path = path, kind = "no_manifest",
                            error = ("backup file \"%s\" has no manifest (%s.json): it cannot be verified or restored with migfix"):format(path, f) }
        end
      end
    end
  end
  table.sort(out, function(a, b) return a.path < b.path end)
  return out
end

--- Check an archive against its manifest: present, same size, same SHA-256,
--- and readable by pg_restore --list.
---@param target string|table archive path, manifest path or a loaded manifest
---@param bindir? string
---@return true|nil ok
---@return string|nil reason
---@return table|nil info
function M.verify(target, bindir)
  local m = target
  if type(target) == "string" then
    local err
    m, err = M.load(target)
    if not m then return fail(err, "verify") end
  elseif type(target) ~= "table" then
    error("bad argument #1 to 'verify' (expected a path or a manifest)", 2)
  end
  local path = m.path
  local size = file_size(path)
  if not size then return fail(("backup file \"%s\" is missing"):format(path), "verify") end
  if size ~= m.size then
    return fail(("backup file \"%s\" has %d bytes, its manifest says %s"):format(path, size, tostring(m.size)), "verify",
      "the file was truncated or replaced; do not restore it")
  end
  local sha, err = crypto.sha256_file(path)
  if not sha then return fail(("could not read backup file \"%s\": %s"):format(path, tostring(err)), "verify") end
  if sha ~= m.sha256 then
    return fail(("backup file \"%s\" does not match its manifest: SHA-256 %s, expected %s"):format(path, sha, m.sha256),
      "verify", "the file was modified after the backup; do not restore it")
  end
  local tool, terr, tinfo = M.find_tool("pg_restore", parse_version(m.pg_dump_version), bindir)
  if not tool then return nil, terr, tinfo end
  local objects, lerr = list_archive(tool.path, path)
  if not objects then return fail(("backup file \"%s\" is not a readable archive: %s"):format(path, lerr), "verify") end
  return true
end

-- ---- retention ---------------------------------------------------------------------

local function created_epoch(m) return require("migfix.health").epoch(m.created_at) end

local PRUNE_CALL = "backup.prune(dir, {keep=N, older_than=seconds, now=, dry_run=})"
local PRUNE_FIELDS = set { "keep", "older_than", "now", "dry_run" }

--- Choose, and unless dry_run delete, the backups of `dir` that fall outside the
--- retention: with keep, those beyond the `keep` newest; with older_than, those
--- created more than that many seconds before now; with both, only backups that
--- both rules would remove (each rule keeps what it keeps). An archive and its
--- manifest go together; unreadable manifests and archives without a manifest
--- are never touched (they are listed in problems).
---@param dir string
---@param opts {keep?:integer, older_than?:number, now?:number, dry_run?:boolean}
---@return table|nil result {removed = {manifest...}, kept = {manifest...}, problems = {{path, error}}}
---@return string|nil err
function M.prune(dir, opts)
  if type(dir) ~= "string" or dir == "" then error("bad argument #1 to 'prune' (directory expected; " .. PRUNE_CALL .. ")", 2) end
  checkfields(opts, PRUNE_CALL, PRUNE_FIELDS)
  if opts.keep == nil and opts.older_than == nil then error("prune needs keep or older_than (expected " .. PRUNE_CALL .. ")", 2) end
  if opts.keep ~= nil and (math.type(opts.keep) ~= "integer" or opts.keep < 1) then
    error("keep must be an integer >= 1 (expected " .. PRUNE_CALL .. ")", 2)
  end
  if opts.older_than ~= nil and (type(opts.older_than) ~= "number" or opts.older_than < 0) then
    error("older_than must be a number of seconds >= 0 (expected " .. PRUNE_CALL .. ")", 2)
  end
  local list, problems = M.list(dir)
  local now = opts.now or os.time()
  local removed, kept = {}, {}
  for i, m in ipairs(list) do
    local by_count = opts.keep == nil or i > opts.keep
    local by_age = true
    if opts.older_than ~= nil then
      local t = created_epoch(m)
      by_age = t ~= nil and (now - t) > opts.older_than
    end
    if by_count and by_age then removed[#removed + 1] = m else kept[#kept + 1] = m end
  end
  if not opts.dry_run then
    for _, m in ipairs(removed) do
      local ok, err = os.remove(m.path)
      if not ok and file_size(m.path) then
        return nil, ("could not remove backup \"%s\": %s"):format(m.path, tostring(err))
      end
      local mok, merr = os.remove(m.manifest_path)
      if not mok and file_size(m.manifest_path) then
        return nil, ("could not remove backup manifest \"%s\": %s"):format(m.manifest_path, tostring(merr))
      end
      m.removed = true
    end
  end
  return { removed = removed, kept = kept, problems = problems }
end

-- ---- restore -----------------------------------------------------------------------

local LOOPBACK = { localhost = true, ["127.0.0.1"] = true, ["::1"] = true }
local function same_database(a, b)
  local ha, hb = a.host or "localhost", b.host or "localhost"
  if LOOPBACK[ha] then ha = "localhost" end
  if LOOPBACK[hb] then hb = "localhost" end
  return ha == hb and tonumber(a.port or 5432) == tonumber(b.port or 5432) and a.name == b.name
end

local function conninfo_quote(s) return "'" .. s:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'" end

local RESTORE_CALL = "backup.restore{file=, url=, force=, source_url=, bindir=}"
local RESTORE_FIELDS = set { "file", "url", "force", "source_url", "bindir" }

--- Restore an archive into an existing database (pg_restore --no-owner
--- --no-privileges --exit-on-error --single-transaction; with force also
--- --clean --if-exists). Refuses the database the backup came from unless force.
---@param opts {file:string, url:string, force?:boolean, source_url?:string, bindir?:string}
---@return table|nil result {manifest, database, objects, duration_ms}
---@return string|nil err
---@return table|nil info {kind, hint, detail}
function M.restore(opts)
  checkfields(opts, RESTORE_CALL, RESTORE_FIELDS)
  if type(opts.file) ~= "string" then error("option \"file\" must be a string (expected " .. RESTORE_CALL .. ")", 2) end
  if type(opts.url) ~= "string" then error("option \"url\" must be a string (expected " .. RESTORE_CALL .. ")", 2) end
  local t0 = sys.now_ms()
  local m, merr = M.load(opts.file)
  if not m then return fail(merr, "usage", "name a backup listed by 'migfix backups' (the .dump file or its .json manifest)") end
  local ok, verr, vinfo = M.verify(m, opts.bindir)
  if not ok then return nil, verr, vinfo end

  local env, parsed = M.connection_env(opts.url)
  if not env then return fail(parsed, "usage", require("migfix.ui").URL_HINT) end
  local redact = redactor(env.PGPASSWORD)
  local target = { host = parsed.host, port = parsed.port, name = parsed.dbname or parsed.user }
  local src = m.database or {}
  local same = same_database(target, src)
  if not same and opts.source_url then
    local sp = db.parse_url(opts.source_url)
    if sp then same = same_database(target, { host = sp.host, port = sp.port, name = sp.dbname or sp.user }) end
  end
  if same and not opts.force then
    return fail(("refusing to restore into database \"%s\" on %s:%s: the backup was taken from it"):format(
      tostring(target.name), tostring(target.host or "localhost"), tostring(target.port or 5432)), "refused",
      "restore into another (existing, empty) database, e.g. createdb " .. tostring(target.name) .. "_restore; or pass --force to overwrite it",
      "restoring over the source replaces its objects with those of the backup")
  end

  local conn, cerr, cinfo = db.connect(opts.url, { application_name = "migfix" })
  if not conn then
    return fail(redact(cerr), (cinfo and cinfo.kind == "url") and "usage" or "connect",
      "the target database must exist (migfix creates nothing): createdb it first, then run restore again")
  end
  local server_num = conn:server_version()
  local dbname = conn:query("SELECT current_database() AS d")[1].d
  conn:close()

  local tool, terr, tinfo = M.find_tool("pg_restore", server_num, opts.bindir)
  if not tool then return nil, terr, tinfo end
  local argv = { tool.path, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--no-password" }
  if opts.force then
    argv[#argv + 1] = "--clean"
    argv[#argv + 1] = "--if-exists"
  end
  argv[#argv + 1] = "--dbname=dbname=" .. conninfo_quote(dbname)
  argv[#argv + 1] = m.path
  M.last_argv = argv
  local r, rerr = proc.run { argv = argv, env = env, stdin = "/dev/null" }
  if not r then return fail(redact(rerr), "failure") end
  if r.code ~= 0 then
    local text = redact((r.stderr or ""):gsub("%s+$", ""))
    local hint = "the restore ran in one transaction, so the target was left as it was; read pg_restore's message"
    local missing = text:match('schema "([^"]+)" does not exist')
    if missing then
      -- a ledger backup holds tables, not their schemas (pg_dump -t)
      hint = ("the target has no schema \"%s\": create it (CREATE SCHEMA \"%s\") and run restore again; the target was left as it was")
        :format(missing, missing)
    elseif text:find("already exists", 1, true) and not opts.force then
      hint = "the target already holds these objects: restore into an empty database; the target was left as it was"
    end
    return fail(("could not restore \"%s\" into database \"%s\": pg_restore exited with code %d"):format(m.file, dbname, r.code),
      "failure", hint, text ~= "" and text or nil)
  end
  return { manifest = m, database = { name = dbname, host = parsed.host, port = parsed.port, server_version = server_num },
           objects = m.objects, duration_ms = math.floor(sys.now_ms() - t0 + 0.5), forced = opts.force or false }
end

return M
