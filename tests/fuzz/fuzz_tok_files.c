/* fuzz_tok_files.c: a tokenizer directory from the input (encoder.json, then "\n@@vocab.bpe@@\n",
 * then vocab.bpe) -> load; an accepted tokenizer must round-trip text: decode(encode(x)) == x for
 * a fixed mix of text and bytes, and ids stay in range. */
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char sample[] = "Hello world, it's 2026! \xe4\xbd\xa0\xe5\xa5\xbd  \t\n 123 abc"
                             "\xff\xfe <|endoftext|> aaaaabbbbb";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *enc, *bpe;
    size_t en, bn;
    fuzz_split(data, size, "\n@@vocab.bpe@@\n", &enc, &en, &bpe, &bn);
    fuzz_write("encoder.json", enc, en);
    fuzz_write("vocab.bpe", bpe, bn);
    ts_tokenizer_t *t = NULL;
    if (ts_tokenizer_load(&t, fuzz_dir()) != TS_OK)
        return 0;
    ts_tok_encoder_t *e = NULL;
    struct ts_tok_ids ids = {0};
    const size_t n = sizeof(sample) - 1;
    if (ts_tok_encoder_create(&e, t) == TS_OK &&
        ts_tok_encoder_encode(e, (const uint8_t *)sample, n, &ids) == TS_OK) {
        for (int64_t i = 0; i < ids.n; i++)
            fuzz_expect(ids.ids[i] >= 0 && ids.ids[i] < ts_tokenizer_vocab_size(t), "id range");
        uint8_t *dec = NULL;
        size_t len = 0, cap = 0;
        fuzz_expect(ts_tokenizer_decode(t, ids.ids, ids.n, &dec, &len, &cap) == TS_OK, "decode");
        fuzz_expect(len == n && memcmp(dec, sample, n) == 0, "decode(encode(x)) == x");
        free(dec);
    }
    ts_tok_ids_free(&ids);
    ts_tok_encoder_destroy(e);
    ts_tokenizer_destroy(t);
    return 0;
}
