/* migfix — migration folder order (pure C, no Lua).
 *
 * Prisma's CLI sorts migration folder names with JavaScript's
 * a.localeCompare(b): ICU collation, root/en locale, tertiary strength,
 * punctuation not ignorable. This is not bytewise order: "10_x" < "2_y"
 * both ways, but "_" sorts before digits and letters, case is a tertiary
 * difference ("a" < "A" < "b"), and so on. */
#ifndef MIGFIX_ORDER_H
#define MIGFIX_ORDER_H

#include <stddef.h>

/* Compare two UTF-8 strings with ICU root collation: -1, 0 or 1. Ill-formed
 * UTF-8 counts as U+FFFD. If ICU cannot open its collator, falls back to
 * bytewise order and mf_order_error() says why. */
int mf_order_compare(const char *a, size_t alen, const char *b, size_t blen);
/* Collation, then bytewise as a tie-break: a total, deterministic order
 * (used to sort a directory listing). */
int mf_order_compare_total(const char *a, size_t alen, const char *b, size_t blen);
/* NULL while the collator works, else a message naming the ICU error. */
const char *mf_order_error(void);
/* Close the cached collator (registered with atexit on first use). */
void mf_order_cleanup(void);

#endif
