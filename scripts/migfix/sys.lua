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

local byte, find, sub = string.byte, string.find, string.sub

local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- Epoch milliseconds of an ISO-8601 time: "2025-01-02T03:04:05.123456Z",
--- a space for the T, an offset (+02:00, -0500), or a date alone (UTC).
---@param s string
---@return number|nil ms
function M.iso_ms(s)
  if type(s) ~= "string" then return nil end
  -- the form migfix.db gives a timestamptz, 2025-01-02T03:04:05Z or 2025-01-02T03:04:05.123456Z:
  -- the same result as the general parse below, without its captures (status reads 10,000 rows)
  local n = #s
  if (n == 20 or (n > 21 and find(s, "^%.%d+Z$", 20))) and find(s, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d") and byte(s, n) == 90 then
    local y1, y2, y3, y4, _, m1, m2, _, d1, d2, _, h1, h2, _, i1, i2, _, s1, s2 = byte(s, 1, 19)
    local fy = (y1 - 48) * 1000 + (y2 - 48) * 100 + (y3 - 48) * 10 + (y4 - 48)
    local fmo, fd = (m1 - 48) * 10 + (m2 - 48), (d1 - 48) * 10 + (d2 - 48)
    local fH, fMi, fS = (h1 - 48) * 10 + (h2 - 48), (i1 - 48) * 10 + (i2 - 48), (s1 - 48) * 10 + (s2 - 48)
    if fmo < 1 or fmo > 12 or fd < 1 or fd > 31 or fH > 23 or fMi > 59 or fS > 60 then return nil end
    local secs = days_from_civil(fy, fmo, fd) * 86400 + fH * 3600 + fMi * 60 + fS
    return secs * 1000 + (n > 20 and tonumber("0." .. sub(s, 21, n - 1)) * 1000 or 0)
  end
  local y, mo, d, rest = s:match("^%s*(%d%d%d%d)%-(%d%d)%-(%d%d)(.-)%s*$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local H, Mi, S, frac, tz = 0, 0, 0, nil, ""
  if rest ~= "" then
    local h2, m2, tail = rest:match("^[Tt ](%d%d):(%d%d)(.*)$")
    if not h2 then return nil end
    H, Mi = tonumber(h2), tonumber(m2)
    local s2, t2 = tail:match("^:(%d%d)(.*)$")
    if s2 then S, tail = tonumber(s2), t2 end
    local f, t3 = tail:match("^[.,](%d+)(.*)$")
    if f then frac, tail = f, t3 end
    tz = tail
  end
  local off = 0
  if not (tz == "" or tz == "Z" or tz == "z" or tz:match("^%s*UTC$")) then
    local sign, oh, om = tz:match("^%s*([+-])(%d%d):?(%d%d)$")
    if not sign then sign, oh = tz:match("^%s*([+-])(%d%d)$"); om = "00" end
    if not sign then return nil end
    off = (tonumber(oh) * 60 + tonumber(om)) * (sign == "+" and 1 or -1)
  end
  if mo < 1 or mo > 12 or d < 1 or d > 31 or H > 23 or Mi > 59 or S > 60 then return nil end
  local secs = days_from_civil(y, mo, d) * 86400 + H * 3600 + Mi * 60 + S - off * 60
  return secs * 1000 + (frac and tonumber("0." .. frac) * 1000 or 0)
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
