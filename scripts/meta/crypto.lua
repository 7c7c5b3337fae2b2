---@meta migfix.crypto
-- LuaLS stub for the C module engine/crypto.c (OpenSSL).
local crypto = {}

---SHA-256 of a file's bytes.
---@param path string
---@return string hex
---@overload fun(path: string): nil, string, {errno: integer} -- nil, "path: reason", info
function crypto.sha256_file(path) end

---A random version 4 UUID (RAND_bytes), lowercase and hyphenated, 36 characters.
---@return string
function crypto.uuid4() end

---`nbytes` random bytes (0 to 1048576) as 2*nbytes lowercase hex digits.
---@param nbytes integer
---@return string
function crypto.random_hex(nbytes) end

return crypto
