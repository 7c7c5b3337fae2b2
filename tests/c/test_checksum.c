/* cmocka: Prisma checksum and its tolerant comparison (include/checksum.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "checksum.h"

static const char *hex(const char *s)
{
    static char out[MF_CHECKSUM_HEX_LEN + 1];
    assert_int_equal(mf_checksum(s, strlen(s), out), 0);
    return out;
}

static int matches(const char *script, const char *stored)
{
    return mf_checksum_matches(script, strlen(script), stored, strlen(stored));
}

static void test_vectors(void **state)
{
    (void)state;
    assert_string_equal(hex("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_string_equal(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *a = hex("SELECT 1;\n");
    assert_int_equal(strlen(a), 64);
    assert_memory_equal(a, "b4e04978", 8);
    assert_string_equal(a + 64 - 7, "4085dcd");
    const char *b = hex("SELECT 1;\r\n");
    assert_memory_equal(b, "d3cd5042", 8);
    assert_string_equal(b + 64 - 6, "44b0e4");
}

static void test_bytes_with_nul(void **state)
{
    (void)state;
    char out1[65], out2[65];
    assert_int_equal(mf_checksum("a\0b", 3, out1), 0);
    assert_int_equal(mf_checksum("a", 1, out2), 0);
    assert_string_not_equal(out1, out2);
}

static void test_legacy_format(void **state)
{
    (void)state;
    char out[65];
    /* sha256("hello") = 2c f2 4d ba 5f b0 a3 0e 26 e8 3b 2a c5 b9 e2 9e 1b 16 1e 5c 1f a7 42 5e 73 04 33 62 93 8b 98 24 */
    assert_int_equal(mf_checksum_legacy("hello", 5, out), 0);
    assert_string_equal(out, "2cf24dba5fb0a3e26e83b2ac5b9e29e1b161e5c1fa7425e7343362938b9824");
    assert_true(matches("hello", out));
    /* the zero-padded form still matches too */
    assert_true(matches("hello", hex("hello")));
}

static void test_line_endings(void **state)
{
    (void)state;
    /* prisma-engines checksum.rs: every pair matches both ways */
    const char *sets[2][2] = {
        {"ab\ncd\nef\ngh\rab", "ab\r\ncd\r\nef\r\ngh\rab"},
        {"ab\ncd\nef\ngh\rab\n", "ab\r\ncd\r\nef\r\ngh\rab\r\n"},
    };
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                char stored[65];
                strcpy(stored, hex(sets[s][j]));
                assert_true(matches(sets[s][i], stored));
            }
    char stored[65];
    strcpy(stored, hex("SELECT 1;\r\n"));
    assert_true(matches("SELECT 1;\n", stored));
    strcpy(stored, hex("SELECT 1;\n"));
    assert_true(matches("SELECT 1;\r\n", stored));
    /* mixed endings: LF -> CRLF turns an existing CRLF into CR CR LF */
    strcpy(stored, hex("a\r\r\nb\r\n"));
    assert_true(matches("a\r\nb\n", stored));
    /* a lone CR is never rewritten */
    strcpy(stored, hex("a\nb"));
    assert_false(matches("a\rb", stored));
}

static void test_negative(void **state)
{
    (void)state;
    char stored[65];
    strcpy(stored, hex("abcd"));
    assert_false(matches("abc", stored));
    strcpy(stored, hex("abc"));
    assert_false(matches("abc\n", stored));
    assert_false(matches("abc", ""));
    /* comparison is exact: upper case hex is not Prisma's format */
    strcpy(stored, hex("hello"));
    for (char *p = stored; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
    assert_false(matches("hello", stored));
    /* a 63-character value is compared in the legacy format only */
    strcpy(stored, hex("hello"));
    stored[63] = '\0';
    assert_false(matches("hello", stored));
}

static void test_sha256_hex(void **state)
{
    (void)state;
    char out[65];
    assert_int_equal(mf_sha256_hex("abc", 3, out), 0);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_bytes_with_nul),
        cmocka_unit_test(test_legacy_format),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_negative),
        cmocka_unit_test(test_sha256_hex),
    };
    return cmocka_run_group_tests_name("checksum", tests, NULL, NULL);
}
