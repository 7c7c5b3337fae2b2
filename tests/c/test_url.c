/* cmocka tests for engine/url.c: Prisma URL parsing and redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "url.h"

static struct mf_url parse_ok(const char *s)
{
    struct mf_url u;
    char err[256];
    int rc = mf_url_parse(s, &u, err, sizeof err);
    if (rc != 0) fail_msg("parse failed for %s: %s", s, err);
    return u;
}

static void parse_err(const char *s, const char *want)
{
    struct mf_url u;
    char err[256];
    assert_int_equal(mf_url_parse(s, &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid database URL: "));
    if (want && !strstr(err, want)) fail_msg("error \"%s\" lacks \"%s\"", err, want);
    assert_null(u.host);
    assert_null(u.redacted);
    mf_url_free(&u);
}

static int has_name(char **list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0) return 1;
    return 0;
}

static void test_basic(void **state)
{
    struct mf_url u = parse_ok("postgresql://app:secret@db.example.com:6543/appdb");
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "secret");
    assert_string_equal(u.host, "db.example.com");
    assert_int_equal(u.port, 6543);
    assert_string_equal(u.dbname, "appdb");
    assert_string_equal(u.schema, "public");
    assert_int_equal(u.schema_given, 0);
    assert_int_equal(u.nparams, 0);
    assert_string_equal(u.redacted, "postgresql://app:****@db.example.com:6543/appdb");
    mf_url_free(&u);
    mf_url_free(&u); /* idempotent */
}

/* found by make fuzz: the password repeated in a malformed path */
static void test_password_repeated_elsewhere(void **state)
{
    struct mf_url u = parse_ok("postgresql://app:s%65cret@db.esql://app:secret@h:1/x:s%65cret");
    assert_string_equal(u.password, "secret");
    assert_null(strstr(u.redacted, "secret"));
    assert_null(strstr(u.redacted, "s%65cret"));
    mf_url_free(&u);
}

static void test_postgres_scheme_default_port(void **state)
{
    struct mf_url u = parse_ok("postgres://app@localhost/appdb");
    assert_string_equal(u.user, "app");
    assert_null(u.password);
    assert_int_equal(u.port, 5432);
    assert_string_equal(u.redacted, "postgresql://app@localhost:5432/appdb");
    mf_url_free(&u);
    u = parse_ok("POSTGRESQL://h");
    assert_null(u.user);
    assert_null(u.dbname);
    assert_string_equal(u.host, "h");
    mf_url_free(&u);
}

static void test_percent_decoding(void **state)
{
    struct mf_url u = parse_ok("postgresql://us%40er:p%23ss%2Fw%3Ad%40+x@h:5432/my%20db");
    assert_string_equal(u.user, "us@er");
    assert_string_equal(u.password, "p#ss/w:d@+x"); /* no '+' -> ' ' in userinfo */
    assert_string_equal(u.dbname, "my db");
    assert_string_equal(u.redacted, "postgresql://us%40er:****@h:5432/my%20db");
    mf_url_free(&u);
    /* invalid escapes stay as they are, like percent_decode */
    u = parse_ok("postgresql://u:100%zz@h/db");
    assert_string_equal(u.password, "100%zz");
    mf_url_free(&u);
}

static void test_unencoded_at_in_password(void **state)
{
    /* the last '@' of the authority ends the userinfo */
    struct mf_url u = parse_ok("postgresql://u:p@ss@h/db");
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "h");
    mf_url_free(&u);
}

static void test_ipv6(void **state)
{
    struct mf_url u = parse_ok("postgresql://u:pw@[::1]:5433/db");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.ipv6, 1);
    assert_int_equal(u.port, 5433);
    assert_string_equal(u.redacted, "postgresql://u:****@[::1]:5433/db");
    mf_url_free(&u);
    u = parse_ok("postgresql://[fe80::1%25eth0]/db");
    assert_string_equal(u.host, "fe80::1%eth0");
    assert_int_equal(u.port, 5432);
    mf_url_free(&u);
    parse_err("postgresql://u@[::1/db", "IPv6");
    parse_err("postgresql://u@::1/db", "more than one");
}

static void test_schema_decoding(void **state)
{
    struct mf_url u = parse_ok("postgresql://u@h/db?schema=my+schema%2Fx");
    assert_string_equal(u.schema, "my schema/x");
    assert_int_equal(u.schema_given, 1);
    assert_true(has_name(u.stripped, u.nstripped, "schema"));
    mf_url_free(&u);
    u = parse_ok("postgresql://u@h/db?schema=a&schema=b");
    assert_string_equal(u.schema, "b"); /* the last one wins */
    assert_int_equal(u.nstripped, 1);
    mf_url_free(&u);
}

static void test_prisma_params_stripped(void **state)
{
    struct mf_url u = parse_ok("postgresql://u:pw@h/db?schema=app&connection_limit=5&pgbouncer=true"
                               "&pool_timeout=10&statement_cache_size=0&sslaccept=strict"
                               "&sslmode=require&application_name=x&frobnicate=1&user=evil");
    assert_int_equal(u.nstripped, 6);
    assert_true(has_name(u.stripped, u.nstripped, "schema"));
    assert_true(has_name(u.stripped, u.nstripped, "connection_limit"));
    assert_true(has_name(u.stripped, u.nstripped, "pgbouncer"));
    assert_true(has_name(u.stripped, u.nstripped, "sslaccept"));
    assert_int_equal(u.nparams, 2);
    assert_string_equal(u.params[0].key, "sslmode");
    assert_string_equal(u.params[0].value, "require");
    assert_string_equal(mf_url_param(&u, "application_name"), "x");
    assert_null(mf_url_param(&u, "pgbouncer"));
    assert_int_equal(u.nignored, 2);
    assert_true(has_name(u.ignored, u.nignored, "frobnicate"));
    assert_true(has_name(u.ignored, u.nignored, "user"));
    assert_string_equal(u.user, "u");
    mf_url_free(&u);
}

static void test_libpq_params_kept(void **state)
{
    struct mf_url u = parse_ok("postgresql://u@/db?host=%2Fvar%2Frun%2Fpostgresql&options=-c+work_mem%3D64MB"
                               "&connect_timeout=3&sslrootcert=/etc/ca.pem&target_session_attrs=read-write");
    assert_null(u.host);
    assert_string_equal(mf_url_param(&u, "host"), "/var/run/postgresql");
    assert_string_equal(mf_url_param(&u, "options"), "-c work_mem=64MB");
    assert_string_equal(mf_url_param(&u, "connect_timeout"), "3");
    assert_string_equal(mf_url_param(&u, "sslrootcert"), "/etc/ca.pem");
    assert_string_equal(mf_url_param(&u, "target_session_attrs"), "read-write");
    assert_int_equal(u.nstripped + u.nignored, 0);
    mf_url_free(&u);
}

static void test_whitespace_trimmed(void **state)
{
    struct mf_url u = parse_ok("  postgresql://u:pw@h/db\n");
    assert_string_equal(u.dbname, "db");
    mf_url_free(&u);
}

static void test_malformed(void **state)
{
    parse_err("mysql://u:pw@h/db", "must start with");
    parse_err("", "empty");
    parse_err("   ", "empty");
    parse_err(NULL, NULL);
    parse_err("postgresql://u:pw@h:99999/db", "port");
    parse_err("postgresql://u:pw@h:0/db", "port");
    parse_err("postgresql://u:pw@h:54x2/db", "port");
    parse_err("postgresql:///db", "missing host");
    parse_err("postgresql://u:pw@/db", "missing host");
    parse_err("postgresql://u:pw%00x@h/db", "NUL");
}

/* ?host=/socket&port=N: the socket is <dir>/.s.PGSQL.N, so the port counts
 * (it used to be dropped as an ignored parameter) */
static void test_socket_port_param(void **state)
{
    struct mf_url u = parse_ok("postgresql://app@localhost/appdb?host=/var/run/postgresql&port=5433");
    assert_int_equal(u.port, 5433);
    assert_string_equal(mf_url_param(&u, "host"), "/var/run/postgresql");
    assert_false(has_name(u.ignored, u.nignored, "port"));
    assert_string_equal(u.redacted, "postgresql://app@localhost:5433/appdb?host=/var/run/postgresql&port=5433");
    mf_url_free(&u);
    u = parse_ok("postgresql://app@localhost:6000/appdb?port=6001&port=6002");
    assert_int_equal(u.port, 6002); /* the query overrides, the last one wins (as in libpq) */
    mf_url_free(&u);
    u = parse_ok("postgresql://app@localhost/appdb?host=%2Ftmp");
    assert_int_equal(u.port, 5432);
    mf_url_free(&u);
    parse_err("postgresql://app@localhost/db?host=/tmp&port=", "?port=");
    parse_err("postgresql://app@localhost/db?port=70000", "?port=");
    parse_err("postgresql://app@localhost/db?port=54x", "?port=");
}

/* an empty ?schema= is a usage error, not a schema named "" */
static void test_empty_schema(void **state)
{
    parse_err("postgresql://app@localhost/db?schema=", "?schema= is empty");
    parse_err("postgresql://app@localhost/db?connection_limit=1&schema", "?schema= is empty");
    struct mf_url u = parse_ok("postgresql://app@localhost/db?schema=%20");
    assert_string_equal(u.schema, " ");
    mf_url_free(&u);
}

static void test_error_never_echoes_password(void **state)
{
    const char *bad[] = {
        "postgresql://app:S3cr#et@h/db", /* '#' starts a fragment: "S3cr" looks like a port */
        "postgresql://app:S3cr/et@h/db", /* '/' ends the authority */
        "postgresql://app:S3cr:et@[h/db",
        "postgresql://app:S3cr%00et@h/db",
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        struct mf_url u;
        char err[256];
        assert_int_equal(mf_url_parse(bad[i], &u, err, sizeof err), -1);
        if (strstr(err, "S3cr") || strstr(err, "app")) fail_msg("error echoes the URL: %s", err);
    }
}

static void test_redacted_masks_query_secrets(void **state)
{
    struct mf_url u = parse_ok("postgresql://u:pw@h/db?sslpassword=keypw&schema=x");
    assert_string_equal(u.redacted, "postgresql://u:****@h:5432/db?sslpassword=****&schema=x");
    assert_string_equal(mf_url_param(&u, "sslpassword"), "keypw");
    mf_url_free(&u);
}

static void check_redact(const char *in, const char *want)
{
    char *got = mf_url_redact(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_redact_text(void **state)
{
    check_redact("", "");
    check_redact("no urls here: a@b c:d", "no urls here: a@b c:d");
    check_redact("postgresql://u:pw@h:5432/db", "postgresql://u:****@h:5432/db");
    check_redact("url=postgresql://u@h/db and x", "url=postgresql://u@h/db and x");
    check_redact("a postgres://u:p1@h/a, b mysql://r:p2@h2/b\n",
                 "a postgres://u:****@h/a, b mysql://r:****@h2/b\n");
    check_redact("\"postgresql://u:p@ss@h/db\"", "\"postgresql://u:****@h/db\"");
    /* unencoded '/' or '#' in the password: still masked up to the '@' */
    check_redact("x postgresql://u:pa/ss@h/db y", "x postgresql://u:****@h/db y");
    check_redact("postgresql://u:pa#ss@h/db", "postgresql://u:****@h/db");
    check_redact("postgresql://u@h/db?password=pw&sslpassword=k&sslmode=require",
                 "postgresql://u@h/db?password=****&sslpassword=****&sslmode=require");
    check_redact("://u:p@h", "://u:p@h");
    check_redact("postgresql://[::1]:5432/db", "postgresql://[::1]:5432/db");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_password_repeated_elsewhere),
        cmocka_unit_test(test_postgres_scheme_default_port),
        cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_unencoded_at_in_password),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_schema_decoding),
        cmocka_unit_test(test_prisma_params_stripped),
        cmocka_unit_test(test_libpq_params_kept),
        cmocka_unit_test(test_whitespace_trimmed),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_socket_port_param),
        cmocka_unit_test(test_empty_schema),
        cmocka_unit_test(test_error_never_echoes_password),
        cmocka_unit_test(test_redacted_masks_query_secrets),
        cmocka_unit_test(test_redact_text),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
