--- migfix.lintctx — the size-dependent part of the `ctx` a lint rule sees
--- (README "Lint"), one definition for migfix's own rules (lint.lua) and a
--- team's (guest/lint.lua defines it in the rules' sandbox). Pure: no
--- require, nothing but string formatting and arithmetic.
local M = {}

--- "12 kB", "3.4 MB"
function M.human_bytes(b)
  local units = { "B", "kB", "MB", "GB", "TB" }
  local i = 1
  while b >= 1024 and i < #units do b = b / 1024; i = i + 1 end
  return (i == 1 and "%d %s" or "%.1f %s"):format(b, units[i])
end

--- "950 rows", "12k rows", "3.4M rows"
function M.human_rows(r)
  if r >= 1e6 then return ("%.1fM rows"):format(r / 1e6) end
  if r >= 1e4 then return ("%.0fk rows"):format(r / 1e3) end
  return ("%d rows"):format(math.floor(r))
end

--- Add band, size_text, human_rows and lookup to c. sizes: {["schema.table"]
--- = {rows, bytes}} or nil (offline); tkey(schema, name) the table key.
function M.add_sizes(c, settings, sizes, schema_default, tkey)
  local human_rows, human_bytes = M.human_rows, M.human_bytes
  --- "error" | "warning" | "unknown" (size not known) | nil (small, new or absent)
  function c.band(t, rows_threshold)
    if t == nil or t.new or t.exists == false then return nil end
    if sizes == nil then return "unknown" end
    local rows = t.rows
    local bytes = t.bytes
    if rows == nil and bytes == nil then return "unknown" end
    local lr, wr = settings.large_rows, settings.warn_rows
    if rows_threshold then lr, wr = settings.large_rows, rows_threshold end
    if (rows and rows >= lr) or (not rows_threshold and bytes and bytes >= settings.large_bytes) then return "error" end
    if (rows and rows >= wr) or (not rows_threshold and bytes and bytes >= settings.warn_bytes) then return "warning" end
    return nil
  end
  function c.size_text(t)
    if t.new then return "created earlier in this file" end
    if sizes == nil then return "size unknown: no database" end
    if t.exists == false then return "not in the database yet" end
    local parts = {}
    if t.rows then parts[#parts + 1] = human_rows(t.rows) end
    if t.bytes then parts[#parts + 1] = human_bytes(t.bytes) end
    return #parts > 0 and table.concat(parts, ", ") or "size unknown"
  end
  function c.human_rows(r) return human_rows(r) end
  --- a table's size record as rules see it (for tables a statement reads without locking them for writes)
  function c.lookup(schema, name)
    local key = tkey(schema, name)
    local t = { key = key, schema = schema or schema_default, table = name, keys = {}, new = false }
    if sizes then
      local z = sizes[key]
      t.exists = z ~= nil
      if z then t.rows, t.bytes = z.rows, z.bytes end
    else
      t.exists = true
    end
    return t
  end
  return c
end

return M
