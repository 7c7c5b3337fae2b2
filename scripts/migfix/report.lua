--- The resolution write-up of a migfix run, built from the journal and the
--- database only, the same every time: the failure, the root cause as the
--- evidence shows it, the approach, each step with its SQL, outcome and
--- duration, the verification, the objects of the migration, the backup,
--- the `after` hooks, the timing and the prevention (docs/report.md).
--- The library builds a document and renders it; it never prints
--- (commands/report.lua parses the options and prints).
---
---   report.journal_details(item, started_at)            -> details for a diagnosis/plan entry (resolve.lua)
---   report.collect(db_entries|nil, file_entries|nil [, {environment=}]) -> entries in time order
---   report.runs(entries)                                 -> runs {id, entries, ...} in time order
---   report.select(runs, {run=, since=})                  -> runs | nil, msg, info
---   report.parse_time(text [, now_ms])                   -> epoch ms | nil, msg
---   report.ledger_now(conn, schema [, st [, why]])       -> now | nil, msg, info
---   report.document(runs, {entries=, now=, meta=})       -> doc (docs/report.md "The JSON document")
---   report.render(doc, "markdown"|"json"|"html")         -> text
local json = require "migfix.json"
local db = require "migfix.db"

local M = {}

M.VERSION = 1
M.FORMATS = { markdown = true, json = true, html = true }

local NULL = json.null
local function null(v) return v == nil or v == NULL end
local function arr(t) return json.array(t or {}) end
local function tab(v) return type(v) == "table" and v or nil end
local function str(v) if null(v) or type(v) == "table" then return nil end return tostring(v) end
local function num(v) return math.type(v) and v or nil end
local function details(e) return tab(e and e.details) or {} end

-- actions of a run that resolves, refuses or reverts something
local RESOLUTION = { diagnosis = true, mark_applied = true, mark_rolled_back = true, deploy = true, refusal = true,
                     undo = true, check = true }
local LEDGER = { mark_applied = true, mark_rolled_back = true, deploy = true, undo = true }

-- ------------------------------------------------------------ what resolve journals

--- What the diagnosis (and plan) entry keeps of the evidence and the
--- decision: the failed row, how the file executes, the objects by kind
--- (names only for those not as expected, at most 100), the lint findings
--- and the proposed split, the policy with its actions, and the policies
--- that declined with their reasons.
---@param item table resolve's item {m, diag, decision, reasons}
---@param started_at string? when the command started (ISO-8601 UTC)
---@return table details fields to add to the entry's details
function M.journal_details(item, started_at)
  local d = item.diag or {}
  local row = d.row
  local kinds, odd = {}, {}
  for _, it in ipairs(d.evidence and d.evidence.items or {}) do
    local kind = it.kind
    if kind == "constraint" and it.expected and it.expected.contype then kind = "constraint:" .. it.expected.contype end
    local k = kinds[kind] or {}
    kinds[kind] = k
    k[it.state] = (k[it.state] or 0) + 1
    k.total = (k.total or 0) + 1
    if it.state ~= "present" and it.state ~= "absent" and d.verdict ~= "absent" and #odd < 100 then
      odd[#odd + 1] = { kind = kind, schema = it.schema, name = it.name, table = it.table, action = it.action,
                        state = it.state, line = it.line, diffs = arr(it.diffs) }
    end
  end
  local lint = item.m and item.m.lint
  local actions, declined = {}, {}
  for _, a in ipairs(item.decision and item.decision.actions or {}) do
    actions[#actions + 1] = { action = a.action, text = a.text, reason = a.reason, hint = a.hint, scope = a.scope, added = a.added }
  end
  for _, r in ipairs((item.decision and item.decision.declined) or item.reasons or {}) do
    declined[#declined + 1] = { policy = r.policy, why = r.why }
  end
  local l = d.likely_failed_statement
  local pol = item.decision and item.decision.policy
  return {
    started_at = started_at,
    failed_row = row and { id = row.id, started_at = row.started_at, checksum = row.checksum } or nil,
    file = d.file and { path = d.file.path, checksum = d.file.checksum, failed_checksum = d.file.failed_checksum } or nil,
    execution = d.execution and { unit = d.execution.unit, all_or_nothing = d.execution.all_or_nothing } or nil,
    likely_failed_statement = l and { index = l.index, line = l.line, reason = l.reason,
                                      text = type(l.text) == "string" and l.text:sub(1, 400) or nil } or nil,
    inconsistent = d.inconsistent,
    objects = { by_kind = kinds, not_as_expected = arr(odd) },
    lint = lint and { available = lint.available, errors = lint.errors, findings = arr(lint.findings),
                      split = arr(lint.split) } or nil,
    decision = { policy = pol and pol.name or nil, description = pol and pol.description or nil, actions = arr(actions) },
    declined = arr(declined),
  }
end

-- ------------------------------------------------------------ time

--- Epoch milliseconds of an ISO-8601 time (migfix.sys.iso_ms).
M.iso_ms = require("migfix.sys").iso_ms

--- ISO-8601 UTC text of epoch milliseconds, millisecond precision.
---@param ms number
---@return string
function M.iso(ms)
  local whole = math.floor(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole // 1000) .. (".%03dZ"):format(whole % 1000)
end

local UNITS = { s = 1000, sec = 1000, second = 1000, seconds = 1000, m = 60000, min = 60000, minute = 60000,
                minutes = 60000, h = 3600000, hour = 3600000, hours = 3600000, d = 86400000, day = 86400000,
                days = 86400000, w = 604800000, week = 604800000, weeks = 604800000 }

--- A --since value: an ISO-8601 time (UTC unless it has an offset), or an
--- age such as "30min", "2h", "1d" (before now_ms).
---@param text string
---@param now_ms number? default: the clock
---@return number|nil ms
---@return string|nil err
function M.parse_time(text, now_ms)
  if type(text) ~= "string" then error("bad argument #1 to 'parse_time' (string expected, got " .. type(text) .. ")", 2) end
  local ms = M.iso_ms(text)
  if ms then return ms end
  local n, unit = text:match("^%s*(%d+%.?%d*)%s*(%a+)%s*$")
  if not n then n, unit = text:match("^%s*(%d+%.?%d*)%s*(%a+)%s+ago%s*$") end
  if n and UNITS[unit:lower()] then
    return (now_ms or os.time() * 1000) - tonumber(n) * UNITS[unit:lower()]
  end
  return nil, ("invalid time \"%s\""):format(text)
end

--- "250 ms", "4.2 s", "3 min 12 s", "2 h 5 min 0 s", "3 d 4 h 10 min"
---@param ms number|nil
---@return string|nil
function M.duration_text(ms)
  if type(ms) ~= "number" then return nil end
  if ms < 0 then return "-" .. M.duration_text(-ms) end
  if ms < 1000 then return ("%d ms"):format(math.floor(ms + 0.5)) end
  if ms < 60000 then return ("%.1f s"):format(ms / 1000) end
  local t = math.floor(ms / 1000 + 0.5)
  local d, h, m, s = t // 86400, t % 86400 // 3600, t % 3600 // 60, t % 60
  if d > 0 then return ("%d d %d h %d min"):format(d, h, m) end
  if h > 0 then return ("%d h %d min %d s"):format(h, m, s) end
  return ("%d min %d s"):format(m, s)
end

local function between(a, b)
  local x, y = M.iso_ms(a), M.iso_ms(b)
  if x and y then return math.floor(y - x + 0.5) end
  return nil
end

--- an ISO-8601 UTC time for display: milliseconds (seconds when that is
--- all the source has)
local function time_text(s)
  local ms = M.iso_ms(s)
  if not ms then return str(s) or "" end
  if not tostring(s):match(":%d%d[.,]%d") then return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(ms) // 1000) end
  return M.iso(ms)
end

-- ------------------------------------------------------------ entries and runs

--- The journal as one list in time order: the database entries, plus the
--- file's own entries (plan, simulate, attempts the database never got).
--- Without database entries (unreachable), the file's mirrors of database
--- entries stand in for them. The entries are copies with _source and _ref
--- added (the caller's stay as they are: journal.verify hashes them).
---@param db_entries table|nil entries of journal.read (nil: the database was not read)
---@param file_entries table|nil entries of journal.read_file
---@param opts? {environment?:string} keep only file entries of this environment
---@return table entries
function M.collect(db_entries, file_entries, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "environment" then error(("unrecognized option \"%s\" (expected report.collect(db_entries, file_entries, {environment=}))"):format(tostring(k)), 2) end
  end
  local out = {}
  local function copy(e)
    local c = {}
    for k, v in pairs(e) do c[k] = v end
    return c
  end
  for _, e in ipairs(db_entries or {}) do
    if not e._malformed then
      local c = copy(e)
      c._source, c._ref = "database", "seq " .. tostring(e.seq)
      out[#out + 1] = c
    end
  end
  for _, e in ipairs(file_entries or {}) do
    local env_ok = opts.environment == nil or type(e.environment) ~= "string" or e.environment == opts.environment
    if not e._malformed and env_ok then
      local mirror = tab(e.db)
      if not mirror then
        local c = copy(e)
        c._source, c._ref = "file", "file seq " .. tostring(e.seq)
        out[#out + 1] = c
      elseif db_entries == nil then
        local c = copy(e)
        c.seq, c._source, c._ref = mirror.seq, "file mirror", "seq " .. tostring(mirror.seq)
        out[#out + 1] = c
      end
    end
  end
  for i, e in ipairs(out) do e._i, e._ms = i, M.iso_ms(e.at) or 0 end
  table.sort(out, function(a, b)
    if a._ms ~= b._ms then return a._ms < b._ms end
    return a._i < b._i
  end)
  return out
end

local function run_of(e)
  local d = details(e)
  return type(d.run) == "string" and d.run or nil
end

--- Group entries into runs (one invocation of migfix each, by details.run).
--- Entries written before run ids existed are grouped by command, user,
--- host and environment, a diagnosis after other entries starting a new one.
---@param entries table from collect
---@return table runs in time order: {id, legacy, entries, command, environment, os_user, host, first_at, last_at}
function M.runs(entries)
  local by, list = {}, {}
  local legacy  -- the open group of entries without a run id: {key, run, last_action}
  local function new_run(id, is_legacy, e)
    local r = { id = id, legacy = is_legacy, entries = {}, command = str(e.command), environment = str(e.environment),
                os_user = str(e.os_user), host = str(e.host), first_at = e.at }
    list[#list + 1] = r
    return r
  end
  for _, e in ipairs(entries) do
    local id = run_of(e)
    local r
    if id then
      r = by[id]
      if not r then r = new_run(id, false, e); by[id] = r end
    else
      local key = table.concat({ tostring(e.command), tostring(e.os_user), tostring(e.host), tostring(e.environment) }, "\0")
      if legacy and legacy.key == key and not (e.action == "diagnosis" and legacy.last_action ~= "diagnosis") then
        r = legacy.run
      else
        r = new_run("legacy-" .. tostring(e._ref or e.seq):gsub("%s+", "-"), true, e)
        legacy = { key = key, run = r }
      end
      legacy.last_action = e.action
    end
    r.entries[#r.entries + 1] = e
    r.last_at = e.at
  end
  return list
end

local function is_resolution(run)
  for _, e in ipairs(run.entries) do if RESOLUTION[e.action] then return true end end
  return false
end
M.is_resolution = is_resolution

--- Pick the runs to report: opts.run (a run id, or a unique prefix of at
--- least 8 characters), opts.since (epoch ms: every resolution run that
--- started then or later), else the last resolution run.
---@param runs table from M.runs
---@param opts {run?:string, since?:number}
---@return table|nil runs
---@return string|nil err
---@return table|nil info {detail, hint}
function M.select(runs, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "run" and k ~= "since" then error(("unrecognized option \"%s\" (expected report.select(runs, {run=, since=}))"):format(tostring(k)), 2) end
  end
  if opts.run then
    local want = opts.run:lower()
    local hits = {}
    for _, r in ipairs(runs) do
      if r.id == want then return { r } end
      if #want >= 8 and r.id:sub(1, #want) == want then hits[#hits + 1] = r end
    end
    if #hits == 1 then return hits end
    if #hits > 1 then
      local ids = {}
      for _, r in ipairs(hits) do ids[#ids + 1] = r.id end
      return nil, ("run id prefix \"%s\" is ambiguous"):format(opts.run), { detail = "it matches " .. table.concat(ids, ", "), hint = "give more of the id" }
    end
    return nil, ("no run \"%s\" in the journal"):format(opts.run),
      { hint = "migfix journal --json shows each entry's run id in details.run; migfix report --last takes the last resolution run" }
  end
  local out = {}
  for _, r in ipairs(runs) do
    if is_resolution(r) and (not opts.since or (M.iso_ms(r.first_at) or 0) >= opts.since) then out[#out + 1] = r end
  end
  if #out == 0 then
    return nil, opts.since and ("no resolution run in the journal since %s"):format(M.iso(opts.since)) or "no resolution run in the journal",
      { detail = "a resolution run is a migfix run, resolve, deploy, split --write or undo that journaled a diagnosis, a ledger change or a refusal",
        hint = "resolve the failed migration first (migfix plan, then migfix run); migfix journal lists what the journal holds" }
  end
  if opts.since then return out end
  return { out[#out] }
end

-- ------------------------------------------------------------ the database now

--- The ledger as it is now, on the caller's (read-only) connection: every
--- row per migration, and, with `st` (ledger.classify of the local folders
--- and the ledger), what `prisma migrate status` and `deploy` would say.
---@param conn table
---@param schema string ledger schema
---@param st table|nil classification (context:state)
---@param why string|nil why there is no classification
---@return table|nil now {at, schema, ledger_exists, rows_by_name, state_of, prisma_status, deploy, status_unavailable}
---@return string|nil err
---@return table|nil info
function M.ledger_now(conn, schema, st, why)
  local journal = require "migfix.journal"
  local ledger = require "migfix.ledger"
  local now = { at = journal.now(), schema = schema, rows_by_name = {}, state_of = {} }
  local l, err, info = ledger.read(conn, schema)
  if not l then return nil, err, info end
  now.ledger_exists = l.exists and true or false
  if l.exists then
    local rows
    rows, err, info = journal.capture(conn, schema)
    if not rows then return nil, err, info end
    for _, r in ipairs(rows) do
      local n = r.migration_name
      now.rows_by_name[n] = now.rows_by_name[n] or {}
      table.insert(now.rows_by_name[n], r)
    end
  end
  if st then
    for _, e in ipairs(st.migrations or {}) do now.state_of[e.name] = e.state end
    now.prisma_status = { exit = st.prisma_status.exit, says = st.prisma_status.says }
    local failed, pending = {}, {}
    for _, f in ipairs(st.deploy.failed or {}) do failed[#failed + 1] = f.name end
    for _, n in ipairs(st.deploy.pending or {}) do pending[#pending + 1] = n end
    now.deploy = { refuses = st.deploy.refuses and true or false, code = st.deploy.code, failed = arr(failed), pending = arr(pending) }
  else
    now.status_unavailable = why or "the local migration folders were not read"
  end
  return now
end

-- ------------------------------------------------------------ building a run's section

local KIND_ORDER = { "table", "column", "enum", "enum_value", "type", "index", "constraint:p", "constraint:f",
                     "constraint:u", "constraint:c", "constraint:x", "constraint", "sequence", "view", "function",
                     "trigger", "schema", "extension", "comment", "data", "other" }
local KIND_LABEL = { schema = "schemas", extension = "extensions", enum = "enums", enum_value = "enum values",
                     type = "types", sequence = "sequences", table = "tables", column = "columns",
                     ["constraint:p"] = "primary keys", ["constraint:f"] = "foreign keys",
                     ["constraint:u"] = "unique constraints", ["constraint:c"] = "check constraints",
                     ["constraint:x"] = "exclusion constraints", constraint = "constraints", index = "indexes",
                     view = "views", ["function"] = "functions", trigger = "triggers", comment = "comments",
                     data = "data changes", other = "other statements" }
M.STATES = { "present", "missing", "different", "absent", "still_present", "unverifiable" }

local function kind_label(k) return KIND_LABEL[k] or (tostring(k):gsub("_", " ") .. "s") end

local ACTION_TEXT = {
  backup = "back up the database (pg_dump, verified)",
  mark_applied = "mark applied, as `prisma migrate resolve --applied`",
  mark_rolled_back = "mark rolled back, as `prisma migrate resolve --rolled-back`",
  redeploy = "redeploy: mark rolled back, then deploy the current migration.sql as `prisma migrate deploy`",
  deploy = "deploy migration.sql as `prisma migrate deploy`",
  check = "check the ledger: applied, no failed row",
  refuse = "refuse: no write",
  refusal = "refuse: no write",
  undo = "undo: restore the ledger rows to the repair's before-image",
  diagnosis = "diagnose",
}

--- a ledger time as the journal has it ("…:53.35965Z", the database's text
--- drops trailing zeros) with six fraction digits, as journal.capture writes it
local function us(v)
  local s = str(v)
  if not s then return nil end
  local head, frac = s:match("^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d)%.(%d+)Z$")
  if head and #frac < 6 then return head .. "." .. frac .. string.rep("0", 6 - #frac) .. "Z" end
  return s
end
M.us = us

local function same_time(a, b)
  if null(a) and null(b) then return true end
  return M.iso_ms(us(a)) ~= nil and us(a) == us(b)
end

local function qident(s) return '"' .. tostring(s):gsub('"', '""') .. '"' end
local function qlit(v)
  if null(v) then return "NULL" end
  if math.type(v) == "integer" then return tostring(v) end
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

local function rows_of(list, name)
  local out = {}
  for _, r in ipairs(tab(list) or {}) do
    if type(r) == "table" and (name == nil or r.migration_name == name) then out[#out + 1] = r end
  end
  return out
end

local function failed_row_of(rows)
  for _, r in ipairs(rows) do
    if null(r.finished_at) and null(r.rolled_back_at) then return r end
  end
  return nil
end

local function row_doc(r)
  return { id = str(r.id), checksum = str(r.checksum), started_at = us(r.started_at) or NULL,
           finished_at = us(r.finished_at) or NULL, rolled_back_at = us(r.rolled_back_at) or NULL,
           applied_steps_count = num(r.applied_steps_count) or NULL, logs = str(r.logs) or NULL,
           migration_name = str(r.migration_name) }
end

local function rows_doc(rows)
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = row_doc(r) end
  return arr(out)
end

local function row_state(r)
  if not null(r.rolled_back_at) then return "rolled back" end
  if not null(r.finished_at) then return "applied" end
  return "failed"
end

--- the SQL of a deploy, from the rows it left (the values are the journal's after-image)
local function deploy_sql(e, schema)
  local new
  local before_ids = {}
  for _, r in ipairs(tab(e.before) or {}) do before_ids[r.id] = true end
  for _, r in ipairs(tab(e.after) or {}) do if not before_ids[r.id] then new = r end end
  if not new then return {} end
  local q = qident(schema or "public") .. "." .. qident("_prisma_migrations")
  local d = details(e)
  local sc = tab(d.script) or {}
  local out = {
    ("INSERT INTO %s (id, checksum, started_at, migration_name) VALUES (%s, %s, %s, %s);"):format(
      q, qlit(new.id), qlit(new.checksum), qlit(us(new.started_at)), qlit(new.migration_name)),
    ("-- then %s%s sent as ONE query (one implicit transaction), as Prisma deploys it"):format(
      str(sc.path) or "migration.sql", num(sc.statements) and (": " .. sc.statements .. " statement(s)") or ""),
  }
  if e.outcome == "ok" then
    out[#out + 1] = ("UPDATE %s SET applied_steps_count = applied_steps_count + 1 WHERE id = %s;"):format(q, qlit(new.id))
    out[#out + 1] = ("UPDATE %s SET finished_at = %s WHERE id = %s;"):format(q, qlit(us(new.finished_at)), qlit(new.id))
  else
    out[#out + 1] = ("UPDATE %s SET logs = <the error, as Prisma writes it (P3018)> WHERE id = %s;"):format(q, qlit(new.id))
  end
  return out
end

--- the effect of an undo as SQL, from its images (undo runs one DELETE,
--- one UPDATE and one INSERT over jsonb of the before-image)
local function undo_sql(e, schema)
  local q = qident(schema or "public") .. "." .. qident("_prisma_migrations")
  local found, restored = {}, {}
  for _, r in ipairs(tab(e.before) or {}) do found[r.id] = r end
  for _, r in ipairs(tab(e.after) or {}) do restored[r.id] = r end
  local out = {}
  local ids = {}
  for id in pairs(found) do ids[#ids + 1] = id end
  for id in pairs(restored) do if not found[id] then ids[#ids + 1] = id end end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local a, b = found[id], restored[id]
    if a and not b then
      out[#out + 1] = ("DELETE FROM %s WHERE id = %s;"):format(q, qlit(id))
    elseif b and not a then
      out[#out + 1] = ("INSERT INTO %s (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s);"):format(
        q, qlit(b.id), qlit(b.checksum), qlit(us(b.finished_at)), qlit(b.migration_name), qlit(b.logs), qlit(us(b.rolled_back_at)),
        qlit(us(b.started_at)), qlit(b.applied_steps_count))
    else
      local sets = {}
      for _, c in ipairs({ "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count" }) do
        local differ = c:match("_at$") and not same_time(a[c], b[c]) or (not c:match("_at$") and not (null(a[c]) and null(b[c])) and a[c] ~= b[c])
        if differ then sets[#sets + 1] = c .. " = " .. qlit(c:match("_at$") and us(b[c]) or b[c]) end
      end
      if #sets > 0 then out[#out + 1] = ("UPDATE %s SET %s WHERE id = %s;"):format(q, table.concat(sets, ", "), qlit(id)) end
    end
  end
  return out
end

local function explanation(verdict, exec, err, counts, summary)
  local aon = exec and exec.all_or_nothing
  local e = err or {}
  local recorded = (not e.no_logs) and (str(e.sqlstate) or str(e.message))
  if verdict == "complete" then
    if not recorded then
      return "The schema is complete: the connection was lost after the commit (Prisma never recorded finished_at)."
    end
    return ("The schema is complete although Prisma recorded an error (%s): the migration's objects were completed after the failure."):format(
      table.concat({ str(e.sqlstate) or "", str(e.message) or "" }, " "):gsub("^%s+", ""))
  elseif verdict == "absent" then
    local cause = recorded and (" (" .. table.concat({ str(e.sqlstate) or "", str(e.message) or "" }, " "):gsub("^%s+", "") .. ")") or ""
    if aon then return "Nothing was applied: the transaction rolled back" .. cause .. "." end
    return "Nothing of the migration is in the database" .. cause .. "."
  elseif verdict == "partial" then
    local c = counts or {}
    return ("Part of the migration is in the database: %d present, %d missing%s."):format(num(c.present) or 0, num(c.missing) or 0,
      aon and "; the file runs as one transaction, so something else changed the schema (a hand fix, another deploy, or drift)" or "")
  elseif verdict == "drifted" then
    return ("The objects exist but differ from migration.sql (%d different): the schema drifted from the file."):format(num(counts and counts.different) or 0)
  elseif verdict == "unverifiable" then
    return "The evidence cannot tell what was applied: " .. (summary or "the catalog cannot show some effects") .. "."
  end
  return nil
end

local function counts_text(c)
  if not tab(c) then return nil end
  local parts = {}
  for _, s in ipairs(M.STATES) do
    if num(c[s]) and c[s] > 0 then parts[#parts + 1] = ("%d %s"):format(c[s], s:gsub("_", " ")) end
  end
  return #parts > 0 and table.concat(parts, ", ") or "no checked objects"
end

local function objects_doc(o)
  o = tab(o)
  if not o or not tab(o.by_kind) then return nil end
  local list, seen = {}, {}
  local function add(k)
    local v = o.by_kind[k]
    if tab(v) and not seen[k] then
      seen[k] = true
      local row = { kind = k, label = kind_label(k), count = num(v.total) or 0 }
      for _, s in ipairs(M.STATES) do row[s] = num(v[s]) or 0 end
      list[#list + 1] = row
    end
  end
  for _, k in ipairs(KIND_ORDER) do add(k) end
  local rest = {}
  for k in pairs(o.by_kind) do if not seen[k] then rest[#rest + 1] = k end end
  table.sort(rest)
  for _, k in ipairs(rest) do add(k) end
  local total, parts = 0, {}
  for _, r in ipairs(list) do
    total = total + r.count
    parts[#parts + 1] = ("%d %s"):format(r.count, r.count == 1 and (r.label:gsub("ies$", "y"):gsub("xes$", "x"):gsub("s$", "")) or r.label)
  end
  local odd = {}
  for _, x in ipairs(tab(o.not_as_expected) or {}) do
    local diffs = {}
    for _, df in ipairs(tab(x.diffs) or {}) do
      local function v(t) return type(t) == "table" and json.encode(t) or tostring(t) end
      diffs[#diffs + 1] = ("%s: %s, expected %s"):format(tostring(df.field), v(df.found), v(df.expected))
    end
    odd[#odd + 1] = { kind = x.kind, label = kind_label(x.kind), schema = str(x.schema) or NULL, table = str(x.table) or NULL,
                      name = str(x.name) or NULL, state = x.state, line = num(x.line) or NULL, differences = arr(diffs) }
  end
  return { total = total, summary = table.concat(parts, ", "), by_kind = arr(list), not_as_expected = arr(odd), deployed_by = NULL }
end

local function lint_doc(l, name)
  l = tab(l)
  if not l then return nil end
  local findings, errors, warnings = {}, 0, 0
  for _, f in ipairs(tab(l.findings) or {}) do
    if f.severity == "error" then errors = errors + 1 elseif f.severity == "warning" then warnings = warnings + 1 end
    findings[#findings + 1] = { rule = str(f.rule), title = str(f.title) or NULL, severity = str(f.severity), line = num(f.line) or NULL,
                                table = str(f.table) or NULL, lock = str(f.lock) or NULL, why = str(f.why) or NULL,
                                alternative = str(f.alternative) or NULL }
  end
  local parts = {}
  for _, p in ipairs(tab(l.split) or {}) do
    local why = tab(p.why) and table.concat(p.why, "; ") or str(p.why)
    parts[#parts + 1] = { name = str(p.name), kind = str(p.kind) or NULL, why = why or NULL,
                          transactional = p.transactional == true, statements = tab(p.statements) and #p.statements or NULL }
  end
  local applies = #parts > 1 or (errors > 0 and #parts > 0)
  return { available = l.available ~= false, errors = errors, warnings = warnings, findings = arr(findings),
           split = applies and { parts = arr(parts), command = ("migfix split %s --write"):format(name) } or NULL }
end

-- entries in a pg_restore --list table of contents ({TYPE = count} or a count)
local function toc_total(o)
  if num(o) then return o end
  if not tab(o) then return nil end
  local n = 0
  for _, c in pairs(o) do n = n + (tonumber(c) or 0) end
  return math.tointeger(n) or n
end

local function entry_ref(e)
  return { ref = e._ref, run = run_of(e) or NULL, seq = num(e.seq) or NULL, source = e._source, at = str(e.at), action = str(e.action),
           outcome = str(e.outcome), migration = str(e.migration) or NULL }
end

local function step_message(e, schema)
  local d = details(e)
  if e.action == "backup" then
    local b = tab(e.backup) or {}
    local bd = tab(d.backup) or {}
    return ("%s%s"):format(str(b.path) or "?", num(bd.size) and (" (" .. bd.size .. " bytes)") or "")
  elseif e.action == "mark_applied" or e.action == "mark_rolled_back" then
    if e.outcome ~= "ok" then return str(d.error) or str(d.journal_error) or "failed" end
    return ("%d row(s) before, %d after"):format(#rows_of(e.before), #rows_of(e.after))
  elseif e.action == "deploy" then
    if e.outcome == "ok" then return "applied" end
    local de = tab(d.deploy_error) or {}
    local msg = str(de.message) or str(d.error) or str(d.journal_error) or "failed"
    local code = str(de.sqlstate) or str(d.sqlstate)
    return code and (code .. " " .. msg) or msg
  elseif e.action == "check" then
    return str(d.message)
  elseif e.action == "refusal" then
    return str(d.reason)
  elseif e.action == "undo" then
    return ("deleted %s inserted row(s), restored %s, re-inserted %s"):format(tostring(d.deleted or 0), tostring(d.restored or 0), tostring(d.reinserted or 0))
  end
  return nil
end

local function step_sql(e, schema)
  local d = details(e)
  if e.action == "deploy" then return deploy_sql(e, schema) end
  if e.action == "undo" then return undo_sql(e, schema) end
  local out = {}
  for _, s in ipairs(tab(d.sql) or {}) do out[#out + 1] = tostring(s) end
  return out
end

local WORSE = { ok = 1, planned = 1, skipped = 2, refused = 3, failed = 4 }

--- One step of a run from its journal entries.
local function make_step(i, action, planned, es, schema)
  local s = { step = i, action = action, description = ACTION_TEXT[action] or action, reason = planned and str(planned.reason) or NULL,
              outcome = "not run", message = NULL, duration_ms = NULL, at = NULL, sql = {}, sql_note = NULL, journal = {} }
  if planned and action == "backup" and planned.added then s.reason = "required by the environment" end
  for _, e in ipairs(es) do
    if e.action == "deploy" then s.sql_note = "the deploy's values from the journal's after-image" end
    if e.action == "undo" then s.sql_note = "the effect of undo's DELETE, UPDATE and INSERT over the before-image" end
  end
  local worst, dur, msgs = 0, nil, {}
  for _, e in ipairs(es) do
    local o = str(e.outcome) or "ok"
    if (WORSE[o] or 0) > worst then worst = WORSE[o] or 0; s.outcome = o end
    local d = details(e)
    local ms = num(d.duration_ms) or num(tab(d.backup) and d.backup.duration_ms)
    if ms then dur = math.max(dur or 0, ms) end
    s.at = str(e.at)
    local m = step_message(e, schema)
    if m then msgs[#msgs + 1] = (#es > 1 and (e.action .. ": ") or "") .. m end
    for _, q in ipairs(step_sql(e, schema)) do s.sql[#s.sql + 1] = q end
    s.journal[#s.journal + 1] = e._ref
  end
  if #es > 0 and worst == 0 then s.outcome = "ok" end
  if #msgs > 0 then s.message = table.concat(msgs, "; ") end
  if s.message == s.reason then s.reason = NULL end
  s.duration_ms = dur or NULL
  s.sql, s.journal = arr(s.sql), arr(s.journal)
  return s
end

--- The section of one migration in a run.
local function migration_section(run, name, ctx)
  local mine, ev, plan_e, backup_e, check_e, refusal_e, undo_e = {}, nil, nil, nil, nil, nil, nil
  local ledger_es = {}
  for _, e in ipairs(run.entries) do
    if e.migration == name then
      mine[#mine + 1] = e
      if e.action == "diagnosis" then ev = ev or e
      elseif e.action == "plan" then plan_e = plan_e or e
      elseif e.action == "backup" then backup_e = backup_e or e
      elseif e.action == "check" then check_e = e
      elseif e.action == "refusal" then refusal_e = e
      end
      if e.action == "undo" then undo_e = e end
      if LEDGER[e.action] then ledger_es[#ledger_es + 1] = e end
    end
  end
  ev = ev or plan_e
  local own = details(ev)  -- this run's own evidence and decision (the approach)
  local d = own
  local first = mine[1] or {}
  local schema = str(first.ledger_schema)
  for _, e in ipairs(ledger_es) do schema = schema or str(e.ledger_schema) end
  local sec = { name = name }

  -- the failure ----------------------------------------------------------
  local frow = tab(d.failed_row)
  local error_ = tab(d.error) or tab(details(first).error)
  if not frow then
    for _, e in ipairs(ledger_es) do
      if e.action ~= "undo" then
        local r = failed_row_of(rows_of(e.before, name))
        if r then frow = { id = r.id, started_at = r.started_at, checksum = r.checksum }; break end
      end
    end
  end
  local undone, undone_run
  if undo_e or (refusal_e and run.command == "undo") then
    local target = num(details(undo_e or refusal_e).undoes)
    for _, e in ipairs(ctx.entries or {}) do
      if e._source ~= "file" and num(e.seq) == target then undone = e end
    end
    if undone then
      undone_run = run_of(undone)
      local r = failed_row_of(rows_of(undone.before, name))
      if r and not frow then frow = { id = r.id, started_at = r.started_at, checksum = r.checksum } end
      -- the diagnosis of the repair's own run
      for _, e in ipairs(ctx.entries or {}) do
        if undone_run and run_of(e) == undone_run and e.action == "diagnosis" and e.migration == name then ev = ev or e end
      end
      d = details(ev)
      error_ = error_ or tab(d.error)
      frow = frow or tab(d.failed_row)
    end
  end
  local deploy_failed
  for _, e in ipairs(ledger_es) do
    if e.action == "deploy" and e.outcome == "failed" and e.command == "deploy" then deploy_failed = e end
  end
  local detected
  if deploy_failed then
    local dd = details(deploy_failed)
    local r = failed_row_of(rows_of(deploy_failed.after, name))
    frow = r and { id = r.id, started_at = r.started_at, checksum = r.checksum } or frow
    local de = tab(dd.deploy_error) or {}
    error_ = { sqlstate = str(de.sqlstate) or str(dd.sqlstate), message = str(de.message) or str(dd.error),
               class = error_ and error_.class }
    detected = ("`migfix deploy` (%s) at %s by %s@%s: P3018, the migration failed to apply; the ledger row has finished_at NULL, so `prisma migrate deploy` refuses with P3009 from now on"):format(
      deploy_failed._ref, time_text(deploy_failed.at), tostring(deploy_failed.os_user), tostring(deploy_failed.host))
  elseif ev then
    detected = ("`migfix %s`, %s (%s) at %s by %s@%s: the ledger row has finished_at and rolled_back_at NULL, so `prisma migrate deploy` refuses with P3009"):format(
      tostring(ev.command), ev.action, ev._ref, time_text(ev.at), tostring(ev.os_user), tostring(ev.host))
    -- recorded failing by an earlier migfix deploy?
    for _, e in ipairs(ctx.entries or {}) do
      if e.action == "deploy" and e.outcome == "failed" and e.migration == name and (e._ms or 0) < (ev._ms or 0) and frow then
        for _, r in ipairs(rows_of(e.after, name)) do
          if r.id == frow.id then
            detected = ("`migfix deploy` (%s) at %s by %s@%s recorded the failure (P3018); then %s"):format(e._ref, time_text(e.at),
              tostring(e.os_user), tostring(e.host), detected)
          end
        end
      end
    end
  end
  if frow or error_ or deploy_failed then
    local e = error_ or {}
    sec.failure = {
      migration = name,
      failed_at = us(frow and frow.started_at) or NULL,
      row = frow and { id = str(frow.id), checksum = str(frow.checksum) or NULL } or NULL,
      error = { sqlstate = str(e.sqlstate) or NULL, message = str(e.message) or NULL, class = str(e.class) or NULL,
                detail = str(e.detail) or NULL, object = str(e.object) or NULL, no_logs = e.no_logs == true },
      detected_by = detected or NULL,
    }
  else
    sec.failure = NULL
  end

  -- root cause -------------------------------------------------------------
  if deploy_failed and not (tab(d.counts) or str(d.verdict)) then
    local r = failed_row_of(rows_of(deploy_failed.after, name))
    local parsed = r and str(r.logs) and require("migfix.errclass").parse(r.logs) or {}
    sec.root_cause = {
      verdict = NULL, summary = NULL, counts = NULL, counts_text = NULL, error_class = str(parsed.class) or NULL,
      file_changed = false, file_checksum = str(r and r.checksum) or NULL, failed_checksum = str(r and r.checksum) or NULL,
      file = str(details(deploy_failed).script and details(deploy_failed).script.path) or NULL, execution = NULL,
      likely_failed_statement = NULL, inconsistent = NULL, diagnosed = NULL,
      explanation = ("Not diagnosed yet: `migfix diagnose` checks object by object what the failed attempt left. The error is of class %s%s."):format(
        str(parsed.class) or "unknown", str(parsed.sqlstate) and (" (" .. parsed.sqlstate .. ")") or ""),
    }
  elseif tab(d.counts) or str(d.verdict) then
    local verdict = str(d.verdict)
    local f = tab(d.file) or {}
    local exec = tab(d.execution)
    local l = tab(d.likely_failed_statement)
    sec.root_cause = {
      verdict = verdict or NULL, summary = str(d.summary) or NULL, counts = tab(d.counts) or NULL,
      counts_text = counts_text(d.counts) or NULL,
      error_class = str(error_ and error_.class) or NULL,
      file_changed = d.file_changed == true, file_checksum = str(f.checksum) or NULL, failed_checksum = str(f.failed_checksum) or NULL,
      file = str(f.path) or NULL,
      execution = exec and { unit = str(exec.unit) or NULL, all_or_nothing = exec.all_or_nothing == true } or NULL,
      likely_failed_statement = l and { index = num(l.index) or NULL, line = num(l.line) or NULL, reason = str(l.reason) or NULL,
                                        text = str(l.text) or NULL } or NULL,
      inconsistent = str(d.inconsistent) or NULL,
      explanation = explanation(verdict, exec, error_, d.counts, str(d.summary)) or NULL,
      diagnosed = ev and entry_ref(ev) or NULL,
    }
  else
    sec.root_cause = NULL
  end

  -- approach ---------------------------------------------------------------
  local dec = tab(own.decision) or {}
  local notes, planned = {}, {}
  for _, a in ipairs(tab(dec.actions) or {}) do
    if a.action == "note" then notes[#notes + 1] = str(a.text) else planned[#planned + 1] = a end
  end
  local declined = {}
  for _, r in ipairs(tab(own.declined) or {}) do declined[#declined + 1] = { policy = str(r.policy), why = str(r.why) } end
  local policy = str(dec.policy) or str(first.policy)
  local description = str(dec.description)
  if run.command == "undo" then policy = "undo"
  elseif run.command == "deploy" then
    policy, description = "deploy", "migfix deploy applies the pending migrations in Prisma's order, as `prisma migrate deploy` does"
  elseif run.command == "resolve" then
    description = "`migfix resolve`: the operator's own decision, written as `prisma migrate resolve` writes it"
  elseif run.command == "split" then
    description = "`migfix split --write`: the migration is replaced by smaller folders and its failed row marked rolled back"
  end
  sec.approach = {
    policy = policy or NULL, description = description or NULL, why = arr(notes), declined = arr(declined),
    refusal = NULL, undoes = NULL,
  }
  if refusal_e then
    local rd = details(refusal_e)
    local diffs = {}
    for _, x in ipairs(tab(rd.differences) or {}) do diffs[#diffs + 1] = tostring(x) end
    sec.approach.refusal = { reason = str(rd.reason) or NULL, hint = str(rd.hint) or NULL, differences = arr(diffs), journal = refusal_e._ref }
  end
  if undone then
    sec.approach.undoes = { seq = num(undone.seq) or NULL, action = str(undone.action), migration = str(undone.migration) or NULL,
                            at = str(undone.at), by = ("%s@%s"):format(tostring(undone.os_user), tostring(undone.host)),
                            command = str(undone.command) or NULL, run = undone_run or NULL }
  end

  -- steps -------------------------------------------------------------------
  local steps = {}
  local stepped = false
  for _, e in ipairs(mine) do if num(details(e).step) then stepped = true end end
  if #planned > 0 and stepped then
    for i, a in ipairs(tab(dec.actions) or {}) do
      if a.action ~= "note" then
        local es = {}
        for _, e in ipairs(mine) do
          if details(e).step == i and e.action ~= "diagnosis" then es[#es + 1] = e end
        end
        steps[#steps + 1] = make_step(i, a.action, a, es, schema)
      end
    end
  else
    local i = 0
    for k, e in ipairs(mine) do
      -- an attempt is the start of the write that follows it; alone (last) it
      -- is an interrupted write and is a step of its own
      local folded = e.action == "attempt" and k < #mine
      if e.action ~= "diagnosis" and e.action ~= "plan" and not folded then
        i = i + 1
        steps[#steps + 1] = make_step(i, e.action, nil, { e }, schema)
      end
    end
    if #steps == 0 and #planned > 0 then  -- a plan: nothing ran
      for i2, a in ipairs(planned) do
        local s = make_step(i2, a.action, a, {}, schema)
        s.outcome = "planned"
        steps[#steps + 1] = s
      end
    end
  end
  sec.steps = arr(steps)

  -- verification --------------------------------------------------------------
  local last_ledger = ledger_es[#ledger_es]
  local after_rows = last_ledger and rows_of(last_ledger.after, name) or {}
  local v = { after_write = NULL, ledger_after = rows_doc(after_rows), now = NULL }
  if check_e then
    local cd = details(check_e)
    local ps = tab(cd.prisma_status)
    v.after_write = { outcome = str(check_e.outcome), message = str(cd.message) or NULL, state = str(cd.state) or NULL,
                      failed_rows = num(cd.failed_rows) or NULL,
                      prisma_status = ps and { exit = num(ps.exit) or NULL, says = str(ps.says) or NULL } or NULL,
                      at = str(check_e.at), journal = check_e._ref }
  end
  local now = ctx.now
  if now then
    local rows = now.rows_by_name[name] or {}
    local changed = false
    if last_ledger then
      local a = {}
      for _, r in ipairs(after_rows) do a[r.id] = r end
      if #rows ~= #after_rows then changed = true end
      for _, r in ipairs(rows) do
        local x = a[r.id]
        if not x or not same_time(x.finished_at, r.finished_at) or not same_time(x.rolled_back_at, r.rolled_back_at) then changed = true end
      end
    end
    local states = {}
    for _, r in ipairs(rows) do states[#states + 1] = row_state(r) end
    local since = NULL
    if last_ledger then since = changed end
    v.now = { at = now.at, state = now.state_of[name] or (#rows == 0 and "no ledger row" or NULL), rows = rows_doc(rows),
              changed_since_run = since }
  end
  sec.verification = v

  -- objects, backup, prevention ------------------------------------------------
  sec.objects = objects_doc(d.objects) or NULL
  if tab(sec.objects) then
    for _, e in ipairs(ledger_es) do
      if e.action == "deploy" and e.outcome == "ok" then sec.objects.deployed_by = e._ref end
    end
  end
  if backup_e then
    local b = tab(backup_e.backup) or {}
    local bd = tab(details(backup_e).backup) or {}
    sec.backup = { path = str(b.path) or NULL, size = num(bd.size) or NULL, sha256 = str(b.sha256) or NULL, scope = str(b.scope) or NULL,
                   verified = str(bd.verified) and ("yes: " .. bd.verified .. (toc_total(bd.objects) and (" read " .. toc_total(bd.objects) .. " archive entries") or "")) or
                             (backup_e.outcome == "ok" and "yes (at creation)" or "no"),
                   archive_entries = tab(bd.objects) or NULL,
                   created_at = str(bd.created_at) or NULL, duration_ms = num(bd.duration_ms) or NULL, journal = backup_e._ref }
  else
    sec.backup = NULL
  end
  sec.prevention = { lint = lint_doc(d.lint, name) or NULL }

  -- timing --------------------------------------------------------------------
  local resolved_at, undone_at
  for _, e in ipairs(ledger_es) do
    if e.outcome == "ok" and (e.action == "mark_applied" or e.action == "deploy"
        or (e.action == "mark_rolled_back" and details(e).part_of ~= "redeploy")) then
      resolved_at = str(e.at)
    end
    if e.outcome == "ok" and e.action == "undo" then undone_at = str(e.at) end
  end
  if check_e and check_e.outcome == "ok" then resolved_at = str(check_e.at) end
  local failed_at = us(frow and frow.started_at)
  sec.timing = { failed_at = failed_at or NULL, resolved_at = resolved_at or NULL, undone_at = undone_at or NULL,
                 failure_to_resolution_ms = (failed_at and resolved_at) and between(failed_at, resolved_at) or NULL }

  -- the outcome of this migration ------------------------------------------------
  local outcome
  local worst = 0
  for _, s in ipairs(steps) do
    if s.outcome == "failed" then worst = math.max(worst, 3) elseif s.outcome == "refused" then worst = math.max(worst, 2) end
  end
  if run.command == "plan" then outcome = "planned"
  elseif worst == 3 then outcome = "failed"
  elseif worst == 2 or refusal_e then outcome = "refused"
  elseif undo_e and undo_e.outcome == "ok" then outcome = "undone"
  elseif run.command == "deploy" then outcome = "deployed"
  elseif resolved_at then outcome = "resolved"
  else outcome = "not resolved" end
  sec.outcome = outcome
  return sec
end

--- whether the evidence shows that deploy no longer refuses: the check
--- after the write found no failed row, or the ledger now has none
local function deploy_unblocked(sec, now)
  local aw = tab(sec.verification) and tab(sec.verification.after_write)
  if aw and aw.outcome == "ok" and aw.failed_rows == 0 then return true end
  if now and tab(now.deploy) then return not now.deploy.refuses end
  return nil
end

local function headline(run, secs, now)
  local names = {}
  for _, s in ipairs(secs) do names[#names + 1] = s.name end
  local one = secs[1]
  local who = ("`migfix %s`"):format(tostring(run.command))
  if #secs == 0 then return ("%s journaled no migration"):format(who) end
  if run.command == "deploy" then
    local applied, failed = {}, nil
    for _, s in ipairs(secs) do
      if s.outcome == "failed" then failed = s else applied[#applied + 1] = s.name end
    end
    if failed then
      local e = tab(failed.failure) and tab(failed.failure.error) or {}
      return ("%s failed to apply (P3018)%s%s"):format(failed.name, str(e.sqlstate) and (": " .. e.sqlstate) or "",
        str(e.message) and (" " .. e.message) or "")
    end
    return ("%d migration(s) deployed by %s: %s"):format(#applied, who, table.concat(applied, ", "))
  end
  if #secs > 1 then
    local by = {}
    for _, s in ipairs(secs) do by[s.outcome] = (by[s.outcome] or 0) + 1 end
    local parts = {}
    for _, k in ipairs({ "resolved", "undone", "refused", "failed", "planned", "not resolved" }) do
      if by[k] then parts[#parts + 1] = ("%d %s"):format(by[k], k) end
    end
    return ("%d migrations, %s by %s"):format(#secs, table.concat(parts, ", "), who)
  end
  local pol = tab(one.approach) and str(one.approach.policy)
  if one.outcome == "resolved" then
    local last
    for _, s in ipairs(one.steps) do if s.outcome == "ok" and s.action ~= "check" and s.action ~= "backup" then last = s.action end end
    local unblocked = deploy_unblocked(one, now)
    local tail = unblocked == true and ": `prisma migrate deploy` no longer refuses (P3009)"
      or (unblocked == false and ": `prisma migrate deploy` still refuses (P3009), another failed row is left" or "")
    if last == "mark_rolled_back" then
      return ("%s marked rolled back by %s%s%s"):format(one.name, who, pol and (" with policy " .. pol) or "",
        unblocked == true and ": `prisma migrate deploy` will run it again" or tail)
    end
    return ("%s resolved by %s%s%s"):format(one.name, who, pol and (" with policy " .. pol) or "", tail)
  elseif one.outcome == "refused" then
    local r = tab(one.approach.refusal)
    return ("%s was not resolved: %s refused%s"):format(one.name, pol and ("policy " .. pol) or who,
      r and str(r.reason) and (": " .. r.reason) or "")
  elseif one.outcome == "failed" then
    for _, s in ipairs(one.steps) do
      if s.outcome == "failed" then
        return ("%s: step %d (%s) failed%s"):format(one.name, s.step, s.action, str(s.message) and (": " .. s.message) or "")
      end
    end
    return one.name .. ": a step failed"
  elseif one.outcome == "undone" then
    local u = tab(one.approach.undoes) or {}
    return ("the repair of %s (seq %s, %s) was undone by %s: its ledger rows are as before it"):format(one.name,
      tostring(u.seq or "?"), tostring(u.action or "?"), who)
  elseif one.outcome == "planned" then
    return ("plan for %s (dry run, nothing written)%s"):format(one.name, pol and (": policy " .. pol) or ": no policy applies")
  end
  return ("%s: %s"):format(one.name, one.outcome)
end

local function run_doc(run, ctx)
  local names, seen = {}, {}
  for _, e in ipairs(run.entries) do
    local n = str(e.migration)
    if n and not seen[n] then seen[n] = true; names[#names + 1] = n end
  end
  local secs = {}
  for _, n in ipairs(names) do secs[#secs + 1] = migration_section(run, n, ctx) end
  local hooks = {}
  for _, e in ipairs(run.entries) do
    if e.action == "after_hook" then
      local d = details(e)
      hooks[#hooks + 1] = { command = str(d.hook) or NULL, exit = num(d.exit) or NULL, outcome = str(e.outcome),
                            duration_ms = num(d.duration_ms) or NULL, at = str(e.at), journal = e._ref }
    end
  end
  local other = {}
  for _, e in ipairs(run.entries) do
    if not str(e.migration) and e.action ~= "after_hook" then
      local d = details(e)
      other[#other + 1] = { action = str(e.action), outcome = str(e.outcome), at = str(e.at), journal = e._ref,
                            summary = (e.action == "simulate" and ("safe to run: " .. (d.safe and "yes" or "no"))) or NULL }
    end
  end
  local started = run.first_at
  for _, e in ipairs(run.entries) do
    local dd = details(e)
    local s = str(dd.started_at)
    if not s and num(dd.duration_ms) and M.iso_ms(e.at) then s = M.iso(M.iso_ms(e.at) - dd.duration_ms) end
    if s and (M.iso_ms(s) or math.huge) < (M.iso_ms(started) or math.huge) then started = s end
  end
  local by = {}
  for _, s in ipairs(secs) do by[s.outcome] = (by[s.outcome] or 0) + 1 end
  local outcome
  if run.command == "plan" then outcome = "planned"
  elseif run.command == "simulate" then outcome = "simulated"
  elseif by.failed then outcome = "failed"
  elseif by.refused then outcome = "refused"
  elseif by.undone then outcome = "undone"
  elseif by.deployed then outcome = "deployed"
  elseif by.resolved then outcome = "resolved"
  else outcome = #secs > 0 and secs[#secs].outcome or "nothing" end
  local hooks_failed = false
  for _, h in ipairs(hooks) do if h.outcome ~= "ok" then hooks_failed = true end end
  local refs, sources = {}, {}
  for _, e in ipairs(run.entries) do refs[#refs + 1] = entry_ref(e); sources[e._source] = true end
  local now = ctx.now
  local hl = headline(run, secs, now)
  if hooks_failed then hl = hl .. "; an after hook failed" end
  local failed_at, resolved_at, undone_at
  for _, s in ipairs(secs) do
    local t = tab(s.timing) or {}
    if str(t.failed_at) and (not failed_at or M.iso_ms(t.failed_at) < M.iso_ms(failed_at)) then failed_at = t.failed_at end
    if str(t.resolved_at) and (not resolved_at or M.iso_ms(t.resolved_at) > M.iso_ms(resolved_at)) then resolved_at = t.resolved_at end
    if str(t.undone_at) then undone_at = t.undone_at end
  end
  return {
    run = run.id, legacy = run.legacy or false, command = run.command or NULL, environment = run.environment or NULL,
    os_user = run.os_user or NULL, host = run.host or NULL, outcome = outcome, headline = hl,
    ledger_schema = (function() for _, e in ipairs(run.entries) do if str(e.ledger_schema) then return e.ledger_schema end end
                                return now and now.schema or NULL end)(),
    migrations = arr(secs), hooks = arr(hooks), hooks_failed = hooks_failed, other_entries = arr(other),
    timing = { failed_at = failed_at or NULL, resolved_at = resolved_at or NULL, undone_at = undone_at or NULL,
               failure_to_resolution_ms = (failed_at and resolved_at) and between(failed_at, resolved_at) or NULL,
               migfix_started_at = str(started) or NULL, migfix_ended_at = str(run.last_at) or NULL,
               migfix_ms = between(started, run.last_at) or NULL },
    now = now and { at = now.at, ledger_exists = now.ledger_exists, prisma_status = now.prisma_status or NULL,
                    deploy = now.deploy or NULL, status_unavailable = now.status_unavailable or NULL } or NULL,
    journal = arr(refs),
  }
end

--- The report document for the selected runs (docs/report.md).
---@param runs table selected runs (M.select)
---@param opts {entries?:table, now?:table, meta?:table}
---@return table doc
function M.document(runs, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "entries" and k ~= "now" and k ~= "meta" then
      error(("unrecognized option \"%s\" (expected report.document(runs, {entries=, now=, meta=}))"):format(tostring(k)), 2)
    end
  end
  local ctx = { entries = opts.entries or {}, now = opts.now }
  local docs, by, table_rows = {}, {}, {}
  for _, r in ipairs(runs) do
    local d = run_doc(r, ctx)
    docs[#docs + 1] = d
    by[d.outcome] = (by[d.outcome] or 0) + 1
    local names = {}
    for _, s in ipairs(d.migrations) do names[#names + 1] = s.name end
    table_rows[#table_rows + 1] = { run = d.run, started_at = d.timing.migfix_started_at, command = d.command,
                                    environment = d.environment, migrations = arr(names), outcome = d.outcome }
  end
  local meta = opts.meta or {}
  local doc = {
    report = "migfix resolution report", version = M.VERSION,
    generated_at = meta.generated_at or require("migfix.journal").now(),
    migfix_version = meta.migfix_version or NULL,
    environment = meta.environment or NULL, database = meta.database or NULL,
    selection = meta.selection or NULL, journal = meta.journal or NULL,
    summary = { runs = #docs, by_outcome = by, runs_table = arr(table_rows) },
    runs = arr(docs),
  }
  return require("migfix.journal").redact(doc)
end

-- ------------------------------------------------------------ blocks (one model, two renderers)

-- inline: a string, or {code = s}, {b = s}, or a list of those
local function code(s) return { code = tostring(s) } end
local function bold(s) return { b = tostring(s) } end

local function cell_time(s) return str(s) and time_text(s) or "—" end
local function or_dash(v) return str(v) or "—" end

-- sfx makes headings unique when a document repeats sections (several runs or migrations)
local function heading(B, level, text, sfx)
  if sfx then text = { text, " (" .. sfx .. ")" } end
  B[#B + 1] = { t = "h", level = math.min(level, 6), text = text }
end
local function para(B, inl) B[#B + 1] = { t = "p", inl = inl } end
local function tbl(B, head, rows) if #rows > 0 then B[#B + 1] = { t = "table", head = head, rows = rows } end end
local function codeblock(B, lang, text) B[#B + 1] = { t = "code", lang = lang, text = text } end
local function list(B, items) if #items > 0 then B[#B + 1] = { t = "list", items = items } end end

local function kv(rows, k, v) if v ~= nil and v ~= "" and v ~= NULL then rows[#rows + 1] = { k, v } end end

local function migration_blocks(B, s, level, run, sfx)
  -- failure
  heading(B, level, "Failure", sfx)
  local f = tab(s.failure)
  if not f then
    para(B, (run.command == "deploy") and "No failure: the migration applied." or "No failed row of this migration in the journal.")
  else
    local rows = {}
    kv(rows, "Migration", code(s.name))
    kv(rows, "Failed at (UTC)", str(f.failed_at) and (time_text(f.failed_at) .. " (started_at of the failed row)") or "—")
    if tab(f.row) then kv(rows, "Ledger row", { code(f.row.id), " (checksum ", code((str(f.row.checksum) or "?"):sub(1, 12)), ")" }) end
    local e = tab(f.error) or {}
    kv(rows, "Error code", e.no_logs and "none (logs NULL)" or or_dash(e.sqlstate))
    kv(rows, "Error message", or_dash(e.message))
    kv(rows, "Error detail", str(e.detail))
    kv(rows, "Object", str(e.object) and code(e.object) or nil)
    kv(rows, "Detected by", or_dash(f.detected_by))
    tbl(B, { "Field", "Value" }, rows)
  end
  -- root cause
  local rc = tab(s.root_cause)
  heading(B, level, "Root cause", sfx)
  if not rc then
    para(B, s.outcome == "undone" and "Not diagnosed again: undo changes the ledger rows only and never the schema."
      or "Not diagnosed in this run (no diagnosis entry in the journal).")
  else
    if str(rc.explanation) then para(B, bold(rc.explanation)) end
    local rows = {}
    kv(rows, "Verdict", code(or_dash(rc.verdict)))
    kv(rows, "Evidence", str(rc.summary))
    kv(rows, "Counts", str(rc.counts_text))
    kv(rows, "Error class", or_dash(rc.error_class))
    kv(rows, "migration.sql changed since the failure", rc.file_changed and
      { "yes (now ", code((str(rc.file_checksum) or "?"):sub(1, 12)), ", failed attempt ", code((str(rc.failed_checksum) or "?"):sub(1, 12)), ")" }
      or (str(rc.file_checksum) and { "no (checksum ", code(rc.file_checksum:sub(1, 12)), ")" } or "no"))
    local ex = tab(rc.execution)
    if ex then
      kv(rows, "Execution", ex.all_or_nothing and ("one implicit transaction (unit " .. tostring(ex.unit) .. "): all or nothing")
        or ("unit " .. tostring(ex.unit) .. ": not all or nothing (statements commit on their own)"))
    end
    local l = tab(rc.likely_failed_statement)
    if l and (num(l.line) or str(l.text)) then
      kv(rows, "Likely failed statement", { num(l.line) and ("line " .. l.line .. ": ") or "", str(l.text) and code((l.text:gsub("%s+", " "))) or "",
                                            str(l.reason) and (" — " .. l.reason) or "" })
    end
    kv(rows, "Inconsistency", str(rc.inconsistent))
    if tab(rc.diagnosed) then
      local other = str(rc.diagnosed.run) and rc.diagnosed.run ~= run.run
      kv(rows, "Diagnosed", ("%s, %s (UTC)%s"):format(rc.diagnosed.ref, time_text(rc.diagnosed.at),
        other and (", in run " .. rc.diagnosed.run:sub(1, 8) .. " (before the repair)") or ""))
    end
    tbl(B, { "Field", "Value" }, rows)
  end
  -- approach
  local a = tab(s.approach) or {}
  heading(B, level, "Approach", sfx)
  local u = tab(a.undoes)
  if u then
    para(B, { "Undo of ", bold("seq " .. tostring(u.seq)), (" (%s of "):format(tostring(u.action)), code(tostring(u.migration)),
              (" at %s by %s, `migfix %s`): the ledger rows of the migration go back to the repair's before-image; the schema is not touched."):format(
                time_text(u.at), tostring(u.by), tostring(u.command)) })
  elseif str(a.policy) then
    para(B, { "Policy ", bold(a.policy), str(a.description) and (": " .. a.description) or "" })
  else
    para(B, "No policy of the chain applies.")
  end
  if #(tab(a.why) or {}) > 0 then
    para(B, "Why it applied:")
    local items = {}
    for _, w in ipairs(a.why) do items[#items + 1] = w end
    list(B, items)
  end
  local drows = {}
  for _, r in ipairs(tab(a.declined) or {}) do drows[#drows + 1] = { code(or_dash(r.policy)), or_dash(r.why) } end
  if #drows > 0 then
    para(B, "Policies that declined, in chain order:")
    tbl(B, { "Policy", "Why it declined" }, drows)
  end
  local ref = tab(a.refusal)
  if ref then
    para(B, { bold("What the team must fix:"), " ", or_dash(ref.reason) })
    if str(ref.hint) then para(B, { "Hint: ", (ref.hint:gsub("%s*\n%s*", " ")) }) end
    local items = {}
    for _, x in ipairs(tab(ref.differences) or {}) do items[#items + 1] = x end
    list(B, items)
    local o = tab(s.objects)
    local orows = {}
    for _, x in ipairs(o and tab(o.not_as_expected) or {}) do
      local nm = str(x.name) or "?"
      if str(x.table) and x.kind ~= "table" then nm = x.table .. "." .. nm end
      orows[#orows + 1] = { x.label, code(nm), (x.state:gsub("_", " ")), #x.differences > 0 and table.concat(x.differences, "; ") or "—",
                            num(x.line) and tostring(x.line) or "—" }
    end
    if #orows > 0 then
      para(B, "Objects not as migration.sql leaves them:")
      tbl(B, { "Kind", "Object", "State", "Difference", "Line" }, orows)
    end
  end
  -- steps
  heading(B, level, "Steps", sfx)
  local srows = {}
  for _, st in ipairs(s.steps) do
    local desc = { st.description }
    if str(st.reason) then desc[#desc + 1] = " — " .. st.reason end
    srows[#srows + 1] = { tostring(st.step), desc, str(st.message) and { st.outcome, ": ", st.message } or st.outcome,
                          M.duration_text(num(st.duration_ms)) or "—", cell_time(st.at), #st.journal > 0 and table.concat(st.journal, ", ") or "—" }
  end
  if #srows == 0 then para(B, "No step ran.") end
  tbl(B, { "#", "Step", "Outcome", "Duration", "At (UTC)", "Journal" }, srows)
  for _, st in ipairs(s.steps) do
    if #st.sql > 0 then
      para(B, { bold(("Step %d"):format(st.step)), " — ", st.action, " (SQL as executed", str(st.sql_note) and ("; " .. st.sql_note) or "", "):" })
      codeblock(B, "sql", table.concat(st.sql, "\n"))
    end
  end
  -- verification
  heading(B, level, "Verification", sfx)
  local v = tab(s.verification) or {}
  local vrows = {}
  local aw = tab(v.after_write)
  if aw then
    kv(vrows, "After the write (check step)", { aw.outcome, str(aw.message) and (": " .. aw.message) or "" })
    local ps = tab(aw.prisma_status)
    if ps then kv(vrows, "`prisma migrate status` after the write", { code(or_dash(ps.says)), (" (exit %s)"):format(tostring(ps.exit)) }) end
  end
  kv(vrows, "Ledger rows after the write", #v.ledger_after > 0 and tostring(#v.ledger_after) or nil)
  local now = tab(run.now)
  local vn = tab(v.now)
  if vn then
    kv(vrows, "Ledger state now", code(or_dash(vn.state)))
    if vn.changed_since_run == true then kv(vrows, "Changed since the run", "yes: a later deploy, resolve or undo wrote these rows") end
    if vn.changed_since_run == false then kv(vrows, "Changed since the run", "no") end
  end
  if now then
    local ps = tab(now.prisma_status)
    if ps then
      kv(vrows, "`prisma migrate status` now (as migfix computes it)", { code(or_dash(ps.says)), (" (exit %s)"):format(tostring(ps.exit)) })
    elseif str(now.status_unavailable) then
      kv(vrows, "`prisma migrate status` now", "not computed: " .. now.status_unavailable)
    end
    local dp = tab(now.deploy)
    if dp then
      kv(vrows, "`prisma migrate deploy` now", dp.refuses and ("refuses with P3009 (failed: " .. table.concat(dp.failed or {}, ", ") .. ")")
        or (#(dp.pending or {}) > 0 and ("would apply " .. #dp.pending .. " pending: " .. table.concat(dp.pending, ", ")) or "nothing to apply"))
    end
  end
  if #vrows == 0 then para(B, "No verification in the journal and no database to read.") end
  tbl(B, { "Check", "Result" }, vrows)
  if vn and #vn.rows > 0 then
    para(B, "Ledger rows of the migration now:")
    local rr = {}
    for _, r in ipairs(vn.rows) do
      rr[#rr + 1] = { code(or_dash(r.id)), cell_time(r.started_at), cell_time(r.finished_at), cell_time(r.rolled_back_at),
                      tostring(r.applied_steps_count), code((str(r.checksum) or ""):sub(1, 12)),
                      str(r.logs) == "" and "(empty)" or str(r.logs) and ((#r.logs > 60) and (r.logs:sub(1, 57):gsub("%s+", " ") .. "…") or r.logs:gsub("%s+", " ")) or "NULL" }
    end
    tbl(B, { "id", "started_at", "finished_at", "rolled_back_at", "steps", "checksum", "logs" }, rr)
  end
  -- objects
  heading(B, level, "Database objects of the migration", sfx)
  local o = tab(s.objects)
  if not o then
    para(B, "No object evidence in the journal for this run.")
  else
    para(B, ("%d objects at the diagnosis: %s.%s"):format(o.total, o.summary ~= "" and o.summary or "none",
      str(o.deployed_by) and (" The redeploy (" .. o.deployed_by .. ") ran the file after the diagnosis.") or ""))
    local used = { present = true }
    for _, k in ipairs(o.by_kind) do for _, st in ipairs(M.STATES) do if k[st] > 0 then used[st] = true end end end
    local head = { "Kind", "Count" }
    for _, st in ipairs(M.STATES) do if used[st] then head[#head + 1] = (st:gsub("_", " "):gsub("^%l", string.upper)) end end
    local rows = {}
    for _, k in ipairs(o.by_kind) do
      local row = { k.label, tostring(k.count) }
      for _, st in ipairs(M.STATES) do if used[st] then row[#row + 1] = tostring(k[st]) end end
      rows[#rows + 1] = row
    end
    tbl(B, head, rows)
  end
  -- backup
  heading(B, level, "Backup", sfx)
  local b = tab(s.backup)
  if not b then
    para(B, "No backup was taken in this run.")
  else
    local rows = {}
    kv(rows, "Path", code(or_dash(b.path)))
    kv(rows, "Size", num(b.size) and (b.size .. " bytes") or "—")
    kv(rows, "SHA-256", code(or_dash(b.sha256)))
    kv(rows, "Scope", or_dash(b.scope))
    kv(rows, "Verified", or_dash(b.verified))
    kv(rows, "Created (UTC)", str(b.created_at) and time_text(b.created_at) or nil)
    kv(rows, "Took", M.duration_text(num(b.duration_ms)))
    kv(rows, "Journal", str(b.journal))
    tbl(B, { "Field", "Value" }, rows)
  end
  -- prevention
  heading(B, level, "Prevention", sfx)
  local l = tab(s.prevention) and tab(s.prevention.lint)
  if not l then
    para(B, "No lint evidence in the journal for this run (the chain has no split-large-migration, or nothing was diagnosed).")
  else
    if #l.findings == 0 then
      para(B, "Lint found nothing in the failed migration.")
    else
      para(B, ("Lint findings of the failed migration: %d error(s), %d warning(s)."):format(l.errors, l.warnings))
      local rows = {}
      for _, f in ipairs(l.findings) do
        rows[#rows + 1] = { code(or_dash(f.rule)), or_dash(f.severity), num(f.line) and tostring(f.line) or "—",
                            str(f.table) and code(f.table) or "—", or_dash(f.why), or_dash(f.alternative) }
      end
      tbl(B, { "Rule", "Severity", "Line", "Table", "Finding", "Instead" }, rows)
    end
    local sp = tab(l.split)
    if sp then
      para(B, { "Proposed split (", code(sp.command), " writes it):" })
      local rows = {}
      for i, p in ipairs(sp.parts) do
        rows[#rows + 1] = { tostring(i), code(or_dash(p.name)), or_dash(p.kind), p.transactional and "yes" or "no", or_dash(p.why) }
      end
      tbl(B, { "#", "Folder", "Kind", "Transaction", "Why" }, rows)
    end
  end
end

local function run_blocks(B, r, level, single)
  local short = r.legacy and r.run or r.run:sub(1, 8)
  local rsfx = not single and ("run " .. short) or nil
  local title
  local names = {}
  for _, s in ipairs(r.migrations) do names[#names + 1] = s.name end
  if single then
    title = ("migfix report: %s %s"):format(#names == 1 and names[1] or (#names .. " migrations"), r.outcome)
    if r.command == "undo" then title = ("migfix report: undo of %s"):format(names[1] or "a repair") end
    if r.command == "deploy" then title = ("migfix report: deploy, %s"):format(r.outcome) end
  else
    title = ("Run %s: %s"):format(short, r.outcome)
  end
  heading(B, level, title)
  para(B, { bold("Outcome: " .. r.outcome .. "."), " ", (r.headline:gsub("^%l", string.upper)), "." })
  local rows = {}
  kv(rows, "Run", code(r.run))
  if r.legacy then kv(rows, "Note", "entries written before run ids: grouped by command, user, host and environment") end
  kv(rows, "Command", code("migfix " .. tostring(r.command)))
  kv(rows, "Environment", str(r.environment))
  kv(rows, "By", ("%s@%s"):format(tostring(r.os_user), tostring(r.host)))
  kv(rows, "Ledger schema", str(r.ledger_schema))
  kv(rows, "Outcome", r.outcome)
  local t = r.timing
  kv(rows, "migfix started / ended (UTC)", ("%s / %s"):format(cell_time(t.migfix_started_at), cell_time(t.migfix_ended_at)))
  if #r.journal > 0 then
    kv(rows, "Journal", #r.journal == 1 and (r.journal[1].ref .. " (1 entry)")
      or ("%s to %s (%d entries)"):format(r.journal[1].ref, r.journal[#r.journal].ref, #r.journal))
  end
  tbl(B, { "Field", "Value" }, rows)
  local lvl = level + 1
  for _, s in ipairs(r.migrations) do
    if #r.migrations > 1 then
      heading(B, lvl, { "Migration ", code(s.name) }, rsfx)
      migration_blocks(B, s, lvl + 1, r, rsfx and (s.name .. ", " .. rsfx) or s.name)
    else
      migration_blocks(B, s, lvl, r, rsfx)
    end
  end
  if #r.other_entries > 0 then
    heading(B, lvl, "Other entries", rsfx)
    local orows = {}
    for _, e in ipairs(r.other_entries) do orows[#orows + 1] = { e.journal, e.action, e.outcome, or_dash(e.summary), cell_time(e.at) } end
    tbl(B, { "Journal", "Action", "Outcome", "Summary", "At (UTC)" }, orows)
  end
  heading(B, lvl, "After hooks", rsfx)
  if #r.hooks == 0 then
    para(B, "No `after` hook ran in this run.")
  else
    local hrows = {}
    for _, h in ipairs(r.hooks) do
      hrows[#hrows + 1] = { code(or_dash(h.command)), num(h.exit) and tostring(h.exit) or "—", h.outcome,
                            M.duration_text(num(h.duration_ms)) or "—", cell_time(h.at), h.journal }
    end
    tbl(B, { "Command", "Exit", "Outcome", "Duration", "At (UTC)", "Journal" }, hrows)
  end
  heading(B, lvl, "Timing", rsfx)
  local trows = {}
  kv(trows, "Failed at (UTC)", cell_time(t.failed_at))
  if str(t.undone_at) then kv(trows, "Undone at (UTC)", cell_time(t.undone_at)) else kv(trows, "Resolved at (UTC)", cell_time(t.resolved_at)) end
  kv(trows, "Failure to resolution", M.duration_text(num(t.failure_to_resolution_ms)) or "—")
  kv(trows, "migfix started (UTC)", cell_time(t.migfix_started_at))
  kv(trows, "migfix ended (UTC)", cell_time(t.migfix_ended_at))
  kv(trows, "migfix start to end", M.duration_text(num(t.migfix_ms)) or "—")
  tbl(B, { "Time", "Value" }, trows)
  heading(B, lvl, "Journal entries", rsfx)
  local jrows = {}
  for _, e in ipairs(r.journal) do
    jrows[#jrows + 1] = { e.ref, cell_time(e.at), e.action, str(e.migration) and code(e.migration) or "—", e.outcome, e.source }
  end
  tbl(B, { "Entry", "At (UTC)", "Action", "Migration", "Outcome", "Source" }, jrows)
end

--- The document as blocks (headings, paragraphs, tables, code, lists):
--- Markdown and HTML render the same blocks.
---@param doc table from M.document
---@return table blocks {t = "h"|"p"|"table"|"code"|"list", ...}
function M.blocks(doc)
  local B = {}
  local runs = doc.runs
  if #runs == 1 then
    run_blocks(B, runs[1], 1, true)
  else
    heading(B, 1, ("migfix report: %d runs"):format(#runs))
    para(B, ("Generated %s (UTC)%s."):format(time_text(doc.generated_at),
      tab(doc.selection) and str(doc.selection.since) and (", runs since " .. time_text(doc.selection.since)) or ""))
    local orows = {}
    local outs = {}
    for k in pairs(doc.summary.by_outcome) do outs[#outs + 1] = k end
    table.sort(outs)
    for _, k in ipairs(outs) do orows[#orows + 1] = { k, tostring(doc.summary.by_outcome[k]) } end
    heading(B, 2, "Summary by outcome")
    tbl(B, { "Outcome", "Runs" }, orows)
    local rrows = {}
    for _, r in ipairs(doc.summary.runs_table) do
      local ms = {}
      for _, n in ipairs(r.migrations) do ms[#ms + 1] = n end
      rrows[#rrows + 1] = { code(r.run), cell_time(r.started_at), code("migfix " .. tostring(r.command)), or_dash(r.environment),
                            #ms > 0 and table.concat(ms, ", ") or "—", r.outcome }
    end
    tbl(B, { "Run", "Started (UTC)", "Command", "Environment", "Migrations", "Outcome" }, rrows)
    for _, r in ipairs(runs) do run_blocks(B, r, 2, false) end
  end
  local foot = { ("Generated by migfix%s at %s (UTC) from the journal"):format(str(doc.migfix_version) and (" " .. doc.migfix_version) or "",
    time_text(doc.generated_at)) }
  local j = tab(doc.journal)
  if j then
    local v = tab(j.verify)
    foot[#foot + 1] = (" (%s%s)"):format(or_dash(j.source),
      v and (v.ok and "; hash chain intact" or ("; the hash chain is broken: %d problem(s), see `migfix journal --verify`"):format(num(v.problems) or 0)) or "")
  end
  if tab(doc.database) then foot[#foot + 1] = (" and database \"%s\" read on a read-only connection"):format(or_dash(doc.database.name)) end
  foot[#foot + 1] = "."
  para(B, table.concat(foot))
  return B
end

-- ------------------------------------------------------------ Markdown

--- a plain string as text and `code` segments (backtick spans in messages)
local function ticks(s)
  local out, pos = {}, 1
  while true do
    local a, b, inner = s:find("`([^`\n]+)`", pos)
    if not a then break end
    if a > pos then out[#out + 1] = { text = s:sub(pos, a - 1) } end
    out[#out + 1] = { code = inner }
    pos = b + 1
  end
  if pos <= #s then out[#out + 1] = { text = s:sub(pos) } end
  return out
end

--- Escape what CommonMark/GFM would read as markup, and nothing more (the
--- text stays readable where Markdown is not rendered): * ` [ ] ~ | and
--- a backslash before punctuation always; _ at a word boundary; < before a
--- tag or autolink; & before an entity.
local function md_text(s)
  s = tostring(s):gsub("\r?\n", " ")
  local out = {}
  local n = #s
  for i = 1, n do
    local c = s:sub(i, i)
    if c == "\\" then
      out[#out + 1] = s:sub(i + 1, i + 1):match("%p") and "\\\\" or "\\"
    elseif c:match("[%*`%[%]~|]") then
      out[#out + 1] = "\\" .. c
    elseif c == "_" then
      local prev, nxt = s:sub(i - 1, i - 1), s:sub(i + 1, i + 1)
      out[#out + 1] = (prev:match("%w") and nxt:match("%w")) and "_" or "\\_"
    elseif c == "<" and s:sub(i + 1, i + 1):match("[%a/!?]") then
      out[#out + 1] = "\\<"
    elseif c == "&" and s:sub(i + 1):match("^#?%w+;") then
      out[#out + 1] = "\\&"
    else
      out[#out + 1] = c
    end
  end
  return table.concat(out)
end

local function md_code(s, in_table)
  s = tostring(s):gsub("\r?\n", " ")
  local longest = 0
  for run in s:gmatch("`+") do longest = math.max(longest, #run) end
  local fence = string.rep("`", longest + 1)
  local pad = (s:sub(1, 1) == "`" or s:sub(-1) == "`" or s:match("^ .* $")) and " " or ""
  if in_table then s = s:gsub("|", "\\|") end
  return fence .. pad .. s .. pad .. fence
end

local md_inline
function md_inline(x, in_table)
  if type(x) == "string" then
    local parts = {}
    for _, seg in ipairs(ticks(x)) do parts[#parts + 1] = seg.code and md_code(seg.code, in_table) or md_text(seg.text) end
    return table.concat(parts)
  elseif type(x) == "table" and x.code then
    return md_code(x.code, in_table)
  elseif type(x) == "table" and x.b then
    return "**" .. md_inline(x.b, in_table) .. "**"
  elseif type(x) == "table" then
    local parts = {}
    for _, y in ipairs(x) do parts[#parts + 1] = md_inline(y, in_table) end
    return table.concat(parts)
  end
  return md_text(tostring(x))
end

--- a paragraph or list item must not start like another block
local function md_block_start(s)
  if s:match("^[#>+=-]") or s:match("^%d+[.)]") then
    return (s:gsub("^(%d*)(.)", "%1\\%2", 1))
  end
  return s
end

local function md_cell(x)
  local s = md_inline(x, true):gsub("^%s+", ""):gsub("%s+$", "")
  return s == "" and "—" or s
end

--- Markdown (CommonMark with GitHub tables).
---@param doc table
---@return string
function M.markdown(doc)
  local out = {}
  for _, b in ipairs(M.blocks(doc)) do
    if b.t == "h" then
      out[#out + 1] = string.rep("#", b.level) .. " " .. md_inline(b.text)
    elseif b.t == "p" then
      out[#out + 1] = md_block_start(md_inline(b.inl))
    elseif b.t == "table" then
      local lines = {}
      local head = {}
      for i, h in ipairs(b.head) do head[i] = md_cell(h) end
      lines[#lines + 1] = "| " .. table.concat(head, " | ") .. " |"
      local sep = {}
      for i = 1, #b.head do sep[i] = "---" end
      lines[#lines + 1] = "| " .. table.concat(sep, " | ") .. " |"
      for _, r in ipairs(b.rows) do
        local cells = {}
        for i = 1, #b.head do cells[i] = md_cell(r[i] == nil and "" or r[i]) end
        lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
      end
      out[#out + 1] = table.concat(lines, "\n")
    elseif b.t == "code" then
      local longest = 2
      for run in b.text:gmatch("`+") do longest = math.max(longest, #run) end
      local fence = string.rep("`", longest + 1)
      out[#out + 1] = fence .. (b.lang or "") .. "\n" .. b.text:gsub("\n+$", "") .. "\n" .. fence
    elseif b.t == "list" then
      local lines = {}
      for _, it in ipairs(b.items) do lines[#lines + 1] = "- " .. md_block_start(md_inline(it)) end
      out[#out + 1] = table.concat(lines, "\n")
    end
  end
  return table.concat(out, "\n\n") .. "\n"
end

-- ------------------------------------------------------------ HTML

local function h(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local html_inline
function html_inline(x)
  if type(x) == "string" then
    local parts = {}
    for _, seg in ipairs(ticks(x)) do parts[#parts + 1] = seg.code and ("<code>" .. h(seg.code) .. "</code>") or h(seg.text) end
    return table.concat(parts)
  end
  if type(x) == "table" and x.code then return "<code>" .. h(x.code) .. "</code>" end
  if type(x) == "table" and x.b then return "<strong>" .. html_inline(x.b) .. "</strong>" end
  if type(x) == "table" then
    local parts = {}
    for _, y in ipairs(x) do parts[#parts + 1] = html_inline(y) end
    return table.concat(parts)
  end
  return h(tostring(x))
end

local CSS = [[
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; border-bottom: 1px solid #d1d9e0; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; border-bottom: 1px solid #d1d9e0; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d1d9e0; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; border-radius: 6px; }
pre code { padding: 0; }
footer, .foot { color: #59636e; font-size: .9rem; }]]

--- One self-contained HTML page (inline CSS, no external resource); it is
--- well-formed XML too.
---@param doc table
---@return string
function M.html(doc)
  local B = M.blocks(doc)
  local title = "migfix report"
  for _, b in ipairs(B) do
    if b.t == "h" then
      local function plain(x)
        if type(x) == "string" then return x end
        if type(x) == "table" and (x.code or x.b) then return x.code or x.b end
        local p = {}
        for _, y in ipairs(x) do p[#p + 1] = plain(y) end
        return table.concat(p)
      end
      title = plain(b.text)
      break
    end
  end
  local out = { "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8"/>',
                '<meta name="generator" content="migfix report"/>', "<title>" .. h(title) .. "</title>",
                "<style>" .. CSS .. "\n</style>", "</head>", "<body>" }
  for _, b in ipairs(B) do
    if b.t == "h" then
      out[#out + 1] = ("<h%d>%s</h%d>"):format(b.level, html_inline(b.text), b.level)
    elseif b.t == "p" then
      out[#out + 1] = "<p>" .. html_inline(b.inl) .. "</p>"
    elseif b.t == "table" then
      local lines = { "<table>", "<thead><tr>" }
      for _, c in ipairs(b.head) do lines[#lines + 1] = "<th>" .. html_inline(c) .. "</th>" end
      lines[#lines + 1] = "</tr></thead>"
      lines[#lines + 1] = "<tbody>"
      for _, r in ipairs(b.rows) do
        local cells = {}
        for i = 1, #b.head do
          local c = html_inline(r[i] == nil and "" or r[i]):gsub("^%s+", ""):gsub("%s+$", "")
          cells[#cells + 1] = "<td>" .. (c == "" and "—" or c) .. "</td>"
        end
        lines[#lines + 1] = "<tr>" .. table.concat(cells) .. "</tr>"
      end
      lines[#lines + 1] = "</tbody>"
      lines[#lines + 1] = "</table>"
      out[#out + 1] = table.concat(lines, "\n")
    elseif b.t == "code" then
      out[#out + 1] = ('<pre><code class="language-%s">%s</code></pre>'):format(h(b.lang or "text"), h(b.text:gsub("\n+$", "")))
    elseif b.t == "list" then
      local lines = { "<ul>" }
      for _, it in ipairs(b.items) do lines[#lines + 1] = "<li>" .. html_inline(it) .. "</li>" end
      lines[#lines + 1] = "</ul>"
      out[#out + 1] = table.concat(lines, "\n")
    end
  end
  out[#out + 1] = "</body>"
  out[#out + 1] = "</html>"
  return table.concat(out, "\n") .. "\n"
end

--- The document as pretty JSON (sorted keys).
---@param doc table
---@return string
function M.json(doc)
  return json.encode(doc, { pretty = true, sort_keys = true }) .. "\n"
end

--- Render the document; secrets are masked (db.redact) whatever the format.
---@param doc table
---@param format string "markdown" | "json" | "html"
---@return string
function M.render(doc, format)
  if not M.FORMATS[format] then
    error(("bad argument #2 to 'render' (markdown, json or html expected, got %s)"):format(tostring(format)), 2)
  end
  local text = (format == "json" and M.json or format == "html" and M.html or M.markdown)(doc)
  return (db.redact(text))
end

return M
