/* cmocka: the fuzz targets of tests/fuzz/ (make fuzz) replayed over their
 * seed corpora (tests/fuzz/seeds/<target>/, and the SQL of tests/fixtures)
 * and the inputs of crashes found and fixed (tests/fuzz/regress/<target>/):
 * a broken invariant aborts. Seconds, in make test. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

int fuzz_url_entry(const uint8_t *data, size_t size);
int fuzz_sql_entry(const uint8_t *data, size_t size);
int fuzz_json_entry(const uint8_t *data, size_t size);
int fuzz_migrations_entry(const uint8_t *data, size_t size);

static int (*entry)(const uint8_t *, size_t);
static const char *suffix; /* only files ending so (NULL: every file) */
static int replayed;

static int one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb; (void)ftw;
    if (type != FTW_F) return 0;
    size_t n = strlen(path);
    if (suffix && (n < strlen(suffix) || strcmp(path + n - strlen(suffix), suffix) != 0)) return 0;
    if (strstr(path, "/README")) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (size_t)(len > 0 ? len : 0), f);
    fclose(f);
    entry(buf, got);
    free(buf);
    replayed++;
    return 0;
}

static void replay(int (*fn)(const uint8_t *, size_t), const char *target, const char *fixtures_suffix)
{
    const char *root = getenv("MIGFIX_ROOT");
    char dir[4096];
    entry = fn;
    replayed = 0;
    suffix = NULL;
    snprintf(dir, sizeof dir, "%s/tests/fuzz/seeds/%s", root ? root : ".", target);
    nftw(dir, one, 16, FTW_PHYS);
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regress/%s", root ? root : ".", target);
    nftw(dir, one, 16, FTW_PHYS);
    if (fixtures_suffix) {
        suffix = fixtures_suffix;
        snprintf(dir, sizeof dir, "%s/tests/fixtures", root ? root : ".");
        nftw(dir, one, 16, FTW_PHYS);
    }
    if (replayed == 0) fail_msg("no seed inputs for fuzz target %s (run from the project root)", target);
}

static void test_url_corpus(void **state) { replay(fuzz_url_entry, "url", NULL); }
static void test_sql_corpus(void **state) { replay(fuzz_sql_entry, "sql", ".sql"); }
static void test_json_corpus(void **state) { replay(fuzz_json_entry, "json", ".json"); }
static void test_migrations_corpus(void **state) { replay(fuzz_migrations_entry, "migrations", ".sql"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_corpus),
        cmocka_unit_test(test_sql_corpus),
        cmocka_unit_test(test_json_corpus),
        cmocka_unit_test(test_migrations_corpus),
    };
    return cmocka_run_group_tests_name("fuzz corpus replay", tests, NULL, NULL);
}
