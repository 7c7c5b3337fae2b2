--- migfix.resolve — the one resolution pipeline behind `migfix plan`,
--- `migfix run` and the chain step of `migfix simulate`:
---
---   evidence.prepare ─▶ decide (policy chain + environment rules) ─▶ actions
---
--- plan:     read-only connection; evidence, decision; nothing executes.
--- run:      Prisma's advisory lock FIRST, then the evidence is read and the
---           decision made on what the lock holds, then the actions execute
---           (each write conditional on the rows it was decided from, the
---           migration diagnosed again after it), then the lock is released
---           and the environment's `after` hooks run.
--- simulate: the evidence and decision of the REAL database (read-only), the
---           same actions executed on a scratch copy (backup rehearsed).
--- The library prints nothing: commands get the result and an on_step callback.
-- @module migfix.resolve
local ui = require "migfix.ui"
local policy = require "migfix.policy"
local evidence = require "migfix.evidence"
local actions = require "migfix.actions"
local lw = require "migfix.ledger_write"

local M = {}

--- Where policies are looked for: policy_paths, then the shipped policies/.
function M.policy_paths(ctx)
  local p = ctx:project()
  local paths = {}
  for _, d in ipairs(p.policy_paths) do paths[#paths + 1] = d end
  paths[#paths + 1] = ctx.info.home .. "/policies"
  return paths
end

--- The environment's chain, loaded and checked.
function M.chain(ctx)
  return policy.load_chain(ctx:project().policies, M.policy_paths(ctx))
end

--- Backup scopes: "full" holds everything; "schema" (DDL, no rows) and
--- "ledger" (the _prisma_migrations and journal rows) hold different things.
local function covers(got, need) return got == need or got == "full" end

--- The smallest scope that holds both.
function M.scope_join(a, b)
  if covers(a, b) then return a end
  if covers(b, a) then return b end
  return "full"
end

--- The evidence the environment's chain and deploy need, read on conn
--- (plan, run and simulate all decide from this). o.pending adds the
--- pending migrations (their lint, for lint_before_deploy); o.st is a ledger
--- state already read on conn.
---@return table E, table chain
function M.prepare(ctx, conn, o)
  o = o or {}
  local chain = M.chain(ctx)
  return evidence.prepare(ctx, conn, { needs = policy.needs(chain), pending = o.pending, st = o.st }), chain
end

--- Apply the environment's rules to a decision: forbidden actions become a
--- refusal; a required backup is added before the first write, and a
--- smaller scope a policy asked for is raised to the required one.
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
    local need = p.backup.scope or "full"
    local has_backup = false
    for i, a in ipairs(decision.actions) do
      if a.action == "backup" then
        has_backup = true
        local got = a.scope or need
        local wanted = M.scope_join(got, need)
        if wanted ~= got then a.raised_from, a.scope = got, wanted end
      end
      if actions.ACTIONS[a.action] and actions.ACTIONS[a.action].writes and not has_backup then
        table.insert(decision.actions, i, { action = "backup", scope = need, reason = "required by environment " .. p.env_name, added = true })
        break
      end
    end
  end
  return decision
end

--- Decide for every failed migration of the evidence.
---@return table[] items { {diag, m, decision|nil, reasons} }
function M.decide(ctx, E, chain)
  local out = {}
  for _, it in ipairs(E.items) do
    local m = it.m
    local decision, reasons
    if m.in_progress then
      local h = m.in_progress
      reasons = { { policy = "(migfix)", why = ("a deploy is in progress: pid %s (application \"%s\") holds Prisma's lock since %s"):format(
        tostring(h.pid), tostring(h.application_name), tostring(h.since)) } }
    else
      decision, reasons = policy.evaluate(chain, m, E.env)
      if decision then decision = M.apply_rules(ctx, decision) end
    end
    out[#out + 1] = { diag = it.diag, m = m, decision = decision, reasons = reasons or {} }
  end
  return out
end

--- A fingerprint of a decision list (what a confirmation agreed to).
function M.fingerprint(items)
  local parts = {}
  for _, item in ipairs(items) do
    local acts = {}
    for _, a in ipairs(item.decision and item.decision.actions or {}) do acts[#acts + 1] = a.action end
    parts[#parts + 1] = ("%s:%s:%s:%s"):format(item.m.name, item.m.verdict,
      item.decision and item.decision.policy.name or "-", table.concat(acts, ","))
  end
  return table.concat(parts, ";")
end

--- Whether any decided action writes.
function M.writes(items)
  for _, item in ipairs(items) do if actions.writes(item.decision) then return true end end
  return false
end

--- Whether every item has a decision that does not refuse.
function M.all_resolvable(items)
  for _, item in ipairs(items) do
    if not item.decision then return false end
    for _, a in ipairs(item.decision.actions) do if a.action == "refuse" then return false end end
  end
  return true
end

local function run_after_hooks(R, on_step)
  local p = R.p
  local results = {}
  if #p.after == 0 or R.mode == "simulate" then return true, results end
  local proc = require "migfix.proc"
  local sys = require "migfix.sys"
  local all_ok = true
  for _, cmd in ipairs(p.after) do
    local t0 = sys.now_ms()
    local r = proc.run { argv = { "/bin/sh", "-c", cmd } }
    local ok = r and r.code == 0
    local res = { command = cmd, exit = r and r.code, ok = ok, ms = math.floor(sys.now_ms() - t0 + 0.5),
                  stdout = r and r.stdout, stderr = r and r.stderr }
    results[#results + 1] = res
    R:record { action = "after_hook", outcome = ok and "ok" or "failed", environment = p.env_name,
               command = R.ctx.command, details = { hook = cmd, exit = r and r.code, duration_ms = res.ms } }
    if on_step then on_step("after_hook", res) end
    if not ok then all_ok = false end
  end
  return all_ok, results
end

--- Execute the decided actions of every item, in order, stopping at the
--- first refusal or failure. Returns the exit code.
local function execute_items(R, items, on_step, started_at)
  local rc = ui.EXIT.OK
  local sys = require "migfix.sys"
  for _, item in ipairs(items) do
    if on_step then on_step("item", item, nil, nil, R) end
    R:record(R:entry_of(item, "diagnosis", "ok", { details = require("migfix.report").journal_details(item, started_at) }))
    if not item.decision then
      local why = item.m.in_progress and "a deploy is in progress" or "no policy of the chain applies"
      R:record(R:entry_of(item, "refusal", "refused", { details = { reason = why } }))
      item.outcome = "refused"
      return ui.EXIT.ATTENTION
    end
    for i, a in ipairs(item.decision.actions) do
      if on_step then on_step("action", item, i, a, R) end
      R.step = { index = i, t0 = sys.now_ms() }
      local res = table.pack(pcall(actions.execute, R, item, a))
      R.step = nil
      if not res[1] then
        a.outcome, a.message = "failed", ui.is_error(res[2]) and res[2].message or tostring(res[2])
        local jr = require("migfix.journal")
        jr.note_failure(R.p.journal_file, R:entry_of(item, a.action, "failed"), res[2])
        if on_step then on_step("done", item, i, a, R) end
        error(res[2], 0)
      end
      local ok, msg, outcome = res[2], res[3], res[4]
      a.outcome, a.message = outcome, msg
      if on_step then on_step("done", item, i, a, R) end
      if not ok then
        item.outcome = a.outcome
        return a.action == "refuse" and ui.EXIT.ATTENTION or ui.EXIT.FAILURE
      end
    end
    item.outcome = "ok"
  end
  return rc
end

---The pipeline.
---@param ctx table the command context
---@param opts {mode: "plan"|"run"|"simulate", conn: userdata?, evidence: table?,
---             runner: function?, on_step: function?, confirm: function?, expect: string?}
---  evidence: decide from this (simulate: the real database's, read before the copy) instead of reading it on conn.
---  confirm(items) is called (run) after the decision, before anything is written, when some action writes;
---  it returns true or raises. expect: a fingerprint the decision must equal (an interactive confirmation).
---@return table result {mode, items, E, R, rc, after}
function M.run(ctx, opts)
  local mode = opts.mode
  local started_at = require("migfix.journal").now()
  local chain = M.chain(ctx)
  local needs = policy.needs(chain)
  local conn = opts.conn or ctx:connect { readonly = mode == "plan" }
  local result = { mode = mode, started_at = started_at }

  local function decide(st)
    local E = opts.evidence or evidence.prepare(ctx, conn, { needs = needs, st = st })
    result.E = E
    result.items = M.decide(ctx, E, chain)
    -- the SQL of every action as it stands before anything runs: what plan
    -- shows is what run executes
    for _, item in ipairs(result.items) do
      for _, a in ipairs(item.decision and item.decision.actions or {}) do
        local ok, sql = pcall(actions.sql, result.R, item, a)
        a.sql = ok and sql or { "-- refused: " .. (ui.is_error(sql) and sql.message or tostring(sql)) }
      end
    end
    return result.items
  end

  if mode == "plan" then
    result.R = actions.context(ctx, conn, "plan")
    result.R.st = ctx:state(conn)
    require("migfix.ledger").refuse_if_bad(result.R.st)  -- what run would refuse
    decide(result.R.st)
    result.rc = (#result.items == 0 or M.all_resolvable(result.items)) and ui.EXIT.OK or ui.EXIT.ATTENTION
    return result
  end

  local R = actions.context(ctx, conn, mode, { runner = opts.runner })
  result.R = R
  result.rc = lw.with_lock(conn, actions.lock_ms(R), function()
    local st = R:refresh()
    require("migfix.ledger").refuse_if_bad(st)
    local items = decide(st)
    if #items == 0 then return ui.EXIT.OK end
    if opts.expect and M.fingerprint(items) ~= opts.expect then
      ui.fail { message = "the database changed since the plan you confirmed: nothing was written",
                detail = "confirmed: " .. opts.expect .. "\nnow:       " .. M.fingerprint(items),
                hint = "run migfix run again and review the new plan", code = ui.EXIT.ATTENTION }
    end
    if opts.confirm and M.writes(items) then opts.confirm(items) end
    return execute_items(R, items, opts.on_step, started_at)
  end)
  if result.rc == ui.EXIT.OK and #(result.items or {}) > 0 then
    local ok, hooks = run_after_hooks(R, opts.on_step)
    result.after = hooks
    if not ok then result.rc = ui.EXIT.FAILURE end
  end
  return result
end

return M
