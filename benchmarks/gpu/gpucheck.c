/* gpucheck.c: tessera-gpucheck, what a GPU machine runs to check the CUDA backend in one go:
 * every op in fp32 then bf16 against the CPU backend, a short training run against the CPU,
 * and the timing of GPT-2 124M training steps, ending with a summary table; --timing times
 * each op alone at the 124M step's shapes (its time, bytes moved and FLOP/s).
 *
 * Built from kernels, the model core and the single-process comm only, so it runs on a bare GPU
 * machine: besides the plug-in it dlopens, it links the C runtime, libm and libgomp. Its CPU
 * reference uses OpenBLAS where it loads and the built-in matmul elsewhere.
 * Exit codes: 0 every check passed; 1 a check failed or the device erred; 2 bad usage;
 * 3 no GPU (the plug-in loaded but found no device); 4 the plug-in could not be loaded. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchmarks/gpu/ncclcheck.h"
#include "kernels/backend_load.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "tests/gpu/opcheck.h"

enum { EXIT_PASS = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NO_GPU = 3, EXIT_NO_PLUGIN = 4 };

#define MAX_OPS 48

struct op_row {
    char op[32];
    double rel[2]; /* worst over shapes: fp32, bf16; < 0 when not run */
    double tol[2];
    bool pass[2];
};

struct summary {
    struct op_row rows[MAX_OPS];
    int nrows;
    int failures;
    bool verbose;
};

static void report(const struct ts_opcheck_result *r, void *user) {
    struct summary *s = user;
    int k = strcmp(r->dtype, "bf16") == 0;
    struct op_row *row = NULL;
    for (int i = 0; i < s->nrows; i++)
        if (strcmp(s->rows[i].op, r->op) == 0)
            row = &s->rows[i];
    if (!row && s->nrows < MAX_OPS) {
        row = &s->rows[s->nrows++];
        snprintf(row->op, sizeof row->op, "%s", r->op);
        row->rel[0] = row->rel[1] = -1;
        row->pass[0] = row->pass[1] = true;
    }
    if (row) {
        double rel = r->bad > 0 ? 1e30 : r->rel_l2;
        row->rel[k] = rel > row->rel[k] ? rel : row->rel[k];
        row->tol[k] = r->tol;
        row->pass[k] = row->pass[k] && r->pass;
    }
    if (!r->pass || s->verbose)
        printf("%-4s %-20s %-5s %-28s rel %.3e max|d| %.3e tol %.0e bad %" PRId64 " (%s)\n",
               r->pass ? "ok" : "FAIL", r->op, r->dtype, r->shape, r->rel_l2, r->max_abs, r->tol,
               r->bad, r->output);
    fflush(stdout);
}

static void print_time(const struct ts_optime_result *r, void *user) {
    (void)user;
    char fl[16] = "-";
    if (r->flops > 0)
        snprintf(fl, sizeof fl, "%.1f", r->flops / (r->ms * 1e9));
    printf("%-26s %10.4f %10.1f %10.0f %9s\n", r->op, r->ms, r->bytes / 1e6,
           r->bytes / (r->ms * 1e6), fl);
    fflush(stdout);
}

static void usage(void) {
    printf("usage: tessera-gpucheck [--ops] [--nccl] [--train] [--bench] [--timing] [--small]\n"
           "                        [--filter OP] [--seed N] [--steps N] [--bench-batch B]\n"
           "                        [--bench-steps N] [--bench-precision fp32|bf16] [--verbose]\n"
           "Without --ops/--nccl/--train/--bench/--timing runs the first four. --timing times\n"
           "each op at GPT-2 124M's shapes (batch and precision of --bench-*). Exit: 0 pass,\n"
           "1 a check failed, 2 usage, 3 no GPU, 4 the CUDA plug-in could not be loaded.\n");
}

int main(int argc, char **argv) {
    bool ops = false, trn = false, bench = false, small = false, nccl = false, timing = false;
    const char *filter = NULL, *bench_prec = "bf16";
    uint64_t seed = (uint64_t)time(NULL);
    int steps = 20, bench_b = 8, bench_steps = 10;
    struct summary sum = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--ops") == 0)
            ops = true;
        else if (strcmp(a, "--nccl") == 0)
            nccl = true;
        else if (strcmp(a, "--train") == 0)
            trn = true;
        else if (strcmp(a, "--bench") == 0)
            bench = true;
        else if (strcmp(a, "--timing") == 0)
            timing = true;
        else if (strcmp(a, "--small") == 0)
            small = true;
        else if (strcmp(a, "--verbose") == 0)
            sum.verbose = true;
        else if (strcmp(a, "--filter") == 0 && v)
            filter = argv[++i];
        else if (strcmp(a, "--seed") == 0 && v)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--steps") == 0 && v)
            steps = atoi(argv[++i]);
        else if (strcmp(a, "--bench-batch") == 0 && v)
            bench_b = atoi(argv[++i]);
        else if (strcmp(a, "--bench-steps") == 0 && v)
            bench_steps = atoi(argv[++i]);
        else if (strcmp(a, "--bench-precision") == 0 && v)
            bench_prec = argv[++i];
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return EXIT_PASS;
        } else {
            fprintf(stderr, "tessera-gpucheck: unknown or incomplete argument '%s'\n", a);
            usage();
            return EXIT_USAGE;
        }
    }
    if (!ops && !trn && !bench && !nccl && !timing)
        ops = trn = bench = nccl = true;
    if (steps < 1 || steps > 1000 || bench_b < 1 || bench_steps < 1 ||
        (strcmp(bench_prec, "fp32") != 0 && strcmp(bench_prec, "bf16") != 0)) {
        usage();
        return EXIT_USAGE;
    }

    const struct ts_cuda_plugin *plugin = NULL;
    if (ts_cuda_plugin_open(&plugin) != TS_OK) {
        printf("tessera-gpucheck: no CUDA plug-in: %s\n", ts_last_error());
        return EXIT_NO_PLUGIN;
    }
    struct ts_device_list devs;
    plugin->probe(&devs);
    if (devs.count == 0) {
        printf("tessera-gpucheck: no GPU: %s (plug-in %s)\n", devs.error, plugin->path);
        return EXIT_NO_GPU;
    }
    struct ts_backend *cpu = NULL, *gpu = NULL;
    if (ts_cpu_backend_create(&cpu, NULL) != TS_OK || ts_cuda_backend_create(&gpu, NULL) != TS_OK) {
        printf("tessera-gpucheck: cannot create the backends: %s\n", ts_last_error());
        ts_backend_destroy(cpu);
        return EXIT_FAILED;
    }
    struct ts_backend_info gi, ci;
    gpu->info(gpu, &gi);
    cpu->info(cpu, &ci);
    printf("device: %s (%s)\nreference: cpu (%s)\nseed: %" PRIu64 "\n", gi.name, gi.detail,
           ci.detail, seed);
    fflush(stdout);

    int code = EXIT_PASS;
    float rl[2][1000], dl[2][1000];
    double train_rel[2] = {-1, -1};
    bool train_det[2] = {false, false}, train_ran = false;
    struct ts_bench_result br;
    bool bench_ran = false;
    if (ops) {
        const enum ts_dtype dts[2] = {TS_DTYPE_F32, TS_DTYPE_BF16};
        for (int k = 0; k < 2; k++) {
            int fails = 0;
            printf("== ops, %s\n", k ? "bf16" : "fp32");
            if (ts_opcheck_run(cpu, gpu, dts[k], filter, small, seed, report, &sum, &fails) !=
                TS_OK) {
                printf("ERROR %s\n", ts_last_error());
                code = EXIT_FAILED;
                goto done; /* a device error may have poisoned the context */
            }
            sum.failures += fails;
        }
    }
    if (nccl) {
        printf("== nccl, one rank\n");
        fflush(stdout);
        if (ts_ncclcheck_run(gpu) == TS_NCCLCHECK_FAILED)
            sum.failures++;
    }
    if (trn) {
        const enum ts_dtype dts[2] = {TS_DTYPE_F32, TS_DTYPE_BF16};
        for (int k = 0; k < 2; k++) {
            printf("== training %d steps, %s\n", steps, k ? "bf16" : "fp32");
            fflush(stdout);
            if (ts_modelcheck_train(cpu, gpu, dts[k], steps, seed, rl[k], dl[k], &train_rel[k],
                                    &train_det[k]) != TS_OK) {
                printf("ERROR %s\n", ts_last_error());
                code = EXIT_FAILED;
                goto done;
            }
            for (int s = 0; s < steps; s++)
                printf("step %2d  cpu %.6f  cuda %.6f\n", s, (double)rl[k][s], (double)dl[k][s]);
            double tol = k ? 3e-2 : 1e-4;
            if (!(train_rel[k] <= tol) || !train_det[k])
                sum.failures++;
        }
        train_ran = true;
    }
    if (bench) {
        enum ts_dtype dt = strcmp(bench_prec, "bf16") == 0 ? TS_DTYPE_BF16 : TS_DTYPE_F32;
        printf("== timing GPT-2 124M (L12 C768 NH12 T1024), batch %d, %s, %d steps\n", bench_b,
               bench_prec, bench_steps);
        fflush(stdout);
        if (ts_modelcheck_bench(gpu, dt, 12, 768, 12, 1024, bench_b, 3, bench_steps, &br) !=
            TS_OK) {
            printf("ERROR %s\n", ts_last_error());
            code = EXIT_FAILED;
            goto done;
        }
        bench_ran = true;
    }
    if (timing) {
        enum ts_dtype dt = strcmp(bench_prec, "bf16") == 0 ? TS_DTYPE_BF16 : TS_DTYPE_F32;
        printf("== op timing at GPT-2 124M's shapes (B%d T1024 C768 NH12 V50257), %s, 20 calls "
               "each\n%-26s %10s %10s %10s %9s\n",
               bench_b, bench_prec, "op", "ms", "MB moved", "GB/s", "TFLOP/s");
        fflush(stdout);
        if (ts_optime_run(gpu, dt, bench_b, 1024, 768, 12, 50257, filter, 20, print_time, NULL) !=
            TS_OK) {
            printf("ERROR %s\n", ts_last_error());
            code = EXIT_FAILED;
            goto done;
        }
    }

done:
    printf("\n== summary: %s, seed %" PRIu64 "\n", gi.name, seed);
    if (sum.nrows) {
        printf("%-22s %12s %12s\n", "op (worst over shapes)", "fp32 rel", "bf16 rel");
        for (int i = 0; i < sum.nrows; i++) {
            const struct op_row *r = &sum.rows[i];
            char c[2][32];
            for (int k = 0; k < 2; k++) {
                if (r->rel[k] < 0)
                    snprintf(c[k], sizeof c[k], "-");
                else if (r->rel[k] >= 1e30)
                    snprintf(c[k], sizeof c[k], "UNWRITTEN/NaN");
                else
                    snprintf(c[k], sizeof c[k], "%.2e%s", r->rel[k], r->pass[k] ? "" : " FAIL");
            }
            printf("%-22s %12s %12s\n", r->op, c[0], c[1]);
        }
    }
    if (train_ran)
        printf("training %d steps vs cpu: fp32 max rel %.2e (repeatable: %s), bf16 max rel %.2e "
               "(repeatable: %s); first/last loss cpu %.4f/%.4f\n",
               steps, train_rel[0], train_det[0] ? "yes" : "NO", train_rel[1],
               train_det[1] ? "yes" : "NO", (double)rl[0][0], (double)rl[0][steps - 1]);
    if (bench_ran) {
        printf("GPT-2 124M %s B%d T1024: %.1f ms/step, %.0f tokens/s, MFU %.1f%% (of 989 TFLOP/s), "
               "peak memory %.2f GiB",
               bench_prec, bench_b, br.ms_per_step, br.tokens_per_s, 100.0 * br.mfu,
               (double)br.peak_bytes / (1024.0 * 1024.0 * 1024.0));
        if (br.joules_per_token >= 0)
            printf(", %.3f J/token", br.joules_per_token);
        printf(", loss %.3f\n", (double)br.last_loss);
    }
    if (code == EXIT_PASS && sum.failures > 0)
        code = EXIT_FAILED;
    printf("result: %s (%d failed check%s)\n", code == EXIT_PASS ? "PASS" : "FAIL", sum.failures,
           sum.failures == 1 ? "" : "s");
    ts_backend_destroy(gpu);
    ts_backend_destroy(cpu);
    return code;
}
