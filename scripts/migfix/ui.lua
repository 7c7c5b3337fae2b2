--- Output helpers: PostgreSQL-style messages, aligned tables, colours (TTY
--- only, never with NO_COLOR), structured errors with exit codes.
local M = {}

--- the exit codes, from the C core (include/migfix.h): OK 0, ATTENTION 1,
--- USAGE 2, CONNECT 3, FAILURE 4
M.EXIT = require "migfix.exit"

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

--- Print a command's JSON document (pretty), or hand it to `M.doc_sink`
--- when one is set: a fleet worker takes the document as it is instead of
--- printing it and reading it back.
function M.json(doc)
  if M.doc_sink then return M.doc_sink(doc) end
  M.out(require("migfix.json").encode(doc, { pretty = true }))
end

--- The JSON form of an error, on stdout, for commands run with --json:
--- {"error": {"message", "detail", "hint", "code" (the exit code), "prisma_code", "sqlstate"}}.
function M.print_json_error(e)
  local json = require "migfix.json"
  local function v(x) if x == nil then return json.null end return x end
  local doc = { error = { message = v(e.message), detail = v(e.detail), hint = v(e.hint), code = e.code or M.EXIT.FAILURE,
                          prisma_code = v(e.prisma_code), sqlstate = v(e.sqlstate) } }
  M.json(doc)
end

function M.warn(msg, hint)
  emit(M.paint("warning", "yellow"), msg)
  emit("hint", hint)
end

function M.out(...)
  local n = select("#", ...)
  if n == 1 then
    io.stdout:write(redact(tostring((...))), "\n")
    return
  end
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = redact(tostring(parts[i])) end
  io.stdout:write(table.concat(parts), "\n")
end

--- display width of a UTF-8 string (code points; good enough for names)
local function width(s)
  s = tostring(s)
  if not s:find("[\128-\255]") then return #s end
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end
M.width = width

--- Print rows as an aligned table. cols = { {key=, title=, color=fn(row)} }.
--- Every cell is turned into text and measured once; the table is written
--- in one piece.
function M.table(cols, rows, indent)
  indent = indent or ""
  local ncol, nrow = #cols, #rows
  local w, texts, widths = {}, {}, {}
  for i, c in ipairs(cols) do w[i] = width(c.title) end
  -- column-major: texts[i][r], widths[i][r] (nil width: the text is ASCII)
  for i = 1, ncol do
    local key, col, cw, wi = cols[i].key, {}, {}, w[i]
    for r = 1, nrow do
      local v = rows[r][key]
      local t = v == nil and "" or tostring(v)
      local n = #t
      if t:find("[\128-\255]") then n = width(t); cw[r] = n end
      if n > wi then wi = n end
      col[r] = t
    end
    texts[i], widths[i], w[i] = col, cw, wi
  end
  local rep, concat, paint = string.rep, table.concat, M.paint
  local color = M.color
  local out, parts = {}, {}
  local function finish()
    out[#out + 1] = indent .. (concat(parts, "  ", 1, ncol):gsub("%s+$", ""))
  end
  for i, c in ipairs(cols) do
    local t = c.title
    parts[i] = (color and paint(t, "bold") or t) .. (i < ncol and rep(" ", w[i] - width(t)) or "")
  end
  finish()
  for r = 1, nrow do
    local row = rows[r]
    for i = 1, ncol do
      local t = texts[i][r]
      local pad = i < ncol and w[i] - (widths[i][r] or #t) or 0
      if color then
        local fn = cols[i].color
        local c = fn and fn(row)
        if c then t = paint(t, c) end
      end
      parts[i] = pad > 0 and (t .. rep(" ", pad)) or t
    end
    finish()
  end
  M.out(concat(out, "\n"))
end

--- short form of a checksum or id for tables
function M.short(s, n)
  if type(s) ~= "string" then return "" end
  n = n or 8
  return #s > n and s:sub(1, n) or s
end

return M
