/* Prisma database URLs for PostgreSQL (pure C, no Lua, no libpq).
 *
 * Parses postgresql:// and postgres:// URLs the way Prisma reads them
 * (quaint over the url crate): percent-decoded user, password and dbname,
 * host incl. [ipv6], port default 5432, `?schema=` decoded like
 * url::Url::query_pairs ('+' is a space), default "public". Query
 * parameters are sorted in three bins: libpq parameters that are kept,
 * Prisma-only parameters that are stripped (libpq rejects them), and
 * unrecognized ones that are ignored (also stripped). */
#ifndef MIGFIX_URL_H
#define MIGFIX_URL_H

#include <stddef.h>

#define MF_URL_DEFAULT_PORT 5432
#define MF_URL_DEFAULT_SCHEMA "public"

struct mf_url_param {
    char *key;
    char *value;
};

struct mf_url {
    char *user;     /* decoded; NULL when absent */
    char *password; /* decoded; NULL when absent or empty */
    char *host;     /* decoded, without [ ]; NULL when empty (then ?host= is required) */
    int port;       /* MF_URL_DEFAULT_PORT when absent */
    char *dbname;   /* decoded first path segment; NULL when absent or empty */
    char *schema;   /* decoded ?schema=, else MF_URL_DEFAULT_SCHEMA */
    int schema_given;
    int ipv6;       /* host was written in brackets */
    struct mf_url_param *params; /* kept for libpq, in URL order */
    size_t nparams;
    char **stripped; /* names of Prisma-only parameters seen (no duplicates) */
    size_t nstripped;
    char **ignored;  /* names of unrecognized parameters seen (no duplicates) */
    size_t nignored;
    char *redacted;  /* the URL with the password (and password=, sslpassword=) shown as **** */
};

/* Parse url into *u (which need not be initialised). Returns 0 on success;
 * on failure returns -1, leaves *u empty (safe to mf_url_free) and writes
 * "invalid database URL: <reason>" into err. The message never quotes any
 * part of the URL, so it cannot leak the password. */
int mf_url_parse(const char *url, struct mf_url *u, char *err, size_t errlen);

/* Free everything parse allocated; leaves *u zeroed. Idempotent. */
void mf_url_free(struct mf_url *u);

/* Last value of a kept libpq parameter, or NULL. */
const char *mf_url_param(const struct mf_url *u, const char *key);

/* A copy of text (malloc'd; NULL when out of memory) in which the password
 * of every scheme://user:password@ URL is replaced by "****", as are the
 * values of password= and sslpassword= query parameters. */
char *mf_url_redact(const char *text);

#endif
