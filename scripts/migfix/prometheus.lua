--- The Prometheus text exposition format (version 0.0.4): families with HELP and
--- TYPE lines, label values escaped, one sample a line. Used by `migfix metrics`.
---
---   local w = prometheus.writer()
---   w:family("migfix_up", "gauge", "help text")
---   w:sample("migfix_up", {environment = "prod"}, 1)
---   w:text()                       -> the exposition, ending in a newline
---   prometheus.escape_label(s), prometheus.valid_name(s), prometheus.valid_label(s)
local M = {}

--- a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*
function M.valid_name(s) return type(s) == "string" and s:match("^[%a_:][%w_:]*$") ~= nil end

--- a label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved)
function M.valid_label(s) return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and s:sub(1, 2) ~= "__" end

--- backslash, double quote and line feed escaped as the format requires
function M.escape_label(s)
  return (tostring(s):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function escape_help(s) return (tostring(s):gsub("\\", "\\\\"):gsub("\n", "\\n")) end

--- a sample value: integers as integers, floats to the microsecond, NaN/Inf spelled as the format wants
local function fmt_value(v)
  if v == true then return "1" elseif v == false then return "0" end
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" elseif v == -math.huge then return "-Inf" end
  if v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
  local s = ("%.6f"):format(v):gsub("0+$", ""):gsub("%.$", "")
  return s
end
M.fmt_value = fmt_value

local W = {}
W.__index = W

--- A new exposition; `const` labels are added to every sample (after its own).
---@param const? table<string,string>
function M.writer(const)
  const = const or {}
  local keys = {}
  for k in pairs(const) do
    if not M.valid_label(k) then error(("bad label name \"%s\""):format(tostring(k)), 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return setmetatable({ lines = {}, families = {}, const = const, const_keys = keys, current = nil }, W)
end

--- Start a family (all its samples must follow before the next family).
function W:family(name, kind, help)
  if not M.valid_name(name) then error(("bad metric name \"%s\""):format(tostring(name)), 2) end
  if self.families[name] then error(("metric family \"%s\" declared twice"):format(name), 2) end
  if kind ~= "gauge" and kind ~= "counter" and kind ~= "untyped" then error(("bad metric type \"%s\""):format(tostring(kind)), 2) end
  self.families[name] = true
  self.current = name
  self.lines[#self.lines + 1] = ("# HELP %s %s"):format(name, escape_help(help))
  self.lines[#self.lines + 1] = ("# TYPE %s %s"):format(name, kind)
end

--- One sample of the current family. labels: {name = value}; sorted by name after the
--- family's own order list labels.__order if given.
function W:sample(name, labels, value)
  if name ~= self.current then error(("sample \"%s\" outside its family (current: %s)"):format(tostring(name), tostring(self.current)), 2) end
  if type(value) ~= "number" and type(value) ~= "boolean" then
    error(("bad value for \"%s\": %s"):format(name, type(value)), 2)
  end
  local keys = {}
  for k in pairs(labels or {}) do
    if not M.valid_label(k) then error(("bad label name \"%s\""):format(tostring(k)), 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = ('%s="%s"'):format(k, M.escape_label(labels[k])) end
  for _, k in ipairs(self.const_keys) do
    if not (labels or {})[k] then parts[#parts + 1] = ('%s="%s"'):format(k, M.escape_label(self.const[k])) end
  end
  self.lines[#self.lines + 1] = ("%s%s %s"):format(name, #parts > 0 and ("{" .. table.concat(parts, ",") .. "}") or "", fmt_value(value))
end

--- The exposition text.
function W:text() return table.concat(self.lines, "\n") .. "\n" end

return M
