/* migfix.proc — child processes without a shell (clocks, sleeping and
 * terminals are luaposix's: migfix.sys).
 *
 * @module migfix.proc
 *
 * proc.spawn starts a program with posix_spawn (argv as given, no shell;
 * the program is looked up on $PATH as execvp would).
 * Environment entries are added to, or with clear_env replace, the
 * environment of the child only; migfix's own environment is untouched.
 * stdout/stderr may go to a file or to a pipe the handle drains; wait()
 * drains every pipe while it waits, so a chatty child cannot deadlock.
 * A handle that is collected or closed while its child still runs kills
 * it (SIGTERM, then SIGKILL) and reaps it: nothing is left behind.
 *
 * Expected failures (program not found, file not openable) return
 * nil, message; misuse (bad argument, unknown option) raises. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migfix.h"

extern char **environ;

#define PROC_MT "migfix.proc.handle"
#define SPAWN_CALL "proc.spawn{argv = {...}, env = {...}, clear_env = bool, stdin = path, " \
                   "stdout = path|\"pipe\", stderr = path|\"pipe\", umask = int}"

/* One captured output: the read end of a pipe and everything read so far. */
struct capture {
    int fd;      /* -1 when not a pipe, or at EOF */
    int piped;   /* 1 when the caller asked for "pipe" */
    char *buf;
    size_t len, cap;
};

typedef struct {
    pid_t pid;      /* 0 once reaped (or never started) */
    int status;     /* raw wait status, valid when reaped */
    int reaped;
    struct capture out, err;
} Proc;

/* ---- captures ---------------------------------------------------------- */

static void cap_init(struct capture *c)
{
    c->fd = -1;
    c->piped = 0;
    c->buf = NULL;
    c->len = c->cap = 0;
}

static void cap_close(struct capture *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static void cap_free(struct capture *c)
{
    cap_close(c);
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* Read what is available on c->fd (which poll() said is readable).
 * Returns 0, or -1 when out of memory. Closes the fd at EOF or error. */
static int cap_read(struct capture *c)
{
    if (c->cap - c->len < 4096) {
        size_t ncap = c->cap ? c->cap * 2 : 8192;
        char *nb = realloc(c->buf, ncap);
        if (!nb) return -1;
        c->buf = nb;
        c->cap = ncap;
    }
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n > 0) {
        c->len += (size_t)n;
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        cap_close(c);
    }
    return 0;
}

/* Drain both pipes. timeout_ms < 0: until both reach EOF; 0: only what is
 * ready now. Returns 0, or -1 when out of memory. */
static int drain(Proc *p, int timeout_ms)
{
    for (;;) {
        struct pollfd fds[2];
        struct capture *caps[2];
        int n = 0;
        if (p->out.fd >= 0) { fds[n].fd = p->out.fd; fds[n].events = POLLIN; caps[n++] = &p->out; }
        if (p->err.fd >= 0) { fds[n].fd = p->err.fd; fds[n].events = POLLIN; caps[n++] = &p->err; }
        if (n == 0) return 0;
        int r = poll(fds, (nfds_t)n, timeout_ms);
        if (r < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        if (r == 0) return 0; /* nothing ready (timeout_ms == 0) */
        for (int i = 0; i < n; i++)
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
                if (cap_read(caps[i]) != 0) return -1;
    }
}

/* ---- reaping ----------------------------------------------------------- */

/* waitpid once; returns 1 if the child is (now) reaped. */
static int reap(Proc *p, int block)
{
    if (p->reaped || p->pid <= 0) return 1;
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
        if (r == p->pid) {
            p->status = st;
            p->reaped = 1;
            return 1;
        }
        if (r == 0) return 0;
        if (errno == EINTR) continue;
        /* ECHILD: someone else reaped it; report it as killed */
        p->status = SIGKILL;
        p->reaped = 1;
        return 1;
    }
}

static void sleep_ms(double ms)
{
    if (ms <= 0) return;
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Kill a running child (SIGTERM, 200 ms grace, SIGKILL), reap it, close
 * and free everything. Safe to call twice. */
static void proc_release(Proc *p)
{
    if (p->pid > 0 && !reap(p, 0)) {
        kill(p->pid, SIGTERM);
        for (int i = 0; i < 20 && !reap(p, 0); i++) sleep_ms(10);
        if (!p->reaped) {
            kill(p->pid, SIGKILL);
            reap(p, 1);
        }
    }
    cap_free(&p->out);
    cap_free(&p->err);
}

static Proc *checkproc(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, PROC_MT);
}

static void pushstatus(lua_State *L, const Proc *p)
{
    lua_createtable(L, 0, 3);
    if (WIFEXITED(p->status)) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "exited");
        lua_pushinteger(L, WEXITSTATUS(p->status));
        lua_setfield(L, -2, "code");
    } else {
        int sig = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "exited");
        lua_pushinteger(L, 128 + sig); /* as a shell reports it */
        lua_setfield(L, -2, "code");
        lua_pushinteger(L, sig);
        lua_setfield(L, -2, "signal");
    }
}

/* ---- spawn ------------------------------------------------------------- */

/* A NULL-terminated array of strings owned by a Lua userdata box, so an
 * error while it is built leaks nothing. */
struct strv {
    char **v;
    size_t n, cap;
};

static int strv_gc(lua_State *L)
{
    struct strv *s = lua_touserdata(L, 1);
    if (s->v) {
        for (size_t i = 0; i < s->n; i++) free(s->v[i]);
        free(s->v);
        s->v = NULL;
    }
    s->n = s->cap = 0;
    return 0;
}

static struct strv *strv_new(lua_State *L)
{
    struct strv *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->v = NULL;
    s->n = s->cap = 0;
    static const luaL_Reg strv_meta[] = {{"__gc", strv_gc}, {"__close", strv_gc}, {NULL, NULL}};
    mf_createmeta(L, "migfix.proc.strv", strv_meta, NULL);
    luaL_setmetatable(L, "migfix.proc.strv");
    return s;
}

static void strv_push(lua_State *L, struct strv *s, const char *str, size_t len)
{
    if (s->n + 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        char **nv = realloc(s->v, ncap * sizeof *nv);
        if (!nv) luaL_error(L, "out of memory");
        s->v = nv;
        s->cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy) luaL_error(L, "out of memory");
    memcpy(copy, str, len);
    copy[len] = '\0';
    s->v[s->n++] = copy;
    s->v[s->n] = NULL;
}

/* Is "NAME=..." in environ overridden (or removed) by the env table? */
static int env_overridden(lua_State *L, int envidx, const char *entry)
{
    const char *eq = strchr(entry, '=');
    if (!eq) return 0;
    lua_pushlstring(L, entry, (size_t)(eq - entry));
    int t = lua_rawget(L, envidx);
    lua_pop(L, 1);
    return t != LUA_TNIL;
}

/* Build the child's environment from environ (unless clear_env) and the
 * env table at envidx (0 when absent). A value false removes the name. */
static void build_env(lua_State *L, struct strv *ev, int envidx, int clear)
{
    if (!clear)
        for (char **e = environ; *e; e++)
            if (envidx == 0 || !env_overridden(L, envidx, *e))
                strv_push(L, ev, *e, strlen(*e));
    if (envidx == 0) return;
    lua_pushnil(L);
    while (lua_next(L, envidx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "env keys must be strings (expected %s)", SPAWN_CALL);
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        if (klen == 0 || strchr(k, '=') || strlen(k) != klen)
            luaL_error(L, "invalid environment variable name \"%s\"", k);
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "env value of \"%s\" must be a string, a number or false", k);
        size_t vlen;
        const char *v = lua_tolstring(L, -1, &vlen); /* converts a number in place (value, not key) */
        if (strlen(v) != vlen)
            luaL_error(L, "env value of \"%s\" contains a NUL byte", k);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, k, klen);
        luaL_addchar(&b, '=');
        luaL_addlstring(&b, v, vlen);
        luaL_pushresult(&b);
        size_t elen;
        const char *entry = lua_tolstring(L, -1, &elen);
        strv_push(L, ev, entry, elen);
        lua_pop(L, 2);
    }
}

/* Resolve a program name as execvp would ($PATH unless it contains a
 * slash). Pushes the path and returns 1, or returns 0 (nothing pushed) and
 * sets *err to ENOENT or EACCES. */
static int find_program(lua_State *L, const char *name, int *err)
{
    struct stat st;
    int e = ENOENT;
    if (*name == '\0') goto notfound;
    if (strchr(name, '/')) {
        if (stat(name, &st) == 0) {
            if (S_ISREG(st.st_mode) && access(name, X_OK) == 0) { lua_pushstring(L, name); return 1; }
            e = EACCES;
        }
        goto notfound;
    }
    const char *path = getenv("PATH");
    if (!path) goto notfound;
    for (const char *s = path;;) {
        const char *end = strchr(s, ':');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        if (len == 0) luaL_addchar(&b, '.');
        else luaL_addlstring(&b, s, len);
        luaL_addchar(&b, '/');
        luaL_addstring(&b, name);
        luaL_pushresult(&b);
        const char *cand = lua_tostring(L, -1);
        if (stat(cand, &st) == 0) {
            if (S_ISREG(st.st_mode) && access(cand, X_OK) == 0) return 1;
            e = EACCES;
        }
        lua_pop(L, 1);
        if (!end) break;
        s = end + 1;
    }
notfound:
    if (err) *err = e;
    return 0;
}

/* A redirection: nothing, a file, or a pipe. */
enum redir { R_NONE, R_FILE, R_PIPE };

static enum redir opt_redir(lua_State *L, int idx, const char *k, int allow_pipe, const char **path)
{
    *path = mf_optfield_string(L, idx, k, NULL);
    if (!*path) return R_NONE;
    if (strcmp(*path, "pipe") == 0) {
        if (!allow_pipe) luaL_error(L, "option \"%s\" cannot be \"pipe\" (expected %s)", k, SPAWN_CALL);
        return R_PIPE;
    }
    return R_FILE;
}

/* Close every fd in the list that is >= 0. */
static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) { close(fds[i]); fds[i] = -1; }
}

/* proc.spawn(opts) -> handle | nil, message. Leaves the handle on the stack. */
static int spawn_impl(lua_State *L)
{
    static const char *const fields[] = {
        "argv", "env", "clear_env", "stdin", "stdout", "stderr", "umask", NULL
    };
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_gettop(L) > 1)
        return luaL_error(L, "too many arguments (expected %s)", SPAWN_CALL);
    mf_checkfields(L, 1, SPAWN_CALL, fields);

    /* argv */
    if (lua_getfield(L, 1, "argv") != LUA_TTABLE)
        return luaL_error(L, "option \"argv\" must be a non-empty list of strings (expected %s)", SPAWN_CALL);
    int argvidx = lua_gettop(L);
    lua_Integer argc = luaL_len(L, argvidx);
    if (argc < 1)
        return luaL_error(L, "option \"argv\" must be a non-empty list of strings (expected %s)", SPAWN_CALL);
    struct strv *av = strv_new(L);
    for (lua_Integer i = 1; i <= argc; i++) {
        if (lua_geti(L, argvidx, i) != LUA_TSTRING)
            return luaL_error(L, "argv[%d] must be a string", (int)i);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len) return luaL_error(L, "argv[%d] contains a NUL byte", (int)i);
        strv_push(L, av, s, len);
        lua_pop(L, 1);
    }

    /* environment */
    int clear = mf_optfield_boolean(L, 1, "clear_env", 0);
    int envt = lua_getfield(L, 1, "env");
    int envidx = 0;
    if (envt == LUA_TTABLE) envidx = lua_gettop(L);
    else if (envt != LUA_TNIL)
        return luaL_error(L, "option \"env\" must be a table (expected %s)", SPAWN_CALL);
    struct strv *ev = strv_new(L);
    build_env(L, ev, envidx, clear);

    /* redirections and umask */
    const char *inpath, *outpath, *errpath;
    enum redir rin = opt_redir(L, 1, "stdin", 0, &inpath);
    enum redir rout = opt_redir(L, 1, "stdout", 1, &outpath);
    enum redir rerr = opt_redir(L, 1, "stderr", 1, &errpath);
    lua_Integer um = mf_optfield_integer(L, 1, "umask", -1);
    if (um != -1 && (um < 0 || um > 0777))
        return luaL_error(L, "option \"umask\" must be between 0 and 0777 (got %d)", (int)um);

    /* Resolve the program first: a clear "not found" whatever the libc. */
    int nferr = 0;
    if (!find_program(L, av->v[0], &nferr))
        return mf_pushfail(L, "spawn", nferr, "could not start \"%s\": %s", av->v[0], strerror(nferr));
    const char *prog = lua_tostring(L, -1);

    /* The handle exists (empty) before any fd is opened. */
    Proc *p = lua_newuserdatauv(L, sizeof *p, 0);
    p->pid = 0;
    p->status = 0;
    p->reaped = 1;
    cap_init(&p->out);
    cap_init(&p->err);
    luaL_setmetatable(L, PROC_MT);

    /* From here on nothing raises until the fds are closed again. */
    mode_t oldmask = 0;
    if (um != -1) oldmask = umask((mode_t)um);
    int fds[6] = { -1, -1, -1, -1, -1, -1 }; /* in, out, err, outpipe-r, errpipe-r, spare */
    const char *failwhat = NULL, *failpath = NULL;
    int failerr = 0;

    if (rin == R_FILE && (fds[0] = open(inpath, O_RDONLY | O_CLOEXEC)) < 0) {
        failerr = errno; failwhat = "open"; failpath = inpath;
    }
    if (!failwhat && rout == R_FILE
        && (fds[1] = open(outpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)) < 0) {
        failerr = errno; failwhat = "open"; failpath = outpath;
    }
    if (!failwhat && rerr == R_FILE) {
        if (rout == R_FILE && strcmp(outpath, errpath) == 0) {
            fds[2] = dup(fds[1]);
            if (fds[2] >= 0) fcntl(fds[2], F_SETFD, FD_CLOEXEC);
        } else {
            fds[2] = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        }
        if (fds[2] < 0) { failerr = errno; failwhat = "open"; failpath = errpath; }
    }
    if (!failwhat && rout == R_PIPE) {
        int pp[2];
        if (pipe2(pp, O_CLOEXEC) != 0) { failerr = errno; failwhat = "pipe"; }
        else { fds[3] = pp[0]; fds[1] = pp[1]; }
    }
    if (!failwhat && rerr == R_PIPE) {
        int pp[2];
        if (pipe2(pp, O_CLOEXEC) != 0) { failerr = errno; failwhat = "pipe"; }
        else { fds[4] = pp[0]; fds[2] = pp[1]; }
    }

    int rc = 0;
    pid_t pid = 0;
    if (!failwhat) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, dflt;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0) posix_spawn_file_actions_adddup2(&fa, fds[i], i);
        /* migfix ignores SIGPIPE; the child gets the defaults back. */
        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        sigaddset(&dflt, SIGINT);
        sigaddset(&dflt, SIGTERM);
        sigaddset(&dflt, SIGQUIT);
        sigaddset(&dflt, SIGHUP);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &dflt);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        rc = posix_spawn(&pid, prog, &fa, &attr, av->v, ev->v);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    if (um != -1) umask(oldmask);
    close_fds(fds, 3); /* the child holds its own copies */

    if (failwhat) {
        close_fds(fds, 6);
        if (failpath)
            return mf_pushfail(L, "os", failerr, "could not open \"%s\": %s", failpath, strerror(failerr));
        return mf_pushfail(L, "os", failerr, "could not create a pipe: %s", strerror(failerr));
    }
    if (rc != 0) {
        close_fds(fds, 6);
        return mf_pushfail(L, "spawn", rc, "could not start \"%s\": %s", av->v[0], strerror(rc));
    }
    p->pid = pid;
    p->reaped = 0;
    if (fds[3] >= 0) { p->out.fd = fds[3]; p->out.piped = 1; }
    if (fds[4] >= 0) { p->err.fd = fds[4]; p->err.piped = 1; }
    return 1;
}

/***
 * Start a program (no shell).
 * @function spawn
 * @tparam table opts {argv = {prog, args...}, env = {NAME = value|false}, clear_env = bool,
 *   stdin = path, stdout = path|"pipe", stderr = path|"pipe", umask = int}
 * @treturn[1] handle
 * @return[2] nil
 * @treturn[2] string error message ("could not start \"prog\": reason")
 * @usage local h = assert(proc.spawn{argv = {"pg_dump", "--version"}, stdout = "pipe"})
 */
static int l_spawn(lua_State *L)
{
    return spawn_impl(L);
}

/***
 * Start a program, wait for it, capture whatever is "pipe" (stdout and
 * stderr default to "pipe" here).
 * @function run
 * @treturn[1] table {code = int, signal = int|nil, stdout = string|nil, stderr = string|nil}
 * @return[2] nil
 * @treturn[2] string error message
 */
static int l_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_gettop(L) > 1)
        return luaL_error(L, "too many arguments (expected proc.run{...}, the options of %s)", SPAWN_CALL);
    /* copy the options, defaulting stdout and stderr to "pipe" */
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 2);
    }
    if (lua_getfield(L, 2, "stdout") == LUA_TNIL) {
        lua_pushliteral(L, "pipe");
        lua_setfield(L, 2, "stdout");
    }
    if (lua_getfield(L, 2, "stderr") == LUA_TNIL) {
        lua_pushliteral(L, "pipe");
        lua_setfield(L, 2, "stderr");
    }
    lua_settop(L, 2);
    lua_remove(L, 1);
    int n = spawn_impl(L);
    if (n == 3) return 3; /* nil, message, info */
    Proc *p = checkproc(L, -1);
    if (drain(p, -1) != 0) return luaL_error(L, "out of memory");
    reap(p, 1);
    pushstatus(L, p);
    if (p->out.piped) {
        lua_pushlstring(L, p->out.buf ? p->out.buf : "", p->out.len);
        lua_setfield(L, -2, "stdout");
    }
    if (p->err.piped) {
        lua_pushlstring(L, p->err.buf ? p->err.buf : "", p->err.len);
        lua_setfield(L, -2, "stderr");
    }
    proc_release(p);
    return 1;
}

/* ---- handle methods ---------------------------------------------------- */

/***
 * @function handle:pid
 * @treturn int process id (0 once closed)
 */
static int h_pid(lua_State *L)
{
    Proc *p = checkproc(L, 1);
    lua_pushinteger(L, p->pid);
    return 1;
}

/***
 * Has the child finished? Drains ready pipe data without blocking.
 * @function handle:poll
 * @treturn nil|table nil while running, else {exited, code, signal}
 */
static int h_poll(lua_State *L)
{
    Proc *p = checkproc(L, 1);
    if (p->pid <= 0) return luaL_error(L, "attempt to use a closed process handle");
    if (drain(p, 0) != 0) return luaL_error(L, "out of memory");
    if (!reap(p, 0)) { lua_pushnil(L); return 1; }
    pushstatus(L, p);
    return 1;
}

/***
 * Wait for the child to finish, draining its pipes meanwhile.
 * @function handle:wait
 * @treturn table {exited = bool, code = int, signal = int|nil}
 */
static int h_wait(lua_State *L)
{
    Proc *p = checkproc(L, 1);
    if (p->pid <= 0) return luaL_error(L, "attempt to use a closed process handle");
    if (drain(p, -1) != 0) return luaL_error(L, "out of memory");
    reap(p, 1);
    pushstatus(L, p);
    return 1;
}

static int read_capture(lua_State *L, int err)
{
    Proc *p = checkproc(L, 1);
    struct capture *c = err ? &p->err : &p->out;
    if (p->pid <= 0) return luaL_error(L, "attempt to use a closed process handle");
    if (!c->piped)
        return luaL_error(L, "%s is not a pipe (spawn it with %s = \"pipe\")",
                          err ? "stderr" : "stdout", err ? "stderr" : "stdout");
    if (drain(p, -1) != 0) return luaL_error(L, "out of memory");
    lua_pushlstring(L, c->buf ? c->buf : "", c->len);
    return 1;
}

/***
 * Everything the child wrote to its stdout pipe (reads to end of file).
 * @function handle:read_stdout
 * @treturn string
 */
static int h_read_stdout(lua_State *L) { return read_capture(L, 0); }

/***
 * Everything the child wrote to its stderr pipe (reads to end of file).
 * @function handle:read_stderr
 * @treturn string
 */
static int h_read_stderr(lua_State *L) { return read_capture(L, 1); }

/***
 * Send a signal (default SIGTERM) to a child that has not been reaped.
 * @function handle:kill
 * @tparam[opt=15] int sig
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string error message
 */
static int h_kill(lua_State *L)
{
    Proc *p = checkproc(L, 1);
    int sig = (int)luaL_optinteger(L, 2, SIGTERM);
    if (p->pid <= 0) return luaL_error(L, "attempt to use a closed process handle");
    if (p->reaped) return mf_pushfail(L, "os", ESRCH, "could not signal process %d: it has already exited", (int)p->pid);
    if (kill(p->pid, sig) != 0)
        return mf_pushfail(L, "os", errno, "could not signal process %d: %s", (int)p->pid, strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

/* __gc and __close: kill a running child, reap, free. Twice is harmless. */
static int h_gc(lua_State *L)
{
    Proc *p = checkproc(L, 1);
    proc_release(p);
    p->pid = 0;
    return 0;
}

static int h_tostring(lua_State *L)
{
    Proc *p = checkproc(L, 1);
    if (p->pid <= 0) lua_pushliteral(L, "proc (closed)");
    else lua_pushfstring(L, "proc (%d, %s)", (int)p->pid, p->reaped ? "finished" : "running");
    return 1;
}

/* ---- module functions -------------------------------------------------- */

/***
 * Full path of an executable found on $PATH (or name itself when it
 * contains a slash and is executable).
 * @function which
 * @tparam string name
 * @treturn string|nil
 */
static int l_which(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!find_program(L, name, NULL)) lua_pushnil(L);
    return 1;
}

static const luaL_Reg meth[] = {
    {"kill", h_kill},
    {"pid", h_pid},
    {"poll", h_poll},
    {"read_stderr", h_read_stderr},
    {"read_stdout", h_read_stdout},
    {"wait", h_wait},
    {NULL, NULL}
};

static const luaL_Reg metameth[] = {
    {"__close", h_gc},
    {"__gc", h_gc},
    {"__tostring", h_tostring},
    {NULL, NULL}
};

static const luaL_Reg lib[] = {
    {"run", l_run},
    {"spawn", l_spawn},
    {"which", l_which},
    {NULL, NULL}
};

int luaopen_migfix_proc(lua_State *L)
{
    mf_createmeta(L, PROC_MT, metameth, meth);
    luaL_newlib(L, lib);
    return 1;
}
