-- tests/fuzz/lua_fuzz.lua — a mutation fuzzer over what migfix reads from
-- users, at the Lua level (the C underneath runs under ASan/UBSan when this
-- runs in build/asan/migfix, as `make fuzz` does):
--
--   sql     migration.sql text -> effects.analyze -> verify.expected, verify.schemas,
--           execution.of, errclass.parse (a `logs` value)
--   config  migfix.lua -> config.load
--   dotenv  .env -> config.dotenv
--   url     database URLs -> db.parse_url, ui.redact
--
-- Each target may return a value, return nil + message, or raise a migfix
-- error (ui.fail: a usage error naming the file); anything else — a Lua
-- runtime error, a raise that is not a migfix error, a wrong result shape —
-- is a crash: its input is written to the crashes directory with the error.
--
--   migfix exec tests/fuzz/lua_fuzz.lua [--seconds N | --iterations N] [--seed S]
--                                       [--crashes DIR] [--targets sql,config,dotenv,url]
--   local F = dofile("tests/fuzz/lua_fuzz.lua"); F.run{ iterations = 200, seed = 1 }
--
-- Seeds: every .sql file of tests/fixtures, tests/fuzz/seeds/<target>/ and the
-- inputs of crashes fixed since (tests/fuzz/regress/lua-<target>/).
local ui = require "migfix.ui"

local F = {}

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "tests/fuzz"
local root = os.getenv("MIGFIX_ROOT") or (here .. "/../..")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function files(dir, suffix, out)
  out = out or {}
  local ok, dirent = pcall(require, "posix.dirent")
  local ok2, stat = pcall(require, "posix.sys.stat")
  if not ok or not ok2 then return out end
  local okd, names = pcall(dirent.dir, dir)
  if not okd or type(names) ~= "table" then return out end
  table.sort(names)
  for _, n in ipairs(names) do
    if n ~= "." and n ~= ".." then
      local p = dir .. "/" .. n
      local st = stat.lstat(p)
      if st and stat.S_ISDIR(st.st_mode) ~= 0 then
        files(p, suffix, out)
      elseif st and stat.S_ISREG(st.st_mode) ~= 0 and (not suffix or n:sub(-#suffix) == suffix) and n ~= "README.md" then
        local s = read(p)
        if s then out[#out + 1] = s end
      end
    end
  end
  return out
end

-- ------------------------------------------------------------------ targets

local tmp = os.tmpname()

local function is_migfix_error(e) return ui.is_error(e) end

--- what a target may give back without it being a crash
local function ok_string_or_nil(v) return v == nil or type(v) == "string" end

F.TARGETS = {}

F.TARGETS.sql = {
  suffix = ".sql",
  tokens = { "'", '"', "$$", "$a$", "/*", "*/", "--", ";", "\0", "\xff", "\xe9", "(", ")", "\n", "\r\n", "E'\\", "U&'",
             "CREATE TABLE t (a int);", "CREATE INDEX CONCURRENTLY i ON t (a);", "ALTER TABLE \"T\" ADD COLUMN c text NOT NULL;",
             "DROP TABLE IF EXISTS x CASCADE;", "ALTER TYPE e ADD VALUE 'v';", "BEGIN;", "COMMIT;", "INSERT INTO t VALUES (1);",
             "CREATE TYPE e AS ENUM ('a');", "ALTER TABLE t RENAME TO u;", "UPDATE t SET a = 1;", "DO $$ BEGIN END $$;",
             "CREATE SCHEMA s;", "ALTER TABLE t ADD CONSTRAINT c FOREIGN KEY (a) REFERENCES u(b) NOT VALID;",
             "CREATE UNIQUE INDEX \"i\" ON \"s\".\"t\"(\"a\" DESC NULLS LAST) WHERE a > 0;", "VACUUM FULL t;", "SET lock_timeout = '2s';" },
  run = function(text)
    local effects = require "migfix.effects"
    local verify = require "migfix.verify"
    local unit, err = effects.analyze(text, "fuzz/migration.sql")
    if not unit then
      if type(err) ~= "table" or type(err.message) ~= "string" then error("analyze failed without {message=}", 0) end
      return
    end
    local model = verify.expected(unit, "public")
    if type(model) ~= "table" or type(model.list) ~= "table" then error("verify.expected gave no model", 0) end
    verify.schemas(unit, "public")
    require("migfix.execution").of(unit, { unit = "file", server_version = 150000 })
    require("migfix.execution").of(unit, { unit = "statement", server_version = 110000 })
    local r = require("migfix.errclass").parse(text)
    if type(r.class) ~= "string" or type(r.message) ~= "string" then error("errclass.parse result shape", 0) end
  end,
}

F.TARGETS.config = {
  tokens = { "environments", "default_environment", "policy_paths", "url", "env", "\"DATABASE_URL\"", "= {", "}", ",", "{",
             "[\"a(\"] = {}", "[\"%\"] = 1", "[1] = 2", "backup = { required = true }", "timeouts = { lock_timeout = \"5s\" }",
             "confirm = \"flag\"", "unit = \"statement\"", "lint = { max_tables = 2.5 }", "forbid = { 1 }", "return", "nil",
             "error({})", "error(nil)", "setmetatable", "\n", "--", "\"", "'", "\0", "\xff", "0x7fffffffffffffff", "1e309" },
  run = function(text)
    write(tmp, text)
    local config = require "migfix.config"
    -- a mutated file may loop: an instruction budget, raised inside config.load's own pcall
    local n = 0
    debug.sethook(function()
      n = n + 1
      if n > 200 then error("fuzz budget exceeded", 0) end
    end, "", 10000)
    local ok, cfg = pcall(config.load, tmp)
    debug.sethook()
    if not ok then error(cfg, 0) end
    if type(cfg) ~= "table" or type(cfg.environments) ~= "table" then error("config.load result shape", 0) end
  end,
}

F.TARGETS.dotenv = {
  tokens = { "=", "export ", "#", "\"", "'", "`", "\\n", "\n", "\r\n", " ", "\0", "\xff", "DATABASE_URL", "A.B-C", "$HOME", "${X}" },
  run = function(text)
    write(tmp, text)
    local vars = require("migfix.config").dotenv(tmp)
    if type(vars) ~= "table" then error("dotenv gave no table", 0) end
    for k, v in pairs(vars) do
      if type(k) ~= "string" or type(v) ~= "string" then error("dotenv gave a non-string", 0) end
    end
  end,
}

F.TARGETS.url = {
  tokens = { "postgresql://", "postgres://", "@", ":", "/", "?", "&", "=", "#", "%", "%00", "%2F", "%40", "[", "]", "::1",
             "schema=", "host=/tmp", "port=5433", "password=", "sslpassword=", "+", " ", "\t", "\0", "\xff", "65536", "0" },
  run = function(text)
    local db = require "migfix.db"
    local ok, u, err = pcall(db.parse_url, text)
    if not ok then
      -- a NUL byte inside the Lua string is the one documented refusal (it cannot reach libpq)
      if type(u) == "string" and text:find("\0", 1, true) and u:find("NUL", 1, true) then return end
      error(u, 0)
    end
    if u == nil then
      if type(err) ~= "string" or not err:find("invalid database URL", 1, true) then error("parse_url failure without its message", 0) end
    elseif type(u) ~= "table" or type(u.schema) ~= "string" or u.schema == "" then
      error("parse_url result shape", 0)
    end
    if not ok_string_or_nil(ui.redact(text)) then error("redact result", 0) end
  end,
}

-- ------------------------------------------------------------------ mutations

local function mutate(s, tokens, seeds)
  local n = math.random(1, 5)
  for _ = 1, n do
    local len = #s
    local op = math.random(1, 8)
    local at = math.random(0, len)
    if op == 1 and len > 0 then                 -- flip a byte
      local i = math.random(1, len)
      s = s:sub(1, i - 1) .. string.char(math.random(0, 255)) .. s:sub(i + 1)
    elseif op == 2 then                          -- insert a byte
      s = s:sub(1, at) .. string.char(math.random(0, 255)) .. s:sub(at + 1)
    elseif op == 3 and len > 0 then              -- delete a range
      local j = math.min(len, at + math.random(1, 16))
      s = s:sub(1, at) .. s:sub(j + 1)
    elseif op == 4 and len > 0 then              -- duplicate a range
      local i = math.random(1, len)
      local j = math.min(len, i + math.random(0, 64))
      s = s:sub(1, at) .. s:sub(i, j) .. s:sub(at + 1)
    elseif op == 5 or op == 6 then               -- insert a token
      s = s:sub(1, at) .. tokens[math.random(1, #tokens)] .. s:sub(at + 1)
    elseif op == 7 and #seeds > 0 then           -- splice another seed
      local o = seeds[math.random(1, #seeds)]
      local i = math.random(0, #o)
      s = s:sub(1, at) .. o:sub(i + 1)
    elseif op == 8 then                          -- truncate
      s = s:sub(1, at)
    end
  end
  if #s > 65536 then s = s:sub(1, 65536) end
  return s
end

-- ------------------------------------------------------------------ the run

--- Seeds of a target.
function F.seeds(name)
  local t = F.TARGETS[name]
  local out = {}
  if t.suffix then files(root .. "/tests/fixtures", t.suffix, out) end
  files(root .. "/tests/fuzz/seeds/" .. name, nil, out)
  files(root .. "/tests/fuzz/regress/lua-" .. name, nil, out)
  if #out == 0 then out[1] = "" end
  return out
end

--- Run one input through a target: nil when it behaved, else the error text.
function F.one(name, input)
  local ok, err = xpcall(F.TARGETS[name].run, function(e)
    if is_migfix_error(e) then return e end
    return debug.traceback(tostring(e), 2)
  end, input)
  if ok or is_migfix_error(err) then return nil end
  return tostring(err)
end

---Fuzz. opts: seconds (wall budget for all targets together) or iterations
---(per target); seed; crashes (directory for crash inputs); targets (list).
---@return table result {targets = {name = {execs, crashes, unique}}, execs, crashes}
function F.run(opts)
  opts = opts or {}
  local sys = require "migfix.sys"
  math.randomseed(opts.seed or os.time())
  local names = opts.targets or { "sql", "config", "dotenv", "url" }
  local result = { targets = {}, execs = 0, crashes = 0, found = {} }
  local per = opts.seconds and (opts.seconds * 1000 / #names) or nil
  for _, name in ipairs(names) do
    local seeds = F.seeds(name)
    local t = F.TARGETS[name]
    local r = { execs = 0, crashes = 0, unique = 0 }
    local seen = {}
    result.targets[name] = r
    -- the seeds themselves first, then mutations
    local t0 = sys.now_ms()
    local i = 0
    while true do
      i = i + 1
      if per and sys.now_ms() - t0 > per then break end
      if not per and i > (opts.iterations or 100) + #seeds then break end
      local input = i <= #seeds and seeds[i] or mutate(seeds[math.random(1, #seeds)], t.tokens, seeds)
      local err = F.one(name, input)
      r.execs = r.execs + 1
      if err then
        r.crashes = r.crashes + 1
        local key = err:match("^[^\n]*") or err
        key = key:gsub("%d+", "N")
        if not seen[key] then
          seen[key] = true
          r.unique = r.unique + 1
          local id = require("migfix.migrations").checksum(input):sub(1, 16)
          result.found[#result.found + 1] = { target = name, error = err, input = input, id = id }
          if opts.crashes then
            os.execute("mkdir -p '" .. opts.crashes .. "'")
            write(("%s/lua-%s-%s.input"):format(opts.crashes, name, id), input)
            write(("%s/lua-%s-%s.error"):format(opts.crashes, name, id), err .. "\n")
          end
        end
      end
    end
    result.execs = result.execs + r.execs
    result.crashes = result.crashes + r.unique
  end
  os.remove(tmp)
  return result
end

-- ------------------------------------------------------------------ main

if arg and arg[0] and arg[0]:match("lua_fuzz%.lua$") then
  local opts = {}
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--seconds" then opts.seconds = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--iterations" then opts.iterations = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--seed" then opts.seed = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--crashes" then opts.crashes = arg[i + 1]; i = i + 2
    elseif a == "--targets" then
      opts.targets = {}
      for n in arg[i + 1]:gmatch("[^,]+") do opts.targets[#opts.targets + 1] = n end
      i = i + 2
    else
      io.stderr:write("lua_fuzz: unrecognized argument " .. a .. "\n")
      return 2
    end
  end
  local r = F.run(opts)
  for _, name in ipairs(opts.targets or { "sql", "config", "dotenv", "url" }) do
    local t = r.targets[name]
    print(("lua-%s: %d executions, %d crash%s (%d unique)"):format(name, t.execs, t.crashes, t.crashes == 1 and "" or "es", t.unique))
  end
  for _, c in ipairs(r.found) do
    print(("  crash in lua-%s (%s): %s"):format(c.target, c.id, (c.error:match("^[^\n]*"))))
  end
  return r.crashes == 0 and 0 or 1
end

return F
