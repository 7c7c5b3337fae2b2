/* migfix.crypto — SHA-256, random v4 UUIDs and random hex (OpenSSL).
 *
 * @module migfix.crypto */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "checksum.h"
#include "migfix.h"

#define RANDOM_HEX_MAX (1 << 20)

static const char hexdigits[] = "0123456789abcdef";

static void tohex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[b[i] >> 4];
        out[2 * i + 1] = hexdigits[b[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* One fetched SHA-256 and one context for the process (EVP_Digest would
 * fetch the algorithm and allocate a context for every call: status hashes
 * 10,000 files). The process is single-threaded. */
static EVP_MD *sha256_md;
static EVP_MD_CTX *sha256_ctx;

static void sha256_cleanup(void)
{
    EVP_MD_CTX_free(sha256_ctx);
    EVP_MD_free(sha256_md);
    sha256_ctx = NULL;
    sha256_md = NULL;
}

int mf_sha256(const void *data, size_t len, unsigned char out[MF_SHA256_LEN])
{
    unsigned int n = 0;
    if (!sha256_ctx) {
        EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
        EVP_MD_CTX *ctx = md ? EVP_MD_CTX_new() : NULL;
        if (!ctx) { EVP_MD_free(md); return -1; }
        sha256_md = md;
        sha256_ctx = ctx;
        atexit(sha256_cleanup);
    }
    if (EVP_DigestInit_ex2(sha256_ctx, sha256_md, NULL) != 1 || EVP_DigestUpdate(sha256_ctx, data, len) != 1
        || EVP_DigestFinal_ex(sha256_ctx, out, &n) != 1 || n != MF_SHA256_LEN)
        return -1;
    return 0;
}

int mf_sha256_hex(const void *data, size_t len, char out[MF_CHECKSUM_HEX_LEN + 1])
{
    unsigned char md[MF_SHA256_LEN];
    if (mf_sha256(data, len, md) != 0) return -1;
    tohex(md, sizeof md, out);
    return 0;
}

/* crypto.random_hex(nbytes) -> string of 2*nbytes lowercase hex digits */
static int l_random_hex(lua_State *L)
{
    mf_checknargs(L, 1, "crypto.random_hex(nbytes)");
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= RANDOM_HEX_MAX, 1, "byte count out of range (0 to 1048576)");
    if (n == 0) { lua_pushliteral(L, ""); return 1; }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (size_t)n * 3);
    /* random bytes in the upper third, hex from the start: never overlap */
    unsigned char *raw = (unsigned char *)out + 2 * n;
    if (RAND_bytes(raw, (int)n) != 1)
        return luaL_error(L, "could not get random bytes from OpenSSL");
    for (lua_Integer i = 0; i < n; i++) {
        unsigned char c = raw[i];
        out[2 * i] = hexdigits[c >> 4];
        out[2 * i + 1] = hexdigits[c & 0x0f];
    }
    luaL_pushresultsize(&b, (size_t)n * 2);
    return 1;
}

/* crypto.sha256_file(path) -> hex | nil, "path: reason", {errno = n} */
static int l_sha256_file(lua_State *L)
{
    mf_checknargs(L, 1, "crypto.sha256_file(path)");
    const char *path = luaL_checkstring(L, 1);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return luaL_error(L, "could not create an OpenSSL digest context");
    /* nothing below may raise until ctx and f are released */
    unsigned char buf[65536], md[MF_SHA256_LEN];
    unsigned int mdlen = 0;
    int err = 0, sslerr = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err = errno;
    } else {
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) sslerr = 1;
        size_t n;
        while (!sslerr && (n = fread(buf, 1, sizeof buf, f)) > 0)
            if (EVP_DigestUpdate(ctx, buf, n) != 1) sslerr = 1;
        if (!sslerr && ferror(f)) err = errno ? errno : EIO;
        fclose(f);
        if (!sslerr && !err && EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) sslerr = 1;
    }
    EVP_MD_CTX_free(ctx);
    if (sslerr) return luaL_error(L, "could not compute SHA-256 with OpenSSL");
    if (err) {
        return mf_pushfail(L, "os", err, "%s: %s", path, strerror(err));
    }
    char hex[MF_CHECKSUM_HEX_LEN + 1];
    tohex(md, sizeof md, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* crypto.uuid4() -> random version 4 UUID, lowercase, hyphenated (36 chars) */
static int l_uuid4(lua_State *L)
{
    mf_checknargs(L, 0, "crypto.uuid4()");
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return luaL_error(L, "could not get random bytes from OpenSSL");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10xx (RFC 4122) */
    char out[37], *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hexdigits[b[i] >> 4];
        *p++ = hexdigits[b[i] & 0x0f];
    }
    *p = '\0';
    lua_pushstring(L, out);
    return 1;
}

static const luaL_Reg lib[] = {
    {"random_hex", l_random_hex},
    {"sha256_file", l_sha256_file},
    {"uuid4", l_uuid4},
    {NULL, NULL}
};

int luaopen_migfix_crypto(lua_State *L)
{
    luaL_newlib(L, lib);
    return 1;
}
