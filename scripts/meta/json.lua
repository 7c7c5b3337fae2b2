---@meta migfix.json
-- LuaLS stub for the C module engine/json.c (encoder in C, decoder on cJSON).
local json = {}

---JSON null; the same value as db.NULL.
---@type lightuserdata
json.null = nil

---@class migfix.json.EncodeOptions
---@field pretty? boolean 2-space indent, "key": value (default false)
---@field sort_keys? boolean object keys in bytewise order (default true)

---Encode a value. Sequences 1..n become arrays, other tables objects with
---string keys; an empty table is {} unless marked by json.array. Raises
---"cannot encode <what> at <path>" (path like $.a[2], Lua indexes) on
---functions, userdata, NaN/inf, cycles, mixed or sparse keys.
---@param v any
---@param opts? migfix.json.EncodeOptions
---@return string
function json.encode(v, opts) end

---Decode JSON text: objects -> tables, arrays -> sequences (marked as
---json.array), null -> json.null, integral numbers within 2^53 -> integers.
---With opts.nulls = false, nulls are left out instead: null members are
---absent, null array elements leave their slot empty, arrays are plain
---tables, and a top-level null is nil.
---@param text string
---@param opts? {nulls?: boolean}
---@return any value
---@overload fun(text: string, opts?: table): nil, string -- nil, "invalid JSON at byte N: ..."
function json.decode(text, opts) end

---Mark a table (or a new empty one) as an array, so that {} encodes as [].
---@generic T: table
---@param t? T
---@return T
function json.array(t) end

return json
