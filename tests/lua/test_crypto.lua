-- migfix.crypto: SHA-256, v4 UUIDs, random hex.
local H = require "helper"
local C = require "migfix.crypto"
local T = {}

local sha256 = require("migfix.migrations").checksum

T["sha256 (migrations.checksum: one binding; crypto has none)"] = function()
  H.eq(C.sha256, nil)
  H.eq(sha256("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
  H.eq(sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  H.ok(sha256("a\0b") ~= sha256("a"), "bytes after NUL count")
end

T["sha256_file"] = function()
  local d = H.tmpdir()
  local big = ("0123456789"):rep(20000)
  H.write(d .. "/f", big)
  H.eq(C.sha256_file(d .. "/f"), sha256(big))
  H.write(d .. "/e", "")
  H.eq(C.sha256_file(d .. "/e"), sha256(""))
  local ok, msg, info = C.sha256_file(d .. "/missing")
  H.eq(ok, nil)
  H.eq(msg, d .. "/missing: No such file or directory")
  H.eq(type(info.errno), "number")
  ok, msg = C.sha256_file(d)
  H.eq(ok, nil)
  H.eq(msg, d .. ": Is a directory")
end

T["uuid4: version, variant, lowercase, unique"] = function()
  local seen = {}
  for _ = 1, 200 do
    local u = C.uuid4()
    H.ok(u:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"), "v4 format " .. u)
    H.eq(u, u:lower())
    H.ok(not seen[u], "unique")
    seen[u] = true
  end
end

T["random_hex"] = function()
  H.eq(C.random_hex(0), "")
  local h = C.random_hex(16)
  H.ok(h:match("^[0-9a-f]+$") and #h == 32, "32 hex digits: " .. h)
  H.ok(C.random_hex(16) ~= h, "random")
  H.raises(function() C.random_hex(-1) end, "bad argument #1 to 'random_hex'")
  H.raises(function() C.random_hex(1.5) end, "bad argument #1 to 'random_hex'")
end

T["bad arguments raise"] = function()
  H.raises(function() sha256() end, "bad argument #1 to")
  H.raises(function() sha256("a", "b") end, "expected migrations.checksum(text)")
  H.raises(function() C.uuid4(1) end, "expected crypto.uuid4()")
  H.raises(function() C.sha256_file({}) end, "bad argument #1 to 'sha256_file'")
end

return T
