/* Fuzz target: PostgreSQL's parser through migfix.sql (engine/sql.c): parse,
 * split, fingerprint and span on any bytes. Invariants: a failure is nil,
 * message, {message, cursorpos, line, column} with the position inside the
 * text; every split statement lies inside the text, in order; span of a
 * parsed statement gives its own text. The only raise allowed is the
 * documented "nested too deeply". */
#include "fuzz_lua.h"

int luaopen_migfix_sql(lua_State *L);

static const char CHECK[] =
    "local function fail(w) error('INVARIANT: ' .. w, 0) end\n"
    "local function check_err(msg, e, text)\n"
    "  if type(msg) ~= 'string' or type(e) ~= 'table' then fail('error shape') end\n"
    "  if e.line and (e.line < 1 or e.column < 1) then fail('error position') end\n"
    "  if e.cursorpos and e.cursorpos > #text + 1 then fail('cursorpos past the end') end\n"
    "end\n"
    "return function(text)\n"
    "  local tree, msg, e = M.parse(text)\n"
    "  if tree then\n"
    "    for _, raw in ipairs(tree.stmts or {}) do\n"
    "      local loc, n = raw.stmt_location or 0, raw.stmt_len or 0\n"
    "      if loc > #text then fail('stmt_location past the end') end\n"
    "      local sp = M.span(text, loc, n)\n"
    "      if sp and (sp.offset < 0 or sp.offset + sp.length > #text or sp.text ~= text:sub(sp.offset + 1, sp.offset + sp.length)) then\n"
    "        fail('span outside the text') end\n"
    "      if sp and sp.end_line < sp.line then fail('span lines') end\n"
    "    end\n"
    "  else check_err(msg, e, text) end\n"
    "  local parts, m2, e2 = M.split(text)\n"
    "  if parts then\n"
    "    local last = 0\n"
    "    for _, p in ipairs(parts) do\n"
    "      if p.offset < last or p.offset + p.length > #text then fail('split part outside the text or out of order') end\n"
    "      if p.text ~= text:sub(p.offset + 1, p.offset + p.length) then fail('split text') end\n"
    "      last = p.offset + p.length\n"
    "    end\n"
    "  else check_err(m2, e2, text) end\n"
    "  local fp, m3, e3 = M.fingerprint(text)\n"
    "  if fp then if not fp:match('^%x+$') then fail('fingerprint hex') end else check_err(m3, e3, text) end\n"
    "  local at = (#text > 0) and (text:byte(1) % (#text + 1)) or 0\n"
    "  M.span(text, at, (#text > 1) and text:byte(2) or 0)\n"
    "end\n";

static int allowed(const char *msg) { return strstr(msg, "nested too deeply") != NULL; }

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L) L = fuzz_state("migfix.sql", luaopen_migfix_sql, CHECK);
    fuzz_run(L, data, size, allowed);
    return 0;
}
