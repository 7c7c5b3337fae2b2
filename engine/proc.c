/* migfix.proc — stub, to be implemented. */
#include "migfix.h"

static const luaL_Reg lib[] = {
    {NULL, NULL}
};

int luaopen_migfix_proc(lua_State *L)
{
    luaL_newlib(L, lib);
    return 1;
}
