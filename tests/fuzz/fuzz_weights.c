/* fuzz_weights.c: model.bin bytes -> the header check, and for a small model a full load into a
 * CPU model (every dimension bounded, the file's size checked before allocating). */
#include "fuzz_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "trainer/weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ts_backend *be;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const struct ts_cpu_options opt = {.threads = 1};
    if (be == NULL && ts_cpu_backend_create(&be, &opt) != TS_OK)
        fuzz_fail("cpu backend");
    fuzz_write("model.bin", data, size);
    char path[1024];
    fuzz_path(path, sizeof(path), "model.bin");
    struct ts_gpt_config cfg;
    if (ts_weights_read_config(path, &cfg) != TS_OK)
        return 0;
    int64_t n = 0;
    fuzz_expect(ts_gpt_config_num_params(&cfg, &n) == TS_OK, "an accepted header counts");
    fuzz_expect((int64_t)size == 1024 + 4 * n, "an accepted file has the header's size");
    if (n > (1 << 20) || cfg.max_seq_len > 64)
        return 0; /* the size matched: the file really holds these parameters */
    ts_gpt_t *gpt = NULL;
    if (ts_gpt_create(&gpt, &cfg, be, 1, 1) != TS_OK)
        return 0;
    fuzz_expect(ts_weights_load(gpt, path) == TS_OK, "a checked file loads");
    ts_gpt_destroy(gpt);
    return 0;
}
