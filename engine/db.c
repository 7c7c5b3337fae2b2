/* migfix.db — PostgreSQL through libpq.
 *
 * db.connect(url, opts) -> conn | nil, msg, info
 * conn:query(sql, ...)  -> rows, columns, affected | nil, msg, info
 * conn:exec(sql)        -> true, {tag, affected} | nil, msg, info
 * conn:begin(opts)      -> tx (tx:commit, tx:rollback, tx:active; <close>)
 * conn:try_advisory_lock(key), conn:advisory_unlock(key) (the wait: migfix.ledger)
 * db.parse_url(url), db.redact(text), db.NULL, db.isnull(v)
 *
 * Expected failures (server down, auth, SQL error, lock held) return
 * nil, message, info; misuse (bad argument, unknown option key, closed
 * handle, finished transaction) raises. PGconn and PGresult live in
 * userdata with __gc, so an error raised mid-way leaks nothing. Messages
 * never carry the password: every libpq text goes through mf_url_redact. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "migfix.h"
#include "url.h"

#define CONN_MT "migfix.db.conn"
#define TX_MT "migfix.db.tx"
#define BOX_MT "migfix.db.box"
#define URL_MT "migfix.db.url"

#define MAX_NOTICES 1000

/* Type OIDs (pg_type.dat). */
#define BOOLOID 16
#define INT8OID 20
#define INT2OID 21
#define INT4OID 23
#define OIDOID 26
#define FLOAT4OID 700
#define FLOAT8OID 701
#define TIMESTAMPOID 1114
#define TIMESTAMPTZOID 1184

struct notice {
    char *severity, *sqlstate, *message, *detail, *hint;
    struct notice *next;
};

typedef struct {
    PGconn *pg;            /* NULL once closed */
    struct mf_url url;
    int readonly;
    struct notice *nhead, *ntail;
    size_t nnotices;
} Conn;

enum { TX_PENDING, TX_ACTIVE, TX_DONE };

typedef struct {
    Conn *c;               /* the conn userdata is the tx's user value */
    int state;
} Tx;

/* Owns a PGresult or a libpq/malloc'd buffer until it is freed or
 * collected: wrap before anything can raise. */
typedef struct {
    PGresult *res;
    void *pqmem;           /* PQfreemem */
    char *cmem;            /* free */
} Box;

/* ---- small helpers ---------------------------------------------------- */

static void box_release(Box *b)
{
    if (b->res) { PQclear(b->res); b->res = NULL; }
    if (b->pqmem) { PQfreemem(b->pqmem); b->pqmem = NULL; }
    free(b->cmem);
    b->cmem = NULL;
}

static int box_gc(lua_State *L)
{
    box_release(luaL_checkudata(L, 1, BOX_MT));
    return 0;
}

static Box *newbox(lua_State *L) { return mf_newbox(L, sizeof(Box), BOX_MT); }

static Conn *checkconn(lua_State *L, int idx)
{
    Conn *c = luaL_checkudata(L, idx, CONN_MT);
    if (!c->pg) luaL_error(L, "attempt to use a closed connection");
    return c;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Push text with every URL password masked. */
static void push_redacted(lua_State *L, const char *s, size_t n)
{
    Box *b = newbox(L);
    lua_pushlstring(L, s, n);
    b->cmem = mf_url_redact(lua_tostring(L, -1));
    if (!b->cmem) luaL_error(L, "not enough memory");
    lua_pop(L, 1);
    lua_pushstring(L, b->cmem);
    box_release(b);
    lua_remove(L, -2);
}

/* Push the first line of a libpq message, trimmed and redacted. */
static void push_first_line(lua_State *L, const char *s)
{
    if (!s || !*s) s = "unknown error";
    size_t n = strcspn(s, "\n");
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    push_redacted(L, s, n);
}

static void setfield_str(lua_State *L, const char *k, const char *v)
{
    if (!v) return;
    push_redacted(L, v, strlen(v));
    lua_setfield(L, -2, k);
}

/* ---- values ------------------------------------------------------------ */

/* "2026-11-24 22:12:09.052+00" -> "2026-11-24T22:12:09.052Z" (tz), or
 * "2026-11-24 22:12:09.052" -> "2026-11-24T22:12:09.052". 0 on success;
 * anything else (infinity, BC, a non-ISO DateStyle) stays as it is. */
static int iso_timestamp(const char *v, int tz, char *out, size_t outlen)
{
    size_t len = strlen(v), i = 0;
    if (len + 8 > outlen) return -1;
    while (i < len && isdigit((unsigned char)v[i])) i++;
    if (i < 4) return -1;
    size_t space = i + 6; /* "YYYY-MM-DD" then the space */
    const char *pat = "-dd-dd dd:dd:dd";
    for (const char *p = pat; *p; p++, i++) {
        if (i >= len) return -1;
        if (*p == 'd' ? !isdigit((unsigned char)v[i]) : v[i] != *p) return -1;
    }
    if (i < len && v[i] == '.') {
        size_t j = ++i;
        while (i < len && isdigit((unsigned char)v[i])) i++;
        if (i == j) return -1;
    }
    size_t tend = i; /* end of date and time */
    memcpy(out, v, tend);
    out[space] = 'T';
    if (!tz) {
        if (i != len) return -1;
        out[tend] = '\0';
        return 0;
    }
    /* offset: [+-]hh[:mm[:ss]] */
    if (i >= len || (v[i] != '+' && v[i] != '-')) return -1;
    char sign = v[i++];
    int part[3] = {0, 0, 0}, np = 0;
    while (np < 3) {
        if (i + 2 > len || !isdigit((unsigned char)v[i]) || !isdigit((unsigned char)v[i + 1])) return -1;
        part[np++] = (v[i] - '0') * 10 + (v[i + 1] - '0');
        i += 2;
        if (i < len && v[i] == ':') i++;
        else break;
    }
    if (i != len || part[2] != 0) return -1;
    if (part[0] == 0 && part[1] == 0) snprintf(out + tend, outlen - tend, "Z");
    else snprintf(out + tend, outlen - tend, "%c%02d:%02d", sign, part[0], part[1]);
    return 0;
}

static void push_value(lua_State *L, const PGresult *res, int r, int f)
{
    if (PQgetisnull(res, r, f)) { mf_pushnull(L); return; }
    const char *v = PQgetvalue(res, r, f);
    size_t len = (size_t)PQgetlength(res, r, f);
    char buf[64];
    switch (PQftype(res, f)) {
    case INT2OID: case INT4OID: case INT8OID: case OIDOID: {
        char *e;
        errno = 0;
        long long x = strtoll(v, &e, 10);
        if (errno == 0 && *e == '\0' && e != v) lua_pushinteger(L, (lua_Integer)x);
        else lua_pushlstring(L, v, len);
        break;
    }
    case FLOAT4OID: case FLOAT8OID:
        lua_pushnumber(L, (lua_Number)strtod(v, NULL));
        break;
    case BOOLOID:
        lua_pushboolean(L, v[0] == 't');
        break;
    case TIMESTAMPTZOID: case TIMESTAMPOID:
        if (iso_timestamp(v, PQftype(res, f) == TIMESTAMPTZOID, buf, sizeof buf) == 0)
            lua_pushstring(L, buf);
        else
            lua_pushlstring(L, v, len);
        break;
    default:
        lua_pushlstring(L, v, len);
    }
}

/* Push rows (array of name-keyed tables) and columns (ordered names). */
static void push_rows(lua_State *L, const PGresult *res)
{
    int nf = PQnfields(res), nt = PQntuples(res);
    luaL_checkstack(L, 6, "too many results");
    lua_createtable(L, nt, 0);
    lua_createtable(L, nf, 0);
    for (int f = 0; f < nf; f++) {
        lua_pushstring(L, PQfname(res, f));
        lua_rawseti(L, -2, f + 1);
    }
    for (int r = 0; r < nt; r++) {
        lua_createtable(L, 0, nf);
        for (int f = 0; f < nf; f++) {
            lua_rawgeti(L, -2, f + 1);
            push_value(L, res, r, f);
            lua_rawset(L, -3);
        }
        lua_rawseti(L, -3, r + 1);
    }
}

static void push_affected(lua_State *L, PGresult *res)
{
    const char *t = PQcmdTuples(res);
    if (t && *t) lua_pushinteger(L, (lua_Integer)strtoll(t, NULL, 10));
    else lua_pushnil(L);
}

/* nil, message, info for a failed command (res may be NULL). */
static int push_result_error(lua_State *L, Conn *c, const PGresult *res)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    lua_pushnil(L);
    if (primary) push_redacted(L, primary, strlen(primary));
    else push_first_line(L, res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
    lua_createtable(L, 0, 8);
    if (res) {
        setfield_str(L, "sqlstate", PQresultErrorField(res, PG_DIAG_SQLSTATE));
        setfield_str(L, "detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
        setfield_str(L, "hint", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
        setfield_str(L, "severity", PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED));
        setfield_str(L, "context", PQresultErrorField(res, PG_DIAG_CONTEXT));
        const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
        if (pos) {
            lua_pushinteger(L, (lua_Integer)strtoll(pos, NULL, 10));
            lua_setfield(L, -2, "position");
        }
    }
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "message");
    if (PQstatus(c->pg) == CONNECTION_BAD) lua_pushliteral(L, "connect");
    else lua_pushliteral(L, "server");
    lua_setfield(L, -2, "kind");
    return 3;
}

/* End a COPY the caller cannot drive and consume the remaining results. */
static void abandon_copy(PGconn *pg, ExecStatusType st)
{
    if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH)
        PQputCopyEnd(pg, "COPY is not supported by migfix");
    if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        char *buf;
        int n;
        while ((n = PQgetCopyData(pg, &buf, 0)) > 0) PQfreemem(buf);
    }
    PGresult *r;
    while ((r = PQgetResult(pg)) != NULL) PQclear(r);
}

/* The statement's result is in b (on top of the stack). Returns the
 * number of values pushed, or raises for COPY. */
static int finish(lua_State *L, Conn *c, Box *b, int exec)
{
    ExecStatusType st = b->res ? PQresultStatus(b->res) : PGRES_FATAL_ERROR;
    switch (st) {
    case PGRES_TUPLES_OK: case PGRES_SINGLE_TUPLE: case PGRES_COMMAND_OK: case PGRES_EMPTY_QUERY:
        if (exec) {
            lua_pushboolean(L, 1);
            lua_createtable(L, 0, 2);
            lua_pushstring(L, PQcmdStatus(b->res));
            lua_setfield(L, -2, "tag");
            push_affected(L, b->res);
            lua_setfield(L, -2, "affected");
            box_release(b);
            return 2;
        }
        if (st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE) {
            push_rows(L, b->res);
        } else {
            lua_newtable(L);
            lua_newtable(L);
        }
        push_affected(L, b->res);
        box_release(b);
        return 3;
    case PGRES_COPY_IN: case PGRES_COPY_OUT: case PGRES_COPY_BOTH:
        box_release(b);
        abandon_copy(c->pg, st);
        return luaL_error(L, "COPY is not supported (expected SQL without COPY ... FROM STDIN/TO STDOUT)");
    default: {
        int n = push_result_error(L, c, b->res);
        box_release(b);
        return n;
    }
    }
}

/* ---- notices ----------------------------------------------------------- */

static char *dupfield(const PGresult *res, int code)
{
    const char *s = PQresultErrorField(res, code);
    return s ? mf_url_redact(s) : NULL;
}

static void on_notice(void *arg, const PGresult *res)
{
    Conn *c = arg;
    if (c->nnotices >= MAX_NOTICES) return;
    struct notice *n = calloc(1, sizeof *n);
    if (!n) return;
    n->severity = dupfield(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    n->sqlstate = dupfield(res, PG_DIAG_SQLSTATE);
    n->message = dupfield(res, PG_DIAG_MESSAGE_PRIMARY);
    n->detail = dupfield(res, PG_DIAG_MESSAGE_DETAIL);
    n->hint = dupfield(res, PG_DIAG_MESSAGE_HINT);
    if (c->ntail) c->ntail->next = n;
    else c->nhead = n;
    c->ntail = n;
    c->nnotices++;
}

static void free_notices(Conn *c)
{
    struct notice *n = c->nhead;
    while (n) {
        struct notice *next = n->next;
        free(n->severity);
        free(n->sqlstate);
        free(n->message);
        free(n->detail);
        free(n->hint);
        free(n);
        n = next;
    }
    c->nhead = c->ntail = NULL;
    c->nnotices = 0;
}

/* ---- connect ----------------------------------------------------------- */

#define CONNECT_CALL "db.connect(url, {readonly=, application_name=, connect_timeout=, lock_timeout=, statement_timeout=})"

static const char *const connect_fields[] = {
    "application_name", "connect_timeout", "lock_timeout", "readonly", "statement_timeout", NULL
};

/* Add " -c name=value" to an options string, escaping blanks and
 * backslashes as the server's option splitter expects. */
static void add_option(luaL_Buffer *B, const char *name, const char *value)
{
    if (luaL_bufflen(B) > 0) luaL_addchar(B, ' ');
    luaL_addstring(B, "-c ");
    luaL_addstring(B, name);
    luaL_addchar(B, '=');
    for (const char *p = value; *p; p++) {
        if (isspace((unsigned char)*p) || *p == '\\') luaL_addchar(B, '\\');
        luaL_addchar(B, *p);
    }
}

/* What went wrong, from libpq's (verbose) connection error text. */
struct connfail {
    char sqlstate[6];
    const char *reason;
    size_t reason_len;
    const char *detail, *hint;
    size_t detail_len, hint_len;
};

static void parse_connfail(const char *msg, struct connfail *f)
{
    memset(f, 0, sizeof *f);
    int have_state = 0;
    for (const char *line = msg; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        const char *next = nl ? nl + 1 : NULL;
        if (n == 0) { line = next; continue; }
        if (strncmp(line, "DETAIL:  ", 9) == 0) { f->detail = line + 9; f->detail_len = n - 9; }
        else if (strncmp(line, "HINT:  ", 7) == 0) { f->hint = line + 7; f->hint_len = n - 7; }
        else if (line[0] == '\t') {
            if (!f->hint) { f->hint = line + 1; f->hint_len = n - 1; }
        } else if (strncmp(line, "LOCATION:  ", 11) != 0) {
            const char *s = line, *e = line + n;
            if (strncmp(s, "connection to server ", 21) == 0) {
                const char *fl = strstr(s, " failed: ");
                if (fl && fl < e) s = fl + 9;
            }
            const char *sevs[] = {"FATAL:  ", "ERROR:  ", "PANIC:  ", NULL};
            for (int i = 0; sevs[i]; i++)
                if ((size_t)(e - s) > strlen(sevs[i]) && strncmp(s, sevs[i], strlen(sevs[i])) == 0) {
                    s += strlen(sevs[i]);
                    break;
                }
            char state[6] = "";
            if (e - s > 7 && s[5] == ':' && s[6] == ' ') {
                int ok = 1;
                for (int i = 0; i < 5; i++)
                    if (!isdigit((unsigned char)s[i]) && !isupper((unsigned char)s[i])) ok = 0;
                if (ok) { memcpy(state, s, 5); state[5] = '\0'; s += 7; }
            }
            /* keep the first reason that has a SQLSTATE, else the last one */
            if (!have_state || state[0]) {
                if (!have_state && state[0]) { f->detail = f->hint = NULL; }
                f->reason = s;
                f->reason_len = (size_t)(e - s);
                memcpy(f->sqlstate, state, sizeof state);
                if (state[0]) have_state = 1;
            }
        }
        line = next;
    }
}

static void push_trimmed(lua_State *L, const char *s, size_t n, int lower)
{
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    luaL_Buffer B;
    luaL_buffinit(L, &B);
    if (n > 0 && lower && isupper((unsigned char)s[0]) && n > 1 && islower((unsigned char)s[1])) {
        luaL_addchar(&B, (char)tolower((unsigned char)s[0]));
        luaL_addlstring(&B, s + 1, n - 1);
    } else {
        luaL_addlstring(&B, s, n);
    }
    luaL_pushresult(&B);
}

/* nil, message, info for a failed connection; closes c->pg. */
static int push_connect_error(lua_State *L, Conn *c, const char *timeout_reason)
{
    char port[16];
    const char *host = mf_url_param(&c->url, "host");
    int bracket = 0;
    if (!host) { host = c->url.host; bracket = c->url.ipv6; }
    snprintf(port, sizeof port, "%d", c->url.port);
    const char *db = c->url.dbname ? c->url.dbname : (c->pg ? PQdb(c->pg) : NULL);
    const char *user = c->url.user ? c->url.user : (c->pg ? PQuser(c->pg) : NULL);

    /* redacted libpq text, owned by a box while we parse it */
    Box *b = newbox(L);
    b->cmem = mf_url_redact(c->pg ? PQerrorMessage(c->pg) : "out of memory");
    if (!b->cmem) luaL_error(L, "not enough memory");
    struct connfail f;
    parse_connfail(b->cmem, &f);

    lua_pushnil(L);
    if (timeout_reason) lua_pushstring(L, timeout_reason);
    else if (f.reason && f.reason_len) push_trimmed(L, f.reason, f.reason_len, 1);
    else lua_pushliteral(L, "unknown error");
    int ri = lua_gettop(L);
    push_redacted(L, host ? host : "", host ? strlen(host) : 0);
    push_redacted(L, db ? db : "", db ? strlen(db) : 0);
    push_redacted(L, user ? user : "", user ? strlen(user) : 0);
    lua_pushfstring(L, "could not connect to database \"%s\" on %s%s%s:%s as user \"%s\": %s",
                    lua_tostring(L, ri + 2), bracket ? "[" : "", lua_tostring(L, ri + 1),
                    bracket ? "]" : "", port, lua_tostring(L, ri + 3), lua_tostring(L, ri));
    lua_createtable(L, 0, 6);
    int auth = strcmp(f.sqlstate, "28P01") == 0 || strcmp(f.sqlstate, "28000") == 0
        || (f.reason && strstr(f.reason, "no password supplied"));
    lua_pushstring(L, timeout_reason ? "connect" : auth ? "auth" : "connect");
    lua_setfield(L, -2, "kind");
    if (f.sqlstate[0] && !timeout_reason) {
        lua_pushstring(L, f.sqlstate);
        lua_setfield(L, -2, "sqlstate");
    }
    if (f.detail && !timeout_reason) {
        push_trimmed(L, f.detail, f.detail_len, 0);
        lua_setfield(L, -2, "detail");
    }
    if (f.hint && !timeout_reason) {
        push_trimmed(L, f.hint, f.hint_len, 0);
        lua_setfield(L, -2, "hint");
    }
    lua_pushvalue(L, ri);
    lua_setfield(L, -2, "message");
    /* nil, message, info on top; drop the helpers below them */
    lua_replace(L, ri + 1);          /* info -> slot of host */
    lua_replace(L, ri);              /* message -> slot of reason */
    lua_settop(L, ri + 1);           /* ..., box, nil, message, info */
    if (c->pg) { PQfinish(c->pg); c->pg = NULL; }
    box_release(b);
    return 3;
}

static int db_connect(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        mf_checkfields(L, 2, CONNECT_CALL, connect_fields);
    }
    mf_checknargs(L, 2, CONNECT_CALL);
    lua_settop(L, 2);
    int readonly = mf_optfield_boolean(L, 2, "readonly", 0);
    const char *app = mf_optfield_string(L, 2, "application_name", NULL);
    lua_Integer timeout = mf_optfield_integer(L, 2, "connect_timeout", 0);
    const char *lock_timeout = mf_optfield_string(L, 2, "lock_timeout", NULL);
    const char *stmt_timeout = mf_optfield_string(L, 2, "statement_timeout", NULL);
    if (!lua_isnil(L, 2)) {
        lua_getfield(L, 2, "connect_timeout");
        if (!lua_isnil(L, -1) && timeout <= 0)
            luaL_error(L, "option \"connect_timeout\" must be a positive number of seconds");
        lua_pop(L, 1);
    }

    Conn *c = mf_newbox(L, sizeof *c, CONN_MT);
    int ci = lua_gettop(L);

    char err[256];
    if (mf_url_parse(url, &c->url, err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "url");
        lua_setfield(L, -2, "kind");
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "message");
        return 3;
    }
    c->readonly = readonly;

    if (!app) app = mf_url_param(&c->url, "application_name");
    if (!app) app = "migfix";
    if (timeout <= 0) {
        const char *t = mf_url_param(&c->url, "connect_timeout");
        timeout = t ? (lua_Integer)strtoll(t, NULL, 10) : 0;
        if (timeout <= 0) timeout = 10;
    }

    /* search_path = "<schema>", like Prisma (embedded quotes doubled) */
    const char *search_path = NULL;
    if (c->url.schema_given) {
        luaL_Buffer S;
        luaL_buffinit(L, &S);
        luaL_addchar(&S, '"');
        for (const char *p = c->url.schema; *p; p++) {
            if (*p == '"') luaL_addchar(&S, '"');
            luaL_addchar(&S, *p);
        }
        luaL_addchar(&S, '"');
        luaL_pushresult(&S);
        search_path = lua_tostring(L, -1);
    }
    /* options: the user's, then ours (the server applies them in order) */
    luaL_Buffer B;
    luaL_buffinit(L, &B);
    const char *user_options = mf_url_param(&c->url, "options");
    if (user_options) luaL_addstring(&B, user_options);
    add_option(&B, "datestyle", "ISO");
    add_option(&B, "timezone", "UTC");
    if (readonly) add_option(&B, "default_transaction_read_only", "on");
    if (lock_timeout) add_option(&B, "lock_timeout", lock_timeout);
    if (stmt_timeout) add_option(&B, "statement_timeout", stmt_timeout);
    if (search_path) add_option(&B, "search_path", search_path);
    luaL_pushresult(&B);
    const char *options = lua_tostring(L, -1);

    size_t nk = 8 + c->url.nparams + 1, k = 0;
    const char **kw = lua_newuserdatauv(L, nk * sizeof *kw, 0);
    const char **vals = lua_newuserdatauv(L, nk * sizeof *vals, 0);
    char port[16];
    snprintf(port, sizeof port, "%d", c->url.port);
#define KV(key, val) do { if (val) { kw[k] = (key); vals[k] = (val); k++; } } while (0)
    KV("host", c->url.host);
    kw[k] = "port";
    vals[k++] = port;
    KV("user", c->url.user);
    KV("password", c->url.password);
    KV("dbname", c->url.dbname);
    KV("client_encoding", "UTF8");
    KV("application_name", app);
    KV("options", options);
    for (size_t i = 0; i < c->url.nparams; i++) {
        const char *key = c->url.params[i].key;
        if (strcmp(key, "application_name") == 0 || strcmp(key, "options") == 0
            || strcmp(key, "connect_timeout") == 0)
            continue;
        KV(key, c->url.params[i].value);
    }
#undef KV
    kw[k] = vals[k] = NULL;

    /* expand_dbname = 0: the database name is never read as a conninfo */
    c->pg = PQconnectStartParams(kw, vals, 0);
    if (!c->pg) return push_connect_error(L, c, NULL);
    PQsetNoticeReceiver(c->pg, on_notice, c);
    /* verbose: startup errors carry their SQLSTATE ("FATAL:  28P01: ...") */
    PQsetErrorVerbosity(c->pg, PQERRORS_VERBOSE);
    if (PQstatus(c->pg) == CONNECTION_BAD) return push_connect_error(L, c, NULL);

    double deadline = now_ms() + (double)timeout * 1000.0;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        double left = deadline - now_ms();
        struct pollfd pfd = {PQsocket(c->pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int rc = left > 0 ? poll(&pfd, 1, (int)left + 1) : 0;
        if (rc == -1 && errno == EINTR) continue;
        if (rc == 0) {
            lua_pushfstring(L, "timeout expired after %d s", (int)timeout);
            return push_connect_error(L, c, lua_tostring(L, -1));
        }
        st = PQconnectPoll(c->pg);
    }
    if (st == PGRES_POLLING_FAILED || PQstatus(c->pg) != CONNECTION_OK)
        return push_connect_error(L, c, NULL);
    PQsetErrorVerbosity(c->pg, PQERRORS_DEFAULT);
    lua_pushvalue(L, ci);
    return 1;
}

/* ---- conn methods ------------------------------------------------------ */

static int conn_close(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    PGconn *pg = c->pg;
    c->pg = NULL;
    if (pg) PQfinish(pg);
    free_notices(c);
    mf_url_free(&c->url);
    lua_pushboolean(L, 1);
    return 1;
}

static int conn_tostring(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (!c->pg) lua_pushliteral(L, CONN_MT " (closed)");
    else lua_pushfstring(L, CONN_MT " (%s)", c->url.redacted ? c->url.redacted : "?");
    return 1;
}

#define QUERY_CALL "conn:query(sql, ...)"

/* Text form of parameter idx (pushed, or NULL for SQL NULL). */
static const char *param_text(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return NULL;
    case LUA_TLIGHTUSERDATA:
        if (mf_isnull(L, idx)) return NULL;
        break;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        else {
            double d = (double)lua_tonumber(L, idx);
            char buf[40];
            if (isnan(d)) return "NaN";
            if (isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(buf, sizeof buf, "%.*g", prec, d);
                if (strtod(buf, NULL) == d) break;
            }
            return lua_pushstring(L, buf);
        }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (strlen(s) != len) luaL_argerror(L, idx, "parameter contains a NUL byte");
        return s;
    }
    default:
        break;
    }
    luaL_argerror(L, idx, lua_pushfstring(L, "expected string, number, boolean, nil or db.NULL, got %s",
                                          luaL_typename(L, idx)));
    return NULL;
}

static int conn_query(lua_State *L)
{
    Conn *c = checkconn(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    int n = lua_gettop(L) - 2;
    if (n > 65535) luaL_error(L, "too many parameters (at most 65535)");
    luaL_checkstack(L, n + 16, "too many parameters");
    const char **values = n > 0 ? lua_newuserdatauv(L, (size_t)n * sizeof *values, 0) : NULL;
    for (int i = 0; i < n; i++) values[i] = param_text(L, 3 + i);
    Box *b = newbox(L);
    b->res = PQexecParams(c->pg, sql, n, NULL, values, NULL, NULL, 0);
    return finish(L, c, b, 0);
}

static int conn_exec(lua_State *L)
{
    Conn *c = checkconn(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    mf_checknargs(L, 2, "conn:exec(sql)");
    Box *b = newbox(L);
    b->res = PQexec(c->pg, sql);
    return finish(L, c, b, 1);
}

static int conn_notices(lua_State *L)
{
    Conn *c = checkconn(L, 1);
    mf_checknargs(L, 1, "conn:notices()");
    lua_createtable(L, (int)c->nnotices, 0);
    int i = 0;
    for (struct notice *n = c->nhead; n; n = n->next) {
        lua_createtable(L, 0, 5);
        if (n->severity) { lua_pushstring(L, n->severity); lua_setfield(L, -2, "severity"); }
        if (n->sqlstate) { lua_pushstring(L, n->sqlstate); lua_setfield(L, -2, "sqlstate"); }
        if (n->message) { lua_pushstring(L, n->message); lua_setfield(L, -2, "message"); }
        if (n->detail) { lua_pushstring(L, n->detail); lua_setfield(L, -2, "detail"); }
        if (n->hint) { lua_pushstring(L, n->hint); lua_setfield(L, -2, "hint"); }
        lua_rawseti(L, -2, ++i);
    }
    free_notices(c);
    return 1;
}

static int conn_server_version(lua_State *L)
{
    Conn *c = checkconn(L, 1);
    mf_checknargs(L, 1, "conn:server_version()");
    lua_pushinteger(L, PQserverVersion(c->pg));
    return 1;
}

static int conn_info(lua_State *L)
{
    Conn *c = checkconn(L, 1);
    mf_checknargs(L, 1, "conn:info()");
    lua_createtable(L, 0, 8);
    lua_pushstring(L, PQhost(c->pg));
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, (lua_Integer)strtol(PQport(c->pg) ? PQport(c->pg) : "0", NULL, 10));
    lua_setfield(L, -2, "port");
    lua_pushstring(L, PQdb(c->pg));
    lua_setfield(L, -2, "dbname");
    lua_pushstring(L, PQuser(c->pg));
    lua_setfield(L, -2, "user");
    lua_pushstring(L, c->url.schema);
    lua_setfield(L, -2, "schema");
    lua_pushinteger(L, PQbackendPID(c->pg));
    lua_setfield(L, -2, "backend_pid");
    lua_pushboolean(L, c->readonly);
    lua_setfield(L, -2, "readonly");
    lua_pushboolean(L, PQtransactionStatus(c->pg) != PQTRANS_IDLE);
    lua_setfield(L, -2, "in_transaction");
    return 1;
}

static int quote(lua_State *L, int ident)
{
    Conn *c = checkconn(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    mf_checknargs(L, 2, ident ? "conn:quote_ident(s)" : "conn:quote_literal(s)");
    Box *b = newbox(L);
    b->pqmem = ident ? PQescapeIdentifier(c->pg, s, len) : PQescapeLiteral(c->pg, s, len);
    if (!b->pqmem) {
        push_first_line(L, PQerrorMessage(c->pg));
        return luaL_argerror(L, 2, lua_tostring(L, -1));
    }
    lua_pushstring(L, b->pqmem);
    box_release(b);
    return 1;
}

static int conn_quote_ident(lua_State *L) { return quote(L, 1); }
static int conn_quote_literal(lua_State *L) { return quote(L, 0); }

/* ---- advisory lock ------------------------------------------------------ */

/* SELECT fn($1::bigint) of key -> boolean | nil, message, info */
static int advisory_call(lua_State *L, const char *sql, const char *call)
{
    Conn *c = checkconn(L, 1);
    lua_Integer key = luaL_checkinteger(L, 2);
    mf_checknargs(L, 2, call);
    char keybuf[32];
    snprintf(keybuf, sizeof keybuf, "%lld", (long long)key);
    const char *vals[1] = {keybuf};
    Box *b = newbox(L);
    b->res = PQexecParams(c->pg, sql, 1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(b->res) != PGRES_TUPLES_OK) return push_result_error(L, c, b->res);
    lua_pushboolean(L, PQgetvalue(b->res, 0, 0)[0] == 't');
    box_release(b);
    return 1;
}

/* One try, never a wait: the bounded wait, its backoff and the message
 * naming the holder are migfix.ledger's (Lua). */
static int conn_try_advisory_lock(lua_State *L)
{
    return advisory_call(L, "SELECT pg_try_advisory_lock($1::bigint)", "conn:try_advisory_lock(key)");
}

static int conn_advisory_unlock(lua_State *L)
{
    return advisory_call(L, "SELECT pg_advisory_unlock($1::bigint)", "conn:advisory_unlock(key)");
}

/* ---- transactions ------------------------------------------------------ */

#define BEGIN_CALL "conn:begin({readonly=})"

static const char *const begin_fields[] = {"readonly", NULL};

static int conn_begin(lua_State *L)
{
    Conn *c = checkconn(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        mf_checkfields(L, 2, BEGIN_CALL, begin_fields);
    }
    mf_checknargs(L, 2, BEGIN_CALL);
    lua_settop(L, 2);
    int readonly = mf_optfield_boolean(L, 2, "readonly", c->readonly);
    if (c->readonly && !readonly)
        luaL_error(L, "cannot begin a read-write transaction on a read-only connection");
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        luaL_error(L, "a transaction is already in progress on this connection");
    Tx *t = lua_newuserdatauv(L, sizeof *t, 1);
    t->c = c;
    t->state = TX_PENDING;
    luaL_setmetatable(L, TX_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    Box *b = newbox(L);
    b->res = PQexec(c->pg, readonly ? "BEGIN READ ONLY" : "BEGIN");
    if (PQresultStatus(b->res) != PGRES_COMMAND_OK) {
        t->state = TX_DONE;
        return push_result_error(L, c, b->res);
    }
    box_release(b);
    t->state = TX_ACTIVE;
    lua_pop(L, 1);
    return 1;
}

static Tx *checktx(lua_State *L)
{
    Tx *t = luaL_checkudata(L, 1, TX_MT);
    if (!t->c->pg) luaL_error(L, "attempt to use a closed connection");
    return t;
}

static int tx_commit(lua_State *L)
{
    Tx *t = checktx(L);
    mf_checknargs(L, 1, "tx:commit()");
    if (t->state != TX_ACTIVE) luaL_error(L, "attempt to commit a finished transaction");
    t->state = TX_DONE;
    Box *b = newbox(L);
    b->res = PQexec(t->c->pg, "COMMIT");
    if (PQresultStatus(b->res) != PGRES_COMMAND_OK) return push_result_error(L, t->c, b->res);
    if (strcmp(PQcmdStatus(b->res), "COMMIT") != 0) {
        /* COMMIT of a failed transaction answers ROLLBACK, not an error */
        box_release(b);
        lua_pushnil(L);
        lua_pushliteral(L, "could not commit: the transaction was rolled back after an earlier error");
        lua_createtable(L, 0, 3);
        lua_pushliteral(L, "25P02");
        lua_setfield(L, -2, "sqlstate");
        lua_pushliteral(L, "server");
        lua_setfield(L, -2, "kind");
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "message");
        return 3;
    }
    box_release(b);
    lua_pushboolean(L, 1);
    return 1;
}

static int tx_rollback(lua_State *L)
{
    Tx *t = checktx(L);
    mf_checknargs(L, 1, "tx:rollback()");
    if (t->state != TX_ACTIVE) { lua_pushboolean(L, 1); return 1; }
    t->state = TX_DONE;
    Box *b = newbox(L);
    b->res = PQexec(t->c->pg, "ROLLBACK");
    if (PQresultStatus(b->res) != PGRES_COMMAND_OK) return push_result_error(L, t->c, b->res);
    box_release(b);
    lua_pushboolean(L, 1);
    return 1;
}

static int tx_active(lua_State *L)
{
    Tx *t = luaL_checkudata(L, 1, TX_MT);
    lua_pushboolean(L, t->state == TX_ACTIVE && t->c->pg != NULL);
    return 1;
}

/* __close and __gc: roll back unless committed; never raises. */
static int tx_gc(lua_State *L)
{
    Tx *t = luaL_checkudata(L, 1, TX_MT);
    if (t->state == TX_ACTIVE && t->c->pg) {
        t->state = TX_DONE;
        PQclear(PQexec(t->c->pg, "ROLLBACK"));
    }
    t->state = TX_DONE;
    return 0;
}

static int tx_tostring(lua_State *L)
{
    Tx *t = luaL_checkudata(L, 1, TX_MT);
    lua_pushfstring(L, TX_MT " (%s)", t->state == TX_ACTIVE ? "active" : "finished");
    return 1;
}

/* ---- module functions -------------------------------------------------- */

static int url_gc(lua_State *L)
{
    mf_url_free(luaL_checkudata(L, 1, URL_MT));
    return 0;
}

static void push_names(lua_State *L, char **names, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int db_parse_url(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    mf_checknargs(L, 1, "db.parse_url(url)");
    struct mf_url *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, URL_MT);
    char err[256];
    if (mf_url_parse(s, u, err, sizeof err) != 0) return mf_pushfail(L, "url", 0, "%s", err);
    lua_createtable(L, 0, 12);
    const char *host = u->host ? u->host : mf_url_param(u, "host");
    if (host) { lua_pushstring(L, host); lua_setfield(L, -2, "host"); }
    lua_pushinteger(L, u->port);
    lua_setfield(L, -2, "port");
    if (u->user) { lua_pushstring(L, u->user); lua_setfield(L, -2, "user"); }
    if (u->dbname) { lua_pushstring(L, u->dbname); lua_setfield(L, -2, "dbname"); }
    lua_pushstring(L, u->schema);
    lua_setfield(L, -2, "schema");
    lua_pushboolean(L, u->schema_given);
    lua_setfield(L, -2, "schema_given");
    lua_pushboolean(L, u->password != NULL);
    lua_setfield(L, -2, "has_password");
    lua_createtable(L, 0, (int)u->nparams);
    for (size_t i = 0; i < u->nparams; i++) {
        lua_pushstring(L, u->params[i].value);
        lua_setfield(L, -2, u->params[i].key);
    }
    lua_setfield(L, -2, "params");
    push_names(L, u->stripped, u->nstripped);
    lua_setfield(L, -2, "stripped");
    push_names(L, u->ignored, u->nignored);
    lua_setfield(L, -2, "ignored");
    lua_pushstring(L, u->redacted);
    lua_setfield(L, -2, "redacted");
    mf_url_free(u);
    return 1;
}

static int db_redact(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    mf_checknargs(L, 1, "db.redact(text)");
    if (strlen(s) != len) luaL_argerror(L, 1, "text contains a NUL byte");
    /* no "://", no URL: the text itself (status --json prints megabytes) */
    if (!strstr(s, "://")) { lua_settop(L, 1); return 1; }
    push_redacted(L, s, len);
    return 1;
}

static int db_isnull(lua_State *L)
{
    luaL_checkany(L, 1);
    mf_checknargs(L, 1, "db.isnull(v)");
    lua_pushboolean(L, mf_isnull(L, 1));
    return 1;
}

static const luaL_Reg box_meta[] = {
    {"__close", box_gc},
    {"__gc", box_gc},
    {NULL, NULL}
};

static const luaL_Reg conn_meta[] = {
    {"__close", conn_close},
    {"__gc", conn_close},
    {"__tostring", conn_tostring},
    {NULL, NULL}
};

static const luaL_Reg conn_methods[] = {
    {"try_advisory_lock", conn_try_advisory_lock},
    {"advisory_unlock", conn_advisory_unlock},
    {"begin", conn_begin},
    {"close", conn_close},
    {"exec", conn_exec},
    {"info", conn_info},
    {"notices", conn_notices},
    {"query", conn_query},
    {"quote_ident", conn_quote_ident},
    {"quote_literal", conn_quote_literal},
    {"server_version", conn_server_version},
    {NULL, NULL}
};

static const luaL_Reg tx_meta[] = {
    {"__close", tx_gc},
    {"__gc", tx_gc},
    {"__tostring", tx_tostring},
    {NULL, NULL}
};

static const luaL_Reg tx_methods[] = {
    {"active", tx_active},
    {"commit", tx_commit},
    {"rollback", tx_rollback},
    {NULL, NULL}
};

static const luaL_Reg url_meta[] = {
    {"__gc", url_gc},
    {NULL, NULL}
};

static const luaL_Reg lib[] = {
    {"connect", db_connect},
    {"isnull", db_isnull},
    {"parse_url", db_parse_url},
    {"redact", db_redact},
    {NULL, NULL}
};

int luaopen_migfix_db(lua_State *L)
{
    mf_createmeta(L, BOX_MT, box_meta, NULL);
    mf_createmeta(L, CONN_MT, conn_meta, conn_methods);
    mf_createmeta(L, TX_MT, tx_meta, tx_methods);
    mf_createmeta(L, URL_MT, url_meta, NULL);
    luaL_newlib(L, lib);
    mf_pushnull(L);
    lua_setfield(L, -2, "NULL");
    return 1;
}
