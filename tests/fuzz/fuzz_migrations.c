/* Fuzz target: checksums, the text checks and collation of
 * engine/migrations.c. Invariants: a script matches its own checksum (and
 * its CRLF/LF variants do); prisma_reads gives valid UTF-8, unchanged when
 * the input was valid; the collation order is antisymmetric and total
 * order breaks ties. */
#include <string.h>

#include "checksum.h"
#include "fuzz.h"
#include "order.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char hex[MF_CHECKSUM_HEX_LEN + 1];
    FUZZ_CHECK(mf_checksum(s, size, hex) == 0, "checksum");
    FUZZ_CHECK(mf_checksum_matches(s, size, hex, strlen(hex)) == 1, "a script matches its own checksum");
    FUZZ_CHECK(mf_checksum_legacy(s, size, hex) == 0, "legacy checksum");
    FUZZ_CHECK(mf_checksum_matches(s, size, hex, strlen(hex)) == 1, "a script matches its own legacy checksum");
    /* the input split in two at the first 0xFF: script and stored value */
    const char *ff = memchr(s, 0xFF, size);
    size_t a = ff ? (size_t)(ff - s) : size;
    size_t b = ff ? size - a - 1 : 0;
    const char *t = ff ? ff + 1 : s + size;
    FUZZ_CHECK(mf_checksum_matches(s, a, t, b) >= 0, "compare with any stored text");

    /* CRLF -> LF of a script still matches the original's checksum */
    char *lf = malloc(size + 1);
    if (lf) {
        size_t n = 0;
        for (size_t i = 0; i < size; i++) {
            if (s[i] == '\r' && i + 1 < size && s[i + 1] == '\n') continue;
            lf[n++] = s[i];
        }
        char h2[MF_CHECKSUM_HEX_LEN + 1];
        FUZZ_CHECK(mf_checksum(lf, n, h2) == 0, "checksum");
        FUZZ_CHECK(mf_checksum_matches(s, size, h2, strlen(h2)) == 1, "CRLF tolerance");
        free(lf);
    }

    /* the text as Prisma reads it */
    size_t off;
    char kind;
    int bad = mf_text_check(s, size, 1, &off, &kind);
    char *out = size <= ((size_t)-1) / 3 ? malloc(size * 3 + 1) : NULL;
    if (out) {
        size_t n = mf_text_as_prisma_reads(s, size, out);
        FUZZ_CHECK(n <= size * 3, "output bound");
        FUZZ_CHECK(!mf_text_check(out, n, 1, &off, &kind), "decoded text is valid UTF-8");
        if (!bad) FUZZ_CHECK(n == size && memcmp(out, s, size) == 0, "valid UTF-8 is kept byte for byte");
        else FUZZ_CHECK(n != size || memcmp(out, s, size) != 0, "invalid UTF-8 is changed");
        size_t line, col;
        if (mf_text_check(s, size, 0, &off, &kind)) {
            FUZZ_CHECK(off < size, "offset in range");
            mf_text_position(s, off, &line, &col);
            FUZZ_CHECK(line >= 1 && col >= 1 && col <= off + 1, "position");
        }
        free(out);
    }

    /* collation: antisymmetric, total order is 0 only for equal bytes */
    if (!mf_order_error()) {
        int c1 = mf_order_compare(s, a, t, b), c2 = mf_order_compare(t, b, s, a);
        FUZZ_CHECK(c1 == -c2, "collation antisymmetric");
        int d = mf_order_compare_total(s, a, t, b);
        FUZZ_CHECK((d == 0) == (a == b && memcmp(s, t, a) == 0), "total order ties only equal names");
        FUZZ_CHECK(mf_order_compare_total(s, a, s, a) == 0, "reflexive");
    }
    return 0;
}
