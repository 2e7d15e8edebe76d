/* fuzz_util.h: what the libFuzzer harnesses share: a private scratch directory, writing an input
 * to a file there, and cutting an input into parts. Harnesses abort (a finding) only when a
 * reader breaks its contract: a crash, a sanitizer report, or an accepted input that fails the
 * harness's own property check (fuzz_expect). */
#ifndef TS_FUZZ_UTIL_H
#define TS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The scratch directory of this process (made once, under $TMPDIR or /tmp). */
const char *fuzz_dir(void);

/* dir/name into a static buffer per call site: the caller copies it if it keeps two. */
void fuzz_path(char *out, size_t cap, const char *name);

/* Writes data to dir/name (replacing it). */
void fuzz_write(const char *name, const void *data, size_t n);

/* Splits data at the first occurrence of sep (sep_len bytes): part a before, part b after;
 * without sep, a is everything and b is empty. */
void fuzz_split(const uint8_t *data, size_t n, const char *sep, const uint8_t **a, size_t *an,
                const uint8_t **b, size_t *bn);

/* A property of an accepted input failed: prints what and aborts (libFuzzer saves the input). */
void fuzz_fail(const char *what);
#define fuzz_expect(cond, what)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(what);                                                                       \
    } while (0)

#endif
