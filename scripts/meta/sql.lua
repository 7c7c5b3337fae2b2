---@meta migfix.sql
-- LuaLS stub for the C module engine/sql.c (libpg_query 15, PostgreSQL's own parser).
local sql = {}

---@class migfix.sql.Error
---@field message string e.g. 'syntax error at or near "TABL"'
---@field cursorpos integer 1-based character offset (0 when the parser gave none)
---@field line? integer 1-based line of cursorpos
---@field column? integer 1-based character column of cursorpos

---@class migfix.sql.Span
---@field text string the statement without leading blanks/comments, trailing blanks/comments and ';'
---@field offset integer 0-based byte offset of text in the input
---@field length integer byte length of text
---@field line integer 1-based line of the first token
---@field end_line integer 1-based line of the last character

---Parse text into pg_query's parse tree: JSON objects -> tables, arrays ->
---sequences, integral numbers -> integers. Fields PostgreSQL leaves at
---their default (false, 0, empty) are absent.
---@param text string
---@return table|nil tree { version = 150001, stmts = { { stmt = { CreateStmt = {...} }, stmt_location =, stmt_len = }, ... } }
---@return string? message on a syntax error
---@return migfix.sql.Error? err
function sql.parse(text) end

---Parse a CREATE FUNCTION ... LANGUAGE plpgsql statement with PL/pgSQL's own
---parser (pg_query_parse_plpgsql): one tree per function, in the same
---table shape as `parse`. Statement nodes are named PLpgSQL_stmt_* (e.g.
---`PLpgSQL_stmt_execsql = { lineno =, sqlstmt = { PLpgSQL_expr = { query = "ALTER TABLE ..." } } }`,
---`PLpgSQL_stmt_dynexecute` for EXECUTE); `lineno` is 1-based within the body,
---line 1 being the line where the body string starts. Embedded SQL is text:
---parse it again with `parse`. A DO block is parsed by wrapping its body
---in a CREATE FUNCTION.
---@param text string
---@return table[]|nil funcs { { PLpgSQL_function = { datums =, action = { PLpgSQL_stmt_block = {...} } } } }
---@return string? message on a syntax error (position relative to text)
---@return migfix.sql.Error? err
function sql.parse_plpgsql(text) end

---Split text into statements with the parser (comments, strings and
---dollar quotes holding ';' are safe).
---@param text string
---@return migfix.sql.Span[]|nil statements
---@return string? message
---@return migfix.sql.Error? err
function sql.split(text) end

---The statement at a RawStmt's stmt_location/stmt_len (length 0: to the end
---of text); nil when the range holds no token.
---@param text string
---@param location? integer 0-based byte offset (default 0)
---@param length? integer bytes (default 0)
---@return migfix.sql.Span|nil
function sql.span(text, location, length) end

---The statements of text one at a time, parsed a part of the text at a time
---(about 256 KiB; a part ends after a ';' the parser confirms ends a
---statement), so a file's parse trees are never all in memory. Each step
---gives a RawStmt { stmt =, stmt_location =, stmt_len = } with every
---location in the whole text, exactly as sql.parse(text) has it, and its
---span (as sql.span); nil at the end; false, message, err on a syntax error
---(positions in the whole text), after the statements before the error's part.
---@param text string
---@param part_bytes? integer the part size (tests)
---@return fun(): (table|false|nil), (migfix.sql.Span|string|nil), migfix.sql.Error?
function sql.statements(text, part_bytes) end

---pg_query fingerprint (same for queries differing only in constants).
---@param text string
---@return string|nil hex
---@return string? message
---@return migfix.sql.Error? err
function sql.fingerprint(text) end

return sql
