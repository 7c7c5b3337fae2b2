--- migfix diagnose: verify failed migrations object by object against the live database.
local ui = require "migfix.ui"
local json = require "migfix.json"
local diagnose = require "migfix.diagnose"

local C = {
  name = "diagnose",
  summary = "check each failed migration object by object against the database: complete, absent, partial, drifted",
  usage = "diagnose [NAME...] [--json] [--objects]",
  description = [[Default: every failed migration. For each: the verdict (complete | absent | partial |
drifted | unverifiable), whether migration.sql changed since the failed attempt, the
recorded error (SQLSTATE, class), the statement that most likely failed, and the objects.
For a data error (23505, 23502, 23503, 23514, 22xxx) the precondition of the failing
statement is counted on the rows (duplicate groups, NULL rows, orphan rows, rows failing the
CHECK or the conversion) with a few sample keys: holds, violated or unknown (docs/policies.md
"Data evidence"). An object counts as done only when the catalog positively shows it;
what cannot be checked is "unverifiable", with the reason. The connection is read-only
(enforced by the server). Exit 1 when a migration is failed; 4 when migfix hit an internal
error on one of them (that migration is then "unverifiable" with the error; the others are
still diagnosed).]],
  options = {
    { long = "json", help = "print a JSON document (fields in README \"diagnose --json\")" },
    { long = "objects", help = "list every object, not only those that are not as expected" },
  },
}

local VERDICT_COLOR = { complete = "green", absent = "cyan", partial = "red", drifted = "red", unverifiable = "yellow" }

local function jv(v) if v == nil then return json.null end return v end

local function item_doc(it)
  return {
    kind = it.kind, schema = jv(it.schema), name = jv(it.name), table = jv(it.table), enum = jv(it.enum), action = it.action,
    state = it.state, statement = jv(it.stmt), line = jv(it.line),
    diffs = json.array(it.diffs or {}),
    reason = jv(it.reason),
    rows = it.data and jv(it.data.rows) or nil,
    check = it.data and jv(it.data.sql) or nil,
  }
end

local function invalid_doc(list)
  local out = {}
  for i, ix in ipairs(list or {}) do out[i] = { schema = jv(ix.schema), name = ix.name, table = jv(ix.table) } end
  return json.array(out)
end

function C.document(diags)
  local list = {}
  for _, d in ipairs(diags) do
    local items = {}
    for _, it in ipairs(d.evidence and d.evidence.items or {}) do items[#items + 1] = item_doc(it) end
    list[#list + 1] = {
      name = d.name, state = d.state, verdict = d.verdict, summary = d.summary,
      reason = jv(d.evidence and d.evidence.reason),
      file = d.file or json.null,
      failed_row = d.row and { id = d.row.id, started_at = d.row.started_at, checksum = d.row.checksum } or json.null,
      error = d.error or json.null,
      likely_failed_statement = d.likely_failed_statement or json.null,
      execution = d.execution or json.null,
      inconsistent = jv(d.inconsistent),
      internal_error = jv(d.internal_error),
      counts = d.evidence and d.evidence.counts or json.null,
      data = d.data or json.null,
      invalid_indexes = invalid_doc(d.evidence and d.evidence.invalid_indexes),
      objects = json.array(items),
    }
  end
  return { failed = #diags, migrations = json.array(list) }
end

local function describe(v)
  if v == nil then return "" end
  if type(v) == "table" then
    local parts = {}
    for _, x in ipairs(v) do parts[#parts + 1] = type(x) == "table" and (x.expr or "?") or tostring(x) end
    return table.concat(parts, ",")
  end
  return tostring(v)
end

local function full_name(it)
  local n = it.name or "?"  -- a data change names no object
  if it.table and it.kind ~= "table" then n = it.table .. "." .. n end
  if it.enum then n = it.enum .. "." .. n end
  return n
end

function C.print(diags, opts)
  for k, d in ipairs(diags) do
    if k > 1 then ui.out("") end
    ui.out(ui.paint(d.name, "bold") .. ": " .. ui.paint(d.verdict:upper(), VERDICT_COLOR[d.verdict] or "bold") .. " — " .. (d.summary or ""))
    if d.file then
      if d.file.changed_since_failure == nil then
        ui.out("  file: " .. d.file.path)
      elseif d.file.changed_since_failure then
        ui.out(("  file: changed since the failed attempt (now %s, then %s)"):format(ui.short(d.file.checksum), ui.short(d.file.failed_checksum)))
      else
        ui.out(("  file: unchanged since the failed attempt (%s)"):format(ui.short(d.file.checksum)))
      end
    end
    if d.execution then
      if d.execution.all_or_nothing then
        ui.out("  runs as: one implicit transaction (all or nothing)")
      else
        local why = {}
        for _, s in ipairs(d.execution.tx_control) do why[#why + 1] = "transaction control at line " .. s.line end
        for _, s in ipairs(d.execution.non_transactional) do why[#why + 1] = s.reason .. " at line " .. s.line end
        if d.execution.unit == "statement" then
          why[#why + 1] = d.execution.engine == "adapter" and "the driver-adapter engine sends it statement by statement"
            or "statement-by-statement engine"
        end
        ui.out("  runs as: several transactions (" .. table.concat(why, "; ") .. ")")
      end
    end
    if d.internal_error then
      ui.out(ui.paint("  internal error: ", "red") .. d.internal_error)
    end
    if d.error then
      local e = d.error
      ui.out(("  error: %s%s[%s]"):format(e.sqlstate and (e.sqlstate .. " ") or "", e.message and (e.message .. " ") or "", e.class or "unknown"))
      if e.detail then ui.out("         " .. e.detail) end
      if e.truncated then ui.out(("         (logs: %d bytes; the first %d read)"):format(e.logs_bytes, require("migfix.errclass").MAX_TEXT)) end
    end
    if d.data and d.data.status ~= "not_applicable" then
      local dd = d.data
      local col = ({ holds = "green", violated = "red", unknown = "yellow" })[dd.status]
      ui.out(("  data: %s — %s"):format(ui.paint(dd.status:upper(), col or "bold"),
        dd.summary or dd.reason or ""))
      if dd.advice then ui.out("        " .. dd.advice) end
    end
    if d.likely_failed_statement then
      local s = d.likely_failed_statement
      if s.index then
        ui.out(("  likely failed: statement %d at line %s%s"):format(s.index, s.line or "?", s.reason and (" — " .. s.reason) or ""))
      elseif s.reason then
        ui.out("  failed statement: " .. s.reason)
      end
    end
    if d.inconsistent then ui.out(ui.paint("  note: ", "yellow") .. d.inconsistent) end
    if d.partial_expected then ui.out("  note: " .. d.partial_expected) end
    local inv = d.evidence and d.evidence.invalid_indexes or {}
    if #inv > 0 then
      local names = {}
      for _, ix in ipairs(inv) do names[#names + 1] = ('"%s"."%s"'):format(ix.schema or "?", ix.name) end
      ui.out(ui.paint("  INVALID indexes: ", "red") .. table.concat(names, ", ") ..
        " (a rerun with IF NOT EXISTS would skip them; drop them with DROP INDEX CONCURRENTLY IF EXISTS first)")
    end
    if d.evidence then
      local c = d.evidence.counts or {}
      local parts = {}
      for _, k2 in ipairs({ "present", "missing", "different", "absent", "still_present", "unverifiable" }) do
        if (c[k2] or 0) > 0 then parts[#parts + 1] = c[k2] .. " " .. k2:gsub("_", " ") end
      end
      -- per kind, present objects
      local kinds, order = {}, {}
      for _, it in ipairs(d.evidence.items) do
        if it.kind ~= "column" or it.state ~= "present" then
          if not kinds[it.kind] then kinds[it.kind] = 0; order[#order + 1] = it.kind end
          kinds[it.kind] = kinds[it.kind] + 1
        end
      end
      local kk = {}
      local plural = { index = "indexes", data = "data statements" }
      for _, k2 in ipairs(order) do kk[#kk + 1] = kinds[k2] .. " " .. (kinds[k2] == 1 and k2 or (plural[k2] or (k2 .. "s"))) end
      ui.out("  objects: " .. table.concat(parts, ", ") .. (#kk > 0 and (" (" .. table.concat(kk, ", ") .. ")") or ""))
      local rows = {}
      for _, it in ipairs(d.evidence.items) do
        local show = opts.objects or (it.state ~= "present" and it.state ~= "absent")
        if show then
          local exp = it.action == "drop" and "absent" or (it.action == "unverifiable" and "?" or "present")
          if it.kind == "data" and it.state ~= "unverifiable" then exp = "rows as it leaves them" end
          local found = ({ present = "yes", missing = "missing", different = "different", absent = "absent",
                           still_present = "still there", unverifiable = "-" })[it.state] or it.state
          local detail = {}
          for _, df in ipairs(it.diffs or {}) do
            detail[#detail + 1] = ("%s: expected %s, found %s"):format(df.field, describe(df.expected), describe(df.found))
          end
          if (it.state == "unverifiable" or it.kind == "data") and it.reason then detail[#detail + 1] = it.reason end
          rows[#rows + 1] = { kind = it.kind, name = full_name(it), expected = exp, found = found,
                              line = it.line or "", detail = table.concat(detail, "; ") }
        end
      end
      if #rows > 0 then
        ui.out("")
        ui.table({
          { key = "kind", title = "KIND" }, { key = "name", title = "NAME" },
          { key = "expected", title = "EXPECTED" },
          { key = "found", title = "FOUND", color = function(r)
              return (r.found == "yes" or r.found == "absent") and "green" or (r.found == "-" and "yellow" or "red") end },
          { key = "line", title = "LINE" }, { key = "detail", title = "DETAIL" },
        }, rows, "  ")
      end
    end
  end
end

function C.run(ctx, opts, args)
  local conn = ctx:connect { readonly = true }
  local st = ctx:state(conn)
  local diags = diagnose.run(ctx, conn, st, args)
  for _, d in ipairs(diags) do
    -- (migfix.datacheck loaded only for a data error: most diagnoses have none)
    if d.error and d.error.class == "data" then d.data = require("migfix.datacheck").evidence(ctx, conn, d) end
  end
  if opts.json then
    ui.json(C.document(diags))
  elseif #diags == 0 then
    ui.out(ui.paint("no failed migrations: nothing to diagnose", "green"))
  else
    C.print(diags, opts)
  end
  local any_failed, internal = false, false
  for _, d in ipairs(diags) do
    if d.state == "failed" then any_failed = true end
    if d.internal_error then internal = true end
  end
  if internal then return ui.EXIT.FAILURE end
  return any_failed and ui.EXIT.ATTENTION or ui.EXIT.OK
end

return C
