--- migfix.sys — the few operating-system facts the library needs, from
--- luaposix (a hard dependency): clocks, sleeping, terminals, identity.
-- @module migfix.sys
local ptime = require "posix.time"
local unistd = require "posix.unistd"

local M = {}

--- Monotonic milliseconds (for durations; never for timestamps).
---@return number
function M.now_ms()
  local ts = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return ts.tv_sec * 1000 + ts.tv_nsec / 1e6
end

--- Sleep for ms milliseconds (interrupted sleeps are resumed).
---@param ms number
function M.sleep_ms(ms)
  if not ms or ms <= 0 then return end
  local req = { tv_sec = math.floor(ms / 1000), tv_nsec = math.floor((ms % 1000) * 1e6) }
  while true do
    local ok, _, _, rem = ptime.nanosleep(req)
    if ok or type(rem) ~= "table" then return end
    req = rem
  end
end

--- UTC wall-clock time, ISO-8601 with microseconds, as Prisma's
--- chrono::Utc::now() and the journal write it: 2025-01-02T03:04:05.123456Z
---@return string
function M.utc_now()
  local ts = ptime.clock_gettime(ptime.CLOCK_REALTIME)
  return os.date("!%Y-%m-%dT%H:%M:%S", ts.tv_sec) .. (".%06dZ"):format(ts.tv_nsec // 1000)
end

--- Whether file descriptor fd (0 stdin, 1 stdout, 2 stderr) is a terminal.
---@param fd integer
---@return boolean
function M.isatty(fd)
  return unistd.isatty(fd) == 1
end

--- This process's id.
function M.pid() return unistd.getpid() end

--- The machine's host name (uname nodename).
function M.hostname()
  local ok, uts = pcall(require, "posix.sys.utsname")
  local u = ok and uts.uname and uts.uname()
  return (u and u.nodename) or unistd.gethostname and unistd.gethostname() or "?"
end

--- The current working directory.
function M.cwd() return unistd.getcwd() end

return M
