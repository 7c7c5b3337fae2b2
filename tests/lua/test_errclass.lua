-- migfix.errclass: every form of `_prisma_migrations.logs`
local H = require "helper"
local errclass = require "migfix.errclass"

local T = {}

local NATIVE = table.concat({
  "Database error code: 23505",
  "",
  "Database error:",
  "ERROR: duplicate key value violates unique constraint \"User_email_key\"",
  "DETAIL: Key (email)=(a@b.c) is duplicated.",
  "",
  "DbError { severity: \"ERROR\", parsed_severity: Some(Error), code: SqlState(E23505), message: \"duplicate key value violates unique constraint \\\"User_email_key\\\"\", detail: Some(\"Key (email)=(a@b.c) is duplicated.\"), hint: None }",
  "",
  "   0: sql_schema_connector::apply_migration::apply_script",
  "           with migration_name=\"20240101000000_unique_email\"",
  "             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:106",
  "   1: schema_core::commands::apply_migrations::Applying migration",
  "             at schema-engine/core/src/commands/apply_migrations.rs:91",
}, "\n")

T["native P3018 text: code, message, detail, object, class"] = function()
  local r = errclass.parse(NATIVE)
  H.eq(r.sqlstate, "23505")
  H.eq(r.message, 'duplicate key value violates unique constraint "User_email_key"')
  H.eq(r.detail, "Key (email)=(a@b.c) is duplicated.")
  H.eq(r.class, "data")
  H.eq(r.object, "User_email_key")
  H.eq(r.object_kind, "constraint")
  H.eq(r.source, "p3018")
  H.ok(not r.inferred, "code read, not inferred")
end

T["native text with a Position block and ANSI escapes"] = function()
  local logs = "Database error code: 42P07\n\nDatabase error:\nERROR: relation \"Ticket\" already exists\n\n" ..
    "Position:\n\27[1;94m  0\27[0m CREATE TABLE \"Ticket\" (\n\n   0: schema_core::commands::apply_migrations::Applying migration\n"
  local r = errclass.parse(logs)
  H.eq(r.sqlstate, "42P07")
  H.eq(r.message, 'relation "Ticket" already exists')
  H.eq(r.class, "schema")
  H.eq(r.object, "Ticket")
  H.eq(r.relation, "Ticket")
end

T["native text with code none infers from the message"] = function()
  local r = errclass.parse("Database error code: none\n\nDatabase error:\nERROR: deadlock detected\n")
  H.eq(r.sqlstate, "40P01")
  H.eq(r.inferred, true)
  H.eq(r.class, "transient")
end

T["adapter (wasm) form"] = function()
  local logs = "external connector error\nError querying the database: ERROR: division by zero\n" ..
    "   0: sql_schema_connector::apply_migration::apply_script\n           with migration_name=\"x\"\n"
  local r = errclass.parse(logs)
  H.eq(r.message, "division by zero")
  H.eq(r.sqlstate, "22012")
  H.eq(r.class, "data")
  H.eq(r.source, "adapter")
end

T["bare PostgreSQL text, psql spacing"] = function()
  local r = errclass.parse('ERROR:  column "email" of relation "User" already exists')
  H.eq(r.sqlstate, "42701")
  H.eq(r.class, "schema")
  H.eq(r.object, "email")
  H.eq(r.object_kind, "column")
  H.eq(r.relation, "User")
end

T["verbose psql text carries its own code"] = function()
  local r = errclass.parse("ERROR:  42601: syntax error at or near \"TABL\"\nLINE 1: CREATE TABL x();")
  H.eq(r.sqlstate, "42601")
  H.eq(r.class, "syntax")
  H.eq(r.message, 'syntax error at or near "TABL"')
end

T["NULL and empty logs: the process was killed"] = function()
  for _, v in ipairs({ false, "", "  \n" }) do
    local r = errclass.parse(v == false and nil or v)
    H.eq(r.class, "transient")
    H.eq(r.message, "no logs: the process was killed or lost its connection before recording the error")
    H.eq(r.no_logs, true)
    H.eq(r.sqlstate, nil)
    H.ok(r.hint and r.hint:find("catalog", 1, true), "hint says to look at the catalog")
  end
  -- a NULL sentinel (db.NULL / json.null) is not text
  H.eq(errclass.parse(setmetatable({}, { __name = "migfix.NULL" })).no_logs, true)
end

T["inferred codes from well-known messages"] = function()
  local cases = {
    { 'duplicate key value violates unique constraint "x"', "23505", "data" },
    { 'relation "a" already exists', "42P07", "schema" },
    { 'relation "a" does not exist', "42P01", "schema" },
    { 'column "c" does not exist', "42703", "schema" },
    { 'type "t" does not exist', "42704", "schema" },
    { 'type "t" already exists', "42710", "schema" },
    { "CREATE INDEX CONCURRENTLY cannot run inside a transaction block", "25001", "transaction" },
    { 'unsafe use of new value "DONE" of enum type "Status"', "55P04", "transaction" },
    { "canceling statement due to statement timeout", "57014", "transient" },
    { 'could not obtain lock on relation "Ticket"', "55P03", "transient" },
    { "canceling statement due to lock timeout", "55P03", "transient" },
    { 'column "email" of relation "User" contains null values', "23502", "data" },
    { "deadlock detected", "40P01", "transient" },
    { "permission denied for table users", "42501", "permission" },
    { 'syntax error at or near "FROM"', "42601", "syntax" },
  }
  for _, c in ipairs(cases) do
    local r = errclass.parse("ERROR: " .. c[1])
    H.eq(r.sqlstate, c[2], c[1])
    H.eq(r.class, c[3], c[1])
    H.eq(r.inferred, true, c[1])
  end
end

T["transient without SQLSTATE: connection closed, P1017, P1008, timed out"] = function()
  for _, logs in ipairs({
    "Error querying the database: connection closed",
    "Error: P1017\n\nServer has closed the connection.",
    "P1008: Operations timed out after `10s`",
    "Error: Timed out fetching a new connection from the connection pool.",
  }) do
    H.eq(errclass.parse(logs).class, "transient", logs)
  end
  H.eq(errclass.parse("Error: P1017\n\nServer has closed the connection.").prisma_code, "P1017")
end

T["class_of by SQLSTATE"] = function()
  H.eq(errclass.class_of("08006"), "transient")
  H.eq(errclass.class_of("57P01"), "transient")
  H.eq(errclass.class_of("40001"), "transient")
  H.eq(errclass.class_of("22P02"), "data")
  H.eq(errclass.class_of("42704"), "schema")
  H.eq(errclass.class_of("42501"), "permission")
  H.eq(errclass.class_of("25001"), "transaction")
  H.eq(errclass.class_of("55P04"), "transaction")
  H.eq(errclass.class_of("XX000"), "unknown")
  H.eq(errclass.class_of(nil), "unknown")
end

T["unrecognised text is class unknown and keeps the message"] = function()
  local r = errclass.parse("something odd happened")
  H.eq(r.class, "unknown")
  H.eq(r.message, "something odd happened")
  H.eq(r.sqlstate, nil)
end

-- the driver-adapter texts Prisma 6.19.3's wasm engine writes (captured from the
-- real CLI through @prisma/adapter-pg; tests/compat/test_data_prisma.lua builds them live)
local TRACE = "\n   0: sql_schema_connector::apply_migration::apply_script\n           with migration_name=\"20240102000000_x\"\n" ..
  "             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:113\n"
local function adapter(line) return "external connector error\n" .. line .. TRACE end

T["adapter-engine texts: classed with their SQLSTATE, the object taken from them"] = function()
  for _, c in ipairs({
    { "Unique constraint failed: Customer_email_key", "23505", "data", "Customer_email_key", "constraint" },
    { "Unique constraint failed: (`a`,`b`)", "23505", "data", "a,b", "constraint" },
    { "Null constraint failed: ", "23502", "data", nil },
    { "Null constraint violation on the (email)", "23502", "data", "email", "column" },
    { "Foreign key constraint failed: c_pid_fkey", "23503", "data", "c_pid_fkey", "constraint" },
    { "Foreign key constraint violated on the c_pid_fkey", "23503", "data", "c_pid_fkey", "constraint" },
    { "Error querying the database: ERROR: check constraint \"t_price_check\" of relation \"t\" is violated by some row", "23514", "data", "t_price_check", "constraint" },
    { "Value out of range error. integer out of range", "22003", "data", nil },
    { "The value provided for column Unavailable is too long.", "22001", "data", nil },
    { "Error in the underlying connector (WASM_ERROR): Error: unknown variant `InvalidInputValue`, expected one of `GenericJs`, `postgres`", "22P02", "data", nil },
    { "Error querying the database: ERROR: division by zero", "22012", "data", nil },
    { "Error querying the database: ERROR: canceling statement due to lock timeout", "55P03", "transient", nil },
    { "Error querying the database: ERROR: canceling statement due to statement timeout", "57014", "transient", nil },
    { "Error querying the database: FATAL: terminating connection due to administrator command", "57P01", "transient", nil },
    { "Server has closed the connection.", "08006", "transient", nil },
    { "Timed out during query execution.", "57014", "transient", nil },
    { "Can't reach database server at `db:5432`", "08001", "transient", nil },
    { "Transaction failed due to a write conflict or a deadlock", "40001", "transient", nil },
    { "Too many DB connections opened", "53300", "transient", nil },
    { "Authentication failed against database server, the provided database credentials for `u` are not valid.", "28P01", "permission", nil },
  }) do
    local r = errclass.parse(adapter(c[1]))
    H.eq(r.sqlstate, c[2], c[1])
    H.eq(r.class, c[3], c[1])
    H.eq(r.source, "adapter", c[1])
    H.eq(r.object, c[4], c[1])
    if c[5] then H.eq(r.object_kind, c[5], c[1]) end
  end
  -- the message stays Prisma's own line
  H.eq(errclass.parse(adapter("Unique constraint failed: Customer_email_key")).message, "Unique constraint failed: Customer_email_key")
  H.eq(errclass.parse(adapter("Error querying the database: FATAL: terminating connection due to administrator command")).message,
    "terminating connection due to administrator command")
end

return T
