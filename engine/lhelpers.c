/* Shared check/push helpers for the Lua bindings. */
#include <stdarg.h>
#include <string.h>

#include "migfix.h"

int mf_pushfail(lua_State *L, const char *kind, int err, const char *fmt, ...)
{
    va_list ap;
    lua_pushnil(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    if (err > 0) {
        lua_pushinteger(L, err);
        lua_setfield(L, -2, "errno");
    }
    return 3;
}

void mf_checknargs(lua_State *L, int max, const char *call)
{
    if (lua_gettop(L) > max)
        luaL_error(L, "too many arguments (expected %s)", call);
}

void mf_checkfields(lua_State *L, int idx, const char *call, const char *const fields[])
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            for (int i = 0; fields[i]; i++)
                if (strcmp(k, fields[i]) == 0) { known = 1; break; }
            if (!known)
                luaL_error(L, "unrecognized option \"%s\" (expected %s)", k, call);
        } else {
            luaL_error(L, "option keys must be strings (expected %s)", call);
        }
        lua_pop(L, 1);
    }
}

const char *mf_optfield_string(lua_State *L, int idx, const char *k, const char *def)
{
    const char *s = def;
    if (lua_isnoneornil(L, idx)) return def;
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "option \"%s\" must be a string", k);
        s = lua_tostring(L, -1); /* stays anchored in the table */
    }
    lua_pop(L, 1);
    return s;
}

lua_Integer mf_optfield_integer(lua_State *L, int idx, const char *k, lua_Integer def)
{
    lua_Integer v = def;
    if (lua_isnoneornil(L, idx)) return def;
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1))
            luaL_error(L, "option \"%s\" must be an integer", k);
        v = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

int mf_optfield_boolean(lua_State *L, int idx, const char *k, int def)
{
    int v = def;
    if (lua_isnoneornil(L, idx)) return def;
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1))
            luaL_error(L, "option \"%s\" must be a boolean", k);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* The one NULL sentinel shared by migfix.db (SQL NULL) and migfix.json
 * (JSON null): a light userdata, so db.NULL == json.null. */
static const char mf_null_anchor = 0;

void mf_pushnull(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&mf_null_anchor);
}

int mf_isnull(lua_State *L, int idx)
{
    return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == (void *)&mf_null_anchor;
}

void *mf_newbox(lua_State *L, size_t size, const char *mt)
{
    void *p = lua_newuserdatauv(L, size, 0);
    memset(p, 0, size);
    luaL_setmetatable(L, mt);
    return p;
}

void mf_createmeta(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    if (luaL_newmetatable(L, name)) {
        if (meta) luaL_setfuncs(L, meta, 0);
        if (methods) {
            lua_newtable(L);
            luaL_setfuncs(L, methods, 0);
            lua_setfield(L, -2, "__index");
        }
    }
    lua_pop(L, 1);
}
