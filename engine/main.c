/* migfix — entry point.
 *
 * Builds one Lua 5.4 state, registers the C modules under migfix.* in
 * package.preload, puts <home>/scripts first on package.path (their make-compiled
 * bytecode, when current, ahead of them), and hands the command line to
 * scripts/migfix/cli.lua. Everything user-facing (options,
 * commands, messages) lives in Lua; C keeps the primitives. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lualib.h>

#include "migfix.h"

#ifndef MIGFIX_DATADIR
#define MIGFIX_DATADIR "/usr/local/share/migfix"
#endif

/* migfix.exit: the exit codes of include/migfix.h, the one table Lua uses
 * (ui.EXIT), --help and the README describe */
static int luaopen_migfix_exit(lua_State *L)
{
    static const struct { const char *name; int code; } codes[] = {
        {"OK", MIGFIX_EXIT_OK}, {"ATTENTION", MIGFIX_EXIT_ATTENTION}, {"USAGE", MIGFIX_EXIT_USAGE},
        {"CONNECT", MIGFIX_EXIT_CONNECT}, {"FAILURE", MIGFIX_EXIT_FAILURE},
    };
    lua_createtable(L, 0, (int)(sizeof codes / sizeof codes[0]));
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        lua_pushinteger(L, codes[i].code);
        lua_setfield(L, -2, codes[i].name);
    }
    return 1;
}

static const luaL_Reg modules[] = {
    {"migfix.exit", luaopen_migfix_exit},
    {"migfix.crypto", luaopen_migfix_crypto},
    {"migfix.db", luaopen_migfix_db},
    {"migfix.json", luaopen_migfix_json},
    {"migfix.migrations", luaopen_migfix_migrations},
    {"migfix.proc", luaopen_migfix_proc},
    {"migfix.sandbox", luaopen_migfix_sandbox},
    {"migfix.sql", luaopen_migfix_sql},
    {NULL, NULL}
};

static int has_cli(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/scripts/migfix/cli.lua", dir);
    return access(p, R_OK) == 0;
}

/* The directory holding scripts/ and policies/, first match of:
 *   $MIGFIX_HOME                       (explicit)
 *   <dir of the binary>                (a source checkout: ./migfix beside scripts/)
 *   <dir of the binary>/../share/migfix (an installed tree, wherever it was moved)
 *   MIGFIX_DATADIR                     (baked in at build time: $(PREFIX)/share/migfix)
 * The binary's directory comes from /proc/self/exe, so symlinks to it work.
 * `tried` collects the candidates for the error hint. */
static void find_home(char *out, size_t n, char *tried, size_t tn)
{
    const char *env = getenv("MIGFIX_HOME");
    tried[0] = '\0';
    if (env && *env) { snprintf(out, n, "%s", env); snprintf(tried, tn, "$MIGFIX_HOME=%s", env); return; }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (has_cli(exe)) { snprintf(out, n, "%s", exe); return; }
            /* <prefix>/bin -> <prefix>/share/migfix */
            char *up = strrchr(exe, '/');
            if (up) {
                *up = '\0';
                int w = snprintf(out, n, "%s/share/migfix", exe);
                *up = '/';
                if (w > 0 && (size_t)w < n && has_cli(out)) return;
                snprintf(tried, tn, "%s, %s, ", exe, out);
            } else {
                snprintf(tried, tn, "%s, ", exe);
            }
        }
    }
    size_t used = strlen(tried);
    snprintf(tried + used, tn - used, "%s", MIGFIX_DATADIR);
    snprintf(out, n, "%s", MIGFIX_DATADIR);
}

/* Replace the password of any URL in argv by '*' so that `ps` never shows
 * it; the Lua side receives the original text (copied first). */
static void scrub_argv(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *s = strstr(argv[i], "://");
        if (!s) continue;
        s += 3;
        char *at = strchr(s, '@');
        char *slash = strchr(s, '/');
        if (!at || (slash && slash < at)) continue;
        char *colon = memchr(s, ':', (size_t)(at - s));
        if (!colon) continue;
        for (char *p = colon + 1; p < at; p++) *p = '*';
    }
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* A searcher ahead of Lua's own for the modules of <home>/scripts: the
 * bytecode make compiled from each one (luac5.4, line information kept) in
 * <home>/luac (installed) or <home>/build/luac (a checkout) is loaded when it
 * is not older than the source; parsing the sources was ~4 ms of a
 * diagnose. No source, no bytecode: a missing, stale or unloadable bytecode
 * file falls through to the source (Lua's searcher), never the reverse. */
static int search_bytecode(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *home = lua_tostring(L, lua_upvalueindex(1));
    char rel[PATH_MAX], src[PATH_MAX], bc[PATH_MAX];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof rel) return 0;
    for (size_t i = 0; i <= n; i++) rel[i] = name[i] == '.' ? '/' : name[i];
    if ((size_t)snprintf(src, sizeof src, "%s/scripts/%s.lua", home, rel) >= sizeof src) return 0;
    struct stat ss, bs;
    if (stat(src, &ss) != 0) return 0;
    static const char *const dirs[] = {"luac", "build/luac"};
    for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++) {
        if ((size_t)snprintf(bc, sizeof bc, "%s/%s/%s.luac", home, dirs[d], rel) >= sizeof bc) continue;
        if (stat(bc, &bs) != 0) continue;
        if (bs.st_mtim.tv_sec < ss.st_mtim.tv_sec
            || (bs.st_mtim.tv_sec == ss.st_mtim.tv_sec && bs.st_mtim.tv_nsec < ss.st_mtim.tv_nsec))
            continue; /* older than the source: the source was edited since */
        if (luaL_loadfilex(L, bc, "b") != LUA_OK) { lua_pop(L, 1); continue; }
        lua_pushstring(L, src); /* the loader's second argument, as Lua's searcher gives */
        return 2;
    }
    return 0;
}

static int run(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    const char *home = lua_tostring(L, 3);

    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const luaL_Reg *m = modules; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/scripts/?.lua;%s/scripts/?/init.lua;%s",
                    home, home, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "searchers"); /* {preload, Lua, C, all-in-one}: ours goes second */
    for (lua_Integer i = (lua_Integer)luaL_len(L, -1); i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushstring(L, home);
    lua_pushcclosure(L, search_bytecode, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "migfix.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_createtable(L, 0, 2);
    lua_pushstring(L, home);
    lua_setfield(L, -2, "home");
    lua_pushliteral(L, MIGFIX_VERSION);
    lua_setfield(L, -2, "version");
    lua_call(L, 2, 1);
    return 1;
}

int main(int argc, char **argv)
{
    char home[PATH_MAX], tried[3 * PATH_MAX + 64];
    find_home(home, sizeof home, tried, sizeof tried);

    /* Lua gets a copy of argv before the passwords are scrubbed. */
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    if (!copy) { fputs("migfix: error: out of memory\n", stderr); return MIGFIX_EXIT_FAILURE; }
    for (int i = 0; i < argc; i++) copy[i] = strdup(argv[i]);
    scrub_argv(argc, argv);

    signal(SIGPIPE, SIG_IGN);

    lua_State *L = luaL_newstate();
    if (!L) { fputs("migfix: error: cannot create Lua state\n", stderr); return MIGFIX_EXIT_FAILURE; }
    lua_pushcfunction(L, traceback);
    lua_pushcfunction(L, run);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, copy);
    lua_pushstring(L, home);
    int rc;
    if (lua_pcall(L, 3, 1, 1) != LUA_OK) {
        fprintf(stderr, "migfix: error: internal error: %s\n", lua_tostring(L, -1));
        if (!has_cli(home))
            fprintf(stderr, "migfix: hint: scripts/migfix/cli.lua not found (looked in %s); reinstall with 'make install', "
                            "or set MIGFIX_HOME to the directory holding scripts/ and policies/\n", tried);
        rc = MIGFIX_EXIT_FAILURE;
    } else {
        rc = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : MIGFIX_EXIT_OK;
    }
    lua_close(L); /* runs __gc: connections closed, advisory locks released */
    for (int i = 0; i < argc; i++) free(copy[i]);
    free(copy);
    fflush(stdout);
    return rc;
}
