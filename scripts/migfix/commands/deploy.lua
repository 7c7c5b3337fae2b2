--- migfix deploy: apply pending migrations as prisma migrate deploy does.
local ui = require "migfix.ui"
local json = require "migfix.json"
local ledger = require "migfix.ledger"
local lw = require "migfix.ledger_write"
local resolve = require "migfix.resolve"
local config = require "migfix.config"

local C = {
  name = "deploy",
  summary = "apply pending migrations Prisma-compatibly (refuses while anything failed, like P3009)",
  usage = "deploy [--yes] [--json]",
  description = [[Applies the pending migrations in Prisma's order, writing _prisma_migrations exactly as
`prisma migrate deploy` does: under pg_advisory_lock(72707369), one started row per migration,
the file sent as ONE query (one implicit transaction), then applied_steps_count and finished_at,
or the error in logs and a stop. Refuses while a failed migration is recorded (P3009) and on a
non-empty schema without a ledger (P3005). Each migration is journaled.
With lint_before_deploy = true in the environment, a migration with error-level lint findings
is not run (exit 1, the findings and the proposed split). With deploy = { lock_timeout = "2s",
retries = 3, retry_pause = "10s" }, each file waits at most lock_timeout for its locks and is
retried on 55P03 instead of queueing behind a long transaction.]],
  options = {
    { long = "yes", short = "y", help = "confirm writing when the environment asks" },
    { long = "json", help = "print a JSON document" },
  },
}

function C.run(ctx, opts)
  require("migfix.lint_hook").install(ctx)
  local p = ctx:project()
  if p.forbid.deploy then
    ui.fail { message = ("environment \"%s\" forbids deploy"):format(p.env_name), code = ui.EXIT.ATTENTION }
  end
  local conn = ctx:connect {}
  local st = ctx:state(conn)
  local report = { applied = {}, pending = st.deploy.pending or {} }
  if st.deploy.refuses then
    local lines = ledger.p3009_lines(st.deploy.failed)
    ui.fail { message = "P3009: found failed migrations in the target database, new migrations will not be applied",
              detail = table.concat(lines, "\n"), hint = "run migfix diagnose, then migfix plan / migfix run", code = ui.EXIT.ATTENTION }
  end
  if #st.deploy.pending == 0 then
    if opts.json then ui.out(json.encode({ applied = json.array({}), pending = json.array({}) }, { pretty = true }))
    else ui.out("No pending migrations to apply.") end
    return ui.EXIT.OK
  end
  require("migfix.resolve").confirm(ctx, opts)
  if ctx.before_deploy then ctx.before_deploy(ctx, conn, st) end
  local rc = ui.EXIT.OK
  lw.with_lock(conn, config.millis(p.timeouts.advisory_lock, 10000), function()
    local l = assert(ledger.read(conn, st.schema))
    if not l.exists then
      lw.check_empty_schema(conn, st.schema)
      assert(conn:exec("CREATE SCHEMA IF NOT EXISTS " .. conn:quote_ident(st.schema)))
      assert(conn:exec(lw.create_table_sql(conn, st.schema)))
      l = assert(ledger.read(conn, st.schema))
    end
    -- re-read under the lock, as Prisma does: a deploy or resolve that held
    -- the lock while we waited may have applied or failed migrations since
    local fresh = ledger.classify(st.locals, l)
    if fresh.deploy.refuses then
      ui.fail { message = "P3009: found failed migrations in the target database, new migrations will not be applied",
                detail = table.concat(ledger.p3009_lines(fresh.deploy.failed), "\n"),
                hint = "a concurrent deploy failed while migfix waited for the lock; run migfix diagnose", code = ui.EXIT.ATTENTION }
    end
    report.pending = fresh.deploy.pending or {}
    for _, name in ipairs(report.pending) do
      local e = fresh.by_name[name]
      local loc = e["local"]
      if not loc.has_sql then
        ui.fail { message = ("P3015: could not find the migration file at %s/migration.sql"):format(loc.path),
                  hint = "delete the directory or restore the migration file", code = ui.EXIT.FAILURE }
      end
      if not opts.json then ui.out(("Applying migration `%s`"):format(name)) end
      local item = { m = { name = name, verdict = "pending", summary = "deploy", counts = {}, error = {}, file = {} },
                     decision = { policy = { name = "deploy" } } }
      local t0 = require("migfix.proc").now()
      local ok, res = lw.deploy_one(conn, st.schema, name, loc.text, function(before, after, ok2, r)
        local journal = require "migfix.journal"
        journal.ensure(conn, p.journal_schema)
        local entry = { action = "deploy", outcome = ok2 and "ok" or "failed", environment = p.env_name, command = "deploy",
                        migration = name, ledger_schema = st.schema, before = json.array(before), after = json.array(after),
                        details = r.error and { error = r.error, sqlstate = r.info and r.info.sqlstate } or {} }
        -- for migfix report: the time so far and the file that ran
        entry.details.duration_ms = math.floor(require("migfix.proc").now() - t0 + 0.5)
        entry.details.script = { path = loc.sql_path, checksum = loc.checksum }
        local stored, jerr = journal.append(conn, p.journal_schema, entry)
        if not stored then
          ui.fail { message = "could not write the journal: " .. tostring(jerr), hint = "the ledger update was rolled back with it", code = ui.EXIT.FAILURE }
        end
        item.journal_entry = stored
      end, { run_script = ctx.run_script })
      if item.journal_entry then pcall(require("migfix.journal").append_file, p.journal_file, item.journal_entry) end
      if not ok then
        report.failed = { name = name, error = res.error, sqlstate = res.info and res.info.sqlstate }
        if not opts.json then
          ui.print_error { message = ("P3018: migration %s failed to apply: %s%s"):format(name, res.info and res.info.sqlstate and (res.info.sqlstate .. " ") or "", res.error),
                           detail = res.info and res.info.detail,
                           hint = "the failure is recorded as Prisma records it; run migfix diagnose" }
        end
        rc = ui.EXIT.ATTENTION
        return
      end
      table.insert(report.applied, name)
    end
  end)
  if opts.json then
    ui.out(json.encode({ applied = json.array(report.applied), failed = report.failed or json.null }, { pretty = true }))
  elseif rc == ui.EXIT.OK then
    ui.out(("All migrations have been successfully applied (%d)."):format(#report.applied))
  end
  return rc
end

return C
