---@meta migfix.db
-- LuaLS stub for the C module engine/db.c (libpq) and engine/url.c (Prisma URLs).
-- Expected failures return nil, message, info; misuse (bad argument, unknown
-- option key, extra argument, closed handle, finished transaction) raises.
-- No message ever carries a password.
local db = {}

---SQL NULL in query results and parameters; the same value as json.null.
---@type lightuserdata
db.NULL = nil

---True when v is db.NULL.
---@param v any
---@return boolean
function db.isnull(v) end

---@class migfix.db.Url
---@field host? string host without brackets (or the ?host= socket directory); nil if neither
---@field port integer 5432 when absent
---@field user? string percent-decoded
---@field dbname? string percent-decoded first path segment; nil when absent
---@field schema string ?schema= decoded like url::Url::query_pairs ('+' is a space); "public" when absent
---@field schema_given boolean whether the URL had ?schema=
---@field has_password boolean
---@field params table<string, string> libpq parameters kept (sslmode, sslrootcert, options, host, ...)
---@field stripped string[] Prisma-only parameters seen (schema, connection_limit, pgbouncer, ...)
---@field ignored string[] unrecognized parameters seen (also not passed to libpq)
---@field redacted string the URL with its password shown as **** (password= and sslpassword= values masked too)

---Parse a postgresql:// or postgres:// URL as Prisma reads it.
---@param url string
---@return migfix.db.Url
---@overload fun(url: string): nil, string -- nil, "invalid database URL: <reason>" (never quotes the URL)
function db.parse_url(url) end

---Mask the password of every scheme://user:password@ URL in text as ****
---(the user is kept), and the values of password=/sslpassword= parameters.
---@param text string
---@return string
function db.redact(text) end

---@class migfix.db.ConnectOptions
---@field readonly? boolean add -c default_transaction_read_only=on: the server refuses writes (25006); default false
---@field application_name? string default: the URL's application_name, else "migfix"
---@field connect_timeout? integer seconds, > 0; default: the URL's connect_timeout, else 10
---@field lock_timeout? string e.g. "5s" (session setting)
---@field statement_timeout? string e.g. "1min" (session setting)

---@class migfix.db.ErrorInfo
---@field sqlstate? string e.g. "23505"
---@field message string the server's primary message (= the second return value)
---@field detail? string
---@field hint? string
---@field position? integer 1-based character in the statement
---@field severity? string "ERROR", "FATAL" (not localized)
---@field context? string
---@field kind? "connect" set when the connection was lost

---@class migfix.db.ConnectInfo
---@field kind "url"|"connect"|"auth" auth = 28P01/28000 or no password supplied
---@field sqlstate? string
---@field message string the reason (after the "could not connect ... :" prefix)
---@field detail? string
---@field hint? string e.g. "Is the server running on that host and accepting TCP/IP connections?"

---Connect. Every session gets datestyle=ISO, timezone=UTC, client_encoding
---UTF8 (after the URL's own ?options=); ?schema=X sets search_path to "X".
---Prisma-only and unknown URL parameters are not passed to libpq.
---@param url string
---@param opts? migfix.db.ConnectOptions
---@return migfix.db.Conn
---@overload fun(url: string, opts?: migfix.db.ConnectOptions): nil, string, migfix.db.ConnectInfo -- 'could not connect to database "app" on 127.0.0.1:5432 as user "app": connection refused'
function db.connect(url, opts) end

---@class migfix.db.Conn
local Conn = {}

---Run one statement (extended protocol). Parameters $1..$n: string, integer,
---number, boolean; nil or db.NULL is SQL NULL (trailing nils count). They are
---sent as text with unspecified type, so the server infers it (cast when it
---cannot: $1::int). Values: int2/int4/int8/oid -> integer, float4/float8 ->
---number, bool -> boolean, timestamptz -> "2026-11-24T22:12:09.052Z",
---timestamp -> "2026-11-24T22:12:09.052", NULL -> db.NULL, others (numeric,
---json, date, ...) -> text. Rows are keyed by column name (a repeated name
---keeps the last column). COPY raises.
---@param sql string
---@param ... string|integer|number|boolean|lightuserdata|nil
---@return table[] rows
---@return string[] columns in order
---@return integer? affected PQcmdTuples (rows returned/changed), nil for DDL
---@overload fun(self: migfix.db.Conn, sql: string, ...): nil, string, migfix.db.ErrorInfo
function Conn:query(sql, ...) end

---Run SQL in the simple protocol; several statements run as one implicit
---transaction (an error rolls them all back). The tag and count are the last statement's.
---@param sql string
---@return true
---@return {tag: string, affected: integer?}
---@overload fun(self: migfix.db.Conn, sql: string): nil, string, migfix.db.ErrorInfo
function Conn:exec(sql) end

---@class migfix.db.BeginOptions
---@field readonly? boolean BEGIN READ ONLY; default: the connection's readonly (raises if false on a read-only connection)

---Begin a transaction; raises if one is already in progress. Use as
---`local tx <close> = assert(conn:begin())`: closing or collecting an
---uncommitted transaction rolls it back.
---@param opts? migfix.db.BeginOptions
---@return migfix.db.Tx
---@overload fun(self: migfix.db.Conn, opts?: migfix.db.BeginOptions): nil, string, migfix.db.ErrorInfo
function Conn:begin(opts) end

---@class migfix.db.LockHolder
---@field pid integer
---@field usename string|lightuserdata
---@field application_name string|lightuserdata
---@field client_addr string|lightuserdata db.NULL for a Unix socket
---@field state string|lightuserdata
---@field backend_start string|lightuserdata ISO-8601 UTC
---@field query string|lightuserdata

---pg_try_advisory_lock(key), session level: one try, never a wait (the
---bounded wait and the message naming the holder: migfix.ledger.acquire_lock).
---Re-entrant: each success needs its own unlock; closing the connection releases all.
---@param key integer
---@return boolean got
---@overload fun(self: migfix.db.Conn, key: integer): nil, string, migfix.db.ErrorInfo
function Conn:try_advisory_lock(key) end

---pg_advisory_unlock(key): false (and a WARNING notice) when not held.
---@param key integer
---@return boolean
---@overload fun(self: migfix.db.Conn, key: integer): nil, string, migfix.db.ErrorInfo
function Conn:advisory_unlock(key) end

---PQserverVersion, e.g. 150004.
---@return integer
function Conn:server_version() end

---@class migfix.db.SessionInfo
---@field host string PQhost
---@field port integer
---@field dbname string
---@field user string
---@field schema string the URL's ?schema=, else "public"
---@field backend_pid integer
---@field readonly boolean
---@field in_transaction boolean a transaction is open on the connection

---@return migfix.db.SessionInfo
function Conn:info() end

---PQescapeIdentifier: always double-quoted.
---@param s string
---@return string
function Conn:quote_ident(s) end

---PQescapeLiteral: 'it''s' (E'...' when s has backslashes).
---@param s string
---@return string
function Conn:quote_literal(s) end

---@class migfix.db.Notice
---@field severity string "NOTICE", "WARNING", ... (not localized)
---@field sqlstate string
---@field message string
---@field detail? string
---@field hint? string

---Notices and warnings received since the last call (at most 1000 kept); clears them.
---@return migfix.db.Notice[]
function Conn:notices() end

---Close the connection (idempotent); later method calls raise
---"attempt to use a closed connection". Also __close and __gc.
---@return true
function Conn:close() end

---@class migfix.db.Tx
local Tx = {}

---COMMIT. A transaction that failed earlier answers
---nil, "could not commit: the transaction was rolled back after an earlier error", {sqlstate="25P02"}.
---Raises when the transaction is already finished.
---@return true
---@overload fun(self: migfix.db.Tx): nil, string, migfix.db.ErrorInfo
function Tx:commit() end

---ROLLBACK; true at once when already finished.
---@return true
---@overload fun(self: migfix.db.Tx): nil, string, migfix.db.ErrorInfo
function Tx:rollback() end

---Neither committed nor rolled back, and the connection is open.
---@return boolean
function Tx:active() end

return db
