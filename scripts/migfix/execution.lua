--- migfix.execution — how PostgreSQL runs one migration file under Prisma:
--- the transactions it commits in (segments), the statements that cannot
--- run in a transaction block, and whether a failure leaves all of it or
--- none of it. The one model diagnose, verify, lint, split, trace and
--- lockwait use (docs/effects.md, "Execution").
---
--- Units of execution:
---   file       Prisma's native engine (up to early 2026): the whole file is
---              ONE simple-protocol query, one implicit transaction. Only an
---              explicit COMMIT/ROLLBACK inside the file ends it; the next
---              statement starts another. A statement that cannot run in a
---              transaction block fails with 25001 when the file has others.
---   statement  Engines that split the file (driver adapters, the wasm
---              engine, Prisma >= 7.4): every statement autocommits, except
---              inside the file's own BEGIN ... COMMIT.
-- @module migfix.execution
local M = {}

M.UNITS = { file = true, statement = true }
--- The server assumed when none is known (offline lint): the oldest
--- PostgreSQL release still supported, so ADD VALUE runs in a transaction.
M.DEFAULT_SERVER = 130000

--- "begin", "end" or "other" for a transaction-control statement.
local function tx_kind(s)
  if not s.tx_control then return nil end
  local w = (s.text or ""):match("^%s*(%a+)")
  w = w and w:upper() or ""
  if w == "BEGIN" or w == "START" then return "begin" end
  if w == "COMMIT" or w == "END" or w == "ABORT" then return "end" end
  if w == "ROLLBACK" then
    -- ROLLBACK TO [SAVEPOINT] x stays in the transaction
    if (s.text or ""):upper():find("^%s*ROLLBACK%s+TO[%s]") then return "other" end
    if (s.text or ""):upper():find("^%s*ROLLBACK%s+PREPARED") then return "other" end
    return "end"
  end
  if w == "PREPARE" then return "end" end -- PREPARE TRANSACTION ends the session's transaction
  return "other"
end
M.tx_kind = tx_kind

--- Whether statement s cannot run in a transaction block on this server.
---@param s table a statement of migfix.effects.analyze
---@param server_version integer? server_version_num (nil: M.DEFAULT_SERVER)
function M.non_transactional(s, server_version)
  if not s.non_transactional then return false end
  if s.before_pg and (server_version or M.DEFAULT_SERVER) >= s.before_pg then return false end
  return true
end

---@class migfix.execution.segment
---@field index integer
---@field first integer first statement index
---@field last integer last statement index
---@field statements integer[]
---@field transactional boolean runs inside a transaction (implicit or the file's own)

---@class migfix.execution
---@field unit "file"|"statement"
---@field engine string? "native" | "adapter" when known from the failed row
---@field all_or_nothing boolean a failure leaves every statement or none
---@field reason string why (not) all or nothing
---@field runs_as "transaction"|"autocommit"|"as written"
---@field tx_control {index:integer, line:integer}[]
---@field non_transactional {index:integer, line:integer, reason:string}[]
---@field segments migfix.execution.segment[]
---@field segment_of table<integer, integer> statement index -> segment index
---@field note string? e.g. a file only a splitting engine can run

--- The execution model of an analysed file.
---@param unit table from migfix.effects.analyze
---@param o {unit: "file"|"statement"?, server_version: integer?, engine: string?}?
---@return migfix.execution
function M.of(unit, o)
  if type(unit) ~= "table" or type(unit.statements) ~= "table" then
    error("bad argument #1 to 'of' (a unit of migfix.effects.analyze expected)", 2)
  end
  o = o or {}
  local mode = o.unit or "file"
  if not M.UNITS[mode] then
    error(("bad argument #2 to 'of' (unit must be \"file\" or \"statement\", got %s)"):format(tostring(mode)), 2)
  end
  local sv = o.server_version
  local stmts = unit.statements
  local ex = { unit = mode, engine = o.engine, tx_control = {}, non_transactional = {}, segments = {}, segment_of = {} }
  for _, s in ipairs(stmts) do
    if s.tx_control then ex.tx_control[#ex.tx_control + 1] = { index = s.index, line = s.line } end
    if M.non_transactional(s, sv) then
      ex.non_transactional[#ex.non_transactional + 1] = { index = s.index, line = s.line, reason = s.non_transactional_reason }
    end
  end

  local cur
  local function open(transactional)
    cur = { index = #ex.segments + 1, statements = {}, transactional = transactional }
    ex.segments[#ex.segments + 1] = cur
  end
  local function add(s)
    cur.statements[#cur.statements + 1] = s.index
    cur.first = cur.first or s.index
    cur.last = s.index
    ex.segment_of[s.index] = cur.index
  end
  if mode == "file" then
    -- one implicit transaction, ended only by the file's own COMMIT/ROLLBACK
    local single_nontx = #stmts == 1 and M.non_transactional(stmts[1], sv)
    for _, s in ipairs(stmts) do
      if not cur then open(not single_nontx) end
      add(s)
      if tx_kind(s) == "end" then cur = nil end
    end
  else
    local in_block = false
    for _, s in ipairs(stmts) do
      local k = tx_kind(s)
      if in_block then
        add(s)
        if k == "end" then in_block, cur = false, nil end
      elseif k == "begin" then
        open(true)
        add(s)
        in_block = true
      else
        open(not M.non_transactional(s, sv))
        add(s)
        cur = nil
      end
    end
  end

  local n_nontx = #ex.non_transactional
  if mode == "statement" then
    ex.all_or_nothing = #ex.segments <= 1 and (ex.segments[1] == nil or ex.segments[1].transactional)
    ex.reason = ex.all_or_nothing and "one transaction" or "statement by statement: each statement commits on its own"
  elseif n_nontx > 0 and #stmts > 1 then
    -- the native engine cannot run it at all (25001 before anything commits);
    -- only a statement-by-statement engine gets part of it in
    ex.all_or_nothing = false
    ex.note = ("%s cannot run inside the implicit transaction of a multi-statement file (25001): only a "
      .. "statement-by-statement engine runs this file, one statement at a time"):format(ex.non_transactional[1].reason or "a statement")
    ex.reason = ex.note
  elseif n_nontx > 0 then
    ex.all_or_nothing = false
    ex.reason = ("%s runs outside a transaction: an interruption can leave it half done"):format(ex.non_transactional[1].reason or "the statement")
  elseif #ex.segments > 1 then
    ex.all_or_nothing = false
    ex.reason = ("the file's own transaction control commits %d times"):format(#ex.segments - 1)
  else
    ex.all_or_nothing = true
    ex.reason = "one implicit transaction: all or nothing"
  end

  if #ex.tx_control > 0 then
    ex.runs_as = "as written"
  elseif mode == "statement" or (#stmts == 1 and n_nontx == 1) then
    ex.runs_as = "autocommit"
  else
    ex.runs_as = "transaction"
  end
  return ex
end

--- The execution model as `diagnose --json` shows it (no per-statement maps).
function M.public(ex)
  local segs = {}
  for i, s in ipairs(ex.segments) do segs[i] = { first = s.first, last = s.last, transactional = s.transactional } end
  return { unit = ex.unit, engine = ex.engine, all_or_nothing = ex.all_or_nothing, reason = ex.reason,
           tx_control = ex.tx_control, non_transactional = ex.non_transactional, segments = segs, note = ex.note }
end

return M
