--- migfix.actions — what each action a policy can decide IS, as data: one
--- record per action with
---   describe(R, item, a)    the line plan and run print
---   sql(R, item, a)         the exact SQL (plan shows it; run executes it)
---   execute(R, item, a)     run it: returns ok, message
---   rehearse(R, item, a)    optional: what `simulate` does instead (backup only)
---   writes                  true when it changes the database (confirmation,
---                           forbid rules, the environment's backup floor)
--- plan prints describe and sql; run calls execute; simulate calls the same
--- execute on its scratch copy — the rehearsal IS the run.
---
--- R, the run of one command (M.context): ctx, conn, mode ("plan" | "run" |
--- "simulate"), st (the ledger state read under Prisma's lock, refreshed after
--- every write), runner (how a migration script is sent), record(entry)
--- (journal.record bound to the project's journal).
---
--- After mark_applied, redeploy and deploy the migration is diagnosed again
--- on the same connection (verify_now): anything but `complete` is a failed
--- action (exit 4) naming what is missing, journaled. A mark_applied whose
--- check fails rolls back with its transaction.
-- @module migfix.actions
local ui = require "migfix.ui"
local json = require "migfix.json"
local ledger = require "migfix.ledger"
local lw = require "migfix.ledger_write"
local journal = require "migfix.journal"
local mig = require "migfix.migrations"

local M = {}

-- ------------------------------------------------------------ the run context

local R_mt = {}
R_mt.__index = R_mt

---A run of actions on one connection.
---@param ctx table the command context (migfix.context)
---@param conn userdata the connection the actions write on
---@param mode "plan"|"run"|"simulate"
---@param o {st: table?, runner: function?}?
function M.context(ctx, conn, mode, o)
  o = o or {}
  local R = setmetatable({ ctx = ctx, conn = conn, mode = mode, runner = o.runner, p = ctx:project() }, R_mt)
  R.schema = ctx:schema()
  R.st = o.st
  return R
end

--- Read the ledger again (after a write, or under the lock).
function R_mt:refresh()
  self.st = self.ctx:state(self.conn)
  return self.st
end

--- The ledger entry of a migration as it is now.
function R_mt:entry(name)
  local st = self.st or self:refresh()
  return st.by_name[name] or { name = name, rows = {} }
end

--- After a write of one migration's rows: keep them, without reading the
--- whole ledger again (a deploy stays linear in the history).
function R_mt:written(name, rows)
  local e = self.st and self.st.by_name[name]
  if e and rows then e.rows = rows end
end

--- Record a journal entry (in the open transaction when there is one).
function R_mt:record(entry)
  local p = self.p
  local stored, err = journal.record(self.conn, p.journal_schema, p.journal_file, entry)
  if not stored then
    journal.note_failure(p.journal_file, entry, err, "journal_error")
    ui.fail { message = "could not write the journal: " .. tostring(err),
              hint = "the ledger change (if any) was rolled back with it: the ledger is as it was; the local journal file records the attempt",
              code = ui.EXIT.FAILURE }
  end
  return stored
end

--- The journal entry of an action of an item.
function R_mt:entry_of(item, action, outcome, extra)
  local p = self.p
  local m = item.m or {}
  local e = {
    action = action, outcome = outcome, environment = p.env_name, command = self.ctx.command,
    policy = item.decision and item.decision.policy.name or item.policy, migration = m.name, ledger_schema = self.schema,
    details = { verdict = m.verdict, summary = m.summary, counts = m.counts, error = m.error,
                file_changed = m.file and m.file.changed_since_failure,
                -- the step of the decision being executed and its time so far (migfix report)
                step = self.step and self.step.index,
                duration_ms = self.step and math.floor(require("migfix.sys").now_ms() - self.step.t0 + 0.5) or nil },
  }
  for k, v in pairs(extra or {}) do
    if k == "details" then for dk, dv in pairs(v) do e.details[dk] = dv end
    elseif v == false then e[k] = nil
    else e[k] = v end
  end
  return e
end

--- A journal function for lw.execute/deploy_one: the entry joins the write's transaction.
function R_mt:journal_fn(item, action, details)
  return function(before, after, ok, res)
    local e = self:entry_of(item, action, ok == false and "failed" or "ok")
    e.before, e.after = json.array(before), json.array(after)
    e.backup = item.backup
    if res and res.error then e.details.deploy_error = { message = res.error, sqlstate = res.info and res.info.sqlstate } end
    if res and res.ms then e.details.ms = math.floor(res.ms + 0.5) end
    if res and res.ms and not (self.step) then e.details.duration_ms = math.floor(res.ms + 0.5) end
    if res and res.id then e.details.row_id = res.id end
    if res and res.verification then e.details.verification = M.verification_doc(res.verification) end
    for k, v in pairs(details or {}) do e.details[k] = v end
    item.journaled = item.journaled or {}
    table.insert(item.journaled, self:record(e))
  end
end

--- Commit an `attempt` entry before a script runs, so an interrupted run is seen.
function R_mt:attempt_fn(item, part_of)
  return function(id)
    self:record(self:entry_of(item, "attempt", "ok", { details = { row_id = id, part_of = part_of } }))
  end
end

local function lock_ms(R)
  return require("migfix.config").millis(R.p.timeouts.advisory_lock, 10000) or 10000
end
M.lock_ms = lock_ms

-- ------------------------------------------------------------ verification

local function describe_item(it)
  local n = it.name or "?"
  if it.table and it.kind ~= "table" then n = it.table .. "." .. n end
  if it.enum then n = it.enum .. "." .. n end
  return ("%s %s: %s"):format(it.kind, n, (it.state or "?"):gsub("_", " "))
end

---Diagnose one migration again, now, on R's connection.
---@return table v {ok, verdict, summary, problems = {text...}}
function M.verify_now(R, name)
  local st = R.st or R:refresh()
  if not st.by_name[name] then st = R:refresh() end
  local d = require("migfix.diagnose").run(R.ctx, R.conn, st, { name })[1]
  local problems = {}
  for _, it in ipairs(d.evidence and d.evidence.items or {}) do
    local bad = it.state == "missing" or it.state == "still_present" or it.state == "different"
    if bad then problems[#problems + 1] = describe_item(it) end
  end
  if not d.evidence then problems[#problems + 1] = d.summary or "no local migration.sql" end
  -- nothing the catalog can check (data only): the script's own success is the evidence
  local ok = #problems == 0 and (d.verdict == "complete" or d.verdict == "unverifiable")
  return { ok = ok, verdict = d.verdict, summary = d.summary, problems = problems,
           counts = d.evidence and d.evidence.counts }
end

function M.verification_doc(v)
  if not v then return json.null end
  return { ok = v.ok, verdict = v.verdict, summary = v.summary, problems = json.array(v.problems or {}) }
end

local function verification_failure(what, name, v)
  return ("verification after the %s of %s failed: verdict %s%s"):format(what, name, v.verdict,
    #v.problems > 0 and (" (" .. table.concat(v.problems, "; ") .. ")") or "")
end

-- ------------------------------------------------------------ the actions

local A = {}
M.ACTIONS = A

local function text_of(R, name)
  local e = R:entry(name)
  return e["local"] and e["local"].text, e
end

local function backup_scope(R, a)
  return a.scope or R.p.backup.scope or "full"
end

A.note = {
  describe = function(_, _, a) return "note: " .. a.text end,
  execute = function() return true end,
}

A.backup = {
  describe = function(R, _, a)
    local p = R.p
    local raised = a.raised_from and (" [raised from %s: the environment requires %s]"):format(a.raised_from, a.scope) or ""
    return ("backup: pg_dump --format=custom, scope %s, of database \"%s\" into %s (0600, manifest, verified with pg_restore --list)%s%s"):format(
      backup_scope(R, a), (p.parsed_url and p.parsed_url.dbname) or "?", p.backup_dir,
      a.added and " [required by the environment]" or "", raised)
  end,
  execute = function(R, item, a)
    local p = R.p
    local name = item.m and item.m.name
    local man, err, info = require("migfix.backup").dump {
      url = R.ctx:url(), dir = p.backup_dir, scope = backup_scope(R, a), schema = R.schema,
      reason = a.reason or ("before resolving " .. tostring(name)), migration = name, environment = p.env_name,
      progress = ui.color, conn = R.conn,
    }
    if not man then
      ui.fail { message = "backup failed: " .. tostring(err), detail = info and info.detail,
                hint = (info and info.hint and (info.hint .. "; ") or "") .. "nothing was written; fix the backup problem and run again",
                code = ui.EXIT.FAILURE }
    end
    item.backup = { path = man.path, sha256 = man.sha256, scope = man.scope }
    R:record(R:entry_of(item, "backup", "ok", { backup = item.backup,
      details = { backup = { size = man.size, created_at = man.created_at, duration_ms = man.duration_ms,
                             verified = "pg_restore --list", objects = man.objects } } }))
    return true, ("%s (%d bytes, sha256 %s)"):format(man.path, man.size or 0, ui.short(man.sha256, 12))
  end,
  rehearse = function()
    return true, "skipped on the scratch copy: the real run takes it", "skipped"
  end,
}

local PH = { now = "<now>", id = "<new uuid>" }

A.mark_applied = {
  writes = true,
  describe = function()
    return ("mark applied, as `prisma migrate resolve --applied` (one transaction with the journal entry, under pg_advisory_lock(%d)); then diagnosed again"):format(ledger.LOCK_KEY)
  end,
  sql = function(R, item)
    local text, entry = text_of(R, item.m.name)
    return lw.render(R.conn, lw.mark_applied(R.conn, R.schema, entry, text, { create_table = not R.st.exists, now = PH.now, id = PH.id }))
  end,
  execute = function(R, item, a)
    local name = item.m.name
    local text, entry = text_of(R, name)
    local stmts = lw.mark_applied(R.conn, R.schema, entry, text, { create_table = not R.st.exists })
    local v
    local res = lw.execute(R.conn, R.schema, name, stmts,
      R:journal_fn(item, "mark_applied", { forced = a.force or nil, sql = lw.render(R.conn, stmts) }), {
      what = "mark " .. name .. " applied",
      check = function()
        -- the same evidence again, inside the transaction: a mark that no
        -- longer holds rolls back with it (unless a person forced it)
        v = M.verify_now(R, name)
        if not v.ok and not a.force then
          ui.fail { message = verification_failure("mark applied", name, v),
                    hint = "the ledger write was rolled back: the ledger is as it was", code = ui.EXIT.FAILURE }
        end
      end,
    })
    item.result, item.verification = res, v
    R:refresh()
    return true, ("%d row(s) before, %d after; diagnosed again: %s"):format(#res.before, #res.after, v.verdict)
  end,
}

A.mark_rolled_back = {
  writes = true,
  describe = function()
    return ("mark rolled back, as `prisma migrate resolve --rolled-back` (one transaction with the journal entry, under pg_advisory_lock(%d))"):format(ledger.LOCK_KEY)
  end,
  sql = function(R, item)
    return lw.render(R.conn, lw.mark_rolled_back(R.conn, R.schema, R:entry(item.m.name), { ledger_exists = R.st.exists, now = PH.now }))
  end,
  execute = function(R, item)
    local name = item.m.name
    local stmts = lw.mark_rolled_back(R.conn, R.schema, R:entry(name), { ledger_exists = R.st.exists })
    local res = lw.execute(R.conn, R.schema, name, stmts, R:journal_fn(item, "mark_rolled_back", { sql = lw.render(R.conn, stmts) }),
      { what = "mark " .. name .. " rolled back" })
    item.result = res
    R:refresh()
    return true, ("%d row(s) before, %d after"):format(#res.before, #res.after)
  end,
}

--- Deploy one migration file as `prisma migrate deploy` does, then diagnose it again.
local function deploy_file(R, item, part_of, prelude)
  local name = item.m.name
  local text, entry = text_of(R, name)
  local loc = entry["local"] or {}
  local script = { path = loc.sql_path, checksum = loc.checksum or (text and mig.checksum(text)),
                   statements = item.diag and item.diag.unit and #item.diag.unit.statements or nil }
  local ok, res = lw.deploy_one(R.conn, R.schema, name, text, R:journal_fn(item, "deploy", { part_of = part_of, script = script }), {
    runner = R.runner,
    prelude = prelude,
    attempt = R:attempt_fn(item, part_of),
    verify = function() return M.verify_now(R, name) end,
    -- the rows read under Prisma's lock (R:refresh, kept by R:written): a
    -- deploy does not read the ledger again per migration
    before = entry.rows,
  })
  item.deploy_result = res
  item.verification = res.verification
  R:written(name, res.after)
  if not ok then
    local e = res.info or {}
    return false, ("%s failed: %s%s"):format(part_of == "redeploy" and "the redeploy" or "the migration", e.sqlstate and (e.sqlstate .. " ") or "", tostring(res.error)), res
  end
  if res.verification and not res.verification.ok then
    return false, verification_failure(part_of or "deploy", name, res.verification), res
  end
  return true, ("applied in %.0f ms; diagnosed again: %s"):format(res.ms or 0, res.verification and res.verification.verdict or "?"), res
end
M.deploy_file = deploy_file

A.redeploy = {
  writes = true,
  describe = function()
    return ("redeploy: mark rolled back, then deploy the current migration.sql as `prisma migrate deploy` does, under one pg_advisory_lock(%d); then diagnosed again"):format(ledger.LOCK_KEY)
  end,
  sql = function(R, item)
    local name = item.m.name
    local text, entry = text_of(R, name)
    local conn = R.conn
    local out = lw.render(conn, lw.mark_rolled_back(conn, R.schema, entry, { ledger_exists = R.st.exists, now = PH.now }))
    local q = ledger.qualified(conn, R.schema)
    out[#out + 1] = ("INSERT INTO %s (id, checksum, started_at, migration_name) VALUES ('%s', %s, '%s', %s);"):format(
      q, PH.id, conn:quote_literal(mig.checksum(text)), PH.now, conn:quote_literal(name))
    local n = #(item.diag and item.diag.unit and item.diag.unit.statements or {})
    out[#out + 1] = ("-- then %s as ONE query (one implicit transaction), %d statement(s), as Prisma deploys it"):format(
      entry["local"] and entry["local"].sql_path or name, n)
    out[#out + 1] = ("UPDATE %s SET applied_steps_count = applied_steps_count + 1 WHERE id = '%s';  -- on success"):format(q, PH.id)
    out[#out + 1] = ("UPDATE %s SET finished_at = '%s' WHERE id = '%s';  -- on success (or SET logs = <error> on failure)"):format(q, PH.now, PH.id)
    return out
  end,
  execute = function(R, item)
    local name = item.m.name
    local stmts = lw.mark_rolled_back(R.conn, R.schema, R:entry(name), { ledger_exists = true })
    -- the mark and the started row commit together: a kill in between cannot
    -- leave the migration merely pending
    return deploy_file(R, item, "redeploy", {
      stmts = stmts, what = "mark " .. name .. " rolled back and start it again",
      journal = R:journal_fn(item, "mark_rolled_back", { part_of = "redeploy", sql = lw.render(R.conn, stmts) }),
    })
  end,
}

A.deploy = {
  writes = true,
  describe = function(_, item)
    return ("deploy %s as `prisma migrate deploy` does (started row, the file as ONE query, finished_at), then diagnosed again"):format(item.m.name)
  end,
  execute = function(R, item) return deploy_file(R, item, nil) end,
}

local function index_sql(R, a)
  local q = R.conn:quote_ident(a.schema or R.schema) .. "." .. R.conn:quote_ident(a.name)
  return "DROP INDEX CONCURRENTLY IF EXISTS " .. q
end

A.drop_invalid_index = {
  writes = true,
  describe = function(R, _, a)
    return ("drop the INVALID index %s.%s that an interrupted CREATE INDEX CONCURRENTLY left (journaled; refused if it is valid)"):format(a.schema or R.schema, a.name)
  end,
  sql = function(R, _, a) return { index_sql(R, a) .. ";" } end,
  execute = function(R, item, a)
    local conn = R.conn
    local rows, err = conn:query([[SELECT i.indisvalid FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2]], a.schema or R.schema, a.name)
    if not rows then ui.fail { message = "could not read the index: " .. tostring(err), code = ui.EXIT.FAILURE } end
    if #rows == 0 then return true, "already gone" end
    if rows[1].indisvalid then
      return false, ("index %s.%s is valid now: not dropped"):format(a.schema or R.schema, a.name)
    end
    local ok, derr, dinfo = conn:exec(index_sql(R, a))
    R:record(R:entry_of(item, "drop_invalid_index", ok and "ok" or "failed",
      { details = { index = (a.schema or R.schema) .. "." .. a.name, error = not ok and tostring(derr) or nil } }))
    if not ok then
      return false, ("could not drop %s: %s%s"):format(a.name, dinfo and dinfo.sqlstate and (dinfo.sqlstate .. " ") or "", tostring(derr))
    end
    return true, "dropped"
  end,
}

A.check = {
  describe = function(_, item)
    return ("check: the ledger shows %s applied and no failed migration"):format(item.m.name)
  end,
  execute = function(R, item)
    local st2 = R:refresh()
    local name = item.m.name
    local entry = st2.by_name[name] or { state = "absent" }
    local function checked(ok, msg)
      -- journaled: the verification after the write (migfix report)
      R:record(R:entry_of(item, "check", ok and "ok" or "failed", { details = {
        message = msg, state = entry.state, failed_rows = #(st2.deploy.failed or {}), prisma_status = st2.prisma_status,
        verification = item.verification and M.verification_doc(item.verification) or nil } }))
      return ok, msg
    end
    if entry.state ~= "applied" then
      return checked(false, ("check failed: %s is %s in the ledger"):format(name, tostring(entry.state)))
    end
    for _, f in ipairs(st2.deploy.failed or {}) do
      if f.name == name then return checked(false, "check failed: a failed row of " .. name .. " is still there") end
    end
    local others = #(st2.deploy.failed or {})
    return checked(true, name .. " is applied; " .. (others == 0 and "nothing failed" or (others .. " other failed row(s) remain")))
  end,
}

A.refuse = {
  describe = function(_, _, a) return "refuse: " .. a.reason end,
  execute = function(R, item, a)
    R:record(R:entry_of(item, "refusal", "refused", { details = { reason = a.reason, hint = a.hint } }))
    return false, a.reason
  end,
}

---The record of an action, or a raise for an unrecognized one.
function M.get(name)
  local def = A[name]
  if not def then error(("unrecognized action \"%s\""):format(tostring(name)), 2) end
  return def
end

--- Whether any action of a decision writes.
function M.writes(decision)
  for _, a in ipairs(decision and decision.actions or {}) do
    if A[a.action] and A[a.action].writes then return true end
  end
  return false
end

--- The SQL of an action (plan), or {}.
function M.sql(R, item, a)
  local def = M.get(a.action)
  return def.sql and def.sql(R, item, a) or {}
end

function M.describe(R, item, a) return M.get(a.action).describe(R, item, a) end

---Execute (run) or rehearse (simulate) one action.
---@return boolean ok
---@return string? message
---@return string outcome "ok" | "failed" | "refused" | "skipped"
function M.execute(R, item, a)
  local def = M.get(a.action)
  local fn = (R.mode == "simulate" and def.rehearse) or def.execute
  local ok, msg, outcome = fn(R, item, a)
  if type(outcome) ~= "string" then
    outcome = ok and "ok" or (a.action == "refuse" and "refused" or "failed")
  end
  return ok and true or false, msg, outcome
end

return M
