-- migfix/guest/config.lua — runs inside the sandbox state that evaluates
-- migfix.lua (scripts/migfix/config.lua), after base.lua. migfix.lua gets
-- env "NAME" (a reference resolved later), getenv (it is the operator's own
-- file, read in the operator's environment) and copies of string, table and
-- math; what it returns comes back to migfix as data.
local guest = guest
local type, error, pcall, tostring = type, error, pcall, tostring

--- Evaluate the text of migfix.lua: { syntax = text } | { error = text } | { type = type, value = table }
function config_eval(src, chunkname)
  local env = {
    env = function(name)
      if type(name) ~= "string" then error("env expects a variable name: env \"DATABASE_URL\"", 2) end
      return { env = name }
    end,
    getenv = guest.getenv, tostring = tostring, tonumber = tonumber, pairs = pairs, ipairs = ipairs,
    string = guest.copy(string), table = guest.copy(table), math = guest.copy(math), type = type, error = error,
  }
  local chunk, err = guest.load(src, chunkname, env)
  if not chunk then return { syntax = err } end
  local ok, cfg = pcall(chunk)
  if not ok then
    if type(cfg) ~= "string" then
      local okt, s = pcall(tostring, cfg)
      cfg = okt and type(s) == "string" and s or ("(error object is a %s value)"):format(type(cfg))
    end
    return { error = cfg }
  end
  return { type = type(cfg), value = type(cfg) == "table" and cfg or nil }
end
