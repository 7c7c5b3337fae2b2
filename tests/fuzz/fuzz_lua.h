/* A Lua state for the fuzz targets of the Lua bindings (sql, json): the
 * module under test is opened once, and each input goes through a Lua check
 * function (a chunk of the target) under pcall. The check raises
 * "INVARIANT: ..." for a broken invariant (then the target aborts); any
 * other raise must be one the binding documents (allowed()). */
#ifndef MIGFIX_FUZZ_LUA_H
#define MIGFIX_FUZZ_LUA_H

#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz.h"

static lua_State *fuzz_state(const char *modname, lua_CFunction open, const char *check_chunk)
{
    lua_State *L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    luaL_requiref(L, modname, open, 0);
    lua_setglobal(L, "M");
    if (luaL_loadstring(L, check_chunk) != LUA_OK) {
        fprintf(stderr, "fuzz: check chunk: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_call(L, 0, 1); /* the check function */
    lua_setglobal(L, "check");
    return L;
}

/* Run check(data); abort on a broken invariant or a raise not allowed. */
static void fuzz_run(lua_State *L, const uint8_t *data, size_t size, int (*allowed)(const char *msg))
{
    lua_getglobal(L, "check");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg) msg = "(error object is not a string)";
        if (strstr(msg, "INVARIANT") || !allowed(msg)) {
            fprintf(stderr, "fuzz: %s\n", msg);
            abort();
        }
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
}

#endif
