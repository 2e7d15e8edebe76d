/* mpi_tp_grads.c: every parameter's gradient under tensor parallelism equals one rank's.
 *
 * Under a real mpirun with the world as one tensor-parallel group of size N, every rank builds
 * the model split over the group and the whole model on its own (tp 1), both from the same seed,
 * and runs one forward and backward on the same batch. Split tensors (the heads' columns and
 * rows, wte's vocabulary rows) are gathered into global coordinates with ts_gpt_tensor_runs and
 * summed over the group, each element written by exactly one rank; replicated tensors (wpe,
 * layernorms, row-parallel biases) are compared on every rank as they are. Every gradient must
 * match the tp-1 one to 1e-5 of that tensor's largest entry, and the loss to 1e-6. The model has
 * 12 heads so 2, 3 and 4 ranks all split it; at 3 the vocabulary is padded further (lcm(128, 3))
 * and wte's extra rows must get no gradient. Not a Criterion test (MPI_Init once per process):
 * test_multirank.c launches it. Exits 0 with "tp grads: ok" on rank 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_mpi.h"
#include "kernels/cpu/cpu_backend.h"
#include "trainer/train.h"

#define B 2
#define T 16
#define V 200

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

struct model {
    ts_gpt_t *gpt;
    float *grads; /* host copy of the flat gradient buffer */
    float loss;
};

/* One forward and backward of a fresh model over `tp` (NULL: tp 1). */
static ts_status run(struct ts_backend *be, const struct ts_gpt_tp *tp, const int32_t *in,
                     const int32_t *tg, struct model *m) {
    struct ts_gpt_config mc = {
        .max_seq_len = T, .vocab_size = V, .num_layers = 2, .num_heads = 12, .channels = 48};
    TS_CHECK(ts_gpt_create_tp(&m->gpt, &mc, be, B, T, tp));
    TS_CHECK(ts_gpt_init(m->gpt, 1234));
    TS_CHECK(ts_gpt_zero_grad(m->gpt));
    TS_CHECK(ts_gpt_forward(m->gpt, in, tg, B, T, 1.0f / (B * T), &m->loss));
    TS_CHECK(ts_gpt_backward(m->gpt));
    m->grads = malloc((size_t)ts_gpt_num_params(m->gpt) * sizeof(float));
    if (m->grads == NULL)
        return ts_error(TS_ERR_OOM, "mpi_tp_grads: out of memory");
    return ts_gpt_grads_to_host(m->gpt, m->grads);
}

struct gather {
    const float *src; /* this rank's tensor */
    double *sum, *count;
};

static void put_run(void *ctx, int64_t local, int64_t global, int64_t len) {
    struct gather *g = ctx;
    for (int64_t k = 0; k < len; k++) {
        g->sum[global + k] += g->src[local + k];
        g->count[global + k] += 1;
    }
}

static int64_t whole(const struct ts_param_info *p) {
    return p->global_shape[0] * (p->ndim == 2 ? p->global_shape[1] : 1);
}

/* The largest |a - b| over n elements against the largest |b|. */
static double rel_err(const double *a, const float *b, int64_t n) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs(a[i] - (double)b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0 ? diff / scale : diff;
}

/* Compares tensor i of the split model with the tp-1 model; returns its relative error. */
static ts_status compare(ts_comm_t *world, const struct model *tp, const struct model *one, int i,
                         double *err) {
    const struct ts_param_info *p = &ts_gpt_params(tp->gpt, NULL)[i];
    const struct ts_param_info *q = &ts_gpt_params(one->gpt, NULL)[i];
    const int64_t n = whole(p);
    double *sum = calloc((size_t)n, sizeof(double)), *count = calloc((size_t)n, sizeof(double));
    if (sum == NULL || count == NULL) {
        free(sum);
        free(count);
        return ts_error(TS_ERR_OOM, "mpi_tp_grads: out of memory");
    }
    struct gather g = {tp->grads + p->offset, sum, count};
    ts_gpt_tensor_runs(tp->gpt, i, put_run, &g);
    ts_status st = TS_OK;
    if (p->split_dim >= 0) {
        if (n > (1 << 30))
            st = ts_error(TS_ERR_INVALID_ARG, "mpi_tp_grads: tensor too large");
        if (st == TS_OK)
            st = ts_comm_all_reduce_host(world, sum, (int)n, TS_REDUCE_SUM);
        if (st == TS_OK)
            st = ts_comm_all_reduce_host(world, count, (int)n, TS_REDUCE_SUM);
        for (int64_t k = 0; st == TS_OK && k < n; k++)
            EXPECT(count[k] == 1, "%s: element %lld written by %g ranks", p->name, (long long)k,
                   count[k]);
    }
    /* Compare the tp-1 tensor's elements; wte at a further-padded vocabulary has extra rows,
     * which must be 0 (padding never meets a token). */
    const int64_t m = whole(q);
    EXPECT(m <= n, "%s: the split model's whole tensor is smaller than tp 1's", p->name);
    *err = rel_err(sum, one->grads + q->offset, m < n ? m : n);
    for (int64_t k = m; k < n; k++)
        EXPECT(sum[k] == 0, "%s: padded element %lld has gradient %g", p->name, (long long)k,
               sum[k]);
    free(sum);
    free(count);
    return st;
}

int main(int argc, char **argv) {
    ts_comm_t *world = NULL;
    if (ts_comm_mpi_create_world(&world, &argc, &argv) != TS_OK) {
        fprintf(stderr, "mpi_tp_grads: %s\n", ts_last_error());
        return 1;
    }
    rank = ts_comm_rank(world);
    struct ts_backend *be = NULL;
    struct model tp = {0}, one = {0};
    int32_t in[B * T], tg[B * T];
    uint64_t x = 99;
    for (int i = 0; i < B * T; i++) { /* tokens over the whole vocabulary: every rank's rows */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (int32_t)((x >> 33) % V);
        tg[i] = (int32_t)((x >> 17) % V);
    }
    struct ts_cpu_options o = {.threads = 1, .blas = TS_BLAS_REFERENCE};
    const struct ts_gpt_tp group = ts_trainer_tp(world);
    ts_status st = ts_cpu_backend_create(&be, &o);
    if (st == TS_OK)
        st = run(be, &group, in, tg, &tp);
    if (st == TS_OK)
        st = run(be, NULL, in, tg, &one);
    int count = 0;
    const struct ts_param_info *table = NULL;
    if (st == TS_OK)
        table = ts_gpt_params(tp.gpt, &count);
    double worst = 0;
    int split = 0;
    for (int i = 0; st == TS_OK && i < count; i++) {
        double err = 0;
        st = compare(world, &tp, &one, i, &err);
        split += table[i].split_dim >= 0;
        EXPECT(err <= 1e-5, "%s (%s): gradient differs from tp 1 by %.3g of its largest entry",
               table[i].name, table[i].split_dim >= 0 ? "split" : "replicated", err);
        worst = fmax(worst, err);
    }
    if (st != TS_OK) {
        fprintf(stderr, "[rank %d] %s\n", rank, ts_last_error());
        ts_comm_abort(world, 1);
    }
    EXPECT(table[0].split_dim == 0 &&
               table[0].shape[0] * ts_comm_size(world) == table[0].global_shape[0],
           "wte is not split by rows over the group");
    EXPECT(fabsf(tp.loss - one.loss) <= 1e-6f * fabsf(one.loss), "loss: tp %.9g, tp 1 %.9g",
           (double)tp.loss, (double)one.loss);
    double bad = failures;
    if (ts_comm_all_reduce_host(world, &bad, 1, TS_REDUCE_SUM) != TS_OK)
        bad = 1;
    if (rank == 0) {
        if (bad == 0)
            printf("tp grads: ok at tp %d (%d tensors, %d split; worst %.3g of a tensor's "
                   "largest entry)\n",
                   ts_comm_size(world), count, split, worst);
        else
            printf("tp grads: FAILED at tp %d\n", ts_comm_size(world));
    }
    free(tp.grads);
    free(one.grads);
    ts_gpt_destroy(tp.gpt);
    ts_gpt_destroy(one.gpt);
    ts_backend_destroy(be);
    ts_comm_destroy(world);
    return bad == 0 ? 0 : 1;
}
