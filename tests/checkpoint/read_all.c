/* read_all.c: see read_all.h. */
#include "tests/checkpoint/read_all.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/ckpt.h"

static bool wanted(const char *name, const char *const *prefixes, int n) {
    for (int i = 0; i < n; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

float *ck_read_all(const char *path, const char *const *prefixes, int n, long *count) {
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "%s", ts_last_error());
    float *all = NULL;
    long total = 0;
    for (int i = 0; i < ts_ckpt_num_tensors(ck); i++) {
        struct ts_ckpt_tensor t = {.dtype = TS_DTYPE_F32, .num_boxes = 1};
        snprintf(t.name, sizeof(t.name), "%s", ts_ckpt_tensor_name(ck, i));
        if (!wanted(t.name, prefixes, n))
            continue;
        enum ts_dtype dt;
        cr_assert_eq(ts_ckpt_tensor_info(ck, t.name, &dt, &t.ndim, t.shape), TS_OK);
        long numel = 1;
        for (int d = 0; d < t.ndim; d++) {
            t.boxes[0].extent[d] = t.shape[d];
            numel *= (long)t.shape[d];
        }
        all = realloc(all, (size_t)(total + numel) * sizeof(float));
        cr_assert_not_null(all, "out of memory");
        t.data = all + total;
        cr_assert_eq(ts_ckpt_read(ck, &t), TS_OK, "%s", ts_last_error());
        total += numel;
    }
    ts_ckpt_close(ck);
    *count = total;
    return all;
}
