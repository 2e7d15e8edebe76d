/* ncclcheck.c: the GPU check's one-rank NCCL round trip (tessera-gpucheck --nccl). A one-rank
 * NCCL communicator (over the single-process host group) runs all-reduce (sum, avg, max),
 * reduce-scatter and all-gather on device buffers, f32 and bf16, posted after a ready event and
 * waited through the poll; each result must equal the input (a group of one), bit for bit.
 * Several ranks need several GPUs: NCCL refuses two ranks on one device. */
#include "benchmarks/gpu/ncclcheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_nccl.h"

#define N 1000

static int check_dtype(ts_comm_t *c, struct ts_backend *gpu, enum ts_dtype dt, void *dev) {
    const size_t es = ts_dtype_size(dt), bytes = N * es;
    unsigned char in[N * 4], out[N * 4];
    for (size_t i = 0; i < bytes; i++)
        in[i] = (unsigned char)(i * 7 + 3);
    if (dt == TS_DTYPE_BF16) /* keep bf16 values finite: clear the exponent's top bit */
        for (size_t i = 1; i < bytes; i += 2)
            in[i] &= 0x3f;
    else
        for (size_t i = 3; i < bytes; i += 4)
            in[i] &= 0x3f;
    struct ts_tensor t = {.data = dev, .dtype = dt, .ndim = 1, .shape = {N, 1, 1, 1}};
    const int counts[1] = {N}, displs[1] = {0};
    const char *names[5] = {"all_reduce sum", "all_reduce avg", "all_reduce max", "reduce_scatter",
                            "all_gather"};
    int fails = 0;
    ts_event_t *ready = NULL;
    if (gpu->event_create(gpu, &ready) != TS_OK)
        return 1;
    for (int k = 0; k < 5; k++) {
        ts_status st = gpu->copy_h2d(gpu, dev, in, bytes);
        if (st == TS_OK)
            st = gpu->event_record(gpu, ready);
        if (st == TS_OK && k < 3)
            st = ts_comm_all_reduce(c, gpu, &t,
                                    k == 0   ? TS_REDUCE_SUM
                                    : k == 1 ? TS_REDUCE_AVG
                                             : TS_REDUCE_MAX,
                                    ready);
        else if (st == TS_OK && k == 3)
            st = ts_comm_reduce_scatter(c, gpu, &t, counts, ready);
        else if (st == TS_OK)
            st = ts_comm_all_gather(c, gpu, &t, counts, displs, ready);
        if (st == TS_OK)
            st = gpu->copy_d2h(gpu, out, dev, bytes);
        const bool ok = st == TS_OK && memcmp(in, out, bytes) == 0;
        printf("nccl %-15s %s: %s%s\n", names[k], ts_dtype_name(dt), ok ? "ok" : "FAILED ",
               st != TS_OK ? ts_last_error() : "");
        fails += !ok;
    }
    gpu->event_destroy(gpu, ready);
    return fails;
}

int ts_ncclcheck_run(struct ts_backend *gpu) {
    int version = 0;
    if (ts_comm_nccl_version(&version) != TS_OK) {
        printf("nccl: skipped: %s\n", ts_last_error());
        return TS_NCCLCHECK_SKIPPED;
    }
    printf("nccl: NCCL %d.%d.%d (libnccl.so.2)\n", version / 10000, (version / 100) % 100,
           version % 100);
    ts_comm_t *host = NULL, *c = NULL;
    void *dev = NULL;
    int fails = 1;
    const struct ts_nccl_options o = {.timeout_s = 60};
    if (ts_comm_create_single(&host) != TS_OK || ts_comm_nccl_create(&c, host, gpu, &o) != TS_OK ||
        gpu->alloc(gpu, N * 4, &dev) != TS_OK) {
        printf("nccl: FAILED: %s\n", ts_last_error());
        goto exit;
    }
    fails = check_dtype(c, gpu, TS_DTYPE_F32, dev) + check_dtype(c, gpu, TS_DTYPE_BF16, dev);
exit:
    if (dev != NULL)
        gpu->free(gpu, dev);
    ts_comm_destroy(c);
    ts_comm_destroy(host);
    return fails == 0 ? TS_NCCLCHECK_PASSED : TS_NCCLCHECK_FAILED;
}
