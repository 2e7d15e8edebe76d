/* fuzz_tok_train.c: the tokenizer trainer on any text (a vocabulary of 300: 256 bytes, up to 43
 * merges, <|endoftext|>); the trained tokenizer must save, load and round-trip the text. */
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "data/tokenizer_train.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ts_tok_trainer_t *tr = NULL;
    char out[1024];
    fuzz_path(out, sizeof(out), "trained");
    fuzz_expect(ts_tok_trainer_create(&tr) == TS_OK, "create");
    if (ts_tok_trainer_feed(tr, data, size) != TS_OK || ts_tok_trainer_run(tr, 300) != TS_OK) {
        ts_tok_trainer_destroy(tr);
        return 0;
    }
    fuzz_expect(ts_tok_trainer_save(tr, out) == TS_OK, "save");
    ts_tok_trainer_destroy(tr);
    ts_tokenizer_t *t = NULL;
    fuzz_expect(ts_tokenizer_load(&t, out) == TS_OK, "a trained tokenizer loads");
    ts_tok_encoder_t *e = NULL;
    struct ts_tok_ids ids = {0};
    fuzz_expect(ts_tok_encoder_create(&e, t) == TS_OK, "encoder");
    fuzz_expect(ts_tok_encoder_encode(e, data, size, &ids) == TS_OK, "encode");
    uint8_t *dec = NULL;
    size_t len = 0, cap = 0;
    fuzz_expect(ts_tokenizer_decode(t, ids.ids, ids.n, &dec, &len, &cap) == TS_OK, "decode");
    fuzz_expect(len == size && (size == 0 || memcmp(dec, data, size) == 0), "round trip");
    free(dec);
    ts_tok_ids_free(&ids);
    ts_tok_encoder_destroy(e);
    ts_tokenizer_destroy(t);
    return 0;
}
