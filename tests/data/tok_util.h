/* tok_util.h: what the data tests share: the GPT-2 files (fetched once into the user cache),
 * the js-tiktoken oracle, generated test text, temp dirs and running `tessera`. */
#ifndef TS_TEST_TOK_UTIL_H
#define TS_TEST_TOK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

/* The GPT-2 tokenizer; fetches it with `tessera tokenizer fetch gpt2` when missing, and fails
 * the test with the reason when it cannot. */
ts_tokenizer_t *tok_need_gpt2(void);

/* Encodes with one encoder; fails the test on error. */
void tok_encode(const ts_tokenizer_t *t, const uint8_t *s, size_t n, struct ts_tok_ids *out);

/* Runs the js-tiktoken oracle on a file; fails the test (saying how to install) when node or
 * js-tiktoken is missing. *out is malloc'ed. */
void tok_oracle(const char *path, int32_t **out, int64_t *n);

/* A few hundred KB of varied valid UTF-8: this repository's sources and docs (prose, code) and
 * generated whitespace runs, numbers, contractions, Unicode scripts, emoji. malloc'ed. */
uint8_t *tok_varied_text(size_t *n);

/* Arbitrary bytes (invalid UTF-8 included) from a fixed generator. */
void tok_random_bytes(uint8_t *out, size_t n, uint64_t seed);

/* A fresh directory under /tmp (malloc'ed path); tok_rmdir removes it and frees the path. */
char *tok_mkdtemp(void);
void tok_rmdir(char *dir);
char *tok_path(const char *dir, const char *name); /* dir + "/" + name, malloc'ed */
void tok_write_file(const char *path, const void *data, size_t n);
char *tok_read_file(const char *path, size_t *n); /* NULL when missing */

/* Runs "<build>/launch/tessera ARGS" through sh; returns its exit code; *out holds stdout and
 * stderr together (malloc'ed, may be NULL). */
int tok_run_tessera(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
