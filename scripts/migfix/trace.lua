--- Statement-by-statement tracing of a migration file on a scratch copy
--- (`migfix simulate`), in the spirit of eugene's trace: after each
--- statement, the locks its own backend holds per relation (pg_locks WHERE
--- pid = pg_backend_pid()), which tables were rewritten (pg_class.relfilenode
--- before/after), the rows it affected, its duration, and the SQLSTATE and
--- message on error.
---
--- The file keeps Prisma's semantics: in unit mode "file" (the native
--- engine) it is ONE implicit transaction, so the tracer runs
--- BEGIN; stmt; trace; ...; COMMIT — a lock taken at statement k is held
--- until COMMIT. A file with its own BEGIN/COMMIT runs statement by
--- statement as written. In unit mode "statement" (newer engines) every
--- statement autocommits: each runs in its own BEGIN/trace/COMMIT.
--- Non-transactional statements (CREATE INDEX CONCURRENTLY, ...) cannot be
--- wrapped: they run alone and are traced after (no lock list). In a
--- multi-statement file under unit "file" they fail with 25001 inside the
--- transaction, exactly as under Prisma.
local effects = require "migfix.effects"
local execution = require "migfix.execution"
local proc = require "migfix.proc"
local sys = require "migfix.sys"

local M = {}

--- pg_locks modes, weakest first, with PostgreSQL's documentation names.
M.MODES = {
  AccessShareLock = { rank = 1, name = "ACCESS SHARE" },
  RowShareLock = { rank = 2, name = "ROW SHARE" },
  RowExclusiveLock = { rank = 3, name = "ROW EXCLUSIVE" },
  ShareUpdateExclusiveLock = { rank = 4, name = "SHARE UPDATE EXCLUSIVE" },
  ShareLock = { rank = 5, name = "SHARE" },
  ShareRowExclusiveLock = { rank = 6, name = "SHARE ROW EXCLUSIVE" },
  ExclusiveLock = { rank = 7, name = "EXCLUSIVE" },
  AccessExclusiveLock = { rank = 8, name = "ACCESS EXCLUSIVE" },
}
M.ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
--- Modes that block plain SELECT or DML of other sessions (eugene's "dangerous").
M.BLOCKS = {
  ["ACCESS EXCLUSIVE"] = "reads and writes", ["EXCLUSIVE"] = "writes", ["SHARE ROW EXCLUSIVE"] = "writes",
  ["SHARE"] = "writes",
}

local KIND = { r = "table", p = "table", m = "materialized view", i = "index", I = "index", S = "sequence",
               v = "view", t = "toast table", f = "foreign table", c = "type" }

local SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"

local function ident(conn, schema, name) return conn:quote_ident(schema) .. "." .. conn:quote_ident(name) end

--- oid -> {schema, name, kind, relfilenode} for every user relation.
---@return table|nil rels
---@return string|nil err
function M.relations(conn)
  local rows, err = conn:query(([[SELECT c.oid::bigint AS oid, n.nspname, c.relname, c.relkind, c.relfilenode::bigint AS relfilenode
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN %s AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'
       AND c.relkind IN ('r', 'p', 'm', 'i', 'I', 'S')]]):format(SYSTEM))
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    out[r.oid] = { schema = r.nspname, name = r.relname, kind = KIND[r.relkind] or r.relkind, relkind = r.relkind,
                   relfilenode = r.relfilenode, display = ident(conn, r.nspname, r.relname) }
  end
  return out
end

--- Relation locks granted to this backend, strongest mode per relation.
---@return table|nil locks oid -> {modes = {MODE=true}, mode = strongest pg_locks name}
function M.own_locks(conn)
  local rows, err = conn:query([[SELECT l.relation::bigint AS oid, l.mode
      FROM pg_locks l
     WHERE l.pid = pg_backend_pid() AND l.granted AND l.locktype = 'relation' AND l.relation IS NOT NULL
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())]])
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    local o = out[r.oid] or { modes = {} }
    o.modes[r.mode] = true
    if not o.mode or (M.MODES[r.mode] and M.MODES[r.mode].rank > (M.MODES[o.mode] and M.MODES[o.mode].rank or 0)) then
      o.mode = r.mode
    end
    out[r.oid] = o
  end
  return out
end

local function mode_name(m) return M.MODES[m] and M.MODES[m].name or m end
M.mode_name = mode_name

local function mode_rank(name)
  for _, v in pairs(M.MODES) do if v.name == name then return v.rank end end
  return 0
end
M.mode_rank = mode_rank

local function one_line(s, n)
  s = tostring(s or ""):gsub("%-%-[^\n]*", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if n and #s > n then s = s:sub(1, n - 1) .. "…" end
  return s
end
M.one_line = one_line

--- A tracer: returns run_script(conn, text) for ledger_write.deploy_one.
--- opts: {
---   unit = "file"|"statement", server_version = integer,
---   on_unit = fn(unit_record)       called once per traced file,
---   next_number = fn() -> integer    global statement counter (for --inject-failure),
---   inject_at = integer|nil          end the connection when this statement number is reached,
---   on_inject = fn(statement)        called when the connection was ended,
---   current = table                  {name, path, source} of the file being run (set by the caller),
---   check = fn()                     called between statements (interrupts),
--- }
function M.tracer(opts)
  return function(conn, text)
    return M.run(conn, text, opts.current or {}, opts)
  end
end

--- Run and trace one file. Returns ok, err, info as conn:exec does (so it
--- can stand in for it), after calling opts.on_unit(record).
function M.run(conn, text, meta, opts)
  local unit_rec = { migration = meta.name, source = meta.source, statements = {}, holds = {} }
  local t_unit = sys.now_ms()
  local unit, perr = effects.analyze(text, meta.path)
  if not unit then
    unit_rec.ok = false
    unit_rec.error = { message = perr.message, line = perr.line }
    if opts.on_unit then opts.on_unit(unit_rec) end
    return nil, perr.message, { message = perr.message }
  end
  local sv = opts.server_version or conn:server_version()
  local function nontx(s) return execution.non_transactional(s, sv) end
  -- "as written" (the file's own BEGIN/COMMIT), "autocommit" (each statement
  -- its own transaction) or "transaction" (Prisma's one implicit transaction)
  local mode = execution.of(unit, { unit = opts.unit, server_version = sv }).runs_as
  unit_rec.mode = mode
  unit_rec.statement_count = #unit.statements

  local before = assert(M.relations(conn))
  local initial = {}            -- relations that existed before this file
  for oid in pairs(before) do initial[oid] = true end
  local in_tx = false           -- inside a transaction we opened (mode transaction/autocommit)
  local file_tx = false         -- inside the file's own BEGIN (mode "as written")
  local held = {}               -- oid -> {rank, mode, since = statement record, n}
  local open_stmts = {}         -- statements of the current transaction (for hold times)
  local failure

  local function begin_tx()
    local ok, err, info = conn:exec("BEGIN")
    if not ok then return nil, err, info end
    in_tx = true
    held, open_stmts = {}, {}
    return true
  end

  local function close_holds(commit_ms)
    -- a lock taken at statement k is held until COMMIT
    for oid, h in pairs(held) do
      local ms = commit_ms
      local counting = false
      for _, s in ipairs(open_stmts) do
        if s == h.since then counting = true end
        if counting then ms = ms + (s.ms or 0) end
      end
      unit_rec.holds[#unit_rec.holds + 1] = {
        relation = h.display, kind = h.kind, mode = mode_name(h.mode), from_statement = h.since.n,
        from_line = h.since.line, ms = math.floor(ms * 1000 + 0.5) / 1000, created_here = h.created_here or false,
        blocks = M.BLOCKS[mode_name(h.mode)],
      }
    end
    held, open_stmts = {}, {}
  end

  local function commit_tx()
    local t0 = sys.now_ms()
    local ok, err, info = conn:exec("COMMIT")
    local ms = sys.now_ms() - t0
    in_tx = false
    if not ok then return nil, err, info, ms end
    close_holds(ms)
    return true, nil, nil, ms
  end

  local function trace_after(rec)
    local rels = M.relations(conn) or {}
    local locks = M.own_locks(conn) or {}
    rec.locks = {}
    for oid, l in pairs(locks) do
      local r = rels[oid] or before[oid]
      if r then
        local created_here = not initial[oid]
        rec.locks[#rec.locks + 1] = { relation = r.display, kind = r.kind, mode = mode_name(l.mode),
                                      created_here = created_here }
        local h = held[oid]
        local rank = M.MODES[l.mode] and M.MODES[l.mode].rank or 0
        if not h or rank > h.rank then
          held[oid] = { rank = rank, mode = l.mode, since = rec, display = r.display, kind = r.kind,
                        created_here = created_here }
        end
      end
    end
    table.sort(rec.locks, function(a, b)
      if mode_rank(a.mode) ~= mode_rank(b.mode) then return mode_rank(a.mode) > mode_rank(b.mode) end
      return a.relation < b.relation
    end)
    rec.rewrites = {}
    for oid, r in pairs(rels) do
      local b = before[oid]
      if b and b.relfilenode ~= r.relfilenode and b.relfilenode ~= 0 and (r.relkind == "r" or r.relkind == "m") then
        rec.rewrites[#rec.rewrites + 1] = { relation = r.display, kind = r.kind, relfilenode_before = b.relfilenode,
                                            relfilenode_after = r.relfilenode }
        b.relfilenode = r.relfilenode -- count each rewrite once
      end
    end
    table.sort(rec.rewrites, function(a, b) return a.relation < b.relation end)
    for oid, r in pairs(rels) do if not before[oid] then before[oid] = r end end
  end

  for _, s in ipairs(unit.statements) do
    if opts.check then opts.check() end
    local n = opts.next_number and opts.next_number() or s.index
    local rec = { n = n, index = s.index, line = s.line, kind = s.kind, text = s.text,
                  summary = one_line(s.text, 120), in_transaction = false }
    unit_rec.statements[#unit_rec.statements + 1] = rec
    local is_nontx = nontx(s)
    if mode == "autocommit" and not is_nontx and not s.tx_control then
      local ok, err, info = begin_tx()
      if not ok then failure = { err, info } rec.error = { message = err, sqlstate = info and info.sqlstate } break end
    elseif mode == "transaction" and not in_tx then
      local ok, err, info = begin_tx()
      if not ok then failure = { err, info } rec.error = { message = err, sqlstate = info and info.sqlstate } break end
    end
    rec.in_transaction = in_tx or file_tx

    if opts.inject_at and n == opts.inject_at then
      -- end the connection here, as a pooler or a timeout would: the open
      -- transaction is rolled back by the server, the client sees the loss
      local t0 = sys.now_ms()
      local _, err, info = conn:exec("SELECT pg_terminate_backend(pg_backend_pid())")
      rec.ms = sys.now_ms() - t0
      rec.injected = true
      rec.error = { sqlstate = info and info.sqlstate or "57P01", message = err or "connection ended", injected = true }
      in_tx = false
      failure = { err or "server closed the connection unexpectedly", info or { sqlstate = "57P01" } }
      if opts.on_inject then opts.on_inject(rec) end
      break
    end

    local t0 = sys.now_ms()
    local ok, err, info = conn:exec(s.text)
    rec.ms = math.floor((sys.now_ms() - t0) * 1000 + 0.5) / 1000
    if opts.check then opts.check() end
    if ok then
      rec.rows = type(err) == "table" and err.affected or nil
      rec.tag = type(err) == "table" and err.tag or nil
      if s.tx_control then
        local up = tostring(rec.tag or s.kind or ""):upper()
        if up:find("BEGIN") or up:find("START") then file_tx = true
        elseif up:find("COMMIT") or up:find("ROLLBACK") or up:find("END") then file_tx = false end
      end
      if in_tx or file_tx then
        open_stmts[#open_stmts + 1] = rec
        trace_after(rec)
      else
        rec.locks = nil
        rec.locks_note = is_nontx and "runs outside a transaction: its locks are released when it returns (not traced)" or nil
        trace_after(rec)
        rec.locks = nil
      end
      if mode == "autocommit" and in_tx then
        local cok, cerr, cinfo, cms = commit_tx()
        rec.commit_ms = cms
        if not cok then failure = { cerr, cinfo } rec.error = { message = cerr, sqlstate = cinfo and cinfo.sqlstate } break end
      end
    else
      info = info or {}
      rec.error = { sqlstate = info.sqlstate, message = info.message or err, detail = info.detail, hint = info.hint }
      failure = { err, info }
      if in_tx then conn:exec("ROLLBACK") in_tx = false end
      if file_tx then conn:exec("ROLLBACK") file_tx = false end
      break
    end
  end

  if not failure and in_tx then
    local ok, err, info, ms = commit_tx()
    unit_rec.commit_ms = ms
    if not ok then failure = { err, info } end
  end
  unit_rec.ms = sys.now_ms() - t_unit
  local total = 0
  for _, s in ipairs(unit_rec.statements) do total = total + (s.ms or 0) + (s.commit_ms or 0) end
  unit_rec.statements_ms = total + (unit_rec.commit_ms or 0)
  table.sort(unit_rec.holds, function(a, b) return a.ms > b.ms end)
  if failure then
    unit_rec.ok = false
    local info = failure[2] or {}
    unit_rec.error = { sqlstate = info.sqlstate, message = info.message or failure[1], detail = info.detail, hint = info.hint }
    for _, s in ipairs(unit_rec.statements) do if s.error then unit_rec.error.statement = s.n unit_rec.error.line = s.line end end
    unit_rec.rolled_back = mode == "transaction"
  else
    unit_rec.ok = true
  end
  if opts.on_unit then opts.on_unit(unit_rec) end
  if failure then return nil, failure[1], failure[2] end
  return true, { tag = "traced" }
end

return M
