-- migfix exec script for make bench: runs diagnose and writes the statements
-- sent inside migfix.catalog.snapshot (in order) to arg[1], as a psql script.
local catalog = require "migfix.catalog"
local conn = migfix.connect { readonly = true }
local sent, on = {}, false
local mt = debug.getmetatable(conn)
local methods = mt.__index
local function wrap(t, name)
  local f = t[name]
  t[name] = function(self, sql, ...)
    if on and type(sql) == "string" then sent[#sent + 1] = sql end
    return f(self, sql, ...)
  end
end
wrap(methods, "query"); wrap(methods, "exec")
local begin = methods.begin
methods.begin = function(self, o, ...)
  local tx, e1, e2 = begin(self, o, ...)
  if on and tx then
    sent[#sent + 1] = (o and o.readonly or self:info().readonly) and "BEGIN READ ONLY" or "BEGIN"
    local tmt = debug.getmetatable(tx).__index
    if not tmt.__bench then
      tmt.__bench = true
      for _, n in ipairs({ "commit", "rollback" }) do
        local g = tmt[n]
        tmt[n] = function(x, ...) if on then sent[#sent + 1] = n:upper() end return g(x, ...) end
      end
    end
  end
  return tx, e1, e2
end
local snap = catalog.snapshot
catalog.snapshot = function(...) on = true; local r = table.pack(snap(...)); on = false; return table.unpack(r, 1, r.n) end
local st = migfix.state(conn)
require("migfix.diagnose").run(migfix.ctx, conn, st)
local f = assert(io.open(arg[1], "w"))
for _, s in ipairs(sent) do f:write(s, ";\n") end
f:close()
