/* fuzz_tok_encode.c: any bytes through a BPE tokenizer: decode(encode(x)) == x, ids in range,
 * the parallel encoder (cut into small pieces) equal to the serial one, and the heap merge equal to
 * the scan on every chunk. The tokenizer is GPT-2's when $TESSERA_HOME (or ~/.cache/tessera) holds
 * it, else one trained at start on a fixed text, so the harness runs without the network. */
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "data/tokenizer_impl.h"
#include "data/tokenizer_train.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ts_tokenizer_t *tok;
static ts_tok_encoder_t *enc;
static ts_tok_splitter_t *split;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    (void)fuzz_dir();
    if (ts_tokenizer_load(&tok, "gpt2") != TS_OK) {
        static const char text[] =
            "the quick brown fox jumps over the lazy dog; the dog sleeps. 1234 5678 "
            "aaaa bbbb abab baba internationalization nationalization nation station "
            "\xe4\xbd\xa0\xe5\xa5\xbd \xe4\xbd\xa0\xe5\xa5\xbd  spaces   and\ttabs\n\n";
        ts_tok_trainer_t *tr = NULL;
        char out[1024];
        fuzz_path(out, sizeof(out), "tok");
        if (ts_tok_trainer_create(&tr) != TS_OK ||
            ts_tok_trainer_feed(tr, (const uint8_t *)text, sizeof(text) - 1) != TS_OK ||
            ts_tok_trainer_run(tr, 400) != TS_OK || ts_tok_trainer_save(tr, out) != TS_OK ||
            ts_tokenizer_load(&tok, out) != TS_OK)
            fuzz_fail(ts_last_error());
        ts_tok_trainer_destroy(tr);
    }
    if (ts_tok_encoder_create(&enc, tok) != TS_OK || ts_tok_splitter_create(&split) != TS_OK)
        fuzz_fail("encoder");
    return 0;
}

/* check_chunk's buffers, kept across chunks and inputs (a fresh list per chunk was a third of
 * the time): the reference's ids and the encoder's. */
static int32_t *ref;
static size_t ref_cap;
static struct ts_tok_ids got;

static ts_status check_chunk(void *ctx, const uint8_t *s, size_t n) {
    (void)ctx;
    if (n > 2048)
        return TS_OK; /* the scan is O(n^2): the reference for chunks it does in microseconds */
    if (n + 1 > ref_cap) {
        ref_cap = 2 * (n + 1);
        ref = realloc(ref, ref_cap * sizeof(int32_t));
        fuzz_expect(ref != NULL, "out of memory");
    }
    size_t m = 0;
    got.n = 0;
    fuzz_expect(ts_tok_bpe_reference(tok, s, n, ref, &m) == TS_OK, "scan");
    fuzz_expect(ts_tok_encoder_encode(enc, s, n, &got) == TS_OK, "encode chunk");
    /* a chunk re-split alone may split differently only at its ends: compare when whole */
    if ((size_t)got.n == m)
        fuzz_expect(memcmp(got.ids, ref, m * sizeof(int32_t)) == 0, "heap merge == scan");
    return TS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct ts_tok_ids a = {0}, b = {0};
    fuzz_expect(ts_tok_encoder_encode(enc, data, size, &a) == TS_OK, "encode");
    for (int64_t i = 0; i < a.n; i++)
        fuzz_expect(a.ids[i] >= 0 && a.ids[i] < ts_tokenizer_vocab_size(tok), "id range");
    uint8_t *dec = NULL;
    size_t len = 0, cap = 0;
    fuzz_expect(ts_tokenizer_decode(tok, a.ids, a.n, &dec, &len, &cap) == TS_OK, "decode");
    fuzz_expect(len == size && (size == 0 || memcmp(dec, data, size) == 0),
                "decode(encode(x)) == x");
    free(dec);
    /* the parallel encoder on two threads, with pieces of 1 to 256 bytes (from the input's
     * length) so that the input is cut wherever ts_tok_safe_cut allows: equal to one encoder */
    fuzz_expect(ts_tok_encode_pieces(tok, data, size, 2, 1 + size % 256, &b) == TS_OK,
                "parallel encode");
    fuzz_expect(a.n == b.n && (a.n == 0 || memcmp(a.ids, b.ids, (size_t)a.n * 4) == 0),
                "parallel == serial");
    ts_tok_ids_free(&a);
    ts_tok_ids_free(&b);
    fuzz_expect(ts_tok_split(split, data, size, check_chunk, NULL) == TS_OK, "split");
    return 0;
}
