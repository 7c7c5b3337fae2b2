/* cmocka: migration folder order, ICU root collation (include/order.h).
 * Expected orders are what node's a.localeCompare(b) gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "order.h"

static int cmp(const char *a, const char *b)
{
    return mf_order_compare(a, strlen(a), b, strlen(b));
}

static void test_collator_opens(void **state)
{
    (void)state;
    assert_null(mf_order_error());
}

static void test_pairs(void **state)
{
    (void)state;
    assert_int_equal(cmp("a", "a"), 0);
    assert_int_equal(cmp("10_x", "2_y"), -1);    /* not numeric */
    assert_int_equal(cmp("a", "B"), -1);         /* bytewise says B < a */
    assert_int_equal(cmp("a", "A"), -1);         /* lower case first, tertiary */
    assert_int_equal(cmp("A", "b"), -1);
    assert_int_equal(cmp("20240101_a", "2024010100_b"), -1); /* '_' before digits */
    assert_int_equal(cmp("1_x", "1-x"), -1);     /* '_' before '-' (bytewise: '-' < '_') */
    assert_int_equal(cmp("init copy", "init_copy"), -1); /* space first */
    assert_int_equal(cmp("x", "x.sql"), -1);
    assert_int_equal(cmp("\xc3\xa9", "f"), -1);  /* é between e and f */
    assert_int_equal(cmp("e", "\xc3\xa9"), -1);
    assert_int_equal(cmp("2_y", "10_x"), 1);
}

static void test_total_breaks_ties(void **state)
{
    (void)state;
    /* U+0001 is ignorable at every level: equal by collation */
    assert_int_equal(cmp("a\x01", "a"), 0);
    assert_int_equal(mf_order_compare_total("a\x01", 2, "a", 1), 1);
    assert_int_equal(mf_order_compare_total("a", 1, "a\x01", 2), -1);
}

static int qcmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return mf_order_compare_total(x, strlen(x), y, strlen(y));
}

static void test_sort(void **state)
{
    (void)state;
    const char *names[] = {
        "20240101_a", "2024010100_b", "01_init", "10_x", "2_y", "0_init",
        "20230102000000_Users", "20230102000000_users", "20230101000000_init copy",
        "20230101000000_init", "20230101000000_x.sql", "20231027",
    };
    /* node -e 'console.log(JSON.stringify(names.sort((a,b)=>a.localeCompare(b))))' */
    const char *want[] = {
        "0_init", "01_init", "10_x", "2_y", "20230101000000_init", "20230101000000_init copy",
        "20230101000000_x.sql", "20230102000000_users", "20230102000000_Users", "20231027",
        "20240101_a", "2024010100_b",
    };
    size_t n = sizeof names / sizeof *names;
    qsort(names, n, sizeof *names, qcmp);
    for (size_t i = 0; i < n; i++) assert_string_equal(names[i], want[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collator_opens),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_total_breaks_ties),
        cmocka_unit_test(test_sort),
    };
    return cmocka_run_group_tests_name("order", tests, NULL, NULL);
}
