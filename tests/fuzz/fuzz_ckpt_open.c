/* fuzz_ckpt_open.c: a checkpoint of fixed, valid rank files (written once at start: two tensors
 * and a blob, one rank) under a manifest.pb from the input: open, read every tensor the manifest
 * lists (inputs as fuzz_ckpt.h makes them) into buffers sized from the manifest's own (checked)
 * shapes, read the blob, verify. Seeds are the valid manifest and variations
 * (tests/fuzz/corpus/fuzz_ckpt_open). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/ckpt.h"
#include "comm/comm.h"
#include "fuzz_ckpt.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char ckpt[1024]; /* the step directory */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char dir[1024];
    fuzz_path(dir, sizeof(dir), "checkpoints");
    ts_comm_t *comm = NULL;
    if (ts_comm_create_single(&comm) != TS_OK)
        abort();
    static float w[6 * 4], b[5];
    for (int i = 0; i < 24; i++)
        w[i] = (float)i;
    for (int i = 0; i < 5; i++)
        b[i] = -(float)i;
    struct ts_ckpt_tensor t[2] = {
        {.name = "params/w",
         .dtype = TS_DTYPE_F32,
         .ndim = 2,
         .shape = {6, 4, 1, 1},
         .num_boxes = 2,
         .data = w},
        {.name = "params/b",
         .dtype = TS_DTYPE_F32,
         .ndim = 1,
         .shape = {5, 1, 1, 1},
         .num_boxes = 1,
         .data = b},
    };
    /* w as two row blocks, b whole */
    t[0].boxes[0] = (struct ts_ckpt_box){.offset = {0, 0}, .extent = {3, 4}};
    t[0].boxes[1] = (struct ts_ckpt_box){.offset = {3, 0}, .extent = {3, 4}};
    t[1].boxes[0] = (struct ts_ckpt_box){.offset = {0}, .extent = {5}};
    static struct ts_ckpt_meta meta;
    meta.step = 3;
    meta.layout = (struct ts_ckpt_layout){.world_size = 1, .dp = 1, .tp = 1};
    if (ts_ckpt_kv_add(meta.model, &meta.num_model, "num_layers", "1") != TS_OK)
        abort();
    struct ts_ckpt_blob blob = {.name = "trainer", .data = "steps_done=3\n", .size = 13};
    struct ts_ckpt_save_args a = {.dir = dir,
                                  .meta = &meta,
                                  .tensors = t,
                                  .num_tensors = 2,
                                  .blobs = &blob,
                                  .num_blobs = 1,
                                  .model_table = "params",
                                  .comm = comm};
    if (ts_ckpt_save(&a, ckpt, sizeof(ckpt)) != TS_OK) {
        fprintf(stderr, "fuzz_ckpt_open: cannot write the fixed checkpoint: %s\n", ts_last_error());
        abort();
    }
    ts_comm_destroy(comm);
    /* the seed corpus is made from the valid manifest (FUZZ_SEED_OUT=dir) */
    const char *seed = getenv("FUZZ_SEED_OUT");
    if (seed != NULL) {
        char src[1200];
        snprintf(src, sizeof(src), "%s/manifest.pb", ckpt);
        fuzz_manifest_seeds(src, seed);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/manifest.pb", ckpt);
    size_t len = 0;
    unsigned char *bytes = fuzz_manifest_bytes(data, size, &len);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(bytes, 1, len, f) != len) || fclose(f) != 0)
        abort();
    free(bytes);
    ts_ckpt_t *ck = NULL;
    if (ts_ckpt_open(&ck, ckpt) != TS_OK)
        return 0;
    for (int i = 0; i < ts_ckpt_num_tensors(ck); i++) {
        struct ts_ckpt_tensor want = {.num_boxes = 1};
        snprintf(want.name, sizeof(want.name), "%s", ts_ckpt_tensor_name(ck, i));
        if (ts_ckpt_tensor_info(ck, want.name, &want.dtype, &want.ndim, want.shape) != TS_OK)
            continue;
        int64_t n = 1;
        for (int d = 0; d < want.ndim; d++) {
            want.boxes[0].extent[d] = want.shape[d];
            n *= want.shape[d];
        }
        if (n > (1 << 20))
            continue; /* the fixed files hold 29 elements; a huge claim fails in read anyway */
        want.data = malloc((size_t)n * 4 + 1);
        (void)ts_ckpt_read(ck, &want);
        free(want.data);
    }
    char buf[64];
    size_t got = 0;
    (void)ts_ckpt_read_blob(ck, "trainer", 0, buf, sizeof(buf), &got);
    FILE *null = fopen("/dev/null", "w");
    (void)ts_ckpt_verify(ck, null);
    fclose(null);
    ts_ckpt_close(ck);
    return 0;
}
