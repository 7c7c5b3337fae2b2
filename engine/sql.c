/* migfix.sql — PostgreSQL's own parser (libpg_query 17) for Lua.
 *
 * @module migfix.sql
 *
 *   sql.parse(text)        -> tree | nil, message, err
 *   sql.split(text)        -> { {text=, offset=, length=, line=, end_line=}, ... } | nil, message, err
 *   sql.span(text, location, length) -> {text=, offset=, length=, line=, end_line=} | nil
 *   sql.fingerprint(text)  -> hex | nil, message, err
 *   sql.parse_plpgsql(text) -> { {PLpgSQL_function = {...}}, ... } | nil, message, err
 *   sql.statements(text)   -> iterator: raw, span per statement | false, message, err
 *
 * err = { message =, cursorpos =, line =, column = } (line and column 1-based,
 * column counted in characters; both nil when the server gave no position).
 *
 * Every libpg_query/cJSON result lives in a "migfix.sql.result" userdata
 * whose __gc frees it, so an error raised while converting leaks nothing;
 * on the normal path the result is freed as soon as it is converted. */
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <ctype.h>
#include <string.h>

#include <cJSON.h>
#include <pg_query.h>

#include "migfix.h"

/* The parse-tree JSON shapes the Lua library reads are PostgreSQL 17's
 * (MergeWhenClause.matchKind, AT_SetExpression, ...): an older parser would
 * reject newer syntax and give other shapes. */
#if !defined(PG_VERSION_NUM) || PG_VERSION_NUM < 170000
#error "migfix needs libpg_query 17 (libpg-query-dev 17-6.x from Debian trixie; scripts/install-deps, or make PGQ_ROOT=DIR)"
#endif

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
    return mf_newbox(L, sizeof(Result), RESULT_MT);
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

/* nil, message, {kind = "parse", message, cursorpos, line, column} */
static int push_error(lua_State *L, const char *text, size_t len, const PgQueryError *e)
{
    lua_pushnil(L);
    lua_pushstring(L, e->message);
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "parse");
    lua_setfield(L, -2, "kind");
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
/* Where counting lines goes on from: line `line` (1-based) holds byte `pos`. */
typedef struct {
    size_t pos;
    lua_Integer line;
} LineCursor;

/* 1-based line of byte off (>= lc->pos), moving the cursor there. */
static lua_Integer line_at(const char *s, LineCursor *lc, size_t off)
{
    const char *p = s + lc->pos, *end = s + off;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lc->line++;
        p++;
    }
    lc->pos = off;
    return lc->line;
}

static void push_span_at(lua_State *L, const char *s, size_t total, size_t loc, size_t len, LineCursor *lc);

static void push_span(lua_State *L, const char *s, size_t total, size_t loc, size_t len)
{
    LineCursor lc = { 0, 1 };
    push_span_at(L, s, total, loc, len, &lc);
}

/* As push_span; lines are counted from lc (statements come in order, so a
 * whole file's spans cost one pass over it). */
static void push_span_at(lua_State *L, const char *s, size_t total, size_t loc, size_t len, LineCursor *lc)
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
    /* a token that runs to the end (an unterminated quote or comment, found
     * by make fuzz) may take trailing blanks with it: they are not the span's */
    while (last > start + 1 && isspace((unsigned char)s[last - 1])) last--;
    if (start < lc->pos) { lc->pos = 0; lc->line = 1; }
    lua_Integer line = line_at(s, lc, start);
    lua_Integer eline = line_at(s, lc, last - 1);
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

/* shift: added to every "location" (a byte offset into the parsed text;
 * -1 = unknown) when the text was a part of a longer one. */
static void push_json_at(lua_State *L, const cJSON *j, lua_Integer shift)
{
    luaL_checkstack(L, 4, "parse tree too deep");
    if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            if (shift && cJSON_IsNumber(c) && c->valuedouble >= 0 && strcmp(c->string, "location") == 0)
                lua_pushinteger(L, (lua_Integer)c->valuedouble + shift);
            else
                push_json_at(L, c, shift);
            lua_setfield(L, -2, c->string);
        }
    } else if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j);
        lua_Integer i = 1;
        lua_createtable(L, n, 0);
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json_at(L, c, shift);
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

static void push_json(lua_State *L, const cJSON *j) { push_json_at(L, j, 0); }

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

/* The result of a parse: nil, message, err for a parse error, else the JSON
 * tree as Lua tables (r released either way). */
static int push_tree(lua_State *L, Result *r, const char *text, size_t len, PgQueryError *err,
                     const char *json, const char *what)
{
    if (err) {
        int n = push_error(L, text, len, err);
        result_free(r);
        return n;
    }
    r->json = cJSON_Parse(json);
    if (!r->json) {
        result_free(r);
        return luaL_error(L, "cannot decode the %s (nested too deeply?)", what);
    }
    push_json(L, r->json);
    result_free(r);
    return 1;
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
    return push_tree(L, r, text, len, r->u.parse.error, r->u.parse.parse_tree, "parse tree");
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
    return push_tree(L, r, text, len, r->u.plpgsql.error,
                     r->u.plpgsql.plpgsql_funcs ? r->u.plpgsql.plpgsql_funcs : "[]", "PL/pgSQL tree");
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
    LineCursor lc = { 0, 1 };
    for (int i = 0; i < r->u.split.n_stmts; i++) {
        const PgQuerySplitStmt *st = r->u.split.stmts[i];
        push_span_at(L, text, len, (size_t)st->stmt_location, (size_t)st->stmt_len, &lc);
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


/* ---- statements, a part of the text at a time ------------------------ */

/* sql.statements(text) parses the text in parts of about STREAM_PART bytes,
 * so that a file of 100,000 INSERTs never has more than one part's parse tree
 * in memory. A part ends just after a ';' that is followed by blanks and a
 * newline, and only counts when the parser agrees: the part parses, and its
 * last statement is the one that ';' ends (a ';' inside a string, a comment,
 * a dollar-quoted body or a BEGIN ATOMIC block fails one of the two). Otherwise
 * the part is doubled and tried again; at the end of the text, a parse error
 * is the file's own. The trees are PostgreSQL's own (locations shifted to the
 * whole text), exactly as sql.parse(text) gives them. */
#define STREAM_MT "migfix.sql.stream"
#define STREAM_PART (256 * 1024)

typedef struct {
    size_t len;         /* bytes of the text the parser sees (up to a NUL) */
    size_t total;       /* bytes of the text */
    size_t next;        /* where the next part starts */
    size_t part;        /* where the current part starts */
    cJSON *json;        /* the current part's tree */
    cJSON *cur;         /* its next RawStmt */
    size_t part_bytes;  /* STREAM_PART, or smaller for tests */
    LineCursor lc;
    int done;
} Stream;

static void stream_free(Stream *st)
{
    if (st->json) { cJSON_Delete(st->json); st->json = NULL; }
    st->cur = NULL;
}

static int stream_gc(lua_State *L)
{
    stream_free(luaL_checkudata(L, 1, STREAM_MT));
    return 0;
}

/* just after the first ';' at or past from that only blanks separate from a
 * newline (or the end); len when there is none */
static size_t part_end(const char *s, size_t from, size_t len)
{
    while (from < len) {
        const char *p = memchr(s + from, ';', len - from);
        if (!p) return len;
        size_t j = (size_t)(p - s) + 1;
        while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\f' || s[j] == '\v')) j++;
        if (j >= len || s[j] == '\n') return (size_t)(p - s) + 1;
        from = (size_t)(p - s) + 1;
    }
    return len;
}

static lua_Integer json_int(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (lua_Integer)v->valuedouble : 0;
}

/* Parse the next part: 1 (st->cur set, maybe NULL for a part without
 * statements), 0 at the end, or -1 with the error pushed (nil... as
 * push_error, the position in the whole text). */
static int stream_part(lua_State *L, Stream *st, const char *s)
{
    size_t a = st->next;
    if (a >= st->len) return 0;
    size_t want = st->part_bytes;
    for (;;) {
        size_t b = (st->len - a <= want) ? st->len : part_end(s, a + want, st->len);
        Result *r = result_new(L);
        char *copy = malloc(b - a + 1);
        if (!copy) { lua_pop(L, 1); return luaL_error(L, "out of memory"); }
        memcpy(copy, s + a, b - a);
        copy[b - a] = '\0';
        r->u.parse = pg_query_parse(copy);
        r->kind = R_PARSE;
        free(copy);
        if (r->u.parse.error) {
            if (b == st->len) {
                PgQueryError e = *r->u.parse.error;
                if (e.cursorpos > 0) {
                    int before = 0; /* characters of the text before the part */
                    for (size_t i = 0; i < a; i++) before += ((unsigned char)s[i] & 0xC0) != 0x80;
                    e.cursorpos += before;
                }
                /* r (on the stack) owns e's strings until it is freed */
                int top = lua_gettop(L);
                push_error(L, s, st->total, &e);
                result_free(r);
                lua_remove(L, top);
                return -1;
            }
        } else {
            r->json = cJSON_Parse(r->u.parse.parse_tree);
            if (!r->json) {
                result_free(r);
                return luaL_error(L, "cannot decode the parse tree (nested too deeply?)");
            }
            const cJSON *stmts = cJSON_GetObjectItemCaseSensitive(r->json, "stmts");
            int ok = b == st->len;
            if (!ok) {
                const cJSON *last = NULL;
                for (const cJSON *c = stmts ? stmts->child : NULL; c; c = c->next) last = c;
                lua_Integer loc = last ? json_int(last, "stmt_location") : 0, n = last ? json_int(last, "stmt_len") : 0;
                ok = !last || (n > 0 && (size_t)(loc + n) == b - a - 1);
            }
            if (ok) {
                stream_free(st);
                st->json = r->json;
                r->json = NULL;
                result_free(r);
                lua_pop(L, 1);
                stmts = cJSON_GetObjectItemCaseSensitive(st->json, "stmts");
                st->cur = stmts ? stmts->child : NULL;
                st->part = a;
                st->next = b;
                return 1;
            }
        }
        result_free(r);
        lua_pop(L, 1);
        want *= 2;
    }
}

/* the iterator: raw, span | nil (the end) | false, message, err */
static int stream_step(lua_State *L)
{
    Stream *st = luaL_checkudata(L, lua_upvalueindex(1), STREAM_MT);
    lua_getiuservalue(L, lua_upvalueindex(1), 1);
    size_t total;
    const char *s = lua_tolstring(L, -1, &total);
    lua_pop(L, 1); /* the text stays anchored in the userdata */
    if (st->done) { lua_pushnil(L); return 1; }
    while (!st->cur) {
        int r = stream_part(L, st, s);
        if (r == 0) { st->done = 1; stream_free(st); lua_pushnil(L); return 1; }
        if (r < 0) {
            st->done = 1;
            stream_free(st);
            lua_pushboolean(L, 0);
            lua_replace(L, -4); /* nil, message, err -> false, message, err */
            return 3;
        }
    }
    const cJSON *raw = st->cur;
    st->cur = st->cur->next;
    lua_Integer loc = (lua_Integer)st->part + json_int(raw, "stmt_location");
    lua_Integer n = json_int(raw, "stmt_len");
    lua_createtable(L, 0, 3);
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(raw, "stmt");
    if (node) {
        push_json_at(L, node, (lua_Integer)st->part);
        lua_setfield(L, -2, "stmt");
    }
    lua_pushinteger(L, loc);
    lua_setfield(L, -2, "stmt_location");
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "stmt_len");
    push_span_at(L, s, total, (size_t)loc, (size_t)n, &st->lc);
    if (!st->cur) stream_free(st); /* the part is done: free its tree now */
    return 2;
}

/* sql.statements(text[, part_bytes]) -> iterator: raw, span per statement,
 * in order; part_bytes (default 256 KiB) is for tests */
static int l_statements(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    lua_Integer part = luaL_optinteger(L, 2, STREAM_PART);
    mf_checknargs(L, 2, "sql.statements(text[, part_bytes])");
    luaL_argcheck(L, part >= 1, 2, "part_bytes must be at least 1");
    Stream *st = lua_newuserdatauv(L, sizeof *st, 1);
    memset(st, 0, sizeof *st);
    st->total = len;
    st->len = strlen(text);
    st->lc.line = 1;
    st->part_bytes = (size_t)part;
    luaL_setmetatable(L, STREAM_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_pushcclosure(L, stream_step, 1);
    return 1;
}

static const luaL_Reg lib[] = {
    {"fingerprint", l_fingerprint},
    {"parse", l_parse},
    {"parse_plpgsql", l_parse_plpgsql},
    {"span", l_span},
    {"split", l_split},
    {"statements", l_statements},
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

static const luaL_Reg result_meta[] = {{"__gc", result_gc}, {"__close", result_gc}, {NULL, NULL}};
static const luaL_Reg stream_meta[] = {{"__gc", stream_gc}, {"__close", stream_gc}, {NULL, NULL}};

int luaopen_migfix_sql(lua_State *L)
{
    mf_createmeta(L, RESULT_MT, result_meta, NULL);
    mf_createmeta(L, STREAM_MT, stream_meta, NULL);
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
