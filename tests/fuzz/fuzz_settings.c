/* fuzz_settings.c: what a resume reads: a checkpoint's recorded settings (the input's lines
 * "model:KEY=VALUE" or "KEY=VALUE", into the record as a manifest would give them) adopted by the
 * settings table and checked, and the trainer blob's counters. */
#include <stdio.h>
#include <string.h>

#include "fuzz_util.h"
#include "launch/settings.h"
#include "trainer/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)fuzz_dir();
    static struct ts_ckpt_meta meta;
    memset(&meta, 0, sizeof(meta));
    char text[8192];
    const size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    int64_t s, o, p;
    if (ts_train_state_parse_counters(text, "fuzz", &s, &o, &p) == TS_OK)
        fuzz_expect(s >= 0 && s <= TS_MAX_STEPS && o >= 0 && o <= TS_MAX_STEPS && p >= 0,
                    "counters in range");
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        const bool model = strncmp(line, "model:", 6) == 0;
        char *kv = model ? line + 6 : line, *eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        if (model)
            (void)ts_ckpt_kv_add(meta.model, &meta.num_model, kv, "%s", eq + 1);
        else
            (void)ts_ckpt_kv_add(meta.train, &meta.num_train, kv, "%s", eq + 1);
    }
    static struct ts_train_flags f;
    bool help = false;
    char *argv[] = {"tessera", "train", "--resume", "--out", "run", NULL};
    if (ts_train_flags_parse(&f, 5, argv, 2, &help) != TS_OK)
        fuzz_fail("flags");
    if (ts_train_settings_adopt(&f, &meta, "ckpt", true, 2) == TS_OK)
        (void)ts_train_settings_check(&f);
    return 0;
}
