/* Shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Each target defines FUZZ_ENTRY (default LLVMFuzzerTestOneInput, the
 * libFuzzer entry point); tests/c/test_fuzz_corpus.c builds every target
 * with its own FUZZ_ENTRY name and replays the seed and regression corpora
 * through all of them in `make test`.
 *
 * FUZZ_CHECK(cond, what): an invariant of the code under test; a broken one
 * aborts, so libFuzzer (or the replay test) reports the input. */
#ifndef MIGFIX_FUZZ_H
#define MIGFIX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int FUZZ_ENTRY(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, what) do { \
        if (!(cond)) { fprintf(stderr, "fuzz invariant broken: %s (%s:%d)\n", (what), __FILE__, __LINE__); abort(); } \
    } while (0)

#endif
