--- migfix.errclass — read `_prisma_migrations.logs` and say what kind of
--- failure it records.
---
--- parse(logs) -> { sqlstate, message, class, detail, hint, object, object_kind,
---                  relation, source, no_logs, inferred }
--- engine(logs) -> "adapter" | "native" | nil
---
--- Forms understood:
---  * native P3018 text: "Database error code: 23505\n\nDatabase error:\nERROR: ...\nDETAIL: ...",
---    followed by a span trace ("   0: schema_core::... at ...rs:NN") and sometimes a
---    "Position:" block and a Rust `DbError { ... }` dump;
---  * the driver-adapter (wasm) form: "external connector error\nError querying the
---    database: ERROR: ..." — or, for the errors @prisma/adapter-pg maps to a kind of
---    its own, Prisma's text of that kind without the SQLSTATE: "Unique constraint
---    failed: <name>", "Null constraint failed: [(<columns>)]", "Foreign key constraint
---    failed: <name>", "Value out of range error. <cause>", "The value provided for
---    column <c> is too long.", "unknown variant `InvalidInputValue`" (22P02, whose
---    message the wasm engine loses), connection and timeout texts (ADAPTER below);
---  * bare PostgreSQL text ("ERROR:  relation "x" already exists");
---  * NULL or empty logs: Prisma never got to write the error (the process was
---    killed or lost its connection). Class "transient", and the script may
---    well have committed: only the catalog can tell (prisma/prisma#12999).
-- @module migfix.errclass
local M = {}

--- Only the head of `logs` is read (the P3018 text puts the error first):
--- parse is linear and bounded whatever the size of the column.
M.MAX_TEXT = 16384
--- The message (the first line of the error) is cut to this many bytes.
M.MAX_MESSAGE = 1024

M.NO_LOGS_MESSAGE = "no logs: the process was killed or lost its connection before recording the error"

M.CLASSES = { "transient", "data", "schema", "syntax", "permission", "transaction", "unknown" }

local EXACT = {
  ["57014"] = "transient", ["57P01"] = "transient", ["57P02"] = "transient", ["57P03"] = "transient",
  ["40001"] = "transient", ["40P01"] = "transient", ["55P03"] = "transient", ["53300"] = "transient",
  ["42601"] = "syntax",
  ["42501"] = "permission",
  ["25001"] = "transaction", ["55P04"] = "transaction", ["25P02"] = "transaction", ["25006"] = "transaction",
  ["2BP01"] = "schema",
}

--- class of a SQLSTATE (or Prisma P-code)
---@param code string?
---@return string class
function M.class_of(code)
  if type(code) ~= "string" then return "unknown" end
  if EXACT[code] then return EXACT[code] end
  local c2 = code:sub(1, 2)
  if c2 == "08" then return "transient" end
  if c2 == "23" or c2 == "22" then return "data" end
  if c2 == "28" then return "permission" end
  if c2 == "42" then return "schema" end
  if code == "P1001" or code == "P1002" or code == "P1008" or code == "P1017" then return "transient" end
  return "unknown"
end

-- message text -> SQLSTATE, first match wins (more specific first)
local INFER = {
  { "duplicate key value violates unique constraint", "23505" },
  { "could not create unique index", "23505" },
  { "column .- of relation .- already exists", "42701" },
  { "schema .- already exists", "42P06" },
  { "relation .- already exists", "42P07" },
  { "already exists", "42710" },
  { "column .- does not exist", "42703" },
  { "relation .- does not exist", "42P01" },
  { "table .- does not exist", "42P01" },
  { "function .- does not exist", "42883" },
  { "schema .- does not exist", "3F000" },
  { "does not exist", "42704" },
  { "cannot run inside a transaction block", "25001" },
  { "cannot be executed from a function", "25001" },
  { "unsafe use of new value", "55P04" },
  { "canceling statement due to statement timeout", "57014" },
  { "canceling statement due to lock timeout", "55P03" },
  { "could not obtain lock", "55P03" },
  { "lock timeout", "55P03" },
  { "contains null values", "23502" },
  { "null value in column", "23502" },
  { "violates foreign key constraint", "23503" },
  { "violates check constraint", "23514" },
  { "check constraint .- is violated by some row", "23514" },
  { "violates not%-null constraint", "23502" },
  { "deadlock detected", "40P01" },
  { "could not serialize access", "40001" },
  { "division by zero", "22012" },
  { "value too long for type", "22001" },
  { "invalid input value for enum", "22P02" },
  { "invalid input syntax", "22P02" },
  { "out of range", "22003" },
  { "syntax error at or near", "42601" },
  { "syntax error at end of input", "42601" },
  { "permission denied", "42501" },
  { "must be owner of", "42501" },
  { "terminating connection due to administrator command", "57P01" },
  { "current transaction is aborted", "25P02" },
  { "cannot drop .- because other objects depend on it", "2BP01" },
  { "is of type .- but expression is of type", "42804" },
  { "cannot be cast automatically", "42804" },
}

-- The driver-adapter kinds (@prisma/adapter-pg convertDriverError -> the wasm
-- engine's text of the kind), one line after "external connector error":
-- pattern, SQLSTATE, object kind of the first capture (nil: none).
local ADAPTER = {
  { "^Unique constraint failed:%s*(.-)%s*$", "23505", "constraint" },
  { "^Unique constraint failed on the (.-)%s*$", "23505", "constraint" },
  { "^Null constraint failed:%s*(.-)%s*$", "23502", "column" },
  { "^Null constraint violation on the (.-)%s*$", "23502", "column" },
  { "^Null constraint violation%s*(.-)%s*$", "23502", "column" },
  { "^Foreign key constraint failed:%s*(.-)%s*$", "23503", "constraint" },
  { "^Foreign key constraint violated on the (.-)%s*$", "23503", "constraint" },
  { "^Foreign key constraint violated%s*(.-)%s*$", "23503", "constraint" },
  { "^Value out of range error%.?%s*(.-)%s*$", "22003" },
  { "^Value out of range for the type[.:]?%s*(.-)%s*$", "22003" },
  { "^The value provided for column (.-) is too long%.?$", "22001", "column" },
  { "^The provided value for the column is too long for the column's type%. Column: (.-)%s*$", "22001", "column" },
  { "unknown variant `InvalidInputValue`", "22P02" },
  { "^Transaction failed due to a write conflict or a deadlock", "40001" },
  { "^Too many DB connections opened", "53300" },
  { "^Timed out during query execution", "57014" },
  { "^Socket timeout", "08006" },
  { "^Server has closed the connection", "08006" },
  { "^Can't reach database server at (.-)%s*$", "08001" },
  { "^Authentication failed against database server", "28P01" },
  { "^User was denied access on the database", "28000" },
  { "^Database `(.-)` does not exist", "3D000" },
  { "^Database does not exist:%s*(.-)%s*$", "3D000" },
}
M.ADAPTER = ADAPTER

--- The adapter kind's line of an "external connector error" text, classed:
--- code, message, object, object_kind (nil when the text is no such form).
local function adapter_kind(text)
  local after = false
  for line in text:gmatch("[^\n]+") do
    local l = line:match("^%s*(.-)%s*$")
    if l == "external connector error" then
      after = true
    elseif after or l:find("InvalidInputValue", 1, true) then
      for _, a in ipairs(ADAPTER) do
        local cap = l:match(a[1])
        if cap ~= nil then
          local obj = type(cap) == "string" and cap ~= "" and a[3] and cap or nil
          if obj then obj = obj:gsub("^[`\"']", ""):gsub("[`\"']$", "") end
          if obj == "Unavailable" then obj = nil end
          if obj and obj:match("^%b()$") then obj = obj:sub(2, -2):gsub("[`\"]", "") end
          local msg = l
          if a[2] == "22P02" then msg = "invalid input value (Prisma's wasm engine lost PostgreSQL's message: unknown variant `InvalidInputValue`)" end
          return a[2], msg, obj ~= "" and obj or nil, obj and a[3] or nil
        end
      end
      if after and not l:match("^%d+: ") then return nil end
    end
  end
  return nil
end

local TRANSIENT_TEXT = {
  "connection closed", "server closed the connection", "connection reset", "connection refused",
  "broken pipe", "timed out", "could not connect", "can't reach database server",
  "terminating connection", "the database system is shutting down", "the database system is starting up",
  "unexpected eof", "connection to server", "ssl syscall error", "no connection to the server",
}

local function is_null(v)
  if v == nil then return true end
  if type(v) == "string" then return false end
  -- db.NULL / json.null sentinels and anything else that is not text
  return true
end

-- linear (a gsub of "%s+$" is quadratic in a long run of spaces)
local function trim(s)
  local i = s:find("%S")
  if not i then return "" end
  local j = #s
  while j > i do
    local b = s:byte(j)
    if b ~= 32 and (b < 9 or b > 13) then break end
    j = j - 1
  end
  return s:sub(i, j)
end

local function valid_code(c)
  return type(c) == "string" and #c == 5 and c:match("^[0-9A-Z]+$") ~= nil and c:match("%d") ~= nil
end

local function strip_ansi(s) return (s:gsub("\27%[[%d;]*m", "")) end

-- span-trace and dump lines that are not part of the PostgreSQL message
local function noise(line)
  return line:match("^%s*%d+: ") or line:match("^%s+at ") or line:match("^%s*DbError {")
    or line:match("^%s*Position:") or line:match("^%s*%d+%s*|") or line:match("^%s*$")
end

local function find_object(message)
  -- "constraint "x"", "relation "x"", "column "x" of relation "y"", "type "x"", ...
  local kinds = { "constraint", "column", "relation", "index", "table", "type", "schema", "function",
                  "sequence", "view", "trigger", "enum", "extension" }
  local best, best_pos, best_kind
  for _, k in ipairs(kinds) do
    local pos, _, name = message:find(k .. ' "([^"]+)"')
    if pos and (not best_pos or pos < best_pos) then best, best_pos, best_kind = name, pos, k end
  end
  local relation = message:match('of relation "([^"]+)"') or message:match('on table "([^"]+)"')
  if best_kind == "relation" or best_kind == "table" then relation = relation or best end
  return best, best_kind, relation
end

---Which Prisma engine wrote the failed row's `logs`: "adapter" for the
---driver-adapter / wasm schema engine (its text starts with `external
---connector error`; it sends migration.sql statement by statement, each
---committing on its own), "native" for the native engine's P3018 form, nil
---when the logs do not say (NULL, empty, or another text).
---@param logs string|nil|any the column value
---@return "adapter"|"native"|nil
function M.engine(logs)
  if is_null(logs) then return nil end
  local text = strip_ansi(#logs > M.MAX_TEXT and logs:sub(1, M.MAX_TEXT) or logs):gsub("^%s+", "")
  if text:find("^external connector error") then return "adapter" end
  if text:find("Database error code:", 1, true) or text:find("^A migration failed to apply") then return "native" end
  return nil
end


local function cut(s, n)
  if not s or #s <= n then return s end
  -- on a UTF-8 boundary
  local i = n
  while i > 0 and (s:byte(i + 1) or 0) >= 0x80 and (s:byte(i + 1) or 0) < 0xC0 do i = i - 1 end
  return s:sub(1, i) .. "…"
end

---Parse the `logs` column of a failed `_prisma_migrations` row. Only the
---first M.MAX_TEXT bytes are read; logs_bytes (the column's size, when the
---caller read only an excerpt of it) and truncated say how much there was.
---@param logs string|nil|any the column value (nil or db.NULL when NULL)
---@param total_bytes integer? octet_length of the whole column (default #logs)
---@return table { sqlstate, message, class, detail, hint, object, object_kind, relation, source, no_logs, inferred,
---               logs_bytes, truncated }
function M.parse(logs, total_bytes)
  local r = M.parse_text(logs)
  if type(logs) == "string" then
    r.logs_bytes = math.tointeger(tonumber(total_bytes)) or #logs
    r.truncated = r.logs_bytes > M.MAX_TEXT or nil
  end
  return r
end

function M.parse_text(logs)
  if not is_null(logs) and #logs > M.MAX_TEXT then logs = logs:sub(1, M.MAX_TEXT) end
  if is_null(logs) or trim(logs) == "" then
    return {
      sqlstate = nil, class = "transient", message = M.NO_LOGS_MESSAGE, no_logs = true, source = "none",
      detail = "Prisma writes the error after the script fails; an empty row means it never got that far, " ..
        "so the script may have committed in full",
      hint = "compare the catalog with the migration before choosing --applied or --rolled-back",
    }
  end
  local text = strip_ansi(logs):gsub("\r\n", "\n")
  local r = { source = "text" }

  -- SQLSTATE
  local code = text:match("Database error code:%s*([%w]+)")
  if code then r.source = "p3018" end
  if not valid_code(code) then code = text:match("SqlState%(E(%w%w%w%w%w)%)") end
  if not valid_code(code) then code = text:match("SqlState%(Other%(\"(%w%w%w%w%w)\"%)%)") end
  if not valid_code(code) then code = text:match("SQLSTATE%[?%s*(%w%w%w%w%w)") end
  if not valid_code(code) then code = text:match("ERROR:%s+(%w%w%w%w%w):") end
  if not valid_code(code) then code = text:match("code:%s*\"(%w%w%w%w%w)\"") end
  if not valid_code(code) then code = nil end

  -- message
  local msg
  local after = text:match("Database error:%s*\n(.*)$")
  local function first_error_line(s)
    for line in s:gmatch("[^\n]+") do
      local m = line:match("ERROR:%s*(.+)$") or line:match("FATAL:%s*(.+)$") or line:match("PANIC:%s*(.+)$")
      if m then return m end
    end
  end
  if after then msg = first_error_line(after) or (after:match("^%s*([^\n]+)")) end
  local akind, aobj, akind_obj
  if not msg and not code then
    akind, msg, aobj, akind_obj = adapter_kind(text)
    if akind then r.source, code, r.inferred = "adapter", akind, true end
  end
  if not msg then
    local adapter = text:match("Error querying the database:%s*([^\n]+)")
    if adapter then
      r.source = "adapter"
      msg = adapter:match("ERROR:%s*(.+)$") or adapter:match("FATAL:%s*(.+)$") or adapter
    end
  end
  if not msg then msg = first_error_line(text) end
  if not msg then
    local at = text:find("DbError {", 1, true)
    msg = at and text:match('message:%s*"(.-)",', at)
  end
  if not msg then
    for line in text:gmatch("[^\n]+") do
      if not noise(line) and not line:match("^%s*external connector error%s*$")
        and not line:match("^%s*Database error code:") and not line:match("^%s*Migration name:")
        and not line:match("failed to apply cleanly") then
        msg = line
        break
      end
    end
  end
  msg = msg and trim(msg:gsub("^%w%w%w%w%w:%s+", function(c) return valid_code(trim(c:sub(1, 5))) and "" or nil end)) or trim(text)
  if code then msg = msg:gsub("^" .. code .. ":%s*", "") end
  msg = cut(msg, M.MAX_MESSAGE)
  if r.source == "text" and text:find("Error querying the database", 1, true) then r.source = "adapter" end
  r.message = msg

  r.detail = text:match("\nDETAIL:%s*([^\n]+)") or text:match("^DETAIL:%s*([^\n]+)")
    or text:match('detail:%s*Some%("(.-)"%)')
  r.hint = text:match("\nHINT:%s*([^\n]+)") or text:match('hint:%s*Some%("(.-)"%)')
  r.detail, r.hint = cut(r.detail, M.MAX_MESSAGE), cut(r.hint, M.MAX_MESSAGE)

  -- Prisma P-codes (connection problems reported before any SQL ran)
  local pcode = text:match("%f[%w](P1%d%d%d)%f[^%w]")
  if not code then
    local lower = msg:lower()
    for _, p in ipairs(INFER) do
      if lower:find(p[1]) then
        code = p[2]
        r.inferred = true
        break
      end
    end
  end
  r.sqlstate = code
  r.class = M.class_of(code)
  if r.class == "unknown" then
    if pcode and M.class_of(pcode) == "transient" then
      r.class, r.prisma_code = "transient", pcode
    else
      local lower = text:lower()
      for _, t in ipairs(TRANSIENT_TEXT) do
        if lower:find(t, 1, true) then r.class = "transient" break end
      end
    end
  end
  if pcode then r.prisma_code = pcode end
  r.object, r.object_kind, r.relation = find_object(msg)
  if akind and aobj then r.object, r.object_kind = aobj, akind_obj end
  return r
end

return M
