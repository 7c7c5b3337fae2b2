--- Lock-aware execution of a migration script for `migfix deploy`: the
--- session gets a lock_timeout, so a statement that would queue behind a
--- long transaction (and make every later reader of the table queue behind
--- it) gives up after the timeout with 55P03 instead; the script is then
--- retried after a pause, up to N times. Something `prisma migrate deploy`
--- cannot do: it sets no lock_timeout and never retries.
---
--- A retry is only safe when the failed attempt left nothing behind: the
--- file ran as one implicit transaction (no BEGIN/COMMIT of its own, no
--- statement that cannot run in a transaction block). Otherwise the first
--- 55P03 is returned as it is.
---
--- Environment: deploy = { lock_timeout = "2s", retries = 3, retry_pause = "10s" }.
local config = require "migfix.config"
local ui = require "migfix.ui"

local M = {}

M.DEFAULT_RETRIES = 3
M.DEFAULT_PAUSE_MS = 10000

local sleep_ms = require("migfix.sys").sleep_ms

--- Whether a failed attempt of `text` can simply be sent again: it left
--- nothing behind (migfix.execution: all or nothing under the native engine)
--- and has no transaction control of its own (after an error inside the
--- file's own BEGIN the session stays in an aborted transaction block).
---@param text string
---@param server_version integer?
---@return boolean
function M.atomic(text, server_version)
  local unit = require("migfix.effects").analyze(text)
  if not unit then return true end -- a syntax error fails before anything runs
  local ex = require("migfix.execution").of(unit, { unit = "file", server_version = server_version })
  return ex.all_or_nothing and #ex.tx_control == 0
end

--- Run `text` on conn with a session lock_timeout and bounded retries on 55P03.
---@param conn userdata
---@param text string
---@param o {lock_timeout: string|number, retries: integer?, pause_ms: integer?, sleep: function?, on_retry: function?}
---@return boolean|nil ok
---@return string|table err_or_result
---@return table? info {sqlstate, ..., attempts}
function M.run(conn, text, o)
  local rows, err, info = conn:query("SELECT current_setting('lock_timeout') AS v")
  if not rows then return nil, err, info end
  local previous = rows[1].v
  local ok1, serr, sinfo = conn:query("SELECT set_config('lock_timeout', $1, false)", tostring(o.lock_timeout))
  if not ok1 then return nil, "could not set lock_timeout: " .. serr, sinfo end
  local retries = o.retries or M.DEFAULT_RETRIES
  local may_retry = M.atomic(text, conn:server_version())
  local sleep = o.sleep or sleep_ms
  local attempt = 0
  local ok, res, rinfo
  while true do
    attempt = attempt + 1
    ok, res, rinfo = conn:exec(text)
    if ok then break end
    local lock_timeout = type(rinfo) == "table" and rinfo.sqlstate == "55P03"
    if not lock_timeout or not may_retry or attempt > retries then break end
    if o.on_retry then o.on_retry(attempt, retries, o.pause_ms or M.DEFAULT_PAUSE_MS, res) end
    sleep(o.pause_ms or M.DEFAULT_PAUSE_MS)
  end
  conn:query("SELECT set_config('lock_timeout', $1, false)", previous)
  if not ok then
    rinfo = type(rinfo) == "table" and rinfo or {}
    rinfo.attempts = attempt
    return nil, res, rinfo
  end
  return ok, res, { attempts = attempt }
end

--- A run_script(conn, text) for ledger_write.deploy_one, from the
--- environment's deploy table.
---@param cfg {lock_timeout: string|number, retries: integer?, retry_pause: string|number?}
---@param opts {sleep: function?, quiet: boolean?}?
---@return fun(conn: userdata, text: string): boolean|nil, any, table?
function M.runner(cfg, opts)
  opts = opts or {}
  if type(cfg) ~= "table" or cfg.lock_timeout == nil then
    error("lockwait.runner expects the deploy table: lockwait.runner { lock_timeout = \"2s\", retries = 3, retry_pause = \"10s\" }", 2)
  end
  local pause = config.millis(cfg.retry_pause, M.DEFAULT_PAUSE_MS)
  if pause == nil then error(("lockwait.runner: unrecognized retry_pause \"%s\""):format(tostring(cfg.retry_pause)), 2) end
  local o = {
    lock_timeout = cfg.lock_timeout, retries = cfg.retries or M.DEFAULT_RETRIES, pause_ms = pause, sleep = opts.sleep,
    on_retry = function(attempt, retries, ms, msg)
      if not opts.quiet then
        ui.warn(("could not get a lock within lock_timeout %s (%s): retry %d of %d in %.1f s"):format(
          tostring(cfg.lock_timeout), tostring(msg):match("^[^\n]*"), attempt, retries, ms / 1000),
          "a long transaction holds a conflicting lock; see pg_stat_activity / pg_locks")
      end
    end,
  }
  return function(conn, text) return M.run(conn, text, o) end
end

return M
