/* tokenizer_train.h: learning a byte-level BPE tokenizer from text, saved in GPT-2's file form
 * (encoder.json + vocab.bpe) so ts_tokenizer_load reads it like GPT-2's own.
 *
 * Text is pre-split with GPT-2's pattern and counted as distinct chunks ("words"). Ids 0..255 are
 * the 256 bytes in GPT-2's order; each merge adds the next id; the last id is <|endoftext|>.
 * Each step merges the most frequent adjacent pair; ties go to the smaller (left id, right id),
 * so training is a pure function of the text and the vocabulary size. Pair counts are kept
 * incrementally: a merge touches only the words that contain its pair. A merge whose bytes equal
 * an existing token reuses that token's id (encoder.json maps each string to one id). */
#ifndef TS_TOKENIZER_TRAIN_H
#define TS_TOKENIZER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

typedef struct ts_tok_trainer ts_tok_trainer_t;

ts_status ts_tok_trainer_create(ts_tok_trainer_t **out) TS_MUST_CHECK;
void ts_tok_trainer_destroy(ts_tok_trainer_t *tr);

/* Counts the chunks of text (one document; may be called many times). */
ts_status ts_tok_trainer_feed(ts_tok_trainer_t *tr, const uint8_t *text, size_t n) TS_MUST_CHECK;

/* Learns merges until the vocabulary (bytes + merges + end-of-text) reaches vocab_size, or no
 * pair occurs twice. vocab_size in [257, 65536]. */
ts_status ts_tok_trainer_run(ts_tok_trainer_t *tr, int vocab_size) TS_MUST_CHECK;

/* Writes dir/encoder.json and dir/vocab.bpe (dir is created when missing). */
ts_status ts_tok_trainer_save(const ts_tok_trainer_t *tr, const char *dir) TS_MUST_CHECK;

int64_t ts_tok_trainer_num_words(const ts_tok_trainer_t *tr); /* distinct chunks fed */
int ts_tok_trainer_num_merges(const ts_tok_trainer_t *tr);
int ts_tok_trainer_vocab_size(const ts_tok_trainer_t *tr); /* after run: ids incl. end-of-text */

#endif
