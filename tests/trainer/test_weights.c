/* test_weights.c: model.bin headers from outside: every dimension bounded, the file's size checked
 * against the header before anything is allocated, a FIFO refused at once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "trainer/weights.h"

static void write_header(const char *path, int T, int V, int Vp, int L, int NH, int C,
                         long pad_bytes) {
    int32_t h[256] = {TS_WEIGHTS_MAGIC, TS_WEIGHTS_VERSION, T, V, Vp, L, NH, C};
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(h, sizeof(h), 1, f), 1u);
    for (long i = 0; i < pad_bytes; i++)
        fputc(0, f);
    fclose(f);
}

Test(trainer_weights, header_dimensions_bounded) {
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "bad_model.bin");
    struct ts_gpt_config cfg;
    /* 357913942 layers wrapped the table's int size (2 + 12*L + 2) to a tiny allocation */
    write_header(path, 8, 256, 256, 357913942, 1, 4, 1024);
    cr_assert_eq(ts_weights_read_config(path, &cfg), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "num_layers must be in [1, 1024]") != NULL, "%s",
              ts_last_error());
    write_header(path, 1 << 30, 256, 256, 2, 1, 4, 0);
    cr_assert_eq(ts_weights_read_config(path, &cfg), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "max_seq_len must be in [1, 65536]") != NULL, "%s",
              ts_last_error());
    write_header(path, 8, 1 << 24, 1 << 24, 2, 1, 4, 0);
    cr_assert_eq(ts_weights_read_config(path, &cfg), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "vocab_size must be in [1, 65536]") != NULL, "%s",
              ts_last_error());
    unlink(path);
    free(path);
    test_rmdir(dir);
}

Test(trainer_weights, size_checked_before_allocating) {
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "short_model.bin");
    struct ts_gpt_config cfg;
    /* a valid header for a large model over 1 KB of data: refused from the file's size */
    write_header(path, 1024, 50257, 50304, 48, 16, 2048, 1024);
    cr_assert_eq(ts_weights_read_config(path, &cfg), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "bytes") != NULL, "%s", ts_last_error());
    unlink(path);
    /* a FIFO is not a model file, and is refused without blocking */
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(ts_weights_read_config(path, &cfg), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "not a regular file") != NULL, "%s", ts_last_error());
    unlink(path);
    free(path);
    test_rmdir(dir);
}
