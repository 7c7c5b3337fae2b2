--- Prisma's own project layout, read without running anything:
---   prisma.config.ts / .mts / .cts / .js / .mjs / .cjs (Prisma 7): migrations.path, schema,
---   datasource.url (a string literal, env("NAME"), process.env.NAME);
---   package.json's "prisma": { "schema": ... } (Prisma 5/6);
---   the default schema locations schema.prisma, prisma/schema.prisma and the
---   multi-file folder prisma/schema/ (migrations live next to the schema).
---
--- The configuration file is JavaScript/TypeScript. It is never executed: a small
--- tokenizer reads string literals, object literals, env("…") / process.env.X and
--- path.join/path.resolve of literals. Any other expression is "dynamic": its
--- text and line are kept so the caller can say so and ask for --url/--migrations.
---
---   prisma_config.tokenize(src)            -> tokens | nil, err
---   prisma_config.extract(src [, name])    -> {values = {["migrations.path"] = v, ...}} | nil, err
---   prisma_config.locate(root)             -> layout (see below)
local fs = require "migfix.fs"

local M = {}

M.CONFIG_NAMES = { "prisma.config.ts", "prisma.config.mts", "prisma.config.cts",
                   "prisma.config.js", "prisma.config.mjs", "prisma.config.cjs" }

-- ------------------------------------------------------------ tokenizer

local PUNCT3 = { ["..."] = true, ["==="] = true, ["!=="] = true, ["**="] = true, ["<<="] = true, [">>="] = true }
local PUNCT2 = { ["=>"] = true, ["=="] = true, ["!="] = true, ["<="] = true, [">="] = true, ["&&"] = true,
                 ["||"] = true, ["??"] = true, ["?."] = true, ["++"] = true, ["--"] = true, ["+="] = true,
                 ["-="] = true, ["*="] = true, ["/="] = true, ["**"] = true, ["<<"] = true, [">>"] = true }

local ESCAPES = { n = "\n", t = "\t", r = "\r", b = "\b", f = "\f", v = "\v", ["0"] = "\0" }

local function utf8_char(cp)
  if cp < 0 or cp > 0x10FFFF then return "?" end
  return utf8.char(cp)
end

--- Tokens of a JS/TS source: {t = "str"|"tmpl"|"name"|"num"|"punct", v = text, line = n};
--- a template literal with ${...} is {t = "tmpl", dynamic = true}.
---@param src string
---@return table|nil tokens
---@return string? err "line N: reason"
function M.tokenize(src)
  local toks, i, line, n = {}, 1, 1, #src
  local function add(t, v, l, extra)
    local tok = { t = t, v = v, line = l }
    if extra then for k, x in pairs(extra) do tok[k] = x end end
    toks[#toks + 1] = tok
  end
  -- is a "/" here a regular expression? (after an operator or at the start)
  local function regex_allowed()
    local last = toks[#toks]
    if not last then return true end
    if last.t == "punct" then return last.v ~= ")" and last.v ~= "]" and last.v ~= "}" end
    if last.t == "name" then
      return last.v == "return" or last.v == "typeof" or last.v == "case" or last.v == "in" or last.v == "of"
    end
    return false
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "//" then
      local e = src:find("\n", i, true) or n + 1
      i = e
    elseif src:sub(i, i + 1) == "/*" then
      local e = src:find("*/", i + 2, true)
      if not e then return nil, ("line %d: unterminated comment"):format(line) end
      local body = src:sub(i, e + 1)
      for _ in body:gmatch("\n") do line = line + 1 end
      i = e + 2
    elseif c == '"' or c == "'" then
      local start, buf, j = line, {}, i + 1
      while true do
        local d = src:sub(j, j)
        if d == "" or d == "\n" then return nil, ("line %d: unterminated string"):format(start) end
        if d == c then break end
        if d == "\\" then
          local e = src:sub(j + 1, j + 1)
          if e == "u" then
            local hex, len
            if src:sub(j + 2, j + 2) == "{" then
              hex = src:match("^{(%x+)}", j + 2)
              len = hex and (#hex + 2) or nil
            else
              hex = src:match("^(%x%x%x%x)", j + 2)
              len = hex and 4 or nil
            end
            if not hex then return nil, ("line %d: bad \\u escape"):format(line) end
            buf[#buf + 1] = utf8_char(tonumber(hex, 16))
            j = j + 2 + len
          elseif e == "x" then
            local hex = src:match("^(%x%x)", j + 2)
            if not hex then return nil, ("line %d: bad \\x escape"):format(line) end
            buf[#buf + 1] = string.char(tonumber(hex, 16))
            j = j + 4
          elseif e == "\n" then
            line = line + 1
            j = j + 2
          else
            buf[#buf + 1] = ESCAPES[e] or e
            j = j + 2
          end
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      add("str", table.concat(buf), start)
      i = j + 1
    elseif c == "`" then
      local start, buf, j, dynamic = line, {}, i + 1, false
      local depth = 0
      while true do
        local d = src:sub(j, j)
        if d == "" then return nil, ("line %d: unterminated template literal"):format(start) end
        if depth == 0 and d == "`" then break end
        if d == "\n" then line = line + 1 end
        if depth == 0 and d == "$" and src:sub(j + 1, j + 1) == "{" then
          dynamic, depth = true, 1
          j = j + 2
        elseif depth > 0 then
          if d == "{" then depth = depth + 1 elseif d == "}" then depth = depth - 1 end
          j = j + 1
        elseif d == "\\" then
          local e = src:sub(j + 1, j + 1)
          buf[#buf + 1] = ESCAPES[e] or e
          if e == "\n" then line = line + 1 end
          j = j + 2
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      add("tmpl", table.concat(buf), start, { dynamic = dynamic, text = src:sub(i, j) })
      i = j + 1
    elseif c:match("[%a_$]") then
      local name = src:match("^[%w_$]+", i)
      add("name", name, line)
      i = i + #name
    elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
      local num = src:match("^[%w%.]+", i)
      add("num", num, line)
      i = i + #num
    elseif c == "/" and regex_allowed() then
      -- a regular expression literal: skip it (with classes and escapes)
      local j, in_class = i + 1, false
      while true do
        local d = src:sub(j, j)
        if d == "" or d == "\n" then return nil, ("line %d: unterminated regular expression"):format(line) end
        if d == "\\" then j = j + 2
        elseif d == "[" then in_class = true j = j + 1
        elseif d == "]" then in_class = false j = j + 1
        elseif d == "/" and not in_class then break
        else j = j + 1 end
      end
      local flags = src:match("^[%a]*", j + 1)
      add("regex", src:sub(i, j + #flags), line)
      i = j + 1 + #flags
    else
      local p3, p2 = src:sub(i, i + 2), src:sub(i, i + 1)
      if PUNCT3[p3] then add("punct", p3, line) i = i + 3
      elseif PUNCT2[p2] then add("punct", p2, line) i = i + 2
      else add("punct", c, line) i = i + 1 end
    end
  end
  return toks
end

-- ------------------------------------------------------------ values

-- A value is {kind = "string", value = s} | {kind = "env", name = NAME} |
-- {kind = "object", fields = {k = value}} | {kind = "dynamic", text = "...", line = n};
-- every value has .line.

local function tok_text(toks, a, b)
  local parts = {}
  for k = a, b do
    local t = toks[k]
    if t then
      if t.t == "str" then parts[#parts + 1] = ("%q"):format(t.v)
      elseif t.t == "tmpl" then parts[#parts + 1] = t.text
      else parts[#parts + 1] = t.v end
    end
  end
  local s = table.concat(parts, " "):gsub(" ([%.,%)%]])", "%1"):gsub("([%.%(%[]) ", "%1")
  if #s > 80 then s = s:sub(1, 77) .. "..." end
  return s
end

local CLOSE = { ["("] = ")", ["["] = "]", ["{"] = "}" }

--- index after the expression that starts at k (ends at , or a closing bracket at depth 0)
local function skip_expr(toks, k)
  local stack = {}
  while toks[k] do
    local t = toks[k]
    if t.t == "punct" then
      if CLOSE[t.v] then stack[#stack + 1] = CLOSE[t.v]
      elseif t.v == ")" or t.v == "]" or t.v == "}" then
        if #stack == 0 then return k end
        stack[#stack] = nil
      elseif (t.v == "," or t.v == ";") and #stack == 0 then return k end
    end
    k = k + 1
  end
  return k
end

local parse_value

local function parse_object(toks, k, base)
  -- toks[k] is "{"
  local obj = { kind = "object", fields = {}, order = {}, line = toks[k].line }
  k = k + 1
  while toks[k] and not (toks[k].t == "punct" and toks[k].v == "}") do
    local t = toks[k]
    local key
    if t.t == "punct" and t.v == "..." then
      local e = skip_expr(toks, k + 1)
      obj.spread = obj.spread or { text = tok_text(toks, k, e - 1), line = t.line }
      k = e
    elseif (t.t == "name" or t.t == "str" or t.t == "num") then
      key = t.v
      local nx = toks[k + 1]
      if nx and nx.t == "punct" and nx.v == ":" then
        local v, e = parse_value(toks, k + 2, base)
        obj.fields[key] = v
        obj.order[#obj.order + 1] = key
        k = e
      elseif nx and nx.t == "punct" and (nx.v == "," or nx.v == "}") then
        -- shorthand { schema } names a variable: its value is not known here
        obj.fields[key] = { kind = "dynamic", text = key, line = t.line }
        obj.order[#obj.order + 1] = key
        k = k + 1
      else
        -- a method, getter or something else: skip it
        local e = skip_expr(toks, k + 1)
        obj.fields[key] = { kind = "dynamic", text = tok_text(toks, k, e - 1), line = t.line }
        obj.order[#obj.order + 1] = key
        k = e
      end
    elseif t.t == "punct" and t.v == "[" then
      local e = skip_expr(toks, k + 1)
      obj.computed = true
      k = skip_expr(toks, e + 1)
    else
      k = skip_expr(toks, k + 1)
    end
    if toks[k] and toks[k].t == "punct" and toks[k].v == "," then k = k + 1 end
  end
  return obj, k + 1
end

local function is_p(t, v) return t and t.t == "punct" and t.v == v end
local function is_n(t, v) return t and t.t == "name" and (v == nil or t.v == v) end

--- parse a call's literal string arguments: ("a", "b") -> {"a", "b"}, index after ")" ; nil if not all literals
local function literal_args(toks, k, base)
  -- toks[k] is "("
  local args = {}
  k = k + 1
  while toks[k] and not is_p(toks[k], ")") do
    local t = toks[k]
    if t.t == "str" or (t.t == "tmpl" and not t.dynamic) then
      args[#args + 1] = t.v
    elseif is_n(t, "__dirname") or (is_n(t, "import") and is_p(toks[k + 1], ".") and is_n(toks[k + 2], "meta")
                                    and is_p(toks[k + 3], ".") and is_n(toks[k + 4], "dirname")) then
      args[#args + 1] = base
      if t.v == "import" then k = k + 4 end
    elseif is_n(t, "process") and is_p(toks[k + 1], ".") and is_n(toks[k + 2], "cwd") and is_p(toks[k + 3], "(")
           and is_p(toks[k + 4], ")") then
      args[#args + 1] = base
      k = k + 4
    else
      return nil
    end
    k = k + 1
    if is_p(toks[k], ",") then k = k + 1
    elseif not is_p(toks[k], ")") then return nil end
  end
  return args, k + 1
end

local function join_path(parts, resolve)
  local out = ""
  for _, p in ipairs(parts) do
    if p:sub(1, 1) == "/" then out = p
    elseif out == "" then out = p
    else out = out:gsub("/+$", "") .. "/" .. p end
  end
  out = out:gsub("/%./", "/"):gsub("^%./", ""):gsub("//+", "/")
  if out ~= "/" then out = out:gsub("/$", "") end
  return out
end

--- a value starting at toks[k]; returns value, index after it
parse_value = function(toks, k, base)
  local t = toks[k]
  if not t then return { kind = "dynamic", text = "", line = 0 }, k end
  local e = skip_expr(toks, k)
  local single = (e == k + 1)
  -- strip TypeScript `as const` / `satisfies X` / `as X`
  local last = e - 1
  if last >= k + 2 and is_n(toks[last - 1], "as") or (last >= k + 2 and is_n(toks[last - 1], "satisfies")) then
    last = last - 2
    single = (last == k)
  end
  if single or last == k then
    if t.t == "str" then return { kind = "string", value = t.v, line = t.line }, e end
    if t.t == "tmpl" and not t.dynamic then return { kind = "string", value = t.v, line = t.line }, e end
  end
  if is_p(t, "{") then
    local obj, after = parse_object(toks, k, base)
    if after - 1 == last then return obj, e end
    return { kind = "dynamic", text = tok_text(toks, k, e - 1), line = t.line }, e
  end
  -- env("NAME") / env('NAME') (prisma/config's env)
  if is_n(t, "env") and is_p(toks[k + 1], "(") and toks[k + 2] and toks[k + 2].t == "str"
     and is_p(toks[k + 3], ")") and k + 3 == last then
    return { kind = "env", name = toks[k + 2].v, line = t.line }, e
  end
  -- process.env.NAME / process.env["NAME"]
  if is_n(t, "process") and is_p(toks[k + 1], ".") and is_n(toks[k + 2], "env") then
    if is_p(toks[k + 3], ".") and is_n(toks[k + 4]) and k + 4 == last then
      return { kind = "env", name = toks[k + 4].v, line = t.line }, e
    end
    if is_p(toks[k + 3], "[") and toks[k + 4] and toks[k + 4].t == "str" and is_p(toks[k + 5], "]") and k + 5 == last then
      return { kind = "env", name = toks[k + 4].v, line = t.line }, e
    end
  end
  -- path.join("a", "b") / path.resolve(__dirname, "a") / join(...) / resolve(...)
  local fn_end
  if is_n(t, "path") and is_p(toks[k + 1], ".") and (is_n(toks[k + 2], "join") or is_n(toks[k + 2], "resolve"))
     and is_p(toks[k + 3], "(") then
    fn_end = k + 3
  elseif (is_n(t, "join") or is_n(t, "resolve")) and is_p(toks[k + 1], "(") then
    fn_end = k + 1
  end
  if fn_end then
    local args, after = literal_args(toks, fn_end, base)
    if args and after - 1 == last then
      return { kind = "string", value = join_path(args), line = t.line }, e
    end
  end
  return { kind = "dynamic", text = tok_text(toks, k, e - 1), line = t.line }, e
end

-- ------------------------------------------------------------ the exported object

--- index of the "{" of the exported configuration object, or nil
local function find_export(toks)
  local function object_at(k)
    -- defineConfig({ ... }) or a bare { ... }, possibly parenthesised
    while is_p(toks[k], "(") do k = k + 1 end
    if is_p(toks[k], "{") then return k end
    if is_n(toks[k]) and is_p(toks[k + 1], "(") then
      local j = k + 2
      if is_p(toks[j], "{") then return j end
    end
    -- a generic call: defineConfig<...>({ ... })
    return nil
  end
  local function var_object(name)
    for k = 1, #toks - 2 do
      if (is_n(toks[k], "const") or is_n(toks[k], "let") or is_n(toks[k], "var")) and is_n(toks[k + 1], name) then
        local j = k + 2
        if is_p(toks[j], ":") then
          while toks[j] and not is_p(toks[j], "=") do j = j + 1 end
        end
        if is_p(toks[j], "=") then return object_at(j + 1) end
      end
    end
    return nil
  end
  for k = 1, #toks do
    local t = toks[k]
    if is_n(t, "export") and is_n(toks[k + 1], "default") then
      local o = object_at(k + 2)
      if o then return o end
      if is_n(toks[k + 2]) and not is_p(toks[k + 3], "(") then return var_object(toks[k + 2].v), toks[k + 2] end
      return nil, t
    end
    if is_n(t, "module") and is_p(toks[k + 1], ".") and is_n(toks[k + 2], "exports") and is_p(toks[k + 3], "=") then
      local o = object_at(k + 4)
      if o then return o end
      if is_n(toks[k + 4]) then return var_object(toks[k + 4].v), toks[k + 4] end
      return nil, t
    end
  end
  return nil
end

local function flatten(obj, prefix, out)
  for _, key in ipairs(obj.order) do
    local v = obj.fields[key]
    local path = prefix and (prefix .. "." .. key) or key
    out[path] = v
    if v.kind == "object" then flatten(v, path, out) end
  end
  return out
end

--- Read the values of a configuration file's exported object.
--- values["migrations.path"], values["schema"], values["datasource.url"], ... are
--- value records ({kind = "string"|"env"|"object"|"dynamic", ...}); spreads (...x)
--- are in spreads = {{path, text, line}} since they may override anything.
---@param src string
---@param base? string directory that __dirname / import.meta.dirname stand for (default ".")
---@return table|nil result {values, spreads}
---@return string? err "line N: reason"
function M.extract(src, base)
  local toks, err = M.tokenize(src)
  if not toks then return nil, err end
  local k, at = find_export(toks)
  if not k then
    return nil, at and ("line %d: the exported configuration is not an object literal (defineConfig({ ... }) or export default { ... })"):format(at.line)
                 or "no exported configuration (export default defineConfig({ ... }) or module.exports = { ... })"
  end
  local obj = parse_object(toks, k, base or ".")
  local values = flatten(obj, nil, {})
  local spreads = {}
  local function collect(o, prefix)
    if o.spread then spreads[#spreads + 1] = { path = prefix or "", text = o.spread.text, line = o.spread.line } end
    for _, key in ipairs(o.order) do
      local v = o.fields[key]
      if v.kind == "object" then collect(v, prefix and (prefix .. "." .. key) or key) end
    end
  end
  collect(obj, nil)
  return { values = values, spreads = spreads }
end

-- ------------------------------------------------------------ the layout

local function abs(p, base)
  if p:sub(1, 1) == "/" then return p end
  if base == "" or base == "." then return p end
  return (base .. "/" .. p):gsub("/%./", "/"):gsub("/%.$", ""):gsub("/$", "")
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

--- package.json's "prisma": {"schema": "..."} (a minimal reader: the JSON decoder of migfix.json)
local function package_schema(root)
  local text = fs.read(root .. "/package.json")
  if not text then return nil end
  local ok, doc = pcall(require("migfix.json").decode, text)
  if not ok or type(doc) ~= "table" then
    return nil, ("%s/package.json: not valid JSON (%s)"):format(root, tostring(doc):gsub("^.-: ", ""))
  end
  local p = doc.prisma
  if type(p) == "table" and type(p.schema) == "string" and p.schema ~= "" then return p.schema end
  return nil
end

--- Where the schema and migrations of a Prisma project are, and where its URL comes from.
--- Returns {
---   config = path of prisma.config.* | nil, config_name,
---   schema = absolute path | nil, schema_source = text,
---   migrations = absolute path | nil, migrations_source = text,   -- nil: use the default
---   url = {env = NAME} | {literal = URL} | nil, url_source = text,
---   dynamic = { migrations = {text, where}, url = {...}, schema = {...} },  -- what could not be read
---   problems = { text },                                              -- unreadable files (warnings)
---   read = { "prisma.config.ts", "package.json", ... } }              -- what was looked at
---@param root string absolute project root
---@return table layout
function M.locate(root)
  local L = { dynamic = {}, problems = {}, read = {} }
  local values, spreads = {}, {}
  for _, name in ipairs(M.CONFIG_NAMES) do
    local path = root .. "/" .. name
    local src = fs.read(path)
    if src then
      L.config, L.config_name = path, name
      L.read[#L.read + 1] = name
      local r, err = M.extract(src, root)
      if r then
        values, spreads = r.values, r.spreads
      else
        L.problems[#L.problems + 1] = ("%s: %s"):format(name, err)
        L.unreadable = ("%s: %s"):format(name, err)
      end
      break
    end
  end
  local function where(v) return ("%s:%d"):format(L.config_name, v.line) end
  local function overridden(path)
    for _, s in ipairs(spreads) do
      if s.path == "" or path:sub(1, #s.path + 1) == s.path .. "." or path == s.path then return s end
    end
    return nil
  end
  local function pick(path, what)
    local v = values[path]
    local s = overridden(path)
    if v and v.kind == "string" then
      return v.value, where(v)
    elseif v and v.kind == "env" and what == "url" then
      return { env = v.name }, where(v)
    elseif v then
      L.dynamic[what] = { text = v.text or v.kind, where = where(v), key = path }
    elseif s then
      L.dynamic[what] = { text = "..." .. s.text, where = ("%s:%d"):format(L.config_name, s.line), key = path }
    elseif L.unreadable then
      L.dynamic[what] = { text = L.unreadable, where = L.config_name, key = path }
    end
    return nil
  end

  -- the database URL
  local url, usrc = pick("datasource.url", "url")
  if type(url) == "string" then L.url = { literal = url } elseif url then L.url = url end
  L.url_source = usrc

  -- the schema: prisma.config's schema, else package.json's prisma.schema, else the defaults
  local schema, ssrc = pick("schema", "schema")
  if schema then
    L.schema, L.schema_source, L.schema_explicit = abs(schema, root), ssrc, true
  elseif not L.dynamic.schema then
    local ps, perr = package_schema(root)
    if perr then L.problems[#L.problems + 1] = perr end
    if fs.exists(root .. "/package.json") then L.read[#L.read + 1] = "package.json" end
    if ps then
      L.schema, L.schema_source, L.schema_explicit = abs(ps, root), "package.json prisma.schema", true
    else
      for _, cand in ipairs({ "prisma/schema.prisma", "schema.prisma", "prisma/schema" }) do
        local p = root .. "/" .. cand
        if (cand == "prisma/schema" and fs.is_dir(p)) or (cand ~= "prisma/schema" and fs.exists(p) and not fs.is_dir(p)) then
          L.schema, L.schema_source = p, cand
          break
        end
      end
    end
  end

  -- migrations: prisma.config's migrations.path, else next to the schema (file: its
  -- directory; folder: inside it), as Prisma places them
  local mpath, msrc = pick("migrations.path", "migrations")
  if mpath then
    L.migrations, L.migrations_source = abs(mpath, root), msrc
  elseif L.schema and not L.dynamic.migrations then
    local dir = fs.is_dir(L.schema) and L.schema or dirname(L.schema)
    -- a default schema location only counts when its migrations folder exists,
    -- so a project laid out as before keeps prisma/migrations
    if L.schema_explicit or fs.is_dir(dir .. "/migrations") then
      L.migrations, L.migrations_source = dir .. "/migrations", "next to the schema (" .. L.schema_source .. ")"
    end
  end
  return L
end

return M
