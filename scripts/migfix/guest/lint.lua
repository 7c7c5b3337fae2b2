-- migfix/guest/lint.lua — runs inside the sandbox state of one lint run
-- (scripts/migfix/lint.lua, a team's rules), after base.lua; the global `locks` is
-- scripts/migfix/locks.lua. It loads the rule files, builds `ctx` from
-- the unit's data (read-only copies) and runs the rules on one statement
-- per call. README "Lint" documents what a rule sees.
local guest = guest
local type, ipairs, tostring, pairs, store_set = type, ipairs, tostring, pairs, store_set

local rules = {}
local stmts, ctx, on
local frozen_locks -- the same for every unit

--- Load one rule file; describe what it returned (the host checks the shape).
function lint_load(text, chunkname)
  local chunk, err = guest.load(text, chunkname, guest.env())
  if not chunk then return { syntax = err } end
  local ok, r = guest.pcall(chunk)
  if not ok then return { error = r } end
  local d = { type = type(r) }
  if type(r) ~= "table" then return d end
  d.fields = {}
  for k in pairs(r) do d.fields[#d.fields + 1] = type(k) == "string" and k or tostring(k) end
  d.id = type(r.id) == "string" and r.id or nil
  d.title = r.title ~= nil and tostring(r.title) or nil
  d.description = r.description ~= nil and tostring(r.description) or nil
  d.default_severity = r.default_severity ~= nil and tostring(r.default_severity) or nil
  d.check = type(r.check)
  rules[#rules + 1] = r
  d.index = #rules
  return d
end


--- The unit (each table a read-only proxy, filled when first read):
--- { statements, file, unit_mode, server_version, settings, schema, sizes (nil
--- offline), segments (segment -> its facts), first_additive, new_at (table key
--- -> index of the statement creating it), index_of, segment_of (by position),
--- on = the rules to run, { {index = of lint_load, id}, ... } }. ctx is what
--- README "Lint" documents, as lint.lua builds it for migfix's own rules.
function lint_unit(d)
  if not frozen_locks then
    local locks = locks -- defined after this file (migfix.guest define)
    frozen_locks = freeze { LEVELS = locks.LEVELS, FACTS = locks.FACTS, rank = locks.rank, max = locks.max,
                            blocks_reads = locks.blocks_reads, blocks_writes = locks.blocks_writes }
  end
  stmts, on = d.statements, d.on
  local sizes, settings, schema_default = d.sizes, d.settings, d.schema
  local segs, new_at, idx, seg = d.segments, d.new_at, d.index_of, d.segment_of
  local function tkey(schema, name) return (schema or schema_default) .. "." .. name end
  local c = {
    file = d.file, unit_mode = d.unit_mode, server_version = d.server_version, offline = sizes == nil,
    settings = settings, statements = stmts, schema = schema_default, locks = frozen_locks,
    first_additive = d.first_additive,
  }
  lintctx.add_sizes(c, settings, sizes, schema_default, tkey) -- scripts/migfix/lintctx.lua
  function c.name(t) return ('"%s"'):format(t.table) end
  -- index and segment of each statement come as two flat lists (reading
  -- x.segment of every statement would copy every statement in)
  function c.segment(s)
    local out, sg = {}, s.segment
    for i = 1, #idx do if seg[i] == sg then out[#out + 1] = stmts[i] end end
    return out
  end
  function c.before(s)
    local out, sg, si = {}, s.segment, s.index
    for i = 1, #idx do
      if idx[i] >= si then break end
      if seg[i] == sg then out[#out + 1] = stmts[i] end
    end
    return out
  end
  function c.segment_facts(s) return segs[s.segment] end
  function c.created_before(s, schema, name)
    local at = new_at[tkey(schema, name)]
    return at ~= nil and at < s.index
  end
  ctx = freeze(c)
end

--- Run the unit's rules on the statement at position i, its parse tree
--- node handed in with it (and taken away afterwards: other statements
--- carry no tree). Returns { [id] = findings } of the rules that found
--- something, or { failed = id, error = text | returned = type } for the
--- first rule that raised or returned something not a list.
function lint_check(i, node)
  local s = stmts[i]
  if node ~= nil then store_set(s, "node", node) end
  local out = {}
  for _, r in ipairs(on) do
    local rule = rules[r.index]
    local ok, res = guest.pcall(rule.check, s, ctx)
    if not ok then out = { failed = r.id, error = res } break end
    if res ~= nil then
      if type(res) ~= "table" then out = { failed = r.id, returned = type(res) } break end
      out[r.id] = res
    end
  end
  if node ~= nil then store_set(s, "node", nil) end
  return out
end
