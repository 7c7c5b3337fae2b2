--- migfix.deploy — `prisma migrate deploy`, in Prisma's order: Prisma's
--- advisory lock first; then the ledger table (P3005 on a non-empty schema
--- without one), the ledger read once, P3009 while anything failed; then
--- every pending migration (actions.deploy: the started row, the file,
--- finished_at or logs, journaled; diagnosed again after it). With
--- lint_before_deploy, a pending migration with error-level findings is not
--- run. Used by `migfix deploy` and by the deploy step of `migfix simulate`.
-- @module migfix.deploy
local ui = require "migfix.ui"
local ledger = require "migfix.ledger"
local lw = require "migfix.ledger_write"
local actions = require "migfix.actions"
local evidence = require "migfix.evidence"

local M = {}

local function p3009(st, hint)
  ui.fail { message = "P3009: found failed migrations in the target database, new migrations will not be applied",
            detail = table.concat(ledger.p3009_lines(st.deploy.failed), "\n"),
            hint = hint or "run migfix diagnose, then migfix plan / migfix run", code = ui.EXIT.ATTENTION, prisma_code = "P3009" }
end

---Deploy the pending migrations.
---@param ctx table
---@param opts {mode: "run"|"simulate"?, conn: userdata?, runner: function?, confirm: function?,
---             evidence: table?, on_migration: function?}
---  evidence: the lint of the pending migrations already read (simulate: on the real database)
---  on_migration(name, phase, info): phase "start" | "applied" | "failed"
---@return table result {applied = {names}, pending = {names}, failed = {name, error, sqlstate}|nil, rc}
function M.run(ctx, opts)
  opts = opts or {}
  local p = ctx:project()
  if p.forbid.deploy then
    ui.fail { message = ("environment \"%s\" forbids deploy"):format(p.env_name), code = ui.EXIT.ATTENTION }
  end
  local conn = opts.conn or ctx:connect {}
  local R = actions.context(ctx, conn, opts.mode or "run", { runner = opts.runner })
  local result = { applied = {}, pending = {}, rc = ui.EXIT.OK, R = R }
  lw.with_lock(conn, actions.lock_ms(R), function()
    lw.ensure_table(conn, R.schema)
    local st = R:refresh()
    ledger.refuse_if_bad(st)
    if st.deploy.refuses then p3009(st) end
    result.pending = st.deploy.pending or {}
    if #result.pending == 0 then return end
    -- every pending file parses before anything is written (an unterminated statement: exit 2, file:line)
    for _, name in ipairs(result.pending) do local l = st.by_name[name]["local"]; if l.has_sql then require("migfix.diagnose").analyze(l.sql_path, l.text) end end
    if opts.confirm then opts.confirm(result.pending) end
    if p.env.lint_before_deploy then
      local known = {}
      for _, rec in ipairs(opts.evidence and opts.evidence.pending or {}) do known[rec.name] = rec end
      local missing = false
      for _, name in ipairs(result.pending) do if not (known[name] and known[name].lint) then missing = true end end
      if missing then
        for _, rec in ipairs(evidence.prepare(ctx, conn, { names = false, pending = true, st = st }).pending) do known[rec.name] = rec end
      end
      for _, name in ipairs(result.pending) do
        local rec = known[name] or { name = name }
        local ev = rec.lint
        if ev and ev.errors > 0 then
          ui.fail { message = ("migration \"%s\" is not run: %d error-level lint finding%s"):format(rec.name, ev.errors, ev.errors == 1 and "" or "s"),
                    detail = table.concat(evidence.lint_lines(ev, rec.name), "\n"),
                    hint = ("review `migfix split %s`, then `migfix split %s --write` and deploy again; nothing was applied"):format(rec.name, rec.name),
                    code = ui.EXIT.ATTENTION, lint = ev }
        end
      end
    end
    for _, name in ipairs(result.pending) do
      local loc = st.by_name[name]["local"]
      if not loc.has_sql then
        ui.fail { message = ("P3015: could not find the migration file at %s/migration.sql"):format(loc.path),
                  hint = "delete the directory or restore the migration file", code = ui.EXIT.FAILURE }
      end
      if opts.on_migration then opts.on_migration(name, "start") end
      local item = { m = { name = name, verdict = "pending", summary = "deploy" },
                     policy = "deploy" }
      local ok, msg = actions.execute(R, item, { action = "deploy" })
      if not ok then
        local res = item.deploy_result or {}
        result.failed = { name = name, error = res.error or msg, sqlstate = res.info and res.info.sqlstate,
                          detail = res.info and res.info.detail, message = msg, verification = item.verification,
                          verify_failed = not res.error and item.verification ~= nil and not item.verification.ok }
        if opts.on_migration then opts.on_migration(name, "failed", result.failed) end
        -- a script that failed is recorded as Prisma records it (exit 1);
        -- a script that succeeded but does not verify is migfix's failure (exit 4)
        result.rc = res.error and ui.EXIT.ATTENTION or ui.EXIT.FAILURE
        return
      end
      result.applied[#result.applied + 1] = name
      if opts.on_migration then opts.on_migration(name, "applied", { message = msg, verification = item.verification }) end
    end
  end)
  return result
end

return M
