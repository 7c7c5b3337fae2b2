/* Fuzz target: migfix.json (engine/json.c). Invariants: decode gives a
 * value or nil, message; a decoded value encodes, and encode(decode(e)) == e
 * for that encoding (compact and pretty, sorted keys: the journal hashes
 * exactly this round trip). Raises allowed: nesting depth. */
#include "fuzz_lua.h"

int luaopen_migfix_json(lua_State *L);

static const char CHECK[] =
    "local function fail(w) error('INVARIANT: ' .. w, 0) end\n"
    "return function(text)\n"
    "  local ok, v, err = pcall(M.decode, text)\n"
    "  if not ok then error(v, 0) end\n"
    "  if v == nil then if type(err) ~= 'string' then fail('decode failure without a message') end return end\n"
    "  local ok2, e1 = pcall(M.encode, v)\n"
    "  if not ok2 then fail('a decoded value does not encode: ' .. tostring(e1)) end\n"
    "  local v2 = M.decode(e1)\n"
    "  if v2 == nil then fail('encode output does not decode: ' .. e1) end\n"
    "  local e2 = M.encode(v2)\n"
    "  if e1 ~= e2 then fail('round trip changes the text: ' .. e1 .. ' vs ' .. e2) end\n"
    "  local p = M.encode(v, { pretty = true })\n"
    "  if M.encode(M.decode(p)) ~= e1 then fail('pretty round trip') end\n"
    "end\n";

static int allowed(const char *msg) { return strstr(msg, "deep") != NULL || strstr(msg, "depth") != NULL; }

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L) L = fuzz_state("migfix.json", luaopen_migfix_json, CHECK);
    fuzz_run(L, data, size, allowed);
    return 0;
}
