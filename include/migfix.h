/* migfix — shared declarations of the C core.
 *
 * One engine/<module>.c per Lua module, each ending with its
 * luaopen_migfix_<module>. Exit codes live here, in one place. */
#ifndef MIGFIX_H
#define MIGFIX_H

#include <lua.h>
#include <lauxlib.h>

#define MIGFIX_VERSION "0.1.0"

/* Exit codes (stable; documented in README and --help). */
enum migfix_exit {
    MIGFIX_EXIT_OK = 0,        /* ok / clean / nothing to do */
    MIGFIX_EXIT_ATTENTION = 1, /* needs attention, refused, or findings */
    MIGFIX_EXIT_USAGE = 2,     /* usage or configuration error */
    MIGFIX_EXIT_CONNECT = 3,   /* cannot reach the database */
    MIGFIX_EXIT_FAILURE = 4    /* an action failed mid-way (ledger left as it was) */
};

/* Lua modules of the C core (registered in package.preload by main.c). */
int luaopen_migfix_crypto(lua_State *L);
int luaopen_migfix_db(lua_State *L);
int luaopen_migfix_json(lua_State *L);
int luaopen_migfix_migrations(lua_State *L);
int luaopen_migfix_proc(lua_State *L);
int luaopen_migfix_sandbox(lua_State *L);
int luaopen_migfix_sql(lua_State *L);

/* Shared helpers (engine/lhelpers.c). */

/* The one failure shape of every primitive (an expected failure; misuse
 * raises in lauxlib's "bad argument #n to 'f'" form): nil, message and an
 * info table with `kind`, what failed — "os" and "spawn" (with `errno`),
 * "url", "connect", "auth", "server" (db, with sqlstate, detail, hint...),
 * "parse" (sql, with line, column), "json", and the sandbox's "error",
 * "deadline", "memory", "data" — plus the primitive's own fields
 * (migrations: missing). mf_pushfail pushes the three, `errno` when
 * err > 0, and returns 3; a caller may add fields to the table on top. */
int mf_pushfail(lua_State *L, const char *kind, int err, const char *fmt, ...);
/* Raise "too many arguments (expected CALL)" past max arguments. */
void mf_checknargs(lua_State *L, int max, const char *call);
/* Raise if the table at idx has a key not in the NULL-terminated list. */
void mf_checkfields(lua_State *L, int idx, const char *call, const char *const fields[]);
/* Optional string/integer/boolean field of the table at idx. */
const char *mf_optfield_string(lua_State *L, int idx, const char *k, const char *def);
lua_Integer mf_optfield_integer(lua_State *L, int idx, const char *k, lua_Integer def);
int mf_optfield_boolean(lua_State *L, int idx, const char *k, int def);

/* Create (once) the metatable NAME of a userdata type, as lauxlib and
 * liolib do: META's metamethods (a resource owner lists the same function
 * as __gc and __close) and, when METHODS is given, a table of them as
 * __index. Leaves the stack as it was. */
void mf_createmeta(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);
/* A zeroed userdata of size bytes with metatable mt (made by mf_createmeta):
 * the box that owns a C resource, released by the metatable's __gc/__close. */
void *mf_newbox(lua_State *L, size_t size, const char *mt);

/* The shared NULL sentinel (db.NULL == json.null). */
void mf_pushnull(lua_State *L);
int mf_isnull(lua_State *L, int idx);

#endif
