-- tests/corpus/harness.lua: the differential state harness (tests/corpus/README.md).
--
-- For every migration K of each Prisma migrations folder given, builds the
-- failed states a deploy of 1..K can leave, with plain libpq and the real
-- psql binary (never with migfix's diagnosis), then asks the migfix under
-- test (MIGFIX_BIN) and checks its answer:
--   complete     1..K-1 applied, K ran as one query, its row failed with NULL
--                logs (the process died after the commit)      -> complete
--   absent       K did not run, its row failed with a native P3018 lock-timeout
--                log (55P03)                                    -> absent
--   partial      the first half of K's statements (PostgreSQL's own parser)
--                autocommitted one by one, adapter-style log   -> partial | unverifiable
--   interrupted  a one-statement CREATE INDEX CONCURRENTLY cancelled while it
--                waited, leaving its INVALID index, P3018 57014 -> absent | partial | unverifiable
-- Never `complete` for the last three; never exit 4 or a traceback. Where
-- the plan writes, a sample is run (`migfix run --yes`) and judged by the
-- real Prisma CLI (`migrate status` over 1..K) and by pg_dump --schema-only
-- against a reference database where 1..K were deployed.
--
-- Run by tests/corpus/run (make corpus), with this worktree's migfix as the
-- Lua host:  migfix exec tests/corpus/harness.lua DIR...
-- Environment: CORPUS_ADMIN_URL (superuser URL of the server, required),
-- CORPUS_OUT (output directory, required), MIGFIX_BIN, CORPUS_ROUNDTRIP,
-- CORPUS_REFCHECK, CORPUS_STATES, CORPUS_LIMIT, CORPUS_ONLY, CORPUS_FRESH,
-- CORPUS_QUIET, PG_BIN (see README).
local db = require "migfix.db"
local msql = require "migfix.sql"
local json = require "migfix.json"
local crypto = require "migfix.crypto"
local sha256 = require("migfix.migrations").checksum
local proc = require "migfix.proc"
local sys = require "migfix.sys"
local ptime = require "posix.sys.time"
local pstat = require "posix.sys.stat"
local dirent = require "posix.dirent"
local unistd = require "posix.unistd"

-- bump when the way states are built or judged changes (invalidates cached results)
local HARNESS_VERSION = "corpus-2"
local STATE_VERSION = { partial = "2" } -- per state kind, likewise

local ROOT = os.getenv("MIGFIX_ROOT") or "."
local BIN = os.getenv("MIGFIX_BIN") or (ROOT .. "/migfix")
local PG_BIN = os.getenv("PG_BIN") or "/usr/lib/postgresql/15/bin"
local PRISMA = ROOT .. "/tests/compat/prisma"
local ADMIN = os.getenv("CORPUS_ADMIN_URL")
local OUT = os.getenv("CORPUS_OUT")
local QUIET = os.getenv("CORPUS_QUIET") == "1"
local FRESH = os.getenv("CORPUS_FRESH") == "1"
local DUMP_KEY = "migfixcorpus"
local JOURNAL_SCHEMA = "migfix"
local PREFIX = os.getenv("CORPUS_DB_PREFIX") or "corpus" -- databases: PREFIX_<n>_base, PREFIX_<n>_<state>

local STATE_KINDS = { "complete", "absent", "partial", "interrupted" }

local function die(msg)
  io.stderr:write("corpus: error: ", msg, "\n")
  os.exit(2)
end

if not ADMIN then die("CORPUS_ADMIN_URL is not set (run through tests/corpus/run or make corpus)") end
if not OUT then die("CORPUS_OUT is not set (run through tests/corpus/run or make corpus)") end
if #arg == 0 then die("no migrations folder given: make corpus CORPUS=\"DIR [DIR...]\"") end

---------------------------------------------------------------------------
-- options
---------------------------------------------------------------------------

-- "none" | "all" | "every:N" -> function(index) -> bool
local function sampler(spec, what)
  spec = spec or ""
  if spec == "none" or spec == "0" then return function() return false end, spec end
  if spec == "all" then return function() return true end, spec end
  if spec == "last" then return nil, spec end
  local n = spec:match("^every:(%d+)$")
  if n and tonumber(n) > 0 then
    n = tonumber(n)
    return function(i) return i % n == 0 end, spec
  end
  die(("%s must be none, all or every:N (got '%s')"):format(what, spec))
end

local RT_SPEC = os.getenv("CORPUS_ROUNDTRIP") or "every:10"
local rt_sample = sampler(RT_SPEC, "CORPUS_ROUNDTRIP")
local WRONG_RT = tonumber(os.getenv("CORPUS_ROUNDTRIP_WRONG") or "10") or 10
local REF_SPEC = os.getenv("CORPUS_REFCHECK") or "last"
local ref_sample
if REF_SPEC ~= "last" then ref_sample = sampler(REF_SPEC, "CORPUS_REFCHECK") end
local WANT = {}
for s in (os.getenv("CORPUS_STATES") or table.concat(STATE_KINDS, ",")):gmatch("[^,%s]+") do
  local known = false
  for _, k in ipairs(STATE_KINDS) do if k == s then known = true end end
  if not known then die("CORPUS_STATES: unknown state '" .. s .. "' (complete, absent, partial, interrupted)") end
  WANT[s] = true
end
local LIMIT = tonumber(os.getenv("CORPUS_LIMIT") or "")
local ONLY = os.getenv("CORPUS_ONLY")

---------------------------------------------------------------------------
-- small helpers: files, processes, time
---------------------------------------------------------------------------

local function say(...)
  if not QUIET then io.stdout:write(...) io.stdout:write("\n") io.stdout:flush() end
end

local function mkdirs(path)
  local cur = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    cur = cur .. "/" .. part
    if not pstat.stat(cur) then
      local ok, err = pstat.mkdir(cur, 493) -- 0755
      if not ok and not pstat.stat(cur) then die("cannot create " .. cur .. ": " .. tostring(err)) end
    end
  end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function run(argv, opts)
  opts = opts or {}
  local r, err = proc.run { argv = argv, env = opts.env, stdin = opts.stdin or "/dev/null",
    stdout = opts.stdout or "pipe", stderr = opts.stderr or "pipe" }
  if not r then return { code = 127, stdout = "", stderr = err or "could not start" } end
  r.stdout, r.stderr = r.stdout or "", r.stderr or ""
  return r
end

local function rm_rf(path) run { "rm", "-rf", path } end

local function first_line(s)
  return ((s or ""):match("^%s*([^\n]*)") or "")
end

local last_us = 0
--- the client clock as chrono::Utc::now() (microseconds), strictly increasing
local function client_now()
  local tv = ptime.gettimeofday()
  local us = tv.tv_sec * 1000000 + tv.tv_usec
  if us <= last_us then us = last_us + 1 end
  last_us = us
  return os.date("!%Y-%m-%d %H:%M:%S", us // 1000000) .. (".%06d+00"):format(us % 1000000)
end

local function qi(s) return '"' .. s:gsub('"', '""') .. '"' end

local function elapsed(t0) return (sys.now_ms() - t0) / 1000 end

-- where the time goes (printed at the end): name -> { seconds, calls }
local PROFILE = {}
local function timed(name, f)
  return function(...)
    local t0 = sys.now_ms()
    local r = table.pack(f(...))
    local p = PROFILE[name] or { seconds = 0, calls = 0 }
    p.seconds, p.calls = p.seconds + elapsed(t0), p.calls + 1
    PROFILE[name] = p
    return table.unpack(r, 1, r.n)
  end
end

---------------------------------------------------------------------------
-- the server
---------------------------------------------------------------------------

local admin = db.connect(ADMIN, { application_name = "migfixcorpus" })
if not admin then die("cannot connect to CORPUS_ADMIN_URL") end

local function url_of(name) return (ADMIN:gsub("%?.*$", ""):gsub("/[^/]*$", "/" .. name)) end

local function drop_db(name)
  assert(admin:exec("DROP DATABASE IF EXISTS " .. qi(name) .. " WITH (FORCE)"))
end

local function create_db(name, template)
  drop_db(name)
  local ok, err = admin:exec(("CREATE DATABASE %s%s"):format(qi(name),
    template and (" TEMPLATE " .. qi(template) .. " STRATEGY FILE_COPY") or ""))
  if not ok then error("CREATE DATABASE " .. name .. ": " .. tostring(err)) end
end

drop_db = timed("drop database", drop_db)
create_db = timed("create database", create_db)

local function connect(name, app)
  local c, err = db.connect(url_of(name), { application_name = app or "migfixcorpus" })
  if not c then error("connect " .. name .. ": " .. tostring(err)) end
  return c
end

local function errtext(err, info)
  local s = (info and info.sqlstate and (info.sqlstate .. " ") or "") .. tostring(err)
  return (s:gsub("%s+", " "))
end

local function pg_dump(name, path)
  local r = run { PG_BIN .. "/pg_dump", "--schema-only", "--restrict-key=" .. DUMP_KEY,
    "--exclude-schema=" .. JOURNAL_SCHEMA, "-f", path, "-d", url_of(name) }
  if r.code ~= 0 then return nil, first_line(r.stderr) end
  return read_file(path)
end

pg_dump = timed("pg_dump", pg_dump)

--- schema and rows (the ledger's rows and migfix's journal left out): two
--- states with the same text are the same database for a migration
local function pg_dump_rows(name)
  local path = os.tmpname()
  local r = run { PG_BIN .. "/pg_dump", "--restrict-key=" .. DUMP_KEY, "--exclude-schema=" .. JOURNAL_SCHEMA,
    "--exclude-table-data=_prisma_migrations", "-f", path, "-d", url_of(name) }
  local text = r.code == 0 and read_file(path) or nil
  os.remove(path)
  return text
end
pg_dump_rows = timed("pg_dump (rows)", pg_dump_rows)

local function invalid_indexes(conn)
  local rows = assert(conn:query([[SELECT n.nspname || '.' || c.relname AS name FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT i.indisvalid ORDER BY 1]]))
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = r.name end
  return out
end

---------------------------------------------------------------------------
-- the ledger, exactly as Prisma's native engine writes it
-- (/work/shared/reference/prisma-migrate.md §1, §4; tests/lua/prisma_ledger.lua)
---------------------------------------------------------------------------

local LEDGER_DDL = [[CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);]]

local function ledger_start(conn, m)
  local id = crypto.uuid4()
  assert(conn:query([[INSERT INTO "_prisma_migrations" ("id","checksum","started_at","migration_name") VALUES ($1,$2,$3,$4)]],
    id, m.checksum, client_now(), m.name))
  return id
end

local function ledger_finish(conn, id)
  assert(conn:query([[UPDATE "_prisma_migrations" SET "applied_steps_count" = ("applied_steps_count" + $1) WHERE "id" = $2]], 1, id))
  assert(conn:query([[UPDATE "_prisma_migrations" SET "finished_at" = $1 WHERE "id" = $2]], client_now(), id))
end

local function ledger_logs(conn, id, logs)
  assert(conn:query([[UPDATE "_prisma_migrations" SET "logs" = $1 WHERE "id" = $2]], logs, id))
end

--- the native engine's P3018 text (ApplyMigrationError Display; the shape of
--- ledger_write.p3018_logs)
local function p3018_logs(name, sqlstate, message)
  return ("A migration failed to apply. New migrations cannot be applied before the error is recovered from. "
    .. "Read more about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve\n\n"
    .. "Migration name: %s\n\nDatabase error code: %s\n\nDatabase error:\nERROR: %s\n"):format(name, sqlstate, message)
end

--- the driver-adapter / wasm engine's text (tools/prisma-oracle README,
--- "Failing second migration"): no trailing newline
local function adapter_logs(name, message)
  return ("external connector error\nError querying the database: ERROR: %s\n"
    .. "   0: sql_schema_connector::apply_migration::apply_script\n"
    .. "           with migration_name=\"%s\"\n"
    .. "             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:113\n"
    .. "   1: schema_commands::commands::apply_migrations::Applying migration\n"
    .. "           with migration_name=\"%s\"\n"
    .. "             at schema-engine/commands/src/commands/apply_migrations.rs:95\n"
    .. "   2: schema_engine_wasm::wasm::engine::ApplyMigrations\n"
    .. "             at schema-engine/schema-engine-wasm/src/wasm/engine.rs:167"):format(message, name, name)
end

---------------------------------------------------------------------------
-- histories
---------------------------------------------------------------------------

--- Prisma's order (listMigrations.ts: localeCompare, ICU) through node when
--- it is there; bytewise otherwise (equal for timestamped names)
local function prisma_sort(names)
  local tmp = OUT .. "/names.txt"
  write_file(tmp, table.concat(names, "\n"))
  local r = run({ "node", "-e", [[const l=require('fs').readFileSync(0,'utf8').split('\n').filter(s=>s.length);l.sort((a,b)=>a.localeCompare(b));process.stdout.write(l.join('\n'))]] }, { stdin = tmp })
  os.remove(tmp)
  if r.code == 0 then
    local out = {}
    for n in r.stdout:gmatch("[^\n]+") do out[#out + 1] = n end
    if #out == #names then return out, "localeCompare (node)" end
  end
  table.sort(names)
  return names, "bytewise (node unavailable)"
end

local function load_history(dir)
  dir = dir:gsub("/+$", "")
  local st = pstat.stat(dir)
  if not st or pstat.S_ISDIR(st.st_mode) == 0 then die("not a directory: " .. dir) end
  if pstat.stat(dir .. "/prisma/migrations") and not pstat.stat(dir .. "/migration_lock.toml") then
    dir = dir .. "/prisma/migrations"
  end
  local name = dir:match("([^/]+)$")
  if name == "migrations" then name = dir:match("([^/]+)/migrations$") or name end
  local names = {}
  for e in dirent.files(dir) do
    if e ~= "." and e ~= ".." then
      local s = pstat.lstat(dir .. "/" .. e)
      if s and pstat.S_ISDIR(s.st_mode) ~= 0 then names[#names + 1] = e end
    end
  end
  local order
  names, order = prisma_sort(names)
  local lock = read_file(dir .. "/migration_lock.toml")
  local provider = lock and lock:match("\n?%s*provider%s*=%s*\"([^\"]*)\"")
  local h = { name = name, dir = dir, order = order, provider = provider, migrations = {} }
  local chain = HARNESS_VERSION
  for i, n in ipairs(names) do
    local text = read_file(dir .. "/" .. n .. "/migration.sql")
    local m = { index = i, name = n, text = text, path = dir .. "/" .. n }
    if text then m.checksum = sha256(text) end
    chain = sha256(chain .. "\0" .. n .. "\0" .. (m.checksum or "-"))
    m.chain = chain
    h.migrations[#h.migrations + 1] = m
  end
  return h
end

--- what the parser says about a migration: statements (spans) and whether
--- it is one CREATE INDEX CONCURRENTLY (then the table it locks)
local function analyze(m)
  local spans, err = msql.split(m.text)
  if not spans then return { error = err } end
  local a = { spans = spans }
  if #spans == 1 then
    local tree = msql.parse(spans[1].text)
    local node = tree and tree.stmts and tree.stmts[1] and tree.stmts[1].stmt
    local ix = node and node.IndexStmt
    if ix and ix.concurrent and ix.relation then
      a.cic = { schema = ix.relation.schemaname, table = ix.relation.relname, name = ix.idxname,
        if_not_exists = ix.if_not_exists == true }
    end
  end
  return a
end

---------------------------------------------------------------------------
-- asking migfix
---------------------------------------------------------------------------

local function migfix_argv(st, args)
  local argv = { BIN, "--no-color", "--url", url_of(st.db), "--migrations", st.mdir, "-C", st.project }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return argv
end

local MIGFIX_ENV = { DATABASE_URL = false, MIGFIX_ENV = false, NO_COLOR = "1" }

local function decoded(text)
  local ok, v = pcall(json.decode, text)
  if ok and type(v) == "table" then return v end
  return nil
end

--- run migfix on a state; stdout and stderr also go to logdir/<name>.json|.stderr
local function migfix(st, args, name)
  local t0 = sys.now_ms()
  local r = run(migfix_argv(st, args), { env = MIGFIX_ENV })
  r.seconds = elapsed(t0)
  write_file(st.logdir .. "/" .. name .. ".json", r.stdout)
  write_file(st.logdir .. "/" .. name .. ".stderr", r.stderr)
  r.json = r.stdout ~= "" and decoded(r.stdout) or nil
  return r
end

--- `diagnose K --json` and `plan --json` side by side (both read-only)
local function migfix_pair(st)
  local t0 = sys.now_ms()
  local hs, out = {}, {}
  for i, job in ipairs({ { "diagnose", { "diagnose", st.m.name, "--json" } }, { "plan", { "plan", "--json" } } }) do
    local base = st.logdir .. "/" .. job[1]
    local h, err = proc.spawn { argv = migfix_argv(st, job[2]), env = MIGFIX_ENV, stdin = "/dev/null",
      stdout = base .. ".json", stderr = base .. ".stderr" }
    hs[i] = { h = h, err = err, base = base }
  end
  for i, x in ipairs(hs) do
    local r
    if x.h then
      local status = x.h:wait()
      r = { code = status.code }
    else
      r = { code = 127 }
    end
    r.stdout = read_file(x.base .. ".json") or ""
    r.stderr = read_file(x.base .. ".stderr") or (x.err or "")
    r.json = r.stdout ~= "" and decoded(r.stdout) or nil
    r.seconds = elapsed(t0)
    out[i] = r
  end
  return out[1], out[2]
end

local function crashed(r)
  if r.code == 4 then return "exit 4: " .. first_line(r.stderr) end
  if r.code ~= 0 and r.code ~= 1 then return ("exit %d: %s"):format(r.code, first_line(r.stderr)) end
  if (r.stderr .. r.stdout):find("stack traceback:", 1, true) then return "Lua traceback: " .. first_line(r.stderr) end
  return nil
end

local function isnull(v) return v == nil or v == json.null end

local function norm_reason(s)
  s = tostring(s)
  s = s:gsub('"[^"]*"', '"…"'):gsub("'[^']*'", "'…'"):gsub("%d+", "N")
  return s
end

--- the reason a verdict is unverifiable: the migration's own reason when the
--- JSON has one, else the distinct reasons of its unverifiable objects
local function unverifiable_reason(m)
  if not isnull(m.reason) and m.reason ~= "" then return norm_reason(m.reason) end
  local seen, list = {}, {}
  for _, o in ipairs(m.objects or {}) do
    if o.state == "unverifiable" then
      local r = ("%s: %s"):format(o.kind or "?", isnull(o.reason) and "no reason given" or norm_reason(o.reason))
      if not seen[r] then seen[r] = true; list[#list + 1] = r end
    end
  end
  table.sort(list)
  if #list == 0 then return "no reason given (" .. norm_reason(m.summary or "no summary") .. ")" end
  return table.concat(list, " + ")
end

local function not_as_expected(m)
  local out = {}
  for _, o in ipairs(m.objects or {}) do
    if o.state ~= "present" and o.state ~= "absent" then
      out[#out + 1] = ("%s %s%s %s"):format(o.kind or "?", isnull(o.table) and "" or (o.table .. "."),
        isnull(o.name) and "?" or o.name, o.state)
      if #out >= 6 then break end
    end
  end
  return out
end

local EXPECT = {
  complete = { exact = { complete = true }, ok = {} },
  absent = { exact = { absent = true }, ok = {} },
  partial = { exact = { partial = true }, ok = { unverifiable = true } },
  interrupted = { exact = { absent = true, partial = true }, ok = { unverifiable = true } },
}
local EXPECT_TEXT = { complete = "complete", absent = "absent", partial = "partial|unverifiable",
  interrupted = "absent|partial|unverifiable" }

migfix_pair = timed("migfix diagnose + plan", migfix_pair)

--- diagnose + plan one state; fills rec.verdict, rec.class, ...
local function judge(st, rec)
  local d, p = migfix_pair(st)
  rec.diagnose_exit, rec.diagnose_seconds = d.code, d.seconds
  local crash = crashed(d)
  local m
  if d.json then
    for _, x in ipairs(d.json.migrations or {}) do if x.name == st.m.name then m = x end end
  end
  if not crash and not m then crash = ("no diagnosis of %s in diagnose --json (exit %d): %s"):format(st.m.name, d.code, first_line(d.stderr)) end
  if m then
    rec.verdict = m.verdict
    rec.summary = m.summary
    rec.objects = not_as_expected(m)
    if m.verdict == "unverifiable" then rec.unverifiable_reason = unverifiable_reason(m) end
  end
  rec.plan_exit = p.code
  local pcrash = crashed(p)
  if pcrash and not crash then crash = "plan: " .. pcrash end
  rec.plan_writes = p.code == 0
  if p.json then
    for _, x in ipairs(p.json.migrations or {}) do
      if x.name == st.m.name then
        rec.plan_policy = not isnull(x.policy) and x.policy or nil
        local acts = {}
        for _, a in ipairs(x.actions or {}) do acts[#acts + 1] = a.action end
        rec.plan_actions = acts
      end
    end
  end
  local e = EXPECT[st.kind]
  if not crash and rec.verdict == "complete" and st.kind ~= "complete" then
    -- right only if this state is the complete one (schema and rows): the
    -- rest of the file changes nothing here; compared once K has run
    st.same_pending = pg_dump_rows(st.db)
  end
  if crash then
    rec.class, rec.crash = "crash", crash
  elseif e.exact[rec.verdict] then
    rec.class = "right"
  elseif rec.verdict == "unverifiable" then
    rec.class = "unverifiable"
  else
    rec.class = "wrong"
  end
end

---------------------------------------------------------------------------
-- building the states (plain libpq / psql, never migfix's diagnosis)
---------------------------------------------------------------------------

--- the partial state's cut c (statements 1..c run): the first half, moved
--- to the nearest point outside any BEGIN … COMMIT block (a statement-
--- splitting engine whose next statement fails inside a block rolls the
--- whole block back, so a cut inside one is not partial), such that 1..c
--- commits at least one statement and c+1..n holds at least one.
--- Returns c, or nil and why.
local function partial_cut(a)
  local n = #a.spans
  local tx = {}
  for i, sp in ipairs(a.spans) do
    local tree = msql.parse(sp.text)
    local node = tree and tree.stmts and tree.stmts[1] and tree.stmts[1].stmt
    local k = node and node.TransactionStmt and node.TransactionStmt.kind
    if k == "TRANS_STMT_BEGIN" or k == "TRANS_STMT_START" then tx[i] = "begin"
    elseif k == "TRANS_STMT_COMMIT" then tx[i] = "commit"
    elseif k == "TRANS_STMT_ROLLBACK" then tx[i] = "rollback" end
  end
  local function ok_cut(c)
    if c < 1 or c >= n then return false end
    local in_block, pending, committed = false, 0, 0
    for i = 1, c do
      if tx[i] == "begin" then in_block, pending = true, 0
      elseif tx[i] == "commit" then committed, in_block, pending = committed + pending, false, 0
      elseif tx[i] == "rollback" then in_block, pending = false, 0
      elseif in_block then pending = pending + 1
      else committed = committed + 1 end
    end
    if in_block or committed == 0 then return false end
    for i = c + 1, n do if not tx[i] then return true end end
    return false
  end
  local half = n // 2
  for d = 0, n do
    if ok_cut(half - d) then return half - d end
    if ok_cut(half + d) then return half + d end
  end
  return nil, "no partial cut: every cut point is inside a BEGIN … COMMIT block or commits nothing (the file is one transaction block)"
end

local function build_partial(st, a)
  local c = connect(st.db)
  local id = ledger_start(c, st.m)
  local half = a.cut
  for i = 1, half do
    local ok, err, info = c:exec(a.spans[i].text)
    if not ok then
      c:close()
      return nil, ("the prefix fails at statement %d of %d: %s"):format(i, #a.spans, errtext(err, info))
    end
  end
  -- the next statement fails: an explicit BEGIN the prefix opened rolls back
  ledger_logs(c, id, adapter_logs(st.m.name, "canceling statement due to lock timeout"))
  c:close()
  st.note = ("%d of %d statements ran%s"):format(half, #a.spans,
    half ~= #a.spans // 2 and " (cut moved out of a BEGIN … COMMIT block)" or "")
  return true
end
build_partial = timed("build partial", build_partial)

--- a one-statement CREATE INDEX CONCURRENTLY, sent as one query by the real
--- psql, cancelled while it waits for a transaction holding a lock on its
--- table: PostgreSQL leaves the index INVALID
local function build_interrupted(st, a)
  local cic = a.cic
  local c = connect(st.db)
  local id = ledger_start(c, st.m)
  local holder = connect(st.db)
  local rel = (cic.schema and (qi(cic.schema) .. ".") or "") .. qi(cic.table)
  assert(holder:exec("BEGIN"))
  local ok, err, info = holder:exec("LOCK TABLE " .. rel .. " IN ROW EXCLUSIVE MODE")
  if not ok then
    holder:close(); c:close()
    return nil, "cannot lock the index's table: " .. errtext(err, info)
  end
  local h = proc.spawn { argv = { PG_BIN .. "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url_of(st.db), "-c", st.m.text },
    env = { PGAPPNAME = "migfixcorpus_cic" }, stdin = "/dev/null", stdout = "pipe", stderr = "pipe" }
  if not h then holder:close(); c:close(); return nil, "cannot start psql" end
  local pid
  for _ = 1, 1000 do
    local rows = assert(c:query([[SELECT pid FROM pg_stat_activity WHERE application_name = 'migfixcorpus_cic'
      AND datname = current_database() AND wait_event_type = 'Lock']]))
    if rows[1] then pid = rows[1].pid break end
    if h:poll() then break end
    sys.sleep_ms(10)
  end
  if pid then assert(c:query("SELECT pg_cancel_backend($1)", pid)) end
  local status = h:wait()
  local perr = h:read_stderr()
  holder:exec("ROLLBACK")
  holder:close()
  if not pid then
    c:close()
    return nil, status.code == 0 and "CREATE INDEX CONCURRENTLY did not wait (IF NOT EXISTS of an existing index?)"
      or ("CREATE INDEX CONCURRENTLY failed before waiting: " .. first_line(perr))
  end
  local inv = invalid_indexes(c)
  if #inv == 0 then
    c:close()
    return nil, "the cancelled CREATE INDEX CONCURRENTLY left no INVALID index"
  end
  ledger_logs(c, id, p3018_logs(st.m.name, "57014", "canceling statement due to statement timeout"))
  c:close()
  st.note = "INVALID: " .. table.concat(inv, ", ")
  return true
end
build_interrupted = timed("build interrupted", build_interrupted)

---------------------------------------------------------------------------
-- the round trip: run the plan, then Prisma and pg_dump judge
---------------------------------------------------------------------------

local function roundtrip(st, rec, ref)
  local rt = { problems = {} }
  rec.roundtrip = rt
  local r = migfix(st, { "run", "--yes", "--json" }, "run")
  rt.run_exit = r.code
  local crash = crashed(r)
  if crash and r.code ~= 4 then rec.class, rec.crash = "crash", "run: " .. crash end
  if r.code ~= 0 then
    local why = first_line(r.stderr)
    for _, x in ipairs(r.json and r.json.migrations or {}) do
      for _, act in ipairs(x.actions or {}) do
        if act.outcome == "failed" and not isnull(act.message) then why = act.action .. ": " .. tostring(act.message) end
      end
    end
    rt.problems[#rt.problems + 1] = ("migfix run exit %d: %s"):format(r.code, why)
  end
  local resolved = r.code == 0
  local c = connect(st.db)
  local inv = invalid_indexes(c)
  c:close()
  if #inv > 0 then
    rt.problems[#rt.problems + 1] = "INVALID index left: " .. table.concat(inv, ", ")
    if resolved then
      rt.invalid_after_resolved = inv
      if rec.class ~= "crash" then rec.class, rec.wrong_why = "wrong", "resolved with an INVALID index" end
    end
  end
  local t0 = sys.now_ms()
  local p = run({ PRISMA, url_of(st.db), st.mdir, "migrate", "status" }, { env = { MIGFIX_PRISMA_SCRIPT_MODE = "whole" } })
  rt.prisma_seconds = elapsed(t0)
  write_file(st.logdir .. "/prisma-status.txt", p.stdout .. p.stderr)
  rt.prisma_status_exit = p.code
  if p.code ~= 0 then
    local says = (p.stdout .. "\n" .. p.stderr):match("(Following[^\n]*)") or first_line(p.stderr)
    rt.problems[#rt.problems + 1] = ("prisma migrate status exit %d: %s"):format(p.code, says)
  end
  local dump, derr = pg_dump(st.db, st.logdir .. "/schema.sql")
  if not dump then
    rt.problems[#rt.problems + 1] = "pg_dump failed: " .. tostring(derr)
  elseif dump ~= ref.dump then
    local d = run { "diff", "-u", ref.path, st.logdir .. "/schema.sql" }
    write_file(st.logdir .. "/schema.diff", d.stdout)
    local n = 0
    for line in d.stdout:gmatch("[^\n]+") do
      if line:match("^[-+][^-+]") then n = n + 1 end
    end
    rt.problems[#rt.problems + 1] = ("pg_dump --schema-only differs from the reference (%d lines, schema.diff)"):format(n)
  else
    os.remove(st.logdir .. "/schema.sql")
  end
  rt.clean = #rt.problems == 0
  return rt
end
roundtrip = timed("round trip (run, prisma status, pg_dump)", roundtrip)

---------------------------------------------------------------------------
-- results: cache (resume), table, JSON
---------------------------------------------------------------------------

mkdirs(OUT)

-- the identity of the migfix under test: its binary and the Lua it loads
-- (scripts/ and policies/ under its home), so that cached results are
-- reused only for the same code
local migfix_sha = crypto.sha256_file(BIN)
if not migfix_sha then die("MIGFIX_BIN is not a readable file: " .. BIN) end
local MIGFIX_HOME
do
  write_file(OUT .. "/home.lua", "io.write(migfix.home or '')\n")
  local r = run { BIN, "exec", OUT .. "/home.lua" }
  os.remove(OUT .. "/home.lua")
  if r.code == 0 and r.stdout ~= "" and pstat.stat(r.stdout .. "/scripts") then
    MIGFIX_HOME = r.stdout
    local h = run { "sh", "-c", "cd \"$1\" && find scripts policies -type f -name '*.lua' | LC_ALL=C sort | xargs cat | sha256sum", "sh", MIGFIX_HOME }
    migfix_sha = sha256(migfix_sha .. (h.stdout:match("^(%x+)") or "?"))
  end
end
local CACHE_DIR = OUT .. "/cache"
mkdirs(CACHE_DIR)

local function load_cache(hname)
  local cache = {}
  if FRESH then return cache end
  local f = io.open(CACHE_DIR .. "/" .. hname .. ".jsonl", "rb")
  if not f then return cache end
  for line in f:lines() do
    local ok, rec = pcall(json.decode, line)
    if ok and type(rec) == "table" and rec.key then cache[rec.key] = rec end
  end
  f:close()
  return cache
end

local function new_counts()
  return { states = 0, skipped = 0, right = 0, same = 0, unverifiable = 0, wrong = 0, crash = 0, rt_done = 0, rt_clean = 0 }
end

local function add(counts, rec)
  counts.states = counts.states + 1
  if rec.class == "skipped" then counts.skipped = counts.skipped + 1
  else counts[rec.class] = counts[rec.class] + 1 end
  if rec.indistinguishable then counts.same = (counts.same or 0) + 1 end
  if rec.roundtrip then
    counts.rt_done = counts.rt_done + 1
    if rec.roundtrip.clean then counts.rt_clean = counts.rt_clean + 1 end
  end
end

local function group(list, keyf)
  local by, keys = {}, {}
  for _, x in ipairs(list) do
    local k = keyf(x)
    if k then
      if not by[k] then by[k] = { key = k, n = 0, first = x }; keys[#keys + 1] = k end
      by[k].n = by[k].n + 1
    end
  end
  table.sort(keys, function(a, b) if by[a].n ~= by[b].n then return by[a].n > by[b].n end return a < b end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = by[k] end
  return out
end

local function print_table(title, per_kind, total)
  local cols = { "complete", "absent", "partial", "interrupted" }
  local lines = {}
  local function row(label, f)
    local cells = { ("%-14s"):format(label) }
    for _, k in ipairs(cols) do cells[#cells + 1] = ("%12s"):format(f(per_kind[k])) end
    cells[#cells + 1] = ("%10s"):format(f(total))
    lines[#lines + 1] = table.concat(cells)
  end
  print(title)
  local hdr = { ("%-14s"):format("") }
  for _, k in ipairs(cols) do hdr[#hdr + 1] = ("%12s"):format(k) end
  hdr[#hdr + 1] = ("%10s"):format("all")
  print(table.concat(hdr))
  row("states", function(c) return c.states end)
  row("skipped", function(c) return c.skipped end)
  row("built", function(c) return c.states - c.skipped end)
  row("right", function(c) return c.right end)
  row(" of which same", function(c) return c.same or 0 end)
  row("unverifiable", function(c) return c.unverifiable end)
  row("wrong", function(c) return c.wrong end)
  row("crashes", function(c) return c.crash end)
  row("round trips", function(c) return ("%d/%d"):format(c.rt_done, c.rt_clean) end)
  row("exact", function(c)
    local b = c.states - c.skipped
    return b > 0 and ("%.1f%%"):format(100 * c.right / b) or "-"
  end)
  for _, l in ipairs(lines) do print(l) end
end

local function print_details(records, with_history)
  local indent = "  "
  local function where(r) return with_history and (r.history .. "/" .. r.migration) or r.migration end
  local skipped, unv, wrong, crash, rtbad = {}, {}, {}, {}, {}
  for _, r in ipairs(records) do
    if r.class == "skipped" then skipped[#skipped + 1] = r
    elseif r.class == "unverifiable" then unv[#unv + 1] = r
    elseif r.class == "wrong" then wrong[#wrong + 1] = r
    elseif r.class == "crash" then crash[#crash + 1] = r end
    if r.roundtrip and not r.roundtrip.clean then rtbad[#rtbad + 1] = r end
  end
  local function section(title, list, keyf)
    if #list == 0 then return end
    print(indent .. title)
    for _, g in ipairs(group(list, keyf)) do
      print(("%s  %4d  %s   e.g. %s %s"):format(indent, g.n, g.key, g.first.state, where(g.first)))
    end
  end
  section("skipped, by reason:", skipped, function(r)
    return (r.reason:gsub("^(K fails on the prior state: %w+).*", "%1"):gsub("^(history does not replay).*", "%1"))
  end)
  section("unverifiable, by reason:", unv, function(r) return ("[%s] %s"):format(r.state, r.unverifiable_reason or "?") end)
  if #wrong > 0 then
    print(indent .. "wrong:")
    for _, r in ipairs(wrong) do
      print(("%s  %-11s %s: got %s, expected %s%s%s%s"):format(indent, r.state, where(r), tostring(r.verdict),
        EXPECT_TEXT[r.state], r.wrong_why and (" (" .. r.wrong_why .. ")") or "",
        r.note and (" [" .. r.note .. "]") or "",
        r.plan_writes and (", plan writes (" .. tostring(r.plan_policy) .. ")") or ""))
    end
  end
  if #crash > 0 then
    print(indent .. "crashes:")
    for _, r in ipairs(crash) do print(("%s  %-11s %s: %s"):format(indent, r.state, where(r), r.crash)) end
  end
  if #rtbad > 0 then
    print(indent .. "round trips not clean:")
    for _, r in ipairs(rtbad) do
      print(("%s  %-11s %s (verdict %s): %s"):format(indent, r.state, where(r), tostring(r.verdict),
        table.concat(r.roundtrip.problems, "; ")))
    end
  end
end

---------------------------------------------------------------------------
-- one history
---------------------------------------------------------------------------

local function refcheck(h, base, upto, mdir, logdir)
  -- the real Prisma CLI (whole-file mode, as the native engine) deploys 1..upto
  -- into a fresh database; its schema must equal the harness's replay
  local name = PREFIX .. "_prisma_ref"
  create_db(name)
  local t0 = sys.now_ms()
  local p = run({ PRISMA, url_of(name), mdir, "migrate", "deploy" }, { env = { MIGFIX_PRISMA_SCRIPT_MODE = "whole" } })
  local res = { migration = upto.name, index = upto.index, prisma_exit = p.code, seconds = elapsed(t0) }
  write_file(logdir .. "/prisma-deploy.txt", p.stdout .. p.stderr)
  if p.code ~= 0 then
    res.same = false
    res.problem = "prisma migrate deploy exit " .. p.code .. ": " .. first_line(p.stderr ~= "" and p.stderr or p.stdout)
  else
    local a = pg_dump(base, logdir .. "/replay.sql")
    local b = pg_dump(name, logdir .. "/prisma.sql")
    res.same = a ~= nil and a == b
    if not res.same then
      local d = run { "diff", "-u", logdir .. "/replay.sql", logdir .. "/prisma.sql" }
      write_file(logdir .. "/replay-vs-prisma.diff", d.stdout)
      res.problem = "the replay's pg_dump differs from Prisma's (replay-vs-prisma.diff)"
    else
      os.remove(logdir .. "/replay.sql"); os.remove(logdir .. "/prisma.sql")
    end
  end
  drop_db(name)
  return res
end
refcheck = timed("reference check (prisma deploy)", refcheck)

local function link_migration(m, mdir)
  local dst = mdir .. "/" .. m.name
  mkdirs(dst)
  if m.text then
    local r = run { "ln", "-f", m.path .. "/migration.sql", dst .. "/migration.sql" }
    if r.code ~= 0 then write_file(dst .. "/migration.sql", m.text) end
  end
end
link_migration = timed("link migration", link_migration)

local function history_run(h, hi)
  local t_start = sys.now_ms()
  local cache = load_cache(h.name)
  local cache_f = assert(io.open(CACHE_DIR .. "/" .. h.name .. ".jsonl", FRESH and "wb" or "ab"))
  local work = OUT .. "/work/" .. h.name
  rm_rf(work)
  local mdir = work .. "/migrations"
  mkdirs(mdir)
  local lock = read_file(h.dir .. "/migration_lock.toml")
  if lock then write_file(mdir .. "/migration_lock.toml", lock) end
  local logroot = OUT .. "/logs/" .. h.name
  mkdirs(logroot)

  local base = ("%s_%d_base"):format(PREFIX, hi)
  create_db(base)
  do
    local c = connect(base)
    assert(c:exec(LEDGER_DDL))
    c:close()
  end

  local records, per_kind, total = {}, {}, new_counts()
  for _, k in ipairs(STATE_KINDS) do per_kind[k] = new_counts() end
  local broken -- reason the history stopped replaying
  local replayed, last_replayed = 0, nil
  local n = #h.migrations
  if LIMIT and LIMIT < n then n = LIMIT end
  local ref_done = {}
  local wrong_rt_left = WRONG_RT

  local function record(rec)
    records[#records + 1] = rec
    add(per_kind[rec.state], rec)
    add(total, rec)
    if rec.class == "wrong" or rec.class == "crash" then
      say(("  %s: %s %s: %s%s"):format(rec.class:upper(), rec.state, rec.migration,
        rec.crash or ("got " .. tostring(rec.verdict) .. ", expected " .. EXPECT_TEXT[rec.state]),
        rec.wrong_why and (" (" .. rec.wrong_why .. ")") or ""))
    end
  end

  say(("== %s: %d migrations (%s), order %s%s"):format(h.name, #h.migrations, h.dir, h.order,
    n < #h.migrations and (", first " .. n) or ""))
  if h.provider and h.provider ~= "postgresql" then
    broken = "migration_lock.toml provider is " .. h.provider .. ", not postgresql"
  end

  -- the base: a fingerprint of what diagnose/plan must never change
  local function fingerprint()
    local c = connect(base)
    local rows = assert(c:query([[SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM "_prisma_migrations" t) AS ledger,
      (SELECT count(*) FROM pg_namespace WHERE nspname = $1) AS journal,
      (SELECT count(*) FROM pg_class) AS rels]], JOURNAL_SCHEMA))
    c:close()
    return ("%s/%s/%s"):format(rows[1].ledger, rows[1].journal, rows[1].rels)
  end
  fingerprint = timed("fingerprint", fingerprint)

  for i = 1, n do
    local m = h.migrations[i]
    link_migration(m, mdir)
    local selected = not ONLY or m.name:find(ONLY, 1, true)
    local a = m.text and analyze(m) or nil
    -- which state kinds apply to K
    local kinds = {}
    for _, k in ipairs(STATE_KINDS) do
      if WANT[k] and selected then
        if k == "partial" then
          if a and a.spans and #a.spans >= 2 then
            kinds[#kinds + 1] = k
            a.cut, a.cut_why = partial_cut(a)
          end
        elseif k == "interrupted" then
          if a and a.cic then kinds[#kinds + 1] = k end
        else
          kinds[#kinds + 1] = k
        end
      end
    end
    local rt_wanted = rt_sample(i)
    local recs, todo, is_todo = {}, {}, {}
    for _, k in ipairs(kinds) do
      local key = sha256(table.concat({ HARNESS_VERSION, STATE_VERSION[k] or "", migfix_sha, m.chain, k }, "\0"))
      local rec = cache[key]
      if rec and rt_wanted and RT_SPEC ~= "none" and rec.plan_writes and rec.class ~= "crash" and not rec.roundtrip then
        rec = nil -- sampled now, not when cached: build it again for the round trip
      end
      if rec then
        recs[k] = rec
        if rec.roundtrip and rec.class == "wrong" and not rt_wanted and k ~= "interrupted" then
          wrong_rt_left = wrong_rt_left - 1
        end
      else
        rec = { key = key, history = h.name, index = i, migration = m.name, state = k }
        recs[k] = rec
        todo[#todo + 1] = k
        is_todo[k] = true
      end
    end

    local skip_all
    if broken then skip_all = "history does not replay: " .. broken
    elseif not m.text then skip_all = "no migration.sql (Prisma: P3015)"
    elseif a.error then skip_all = "migration.sql does not parse: " .. tostring(a.error) end
    if skip_all then
      for _, k in ipairs(todo) do recs[k].class, recs[k].reason = "skipped", skip_all end
      if not broken then broken = m.name .. ": " .. skip_all end
      todo, is_todo = {}, {}
    end

    local states = {} -- kind -> state (st.db: the database judged; st.rt_db: the clone a round trip runs on)
    local function new_state(k, dbname)
      local st = {
        kind = k, m = m, db = dbname, mdir = mdir, project = work .. "/project_" .. k,
        logdir = ("%s/%04d-%s"):format(logroot, i, k),
      }
      rm_rf(st.logdir); mkdirs(st.logdir)
      rm_rf(st.project); mkdirs(st.project)
      write_file(st.logdir .. "/migration", m.name .. "\n")
      states[k] = st
      return st
    end
    local function skip(k, why)
      recs[k].class, recs[k].reason = "skipped", why
      local st = states[k]
      if st and st.db ~= base then drop_db(st.db) end
      if st and st.rt_db then drop_db(st.rt_db) end
      states[k] = nil
    end
    local function clone_for_roundtrip(st)
      st.rt_db = ("%s_%d_%s_rt"):format(PREFIX, hi, st.kind)
      create_db(st.rt_db, base)
    end
    local function wants_rt(k, rec)
      if RT_SPEC == "none" or not rec.plan_writes or rec.class == "crash" then return false end
      if rt_wanted or k == "interrupted" then return true end
      if rec.class == "wrong" and wrong_rt_left > 0 then
        -- show a wrong verdict's consequence, for the first few of the history
        wrong_rt_left = wrong_rt_left - 1
        return true
      end
      return false
    end
    local t_build = sys.now_ms()

    if not skip_all then
      -- partial and interrupted: clones of the base (1..K-1)
      for _, k in ipairs({ "partial", "interrupted" }) do
        if is_todo[k] then
          local st = new_state(k, ("%s_%d_%s"):format(PREFIX, hi, k))
          local ok, why
          if k == "partial" and not a.cut then
            ok, why = nil, a.cut_why
          else
            create_db(st.db, base)
            ok, why = (k == "partial" and build_partial or build_interrupted)(st, a)
          end
          if not ok then
            skip(k, why)
          else
            recs[k].note = st.note
            judge(st, recs[k])
            if k == "partial" and recs[k].class == "wrong" then
              -- say whether the prefix changed the schema at all (data or no-op statements only)
              local d1 = pg_dump(base, st.logdir .. "/base.sql")
              local d2 = pg_dump(st.db, st.logdir .. "/state.sql")
              if d1 and d1 == d2 then recs[k].note = (st.note or "") .. "; the prefix left the schema unchanged" end
              os.remove(st.logdir .. "/base.sql"); os.remove(st.logdir .. "/state.sql")
            end
          end
        end
      end
      -- absent, in the base itself: its row is added, judged (read-only), removed
      if is_todo.absent then
        local st = new_state("absent", base)
        local fp = fingerprint()
        local c = connect(base)
        local id = ledger_start(c, m)
        ledger_logs(c, id, p3018_logs(m.name, "55P03", "canceling statement due to lock timeout"))
        c:close()
        local fp_state = fingerprint()
        judge(st, recs.absent)
        if fingerprint() ~= fp_state then die("migfix diagnose/plan changed the database (absent state of " .. m.name .. ")") end
        if wants_rt("absent", recs.absent) then clone_for_roundtrip(st) end
        c = connect(base)
        assert(c:query([[DELETE FROM "_prisma_migrations" WHERE "id" = $1]], id))
        c:close()
        if fingerprint() ~= fp then die("the base did not return to its state after the absent state of " .. m.name) end
      end
      -- K runs in the base as one query (the complete state), then its row
      -- is finished as deploy finishes it: the base is 1..K
      local c = connect(base)
      local id = ledger_start(c, m)
      local t_k = sys.now_ms()
      local ok, err, info = c:exec(m.text)
      local pk = PROFILE["run K in the base"] or { seconds = 0, calls = 0 }
      pk.seconds, pk.calls = pk.seconds + elapsed(t_k), pk.calls + 1
      PROFILE["run K in the base"] = pk
      c:close()
      if not ok then
        c = connect(base)
        assert(c:query([[DELETE FROM "_prisma_migrations" WHERE "id" = $1]], id))
        c:close()
        local why = "K fails on the prior state: " .. errtext(err, info)
        for _, k in ipairs(todo) do skip(k, why) end
        broken = m.name .. " fails: " .. errtext(err, info)
        say(("  history stops replaying at %s: %s"):format(m.name, errtext(err, info)))
        todo = {}
      else
        -- absent and partial states read complete: the same database as the complete state?
        local complete_dump
        for _, k in ipairs({ "absent", "partial", "interrupted" }) do
          local st = states[k]
          if st and st.same_pending and recs[k].class == "wrong" then
            complete_dump = complete_dump or pg_dump_rows(base)
            if complete_dump and st.same_pending == complete_dump then
              recs[k].class, recs[k].indistinguishable = "right", true
              recs[k].note = (recs[k].note and (recs[k].note .. "; ") or "") ..
                "indistinguishable: the state equals the complete state, schema and rows (the rest of the file changes nothing here)"
            end
          end
          if st then st.same_pending = nil end
        end
        if is_todo.complete then
          local st = new_state("complete", base)
          local fp_state = fingerprint()
          judge(st, recs.complete)
          if fingerprint() ~= fp_state then die("migfix diagnose/plan changed the database (complete state of " .. m.name .. ")") end
          if wants_rt("complete", recs.complete) then clone_for_roundtrip(st) end
        end
        c = connect(base)
        ledger_finish(c, id)
        c:close()
        replayed, last_replayed = i, m
      end
    end
    local per_state = elapsed(t_build) / math.max(#todo, 1)

    -- round trips (the reference: the base, now 1..K)
    local ref
    for _, k in ipairs(todo) do
      local st, rec = states[k], recs[k]
      if st then
        local own = st.db ~= base and st.db or nil -- a clone of its own (partial, interrupted)
        local rt_db = st.rt_db or (own and wants_rt(k, rec) and own) or nil
        if rt_db then
          if not ref then
            ref = { path = logroot .. ("/%04d-reference.sql"):format(i) }
            ref.dump = pg_dump(base, ref.path)
          end
          st.db = rt_db
          roundtrip(st, rec, ref)
        end
        rec.seconds = per_state
        rec.logdir = st.logdir
        if own then drop_db(own) end
        if st.rt_db and st.rt_db ~= own then drop_db(st.rt_db) end
        rm_rf(st.project)
      end
    end
    for _, k in ipairs(kinds) do
      if is_todo[k] then
        cache_f:write(json.encode(recs[k]), "\n")
      end
    end
    cache_f:flush()
    if ref and ref.path then
      local all_clean = true
      for _, k in ipairs(todo) do
        local rt = recs[k].roundtrip
        if rt and not rt.clean then all_clean = false end
      end
      if all_clean then os.remove(ref.path) end
    end
    for _, k in ipairs(kinds) do record(recs[k]) end

    -- Prisma's own deploy of 1..K must give the replay's schema
    if not broken and ((ref_sample and ref_sample(i)) or (REF_SPEC == "last" and i == n)) then
      local res = refcheck(h, base, m, mdir, logroot)
      ref_done[#ref_done + 1] = res
      say(("  reference check at %s: prisma deploy %s, schema %s (%.1fs)"):format(m.name,
        res.prisma_exit == 0 and "ok" or ("exit " .. res.prisma_exit), res.same and "same as the replay" or ("DIFFERS: " .. tostring(res.problem)), res.seconds))
    end
    if i % 50 == 0 then
      say(("  %d/%d migrations, %d states, %d right, %d unverifiable, %d wrong, %d crashes, %d skipped (%.0fs)"):format(
        i, n, total.states, total.right, total.unverifiable, total.wrong, total.crash, total.skipped, elapsed(t_start)))
    end
  end
  if REF_SPEC == "last" and broken and last_replayed and not ref_done[1] then
    -- the replay stopped: compare what did replay (1..last) with Prisma's deploy of it
    local part = work .. "/migrations_upto"
    rm_rf(part); mkdirs(part)
    if lock then write_file(part .. "/migration_lock.toml", lock) end
    for j = 1, last_replayed.index do link_migration(h.migrations[j], part) end
    local res = refcheck(h, base, last_replayed, part, logroot)
    ref_done[#ref_done + 1] = res
    say(("  reference check at %s: prisma deploy %s, schema %s (%.1fs)"):format(last_replayed.name,
      res.prisma_exit == 0 and "ok" or ("exit " .. res.prisma_exit), res.same and "same as the replay" or ("DIFFERS: " .. tostring(res.problem)), res.seconds))
  end
  cache_f:close()
  drop_db(base)
  rm_rf(work)
  return {
    name = h.name, dir = h.dir, order = h.order, migrations = #h.migrations, considered = n,
    replayed = replayed, broken = broken, seconds = elapsed(t_start),
    per_kind = per_kind, total = total, records = records, reference_checks = ref_done,
  }
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------

local t0 = sys.now_ms()
local started = os.date("!%Y-%m-%dT%H:%M:%SZ")
say(("corpus: migfix under test %s (home %s, code %s…), round trips %s, reference check %s, states %s"):format(
  BIN, MIGFIX_HOME or "?", migfix_sha:sub(1, 12), RT_SPEC, REF_SPEC, os.getenv("CORPUS_STATES") or "all"))
local histories = {}
for i, dir in ipairs(arg) do histories[#histories + 1] = history_run(load_history(dir), i) end

local per_kind, total = {}, new_counts()
for _, k in ipairs(STATE_KINDS) do per_kind[k] = new_counts() end
local all_records = {}
print()
for _, h in ipairs(histories) do
  print_table(("%s: %d migrations%s, replayed %d%s (%.0fs)"):format(h.name, h.migrations,
    h.considered < h.migrations and (" (first " .. h.considered .. ")") or "", h.replayed,
    h.broken and (", stopped: " .. h.broken) or "", h.seconds), h.per_kind, h.total)
  for _, rc in ipairs(h.reference_checks) do
    print(("  reference: prisma deploy of 1..%d %s"):format(rc.index, rc.same and "== replay" or ("!= replay: " .. tostring(rc.problem))))
  end
  print_details(h.records)
  print()
  for _, k in ipairs(STATE_KINDS) do
    for f, v in pairs(h.per_kind[k]) do per_kind[k][f] = per_kind[k][f] + v end
  end
  for f, v in pairs(h.total) do total[f] = total[f] + v end
  for _, r in ipairs(h.records) do all_records[#all_records + 1] = r end
end
local n_migr = 0
for _, h in ipairs(histories) do n_migr = n_migr + h.considered end
if #histories > 1 then
  print_table(("TOTAL: %d histories, %d migrations (%.0fs)"):format(#histories, n_migr, elapsed(t0)), per_kind, total)
  print_details(all_records, true)
  print()
end

local result = {
  harness = HARNESS_VERSION, migfix_bin = BIN, migfix_home = MIGFIX_HOME, migfix_code = migfix_sha, started = started,
  finished = os.date("!%Y-%m-%dT%H:%M:%SZ"), seconds = elapsed(t0), roundtrip = RT_SPEC, refcheck = REF_SPEC,
  histories = {}, total = total, per_state = per_kind, out = OUT,
}
for _, h in ipairs(histories) do
  result.histories[#result.histories + 1] = {
    name = h.name, dir = h.dir, order = h.order, migrations = h.migrations, considered = h.considered,
    replayed = h.replayed, stopped = h.broken, seconds = h.seconds, total = h.total, per_state = h.per_kind,
    reference_checks = json.array(h.reference_checks), states = json.array(h.records),
  }
end
result.profile = PROFILE
local pnames = {}
for k in pairs(PROFILE) do pnames[#pnames + 1] = k end
table.sort(pnames, function(x, y) return PROFILE[x].seconds > PROFILE[y].seconds end)
local pparts = {}
for _, k in ipairs(pnames) do pparts[#pparts + 1] = ("%s %.0fs/%d"):format(k, PROFILE[k].seconds, PROFILE[k].calls) end
print("time: " .. table.concat(pparts, ", "))
local rpath = os.getenv("CORPUS_RESULT") or (OUT .. "/result.json")
write_file(rpath, json.encode(result, { pretty = true }) .. "\n")
print(("result: %s; per-state logs: %s/logs/"):format(rpath, OUT))
print(("corpus: %d states, %d right, %d unverifiable, %d wrong, %d crashes, %d skipped; round trips %d/%d clean"):format(
  total.states, total.right, total.unverifiable, total.wrong, total.crash, total.skipped, total.rt_done, total.rt_clean))
return (total.wrong == 0 and total.crash == 0) and 0 or 1
