/* migfix.json — deterministic JSON encoding, decoding through cJSON.
 *
 * Encoding: object keys sorted bytewise (sort_keys, default true), a Lua
 * sequence is an array, an empty table is {} unless marked by json.array,
 * json.null (the shared NULL sentinel, == db.NULL) is null, integers print
 * without ".0". Anything else raises naming the path: "$", ".key" or
 * "[\"key\"]", and "[i]" with the Lua (1-based) index.
 *
 * @module migfix.json */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "migfix.h"

#define ARRAY_MT "migfix.json.array"
#define BUF_MT "migfix.json.buffer"
#define TREE_MT "migfix.json.tree"
#define MAX_DEPTH 200

/* ---- output buffer owned by a userdata (freed by __gc on error) ------- */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_gc(lua_State *L)
{
    Buf *b = luaL_checkudata(L, 1, BUF_MT);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return 0;
}

/* Room for len more bytes (grows by doubling). */
static void buf_reserve(lua_State *L, Buf *b, size_t len)
{
    if (b->cap - b->n >= len) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < len) {
        if (cap > ((size_t)-1) / 2) luaL_error(L, "JSON text too large");
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) luaL_error(L, "not enough memory to encode JSON");
    b->p = p;
    b->cap = cap;
}

static inline void buf_add(lua_State *L, Buf *b, const char *s, size_t len)
{
    if (b->cap - b->n < len) buf_reserve(L, b, len);
    memcpy(b->p + b->n, s, len);
    b->n += len;
}

#define buf_lit(L, b, s) buf_add(L, b, "" s, sizeof(s) - 1)

/* ---- encoder ---------------------------------------------------------- */

typedef struct {
    const char *key; /* NULL: array element */
    size_t keylen;
    lua_Integer index;
} Seg;

typedef struct {
    lua_State *L;
    Buf *out;
    int pretty, sort_keys;
    int depth;
    Seg path[MAX_DEPTH + 1];
    const void *open[MAX_DEPTH + 1]; /* the tables being encoded (a cycle is one of them again) */
} Enc;

static int is_ident(const char *s, size_t n)
{
    if (n == 0 || !(s[0] == '_' || ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z'))) return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
            return 0;
    }
    return 1;
}

/* Push the current path ("$.a[2]") and return it. */
static const char *push_path(Enc *e)
{
    lua_State *L = e->L;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '$');
    for (int i = 1; i <= e->depth; i++) {
        Seg *s = &e->path[i];
        if (!s->key) {
            char num[32];
            snprintf(num, sizeof num, "[%lld]", (long long)s->index);
            luaL_addstring(&b, num);
        } else if (is_ident(s->key, s->keylen)) {
            luaL_addchar(&b, '.');
            luaL_addlstring(&b, s->key, s->keylen);
        } else {
            luaL_addstring(&b, "[\"");
            for (size_t k = 0; k < s->keylen; k++) {
                unsigned char c = (unsigned char)s->key[k];
                if (c == '"' || c == '\\') { luaL_addchar(&b, '\\'); luaL_addchar(&b, (char)c); }
                else if (c < 0x20 || c == 0x7f) {
                    char esc[8];
                    snprintf(esc, sizeof esc, "\\x%02x", c);
                    luaL_addstring(&b, esc);
                } else luaL_addchar(&b, (char)c);
            }
            luaL_addstring(&b, "\"]");
        }
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static void enc_fail(Enc *e, const char *what)
{
    const char *path = push_path(e);
    luaL_error(e->L, "cannot encode %s at %s", what, path);
}

/* 1: the byte is written as an escape (" \ and control characters, DEL) */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
};

static void enc_string(Enc *e, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    Buf *out = e->out;
    if (n > (((size_t)-1) - 2) / 6) luaL_error(e->L, "JSON text too large");
    buf_reserve(e->L, out, n * 6 + 2); /* every byte escaped as \u00XX at worst */
    char *w = out->p + out->n;
    *w++ = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!needs_escape[c]) { run++; continue; }
        memcpy(w, s + i - run, run);
        w += run;
        run = 0;
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            *w++ = 'u'; *w++ = '0'; *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 0x0f];
        }
    }
    memcpy(w, s + n - run, run);
    w += run;
    *w++ = '"';
    out->n = (size_t)(w - out->p);
}

static void enc_number(Enc *e, int idx)
{
    char num[64];
    if (lua_isinteger(e->L, idx)) {
        lua_Integer v = lua_tointeger(e->L, idx);
        /* digits from the end; the magnitude as unsigned (LLONG_MIN too) */
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        char *p = num + sizeof num;
        do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
        if (v < 0) *--p = '-';
        buf_add(e->L, e->out, p, (size_t)(num + sizeof num - p));
        return;
    }
    double d = lua_tonumber(e->L, idx);
    if (!isfinite(d)) enc_fail(e, isnan(d) ? "NaN" : "infinite number");
    if (d == floor(d) && fabs(d) < 9007199254740992.0) {
        snprintf(num, sizeof num, "%.0f", d); /* 1.0 -> 1, -0.0 -> -0 */
    } else {
        snprintf(num, sizeof num, "%.15g", d);
        if (strtod(num, NULL) != d) snprintf(num, sizeof num, "%.17g", d);
    }
    buf_add(e->L, e->out, num, strlen(num));
}

/* "\n" and two spaces a level: one copy from a string long enough for MAX_DEPTH */
static void enc_newline(Enc *e)
{
    static char pad[1 + 2 * (MAX_DEPTH + 1)];
    if (!e->pretty) return;
    if (!pad[0]) { pad[0] = '\n'; memset(pad + 1, ' ', sizeof pad - 1); }
    buf_add(e->L, e->out, pad, 1 + 2 * (size_t)e->depth);
}

static void enc_value(Enc *e, int idx);

typedef struct {
    const char *s;
    size_t n;
} Key;

static inline int key_less(const Key *a, const Key *b)
{
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c < 0 : a->n < b->n;
}

static int cmp_keys(const void *pa, const void *pb)
{
    const Key *a = pa, *b = pb;
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* bytewise order: insertion sort for the few keys of most objects */
static void sort_keys(Key *k, size_t n)
{
    if (n > 16) { qsort(k, n, sizeof *k, cmp_keys); return; }
    for (size_t i = 1; i < n; i++) {
        Key x = k[i];
        size_t j = i;
        while (j > 0 && key_less(&x, &k[j - 1])) { k[j] = k[j - 1]; j--; }
        k[j] = x;
    }
}

static int is_array_marked(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, ARRAY_MT);
    int r = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return r;
}

#define FEW_KEYS 32

static void enc_table(Enc *e, int idx)
{
    lua_State *L = e->L;
    if (e->depth >= MAX_DEPTH) enc_fail(e, "table nested too deeply");
    if (!lua_checkstack(L, 8)) enc_fail(e, "table (out of Lua stack)");
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->open[i] == self) enc_fail(e, "cycle");

    /* classify: count keys, all strings? all integers 1..n? The string
     * keys of a small object are kept as they come (anchored by the table). */
    Key few[FEW_KEYS];
    lua_Integer count = 0, maxint = 0;
    int strings = 0, others = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            if (strings < FEW_KEYS) few[strings].s = lua_tolstring(L, -1, &few[strings].n);
            strings++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k > maxint) maxint = k;
        } else others++;
    }
    int marked = is_array_marked(L, idx);
    int is_array = marked ? 1 : (count > 0 && strings == 0 && others == 0);
    if (is_array && (strings || others || maxint != count)) {
        /* a key that is not 1..n: name the first offender */
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (!(lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0 && lua_tointeger(L, -1) <= count)) {
                const char *k = luaL_tolstring(L, -1, NULL);
                enc_fail(e, lua_pushfstring(L, "array with key %s (not a sequence 1..n)", k));
            }
        }
    }
    if (!is_array && count - strings > 0) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING) {
                const char *k = luaL_tolstring(L, -1, NULL);
                enc_fail(e, lua_pushfstring(L, "table with mixed keys (key %s; object keys must be strings)", k));
            }
        }
    }

    e->open[e->depth] = self;
    e->depth++;
    Seg *seg = &e->path[e->depth];
    if (is_array) {
        buf_lit(L, e->out, "[");
        for (lua_Integer i = 1; i <= count; i++) {
            seg->key = NULL;
            seg->index = i;
            if (i > 1) buf_lit(L, e->out, ",");
            enc_newline(e);
            lua_rawgeti(L, idx, i);
            enc_value(e, lua_gettop(L));
            lua_pop(L, 1);
        }
        e->depth--;
        if (count > 0) enc_newline(e);
        buf_lit(L, e->out, "]");
    } else {
        Key *keys = few;
        int kidx = 0;
        lua_Integer n = count;
        if (count > FEW_KEYS) {
            keys = lua_newuserdatauv(L, (size_t)count * sizeof *keys, 0);
            kidx = lua_gettop(L);
            n = 0;
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                lua_pop(L, 1);
                keys[n].s = lua_tolstring(L, -1, &keys[n].n); /* anchored by the table */
                n++;
            }
        }
        if (e->sort_keys) sort_keys(keys, (size_t)n);
        buf_lit(L, e->out, "{");
        for (lua_Integer i = 0; i < n; i++) {
            seg->key = keys[i].s;
            seg->keylen = keys[i].n;
            if (i > 0) buf_lit(L, e->out, ",");
            enc_newline(e);
            enc_string(e, keys[i].s, keys[i].n);
            if (e->pretty) buf_lit(L, e->out, ": ");
            else buf_lit(L, e->out, ":");
            lua_pushlstring(L, keys[i].s, keys[i].n);
            lua_rawget(L, idx);
            enc_value(e, lua_gettop(L));
            lua_pop(L, 1);
        }
        if (kidx) lua_remove(L, kidx);
        e->depth--;
        if (n > 0) enc_newline(e);
        buf_lit(L, e->out, "}");
    }
}

static void enc_value(Enc *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: buf_lit(L, e->out, "null"); break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) buf_lit(L, e->out, "true");
        else buf_lit(L, e->out, "false");
        break;
    case LUA_TNUMBER: enc_number(e, idx); break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        enc_string(e, s, n);
        break;
    }
    case LUA_TTABLE: enc_table(e, idx); break;
    case LUA_TLIGHTUSERDATA:
        if (mf_isnull(L, idx)) { buf_lit(L, e->out, "null"); break; }
        enc_fail(e, "userdata");
        break;
    default:
        enc_fail(e, luaL_typename(L, idx));
    }
}

/* json.encode(v [, {pretty = bool, sort_keys = bool}]) -> string */
static int l_encode(lua_State *L)
{
    static const char *const fields[] = {"pretty", "sort_keys", NULL};
    static const char call[] = "json.encode(v, {pretty = bool, sort_keys = bool})";
    mf_checknargs(L, 2, call);
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        mf_checkfields(L, 2, call, fields);
    }
    Enc *e = lua_newuserdatauv(L, sizeof *e, 0); /* 3 */
    e->L = L;
    e->pretty = mf_optfield_boolean(L, 2, "pretty", 0);
    e->sort_keys = mf_optfield_boolean(L, 2, "sort_keys", 1);
    e->depth = 0;
    e->out = lua_newuserdatauv(L, sizeof(Buf), 0); /* 4 */
    e->out->p = NULL;
    e->out->n = e->out->cap = 0;
    luaL_setmetatable(L, BUF_MT);
    enc_value(e, 1);
    lua_pushlstring(L, e->out->p ? e->out->p : "", e->out->n);
    lua_pushcfunction(L, buf_gc); /* free now rather than at the next GC */
    lua_pushvalue(L, 4);
    lua_call(L, 1, 0);
    return 1;
}

/* ---- decoder (cJSON) -------------------------------------------------- */

typedef struct {
    cJSON *root;
} Tree;

static int tree_gc(lua_State *L)
{
    Tree *t = luaL_checkudata(L, 1, TREE_MT);
    if (t->root) { cJSON *r = t->root; t->root = NULL; cJSON_Delete(r); }
    return 0;
}

/* keep_nulls = 0 (json.decode(text, {nulls = false})): null object members
 * are left out, null array elements leave their slot empty, and arrays are
 * plain tables: what a Lua walk turning json.null into nil would build, made
 * without the copy (the catalog snapshot: ~20% of a fleet target's Lua time). */
static void push_item(lua_State *L, const cJSON *it, int keep_nulls)
{
    luaL_checkstack(L, 4, "JSON nested too deeply");
    if (cJSON_IsNull(it)) { if (keep_nulls) mf_pushnull(L); else lua_pushnil(L); }
    else if (cJSON_IsFalse(it)) lua_pushboolean(L, 0);
    else if (cJSON_IsTrue(it)) lua_pushboolean(L, 1);
    else if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) lua_pushinteger(L, (lua_Integer)d);
        else lua_pushnumber(L, d);
    } else if (cJSON_IsString(it)) lua_pushstring(L, it->valuestring);
    else if (cJSON_IsArray(it)) {
        lua_newtable(L);
        if (keep_nulls) luaL_setmetatable(L, ARRAY_MT); /* [] decodes and re-encodes as [] */
        lua_Integer i = 0;
        for (const cJSON *c = it->child; c; c = c->next) {
            ++i;
            if (!keep_nulls && cJSON_IsNull(c)) continue;
            push_item(L, c, keep_nulls);
            lua_rawseti(L, -2, i);
        }
    } else if (cJSON_IsObject(it)) {
        lua_newtable(L);
        for (const cJSON *c = it->child; c; c = c->next) {
            if (!keep_nulls && cJSON_IsNull(c)) continue;
            lua_pushstring(L, c->string ? c->string : "");
            push_item(L, c, keep_nulls);
            lua_rawset(L, -3);
        }
    } else {
        luaL_error(L, "unexpected cJSON item type %d", it->type);
    }
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A number cJSON read as infinite (1e309): JSON has no such value and
 * encode cannot write it back, so decode refuses it (found by make fuzz). */
static int has_infinite(const cJSON *it)
{
    for (; it; it = it->next) {
        if (cJSON_IsNumber(it) && !isfinite(it->valuedouble)) return 1;
        if (it->child && has_infinite(it->child)) return 1;
    }
    return 0;
}

/* json.decode(text[, {nulls = false}]) -> value | nil, "invalid JSON at byte N: ..." */
static int l_decode(lua_State *L)
{
    mf_checknargs(L, 2, "json.decode(text[, opts])");
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int keep_nulls = 1;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "nulls");
        if (!lua_isnil(L, -1)) {
            if (!lua_isboolean(L, -1))
                return luaL_error(L, "bad option 'nulls' to 'json.decode' (expected a boolean, got %s)", luaL_typename(L, -1));
            keep_nulls = lua_toboolean(L, -1);
        }
        lua_pop(L, 1);
        lua_settop(L, 1);
    }
    Tree *t = mf_newbox(L, sizeof *t, TREE_MT);
    const char *end = NULL;
    t->root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    size_t pos;
    if (t->root) {
        pos = (size_t)(end - s);
        while (pos < len && is_ws(s[pos])) pos++;
        if (pos == len) {
            if (has_infinite(t->root))
                return mf_pushfail(L, "json", 0, "invalid JSON: a number out of range (magnitude above 1.8e308)");
            push_item(L, t->root, keep_nulls);
            return 1;
        }
    } else {
        const char *ep = cJSON_GetErrorPtr();
        pos = (ep && ep >= s && ep <= s + len) ? (size_t)(ep - s) : 0;
        if (pos > len) pos = len;
    }
    if (pos >= len) return mf_pushfail(L, "json", 0, "invalid JSON at byte %d: unexpected end of text", (int)len + 1);
    char near[24];
    size_t n = len - pos < 16 ? len - pos : 16;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[pos + i];
        near[k++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    near[k] = '\0';
    return mf_pushfail(L, "json", 0, "invalid JSON at byte %d: %s near '%s'", (int)pos + 1,
                       t->root ? "trailing characters" : "syntax error", near);
}

/* ---- json.array, json.null -------------------------------------------- */

/* json.array([t]) -> t, marked so that it encodes as an array even empty */
static int l_array(lua_State *L)
{
    mf_checknargs(L, 1, "json.array([t])");
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, ARRAY_MT);
        if (!lua_rawequal(L, -1, -2))
            return luaL_error(L, "table already has a metatable (expected json.array([t]))");
        lua_pop(L, 2);
    }
    luaL_setmetatable(L, ARRAY_MT);
    lua_settop(L, 1);
    return 1;
}

static const luaL_Reg lib[] = {
    {"array", l_array},
    {"decode", l_decode},
    {"encode", l_encode},
    {NULL, NULL}
};

static const luaL_Reg buf_meta[] = {{"__gc", buf_gc}, {"__close", buf_gc}, {NULL, NULL}};
static const luaL_Reg tree_meta[] = {{"__gc", tree_gc}, {"__close", tree_gc}, {NULL, NULL}};

int luaopen_migfix_json(lua_State *L)
{
    if (luaL_newmetatable(L, ARRAY_MT)) {
        lua_pushliteral(L, "json.array");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    mf_createmeta(L, BUF_MT, buf_meta, NULL);
    mf_createmeta(L, TREE_MT, tree_meta, NULL);
    luaL_newlib(L, lib);
    mf_pushnull(L);
    lua_setfield(L, -2, "null");
    return 1;
}
