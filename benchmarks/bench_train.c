/* bench_train.c: CPU training-step throughput, against the sgemm rate of the same process.
 *
 * For each configuration: build the model on the CPU backend, warm up, time full optimizer steps
 * (forward, backward, AdamW) on random tokens, and print one JSON line with the median tokens/s,
 * the achieved GFLOP/s (6N + 12*L*C*T FLOPs per token, N without wpe and padding), peak RSS and
 * the median GFLOP/s of a plain sgemm measured in this process, so the ratio is robust to a noisy
 * machine. Checks its result: the loss must be finite and fall over the timed steps.
 *
 *   bench_train [--config small|124m|all] [--steps N] [--batch B] [--seq T] [--threads N] */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench_util.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/rng.h"
#include "trainer/optim.h"

struct bench_config {
    const char *name;
    int layers, heads, channels, vocab;
};

/* Median GFLOP/s of an (M x K) @ (K x N) sgemm of the shape of a GPT MLP at this batch. */
static double sgemm_gflops(int threads, int m, int n, int k) {
    struct ts_blas blas;
    if (ts_blas_load(&blas, TS_BLAS_AUTO, threads) != TS_OK)
        return 0.0;
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n);
    float *c = calloc((size_t)m * n, sizeof(float));
    for (int64_t i = 0; i < (int64_t)m * k; i++)
        a[i] = ts_rng_normal(1, (uint64_t)i);
    for (int64_t i = 0; i < (int64_t)k * n; i++)
        b[i] = ts_rng_normal(2, (uint64_t)i);
    double rates[9];
    for (int r = 0; r < 11; r++) {
        double t0 = ts_bench_now_s();
        blas.sgemm(&blas, false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        double dt = ts_bench_now_s() - t0;
        if (r >= 2)
            rates[r - 2] = 2.0 * m * n * k / dt / 1e9;
    }
    free(a);
    free(b);
    free(c);
    ts_blas_unload(&blas);
    return ts_bench_median(rates, 9);
}

static int run_config(const struct bench_config *bc, int B, int T, int steps, int threads) {
    struct ts_backend *be = NULL;
    ts_gpt_t *gpt = NULL;
    ts_optim_t *opt = NULL;
    struct ts_cpu_options copt = {.threads = threads, .blas = TS_BLAS_AUTO};
    struct ts_gpt_config cfg = {.max_seq_len = T,
                                .vocab_size = bc->vocab,
                                .num_layers = bc->layers,
                                .num_heads = bc->heads,
                                .channels = bc->channels};
    struct ts_adamw_config acfg = ts_adamw_defaults();
    int32_t *inp = malloc(sizeof(int32_t) * (size_t)(B * T + 1));
    double *times = malloc(sizeof(double) * (size_t)steps);
    float first_loss = 0.0f, last_loss = 0.0f;
    if (ts_cpu_backend_create(&be, &copt) != TS_OK || ts_gpt_config_finish(&cfg) != TS_OK ||
        ts_gpt_create(&gpt, &cfg, be, B, T) != TS_OK || ts_gpt_init(gpt, 1337) != TS_OK ||
        ts_optim_create(&opt, gpt, &acfg) != TS_OK) {
        fprintf(stderr, "bench_train: %s\n", ts_last_error());
        return 1;
    }
    /* One fixed batch of random tokens: memorising it makes the loss fall, a cheap check. */
    for (int i = 0; i < B * T + 1; i++)
        inp[i] = (int32_t)(ts_rng_u64(42, (uint64_t)i) % (uint64_t)bc->vocab);
    int warmup = 2;
    struct rusage ru0;
    for (int s = 0; s < warmup + steps; s++) {
        float loss = 0.0f, norm = 0.0f;
        double t0 = ts_bench_now_s();
        if (ts_gpt_zero_grad(gpt) != TS_OK ||
            ts_gpt_forward(gpt, inp, inp + 1, B, T, 1.0f / (float)(B * T), &loss) != TS_OK ||
            ts_gpt_backward(gpt) != TS_OK || ts_optim_step(opt, 3e-4f, &norm) != TS_OK) {
            fprintf(stderr, "bench_train: %s\n", ts_last_error());
            return 1;
        }
        if (s == warmup - 1)
            getrusage(RUSAGE_SELF, &ru0);
        if (s >= warmup)
            times[s - warmup] = ts_bench_now_s() - t0;
        if (s == 0)
            first_loss = loss;
        last_loss = loss;
    }
    int ok = isfinite(last_loss) && last_loss < first_loss;
    struct ts_backend_info info;
    be->info(be, &info);
    double step_s = ts_bench_median(times, steps);
    double tok_s = (double)(B * T) / step_s;
    double n = (double)ts_gpt_num_flop_params(gpt);
    double flop_per_tok = 6.0 * n + 12.0 * cfg.num_layers * cfg.channels * T;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* Page faults during the timed steps: allocation inside the step loop would show up here. */
    long step_faults = ru.ru_minflt - ru0.ru_minflt;
    double sg = sgemm_gflops(info.threads, B * T, 4 * cfg.channels, cfg.channels);
    double sg_big = sgemm_gflops(info.threads, 1024, 1024, 1024);
    struct utsname un;
    uname(&un);
    printf("{\"bench\":\"train_step_cpu\",\"config\":\"%s\",\"layers\":%d,\"channels\":%d,"
           "\"heads\":%d,\"vocab\":%d,\"batch\":%d,\"seq\":%d,\"params\":%" PRId64
           ",\"steps\":%d,\"median_step_ms\":%.2f,\"tok_per_s\":%.1f,\"gflops\":%.1f,"
           "\"sgemm_gflops_mlp_shape\":%.1f,\"sgemm_gflops_1024\":%.1f,"
           "\"ratio_to_sgemm\":%.3f,\"peak_rss_mb\":%.0f,\"page_faults_in_steps\":%ld,\"threads\":%"
           "d,\"blas\":\"%s\","
           "\"machine\":\"%s %s\",\"loss_first\":%.4f,\"loss_last\":%.4f,\"ok\":%s}\n",
           bc->name, cfg.num_layers, cfg.channels, cfg.num_heads, cfg.vocab_size, B, T,
           ts_gpt_num_params(gpt), steps, step_s * 1e3, tok_s, tok_s * flop_per_tok / 1e9, sg,
           sg_big, tok_s * flop_per_tok / 1e9 / sg_big, (double)ru.ru_maxrss / 1024.0, step_faults,
           info.threads, info.detail, un.nodename, un.machine, (double)first_loss,
           (double)last_loss, ok ? "true" : "false");
    fflush(stdout);
    ts_optim_destroy(opt);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    free(inp);
    free(times);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *which = "all";
    int steps = 5, B = 4, T = 64, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--config") == 0)
            which = argv[i + 1];
        else if (strcmp(argv[i], "--steps") == 0)
            steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            B = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seq") == 0)
            T = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_train: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || B < 1 || T < 1) {
        fprintf(stderr, "bench_train: --steps, --batch and --seq must be positive\n");
        return 2;
    }
    static const struct bench_config configs[] = {
        {"4L-256C", 4, 4, 256, 50257},
        {"124M", 12, 12, 768, 50257},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        if (strcmp(which, "all") != 0 && !(strcmp(which, "small") == 0 && i == 0) &&
            !(strcmp(which, "124m") == 0 && i == 1))
            continue;
        rc |= run_config(&configs[i], B, T, steps, threads);
    }
    return rc;
}
