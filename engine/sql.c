/* migfix.sql — PostgreSQL's own parser (libpg_query 15) for Lua.
 *
 * @module migfix.sql
 *
 *   sql.parse(text)        -> tree | nil, message, err
 *   sql.split(text)        -> { {text=, offset=, length=, line=, end_line=}, ... } | nil, message, err
 *   sql.span(text, location, length) -> {text=, offset=, length=, line=, end_line=} | nil
 *   sql.fingerprint(text)  -> hex | nil, message, err
 *   sql.parse_plpgsql(text) -> { {PLpgSQL_function = {...}}, ... } | nil, message, err
 *
 * err = { message =, cursorpos =, line =, column = } (line and column 1-based,
 * column counted in characters; both nil when the server gave no position).
 *
 * Every libpg_query/cJSON result lives in a "migfix.sql.result" userdata
 * whose __gc frees it, so an error raised while converting leaks nothing;
 * on the normal path the result is freed as soon as it is converted. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cJSON.h>
#include <pg_query.h>

#include "migfix.h"

#define RESULT_MT "migfix.sql.result"

enum rkind { R_NONE, R_PARSE, R_PLPGSQL, R_SPLIT, R_FINGERPRINT };

typedef struct {
    enum rkind kind;
    union {
        PgQueryParseResult parse;
        PgQueryPlpgsqlParseResult plpgsql;
        PgQuerySplitResult split;
        PgQueryFingerprintResult fingerprint;
    } u;
    cJSON *json;
} Result;

static void result_free(Result *r)
{
    enum rkind k = r->kind;
    r->kind = R_NONE; /* clear first: freeing twice is harmless */
    switch (k) {
    case R_PARSE: pg_query_free_parse_result(r->u.parse); break;
    case R_PLPGSQL: pg_query_free_plpgsql_parse_result(r->u.plpgsql); break;
    case R_SPLIT: pg_query_free_split_result(r->u.split); break;
    case R_FINGERPRINT: pg_query_free_fingerprint_result(r->u.fingerprint); break;
    case R_NONE: break;
    }
    if (r->json) { cJSON_Delete(r->json); r->json = NULL; }
}

static int result_gc(lua_State *L)
{
    result_free(luaL_checkudata(L, 1, RESULT_MT));
    return 0;
}

/* An empty result box on the stack, created before anything is allocated. */
static Result *result_new(lua_State *L)
{
    Result *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, RESULT_MT);
    return r;
}

/* ---- positions ------------------------------------------------------- */

/* Byte offset of the 1-based character position cursorpos (UTF-8). */
static size_t char_to_byte(const char *s, size_t len, int cursorpos)
{
    size_t i = 0;
    int ch = 1;
    while (i < len && ch < cursorpos) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        ch++;
    }
    return i;
}

/* 1-based line and character column of byte offset off. */
static void line_col(const char *s, size_t off, lua_Integer *line, lua_Integer *col)
{
    lua_Integer l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b == '\n') { l++; c = 1; }
        else if ((b & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

/* nil, message, {message, cursorpos, line, column} */
static int push_error(lua_State *L, const char *text, size_t len, const PgQueryError *e)
{
    lua_pushnil(L);
    lua_pushstring(L, e->message);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, e->cursorpos);
    lua_setfield(L, -2, "cursorpos");
    if (e->cursorpos > 0) {
        lua_Integer line, col;
        line_col(text, char_to_byte(text, len, e->cursorpos), &line, &col);
        lua_pushinteger(L, line);
        lua_setfield(L, -2, "line");
        lua_pushinteger(L, col);
        lua_setfield(L, -2, "column");
    }
    return 3;
}

/* ---- a small lexer: enough to tell comments from tokens -------------- */

static int ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int ident_char(unsigned char c)
{
    return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Length of a dollar-quote tag "$tag$" at s[i] (0 if none). */
static size_t dollar_tag(const char *s, size_t i, size_t end)
{
    size_t j = i + 1;
    if (j < end && s[j] == '$') return 2;
    if (j >= end || !ident_start((unsigned char)s[j])) return 0;
    while (j < end && ident_char((unsigned char)s[j]) && s[j] != '$') j++;
    return (j < end && s[j] == '$') ? j - i + 1 : 0;
}

/* Skip whitespace and comments from i; returns the next offset. */
static size_t skip_space(const char *s, size_t i, size_t end)
{
    for (;;) {
        while (i < end && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v'))
            i++;
        if (i + 1 < end && s[i] == '-' && s[i + 1] == '-') {
            while (i < end && s[i] != '\n') i++;
        } else if (i + 1 < end && s[i] == '/' && s[i + 1] == '*') {
            int depth = 1;
            i += 2;
            while (i < end && depth > 0) {
                if (i + 1 < end && s[i] == '/' && s[i + 1] == '*') { depth++; i += 2; }
                else if (i + 1 < end && s[i] == '*' && s[i + 1] == '/') { depth--; i += 2; }
                else i++;
            }
        } else {
            return i;
        }
    }
}

/* End offset of the token starting at s[i] (i < end, not space/comment). */
static size_t token_end(const char *s, size_t i, size_t end)
{
    unsigned char c = (unsigned char)s[i];
    if (c == '\'' || ((c == 'E' || c == 'e') && i + 1 < end && s[i + 1] == '\'')) {
        int esc = c != '\'';
        i += esc ? 2 : 1;
        while (i < end) {
            if (esc && s[i] == '\\' && i + 1 < end) { i += 2; continue; }
            if (s[i] == '\'') {
                if (i + 1 < end && s[i + 1] == '\'') { i += 2; continue; }
                return i + 1;
            }
            i++;
        }
        return end;
    }
    if (c == '"') {
        i++;
        while (i < end) {
            if (s[i] == '"') {
                if (i + 1 < end && s[i + 1] == '"') { i += 2; continue; }
                return i + 1;
            }
            i++;
        }
        return end;
    }
    if (c == '$') {
        size_t n = dollar_tag(s, i, end);
        if (n == 0) { /* $1 parameter or a lone $ */
            i++;
            while (i < end && s[i] >= '0' && s[i] <= '9') i++;
            return i;
        }
        for (size_t j = i + n; j + n <= end; j++)
            if (s[j] == '$' && memcmp(s + j, s + i, n) == 0) return j + n;
        return end;
    }
    if (ident_start(c)) {
        while (i < end && ident_char((unsigned char)s[i])) i++;
        return i;
    }
    return i + 1; /* digits, operators, punctuation: one byte is enough here */
}

/* The span of the statement stored at [loc, loc+len): leading blanks and
 * comments skipped, trailing blanks and comments dropped. Pushes the record
 * or nil when the span holds no token. */
static void push_span(lua_State *L, const char *s, size_t total, size_t loc, size_t len)
{
    if (loc > total) loc = total;
    size_t end = (len == 0 || loc + len > total) ? total : loc + len;
    size_t start = skip_space(s, loc, end);
    if (start >= end) { lua_pushnil(L); return; }
    size_t last = start, i = start;
    while (i < end) {
        i = token_end(s, i, end);
        last = i;
        i = skip_space(s, i, end);
    }
    if (last > end) last = end;
    lua_Integer line, col, eline, ecol;
    line_col(s, start, &line, &col);
    line_col(s, last - 1, &eline, &ecol);
    if (s[last - 1] == '\n') eline--; /* cannot happen for a token end, but be safe */
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, s + start, last - start);
    lua_setfield(L, -2, "text");
    lua_pushinteger(L, (lua_Integer)start);
    lua_setfield(L, -2, "offset");
    lua_pushinteger(L, (lua_Integer)(last - start));
    lua_setfield(L, -2, "length");
    lua_pushinteger(L, line);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, eline);
    lua_setfield(L, -2, "end_line");
}

/* ---- JSON -> Lua ------------------------------------------------------ */

static void push_json(lua_State *L, const cJSON *j)
{
    luaL_checkstack(L, 4, "parse tree too deep");
    if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c);
            lua_setfield(L, -2, c->string);
        }
    } else if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j);
        lua_Integer i = 1;
        lua_createtable(L, n, 0);
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && d >= -9007199254740992.0 && d <= 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else {
        lua_pushnil(L);
    }
}

/* ---- functions -------------------------------------------------------- */

/* sql.fingerprint(text) -> hex | nil, message, err */
static int l_fingerprint(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    mf_checknargs(L, 1, "sql.fingerprint(text)");
    Result *r = result_new(L);
    r->u.fingerprint = pg_query_fingerprint(text);
    r->kind = R_FINGERPRINT;
    int n;
    if (r->u.fingerprint.error) {
        n = push_error(L, text, len, r->u.fingerprint.error);
    } else {
        lua_pushstring(L, r->u.fingerprint.fingerprint_str);
        n = 1;
    }
    result_free(r);
    return n;
}

/* sql.parse(text) -> tree | nil, message, err */
static int l_parse(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    mf_checknargs(L, 1, "sql.parse(text)");
    Result *r = result_new(L);
    r->u.parse = pg_query_parse(text);
    r->kind = R_PARSE;
    if (r->u.parse.error) {
        int n = push_error(L, text, len, r->u.parse.error);
        result_free(r);
        return n;
    }
    r->json = cJSON_Parse(r->u.parse.parse_tree);
    if (!r->json) {
        result_free(r);
        return luaL_error(L, "cannot decode the parse tree (nested too deeply?)");
    }
    push_json(L, r->json);
    result_free(r);
    return 1;
}

/* sql.parse_plpgsql(text) -> list of PL/pgSQL function trees | nil, message, err
 * text is a CREATE FUNCTION statement in LANGUAGE plpgsql; the body is
 * compiled by PL/pgSQL's own parser (no catalog access: types stay names). */
static int l_parse_plpgsql(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    mf_checknargs(L, 1, "sql.parse_plpgsql(text)");
    Result *r = result_new(L);
    r->u.plpgsql = pg_query_parse_plpgsql(text);
    r->kind = R_PLPGSQL;
    if (r->u.plpgsql.error) {
        int n = push_error(L, text, len, r->u.plpgsql.error);
        result_free(r);
        return n;
    }
    r->json = cJSON_Parse(r->u.plpgsql.plpgsql_funcs ? r->u.plpgsql.plpgsql_funcs : "[]");
    if (!r->json) {
        result_free(r);
        return luaL_error(L, "cannot decode the PL/pgSQL tree (nested too deeply?)");
    }
    push_json(L, r->json);
    result_free(r);
    return 1;
}

/* sql.split(text) -> list of {text, offset, length, line, end_line} */
static int l_split(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    mf_checknargs(L, 1, "sql.split(text)");
    Result *r = result_new(L);
    r->u.split = pg_query_split_with_parser(text);
    r->kind = R_SPLIT;
    if (r->u.split.error) {
        int n = push_error(L, text, len, r->u.split.error);
        result_free(r);
        return n;
    }
    lua_createtable(L, r->u.split.n_stmts, 0);
    lua_Integer k = 1;
    for (int i = 0; i < r->u.split.n_stmts; i++) {
        const PgQuerySplitStmt *st = r->u.split.stmts[i];
        push_span(L, text, len, (size_t)st->stmt_location, (size_t)st->stmt_len);
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else lua_rawseti(L, -2, k++);
    }
    result_free(r);
    return 1;
}

/* sql.span(text, location, length) -> {text, offset, length, line, end_line} | nil
 * The statement at a RawStmt's stmt_location/stmt_len (length 0 = to the end). */
static int l_span(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    lua_Integer loc = luaL_optinteger(L, 2, 0);
    lua_Integer n = luaL_optinteger(L, 3, 0);
    mf_checknargs(L, 3, "sql.span(text, location, length)");
    luaL_argcheck(L, loc >= 0 && (size_t)loc <= len, 2, "location out of range");
    luaL_argcheck(L, n >= 0, 3, "length must not be negative");
    push_span(L, text, len, (size_t)loc, (size_t)n);
    return 1;
}

static const luaL_Reg lib[] = {
    {"fingerprint", l_fingerprint},
    {"parse", l_parse},
    {"parse_plpgsql", l_parse_plpgsql},
    {"span", l_span},
    {"split", l_split},
    {NULL, NULL}
};

static const char exit_anchor = 0;

/* Frees libpg_query's per-thread memory context when the state closes. */
static int exit_gc(lua_State *L)
{
    /* pg_query_exit() crashes when nothing was ever parsed (no top memory
     * context yet); pg_query_init() is idempotent and creates it. */
    pg_query_init();
    pg_query_exit();
    return 0;
}

int luaopen_migfix_sql(lua_State *L)
{
    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &exit_anchor) == LUA_TNIL) {
        lua_newuserdatauv(L, 1, 0);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, exit_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &exit_anchor);
    }
    lua_pop(L, 1);
    luaL_newlib(L, lib);
    return 1;
}
