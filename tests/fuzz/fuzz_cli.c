/* fuzz_cli.c: the flag parser: the input cut at NUL bytes into `tessera train` arguments, parsed
 * by the settings table and checked; an accepted setting must satisfy its row's limits. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "launch/settings.h"
#include "trainer/gpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)fuzz_dir();
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[66] = {"tessera", "train"};
    int argc = 2;
    for (size_t i = 0; i < size && argc < 65;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    static struct ts_train_flags f;
    bool help = false;
    if (ts_train_flags_parse(&f, argc, argv, 2, &help) == TS_OK && !help &&
        ts_train_settings_check(&f) == TS_OK) {
        const struct ts_train_settings *v = &f.v;
        fuzz_expect(v->layers >= 1 && v->layers <= TS_GPT_MAX_LAYERS, "layers");
        fuzz_expect(v->seq_len >= 1 && v->seq_len <= TS_GPT_MAX_SEQ_LEN, "seq_len");
        fuzz_expect(v->channels % v->heads == 0, "heads divide channels");
        fuzz_expect(v->steps >= 1 && v->steps <= TS_MAX_STEPS, "steps");
        fuzz_expect(v->warmup >= -1 && v->warmup <= v->steps, "warmup");
        fuzz_expect(v->stop_after >= 0 && v->stop_after <= TS_MAX_STEPS, "stop_after");
        fuzz_expect(v->eval_every >= 0 && v->eval_every <= TS_MAX_STEPS, "eval_every");
        fuzz_expect(v->ckpt_every >= 0 && v->ckpt_every <= TS_MAX_STEPS, "ckpt_every");
        fuzz_expect(v->log_every >= 1 && v->log_every <= TS_MAX_STEPS, "log_every");
    }
    free(buf);
    return 0;
}
