/* fuzz_shard.c: token shard bytes -> open (header, size, ids below the vocabulary) and, when
 * accepted, a loader over it reading every window in order and shuffled. */
#include <stdlib.h>

#include "data/shard.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("train_000.bin", data, size);
    char path[1024];
    fuzz_path(path, sizeof(path), "train_000.bin");
    struct ts_shard s;
    const int vocab = 300;
    if (ts_shard_open(&s, path, vocab) != TS_OK)
        return 0;
    ts_shard_close(&s);
    ts_loader_t *l = NULL;
    const int T = 4, B = 2;
    if (ts_loader_create(&l, path, T, vocab) != TS_OK)
        return 0;
    int32_t in[B * T], tg[B * T];
    const int64_t w = ts_loader_num_windows(l);
    for (int pass = 0; pass < 2; pass++) {
        ts_loader_set_shuffle(l, pass == 1, 7);
        for (int64_t i = 0; i < w + B && i < 64; i += B) {
            fuzz_expect(ts_loader_next(l, B, in, tg) == TS_OK, "next on an accepted shard");
            for (int k = 0; k < B * T; k++)
                fuzz_expect(in[k] >= 0 && in[k] < vocab && tg[k] >= 0 && tg[k] < vocab, "ids");
        }
    }
    ts_loader_destroy(l);
    return 0;
}
