--- migfix.txn — one transaction on a connection, with work that must only
--- happen after it committed (the journal's file mirror: a line for an
--- entry the database never got would be a lie).
---
---   txn.run(conn, fn, what)   -> fn's results; raises a migfix error when
---                                fn raises (rolled back) or COMMIT fails
---   txn.after_commit(conn, f) -> f runs after the open transaction commits
---                                (now, when none is open)
---   txn.active(conn)          -> true while txn.run is inside fn on conn
-- @module migfix.txn
local ui = require "migfix.ui"

local M = {}

local open = setmetatable({}, { __mode = "k" }) -- conn -> { hooks = {...} }

--- Whether a transaction of txn.run is open on conn.
function M.active(conn) return open[conn] ~= nil end

--- Run f after the transaction open on conn commits; at once when none is.
function M.after_commit(conn, f)
  local frame = open[conn]
  if frame then frame.hooks[#frame.hooks + 1] = f else f() end
end

---Run fn(tx) in one transaction on conn. A raise inside fn rolls the
---transaction back and is raised again; a failed COMMIT raises a migfix
---error ("the ledger is as it was"). After COMMIT the after_commit hooks run.
---@param conn userdata a migfix.db connection
---@param fn fun(tx: userdata): ...
---@param what string? what the transaction does, for messages ("mark applied")
---@return ... fn's results
function M.run(conn, fn, what)
  if open[conn] then error("txn.run: a transaction is already open on this connection", 2) end
  local tx, err, info = conn:begin()
  if not tx then
    ui.fail { message = ("could not begin a transaction%s: %s"):format(what and (" to " .. what) or "", tostring(err)),
              detail = info and info.detail, hint = "nothing was written", code = ui.EXIT.FAILURE }
  end
  local frame = { hooks = {} }
  open[conn] = frame
  local res = table.pack(pcall(fn, tx))
  open[conn] = nil
  if not res[1] then
    if tx:active() then tx:rollback() end
    error(res[2], 0)
  end
  local ok, cerr, cinfo = tx:commit()
  if not ok then
    ui.fail { message = ("could not commit%s: %s"):format(what and (" (" .. what .. ")") or "", tostring(cerr)),
              detail = cinfo and cinfo.detail, hint = "the transaction was rolled back: the ledger is as it was",
              code = ui.EXIT.FAILURE }
  end
  for _, h in ipairs(frame.hooks) do pcall(h) end
  return table.unpack(res, 2, res.n)
end

return M
