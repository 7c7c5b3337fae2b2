/* migfix.migrations — the local migrations folder, as Prisma reads it.
 *
 * Listing, order, checksum and the lock file follow the current Prisma CLI
 * (packages/migrate/src/utils/listMigrations.ts) and the schema engine
 * (schema-connector checksum.rs, migrations_directory.rs).
 *
 * @module migfix.migrations */
#define _DEFAULT_SOURCE /* DT_DIR, DT_UNKNOWN */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <unicode/ucol.h>
#include <unicode/uiter.h>

#include "checksum.h"
#include "migfix.h"
#include "order.h"

/* ---- checksum (pure C) ------------------------------------------------ */

int mf_checksum(const char *script, size_t len, char out[MF_CHECKSUM_HEX_LEN + 1])
{
    return mf_sha256_hex(script, len, out);
}

int mf_checksum_legacy(const char *script, size_t len, char out[MF_CHECKSUM_HEX_LEN + 1])
{
    unsigned char md[MF_SHA256_LEN];
    if (mf_sha256(script, len, md) != 0) return -1;
    char *p = out;
    for (int i = 0; i < MF_SHA256_LEN; i++)
        p += snprintf(p, 3, "%x", md[i]);
    *p = '\0';
    return 0;
}

static int matches_one(const char *s, size_t len, const char *stored, size_t stored_len, int legacy)
{
    char hex[MF_CHECKSUM_HEX_LEN + 1];
    if ((legacy ? mf_checksum_legacy : mf_checksum)(s, len, hex) != 0) return -1;
    return strlen(hex) == stored_len && memcmp(hex, stored, stored_len) == 0;
}

int mf_checksum_matches(const char *script, size_t len, const char *stored, size_t stored_len)
{
    int legacy = stored_len != 0 && stored_len != MF_CHECKSUM_HEX_LEN;
    int r = matches_one(script, len, stored, stored_len, legacy);
    if (r != 0) return r;

    size_t lf = 0;
    for (size_t i = 0; i < len; i++) lf += script[i] == '\n';
    if (lf == 0) return 0; /* both rewrites give the same text */
    if (len > ((size_t)-1 - lf)) return -1;
    char *buf = malloc(len + lf);
    if (!buf) return -1;

    /* script.replace("\r\n", "\n") */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (script[i] == '\r' && i + 1 < len && script[i + 1] == '\n') continue;
        buf[n++] = script[i];
    }
    r = n == len ? 0 : matches_one(buf, n, stored, stored_len, legacy);
    if (r == 0) {
        /* script.replace('\n', "\r\n"): every LF, even one after a CR */
        n = 0;
        for (size_t i = 0; i < len; i++) {
            if (script[i] == '\n') buf[n++] = '\r';
            buf[n++] = script[i];
        }
        r = matches_one(buf, n, stored, stored_len, legacy);
    }
    free(buf);
    return r;
}

/* ---- file text (pure C) ----------------------------------------------- */

/* The first byte of s that Prisma cannot take as it is: a NUL (PostgreSQL
 * cannot receive it in a query; libpq would send the text before it) or
 * the start of an ill-formed UTF-8 sequence (Unicode 3.9 D92: no overlongs,
 * no surrogates, nothing above U+10FFFF). nul_ok: only UTF-8 counts. 0 when
 * the text is clean; else 1 with *off the byte offset and *kind 'n' (NUL)
 * or 'u' (UTF-8). */
int mf_text_check(const char *s, size_t len, int nul_ok, size_t *off, char *kind)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c == 0 && !nul_ok) { *off = i; *kind = 'n'; return 1; }
        if (c < 0x80) { i++; continue; }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else { *off = i; *kind = 'u'; return 1; }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= len) { *off = i; *kind = 'u'; return 1; }
            unsigned b = p[i + k];
            if (b < lo || b > hi) { *off = i; *kind = 'u'; return 1; }
            lo = 0x80, hi = 0xBF;
        }
        i += need + 1;
    }
    return 0;
}

/* The text as Node's fs.readFile(path, 'utf-8') gives it to Prisma (the
 * WHATWG UTF-8 decoder): every maximal ill-formed subpart becomes U+FFFD
 * (EF BF BD), valid sequences are kept byte for byte. out must hold 3 * len
 * bytes; returns the length written. */
size_t mf_text_as_prisma_reads(const char *s, size_t len, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) { out[n++] = (char)c; i++; continue; }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else { out[n++] = (char)0xEF; out[n++] = (char)0xBF; out[n++] = (char)0xBD; i++; continue; }
        size_t k = 1;
        for (; k <= need; k++) {
            if (i + k >= len) break;
            unsigned b = p[i + k];
            if (b < lo || b > hi) break;
            lo = 0x80, hi = 0xBF;
        }
        if (k > need) {
            memcpy(out + n, s + i, need + 1);
            n += need + 1;
            i += need + 1;
        } else {
            /* the lead byte and the continuation bytes that fitted: one U+FFFD;
             * the byte that did not fit is read again as a new start */
            out[n++] = (char)0xEF; out[n++] = (char)0xBF; out[n++] = (char)0xBD;
            i += k;
        }
    }
    return n;
}

/* 1-based line and 1-based byte column of byte offset off. */
void mf_text_position(const char *s, size_t off, size_t *line, size_t *col)
{
    size_t l = 1, start = 0;
    for (size_t i = 0; i < off; i++)
        if (s[i] == '\n') { l++; start = i + 1; }
    *line = l;
    *col = off - start + 1;
}

/* ---- collation (pure C) ----------------------------------------------- */

static UCollator *collator;
static int collator_failed;
static char collator_msg[128];

void mf_order_cleanup(void)
{
    if (collator) ucol_close(collator);
    collator = NULL;
}

static UCollator *get_collator(void)
{
    if (collator || collator_failed) return collator;
    UErrorCode st = U_ZERO_ERROR;
    collator = ucol_open("", &st); /* root; "en" is the same rules */
    if (U_FAILURE(st)) {
        if (collator) ucol_close(collator);
        collator = NULL;
        collator_failed = 1;
        snprintf(collator_msg, sizeof collator_msg, "could not open the ICU root collator: %s",
                 u_errorName(st));
        return NULL;
    }
    /* what Intl.Collator() uses: tertiary strength, no normalization,
     * punctuation not ignorable (all ICU root defaults, set explicitly) */
    ucol_setStrength(collator, UCOL_TERTIARY);
    ucol_setAttribute(collator, UCOL_ALTERNATE_HANDLING, UCOL_NON_IGNORABLE, &st);
    ucol_setAttribute(collator, UCOL_NUMERIC_COLLATION, UCOL_OFF, &st);
    atexit(mf_order_cleanup);
    return collator;
}

const char *mf_order_error(void)
{
    get_collator();
    return collator_failed ? collator_msg : NULL;
}

static int bytewise(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c == 0) c = (alen > blen) - (alen < blen);
    return (c > 0) - (c < 0);
}

int mf_order_compare(const char *a, size_t alen, const char *b, size_t blen)
{
    UCollator *c = get_collator();
    if (!c) return bytewise(a, alen, b, blen);
    UErrorCode st = U_ZERO_ERROR;
    UCollationResult r = ucol_strcollUTF8(c, a, (int32_t)alen, b, (int32_t)blen, &st);
    if (U_FAILURE(st)) return bytewise(a, alen, b, blen);
    return r == UCOL_LESS ? -1 : r == UCOL_GREATER ? 1 : 0;
}

int mf_order_compare_total(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = mf_order_compare(a, alen, b, blen);
    return r ? r : bytewise(a, alen, b, blen);
}

/* ---- Lua bindings ----------------------------------------------------- */

#define BOX_NAME "migfix.migrations.box"

/* An open DIR or file descriptor owned by a userdata, closed by
 * __gc/__close, so an error (out of memory) between open and close leaks
 * nothing. */
typedef struct {
    DIR *dir;
    int fd; /* -1: none */
} Box;

static int box_gc(lua_State *L)
{
    Box *b = luaL_checkudata(L, 1, BOX_NAME);
    if (b->dir) { DIR *d = b->dir; b->dir = NULL; closedir(d); }
    if (b->fd >= 0) { int fd = b->fd; b->fd = -1; close(fd); }
    return 0;
}

static Box *newbox(lua_State *L)
{
    Box *b = mf_newbox(L, sizeof *b, BOX_NAME);
    b->fd = -1;
    return b;
}

/* nil, message, {missing = bool, errno = n} */
static int pushfail_errno(lua_State *L, int err, const char *fmt, const char *path)
{
    mf_pushfail(L, "os", err, fmt, path, strerror(err));
    lua_pushboolean(L, err == ENOENT || err == ENOTDIR);
    lua_setfield(L, -2, "missing");
    return 3;
}

static void checkcollator(lua_State *L)
{
    const char *e = mf_order_error();
    if (e) luaL_error(L, "%s", e);
}

/* migrations.checksum(text) -> 64 lowercase hex digits */
static int l_checksum(lua_State *L)
{
    mf_checknargs(L, 1, "migrations.checksum(text)");
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char hex[MF_CHECKSUM_HEX_LEN + 1];
    if (mf_checksum(s, len, hex) != 0)
        return luaL_error(L, "could not compute SHA-256 with OpenSSL");
    lua_pushstring(L, hex);
    return 1;
}

/* migrations.compare(a, b) -> -1 | 0 | 1 (Prisma's localeCompare) */
static int l_compare(lua_State *L)
{
    mf_checknargs(L, 2, "migrations.compare(a, b)");
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    checkcollator(L);
    lua_pushinteger(L, mf_order_compare(a, alen, b, blen));
    return 1;
}

typedef struct {
    const char *s;
    size_t len;
} Name;

static int cmp_names(const void *pa, const void *pb)
{
    const Name *a = pa, *b = pb;
    return mf_order_compare_total(a->s, a->len, b->s, b->len);
}

/* Dirent.isDirectory(): d_type, or lstat when the file system gives none;
 * a symlink to a directory is not a directory. */
static int is_real_dir(DIR *d, const struct dirent *e)
{
#ifdef DT_DIR
    if (e->d_type == DT_DIR) return 1;
    if (e->d_type != DT_UNKNOWN) return 0;
#endif
    struct stat st;
    return fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* NAME/migration.sql is a readable regular file (symlinks followed);
 * looked up relative to the folder's descriptor (no walk of the whole path
 * for each of thousands of migrations). */
static int has_sql(int dfd, const char *name)
{
    char rel[NAME_MAX + sizeof "/migration.sql"];
    if (snprintf(rel, sizeof rel, "%s/migration.sql", name) >= (int)sizeof rel) return 0;
    struct stat st;
    return fstatat(dfd, rel, &st, 0) == 0 && S_ISREG(st.st_mode) && faccessat(dfd, rel, R_OK, 0) == 0;
}

/* migrations.list(dir) -> {{name, path, sql_path, has_sql}, ...}
 *   | nil, message, {missing = bool, errno = n} */
static int l_list(lua_State *L)
{
    mf_checknargs(L, 1, "migrations.list(dir)");
    size_t dlen;
    const char *dir = luaL_checklstring(L, 1, &dlen);
    checkcollator(L);
    Box *box = newbox(L);                         /* 2 */
    box->dir = opendir(dir);
    if (!box->dir) {
        int err = errno;
        if (err == ENOENT)
            return pushfail_errno(L, err, "migrations directory \"%s\" does not exist", dir);
        return pushfail_errno(L, err, "could not open migrations directory \"%s\": %s", dir);
    }
    lua_newtable(L);                              /* 3: names, anchored */
    lua_Integer n = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(box->dir);
        if (!e) {
            if (errno) {
                int err = errno;
                return pushfail_errno(L, err, "could not read migrations directory \"%s\": %s", dir);
            }
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (!is_real_dir(box->dir, e)) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, 3, ++n);
    }
    Name *names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0); /* 4 */
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 3, i + 1);
        names[i].s = lua_tolstring(L, -1, &names[i].len); /* anchored in 3 */
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_names);

    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    lua_createtable(L, (int)n, 0);                /* 5: result */
    for (lua_Integer i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushlstring(L, names[i].s, names[i].len);
        lua_setfield(L, -2, "name");
        luaL_Buffer pb;
        luaL_buffinit(L, &pb);
        luaL_addlstring(&pb, dir, dlen);
        luaL_addstring(&pb, sep);
        luaL_addlstring(&pb, names[i].s, names[i].len);
        luaL_pushresult(&pb);
        size_t plen;
        const char *path = lua_tolstring(L, -1, &plen);
        luaL_buffinit(L, &pb);
        luaL_addlstring(&pb, path, plen);
        luaL_addstring(&pb, "/migration.sql");
        luaL_pushresult(&pb);
        lua_insert(L, -2);
        lua_setfield(L, -3, "path");
        lua_pushboolean(L, has_sql(dirfd(box->dir), names[i].s));
        lua_setfield(L, -3, "has_sql");
        lua_setfield(L, -2, "sql_path");
        lua_rawseti(L, 5, i + 1);
    }
    lua_pushcfunction(L, box_gc);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 0);                            /* close the directory now */
    return 1;
}

/* Read a whole file into a Lua string; 0, or an errno value. One open,
 * fstat and read of the file's size (no stdio buffer: at 10,000 files its
 * malloc/free was a tenth of lint --all); a file that grows while read is
 * still read to its end. */
static int readfile(lua_State *L, const char *path)
{
    Box *box = newbox(L);
    box->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (box->fd < 0) return errno;
    struct stat st;
    if (fstat(box->fd, &st) != 0) return errno;
    if (S_ISDIR(st.st_mode)) return EISDIR;
    size_t want = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : LUAL_BUFFERSIZE;
    luaL_Buffer b;
    luaL_buffinitsize(L, &b, want);
    int err = 0;
    for (;;) {
        char *p = luaL_prepbuffsize(&b, want);
        ssize_t got = read(box->fd, p, want);
        if (got < 0) {
            if (errno == EINTR) continue;
            err = errno ? errno : EIO;
            break;
        }
        if (got == 0) break;
        luaL_addsize(&b, (size_t)got);
        if ((size_t)got < want) {
            /* the end, as a rule: make sure with a read into a small buffer
             * (growing the Lua buffer for it would cost a large malloc) */
            char probe[256];
            ssize_t more;
            do more = read(box->fd, probe, sizeof probe); while (more < 0 && errno == EINTR);
            if (more < 0) { err = errno ? errno : EIO; break; }
            if (more == 0) break;
            luaL_addlstring(&b, probe, (size_t)more);
        }
        if (want < LUAL_BUFFERSIZE) want = LUAL_BUFFERSIZE;
    }
    luaL_pushresult(&b);
    if (err) { lua_pop(L, 1); return err; }
    int fd = box->fd;
    box->fd = -1;
    close(fd);
    lua_remove(L, -2); /* the box */
    return 0;
}

/* migrations.lock_provider(dir) -> provider | nil (no lock file)
 *   | nil, message, {missing = false, errno = n} */
static int l_lock_provider(lua_State *L)
{
    mf_checknargs(L, 1, "migrations.lock_provider(dir)");
    size_t dlen;
    const char *dir = luaL_checklstring(L, 1, &dlen);
    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    const char *path = lua_pushfstring(L, "%s%smigration_lock.toml", dir, sep);
    int err = readfile(L, path);
    if (err == ENOENT) { lua_pushnil(L); return 1; }
    if (err) return pushfail_errno(L, err, "could not read lock file \"%s\": %s", path);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len), *end = s + len;
    /* content.lines().find(|l| l.starts_with("provider"))
     *   .map(|l| l.trim_start_matches("provider = ").trim_matches('"'))
     *   .unwrap_or("<PROVIDER NOT FOUND>") */
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        if (nl && le > s && le[-1] == '\r') le--;
        if ((size_t)(le - s) >= 8 && memcmp(s, "provider", 8) == 0) {
            while ((size_t)(le - s) >= 11 && memcmp(s, "provider = ", 11) == 0) s += 11;
            while (s < le && *s == '"') s++;
            while (le > s && le[-1] == '"') le--;
            lua_pushlstring(L, s, (size_t)(le - s));
            return 1;
        }
        if (!nl) break;
        s = nl + 1;
    }
    lua_pushliteral(L, "<PROVIDER NOT FOUND>");
    return 1;
}

/* migrations.matches(text, stored) -> boolean */
static int l_matches(lua_State *L)
{
    mf_checknargs(L, 2, "migrations.matches(text, stored)");
    size_t len, slen;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *stored = luaL_checklstring(L, 2, &slen);
    int r = mf_checksum_matches(s, len, stored, slen);
    if (r < 0) return luaL_error(L, "could not compare checksums (out of memory or OpenSSL failure)");
    lua_pushboolean(L, r);
    return 1;
}

/* Push the problem of a text as a table {kind, offset, line, byte, value},
 * or nothing (returns 0) when it is clean. */
static int push_text_problem(lua_State *L, const char *s, size_t len)
{
    size_t off, line, col;
    char kind;
    if (!mf_text_check(s, len, 0, &off, &kind)) return 0;
    mf_text_position(s, off, &line, &col);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind == 'n' ? "nul" : "utf8");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)off);
    lua_setfield(L, -2, "offset");
    lua_pushinteger(L, (lua_Integer)line);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, (lua_Integer)col);
    lua_setfield(L, -2, "byte");
    lua_pushinteger(L, (unsigned char)s[off]);
    lua_setfield(L, -2, "value");
    return 1;
}

/* migrations.check(text) -> nil | {kind = "nul"|"utf8", offset, line, byte, value} */
static int l_check(lua_State *L)
{
    mf_checknargs(L, 1, "migrations.check(text)");
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (!push_text_problem(L, s, len)) lua_pushnil(L);
    return 1;
}

/* migrations.prisma_text(text) -> the text as Prisma's CLI reads it (U+FFFD
 * for every ill-formed UTF-8 subpart) */
static int l_prisma_text(lua_State *L)
{
    mf_checknargs(L, 1, "migrations.prisma_text(text)");
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    size_t off;
    char kind;
    /* NUL is valid UTF-8: only an ill-formed sequence changes the text */
    if (!mf_text_check(s, len, 1, &off, &kind)) { lua_settop(L, 1); return 1; }
    if (len > ((size_t)-1) / 3) return luaL_error(L, "text too large");
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len * 3 + 1);
    size_t n = mf_text_as_prisma_reads(s, len, out);
    luaL_pushresultsize(&b, n);
    return 1;
}

/* migrations.read(path) -> text
 *   | nil, message, {missing = bool, errno = n}
 *   | nil, "PATH:LINE:BYTE: ...", {kind = "nul"|"utf8", offset, line, byte, value, text}
 * A file with a NUL byte or invalid UTF-8 is refused (Prisma cannot run it
 * as it is); info.text holds its bytes for a caller that only reports. */
static int l_read(lua_State *L)
{
    mf_checknargs(L, 1, "migrations.read(path)");
    const char *path = luaL_checkstring(L, 1);
    int err = readfile(L, path);
    if (err) return pushfail_errno(L, err, "could not read migration file \"%s\": %s", path);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    int text = lua_gettop(L);
    if (!push_text_problem(L, s, len)) { lua_settop(L, text); return 1; }
    int info = lua_gettop(L);
    lua_pushvalue(L, text);
    lua_setfield(L, info, "text");
    lua_getfield(L, info, "line");
    lua_Integer line = lua_tointeger(L, -1);
    lua_getfield(L, info, "byte");
    lua_Integer col = lua_tointeger(L, -1);
    lua_getfield(L, info, "value");
    int value = (int)lua_tointeger(L, -1);
    lua_settop(L, info);
    lua_pushnil(L);
    if (value == 0)
        lua_pushfstring(L, "%s:%I:%I: a NUL byte (0x00)", path, line, col);
    else {
        char hex[8];
        snprintf(hex, sizeof hex, "0x%02X", value);
        lua_pushfstring(L, "%s:%I:%I: invalid UTF-8 (byte %s)", path, line, col, hex);
    }
    lua_pushvalue(L, info);
    return 3;
}

/* migrations.read_all(dir, list) -> n
 * For each entry of migrations.list(dir) with has_sql and no text yet: its
 * migration.sql read relative to the folder (no walk of the whole path per
 * file) and, when it is clean text (no NUL, valid UTF-8), entry.text and
 * entry.checksum set. An entry it cannot read, or whose text has a problem,
 * is left as it was: migrations.read(entry.sql_path) then gives the error.
 * n: the entries filled. Mechanism only: the caller decides on the rest. */
static int l_read_all(lua_State *L)
{
    mf_checknargs(L, 2, "migrations.read_all(dir, list)");
    const char *dir = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    Box *dbox = newbox(L);                         /* 3 */
    dbox->dir = opendir(dir);
    lua_Integer filled = 0;
    if (!dbox->dir) { lua_pushinteger(L, 0); return 1; }
    int dfd = dirfd(dbox->dir);
    Box *fbox = newbox(L);                         /* 4 */
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE) { lua_pop(L, 1); continue; }
        int e = lua_gettop(L);
        lua_getfield(L, e, "has_sql");
        int has = lua_toboolean(L, -1);
        lua_getfield(L, e, "text");
        int have = !lua_isnil(L, -1);
        lua_getfield(L, e, "name");
        size_t nlen;
        const char *name = lua_tolstring(L, -1, &nlen);
        if (!has || have || !name || nlen > NAME_MAX || strlen(name) != nlen) { lua_settop(L, 4); continue; }
        char rel[NAME_MAX + sizeof "/migration.sql"];
        snprintf(rel, sizeof rel, "%s/migration.sql", name);
        fbox->fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fbox->fd < 0 || fstat(fbox->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (fbox->fd >= 0) { close(fbox->fd); fbox->fd = -1; }
            lua_settop(L, 4);
            continue;
        }
        size_t want = st.st_size > 0 ? (size_t)st.st_size + 1 : LUAL_BUFFERSIZE;
        luaL_Buffer b;
        luaL_buffinitsize(L, &b, want);
        int bad = 0;
        for (;;) {
            char *p = luaL_prepbuffsize(&b, want);
            ssize_t got = read(fbox->fd, p, want);
            if (got < 0) { if (errno == EINTR) continue; bad = 1; break; }
            if (got == 0) break;
            luaL_addsize(&b, (size_t)got);
            if ((size_t)got < want) {
                char probe[256];
                ssize_t more;
                do more = read(fbox->fd, probe, sizeof probe); while (more < 0 && errno == EINTR);
                if (more < 0) { bad = 1; break; }
                if (more == 0) break;
                luaL_addlstring(&b, probe, (size_t)more);
            }
            if (want < LUAL_BUFFERSIZE) want = LUAL_BUFFERSIZE;
        }
        luaL_pushresult(&b);
        close(fbox->fd);
        fbox->fd = -1;
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        size_t off;
        char kind;
        char hex[MF_CHECKSUM_HEX_LEN + 1];
        if (bad || mf_text_check(text, len, 0, &off, &kind)) { lua_settop(L, 4); continue; }
        if (mf_checksum(text, len, hex) != 0) return luaL_error(L, "could not compute SHA-256 with OpenSSL");
        lua_setfield(L, e, "text");
        lua_pushstring(L, hex);
        lua_setfield(L, e, "checksum");
        filled++;
        lua_settop(L, 4);
    }
    lua_pushcfunction(L, box_gc);
    lua_pushvalue(L, 3);
    lua_call(L, 1, 0);
    lua_pushinteger(L, filled);
    return 1;
}

static const luaL_Reg lib[] = {
    {"check", l_check},
    {"checksum", l_checksum},
    {"compare", l_compare},
    {"list", l_list},
    {"lock_provider", l_lock_provider},
    {"matches", l_matches},
    {"prisma_text", l_prisma_text},
    {"read", l_read},
    {"read_all", l_read_all},
    {NULL, NULL}
};

static const luaL_Reg box_meta[] = {{"__gc", box_gc}, {"__close", box_gc}, {NULL, NULL}};

int luaopen_migfix_migrations(lua_State *L)
{
    mf_createmeta(L, BOX_NAME, box_meta, NULL);
    luaL_newlib(L, lib);
    return 1;
}
