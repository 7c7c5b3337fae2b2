--- The resolution engine behind `migfix plan` and `migfix run`: diagnose,
--- walk the environment's policy chain per failed migration, then print
--- (plan) or execute (run) the actions, journaled. Plan runs on a
--- read-only connection: the server refuses any write, whatever a bug does.
local ui = require "migfix.ui"
local json = require "migfix.json"
local db = require "migfix.db"
local diagnose = require "migfix.diagnose"
local policy = require "migfix.policy"
local ledger = require "migfix.ledger"
local lw = require "migfix.ledger_write"

local M = {}

local WRITES = { mark_applied = true, mark_rolled_back = true, redeploy = true }

--- The evidence a policy sees (docs/policies.md "Evidence").
function M.evidence(d)
  local objects = {}
  for _, it in ipairs(d.evidence and d.evidence.items or {}) do
    objects[#objects + 1] = { kind = it.kind, schema = it.schema, name = it.name, table = it.table, action = it.action,
                              state = it.state, diffs = it.diffs or {}, line = it.line }
  end
  local stmts = {}
  for _, s in ipairs(d.unit and d.unit.statements or {}) do
    stmts[#stmts + 1] = { index = s.index, line = s.line, text = s.text, kind = s.kind, tx_control = s.tx_control,
                          non_transactional = s.non_transactional, unverifiable = s.unverifiable }
  end
  return {
    name = d.name, state = d.state, verdict = d.verdict, summary = d.summary or "",
    file = d.file or { changed_since_failure = false },
    error = d.error or {},
    execution = d.execution or {},
    counts = (d.evidence and d.evidence.counts) or { present = 0, missing = 0, different = 0, absent = 0, still_present = 0, unverifiable = 0 },
    objects = objects, statements = stmts,
    likely_failed_statement = d.likely_failed_statement,
    inconsistent = d.inconsistent,
    invalid_indexes = d.evidence and d.evidence.invalid_indexes or {},
    lint = d.lint,
  }
end

local function policy_paths(ctx)
  local p = ctx:project()
  local paths = {}
  for _, d in ipairs(p.policy_paths) do paths[#paths + 1] = d end
  paths[#paths + 1] = ctx.info.home .. "/policies"
  return paths
end
M.policy_paths = policy_paths

--- Apply the environment's rules to a decision: forbidden actions become a
--- refusal; a required backup is added before the first write.
function M.apply_rules(ctx, decision)
  local p = ctx:project()
  for _, a in ipairs(decision.actions) do
    if p.forbid[a.action] then
      return { policy = decision.policy, actions = { { action = "refuse",
        reason = ("policy \"%s\" decided to %s, which environment \"%s\" forbids"):format(decision.policy.name, a.action:gsub("_", " "), p.env_name),
        hint = "resolve it by hand (migfix resolve) or run the chain in another environment's rules" } } }
    end
  end
  if p.backup.required then
    local has_backup = false
    for i, a in ipairs(decision.actions) do
      if a.action == "backup" then has_backup = true end
      if WRITES[a.action] and not has_backup then
        table.insert(decision.actions, i, { action = "backup", reason = "required by environment " .. p.env_name, added = true })
        break
      end
    end
  end
  return decision
end

--- Diagnose, then decide for every failed migration. Returns a list of
--- {diag, m, decision | nil, reasons}.
function M.decide(ctx, conn, st)
  local diags = diagnose.run(ctx, conn, st)
  if #diags == 0 then return {} end
  local p = ctx:project()
  local chain = policy.load_chain(p.policies, policy_paths(ctx))
  local envinfo = { name = p.env_name, server_version = conn:server_version(), unit = p.unit,
                    forbid = p.forbid, backup = p.backup }
  local out = {}
  for _, d in ipairs(diags) do
    local m = M.evidence(d)
    if ctx.lint_hook then ctx.lint_hook(ctx, conn, d, m) end
    local decision, reasons = policy.evaluate(chain, m, envinfo)
    if decision then decision = M.apply_rules(ctx, decision) end
    out[#out + 1] = { diag = d, m = m, decision = decision, reasons = reasons }
  end
  return out
end

-- describing actions ---------------------------------------------------------

local function backup_scope(ctx, a)
  return a.scope or ctx:project().backup.scope or "full"
end

local function sql_for(ctx, conn, st, item, a)
  local schema = st.schema
  local entry = st.by_name[item.m.name]
  local text = entry["local"] and entry["local"].text
  -- placeholders, not values: run takes its own uuid and client clock
  local ph = { now = "<now>", id = "<new uuid>" }
  if a.action == "mark_applied" then
    return lw.render(conn, lw.mark_applied(conn, schema, entry, text, { create_table = not st.exists, now = ph.now, id = ph.id }))
  elseif a.action == "mark_rolled_back" then
    return lw.render(conn, lw.mark_rolled_back(conn, schema, entry, { ledger_exists = st.exists, now = ph.now }))
  elseif a.action == "redeploy" then
    local out = lw.render(conn, lw.mark_rolled_back(conn, schema, entry, { ledger_exists = st.exists, now = ph.now }))
    local q = ledger.qualified(conn, schema)
    out[#out + 1] = ("INSERT INTO %s (id, checksum, started_at, migration_name) VALUES ('<new uuid>', %s, '<now>', %s);"):format(
      q, conn:quote_literal(require("migfix.migrations").checksum(text)), conn:quote_literal(item.m.name))
    out[#out + 1] = ("-- then %s as ONE query (one implicit transaction), %d statement(s), as Prisma deploys it"):format(
      entry["local"].sql_path, #(item.diag.unit and item.diag.unit.statements or {}))
    out[#out + 1] = ("UPDATE %s SET applied_steps_count = applied_steps_count + 1 WHERE id = '<new uuid>';  -- on success"):format(q)
    out[#out + 1] = ("UPDATE %s SET finished_at = '<now>' WHERE id = '<new uuid>';  -- on success (or SET logs = <error> on failure)"):format(q)
    return out
  end
  return {}
end

function M.describe(ctx, conn, st, item, a)
  local p = ctx:project()
  if a.action == "note" then return "note: " .. a.text end
  if a.action == "backup" then
    return ("backup: pg_dump --format=custom, scope %s, of database \"%s\" into %s (0600, manifest, verified with pg_restore --list)%s"):format(
      backup_scope(ctx, a), (p.parsed_url and p.parsed_url.dbname) or "?", p.backup_dir, a.added and " [required by the environment]" or "")
  elseif a.action == "mark_applied" then
    return "mark applied, as `prisma migrate resolve --applied` (one transaction with the journal entry, under pg_advisory_lock(72707369))"
  elseif a.action == "mark_rolled_back" then
    return "mark rolled back, as `prisma migrate resolve --rolled-back` (one transaction with the journal entry, under pg_advisory_lock(72707369))"
  elseif a.action == "redeploy" then
    return "redeploy: mark rolled back, then deploy the current migration.sql as `prisma migrate deploy` does, under one pg_advisory_lock(72707369)"
  elseif a.action == "check" then
    return ("check: the ledger shows %s applied and no failed migration"):format(item.m.name)
  elseif a.action == "refuse" then
    return "refuse: " .. a.reason
  end
  return a.action
end

-- executing actions ------------------------------------------------------------

local function journal_mod()
  return require "migfix.journal"
end

local function base_entry(ctx, item, action, outcome)
  local p = ctx:project()
  return {
    action = action, outcome = outcome, environment = p.env_name, command = ctx.command,
    policy = item.decision and item.decision.policy.name or nil, migration = item.m.name,
    details = { verdict = item.m.verdict, summary = item.m.summary, counts = item.m.counts,
                error = item.m.error, file_changed = item.m.file.changed_since_failure },
  }
end

--- Record an entry that goes with no ledger change (diagnosis, backup,
--- refusal): its own transaction in the journal schema, plus the file.
function M.record(ctx, conn, entry)
  local p = ctx:project()
  local journal = journal_mod()
  local full = entry
  if conn and not conn:info().readonly then
    local tx <close> = conn:begin()
    local jerr
    full, jerr = journal.append(conn, p.journal_schema, entry)
    if not full then
      -- the file still tells what was about to happen and why it stopped
      entry.details = entry.details or {}
      entry.details.journal_error = tostring(jerr)
      pcall(journal.append_file, p.journal_file, entry)
      ui.fail { message = "could not write the journal: " .. tostring(jerr),
                detail = "nothing was written to the ledger; the local journal file records the attempt",
                code = ui.EXIT.FAILURE }
    end
    assert(tx:commit())
    journal.mirror(conn, p.journal_schema, p.journal_file, full)
    return full
  end
  journal.append_file(p.journal_file, full)
  return full
end

local function journal_in_tx(ctx, conn, st, item, action, extra)
  local p = ctx:project()
  local journal = journal_mod()
  return function(before, after, ok, res)
    local e = base_entry(ctx, item, action, ok == false and "failed" or "ok")
    e.ledger_schema = st.schema
    e.before, e.after = json.array(before), json.array(after)
    e.backup = item.backup
    if res and res.error then e.details.deploy_error = { message = res.error, sqlstate = res.info and res.info.sqlstate } end
    for k, v in pairs(extra or {}) do e.details[k] = v end
    item.journaled = item.journaled or {}
    local full, jerr = journal.append(conn, p.journal_schema, e)
    if not full then
      ui.fail { message = "could not write the journal: " .. tostring(jerr), hint = "the ledger change was rolled back with it: the ledger is as it was", code = ui.EXIT.FAILURE }
    end
    table.insert(item.journaled, full)
  end
end

--- After a commit: mirror the entries written in that transaction to the
--- local JSON-lines file (after, never before: a failed commit must not
--- leave a file entry the database never got).
local function mirror_committed(ctx, conn, item)
  local p = ctx:project()
  local journal = journal_mod()
  item.mirrored = item.mirrored or 0
  for i = item.mirrored + 1, #(item.journaled or {}) do
    pcall(journal.mirror, conn, p.journal_schema, p.journal_file, item.journaled[i])
  end
  item.mirrored = #(item.journaled or {})
end

--- Run a ledger write; on failure, the local file records what was tried
--- and why (the database transaction, journal included, rolled back).
local function guarded(ctx, conn, item, action, fn)
  local res = table.pack(pcall(fn))
  mirror_committed(ctx, conn, item)
  if not res[1] then
    local e = base_entry(ctx, item, action, "failed")
    local err = res[2]
    e.details.error = ui.is_error(err) and err.message or tostring(err)
    pcall(journal_mod().append_file, ctx:project().journal_file, e)
    error(err, 0)
  end
  return table.unpack(res, 2, res.n)
end

local function lock_ms(ctx)
  local config = require "migfix.config"
  return config.millis(ctx:project().timeouts.advisory_lock, 10000) or 10000
end

local function fresh_entry(ctx, conn, st, name)
  local l = assert(ledger.read(conn, st.schema))
  local s2 = ledger.classify(st.locals, l)
  s2.locals, s2.ledger, s2.schema = st.locals, l, st.schema
  return s2, s2.by_name[name]
end

--- Execute one action for real. Returns true, or false + message.
function M.execute(ctx, conn, st, item, a)
  local p = ctx:project()
  local name = item.m.name
  if a.action == "note" then
    return true
  elseif a.action == "backup" then
    local backup = require "migfix.backup"
    local man, err, info = backup.dump {
      url = ctx:url(), dir = p.backup_dir, scope = backup_scope(ctx, a), schema = st.schema,
      reason = a.reason or ("before resolving " .. name), migration = name, environment = p.env_name,
      progress = ui.color, conn = conn,
    }
    if not man then
      ui.fail { message = "backup failed: " .. tostring(err), detail = info and info.detail,
                hint = (info and info.hint and (info.hint .. "; ") or "") .. "nothing was written; fix the backup problem and run again",
                code = ui.EXIT.FAILURE }
    end
    item.backup = { path = man.path, sha256 = man.sha256, scope = man.scope }
    local e = base_entry(ctx, item, "backup", "ok")
    e.backup = item.backup
    M.record(ctx, conn, e)
    return true, ("%s (%d bytes, sha256 %s)"):format(man.path, man.size or 0, ui.short(man.sha256, 12))
  elseif a.action == "mark_applied" or a.action == "mark_rolled_back" then
    return guarded(ctx, conn, item, a.action, function() return lw.with_lock(conn, lock_ms(ctx), function()
      -- re-read under the lock: another deploy may have changed the rows
      local st2, entry = fresh_entry(ctx, conn, st, name)
      local stmts
      if a.action == "mark_applied" then
        stmts = lw.mark_applied(conn, st.schema, entry, entry["local"] and entry["local"].text, { create_table = not st2.exists })
      else
        stmts = lw.mark_rolled_back(conn, st.schema, entry, { ledger_exists = st2.exists })
      end
      local res = lw.execute(conn, st.schema, name, stmts, journal_in_tx(ctx, conn, st, item, a.action))
      item.result = res
      return true, ("%d row(s) before, %d after"):format(#res.before, #res.after)
    end) end)
  elseif a.action == "redeploy" then
    return guarded(ctx, conn, item, "deploy", function() return lw.with_lock(conn, lock_ms(ctx), function()
      local _, entry = fresh_entry(ctx, conn, st, name)
      local stmts = lw.mark_rolled_back(conn, st.schema, entry, { ledger_exists = true })
      lw.execute(conn, st.schema, name, stmts, journal_in_tx(ctx, conn, st, item, "mark_rolled_back", { part_of = "redeploy" }))
      local ok, res = lw.deploy_one(conn, st.schema, name, entry["local"].text,
        journal_in_tx(ctx, conn, st, item, "deploy", { part_of = "redeploy" }), { run_script = ctx.run_script })
      if not ok then
        return false, ("the redeploy failed: %s%s"):format(res.info and res.info.sqlstate and (res.info.sqlstate .. " ") or "", res.error)
      end
      return true, "applied"
    end) end)
  elseif a.action == "check" then
    local st2, entry = fresh_entry(ctx, conn, st, name)
    if entry.state ~= "applied" then
      return false, ("check failed: %s is %s in the ledger"):format(name, entry.state)
    end
    local still = {}
    for _, f in ipairs(st2.deploy.failed or {}) do if f.name == name then still[#still + 1] = f.name end end
    if #still > 0 then return false, "check failed: a failed row of " .. name .. " is still there" end
    return true, name .. " is applied; " .. (#(st2.deploy.failed or {}) == 0 and "nothing failed" or (#st2.deploy.failed .. " other failed row(s) remain"))
  elseif a.action == "refuse" then
    local e = base_entry(ctx, item, "refusal", "refused")
    e.details.reason = a.reason
    e.details.hint = a.hint
    M.record(ctx, conn, e)
    return false, a.reason
  end
  return false, "unrecognized action " .. tostring(a.action)
end

-- the command body ---------------------------------------------------------------

local function objects_lines(objs)
  local lines = {}
  for _, o in ipairs(objs or {}) do
    local n = o.name
    if o.table and o.kind ~= "table" then n = o.table .. "." .. n end
    local diffs = {}
    for _, df in ipairs(o.diffs or {}) do
      diffs[#diffs + 1] = ("%s %s, expected %s"):format(df.field, tostring(type(df.found) == "table" and table.concat(df.found, ",") or df.found),
        tostring(type(df.expected) == "table" and table.concat(df.expected, ",") or df.expected))
    end
    lines[#lines + 1] = ("%s %s: %s%s"):format(o.kind, n, (o.state or ""):gsub("_", " "), #diffs > 0 and (" (" .. table.concat(diffs, "; ") .. ")") or "")
  end
  return lines
end

local function doc_of(ctx, conn, st, items, mode)
  local list = {}
  for _, item in ipairs(items) do
    local actions = {}
    for i, a in ipairs(item.decision and item.decision.actions or {}) do
      local d = { step = i, action = a.action, description = M.describe(ctx, conn, st, item, a) }
      local sql = sql_for(ctx, conn, st, item, a)
      if #sql > 0 then d.sql = json.array(sql) end
      if a.reason then d.reason = a.reason end
      if a.hint then d.hint = a.hint end
      if a.outcome then d.outcome = a.outcome end
      if a.message then d.message = a.message end
      actions[#actions + 1] = d
    end
    local reasons = {}
    for _, r in ipairs(item.reasons or {}) do reasons[#reasons + 1] = { policy = r.policy, why = r.why } end
    list[#list + 1] = {
      name = item.m.name, verdict = item.m.verdict, summary = item.m.summary,
      policy = item.decision and item.decision.policy.name or json.null,
      actions = json.array(actions), not_applied = json.array(reasons),
    }
  end
  return { mode = mode, environment = ctx:project().env_name, schema = st.schema,
           readonly = mode == "plan", migrations = json.array(list) }
end

local function print_item_header(item)
  local pol = item.decision and item.decision.policy.name or "no policy applies"
  ui.out(ui.paint(item.m.name, "bold") .. " — verdict " .. item.m.verdict:upper() .. " — " .. ui.paint(pol, "cyan"))
end

local function print_plan(ctx, conn, st, items)
  for k, item in ipairs(items) do
    if k > 1 then ui.out("") end
    print_item_header(item)
    if not item.decision then
      for _, r in ipairs(item.reasons) do ui.out(("  %s: %s"):format(r.policy, r.why)) end
    else
      for i, a in ipairs(item.decision.actions) do
        ui.out(("  %d. %s"):format(i, M.describe(ctx, conn, st, item, a)))
        if a.action == "refuse" then
          if a.hint then ui.out("     hint: " .. a.hint) end
          for _, l in ipairs(objects_lines(a.objects)) do ui.out("       " .. l) end
        end
        for _, s in ipairs(sql_for(ctx, conn, st, item, a)) do ui.out("       " .. s) end
      end
    end
  end
end

--- Ask for the environment's confirmation before writing: none, --yes
--- (confirm = "flag"), or a typed "yes" on a terminal ("interactive").
function M.confirm(ctx, opts)
  local p = ctx:project()
  if opts.yes or p.confirm == "none" then return true end
  local tty = false
  local ok, unistd = pcall(require, "posix.unistd")
  if ok then tty = unistd.isatty(0) == 1 end
  if p.confirm == "flag" or not tty then
    ui.fail { message = ("environment \"%s\" requires confirmation before writing"):format(p.env_name),
              hint = "review `migfix plan --env " .. p.env_name .. "`, then run again with --yes", code = ui.EXIT.ATTENTION }
  end
  io.stdout:write(("Write to the %s database? Type yes to continue: "):format(p.env_name))
  io.stdout:flush()
  local answer = io.read("l")
  if answer ~= "yes" then
    ui.fail { message = "not confirmed: nothing was written", code = ui.EXIT.ATTENTION }
  end
  return true
end

local function run_after_hooks(ctx, conn, st)
  local p = ctx:project()
  if #p.after == 0 then return true end
  local proc = require "migfix.proc"
  local all_ok = true
  for _, cmd in ipairs(p.after) do
    ui.out("after: " .. cmd)
    local r = proc.run { argv = { "/bin/sh", "-c", cmd } }
    local ok = r and r.code == 0
    if r and r.stdout and r.stdout ~= "" then io.stdout:write(r.stdout) end
    if r and r.stderr and r.stderr ~= "" then io.stderr:write(r.stderr) end
    M.record(ctx, conn, { action = "after_hook", outcome = ok and "ok" or "failed", environment = p.env_name,
                          command = ctx.command, details = { hook = cmd, exit = r and r.code } })
    if not ok then
      all_ok = false
      ui.warn(("after hook failed (exit %s): %s"):format(r and r.code or "?", cmd))
    end
  end
  return all_ok
end

--- migfix plan / migfix run
function M.command(ctx, opts, mode)
  local conn = ctx:connect { readonly = mode == "plan" }
  local st = ctx:state(conn)
  local items = M.decide(ctx, conn, st)
  if #items == 0 then
    if opts.json then
      ui.out(json.encode(doc_of(ctx, conn, st, {}, mode), { pretty = true }))
    else
      ui.out(ui.paint("no failed migrations: nothing to resolve", "green"))
      if #st.deploy.pending > 0 then ui.out(("%d pending migration(s): run migfix deploy"):format(#st.deploy.pending)) end
    end
    return ui.EXIT.OK
  end

  if mode == "plan" then
    if opts.json then
      ui.out(json.encode(doc_of(ctx, conn, st, items, mode), { pretty = true }))
    else
      ui.out(ui.paint(("PLAN for environment %s — dry run on a read-only connection: nothing is written"):format(ctx:project().env_name), "bold"))
      ui.out("")
      print_plan(ctx, conn, st, items)
    end
    pcall(function()
      local journal = journal_mod()
      for _, item in ipairs(items) do
        journal.append_file(ctx:project().journal_file, base_entry(ctx, item, "plan", "planned"))
      end
    end)
    for _, item in ipairs(items) do
      if not item.decision or item.decision.actions[#item.decision.actions].action == "refuse" then return ui.EXIT.ATTENTION end
      for _, a in ipairs(item.decision.actions) do if a.action == "refuse" then return ui.EXIT.ATTENTION end end
    end
    return ui.EXIT.OK
  end

  -- run
  local any_write = false
  for _, item in ipairs(items) do
    for _, a in ipairs(item.decision and item.decision.actions or {}) do if WRITES[a.action] then any_write = true end end
  end
  if not opts.json then
    ui.out(ui.paint(("RUN for environment %s"):format(ctx:project().env_name), "bold"))
    ui.out("")
  end
  if any_write then M.confirm(ctx, opts) end
  local rc = ui.EXIT.OK
  for k, item in ipairs(items) do
    if not opts.json then
      if k > 1 then ui.out("") end
      print_item_header(item)
    end
    M.record(ctx, conn, base_entry(ctx, item, "diagnosis", "ok"))
    if not item.decision then
      if not opts.json then
        for _, r in ipairs(item.reasons) do ui.out(("  %s: %s"):format(r.policy, r.why)) end
        ui.out("  no policy applies: nothing was done")
      end
      local e = base_entry(ctx, item, "refusal", "refused")
      e.details.reason = "no policy of the chain applies"
      M.record(ctx, conn, e)
      rc = ui.EXIT.ATTENTION
      break
    end
    local stop = false
    for i, a in ipairs(item.decision.actions) do
      local ok, msg = M.execute(ctx, conn, st, item, a)
      a.outcome = ok and "ok" or (a.action == "refuse" and "refused" or "failed")
      a.message = msg
      if not opts.json then
        local mark = ok and ui.paint("ok", "green") or ui.paint(a.action == "refuse" and "refused" or "FAILED", "red")
        ui.out(("  %d. %s — %s%s"):format(i, M.describe(ctx, conn, st, item, a), mark, msg and (": " .. msg) or ""))
        if a.action == "refuse" then
          if a.hint then ui.out("     hint: " .. a.hint) end
          for _, l in ipairs(objects_lines(a.objects)) do ui.out("       " .. l) end
        end
      end
      if not ok then
        rc = a.action == "refuse" and ui.EXIT.ATTENTION or ui.EXIT.FAILURE
        stop = true
        break
      end
    end
    if stop then break end
  end
  if rc == ui.EXIT.OK then
    if not run_after_hooks(ctx, conn, st) then rc = ui.EXIT.FAILURE end
  end
  if opts.json then
    local doc = doc_of(ctx, conn, st, items, mode)
    doc.exit = rc
    ui.out(json.encode(doc, { pretty = true }))
  elseif rc == ui.EXIT.OK then
    ui.out("")
    ui.out(ui.paint("resolved: prisma migrate deploy will no longer refuse (P3009)", "green"))
  end
  return rc
end

return M
