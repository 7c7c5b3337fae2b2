/* Fuzz target: Prisma URL parsing and redaction (engine/url.c).
 * Invariants: parse either fails with "invalid database URL: ..." and an
 * empty result, or gives a host (or ?host=), a port 1..65535, a non-empty
 * schema and a redacted form with no password; redact never fails on text. */
#include <string.h>

#include "fuzz.h"
#include "url.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct mf_url u;
    char err[256];
    if (mf_url_parse(s, &u, err, sizeof err) == 0) {
        FUZZ_CHECK(u.host || mf_url_param(&u, "host"), "a parsed URL has a host");
        FUZZ_CHECK(u.port >= 1 && u.port <= 65535, "port in range");
        FUZZ_CHECK(u.schema && u.schema[0], "schema set and non-empty");
        FUZZ_CHECK(u.redacted != NULL, "redacted form");
        /* the password never shows in the redacted form (when it is long
         * enough not to occur by chance elsewhere in the URL) */
        if (u.password && strlen(u.password) >= 6 && !strstr(s + strlen(s) / 2, u.password)
            && !strchr(u.password, '%'))
            FUZZ_CHECK(strstr(u.redacted, u.password) == NULL, "password redacted");
        mf_url_free(&u);
        FUZZ_CHECK(u.redacted == NULL && u.host == NULL, "free clears");
    } else {
        FUZZ_CHECK(strncmp(err, "invalid database URL: ", 22) == 0, "error prefix");
        FUZZ_CHECK(u.host == NULL && u.redacted == NULL, "failure leaves nothing");
    }
    char *r = mf_url_redact(s);
    FUZZ_CHECK(r != NULL, "redact");
    free(r);
    free(s);
    return 0;
}
