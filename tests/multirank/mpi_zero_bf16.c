/* mpi_zero_bf16.c: ZeRO-1 with bf16 parameters under a real mpirun.
 *
 * The CPU backend computes in f32 only, so bf16 parameters exist on this machine only through
 * the bf16emu test backend (tests/gpu/bf16emu.c: bf16 storage in host memory, CPU arithmetic).
 * Every rank trains the same tiny bf16 model from the same seed on the same data, with ZeRO-1
 * (small buckets: many reduce-scatters) and then with ZeRO-0. It checks that after every ZeRO-1
 * step every rank holds the same bf16 parameters bit for bit (the all-gather of the bf16 buffer
 * brought each rank's updated slice to all), and that ZeRO-1's losses and parameters agree with
 * ZeRO-0's to bf16 rounding (a stale or misplaced slice would be off by whole updates). Not a
 * Criterion test (MPI_Init once per process): test_multirank.c launches it with -np 2 and 3.
 * Exits 0 with "zero bf16: ok" on rank 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_mpi.h"
#include "tests/gpu/bf16emu.h"
#include "trainer/train.h"

#define STEPS 4

static int rank, failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (failures++ < 10) {                                                                 \
                fprintf(stderr, "[rank %d] %s:%d: ", rank, __FILE__, __LINE__);                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

struct run {
    float loss[STEPS];
    float *params; /* host copy after the last step */
    int64_t n;
};

/* Trains STEPS updates with the given ZeRO stage; after each, every rank's parameters must hash
 * alike. */
static ts_status train(ts_comm_t *c, const char *shard, int zero, struct run *out) {
    struct ts_backend *be = NULL;
    ts_gpt_t *gpt = NULL;
    ts_loader_t *loader = NULL;
    ts_trainer_t *tr = NULL;
    uint64_t hashes[64];
    ts_status st;
    struct ts_gpt_config mc = {.max_seq_len = 16,
                               .vocab_size = 64,
                               .num_layers = 2,
                               .num_heads = 2,
                               .channels = 32,
                               .dtype = TS_DTYPE_BF16};
    struct ts_train_config tc = {
        .batch = 2,
        .seq_len = 16,
        .grad_accum = 2,
        .lr = {.max_lr = 3e-3f, .warmup = 1, .total = STEPS, .min_lr_frac = 0.1f},
        .adamw = ts_adamw_defaults(),
        .zero_stage = zero,
        .bucket_elems = 1000,
    };
    TS_CHECK_GOTO(bf16emu_create(&be), st, exit);
    TS_CHECK_GOTO(ts_gpt_create(&gpt, &mc, be, tc.batch, tc.seq_len), st, exit);
    TS_CHECK_GOTO(ts_gpt_init(gpt, 7), st, exit);
    TS_CHECK_GOTO(ts_loader_create(&loader, shard, tc.seq_len, mc.vocab_size), st, exit);
    TS_CHECK_GOTO(ts_trainer_create(&tr, gpt, loader, c, &tc), st, exit);
    EXPECT(ts_gpt_param_buffer(gpt)->dtype == TS_DTYPE_BF16, "parameters are not bf16");
    out->n = ts_gpt_num_params(gpt);
    out->params = malloc((size_t)out->n * sizeof(float));
    for (int s = 0; s < STEPS; s++) {
        struct ts_step_record rec;
        TS_CHECK_GOTO(ts_trainer_step(tr, &rec), st, exit);
        out->loss[s] = rec.loss;
        TS_CHECK_GOTO(ts_gpt_params_to_host(gpt, out->params), st, exit);
        const uint64_t h = fnv1a(out->params, (size_t)out->n * sizeof(float));
        TS_CHECK_GOTO(ts_comm_all_gather_u64(c, h, hashes), st, exit);
        for (int r = 0; r < ts_comm_size(c); r++)
            EXPECT(hashes[r] == hashes[0],
                   "zero %d step %d: rank %d's parameters differ from rank 0's", zero, s, r);
    }
exit:
    ts_trainer_destroy(tr);
    ts_loader_destroy(loader);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    return st;
}

int main(int argc, char **argv) {
    ts_comm_t *world = NULL;
    if (ts_comm_mpi_create_world(&world, &argc, &argv) != TS_OK) {
        fprintf(stderr, "mpi_zero_bf16: %s\n", ts_last_error());
        return 1;
    }
    rank = ts_comm_rank(world);
    char dir[64] = "/tmp/ts_zero_bf16_XXXXXX", shard[128] = "";
    if (rank == 0) {
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "mpi_zero_bf16: mkdtemp failed\n");
            ts_comm_abort(world, 1);
            return 1;
        }
        snprintf(shard, sizeof(shard), "%s/train_000.bin", dir);
        const int64_t n = 20000;
        uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
        uint64_t x = 12345;
        for (int64_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            tok[i] = (uint16_t)((x >> 33) % 64);
        }
        if (ts_shard_write(shard, tok, n) != TS_OK) {
            fprintf(stderr, "mpi_zero_bf16: %s\n", ts_last_error());
            ts_comm_abort(world, 1);
        }
        free(tok);
    }
    if (ts_comm_broadcast_host(world, shard, sizeof(shard), 0) != TS_OK) {
        fprintf(stderr, "[rank %d] %s\n", rank, ts_last_error());
        ts_comm_abort(world, 1);
    }

    struct run z1 = {0}, z0 = {0};
    if (train(world, shard, 1, &z1) != TS_OK || train(world, shard, 0, &z0) != TS_OK) {
        fprintf(stderr, "[rank %d] %s\n", rank, ts_last_error());
        ts_comm_abort(world, 1);
    }
    /* ZeRO-1 sums the norm from per-slice partials, which may move the clip scale by an ulp:
     * equal to float rounding, not bit for bit. A parameter may round to the neighbouring bf16
     * (2^-7 relative), never further. */
    for (int s = 0; s < STEPS; s++)
        EXPECT(fabsf(z1.loss[s] - z0.loss[s]) <= 1e-4f * fabsf(z0.loss[s]),
               "step %d loss: zero-1 %.9g, zero-0 %.9g", s, (double)z1.loss[s], (double)z0.loss[s]);
    int64_t moved = 0;
    for (int64_t i = 0; i < z1.n; i++) {
        const float a = z1.params[i], b = z0.params[i];
        moved += a != b;
        EXPECT(fabsf(a - b) <= fabsf(b) * (1.0f / 128.0f), "param %lld: zero-1 %.9g, zero-0 %.9g",
               (long long)i, (double)a, (double)b);
    }
    double bad = failures;
    if (ts_comm_all_reduce_host(world, &bad, 1, TS_REDUCE_SUM) != TS_OK)
        bad = 1;
    if (rank == 0) {
        if (bad == 0)
            printf("zero bf16: ok on %d ranks (%lld of %lld parameters differ from ZeRO-0)\n",
                   ts_comm_size(world), (long long)moved, (long long)z1.n);
        else
            printf("zero bf16: FAILED on %d ranks\n", ts_comm_size(world));
        unlink(shard);
        rmdir(dir);
    }
    free(z1.params);
    free(z0.params);
    ts_comm_destroy(world);
    return bad == 0 ? 0 : 1;
}
