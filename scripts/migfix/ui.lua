--- Output helpers: PostgreSQL-style messages, aligned tables, colours (TTY
--- only, never with NO_COLOR), structured errors with exit codes.
local M = {}

M.EXIT = { OK = 0, ATTENTION = 1, USAGE = 2, CONNECT = 3, FAILURE = 4 }

--- The one hint for a malformed database URL.
M.URL_HINT = "a database URL looks like postgresql://USER@HOST:5432/DB?schema=public, with :PASSWORD after USER when one is needed"

local db_ok, db = pcall(require, "migfix.db")
local function redact(s)
  s = tostring(s)
  -- db.redact takes C strings: text with a NUL byte is redacted piece by piece (found by make fuzz)
  if s:find("\0", 1, true) then
    local parts = {}
    for piece in (s .. "\0"):gmatch("(.-)%z") do parts[#parts + 1] = redact(piece) end
    return table.concat(parts, "\0")
  end
  if db_ok and db.redact then return db.redact(s) end
  return (s:gsub("(://[^:/@%s]*:)[^@/%s]*@", "%1****@"))
end
M.redact = redact

local isatty = false
do
  local ok, posix = pcall(require, "posix.unistd")
  if ok and posix.isatty then isatty = posix.isatty(1) == 1 end
end
M.color = isatty and (os.getenv("NO_COLOR") or "") == "" and os.getenv("TERM") ~= "dumb"

local codes = { red = "31", green = "32", yellow = "33", blue = "34", bold = "1", dim = "2", cyan = "36" }
function M.paint(s, c)
  if not M.color or not codes[c] then return s end
  return "\27[" .. codes[c] .. "m" .. s .. "\27[0m"
end

--- A structured error: raised by commands, caught by the CLI, printed as
--- "migfix: error: ..." plus detail/hint lines, exit code `code`.
local Err = {}
Err.__index = Err
Err.__tostring = function(e) return e.message end
M.Error = Err

---@param t {message:string, detail?:string, hint?:string, code?:integer}
function M.fail(t)
  if type(t) == "string" then t = { message = t } end
  t.code = t.code or M.EXIT.FAILURE
  error(setmetatable(t, Err), 0)
end

function M.is_error(e) return getmetatable(e) == Err end

local function emit(kind, text)
  if text == nil or text == "" then return end
  for line in (redact(text) .. "\n"):gmatch("(.-)\n") do
    io.stderr:write("migfix: ", kind, ": ", line, "\n")
  end
end

function M.print_error(e)
  emit(M.paint("error", "red"), e.message)
  emit("detail", e.detail)
  emit("hint", e.hint)
end

--- The JSON form of an error, on stdout, for commands run with --json:
--- {"error": {"message", "detail", "hint", "code" (the exit code), "prisma_code", "sqlstate"}}.
function M.print_json_error(e)
  local json = require "migfix.json"
  local function v(x) if x == nil then return json.null end return x end
  local doc = { error = { message = v(e.message), detail = v(e.detail), hint = v(e.hint), code = e.code or M.EXIT.FAILURE,
                          prisma_code = v(e.prisma_code), sqlstate = v(e.sqlstate) } }
  M.out(json.encode(doc, { pretty = true }))
end

function M.warn(msg, hint)
  emit(M.paint("warning", "yellow"), msg)
  emit("hint", hint)
end

function M.out(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = redact(tostring(parts[i])) end
  io.stdout:write(table.concat(parts), "\n")
end

--- display width of a UTF-8 string (code points; good enough for names)
local function width(s)
  local _, n = tostring(s):gsub("[^\128-\191]", "")
  return n
end

--- Print rows as an aligned table. cols = { {key=, title=, color=fn(row)} }
function M.table(cols, rows, indent)
  indent = indent or ""
  local w = {}
  for i, c in ipairs(cols) do
    w[i] = width(c.title)
    for _, r in ipairs(rows) do
      local v = r[c.key]
      w[i] = math.max(w[i], width(v == nil and "" or tostring(v)))
    end
  end
  local function line(vals, paint_fn)
    local parts = {}
    for i, v in ipairs(vals) do
      local s = tostring(v)
      local pad = (i < #vals) and string.rep(" ", w[i] - width(s)) or ""
      if paint_fn and paint_fn[i] then s = M.paint(s, paint_fn[i]) end
      parts[#parts + 1] = s .. pad
    end
    M.out(indent, (table.concat(parts, "  "):gsub("%s+$", "")))
  end
  local titles = {}
  for i, c in ipairs(cols) do titles[i] = c.title end
  line(titles, setmetatable({}, { __index = function() return "bold" end }))
  for _, r in ipairs(rows) do
    local vals, paints = {}, {}
    for i, c in ipairs(cols) do
      local v = r[c.key]
      vals[i] = v == nil and "" or tostring(v)
      paints[i] = c.color and c.color(r) or nil
    end
    line(vals, paints)
  end
end

--- short form of a checksum or id for tables
function M.short(s, n)
  if type(s) ~= "string" then return "" end
  n = n or 8
  return #s > n and s:sub(1, n) or s
end

return M
