-- migfix.json: deterministic encoding, decoding, null and arrays.
local H = require "helper"
local J = require "migfix.json"
local T = {}

T["encode: scalars"] = function()
  H.eq(J.encode(1), "1")
  H.eq(J.encode(1.0), "1", "integral float without .0")
  H.eq(J.encode(-2.5), "-2.5")
  H.eq(J.encode(0.1), "0.1")
  H.eq(J.encode(1e300), "1e+300")
  H.eq(J.encode(math.maxinteger), "9223372036854775807")
  H.eq(J.encode(true), "true")
  H.eq(J.encode(J.null), "null")
  H.eq(J.encode("a\"b\\c\n\r\t\b\f\1\127é"), '"a\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u007fé"')
end

T["encode: sorted keys, arrays, empty tables"] = function()
  H.eq(J.encode({ b = 1, a = { 1, 2, 3 }, c = {}, d = J.array(), e = J.array({ "x" }) }),
    '{"a":[1,2,3],"b":1,"c":{},"d":[],"e":["x"]}')
  H.eq(J.encode({ B = 1, a = 2, ["_"] = 3 }), '{"B":1,"_":3,"a":2}', "bytewise key order")
  local s = J.encode({ z = 1, y = 2 }, { sort_keys = false })
  H.ok(s == '{"z":1,"y":2}' or s == '{"y":2,"z":1}', s)
end

T["encode: pretty"] = function()
  H.eq(J.encode({ b = { 1, { c = J.array() } }, a = {} }, { pretty = true }),
    '{\n  "a": {},\n  "b": [\n    1,\n    {\n      "c": []\n    }\n  ]\n}')
end

T["encode: errors name the path"] = function()
  H.raises(function() J.encode({ a = { 1, print } }) end, "cannot encode function at $.a[2]")
  H.raises(function() J.encode({ a = { x = 0 / 0 } }) end, "cannot encode NaN at $.a.x")
  H.raises(function() J.encode({ ["a b"] = math.huge }) end, 'cannot encode infinite number at $["a b"]')
  H.raises(function() J.encode({ io.stdout }) end, "cannot encode userdata at $[1]")
  local t = { x = {} }
  t.x.y = t
  H.raises(function() J.encode(t) end, "cannot encode cycle at $.x.y")
  H.raises(function() J.encode({ [1] = 1, [3] = 3 }) end, "at $")
  H.raises(function() J.encode({ 1, x = 2 }) end, "object keys must be strings")
  H.raises(function() J.encode({ [true] = 1 }) end, "object keys must be strings")
  -- the same table twice (not a cycle) is fine
  local shared = { 1 }
  H.eq(J.encode({ a = shared, b = shared }), '{"a":[1],"b":[1]}')
end

T["encode: bad arguments"] = function()
  H.raises(function() J.encode() end, "bad argument #1 to 'encode'")
  H.raises(function() J.encode(1, { indent = 2 }) end, 'unrecognized option "indent"')
  H.raises(function() J.encode(1, { pretty = 1 }) end, 'option "pretty" must be a boolean')
  H.raises(function() J.encode(1, {}, 3) end, "too many arguments")
  H.raises(function() J.array(setmetatable({}, {})) end, "already has a metatable")
end

T["decode"] = function()
  local v = assert(J.decode(' {"a":[1,2.5,null,true,false,"x\\u00e9\\n"],"b":{},"c":12345678901234,"d":1e3,"e":[]} '))
  H.eq(math.type(v.a[1]), "integer")
  H.eq(v.a[2], 2.5)
  H.eq(v.a[3], J.null)
  H.eq(v.a[4], true); H.eq(v.a[5], false)
  H.eq(v.a[6], "xé\n")
  H.eq(math.type(v.c), "integer"); H.eq(v.c, 12345678901234)
  H.eq(math.type(v.d), "integer")
  H.eq(math.type(J.decode("1e300")), "float")
  H.eq(J.encode(v.b), "{}")
  H.eq(J.encode(v.e), "[]", "an empty array round-trips")
  H.eq(J.decode('"s"'), "s")
end

T["decode with nulls = false: nulls left out, as a walk turning json.null into nil would"] = function()
  local text = '{"a":[1,null,3],"b":null,"c":{"d":null,"e":[]},"f":"x"}'
  local v = assert(J.decode(text, { nulls = false }))
  H.eq(v.a[1], 1); H.eq(v.a[2], nil); H.eq(v.a[3], 3)
  H.eq(v.b, nil); H.eq(v.c.d, nil); H.eq(v.f, "x")
  H.eq(next(v.c.e), nil)
  H.eq(getmetatable(v.a), nil, "plain tables")
  H.eq(J.decode("null", { nulls = false }), nil)
  H.eq(J.decode(text, { nulls = true }).b, J.null)
  H.eq(J.decode(text, {}).b, J.null)
  H.raises(function() J.decode(text, { nulls = "no" }) end, "bad option 'nulls' to 'json.decode' (expected a boolean, got string)")
  H.raises(function() J.decode(text, 1) end, "bad argument #2 to 'decode'")
end

T["decode: errors"] = function()
  local v, msg = J.decode('{"a":1} x')
  H.eq(v, nil); H.contains(msg, "invalid JSON at byte 9")
  v, msg = J.decode("[1,]")
  H.eq(v, nil); H.contains(msg, "invalid JSON at byte 4")
  local info
  v, msg, info = J.decode("")
  H.eq(v, nil); H.contains(msg, "invalid JSON at byte 1")
  H.same(info, { kind = "json" }, "the one failure shape: nil, message, {kind}")
  H.raises(function() J.decode() end, "bad argument #1 to 'decode'")
end

T["null is db.NULL"] = function()
  local ok, db = pcall(require, "migfix.db")
  if ok and type(db) == "table" and db.NULL ~= nil then H.eq(J.null, db.NULL) end
  H.eq(type(J.null), "userdata")
end

T["round trip"] = function()
  local doc = { name = "20240101_x", n = 3, list = { "a", "b" }, nested = { ok = true, none = J.null } }
  H.same(J.decode(J.encode(doc)), doc)
  H.eq(J.encode(J.decode(J.encode(doc, { pretty = true }))), J.encode(doc))
end

return T
