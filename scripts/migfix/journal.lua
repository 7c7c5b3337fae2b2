--- The audit journal: one hash-chained table in its own schema of the target
--- database (default "migfix", never the schema Prisma manages), mirrored to a
--- local JSON-lines file with its own chain. See docs/journal.md.
---
---   journal.ensure(conn, jschema [, {ledger_schema=}])      -> true | nil, msg, info
---   journal.append(conn, jschema, entry [, opts])            -> entry | nil, msg, info   (inside the caller's transaction)
---   journal.append_file(path, entry [, {db=}])               -> file_entry | nil, msg
---   journal.record(conn|nil, jschema, path, entry [, opts])  -> entry, file_entry | nil, msg, info
---   journal.read(conn, jschema)                              -> entries | nil, msg, info
---   journal.read_file(path)                                  -> entries | nil, msg
---   journal.verify(entries [, {anchor=, environment=, database=, schema=}]) -> true, {} | false, problems
---   journal.last_repair(entries [, {redo=}])                 -> entry | nil
---   journal.capture(conn, ledger_schema [, names])           -> rows | nil, msg, info
---   journal.run_id() / journal.set_run(id)                   -> the run id stamped into every entry's details.run
local json = require "migfix.json"
local crypto = require "migfix.crypto"
-- SHA-256 hex of a string: the primitive of Prisma's checksum (one binding)
local sha256 = require("migfix.migrations").checksum
local ui = require "migfix.ui"

local M = {}

M.TABLE = "journal"
M.DEFAULT_SCHEMA = "migfix"
M.ZERO = string.rep("0", 64)

--- every hashed field of a database entry, in column order (hash excluded)
M.FIELDS = { "seq", "at", "os_user", "host", "environment", "command", "policy", "migration", "action", "outcome",
             "ledger_schema", "before", "after", "backup", "details", "prev_hash" }
M.ACTIONS = { diagnosis = true, backup = true, mark_applied = true, mark_rolled_back = true, deploy = true,
              refusal = true, undo = true, after_hook = true, plan = true, simulate = true, split = true,
              attempt = true, drop_invalid_index = true, backup_prune = true, check = true }
M.OUTCOMES = { ok = true, failed = true, refused = true, planned = true, skipped = true }
--- actions that change the ledger (what `undo` can revert)
M.REPAIRS = { mark_applied = true, mark_rolled_back = true, deploy = true, undo = true }

local ENTRY_KEYS = { action = "string", environment = "string", command = "string", policy = "string",
                     migration = "string", ledger_schema = "string", outcome = "string", before = "table",
                     after = "table", backup = "table", details = "table" }
local LEDGER_COLUMNS = { "id", "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at",
                         "applied_steps_count" }
M.LEDGER_COLUMNS = LEDGER_COLUMNS

local NULL = json.null
local function isnull(v) return v == nil or v == NULL end

local CALL = "journal.append(conn, jschema, {action=, outcome=, environment=, command=, policy=, migration=, " ..
             "ledger_schema=, before=, after=, backup=, details=})"

-- ------------------------------------------------------------ environment

local function posix_mod(name)
  local ok, m = pcall(require, name)
  return ok and m or nil
end

--- current UTC time, ISO-8601 with microseconds: 2025-01-02T03:04:05.123456Z
function M.now()
  local t = posix_mod("posix.sys.time")
  local sec, usec = os.time(), 0
  if t and t.gettimeofday then
    local tv = t.gettimeofday()
    if tv then sec, usec = tv.tv_sec, tv.tv_usec end
  end
  return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. (".%06dZ"):format(usec)
end

local function os_user()
  local unistd, pwd = posix_mod("posix.unistd"), posix_mod("posix.pwd")
  if unistd and pwd then
    local pw = pwd.getpwuid(unistd.geteuid())
    if pw and pw.pw_name then return pw.pw_name end
  end
  if unistd and unistd.getlogin then
    local l = unistd.getlogin()
    if l then return l end
  end
  return os.getenv("USER") or os.getenv("LOGNAME") or "unknown"
end

local function host()
  local uts = posix_mod("posix.sys.utsname")
  if uts then
    local u = uts.uname()
    if u and u.nodename then return u.nodename end
  end
  local unistd = posix_mod("posix.unistd")
  if unistd and unistd.gethostname then
    local h = unistd.gethostname()
    if h then return h end
  end
  return os.getenv("HOSTNAME") or "unknown"
end
M.os_user, M.host = os_user, host

-- ------------------------------------------------------------ canonical form

local function redact_deep(v, seen)
  if type(v) == "string" then return ui.redact(v) end
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then error("journal entry contains a cycle (expected " .. CALL .. ")", 3) end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do out[k] = redact_deep(x, seen) end
  seen[v] = nil
  return setmetatable(out, getmetatable(v))
end
M.redact = redact_deep

--- The exact text that is hashed: the entry without `hash`, every field of
--- M.FIELDS present (nil as null), compact JSON with sorted keys, normalised
--- by one decode/encode round trip (so 5.0 and 5 hash alike, as jsonb stores them).
---@param e table
---@return string
function M.canonical(e)
  local t = {}
  for k, v in pairs(e) do if k ~= "hash" then t[k] = v end end
  for _, f in ipairs(M.FIELDS) do if t[f] == nil then t[f] = NULL end end
  local d = assert(json.decode(json.encode(t)))
  return json.encode(d)
end

---@param e table
---@return string hex sha256 of M.canonical(e)
function M.hash(e) return sha256(M.canonical(e)) end

--- `logs` longer than this many characters is journaled as an excerpt of
--- that length with logs_bytes (the whole text's size) and logs_sha256 (its
--- SHA-256): the journal stays small whatever the ledger holds, and undo
--- still compares the whole text (by its hash).
M.LOGS_EXCERPT = 4096

--- A ledger row as stored in the journal: all 8 columns, NULL as json.null,
--- a long `logs` as an excerpt plus logs_bytes and logs_sha256.
local function jrow(r)
  local o = {}
  for _, c in ipairs(LEDGER_COLUMNS) do
    local v = r[c]
    if isnull(v) or (type(v) == "userdata") then v = NULL end
    o[c] = v
  end
  local logs = o.logs
  if type(logs) == "string" then
    local sha = not isnull(r.logs_sha256) and type(r.logs_sha256) == "string" and r.logs_sha256 or nil
    local cut = utf8.offset(logs, M.LOGS_EXCERPT + 1)
    if sha or (cut and cut <= #logs) then
      o.logs = cut and logs:sub(1, cut - 1) or logs
      o.logs_sha256 = sha or sha256(logs)
      o.logs_bytes = math.tointeger(tonumber(r.logs_bytes)) or #logs
    end
  end
  return o
end
M.jrow = jrow

local function jrows(list, what)
  if list == nil then return json.array() end
  if type(list) ~= "table" then error(("bad field \"%s\" (a list of ledger rows expected in %s)"):format(what, CALL), 3) end
  local out = {}
  for i, r in ipairs(list) do
    if type(r) ~= "table" then error(("bad field \"%s\": row %d is not a table (expected %s)"):format(what, i, CALL), 3) end
    out[i] = jrow(r)
  end
  return json.array(out)
end

local function check_entry(entry)
  if type(entry) ~= "table" then error("bad argument #3 to 'append' (table expected, got " .. type(entry) .. "; expected " .. CALL .. ")", 3) end
  for k, v in pairs(entry) do
    local want = ENTRY_KEYS[k]
    if not want then error(("unrecognized entry field \"%s\" (expected %s)"):format(tostring(k), CALL), 3) end
    if type(v) ~= want and not (v == NULL) then
      error(("entry field \"%s\" must be a %s, got %s (expected %s)"):format(k, want, type(v), CALL), 3)
    end
  end
  if not M.ACTIONS[entry.action] then
    error(("unrecognized journal action \"%s\" (expected one of diagnosis, backup, mark_applied, mark_rolled_back, " ..
           "deploy, refusal, undo, after_hook, plan, simulate, split, backup_prune, check, attempt, drop_invalid_index)"):format(tostring(entry.action)), 3)
  end
  if not M.OUTCOMES[entry.outcome] then
    error(("unrecognized journal outcome \"%s\" (expected ok, failed, refused, planned or skipped)"):format(tostring(entry.outcome)), 3)
  end
  if entry.backup ~= nil and entry.backup ~= NULL then
    for k in pairs(entry.backup) do
      if k ~= "path" and k ~= "sha256" and k ~= "scope" then
        error(("unrecognized backup field \"%s\" (expected backup = {path=, sha256=, scope=})"):format(tostring(k)), 3)
      end
    end
  end
end

-- ------------------------------------------------------------ run id

-- one id for every entry this process writes (one invocation of migfix);
-- an outer caller (a fleet run across targets) may set its own
local RUN_ID

local function is_uuid(s)
  return type(s) == "string" and s:lower():match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
end

--- The run id of this process: a v4 uuid made on first use, or the one
--- given to set_run. Every entry appended (database or file) carries it as
--- details.run, unless the entry sets details.run itself.
---@return string
function M.run_id()
  if not RUN_ID then RUN_ID = crypto.uuid4() end
  return RUN_ID
end

--- Use `id` (a uuid, e.g. one shared by a fleet run across targets) as the
--- run id of the entries written from now on.
---@param id string
---@return string id
function M.set_run(id)
  if not is_uuid(id) then
    error(("bad argument #1 to 'set_run' (uuid expected, got %s)"):format(type(id) == "string" and ("\"" .. id .. "\"") or type(id)), 2)
  end
  RUN_ID = id:lower()
  return RUN_ID
end

--- the caller's details with the run id added (a copy: the caller's table
--- is left alone)
local function with_run(details)
  local d = {}
  if not isnull(details) then
    for k, v in pairs(details) do d[k] = v end
  end
  if d.run == nil then d.run = M.run_id() end
  return d
end

--- the stored form of a caller's entry (without seq, at, user, host, chain)
local function shape(entry)
  check_entry(entry)
  local e = {}
  for _, k in ipairs({ "action", "environment", "command", "policy", "migration", "ledger_schema", "outcome" }) do
    e[k] = entry[k] == nil and NULL or entry[k]
  end
  e.before = jrows(entry.before, "before")
  e.after = jrows(entry.after, "after")
  e.backup = isnull(entry.backup) and NULL or entry.backup
  e.details = with_run(entry.details)
  return redact_deep(e)
end

-- ------------------------------------------------------------ database

local function qualified(conn, jschema)
  return conn:quote_ident(jschema) .. "." .. conn:quote_ident(M.TABLE)
end
M.qualified = qualified

local function check_schema(jschema, fn)
  if type(jschema) ~= "string" or jschema == "" then
    error(("bad argument #2 to '%s' (journal schema name expected, got %s)"):format(fn, type(jschema)), 3)
  end
end

local function exists(conn, jschema)
  local r, err, info = conn:query("SELECT to_regclass($1) IS NOT NULL AS present", qualified(conn, jschema))
  if not r then return nil, err, info end
  return r[1].present == true or r[1].present == "t"
end
M.exists = exists

--- Create the journal schema and table if missing (idempotent).
---@param conn table
---@param jschema string
---@param opts? {ledger_schema?:string}
---@return true|nil ok
---@return string|nil err
---@return table|nil info
function M.ensure(conn, jschema, opts)
  check_schema(jschema, "ensure")
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "ledger_schema" then error(("unrecognized option \"%s\" (expected journal.ensure(conn, jschema, {ledger_schema=}))"):format(tostring(k)), 2) end
  end
  if opts.ledger_schema and opts.ledger_schema == jschema then
    return nil, ("the journal cannot live in schema \"%s\": Prisma manages it"):format(jschema),
      { hint = "set journal = { schema = \"migfix\" } in migfix.lua (any schema but the ledger's)" }
  end
  local present, err, info = exists(conn, jschema)
  if present == nil then return nil, err, info end
  if present then return true end
  local q = qualified(conn, jschema)
  local stmts = {
    "CREATE SCHEMA IF NOT EXISTS " .. conn:quote_ident(jschema),
    "CREATE TABLE IF NOT EXISTS " .. q .. [[ (
      seq bigint PRIMARY KEY,
      at timestamptz,
      os_user text,
      host text,
      environment text,
      command text,
      policy text,
      migration text,
      action text,
      outcome text,
      ledger_schema text,
      before jsonb,
      after jsonb,
      backup jsonb,
      details jsonb,
      prev_hash text,
      hash text NOT NULL)]],
    "COMMENT ON TABLE " .. q .. " IS 'migfix audit journal: hash-chained, append-only; see migfix journal --verify'",
  }
  for _, s in ipairs(stmts) do
    local ok
    ok, err, info = conn:query(s)
    if not ok then return nil, "could not create the journal: " .. tostring(err), info end
  end
  return true
end

local READ_SQL = [[
SELECT jsonb_build_object(
  'seq', seq, 'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'os_user', os_user, 'host', host, 'environment', environment, 'command', command, 'policy', policy,
  'migration', migration, 'action', action, 'outcome', outcome, 'ledger_schema', ledger_schema,
  'before', before, 'after', after, 'backup', backup, 'details', details,
  'prev_hash', prev_hash, 'hash', hash)::text AS e
  FROM %s %s ORDER BY seq]]

local function decode_rows(rows)
  local out = {}
  for i, r in ipairs(rows) do
    local e, err = json.decode(r.e)
    if not e then return nil, "could not decode journal entry " .. i .. ": " .. err end
    out[#out + 1] = e
  end
  return out
end

--- Append an entry inside the caller's open transaction: takes the table
--- lock (writers queue), chains to the last hash, inserts.
---@param conn table
---@param jschema string
---@param entry table
---@param opts? {ensure?:boolean}
---@return table|nil entry the stored entry, with seq, at, os_user, host, prev_hash, hash
---@return string|nil err
---@return table|nil info
function M.append(conn, jschema, entry, opts)
  check_schema(jschema, "append")
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "ensure" then error(("unrecognized option \"%s\" (expected journal.append(conn, jschema, entry, {ensure=}))"):format(tostring(k)), 2) end
  end
  local e = shape(entry)
  if opts.ensure ~= false then
    local ok, err, info = M.ensure(conn, jschema, { ledger_schema = type(e.ledger_schema) == "string" and e.ledger_schema or nil })
    if not ok then return nil, err, info end
  end
  local q = qualified(conn, jschema)
  local r, err, info = conn:query("LOCK TABLE " .. q .. " IN SHARE ROW EXCLUSIVE MODE")
  if not r then return nil, "could not lock the journal: " .. tostring(err), info end
  -- order by the bigint column, not the text alias ("9" > "10" as text)
  r, err, info = conn:query("SELECT j.seq::text AS seq, j.hash FROM " .. q .. " j ORDER BY j.seq DESC LIMIT 1")
  if not r then return nil, "could not read the journal: " .. tostring(err), info end
  local last = r[1]
  e.seq = last and (math.tointeger(tonumber(last.seq)) + 1) or 1
  e.prev_hash = last and last.hash or M.ZERO
  e.at = M.now()
  e.os_user = os_user()
  e.host = host()
  -- what is hashed is exactly what comes back from jsonb
  e = assert(json.decode(json.encode(e)))
  e.hash = M.hash(e)
  local sql = "INSERT INTO " .. q .. [[ (seq, at, os_user, host, environment, command, policy, migration, action,
      outcome, ledger_schema, before, after, backup, details, prev_hash, hash)
    SELECT (d->>'seq')::bigint, (d->>'at')::timestamptz, d->>'os_user', d->>'host', d->>'environment', d->>'command',
           d->>'policy', d->>'migration', d->>'action', d->>'outcome', d->>'ledger_schema',
           NULLIF(d->'before', 'null'::jsonb), NULLIF(d->'after', 'null'::jsonb),
           NULLIF(d->'backup', 'null'::jsonb), NULLIF(d->'details', 'null'::jsonb), d->>'prev_hash', d->>'hash'
      FROM (SELECT $1::jsonb AS d) s]]
  r, err, info = conn:query(sql, json.encode(e))
  if not r then return nil, "could not append to the journal: " .. tostring(err), info end
  return e
end

--- All entries in seq order ({} when the journal table does not exist).
---@return table|nil entries
---@return string|nil err
---@return table|nil info
function M.read(conn, jschema)
  check_schema(jschema, "read")
  local present, err, info = exists(conn, jschema)
  if present == nil then return nil, err, info end
  if not present then return {} end
  local rows
  rows, err, info = conn:query(READ_SQL:format(qualified(conn, jschema), ""))
  if not rows then return nil, "could not read the journal: " .. tostring(err), info end
  return decode_rows(rows)
end

--- Ledger rows of `schema`."_prisma_migrations" (optionally only `names`),
--- every column, timestamps as ISO-8601 UTC with microseconds, NULL as json.null.
---@return table|nil rows
---@return string|nil err
---@return table|nil info
function M.capture(conn, schema, names)
  local q = conn:quote_ident(schema) .. "." .. conn:quote_ident("_prisma_migrations")
  local where, params = "", {}
  if names then
    where = "WHERE migration_name = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))"
    params[1] = json.encode(json.array(names))
  end
  local ts = function(c) return ("to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"):format(c) end
  -- a long logs: an excerpt, its size and SHA-256 (M.LOGS_EXCERPT), never the whole text
  local n = M.LOGS_EXCERPT
  local sql = ([[SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'checksum', checksum, 'finished_at', %s,
      'migration_name', migration_name, 'logs', CASE WHEN octet_length(logs) > %d THEN left(logs, %d) ELSE logs END,
      'rolled_back_at', %s, 'started_at', %s, 'applied_steps_count', applied_steps_count)
      || CASE WHEN octet_length(logs) > %d THEN jsonb_build_object('logs_bytes', octet_length(logs),
           'logs_sha256', encode(sha256(convert_to(logs, 'UTF8')), 'hex')) ELSE '{}'::jsonb END
      ORDER BY started_at, id), '[]')::text AS rows FROM %s %s]]):format(
    ts("finished_at"), n, n, ts("rolled_back_at"), ts("started_at"), n, q, where)
  local r, err, info = conn:query(sql, table.unpack(params))
  if not r then return nil, err, info end
  local rows = assert(json.decode(r[1].rows))
  return json.array(rows)
end

-- ------------------------------------------------------------ file mirror

local function dirname(p) return p:match("^(.*)/[^/]*$") end

local function mkdirs(dir)
  local ok, err = require("migfix.fs").mkdirs(dir)
  if not ok then return nil, ("could not create directory \"%s\": %s"):format(dir, tostring(err)) end
  return true
end

-- the last line of a file (nil when empty), reading backwards in chunks
local function last_line(f)
  local size = f:seek("end")
  if size == 0 then return nil, true end
  f:seek("set", size - 1)
  local ends_nl = f:read(1) == "\n"
  local chunk = 4096
  while true do
    local start = math.max(0, size - chunk)
    f:seek("set", start)
    local s = (f:read(size - start) or ""):gsub("\n+$", "")
    -- the last newline (linear: ".*()\n" backtracks at every position, quadratic in a long line)
    local i = s:find("\n[^\n]*$")
    if i then return s:sub(i + 1), ends_nl end
    if start == 0 then return s ~= "" and s or nil, ends_nl end
    chunk = chunk * 4
  end
end

--- Read the JSON-lines mirror. A missing file is {}. Lines that do not parse
--- come back as {_line=N, _malformed=reason} (journal.verify reports them).
---@param path string
---@return table|nil entries
---@return string|nil err
function M.read_file(path)
  if type(path) ~= "string" then error("bad argument #1 to 'read_file' (string expected, got " .. type(path) .. ")", 2) end
  local f, err = io.open(path, "rb")
  if not f then
    if not io.open(dirname(path) or ".", "rb") or (err and err:find("No such file", 1, true)) then return {} end
    return nil, err
  end
  local out, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then
      local e, derr = json.decode(line)
      if type(e) ~= "table" then
        out[#out + 1] = { _line = n, _malformed = derr or "not a JSON object" }
      else
        out[#out + 1] = e
      end
    end
  end
  f:close()
  return out
end

--- Append one entry to the local JSON-lines mirror (file 0600, directory
--- 0700), chained to the file's last line. opts.db = {seq, hash, chain,
--- database, schema} marks a mirror of a database entry (the anchor).
---@param path string
---@param entry table a caller's entry, or a stored database entry
---@param opts? {db?:table}
---@return table|nil file_entry
---@return string|nil err
function M.append_file(path, entry, opts)
  if type(path) ~= "string" or path == "" then error("bad argument #1 to 'append_file' (path expected)", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "db" then error(("unrecognized option \"%s\" (expected journal.append_file(path, entry, {db=}))"):format(tostring(k)), 2) end
  end
  local e
  if entry.hash and entry.seq then -- a stored database entry: copy its content
    e = {}
    for _, k in ipairs(M.FIELDS) do e[k] = entry[k] end
  else
    e = shape(entry)
    e.at, e.os_user, e.host = M.now(), os_user(), host()
  end
  local mirror = opts.db
  if mirror == nil and entry.hash and entry.seq then mirror = { seq = entry.seq, hash = entry.hash } end
  if mirror then e.db = redact_deep(mirror) end
  local ok, err = mkdirs(dirname(path))
  if not ok then return nil, err end
  local fcntl, unistd, st = posix_mod("posix.fcntl"), posix_mod("posix.unistd"), posix_mod("posix.sys.stat")
  local fd
  if fcntl and unistd then
    local ferr
    fd, ferr = fcntl.open(path, fcntl.O_WRONLY | fcntl.O_CREAT | fcntl.O_APPEND, tonumber("600", 8))
    if not fd then return nil, ("could not open journal file \"%s\": %s"):format(path, tostring(ferr)) end
    if fcntl.F_SETLKW then
      fcntl.fcntl(fd, fcntl.F_SETLKW, { l_type = fcntl.F_WRLCK, l_whence = 0, l_start = 0, l_len = 0 })
    end
    if st then st.chmod(path, tonumber("600", 8)) end
  end
  local function close() if fd then unistd.close(fd) end end
  -- chain: the last well-formed line
  local rf = io.open(path, "rb")
  local prev, ends_nl = nil, true
  if rf then
    local line
    line, ends_nl = last_line(rf)
    rf:close()
    if line then
      prev = json.decode(line)
      if type(prev) ~= "table" or not prev.hash then
        prev = nil
        local all = M.read_file(path) or {}
        for i = #all, 1, -1 do if all[i].hash then prev = all[i] break end end
      end
    end
  end
  e.seq = prev and (math.tointeger(tonumber(prev.seq)) or 0) + 1 or 1
  e.prev_hash = prev and prev.hash or M.ZERO
  e = assert(json.decode(json.encode(e)))
  e.hash = M.hash(e)
  local text = (ends_nl and "" or "\n") .. json.encode(e) .. "\n"
  if fd then
    local n, werr = unistd.write(fd, text)
    if n then unistd.fsync(fd) end
    close()
    if not n then return nil, ("could not write journal file \"%s\": %s"):format(path, tostring(werr)) end
  else
    local f, ferr = io.open(path, "ab")
    if not f then return nil, ("could not open journal file \"%s\": %s"):format(path, tostring(ferr)) end
    f:write(text)
    f:close()
  end
  return e
end

--- The mirror of a database entry: where it lives (for the anchor check).
local function db_anchor(conn, jschema, stored)
  local r = conn:query("SELECT current_database() AS d, (SELECT hash FROM " .. qualified(conn, jschema) ..
                       " WHERE seq = 1) AS g")
  local d, g = nil, nil
  if r and r[1] then
    d = (not isnull(r[1].d) and type(r[1].d) == "string") and r[1].d or nil
    g = (not isnull(r[1].g) and type(r[1].g) == "string") and r[1].g or nil
  end
  return { seq = stored.seq, hash = stored.hash, chain = g or (stored.seq == 1 and stored.hash) or NULL,
           database = d or NULL, schema = jschema }
end

--- Mirror a stored database entry into the file (call after commit when you can).
---@return table|nil file_entry
---@return string|nil err
function M.mirror(conn, jschema, path, stored)
  return M.append_file(path, stored, { db = db_anchor(conn, jschema, stored) })
end

--- Record an entry, the one way entries are written:
---   * inside the transaction txn.run holds open on conn: the row joins that
---     transaction and the file mirror is written after it commits;
---   * on conn with no transaction open: a transaction of its own, then the
---     mirror;
---   * without conn, or on a read-only connection (plan, simulate): the file only.
---@return table|nil entry the database entry (or the file entry without a database)
---@return table|string|nil file_entry_or_err
---@return table|nil info {stage = "database"|"file", entry = stored database entry}
function M.record(conn, jschema, path, entry, opts)
  if conn == nil or conn:info().readonly then
    local fe, err = M.append_file(path, entry)
    if not fe then return nil, err, { stage = "file" } end
    return fe, fe
  end
  local txn = require "migfix.txn"
  local function mirror(stored)
    if path then pcall(M.mirror, conn, jschema, path, stored) end
  end
  if txn.active(conn) then
    local stored, err, info = M.append(conn, jschema, entry, opts)
    if not stored then
      info = info or {}
      info.stage = "database"
      return nil, err, info
    end
    txn.after_commit(conn, function() mirror(stored) end)
    return stored
  end
  if conn:info().in_transaction then
    error("journal.record: a transaction not opened by txn.run is open on this connection "
      .. "(use txn.run, so the file mirror follows the commit)", 2)
  end
  local stored, err, info
  local ok, raised = pcall(txn.run, conn, function()
    stored, err, info = M.append(conn, jschema, entry, opts)
    if not stored then error({ journal_failed = true }, 0) end
  end, "write the journal")
  if not ok then
    if type(raised) == "table" and raised.journal_failed then
      info = info or {}
      info.stage = "database"
      return nil, err, info
    end
    return nil, ui.is_error(raised) and raised.message or tostring(raised), { stage = "database" }
  end
  if path then
    local fe, ferr = M.mirror(conn, jschema, path, stored)
    if not fe then return nil, ferr, { stage = "file", entry = stored } end
    return stored, fe
  end
  return stored
end

--- The local file's account of an attempt whose database write failed
--- (the transaction, journal row included, rolled back): the entry with the
--- error in details[field] (default "error"; "journal_error" when the
--- journal itself could not be written). Best effort; never raises.
function M.note_failure(path, entry, err, field)
  if not path then return nil end
  local e = {}
  for k, v in pairs(entry) do e[k] = v end
  e.outcome = "failed"
  e.details = {}
  for k, v in pairs(type(entry.details) == "table" and entry.details or {}) do e.details[k] = v end
  e.details[field or "error"] = ui.is_error(err) and err.message or tostring(err)
  local ok, fe = pcall(M.append_file, path, e)
  return ok and fe or nil
end

-- ------------------------------------------------------------ verification

--- Attempts with no outcome: an `attempt` entry (committed before a deploy or
--- redeploy ran its script) that no later `deploy` entry of the same row
--- completes — the process was killed or the connection lost mid-script.
---@param entries table[]
---@return table[] the attempt entries, in order
function M.interrupted(entries)
  local done = {}
  for _, e in ipairs(entries) do
    local d = type(e.details) == "table" and e.details or nil
    if e.action == "deploy" and d and d.row_id then done[d.row_id] = true end
  end
  local out = {}
  for _, e in ipairs(entries) do
    local d = type(e.details) == "table" and e.details or nil
    if e.action == "attempt" and d and d.row_id and not done[d.row_id] then out[#out + 1] = e end
  end
  return out
end

local function problem(list, seq, kind, msg) list[#list + 1] = { seq = seq, kind = kind, message = msg } end

--- Check a chain (database or file entries, in order). opts.anchor = file
--- entries: every mirrored database entry they record (db.seq, db.hash)
--- must still be in `entries` with that hash, which is the only way to see
--- a truncated tail or a chain rewritten from the start. Mirror lines belong
--- to this chain when their db.chain is the hash of its seq 1; lines without
--- a chain id match on environment, database and schema (when given).
---@param entries table
---@param opts? {anchor?:table, environment?:string, database?:string, schema?:string}
---@return boolean ok
---@return table problems list of {seq, kind = "edited"|"deleted"|"reordered"|"malformed"|"truncated"|"rewritten", message}
function M.verify(entries, opts)
  if type(entries) ~= "table" then error("bad argument #1 to 'verify' (table of entries expected)", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "anchor" and k ~= "database" and k ~= "schema" and k ~= "environment" then
      error(("unrecognized option \"%s\" (expected journal.verify(entries, {anchor=, environment=, database=, schema=}))"):format(tostring(k)), 2)
    end
  end
  local problems = {}
  local by_hash, by_seq = {}, {}
  for _, e in ipairs(entries) do
    if e.hash then by_hash[e.hash] = e end
    if math.type(e.seq) == "integer" then by_seq[e.seq] = e end
  end
  local prev
  for _, e in ipairs(entries) do
    if e._malformed then
      problem(problems, nil, "malformed", ("line %d is not a journal entry (%s)"):format(e._line, e._malformed))
    elseif math.type(e.seq) ~= "integer" then
      problem(problems, nil, "malformed", "an entry has no integer seq")
    else
      local seq = e.seq
      if e.hash ~= M.hash(e) then
        problem(problems, seq, "edited", ("seq %d: the hash does not match the content (the entry was edited)"):format(seq))
      end
      local want_seq = prev and prev.seq + 1 or 1
      local gap = false
      if seq > want_seq then
        gap = true
        problem(problems, seq, "deleted", want_seq == seq - 1
          and ("seq %d is missing before seq %d (an entry was deleted)"):format(want_seq, seq)
          or ("seq %d..%d are missing before seq %d (entries were deleted)"):format(want_seq, seq - 1, seq))
      elseif seq < want_seq then
        problem(problems, seq, "reordered", ("seq %d comes after seq %d (the chain was reordered)"):format(seq, prev.seq))
      end
      local want_prev = prev and prev.hash or M.ZERO
      if not gap and e.prev_hash ~= want_prev then
        local other = by_hash[e.prev_hash]
        if other and other ~= prev then
          problem(problems, seq, "reordered", ("seq %d chains to seq %s, not to seq %s (the chain was reordered)"):format(
            seq, tostring(other.seq), prev and tostring(prev.seq) or "none"))
        elseif prev then
          problem(problems, seq, "deleted", ("seq %d: prev_hash is not the hash of seq %d (an entry was deleted or replaced)"):format(seq, prev.seq))
        else
          problem(problems, seq, "deleted", ("seq %d: prev_hash is not the start of a chain (earlier entries were deleted)"):format(seq))
        end
      end
      prev = e
    end
  end
  if opts.anchor then
    local genesis = by_seq[1] and by_seq[1].hash
    local last_seq = 0
    for _, e in ipairs(entries) do if math.type(e.seq) == "integer" and e.seq > last_seq then last_seq = e.seq end end
    for _, a in ipairs(opts.anchor) do
      local d = type(a) == "table" and type(a.db) == "table" and a.db or nil
      local mine = false
      if d then
        if genesis and type(d.chain) == "string" then
          mine = d.chain == genesis
        else
          local function same(want, got) return want == nil or type(got) ~= "string" or got == want end
          mine = same(opts.environment, a.environment) and same(opts.database, d.database) and same(opts.schema, d.schema)
        end
      end
      if mine and math.type(d.seq) == "integer" then
        local e = by_seq[d.seq]
        if not e then
          if d.seq > last_seq then
            problem(problems, d.seq, "truncated", ("seq %d is in the file mirror (line %s) but the database journal ends at seq %d (its tail was removed)"):format(
              d.seq, tostring(a.seq), last_seq))
          else
            problem(problems, d.seq, "deleted", ("seq %d is in the file mirror but not in the database journal (it was deleted)"):format(d.seq))
          end
        elseif e.hash ~= d.hash then
          problem(problems, d.seq, "rewritten", ("seq %d: the database hash differs from the file mirror's (the entry or the chain before it was rewritten)"):format(d.seq))
        end
      end
    end
  end
  -- one message per (seq, kind)
  local seen, out = {}, {}
  for _, p in ipairs(problems) do
    local k = tostring(p.seq) .. "/" .. p.kind .. "/" .. p.message
    if not seen[k] then seen[k] = true; out[#out + 1] = p end
  end
  return #out == 0, out
end

--- The last successful ledger change (mark_applied, mark_rolled_back,
--- deploy) that an undo has not already reverted, so repeated undos step
--- back through history. With opts.redo, undo entries count as well (the
--- last change is then an undo when one is last: undoing it is a redo).
---@param entries table
---@param opts? {redo?:boolean}
---@return table|nil entry
function M.last_repair(entries, opts)
  local redo = opts and opts.redo
  local run = opts and opts.run
  local undone = {}
  for i = #entries, 1, -1 do
    local e = entries[i]
    local in_run = not run or (type(e.details) == "table" and type(e.details.run) == "string"
                               and e.details.run:sub(1, #run) == run)
    if not e._malformed and e.outcome == "ok" and M.REPAIRS[e.action] and not undone[e.seq]
       and (e.action ~= "undo" or redo) and in_run and (not run or e.action ~= "undo") then
      return e
    end
    if not e._malformed and e.action == "undo" and e.outcome == "ok" and not undone[e.seq]
       and type(e.details) == "table" and math.type(e.details.undoes) == "integer" then
      undone[e.details.undoes] = true
    end
  end
  return nil
end

return M
