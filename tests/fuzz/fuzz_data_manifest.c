/* fuzz_data_manifest.c: manifest.json bytes -> the data manifest reader (json-c, every field
 * checked), and the vocabulary lookup train and eval make from it. */
#include "data/data_manifest.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("manifest.json", data, size);
    char path[1024], pattern[1100];
    fuzz_path(path, sizeof(path), "manifest.json");
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    if (ts_data_manifest_read(&m, path) == TS_OK)
        fuzz_expect(m.vocab_size >= 2 && m.vocab_size <= 65536, "vocab in range");
    ts_data_manifest_deinit(&m);
    int v = 50257;
    fuzz_path(pattern, sizeof(pattern), "train_*.bin");
    (void)ts_data_manifest_vocab(pattern, false, false, &v);
    return 0;
}
