/* Prisma database URLs for PostgreSQL: parsing and redaction (see url.h). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url.h"

/* Query parameters only Prisma understands; libpq would reject them. */
static const char *const prisma_only[] = {
    "schema", "connection_limit", "pool_timeout", "pgbouncer", "socket_timeout",
    "statement_cache_size", "sslaccept", "sslidentity", "max_connection_lifetime",
    "max_idle_connection_lifetime", "single_use_connections", NULL
};

/* libpq parameters passed through. Those that would point libpq somewhere
 * Prisma does not go (user, password, dbname, hostaddr, service, passfile,
 * replication) or that migfix sets itself (client_encoding) are not here:
 * Prisma ignores them, so they are ignored. `port` is read into u->port
 * (the socket of ?host=/dir is <dir>/.s.PGSQL.<port>, and Prisma's driver,
 * node-postgres, takes ?port= too). */
static const char *const libpq_kept[] = {
    "host", "sslmode", "sslcert", "sslkey", "sslrootcert", "sslpassword", "sslcrl",
    "sslcrldir", "sslsni", "sslcompression", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "connect_timeout", "application_name",
    "fallback_application_name", "options", "target_session_attrs", "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "channel_binding", "gssencmode", "krbsrvname", "gsslib", "requirepeer", NULL
};

static int in_list(const char *s, const char *const list[])
{
    for (int i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0) return 1;
    return 0;
}

static int is_secret_key(const char *k, size_t n)
{
    return (n == 8 && strncasecmp(k, "password", 8) == 0)
        || (n == 11 && strncasecmp(k, "sslpassword", 11) == 0);
}

/* A port number 1..65535 from s[0..n); -1 when it is not one. */
static long parse_port(const char *s, size_t n)
{
    long v = 0;
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]) || v > 65535) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into a new string; invalid escapes stay as they
 * are (like percent_encoding::percent_decode). plus: '+' means a space
 * (application/x-www-form-urlencoded, as in url::Url::query_pairs).
 * Returns NULL when out of memory; *nul is set if a NUL byte was decoded. */
static char *decode(const char *s, size_t n, int plus, int *nul)
{
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n
            && hexval((unsigned char)s[i + 1]) >= 0 && hexval((unsigned char)s[i + 2]) >= 0) {
            int c = hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]);
            if (c == 0) *nul = 1;
            *o++ = (char)c;
            i += 2;
        } else if (plus && s[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    int k = snprintf(err, errlen, "invalid database URL: ");
    if (k < 0 || (size_t)k >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

/* Append a name to a list unless already there. -1 when out of memory. */
static int add_name(char ***list, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i], name) == 0) return 0;
    char **nl = realloc(*list, (*n + 1) * sizeof *nl);
    if (!nl) return -1;
    *list = nl;
    if (!(nl[*n] = strdup(name))) return -1;
    (*n)++;
    return 0;
}

/* A growing byte buffer for the redacted forms. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static char *sb_done(struct sbuf *b)
{
    if (!b->p && !b->oom) sb_add(b, "", 0);
    if (b->oom) { free(b->p); b->p = NULL; return NULL; }
    return b->p;
}

/* Mask every further occurrence of a secret (n >= 4 bytes: shorter ones
 * occur by chance) in s, e.g. a password repeated in the database name of a
 * malformed URL. Takes s; returns the new string, NULL when out of memory. */
static char *mask_all(char *s, const char *secret, size_t n)
{
    if (!s || !secret || n < 4 || !strstr(s, secret)) return s;
    struct sbuf b = {0};
    const char *p = s, *hit;
    while ((hit = strstr(p, secret))) {
        sb_add(&b, p, (size_t)(hit - p));
        sb_str(&b, "****");
        p = hit + n;
    }
    sb_str(&b, p);
    free(s);
    return sb_done(&b);
}

/* Append the query string q[0..n) with secret values masked. */
static void sb_query_masked(struct sbuf *b, const char *q, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && q[j] != '&') j++;
        const char *eq = memchr(q + i, '=', j - i);
        if (eq && is_secret_key(q + i, (size_t)(eq - (q + i)))) {
            sb_add(b, q + i, (size_t)(eq - (q + i)) + 1);
            if (eq + 1 < q + j) sb_str(b, "****");
        } else {
            sb_add(b, q + i, j - i);
        }
        if (j < n) sb_add(b, "&", 1);
        i = j + 1;
    }
}

void mf_url_free(struct mf_url *u)
{
    if (!u) return;
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->dbname);
    free(u->schema);
    for (size_t i = 0; i < u->nparams; i++) {
        free(u->params[i].key);
        free(u->params[i].value);
    }
    free(u->params);
    for (size_t i = 0; i < u->nstripped; i++) free(u->stripped[i]);
    free(u->stripped);
    for (size_t i = 0; i < u->nignored; i++) free(u->ignored[i]);
    free(u->ignored);
    free(u->redacted);
    memset(u, 0, sizeof *u);
}

const char *mf_url_param(const struct mf_url *u, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; i < u->nparams; i++)
        if (strcmp(u->params[i].key, key) == 0) v = u->params[i].value;
    return v;
}

#define OOM() do { seterr(err, errlen, "out of memory"); goto fail; } while (0)

/* Decode s[0..n) into *dst; fails on NUL bytes (libpq cannot take them). */
#define DECODE(dst, s, n, plus, what) do { \
        int nul_ = 0; \
        if (!((dst) = decode((s), (n), (plus), &nul_))) OOM(); \
        if (nul_) { seterr(err, errlen, "the %s contains a NUL byte (%%00)", (what)); goto fail; } \
    } while (0)

int mf_url_parse(const char *url, struct mf_url *u, char *err, size_t errlen)
{
    char *clean = NULL, *key = NULL, *val = NULL;
    struct sbuf red = {0};
    memset(u, 0, sizeof *u);
    u->port = MF_URL_DEFAULT_PORT;
    if (err && errlen) err[0] = '\0';

    if (!url) { seterr(err, errlen, "no URL given"); goto fail; }

    /* Like the url crate: trim C0 controls and spaces at both ends, drop
     * tabs and newlines inside. */
    size_t n = strlen(url);
    while (n > 0 && (unsigned char)url[n - 1] <= ' ') n--;
    while (n > 0 && (unsigned char)*url <= ' ') { url++; n--; }
    if (!(clean = malloc(n + 1))) OOM();
    size_t cn = 0;
    for (size_t i = 0; i < n; i++)
        if (url[i] != '\t' && url[i] != '\n' && url[i] != '\r') clean[cn++] = url[i];
    clean[cn] = '\0';
    if (cn == 0) { seterr(err, errlen, "the URL is empty"); goto fail; }

    const char *p;
    if (strncasecmp(clean, "postgresql://", 13) == 0) p = clean + 13;
    else if (strncasecmp(clean, "postgres://", 11) == 0) p = clean + 11;
    else {
        seterr(err, errlen, "the URL must start with \"postgresql://\" or \"postgres://\"");
        goto fail;
    }

    /* The fragment is not part of the URL Prisma reads. */
    const char *end = strchr(p, '#');
    if (!end) end = p + strlen(p);
    const char *auth_end = p;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?') auth_end++;

    /* userinfo: up to the last '@' of the authority */
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@') at = q;
    const char *hp = p, *raw_user = NULL, *raw_pass = NULL;
    size_t raw_user_len = 0, raw_pass_len = 0;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *ue = colon ? colon : at;
        raw_user = p;
        raw_user_len = (size_t)(ue - p);
        if (ue > p) DECODE(u->user, p, (size_t)(ue - p), 0, "user name");
        if (colon && at > colon + 1) {
            DECODE(u->password, colon + 1, (size_t)(at - colon - 1), 0, "password");
            raw_pass = colon + 1;
            raw_pass_len = (size_t)(at - colon - 1);
        }
        hp = at + 1;
    }

    /* host[:port] */
    const char *host_s = hp, *host_e, *port_s = NULL;
    if (hp < auth_end && *hp == '[') {
        const char *rb = memchr(hp, ']', (size_t)(auth_end - hp));
        if (!rb) { seterr(err, errlen, "unterminated IPv6 address (missing \"]\")"); goto fail; }
        for (const char *q = hp + 1; q < rb; q++)
            if (!isalnum((unsigned char)*q) && *q != ':' && *q != '.' && *q != '%') {
                seterr(err, errlen, "invalid IPv6 address in brackets");
                goto fail;
            }
        if (rb == hp + 1) { seterr(err, errlen, "empty IPv6 address"); goto fail; }
        host_s = hp + 1;
        host_e = rb;
        u->ipv6 = 1;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':') { seterr(err, errlen, "unexpected characters after the IPv6 address"); goto fail; }
            port_s = rb + 2;
        }
    } else {
        const char *colon = NULL;
        int ncolons = 0;
        for (const char *q = hp; q < auth_end; q++)
            if (*q == ':') { colon = q; ncolons++; }
        if (ncolons > 1) {
            seterr(err, errlen, "the host has more than one \":\" (enclose an IPv6 address in brackets; "
                                "percent-encode special characters in the password, e.g. \"@\" as %%40)");
            goto fail;
        }
        host_e = colon ? colon : auth_end;
        if (colon) port_s = colon + 1;
    }
    if (port_s && port_s < auth_end) {
        long v = 0;
        for (const char *q = port_s; q < auth_end; q++) {
            if (!isdigit((unsigned char)*q) || v > 65535) {
                seterr(err, errlen, "invalid port number (percent-encode special characters in the "
                                    "password, e.g. \"#\" as %%23, \"/\" as %%2F, \"@\" as %%40)");
                goto fail;
            }
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535) { seterr(err, errlen, "port number out of range (1 to 65535)"); goto fail; }
        u->port = (int)v;
    }
    if (host_e > host_s) DECODE(u->host, host_s, (size_t)(host_e - host_s), 0, "host");

    /* path: the first segment is the database */
    const char *path_s = auth_end, *path_e = auth_end;
    while (path_e < end && *path_e != '?') path_e++;
    if (path_s < path_e) {
        const char *seg = path_s + 1, *seg_e = seg;
        while (seg_e < path_e && *seg_e != '/') seg_e++;
        if (seg_e > seg) DECODE(u->dbname, seg, (size_t)(seg_e - seg), 0, "database name");
    }

    /* query */
    const char *query = path_e < end ? path_e + 1 : NULL;
    if (query) {
        const char *q = query;
        while (q <= end) {
            const char *qe = q;
            while (qe < end && *qe != '&') qe++;
            if (qe > q) {
                const char *eq = memchr(q, '=', (size_t)(qe - q));
                const char *ke = eq ? eq : qe;
                DECODE(key, q, (size_t)(ke - q), 1, "name of a query parameter");
                DECODE(val, eq ? eq + 1 : qe, eq ? (size_t)(qe - eq - 1) : 0, 1, "value of a query parameter");
                if (strcmp(key, "schema") == 0) {
                    if (!*val) {
                        seterr(err, errlen, "?schema= is empty (give the schema of the ledger, e.g. ?schema=public, "
                                            "or leave the parameter out)");
                        goto fail;
                    }
                    free(u->schema);
                    u->schema = val;
                    val = NULL;
                    u->schema_given = 1;
                    if (add_name(&u->stripped, &u->nstripped, key)) OOM();
                } else if (strcmp(key, "port") == 0) {
                    long v = parse_port(val, strlen(val));
                    if (v < 0) { seterr(err, errlen, "?port= is not a port number (1 to 65535)"); goto fail; }
                    u->port = (int)v;
                } else if (in_list(key, prisma_only)) {
                    if (add_name(&u->stripped, &u->nstripped, key)) OOM();
                } else if (in_list(key, libpq_kept)) {
                    struct mf_url_param *np = realloc(u->params, (u->nparams + 1) * sizeof *np);
                    if (!np) OOM();
                    u->params = np;
                    np[u->nparams].key = key;
                    np[u->nparams].value = val;
                    u->nparams++;
                    key = val = NULL;
                } else {
                    if (add_name(&u->ignored, &u->nignored, key)) OOM();
                }
                free(key);
                free(val);
                key = val = NULL;
            }
            q = qe + 1;
        }
    }

    if (!u->host && !mf_url_param(u, "host")) {
        seterr(err, errlen, "missing host name");
        goto fail;
    }
    if (!u->schema && !(u->schema = strdup(MF_URL_DEFAULT_SCHEMA))) OOM();

    /* redacted form */
    sb_str(&red, "postgresql://");
    if (raw_user) {
        sb_add(&red, raw_user, raw_user_len);
        if (u->password) sb_str(&red, ":****");
        sb_str(&red, "@");
    }
    if (u->ipv6) sb_str(&red, "[");
    sb_add(&red, host_s, (size_t)(host_e - host_s));
    if (u->ipv6) sb_str(&red, "]");
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, ":%d", u->port);
    sb_str(&red, portbuf);
    sb_add(&red, path_s, (size_t)(path_e - path_s));
    if (query) {
        sb_str(&red, "?");
        sb_query_masked(&red, query, (size_t)(end - query));
    }
    if (!(u->redacted = sb_done(&red))) OOM();
    red.p = NULL; /* u->redacted owns it now */
    if (u->password) {
        /* the password once more elsewhere (decoded, or as written) */
        if (!(u->redacted = mask_all(u->redacted, u->password, strlen(u->password)))) OOM();
        char *rp = strndup(raw_pass, raw_pass_len);
        if (!rp) OOM();
        u->redacted = mask_all(u->redacted, rp, raw_pass_len);
        free(rp);
        if (!u->redacted) OOM();
    }

    free(clean);
    return 0;

fail:
    free(clean);
    free(key);
    free(val);
    free(red.p);
    mf_url_free(u);
    return -1;
}

static int is_scheme_char(int c)
{
    return isalnum(c) || c == '+' || c == '-' || c == '.';
}

char *mf_url_redact(const char *text)
{
    struct sbuf b = {0};
    if (!text) return NULL;
    const char *s = text;
    for (;;) {
        const char *m = strstr(s, "://");
        if (!m) break;
        /* a scheme: letters, digits, + - . before "://" */
        if (m == text || !is_scheme_char((unsigned char)m[-1])) {
            sb_add(&b, s, (size_t)(m + 3 - s));
            s = m + 3;
            continue;
        }
        const char *start = m + 3, *e = start;
        while (*e && (unsigned char)*e > ' ') e++;
        const char *auth_end = start;
        while (auth_end < e && *auth_end != '/' && *auth_end != '?' && *auth_end != '#') auth_end++;
        const char *at = NULL;
        for (const char *q = start; q < auth_end; q++)
            if (*q == '@') at = q;
        if (!at) /* an unencoded '/', '?' or '#' in the password: mask up to the first '@' */
            at = memchr(start, '@', (size_t)(e - start));
        const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
        sb_add(&b, s, (size_t)(start - s));
        const char *rest = start;
        if (colon && at > colon + 1) {
            sb_add(&b, start, (size_t)(colon + 1 - start));
            sb_str(&b, "****");
            rest = at;
        }
        /* query parameters: mask password= and sslpassword= */
        const char *qm = memchr(rest, '?', (size_t)(e - rest));
        if (qm) {
            const char *qe = memchr(qm, '#', (size_t)(e - qm));
            if (!qe) qe = e;
            sb_add(&b, rest, (size_t)(qm + 1 - rest));
            sb_query_masked(&b, qm + 1, (size_t)(qe - qm - 1));
            sb_add(&b, qe, (size_t)(e - qe));
        } else {
            sb_add(&b, rest, (size_t)(e - rest));
        }
        s = e;
    }
    sb_str(&b, s);
    return sb_done(&b);
}
