/* migfix.sandbox — a Lua state of its own for untrusted code.
 *
 * @module migfix.sandbox
 *
 * Policies, lint rules and migfix.lua run in a guest lua_State that shares
 * nothing with migfix's own state: not the string metatable, not a table,
 * not a function. What crosses is data, copied: arguments go in as deeply
 * read-only proxies (no metatable to reach, no rawset door, pairs that do
 * not hand out the store), results come out as plain tables (the proxies
 * read through), and a function, userdata or thread is refused either way.
 *
 * Three limits hold whatever the guest does:
 *   - a CPU deadline per call: a count hook checks the clock and, once the
 *     time is up, re-arms itself to fire on every instruction, so the error
 *     keeps coming until the call has unwound (pcall cannot swallow it);
 *   - an allocation budget (the state's allocator, lua_newstate): the
 *     first refused allocation stops the guest the same way;
 *   - a watchdog thread for the one case a hook cannot reach, a C function
 *     that never returns (a string pattern that backtracks for hours):
 *     at twice the deadline it prints why and ends the process, exit 2.
 * A stopped guest takes no more calls. The guest never gets debug (only
 * its traceback, as the global traceback for migfix's guest code),
 * collectgarbage, string.dump or the string metatable (hidden by
 * __metatable); what else it gets is decided by the Lua code loaded into it
 * (the files in scripts/migfix/guest/).
 *
 * Expected failures (the guest raised, ran over its deadline or budget, or
 * tried to hand out a function) return nil, message, info; misuse (bad
 * argument, unknown option, closed handle) raises. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lualib.h>

#include "migfix.h"

#define SANDBOX_MT "migfix.sandbox"
#define NEW_CALL "sandbox.new{name = text, memory = bytes, deadline = seconds, posix = bool, path = text, cpath = text}"
#define HOOK_COUNT 10000  /* instructions between two looks at the clock */
#define MAX_DEPTH 400     /* nesting of the data that crosses */
#define PATH_DEPTH 24     /* levels a copy error names */

enum stop { STOP_NONE, STOP_DEADLINE, STOP_MEMORY };

typedef struct {
    lua_State *G;          /* the guest; NULL once closed */
    size_t used, peak;     /* bytes the guest holds, and at most */
    size_t limit, budget;  /* refuse allocations past limit = setup + data + budget */
    int unlimited;         /* copying data in: the budget does not apply */
    void *refused_ptr;     /* the last refused request (Lua retries it after a full collection) */
    size_t refused_size;
    int pending;           /* a request was refused and not yet retried with success */
    int in_call;           /* the guest is running (deadline and budget armed) */
    int stop;              /* why the guest was stopped (enum stop) */
    double seconds;        /* the deadline of one call */
    long long deadline_ns; /* CPU time at which the running call stops */
    int ref_deadline, ref_memory; /* prebuilt error values, raised without allocating */
    lua_State *host;       /* the caller, during a call: lazy data is read from it */
    int refs;              /* host registry: address -> host table behind a lazy proxy */
    int gseen;             /* guest registry: host address -> its proxy (weak values) */
    int lazyinfo;          /* guest registry: proxy not yet filled -> host address (weak keys) */
    int lazy_mt;           /* guest registry: the metatable every proxy not yet filled shares */
    size_t floor;          /* bytes in use once migfix's own guest code is loaded */
    char name[128];        /* who runs in it, for the watchdog's message */
    char where[512];       /* file:line of the untrusted code when it was stopped */
} Sandbox;

/* One copy between the states, and the keys leading to where it failed. */
struct xfer {
    lua_State *from;      /* copy in: the host */
    int first, n;         /* copy in: host stack slots */
    const char *fname;    /* copy in: the guest global to call, or NULL for run_trusted */
    int depth;
    const char *what;     /* "argument" or "result" */
    int top;              /* the argument or result number */
    struct { int isint; lua_Integer i; const char *s; } path[PATH_DEPTH];
    char err[512];
};

/* The key of a filled proxy's metatable holding its store (light userdata:
 * looked up without allocating). */
static const char STORE_KEY = 0;

static long long now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the watchdog -------------------------------------------------------- */

static atomic_llong wd_cpu_limit;  /* 0: no guest call running */
static atomic_llong wd_wall_limit;
static atomic_uint wd_generation;
static atomic_int wd_started;
static const char *wd_name;
static double wd_seconds;

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        unsigned gen = atomic_load(&wd_generation);
        long long cpu = atomic_load(&wd_cpu_limit), wall = atomic_load(&wd_wall_limit);
        if (!cpu) continue;
        if (now_ns(CLOCK_PROCESS_CPUTIME_ID) < cpu && now_ns(CLOCK_MONOTONIC) < wall) continue;
        if (atomic_load(&wd_generation) != gen || !atomic_load(&wd_cpu_limit)) continue;
        char msg[768];
        int n = snprintf(msg, sizeof msg,
                         "migfix: error: %s ran longer than %g s (deadline) inside a C function, where the deadline "
                         "cannot interrupt it: migfix stopped\n"
                         "migfix: hint: a string pattern that backtracks (several '-' or '*' items over a long text) "
                         "can run for hours; simplify it, or test the text before matching\n",
                         wd_name ? wd_name : "sandboxed code", wd_seconds);
        if (n > 0) {
            ssize_t w = write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
            (void)w;
        }
        _exit(MIGFIX_EXIT_USAGE);
    }
    return NULL;
}

static void watchdog_after_fork(void)
{
    atomic_store(&wd_started, 0);
    atomic_store(&wd_cpu_limit, 0);
}

static void watchdog_start(void)
{
    if (atomic_exchange(&wd_started, 1)) return;
    static int atfork;
    if (!atfork) { pthread_atfork(NULL, NULL, watchdog_after_fork); atfork = 1; }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the main thread */
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, watchdog, NULL) != 0) atomic_store(&wd_started, 0);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void watchdog_arm(Sandbox *s)
{
    watchdog_start();
    wd_name = s->name;
    wd_seconds = s->seconds;
    double wall = s->seconds * 10 > 60 ? s->seconds * 10 : 60;
    atomic_fetch_add(&wd_generation, 1);
    atomic_store(&wd_wall_limit, now_ns(CLOCK_MONOTONIC) + (long long)(wall * 1e9));
    atomic_store(&wd_cpu_limit, s->deadline_ns + (long long)(s->seconds * 1e9));
}

static void watchdog_disarm(void)
{
    atomic_store(&wd_cpu_limit, 0);
    atomic_fetch_add(&wd_generation, 1);
}

/* ---- deadline and budget --------------------------------------------------- */

/* file:line of the innermost untrusted frame (chunks loaded as "@path";
 * migfix's own guest code is named "=migfix/guest/..."). Reads only. */
static void find_where(lua_State *G, Sandbox *s)
{
    lua_Debug ar;
    for (int level = 0; level < 200 && lua_getstack(G, level, &ar); level++) {
        if (!lua_getinfo(G, "Sl", &ar)) break;
        if (ar.source && ar.source[0] == '@' && ar.currentline > 0) {
            snprintf(s->where, sizeof s->where, "%s:%d", ar.source + 1, ar.currentline);
            return;
        }
    }
}

static void hook(lua_State *G, lua_Debug *ar)
{
    (void)ar;
    void *ud;
    lua_getallocf(G, &ud);
    Sandbox *s = ud;
    if (!s->in_call) return;
    if (s->stop == STOP_NONE && s->pending) {
        /* an instruction ran after a refused allocation that was not
         * retried (lauxlib's buffers raise "not enough memory" at once, a
         * pcall could catch it): the guest ran out of its budget */
        s->stop = STOP_MEMORY;
    }
    if (s->stop == STOP_NONE) {
        if (now_ns(CLOCK_PROCESS_CPUTIME_ID) < s->deadline_ns) return;
        s->stop = STOP_DEADLINE;
        lua_sethook(G, hook, LUA_MASKCOUNT | LUA_MASKLINE, 1); /* from now on: every instruction */
    }
    if (!s->where[0]) find_where(G, s);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->stop == STOP_MEMORY ? s->ref_memory : s->ref_deadline);
    lua_error(G);
}

static void refuse(Sandbox *s)
{
    if (!s->G || !s->in_call || s->stop != STOP_NONE) return;
    s->stop = STOP_MEMORY;
    find_where(s->G, s);
    lua_sethook(s->G, hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
}

static void *guest_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    Sandbox *s = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        s->used -= old;
        return NULL;
    }
    if (nsize > old && !s->unlimited && s->used - old + nsize > s->limit) {
        /* Lua collects everything and asks once more: only a second refusal
         * of the same request means the guest itself holds too much. A
         * request larger than the whole budget never fits: stop at once.
         * lauxlib's buffers (string.rep, table.concat) ask once and raise
         * an ordinary error a pcall could catch: a refusal not followed by
         * a successful retry stops the guest at its next instruction (the
         * hook, armed for every instruction until the retry succeeds). */
        if ((s->refused_ptr == ptr && s->refused_size == nsize) || nsize - old > s->budget) {
            refuse(s);
        } else if (s->G && s->in_call && s->stop == STOP_NONE) {
            if (!s->pending) find_where(s->G, s);
            s->pending = 1;
            lua_sethook(s->G, hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
        }
        s->refused_ptr = ptr;
        s->refused_size = nsize;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    if (nsize > old) { /* not a shrink the full collection does between the two tries */
        if (s->pending && ptr == s->refused_ptr && nsize == s->refused_size && s->G && s->stop == STOP_NONE) {
            s->pending = 0; /* the retry fitted: back to a look at the clock now and then */
            s->where[0] = '\0';
            lua_sethook(s->G, hook, LUA_MASKCOUNT, HOOK_COUNT);
        }
        s->refused_ptr = NULL;
        s->refused_size = 0;
    }
    s->used = s->used - old + nsize;
    if (s->used > s->peak) s->peak = s->used;
    return p;
}

/* ---- read-only proxies (guest side) -----------------------------------------
 *
 * A proxy is an empty table whose metatable leads to its store. Data from
 * the host arrives lazily: a proxy not yet filled shares one metatable whose
 * __index is a C function, and the guest's lazyinfo table maps it to the
 * host table's address. The first access fills a store with that table's
 * fields (nested tables as proxies not yet filled) and gives the proxy a
 * metatable of its own pointing at the store. A rule reading s.kind never
 * pays for s.node. The host tables stay alive (the host's refs table) until
 * release() or forget(). A host table whose metatable has __sandbox_fill is
 * made by that host function when the guest first reads it (fill). */

static Sandbox *sandbox_of(lua_State *G)
{
    void *ud;
    lua_getallocf(G, &ud);
    return ud;
}

static int ro_newindex(lua_State *G)
{
    if (lua_type(G, 2) == LUA_TSTRING)
        return luaL_error(G, "the evidence is read-only (cannot set \"%s\")", lua_tostring(G, 2));
    return luaL_error(G, "the evidence is read-only");
}

static int lazy_index(lua_State *G);
static int ro_len(lua_State *G);
static int ro_pairs(lua_State *G);

/* Set the fields every proxy metatable has on the table on top. */
static void proxy_fields(lua_State *G)
{
    lua_pushcfunction(G, ro_newindex);
    lua_setfield(G, -2, "__newindex");
    lua_pushcfunction(G, ro_len);
    lua_setfield(G, -2, "__len");
    lua_pushcfunction(G, ro_pairs);
    lua_setfield(G, -2, "__pairs");
    lua_pushboolean(G, 0);
    lua_setfield(G, -2, "__metatable");
}

/* Give the table at proxy (empty) a metatable of its own leading to store. */
static void set_filled(lua_State *G, int proxy, int store)
{
    proxy = lua_absindex(G, proxy);
    store = lua_absindex(G, store);
    lua_createtable(G, 0, 6);
    lua_pushvalue(G, store);
    lua_setfield(G, -2, "__index");
    lua_pushlightuserdata(G, (void *)&STORE_KEY);
    lua_pushvalue(G, store);
    lua_rawset(G, -3);
    proxy_fields(G);
    lua_setmetatable(G, proxy);
}

/* Whether the value at idx is a proxy not yet filled. */
static int is_lazy(lua_State *G, Sandbox *s, int idx)
{
    if (!lua_getmetatable(G, idx)) return 0;
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazy_mt);
    int r = lua_rawequal(G, -1, -2);
    lua_pop(G, 2);
    return r;
}

static int anchor_tables(lua_State *L)
{
    /* 1: refs, 2: the host table (or a value): refs[address] = table for it
     * and, with 3 = true, for every table among its keys and values */
    if (lua_type(L, 2) != LUA_TTABLE) return 0;
    lua_pushlightuserdata(L, (void *)lua_topointer(L, 2));
    lua_pushvalue(L, 2);
    lua_rawset(L, 1);
    if (!lua_toboolean(L, 3)) return 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        for (int i = -2; i <= -1; i++) {
            if (lua_type(L, i) == LUA_TTABLE) {
                lua_pushlightuserdata(L, (void *)lua_topointer(L, i));
                lua_pushvalue(L, i - 1);
                lua_rawset(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Keep the host table at idx (and with children, the tables in it) alive
 * until release(); protected on the host. 0 on success. */
static int anchor(lua_State *L, Sandbox *s, int idx, int children)
{
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 6)) return -1;
    lua_pushcfunction(L, anchor_tables);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, children);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) { lua_pop(L, 1); return -1; }
    return 0;
}

/* Push onto G the value at host index idx: a copy, or for a table its proxy
 * (the table anchored already). Returns 0, or the type of a value that
 * cannot enter. */
static int lazy_value(lua_State *G, Sandbox *s, lua_State *L, int idx, int seen, int info)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: lua_pushnil(G); return 0;
    case LUA_TBOOLEAN: lua_pushboolean(G, lua_toboolean(L, idx)); return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) lua_pushinteger(G, lua_tointeger(L, idx));
        else lua_pushnumber(G, lua_tonumber(L, idx));
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *str = lua_tolstring(L, idx, &n);
        lua_pushlstring(G, str, n);
        return 0;
    }
    case LUA_TLIGHTUSERDATA: lua_pushlightuserdata(G, lua_touserdata(L, idx)); return 0;
    case LUA_TTABLE: break;
    default: return lua_type(L, idx);
    }
    const void *p = lua_topointer(L, idx);
    lua_pushlightuserdata(G, (void *)p);
    if (lua_rawget(G, seen) != LUA_TNIL) return 0; /* shared or cyclic: the same proxy */
    lua_pop(G, 1);
    lua_createtable(G, 0, 0);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazy_mt);
    lua_setmetatable(G, -2);
    lua_pushvalue(G, -1);
    lua_pushlightuserdata(G, (void *)p);
    lua_rawset(G, info);
    lua_pushlightuserdata(G, (void *)p);
    lua_pushvalue(G, -2);
    lua_rawset(G, seen);
    return 0;
}

static void key_text(lua_State *L, int k, char *out, size_t n)
{
    if (lua_type(L, k) == LUA_TSTRING) snprintf(out, n, "field \"%s\"", lua_tostring(L, k));
    else if (lua_isinteger(L, k)) snprintf(out, n, "[%lld]", (long long)lua_tointeger(L, k));
    else snprintf(out, n, "a %s key", luaL_typename(L, k));
}

/* Protected, in G: fill the proxy at 1 from the host table at address 2. */
static int fill(lua_State *G)
{
    Sandbox *s = sandbox_of(G);
    lua_State *L = s->host;
    const void *p = lua_touserdata(G, 2);
    if (!L) return luaL_error(G, "this data can only be read during a call of the sandbox");
    if (!lua_checkstack(L, 8)) return luaL_error(G, "the host's stack is full");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs);
    lua_pushlightuserdata(L, (void *)p);
    if (lua_rawget(L, -2) != LUA_TTABLE) return luaL_error(G, "this data came from an earlier call of the sandbox and is gone");
    int t = lua_gettop(L);
    /* a host table whose metatable has __sandbox_fill(t) is made when the
     * guest first reads it (the host's function fills t, raw): data that
     * costs to make, such as a statement's parse tree */
    if (lua_getmetatable(L, t)) {
        if (lua_getfield(L, -1, "__sandbox_fill") == LUA_TFUNCTION) {
            lua_remove(L, -2);
            lua_pushvalue(L, t);
            lua_pushnil(L);
            lua_setmetatable(L, t); /* once */
            if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
                const char *m = lua_tostring(L, -1);
                return luaL_error(G, "could not make the data: %s", m ? m : "(an error object that is not text)");
            }
        } else {
            lua_pop(L, 2);
        }
    }
    if (anchor(L, s, t, 1)) return luaL_error(G, "not enough memory to read the data");
    int total = 0, narr = (int)lua_rawlen(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) { total++; lua_pop(L, 1); }
    lua_createtable(G, narr, total > narr ? total - narr : 0); /* sized once: no rehash per field */
    int store = lua_gettop(G);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->gseen);
    int seen = lua_gettop(G);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazyinfo);
    int info = lua_gettop(G);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        luaL_checkstack(G, 6, "sandbox data");
        int bad = lazy_value(G, s, L, -2, seen, info);
        if (!bad) bad = lazy_value(G, s, L, -1, seen, info);
        if (bad) {
            char k[96];
            key_text(L, -2, k, sizeof k);
            return luaL_error(G, "%s is a %s, which cannot enter the sandbox", k, lua_typename(L, bad));
        }
        lua_rawset(G, store);
        lua_pop(L, 1);
    }
    /* lazyinfo keeps the entry (weak keys): deleting would make Lua rehash
     * the table again and again */
    set_filled(G, 1, store);
    return 0;
}

/* Fill the proxy at idx if it still reads from the host. */
static void ensure_filled(lua_State *G, int idx)
{
    Sandbox *s = sandbox_of(G);
    if (!is_lazy(G, s, idx)) return;
    idx = lua_absindex(G, idx);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazyinfo);
    lua_pushvalue(G, idx);
    int found = lua_rawget(G, -2) == LUA_TLIGHTUSERDATA;
    const void *p = lua_touserdata(G, -1);
    lua_pop(G, 2);
    if (!found) luaL_error(G, "this data came from an earlier call of the sandbox and is gone");
    lua_State *L = s->host;
    int ltop = L ? lua_gettop(L) : 0;
    size_t before = s->used;
    int was = s->unlimited;
    s->unlimited = 1; /* the data is not the guest's to pay for */
    lua_pushcfunction(G, fill);
    lua_pushvalue(G, idx);
    lua_pushlightuserdata(G, (void *)p);
    int rc = lua_pcall(G, 2, 0, 0);
    s->unlimited = was;
    if (s->used > before) s->limit += s->used - before;
    if (L) lua_settop(L, ltop);
    if (rc != LUA_OK) lua_error(G);
}

/* Push the store behind the (filled) proxy at idx, or nothing and return 0. */
static int push_store(lua_State *G, int idx)
{
    if (!lua_getmetatable(G, idx)) return 0;
    lua_pushlightuserdata(G, (void *)&STORE_KEY);
    if (lua_rawget(G, -2) != LUA_TTABLE) { lua_pop(G, 2); return 0; }
    lua_remove(G, -2);
    return 1;
}

static int lazy_index(lua_State *G)
{
    ensure_filled(G, 1);
    if (!push_store(G, 1)) return luaL_argerror(G, 1, "read-only table expected");
    lua_pushvalue(G, 2);
    lua_rawget(G, -2);
    return 1;
}

static int ro_len(lua_State *G)
{
    ensure_filled(G, 1);
    if (!push_store(G, 1)) return luaL_argerror(G, 1, "read-only table expected");
    lua_pushinteger(G, (lua_Integer)lua_rawlen(G, -1));
    return 1;
}

static int ro_next(lua_State *G)
{
    lua_settop(G, 2);
    ensure_filled(G, 1);
    if (!push_store(G, 1)) return luaL_argerror(G, 1, "read-only table expected");
    lua_pushvalue(G, 2);
    if (lua_next(G, 3)) return 2;
    lua_pushnil(G);
    return 1;
}

static int ro_pairs(lua_State *G)
{
    lua_pushcfunction(G, ro_next);
    lua_pushvalue(G, 1);
    lua_pushnil(G);
    return 3;
}

/* next(t, k) that reads through a read-only proxy (the guest's global next). */
static int g_next(lua_State *G)
{
    luaL_checktype(G, 1, LUA_TTABLE);
    lua_settop(G, 2);
    Sandbox *s = sandbox_of(G);
    if (is_lazy(G, s, 1) || push_store(G, 1)) {
        if (lua_gettop(G) == 3) lua_pop(G, 1);
        return ro_next(G);
    }
    if (lua_next(G, 1)) return 2;
    lua_pushnil(G);
    return 1;
}

static void freeze_value(lua_State *G, Sandbox *s, int idx, int seen, int depth)
{
    idx = lua_absindex(G, idx);
    if (lua_type(G, idx) != LUA_TTABLE || depth > MAX_DEPTH) { lua_pushvalue(G, idx); return; }
    lua_pushvalue(G, idx);
    if (lua_rawget(G, seen) != LUA_TNIL) return;
    lua_pop(G, 1);
    if (is_lazy(G, s, idx) || push_store(G, idx)) { /* already a proxy */
        if (!is_lazy(G, s, idx)) lua_pop(G, 1);
        lua_pushvalue(G, idx);
        return;
    }
    luaL_checkstack(G, 6, "freeze");
    lua_createtable(G, 0, 0);
    set_filled(G, -1, idx);
    lua_pushvalue(G, idx);
    lua_pushvalue(G, -2);
    lua_rawset(G, seen);
    lua_pushnil(G);
    while (lua_next(G, idx)) {
        if (lua_type(G, -1) == LUA_TTABLE) {
            freeze_value(G, s, -1, seen, depth + 1);
            lua_pushvalue(G, -3);
            lua_insert(G, -2);
            lua_rawset(G, idx); /* an existing key: allowed while traversing */
        }
        lua_pop(G, 1);
    }
}

/* freeze(value) -> value: tables become read-only proxies, deeply. Guest only. */
static int g_freeze(lua_State *G)
{
    lua_settop(G, 1);
    lua_newtable(G);
    freeze_value(G, sandbox_of(G), 1, 2, 0);
    return 1;
}

/* store_set(proxy, key, value): set a field of a read-only proxy's store
 * (filled first). Guest only, for migfix's own guest code: lint hands the
 * parse tree of the statement being checked in with it, and takes it away
 * afterwards (the proxy of a statement may have been filled before). */
static int g_store_set(lua_State *G)
{
    luaL_checktype(G, 1, LUA_TTABLE);
    luaL_checkany(G, 2);
    lua_settop(G, 3);
    ensure_filled(G, 1);
    if (!push_store(G, 1)) return luaL_argerror(G, 1, "read-only table expected");
    lua_pushvalue(G, 2);
    lua_pushvalue(G, 3);
    lua_rawset(G, -3);
    return 0;
}

/* ---- copying out ---------------------------------------------------------------- */

static void path_text(struct xfer *x, char *out, size_t n)
{
    int w = snprintf(out, n, "%s %d", x->what, x->top);
    for (int i = 0; i < x->depth && i < PATH_DEPTH && w > 0 && (size_t)w < n; i++) {
        if (x->path[i].s) w += snprintf(out + w, n - (size_t)w, ".%s", x->path[i].s);
        else if (x->path[i].isint) w += snprintf(out + w, n - (size_t)w, "[%lld]", (long long)x->path[i].i);
        else w += snprintf(out + w, n - (size_t)w, "[?]");
    }
    if (x->depth > PATH_DEPTH && w > 0 && (size_t)w < n) snprintf(out + w, n - (size_t)w, "...");
}

static void set_key(struct xfer *x, lua_State *S, int k)
{
    if (x->depth < 1 || x->depth > PATH_DEPTH) return;
    int d = x->depth - 1;
    x->path[d].s = lua_type(S, k) == LUA_TSTRING ? lua_tostring(S, k) : NULL;
    x->path[d].isint = lua_isinteger(S, k);
    x->path[d].i = x->path[d].isint ? lua_tointeger(S, k) : 0;
}

static int run_trusted(lua_State *G);

/* Protected, in G: push the function to call, then the host's arguments. */
static int copy_in(lua_State *G)
{
    struct xfer *x = lua_touserdata(G, 1);
    Sandbox *s = sandbox_of(G);
    lua_settop(G, 0);
    luaL_checkstack(G, x->n + 8, "too many arguments");
    if (x->fname) {
        if (lua_getglobal(G, x->fname) != LUA_TFUNCTION)
            return luaL_error(G, "the sandbox has no function \"%s\"", x->fname);
    } else {
        lua_pushcfunction(G, run_trusted);
    }
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->gseen);
    int seen = lua_gettop(G);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazyinfo);
    int info = lua_gettop(G);
    for (int i = 0; i < x->n; i++) {
        if (anchor(x->from, s, x->first + i, 0)) return luaL_error(G, "argument %d: not enough memory", i + 1);
        int bad = lazy_value(G, s, x->from, x->first + i, seen, info);
        if (bad) return luaL_error(G, "argument %d: a %s cannot enter the sandbox", i + 1, lua_typename(G, bad));
    }
    lua_remove(G, info);
    lua_remove(G, seen);
    return x->n + 1;
}

static int out_value(lua_State *L, lua_State *G, int g, struct xfer *x, int seen);

static int out_fail(struct xfer *x, const char *why)
{
    char where[400];
    path_text(x, where, sizeof where);
    snprintf(x->err, sizeof x->err, "%s: %s", where, why);
    return -1;
}

/* A host table behind a proxy never filled: copy it on the host side. */
static int host_copy(lua_State *L, int idx, struct xfer *x, int seen)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) { lua_pushvalue(L, idx); return 0; }
    const void *p = lua_topointer(L, idx);
    lua_pushlightuserdata(L, (void *)p);
    if (lua_rawget(L, seen) != LUA_TNIL) return 0;
    lua_pop(L, 1);
    if (x->depth >= MAX_DEPTH || !lua_checkstack(L, 8)) return out_fail(x, "data nested too deeply to leave the sandbox");
    lua_createtable(L, (int)lua_rawlen(L, idx), 0);
    int t = lua_gettop(L);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushvalue(L, t);
    lua_rawset(L, seen);
    x->depth++;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        set_key(x, L, lua_gettop(L) - 1);
        if (host_copy(L, -2, x, seen) || host_copy(L, -2, x, seen)) return -1;
        lua_rawset(L, t);
        lua_pop(L, 1);
    }
    x->depth--;
    return 0;
}

static int out_table(lua_State *L, lua_State *G, int g, struct xfer *x, int seen)
{
    Sandbox *s = sandbox_of(G);
    if (is_lazy(G, s, g)) { /* never read in the guest: copy the host's table */
        if (!lua_checkstack(L, 4) || !lua_checkstack(G, 3)) return out_fail(x, "data nested too deeply to leave the sandbox");
        lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazyinfo);
        lua_pushvalue(G, g);
        lua_rawget(G, -2);
        const void *hp = lua_touserdata(G, -1);
        lua_pop(G, 2);
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs);
        lua_pushlightuserdata(L, (void *)hp);
        if (!hp || lua_rawget(L, -2) != LUA_TTABLE) return out_fail(x, "data from an earlier call of the sandbox is gone");
        if (host_copy(L, -1, x, seen)) return -1;
        lua_replace(L, -3);
        lua_pop(L, 1);
        return 0;
    }
    int src = g, proxied = push_store(G, g);
    if (proxied) src = lua_gettop(G);
    const void *p = lua_topointer(G, src);
    lua_pushlightuserdata(L, (void *)p);
    if (lua_rawget(L, seen) != LUA_TNIL) {
        if (proxied) lua_pop(G, 1);
        return 0;
    }
    lua_pop(L, 1);
    if (x->depth >= MAX_DEPTH || !lua_checkstack(L, 6) || !lua_checkstack(G, 4))
        return out_fail(x, "data nested too deeply to leave the sandbox");
    lua_createtable(L, (int)lua_rawlen(G, src), 0);
    int t = lua_gettop(L);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushvalue(L, t);
    lua_rawset(L, seen);
    x->depth++;
    lua_pushnil(G);
    while (lua_next(G, src)) {
        int k = lua_gettop(G) - 1;
        set_key(x, G, k);
        if (out_value(L, G, k, x, seen) || out_value(L, G, k + 1, x, seen)) return -1;
        lua_rawset(L, t);
        lua_pop(G, 1);
    }
    x->depth--;
    if (proxied) lua_pop(G, 1);
    return 0;
}

static int out_value(lua_State *L, lua_State *G, int g, struct xfer *x, int seen)
{
    g = lua_absindex(G, g);
    switch (lua_type(G, g)) {
    case LUA_TNIL: lua_pushnil(L); return 0;
    case LUA_TBOOLEAN: lua_pushboolean(L, lua_toboolean(G, g)); return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(G, g)) lua_pushinteger(L, lua_tointeger(G, g));
        else lua_pushnumber(L, lua_tonumber(G, g));
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *str = lua_tolstring(G, g, &n);
        lua_pushlstring(L, str, n);
        return 0;
    }
    case LUA_TLIGHTUSERDATA: lua_pushlightuserdata(L, lua_touserdata(G, g)); return 0;
    case LUA_TTABLE: return out_table(L, G, g, x, seen);
    default: {
        char why[96];
        snprintf(why, sizeof why, "a %s cannot leave the sandbox", lua_typename(G, lua_type(G, g)));
        return out_fail(x, why);
    }
    }
}

/* ---- the guest state ---------------------------------------------------------- */

/* The guest's maps for data from the host: address -> proxy (weak values:
 * a proxy nobody holds can go, and is made again if read again) and proxy
 * not yet filled -> address (weak keys). New ones at every release(). */
static void new_maps(lua_State *G, Sandbox *s)
{
    const char *modes[2] = {"v", "k"};
    int *refs[2] = {&s->gseen, &s->lazyinfo};
    for (int i = 0; i < 2; i++) {
        lua_createtable(G, 0, 0);
        lua_createtable(G, 0, 1);
        lua_pushstring(G, modes[i]);
        lua_setfield(G, -2, "__mode");
        lua_setmetatable(G, -2);
        if (*refs[i] == LUA_NOREF) *refs[i] = luaL_ref(G, LUA_REGISTRYINDEX);
        else lua_rawseti(G, LUA_REGISTRYINDEX, *refs[i]);
    }
}

struct setup {
    int posix;
    const char *path, *cpath;
    Sandbox *s;
};

static int open_guest(lua_State *G)
{
    struct setup *o = lua_touserdata(G, 1);
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},     {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_OSLIBNAME, luaopen_os},
        {LUA_DBLIBNAME, luaopen_debug}, {NULL, NULL}
    };
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(G, l->name, l->func, 1);
        lua_pop(G, 1);
    }
    if (o->posix) { /* luaposix's own Lua files need require and io */
        luaL_requiref(G, LUA_LOADLIBNAME, luaopen_package, 1);
        if (o->path) { lua_pushstring(G, o->path); lua_setfield(G, -2, "path"); }
        if (o->cpath) { lua_pushstring(G, o->cpath); lua_setfield(G, -2, "cpath"); }
        lua_pop(G, 1);
        luaL_requiref(G, LUA_IOLIBNAME, luaopen_io, 1);
        lua_pop(G, 1);
    }
    /* what no guest code gets: string.dump, the string metatable, collectgarbage */
    lua_getglobal(G, LUA_STRLIBNAME);
    lua_pushnil(G);
    lua_setfield(G, -2, "dump");
    lua_pop(G, 1);
    lua_pushliteral(G, "");
    lua_getmetatable(G, -1);
    lua_pushboolean(G, 0);
    lua_setfield(G, -2, "__metatable");
    lua_pop(G, 2);
    lua_pushnil(G);
    lua_setglobal(G, "collectgarbage");
    lua_getglobal(G, LUA_DBLIBNAME); /* only its traceback, for migfix's guest code */
    lua_getfield(G, -1, "traceback");
    lua_setglobal(G, "traceback");
    lua_pop(G, 1);
    lua_pushnil(G);
    lua_setglobal(G, LUA_DBLIBNAME);
    lua_pushcfunction(G, g_freeze);
    lua_setglobal(G, "freeze");
    lua_pushcfunction(G, g_next);
    lua_setglobal(G, "next");
    lua_pushcfunction(G, g_store_set);
    lua_setglobal(G, "store_set");
    new_maps(G, o->s);
    lua_createtable(G, 0, 5); /* the metatable of proxies not yet filled */
    lua_pushcfunction(G, lazy_index);
    lua_setfield(G, -2, "__index");
    proxy_fields(G);
    o->s->lazy_mt = luaL_ref(G, LUA_REGISTRYINDEX);
    lua_pushliteral(G, "sandbox stopped: deadline");
    o->s->ref_deadline = luaL_ref(G, LUA_REGISTRYINDEX);
    lua_pushliteral(G, "sandbox stopped: memory budget");
    o->s->ref_memory = luaL_ref(G, LUA_REGISTRYINDEX);
    return 0;
}

static int release_guest(lua_State *G)
{
    new_maps(G, sandbox_of(G));
    return 0;
}

/* load(source, chunkname) of migfix's own guest code and run it. */
static int run_trusted(lua_State *G)
{
    size_t n;
    const char *src = luaL_checklstring(G, 1, &n);
    const char *name = luaL_checkstring(G, 2);
    /* text, or bytecode the host made of migfix's own guest code (only the
     * host calls this: sb:load) */
    if (luaL_loadbufferx(G, src, n, name, "bt") != LUA_OK) return lua_error(G);
    lua_call(G, 0, 0);
    return 0;
}

static int guest_panic(lua_State *G)
{
    fprintf(stderr, "migfix: error: internal error in the sandbox: %s\n", lua_tostring(G, -1));
    return 0;
}

static Sandbox *check_open(lua_State *L)
{
    Sandbox *s = luaL_checkudata(L, 1, SANDBOX_MT);
    if (!s->G) luaL_error(L, "attempt to use a closed sandbox");
    return s;
}

static int push_failure(lua_State *L, Sandbox *s, const char *kind, const char *message)
{
    lua_pushnil(L);
    lua_pushstring(L, message);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    if (s->where[0]) { lua_pushstring(L, s->where); lua_setfield(L, -2, "where"); }
    lua_pushnumber(L, s->seconds);
    lua_setfield(L, -2, "deadline");
    lua_pushinteger(L, (lua_Integer)s->budget);
    lua_setfield(L, -2, "memory");
    return 3;
}

static int stopped_failure(lua_State *L, Sandbox *s)
{
    char msg[160];
    if (s->stop == STOP_DEADLINE)
        snprintf(msg, sizeof msg, "ran longer than %g s (deadline)", s->seconds);
    else
        snprintf(msg, sizeof msg, "used more than %zu MB of memory (allocation budget)", s->budget >> 20);
    return push_failure(L, s, s->stop == STOP_DEADLINE ? "deadline" : "memory", msg);
}

/* Call fname (a guest global; NULL: run_trusted) with host slots first..first+n-1. */
static int guarded(lua_State *L, Sandbox *s, const char *fname, int first, int n)
{
    lua_State *G = s->G;
    if (s->stop != STOP_NONE) return stopped_failure(L, s);
    struct xfer xs, *x = &xs;
    memset(x, 0, sizeof *x);
    x->from = L;
    x->first = first;
    x->n = n;
    x->fname = fname;
    int ltop = lua_gettop(L);
    lua_settop(G, 0);
    s->host = L;
    size_t before = s->used;
    s->unlimited = 1;
    lua_pushcfunction(G, copy_in);
    lua_pushlightuserdata(G, x);
    int rc = lua_pcall(G, 1, LUA_MULTRET, 0);
    s->unlimited = 0;
    if (s->used > before) s->limit += s->used - before;
    lua_settop(L, ltop);
    if (rc != LUA_OK) {
        const char *m = lua_tostring(G, -1);
        push_failure(L, s, "data", m ? m : "could not copy the arguments into the sandbox");
        lua_settop(G, 0);
        s->host = NULL;
        return 3;
    }
    int nargs = lua_gettop(G) - 1;
    s->where[0] = '\0';
    s->pending = 0;
    s->deadline_ns = now_ns(CLOCK_PROCESS_CPUTIME_ID) + (long long)(s->seconds * 1e9);
    s->in_call = 1;
    watchdog_arm(s);
    rc = lua_pcall(G, nargs, LUA_MULTRET, 0);
    watchdog_disarm();
    s->in_call = 0;
    s->unlimited = 0;
    lua_settop(L, ltop);
    if (s->stop == STOP_NONE && s->pending) s->stop = STOP_MEMORY; /* refused, never retried */
    if (rc != LUA_OK || s->stop != STOP_NONE) {
        s->host = NULL;
        if (s->stop == STOP_NONE && rc == LUA_ERRMEM) s->stop = STOP_MEMORY;
        if (s->stop != STOP_NONE) {
            lua_settop(G, 0);
            return stopped_failure(L, s);
        }
        const char *m = lua_tostring(G, -1);
        char buf[96];
        if (!m) {
            snprintf(buf, sizeof buf, "(error object is a %s value)", luaL_typename(G, -1));
            m = buf;
        }
        push_failure(L, s, "error", m);
        lua_settop(G, 0);
        return 3;
    }
    int nres = lua_gettop(G);
    luaL_checkstack(L, nres + 4, "too many results");
    lua_pushboolean(L, 1);
    lua_newtable(L);
    int seen = lua_gettop(L);
    x->what = "result";
    for (int i = 1; i <= nres; i++) {
        x->top = i;
        x->depth = 0;
        if (out_value(L, G, i, x, seen)) {
            lua_settop(L, ltop);
            lua_settop(G, 0);
            s->host = NULL;
            char msg[sizeof x->err];
            memcpy(msg, x->err, sizeof msg);
            return push_failure(L, s, "data", msg);
        }
    }
    lua_remove(L, seen);
    lua_settop(G, 0);
    s->host = NULL;
    return nres + 1;
}

/* ---- methods ----------------------------------------------------------------- */

/***
 * Call a global function of the guest (one that migfix's guest code defined).
 * @function sandbox:call
 * @tparam string name
 * @param ... data (copied in, read-only in the guest)
 * @treturn[1] boolean true, followed by the function's results (copied out)
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] table info {kind = "error"|"deadline"|"memory"|"data", where = "file:line"|nil, deadline, memory}
 */
static int s_call(lua_State *L)
{
    Sandbox *s = check_open(L);
    const char *name = luaL_checkstring(L, 2);
    return guarded(L, s, name, 3, lua_gettop(L) - 2);
}

static int s_close(lua_State *L)
{
    Sandbox *s = luaL_checkudata(L, 1, SANDBOX_MT);
    lua_State *G = s->G;
    s->G = NULL; /* first: closing twice is harmless */
    if (G) lua_close(G);
    if (s->refs != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->refs);
        s->refs = LUA_NOREF;
    }
    return 0;
}

/***
 * Load migfix's own guest code (text, or bytecode string.dump made of it) and run it with the guest's full globals.
 * @function sandbox:load
 * @tparam string source
 * @tparam string chunkname e.g. "=migfix/guest/base.lua"
 * @treturn[1] boolean true
 * @return[2] nil, message, info (as call)
 */
static int s_load(lua_State *L)
{
    Sandbox *s = check_open(L);
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    mf_checknargs(L, 3, "sb:load(source, chunkname)");
    int r = guarded(L, s, NULL, 2, 2);
    if (lua_toboolean(L, -r)) s->floor = s->used;
    return r;
}

/***
 * Forget the data handed in so far (proxies of it still held by the guest
 * raise when read) and give the guest its budget again on top of migfix's
 * own guest code: what it keeps from before counts against it.
 * @function sandbox:release
 */
static int s_release(lua_State *L)
{
    Sandbox *s = check_open(L);
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->refs);
    s->refused_size = 0;
    lua_State *G = s->G;
    lua_pushcfunction(G, release_guest);
    if (lua_pcall(G, 0, 0, 0) != LUA_OK) {
        lua_pushfstring(L, "could not release the sandbox's data: %s", lua_tostring(G, -1));
        lua_settop(G, 0);
        return lua_error(L);
    }
    s->limit = s->floor + s->budget;
    return 0;
}

/* Protected, in G: forget the host addresses pushed as light userdata
 * 2..top: their proxies (if any) no longer read from the host. */
static int forget_guest(lua_State *G)
{
    Sandbox *s = sandbox_of(G);
    int top = lua_gettop(G);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->gseen);
    int seen = lua_gettop(G);
    lua_rawgeti(G, LUA_REGISTRYINDEX, s->lazyinfo);
    int info = lua_gettop(G);
    for (int i = 1; i <= top; i++) {
        lua_pushvalue(G, i);
        if (lua_rawget(G, seen) == LUA_TTABLE) { /* its proxy: gone when read again */
            lua_pushnil(G);
            lua_rawset(G, info);
        } else {
            lua_pop(G, 1);
        }
        lua_pushvalue(G, i);
        lua_pushnil(G);
        lua_rawset(G, seen);
    }
    return 0;
}

/* Collect (in the host table at 2, as light userdata keys) the host tables
 * reachable from the table at 1 that are anchored (handed in): a table's
 * children are anchored when it is read, so the walk stops at what the
 * guest never read. Protected, on the host; 1: refs. */
static int collect_anchored(lua_State *L)
{
    /* 1: refs, 2: out (address -> true), 3: the table */
    if (lua_type(L, 3) != LUA_TTABLE) return 0;
    const void *p = lua_topointer(L, 3);
    lua_pushlightuserdata(L, (void *)p);
    if (lua_rawget(L, 1) == LUA_TNIL) { lua_pop(L, 1); return 0; }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)p);
    if (lua_rawget(L, 2) != LUA_TNIL) { lua_pop(L, 1); return 0; } /* seen */
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushboolean(L, 1);
    lua_rawset(L, 2);
    luaL_checkstack(L, 8, "forget");
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        for (int i = -2; i <= -1; i++) {
            if (lua_type(L, i) == LUA_TTABLE) {
                lua_pushcfunction(L, collect_anchored);
                lua_pushvalue(L, 1);
                lua_pushvalue(L, 2);
                lua_pushvalue(L, i - 3);
                lua_call(L, 3, 0);
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

/***
 * Forget a host table handed in before release(), and every table in it
 * the guest read: the host may drop them (they are no longer kept alive),
 * and the guest's proxies of them raise "gone" when read again. For data
 * that is large and lives shorter than one release(), such as the parse
 * tree of the statement being checked.
 * @function sandbox:forget
 * @tparam table t
 */
static int s_forget(lua_State *L)
{
    Sandbox *s = check_open(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    mf_checknargs(L, 2, "sb:forget(table)");
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_pushcfunction(L, collect_anchored);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs);
    int refs = lua_gettop(L);
    lua_pushvalue(L, out);
    lua_pushvalue(L, 2);
    lua_call(L, 3, 0);
    lua_State *G = s->G;
    int n = 0;
    lua_settop(G, 0);
    int was = s->unlimited;
    s->unlimited = 1; /* the guest's stack, for the addresses: not the guest's to pay for */
    lua_pushcfunction(G, forget_guest);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs);
    refs = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, out)) {
        lua_pop(L, 1);
        if (!lua_checkstack(G, 2)) break;
        lua_pushlightuserdata(G, lua_touserdata(L, -1));
        n++;
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, refs);
    }
    int rc = lua_pcall(G, n, 0, 0);
    s->unlimited = was;
    if (rc != LUA_OK) {
        lua_pushfstring(L, "could not forget the sandbox's data: %s", lua_tostring(G, -1));
        lua_settop(G, 0);
        return lua_error(L);
    }
    lua_settop(G, 0);
    return 0;
}

/***
 * Memory figures of the guest, in bytes.
 * @function sandbox:stats
 * @treturn table {used, peak, limit, budget, stopped = nil|"deadline"|"memory"}
 */
static int s_stats(lua_State *L)
{
    Sandbox *s = check_open(L);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)s->used);
    lua_setfield(L, -2, "used");
    lua_pushinteger(L, (lua_Integer)s->peak);
    lua_setfield(L, -2, "peak");
    lua_pushinteger(L, (lua_Integer)s->limit);
    lua_setfield(L, -2, "limit");
    lua_pushinteger(L, (lua_Integer)s->budget);
    lua_setfield(L, -2, "budget");
    if (s->stop != STOP_NONE) {
        lua_pushstring(L, s->stop == STOP_DEADLINE ? "deadline" : "memory");
        lua_setfield(L, -2, "stopped");
    }
    return 1;
}

static int s_tostring(lua_State *L)
{
    Sandbox *s = luaL_checkudata(L, 1, SANDBOX_MT);
    if (s->G) lua_pushfstring(L, "migfix.sandbox (%s)", s->name);
    else lua_pushliteral(L, "migfix.sandbox (closed)");
    return 1;
}

/***
 * A new guest state.
 * @function new
 * @tparam[opt] table opts {name = "policy \"x\"", memory = 64 MiB, deadline = 5 (CPU seconds per call),
 *   posix = false (package and io for luaposix), path, cpath (package.path/cpath of the guest)}
 * @treturn migfix.sandbox
 */
static int l_new(lua_State *L)
{
    static const char *const fields[] = {"cpath", "deadline", "memory", "name", "path", "posix", NULL};
    mf_checknargs(L, 1, NEW_CALL);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        mf_checkfields(L, 1, NEW_CALL, fields);
    }
    lua_Integer memory = mf_optfield_integer(L, 1, "memory", (lua_Integer)64 << 20);
    if (memory < (1 << 20)) return luaL_argerror(L, 1, "memory must be at least 1048576 bytes");
    double seconds = 5;
    if (!lua_isnoneornil(L, 1)) {
        lua_getfield(L, 1, "deadline");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER) return luaL_argerror(L, 1, "deadline must be a number of seconds");
            seconds = lua_tonumber(L, -1);
            if (!(seconds > 0 && seconds <= 86400)) return luaL_argerror(L, 1, "deadline must be between 0 and 86400 seconds");
        }
        lua_pop(L, 1);
    }
    const char *name = mf_optfield_string(L, 1, "name", "sandboxed code");
    struct setup o = {mf_optfield_boolean(L, 1, "posix", 0), mf_optfield_string(L, 1, "path", NULL),
                      mf_optfield_string(L, 1, "cpath", NULL), NULL};
    Sandbox *s = mf_newbox(L, sizeof *s, SANDBOX_MT);
    s->ref_deadline = s->ref_memory = s->refs = s->gseen = s->lazyinfo = s->lazy_mt = LUA_NOREF;
    lua_newtable(L);
    s->refs = luaL_ref(L, LUA_REGISTRYINDEX);
    s->limit = (size_t)-1;
    s->budget = (size_t)memory;
    s->seconds = seconds;
    snprintf(s->name, sizeof s->name, "%s", name);
    o.s = s;
    lua_State *G = lua_newstate(guest_alloc, s);
    if (!G) return luaL_error(L, "not enough memory");
    s->G = G;
    lua_atpanic(G, guest_panic);
    lua_pushcfunction(G, open_guest);
    lua_pushlightuserdata(G, &o);
    if (lua_pcall(G, 1, 0, 0) != LUA_OK) {
        lua_pushfstring(L, "could not create the sandbox: %s", lua_tostring(G, -1));
        s->G = NULL;
        lua_close(G);
        return lua_error(L);
    }
    s->limit = s->used + s->budget;
    s->floor = s->used;
    lua_sethook(G, hook, LUA_MASKCOUNT, HOOK_COUNT);
    return 1;
}

static const luaL_Reg meth[] = {
    {"call", s_call},
    {"close", s_close},
    {"forget", s_forget},
    {"load", s_load},
    {"release", s_release},
    {"stats", s_stats},
    {NULL, NULL}
};

static const luaL_Reg metameth[] = {
    {"__close", s_close},
    {"__gc", s_close},
    {"__index", NULL},
    {"__tostring", s_tostring},
    {NULL, NULL}
};

static const luaL_Reg lib[] = {
    {"new", l_new},
    {NULL, NULL}
};

int luaopen_migfix_sandbox(lua_State *L)
{
    mf_createmeta(L, SANDBOX_MT, metameth, meth);
    luaL_newlib(L, lib);
    return 1;
}
