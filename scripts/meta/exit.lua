---@meta migfix.exit
-- LuaLS stub for the exit-code table of the C core (engine/main.c, include/migfix.h).
-- The one table Lua uses (migfix.ui's EXIT); README "Exit codes" and --help describe it.
return {
  OK = 0,        -- ok, clean, nothing to do
  ATTENTION = 1, -- needs attention, refused, or findings
  USAGE = 2,     -- usage or configuration error
  CONNECT = 3,   -- cannot reach the database
  FAILURE = 4,   -- an action failed mid-way (the ledger left as it was)
}
