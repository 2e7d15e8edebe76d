/* attention_dev.c: tessera-attention-dev, the attention kernels' own bench in the manner of
 * llm.c's dev/cuda/ files: the CPU reference, the kernel versions, validation against the
 * reference with tolerances, then timing with achieved TFLOP/s, one JSON line per version.
 *
 * Versions are the CUDA backend's two attention pairs, called through its function table so the
 * bench measures exactly what training runs: `reference` (materialised: cuBLASLt matmuls over
 * the (B,NH,T,T) scores plus softmax kernels) and `flash` (flash_attention_forward.cu and
 * flash_attention_backward.cu). The reference values come from the CPU backend's flash pair
 * (the same numbers as its materialised pair, without a T x T buffer) over the first --check-b
 * batch rows, on inputs rounded to bf16 when the bench runs bf16, so the comparison measures
 * the kernels, not the input rounding. Each version is also run twice to check that its
 * backward repeats bit for bit.
 *
 * FLOPs count the causal half only (the work a causal kernel must do): forward 2 matmuls of
 * 2 HS flops per (query, key <= query) pair, backward 5 (S recomputed, dP, dV, dQ, dK), as in
 * the FlashAttention papers. Exit: 0 all passed; 1 a check failed or the device erred;
 * 2 usage; 3 no GPU; 4 no plug-in. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend_load.h"
#include "kernels/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "kernels/rng.h"

enum { EXIT_PASS = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NO_GPU = 3, EXIT_NO_PLUGIN = 4 };

struct opts {
    const char *version; /* reference, flash or all */
    enum ts_dtype dt;
    int B, T, NH, HS, repeats, check_b;
    float amp;
    uint64_t seed;
};

/* The host side of one run: inputs, the reference's outputs and the device's. */
struct host {
    float *qkv, *dout;             /* (B,T,3C), (B,T,C) */
    float *ref_out, *ref_lse;      /* first check_b rows */
    float *ref_dqkv;               /* first check_b rows */
    float *out, *lse, *dqkv, *dq2; /* downloaded */
};

static void usage(void) {
    printf("usage: tessera-attention-dev [--version reference|flash|all] [--dtype bf16|fp32]\n"
           "       [--B 8] [--T 1024] [--NH 12] [--HS 64] [--amp 1] [--repeats 20]\n"
           "       [--check-b 1 (batch rows checked against the CPU; 0: none)] [--seed N]\n");
}

static void fill(float *x, int64_t n, uint64_t seed, float amp, bool round16) {
    for (int64_t i = 0; i < n; i++) {
        const float v = amp * (2.0f * ts_rng_uniform(seed, (uint64_t)i) - 1.0f);
        x[i] = round16 ? ts_bf16_round(v) : v;
    }
}

static ts_status put(struct ts_backend *be, const struct ts_tensor *t, const float *h, int64_t n) {
    if (t->dtype != TS_DTYPE_BF16)
        return ts_op_upload(be, t, h, (size_t)n * 4);
    uint16_t *tmp = malloc((size_t)n * 2);
    if (!tmp)
        return ts_error(TS_ERR_OOM, "attention_dev: out of memory");
    for (int64_t i = 0; i < n; i++)
        tmp[i] = ts_bf16_from_f32(h[i]);
    ts_status st = ts_op_upload(be, t, tmp, (size_t)n * 2);
    free(tmp);
    return st;
}

static ts_status get(struct ts_backend *be, float *h, const struct ts_tensor *t, int64_t n) {
    if (t->dtype != TS_DTYPE_BF16)
        return ts_op_download(be, h, t, (size_t)n * 4);
    uint16_t *tmp = malloc((size_t)n * 2);
    if (!tmp)
        return ts_error(TS_ERR_OOM, "attention_dev: out of memory");
    ts_status st = ts_op_download(be, tmp, t, (size_t)n * 2);
    for (int64_t i = 0; st == TS_OK && i < n; i++)
        h[i] = ts_f32_from_bf16(tmp[i]);
    free(tmp);
    return st;
}

/* ||a - r|| / ||r|| over n; non-finite elements make it infinite. */
static double rel_l2(const float *a, const float *r, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        num += ((double)a[i] - r[i]) * ((double)a[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
}

static int cmp_f(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The device tensors of one version. */
struct dev {
    struct ts_tensor qkv, dout, out, dqkv, att, scratch; /* att, scratch: (B,NH,T,T) or (B,NH,T) */
    bool flash;
    int NH;
};

static ts_status run_fwd(struct ts_backend *be, struct dev *d) {
    if (d->flash)
        return ts_op_flash_attention_forward(be, &d->out, &d->att, &d->qkv, d->NH);
    return ts_op_attention_forward(be, &d->out, &d->att, &d->qkv, d->NH);
}

static ts_status run_bwd(struct ts_backend *be, struct dev *d) {
    if (d->flash)
        return ts_op_flash_attention_backward(be, &d->dqkv, &d->scratch, &d->dout, &d->qkv, &d->out,
                                              &d->att, d->NH);
    return ts_op_attention_backward(be, &d->dqkv, &d->scratch, &d->dout, &d->qkv, &d->att, d->NH);
}

/* Median milliseconds of `repeats` calls of f after 3 warm-up calls. */
static ts_status time_ms(struct ts_backend *be, ts_status (*f)(struct ts_backend *, struct dev *),
                         struct dev *d, int repeats, float *ms) {
    ts_event_t *a = NULL, *b = NULL;
    float *t = calloc((size_t)repeats, sizeof(float));
    ts_status st = t ? TS_OK : ts_error(TS_ERR_OOM, "attention_dev: out of memory");
    TS_CHECK_GOTO(st, st, exit);
    TS_CHECK_GOTO(ts_op_event_create(be, &a), st, exit);
    TS_CHECK_GOTO(ts_op_event_create(be, &b), st, exit);
    for (int i = 0; i < 3; i++)
        TS_CHECK_GOTO(f(be, d), st, exit);
    for (int i = 0; i < repeats; i++) {
        TS_CHECK_GOTO(ts_op_event_record(be, a), st, exit);
        TS_CHECK_GOTO(f(be, d), st, exit);
        TS_CHECK_GOTO(ts_op_event_record(be, b), st, exit);
        TS_CHECK_GOTO(ts_op_event_sync(be, b), st, exit);
        TS_CHECK_GOTO(ts_op_event_elapsed_ms(be, a, b, &t[i]), st, exit);
    }
    qsort(t, (size_t)repeats, sizeof(float), cmp_f);
    *ms = t[repeats / 2];
exit:
    ts_op_event_destroy(be, a);
    ts_op_event_destroy(be, b);
    free(t);
    return st;
}

static void free_dev(struct ts_backend *be, struct dev *d) {
    struct ts_tensor *all[] = {&d->qkv, &d->dout, &d->out, &d->dqkv, &d->att, &d->scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ts_op_free(be, all[i]);
}

/* One version: validate against the reference, check repeatability, time. *pass is the
 * verdict; a returned error means the device failed. */
static ts_status run_version(struct ts_backend *gpu, const char *dev_name, const struct opts *o,
                             bool flash, struct host *h, bool *pass) {
    const int64_t B = o->B, T = o->T, NH = o->NH, C = NH * o->HS;
    const int64_t nqkv = B * T * 3 * C, nout = B * T * C, nrow = B * NH * T;
    const int64_t cb = o->check_b;
    struct dev d = {.flash = flash, .NH = o->NH};
    ts_status st = TS_OK;
    const int64_t sq[3] = {B, T, 3 * C}, so[3] = {B, T, C};
    const int64_t sa[4] = {B, NH, T, T}, sl[3] = {B, NH, T};
    TS_CHECK_GOTO(ts_op_alloc(gpu, &d.qkv, o->dt, 3, sq), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(gpu, &d.dout, o->dt, 3, so), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(gpu, &d.out, o->dt, 3, so), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(gpu, &d.dqkv, o->dt, 3, sq), st, exit);
    if (flash) {
        TS_CHECK_GOTO(ts_op_alloc(gpu, &d.att, TS_DTYPE_F32, 3, sl), st, exit);
        TS_CHECK_GOTO(ts_op_alloc(gpu, &d.scratch, TS_DTYPE_F32, 3, sl), st, exit);
    } else {
        TS_CHECK_GOTO(ts_op_alloc(gpu, &d.att, o->dt, 4, sa), st, exit);
        TS_CHECK_GOTO(ts_op_alloc(gpu, &d.scratch, o->dt, 4, sa), st, exit);
    }
    TS_CHECK_GOTO(put(gpu, &d.qkv, h->qkv, nqkv), st, exit);
    TS_CHECK_GOTO(put(gpu, &d.dout, h->dout, nout), st, exit);
    TS_CHECK_GOTO(run_fwd(gpu, &d), st, exit);
    TS_CHECK_GOTO(run_bwd(gpu, &d), st, exit);
    TS_CHECK_GOTO(get(gpu, h->out, &d.out, nout), st, exit);
    TS_CHECK_GOTO(get(gpu, h->dqkv, &d.dqkv, nqkv), st, exit);
    if (flash)
        TS_CHECK_GOTO(ts_op_download(gpu, h->lse, &d.att, (size_t)nrow * 4), st, exit);
    TS_CHECK_GOTO(run_bwd(gpu, &d), st, exit);
    TS_CHECK_GOTO(get(gpu, h->dq2, &d.dqkv, nqkv), st, exit);
    const bool det = memcmp(h->dq2, h->dqkv, (size_t)nqkv * sizeof(float)) == 0;

    double r_out = -1, r_dqkv = -1, r_lse = -1;
    const bool bf = o->dt == TS_DTYPE_BF16;
    const double tol_out = bf ? 2e-2 : 1e-4, tol_dqkv = bf ? 3e-2 : 1e-4, tol_lse = 1e-4;
    bool ok = det;
    if (cb > 0) {
        r_out = rel_l2(h->out, h->ref_out, cb * T * C);
        r_dqkv = rel_l2(h->dqkv, h->ref_dqkv, cb * T * 3 * C);
        ok = ok && r_out <= tol_out && r_dqkv <= tol_dqkv;
        if (flash) {
            r_lse = rel_l2(h->lse, h->ref_lse, cb * NH * T);
            ok = ok && r_lse <= tol_lse;
        }
    }
    float fwd_ms = 0, bwd_ms = 0;
    TS_CHECK_GOTO(time_ms(gpu, run_fwd, &d, o->repeats, &fwd_ms), st, exit);
    TS_CHECK_GOTO(time_ms(gpu, run_bwd, &d, o->repeats, &bwd_ms), st, exit);
    const double pairs = (double)B * NH * (double)T * (double)(T + 1) / 2.0;
    const double fwd_flops = 2.0 * 2.0 * o->HS * pairs, bwd_flops = 2.5 * fwd_flops;
    printf("{\"bench\":\"attention\",\"version\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\","
           "\"B\":%d,\"T\":%d,\"NH\":%d,\"HS\":%d,\"amp\":%g,\"fwd_ms\":%.4f,\"bwd_ms\":%.4f,"
           "\"fwd_tflops\":%.2f,\"bwd_tflops\":%.2f,\"rel_out\":%.3e,\"rel_lse\":%.3e,"
           "\"rel_dqkv\":%.3e,\"deterministic\":%s,\"pass\":%s}\n",
           flash ? "flash" : "reference", dev_name, bf ? "bf16" : "fp32", o->B, o->T, o->NH, o->HS,
           (double)o->amp, (double)fwd_ms, (double)bwd_ms, fwd_flops / (fwd_ms * 1e9),
           bwd_flops / (bwd_ms * 1e9), r_out, r_lse, r_dqkv, det ? "true" : "false",
           ok ? "true" : "false");
    fflush(stdout);
    *pass = ok;
exit:
    free_dev(gpu, &d);
    return st;
}

/* The CPU reference over the first check_b batch rows. */
static ts_status reference(struct ts_backend *cpu, const struct opts *o, struct host *h) {
    const int64_t Bc = o->check_b, T = o->T, NH = o->NH, C = NH * o->HS;
    struct ts_tensor q = {0}, d = {0}, out = {0}, lse = {0}, dq = {0}, sc = {0};
    const int64_t sq[3] = {Bc, T, 3 * C}, so[3] = {Bc, T, C}, sl[3] = {Bc, NH, T};
    ts_status st = TS_OK;
    TS_CHECK_GOTO(ts_op_alloc(cpu, &q, TS_DTYPE_F32, 3, sq), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(cpu, &d, TS_DTYPE_F32, 3, so), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(cpu, &out, TS_DTYPE_F32, 3, so), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(cpu, &lse, TS_DTYPE_F32, 3, sl), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(cpu, &dq, TS_DTYPE_F32, 3, sq), st, exit);
    TS_CHECK_GOTO(ts_op_alloc(cpu, &sc, TS_DTYPE_F32, 3, sl), st, exit);
    TS_CHECK_GOTO(ts_op_upload(cpu, &q, h->qkv, (size_t)(Bc * T * 3 * C) * 4), st, exit);
    TS_CHECK_GOTO(ts_op_upload(cpu, &d, h->dout, (size_t)(Bc * T * C) * 4), st, exit);
    TS_CHECK_GOTO(ts_op_flash_attention_forward(cpu, &out, &lse, &q, o->NH), st, exit);
    TS_CHECK_GOTO(ts_op_flash_attention_backward(cpu, &dq, &sc, &d, &q, &out, &lse, o->NH), st,
                  exit);
    TS_CHECK_GOTO(ts_op_download(cpu, h->ref_out, &out, (size_t)(Bc * T * C) * 4), st, exit);
    TS_CHECK_GOTO(ts_op_download(cpu, h->ref_lse, &lse, (size_t)(Bc * NH * T) * 4), st, exit);
    TS_CHECK_GOTO(ts_op_download(cpu, h->ref_dqkv, &dq, (size_t)(Bc * T * 3 * C) * 4), st, exit);
exit:
    ts_op_free(cpu, &q);
    ts_op_free(cpu, &d);
    ts_op_free(cpu, &out);
    ts_op_free(cpu, &lse);
    ts_op_free(cpu, &dq);
    ts_op_free(cpu, &sc);
    return st;
}

static bool parse(int argc, char **argv, struct opts *o) {
    for (int i = 1; i < argc; i += 2) { /* flag and value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return false;
        if (strcmp(a, "--version") == 0)
            o->version = v;
        else if (strcmp(a, "--dtype") == 0 && strcmp(v, "bf16") == 0)
            o->dt = TS_DTYPE_BF16;
        else if (strcmp(a, "--dtype") == 0 && strcmp(v, "fp32") == 0)
            o->dt = TS_DTYPE_F32;
        else if (strcmp(a, "--B") == 0)
            o->B = atoi(v);
        else if (strcmp(a, "--T") == 0)
            o->T = atoi(v);
        else if (strcmp(a, "--NH") == 0)
            o->NH = atoi(v);
        else if (strcmp(a, "--HS") == 0)
            o->HS = atoi(v);
        else if (strcmp(a, "--amp") == 0)
            o->amp = (float)atof(v);
        else if (strcmp(a, "--repeats") == 0)
            o->repeats = atoi(v);
        else if (strcmp(a, "--check-b") == 0)
            o->check_b = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10);
        else
            return false;
    }
    const bool version_ok = strcmp(o->version, "reference") == 0 ||
                            strcmp(o->version, "flash") == 0 || strcmp(o->version, "all") == 0;
    return version_ok && o->B >= 1 && o->T >= 1 && o->NH >= 1 && o->HS >= 1 && o->repeats >= 1 &&
           o->check_b >= 0 && o->check_b <= o->B && o->amp > 0;
}

int main(int argc, char **argv) {
    struct opts o = {"all", TS_DTYPE_BF16, 8, 1024, 12, 64, 20, 1, 1.0f, 1};
    if (!parse(argc, argv, &o)) {
        usage();
        return EXIT_USAGE;
    }
    const struct ts_cuda_plugin *plugin = NULL;
    if (ts_cuda_plugin_open(&plugin) != TS_OK) {
        printf("tessera-attention-dev: no CUDA plug-in: %s\n", ts_last_error());
        return EXIT_NO_PLUGIN;
    }
    struct ts_device_list devs;
    plugin->probe(&devs);
    if (devs.count == 0) {
        printf("tessera-attention-dev: no GPU: %s\n", devs.error);
        return EXIT_NO_GPU;
    }
    struct ts_backend *cpu = NULL, *gpu = NULL;
    if (ts_cpu_backend_create(&cpu, NULL) != TS_OK || ts_cuda_backend_create(&gpu, NULL) != TS_OK) {
        printf("tessera-attention-dev: cannot create the backends: %s\n", ts_last_error());
        ts_backend_destroy(cpu);
        return EXIT_FAILED;
    }
    struct ts_backend_info gi;
    gpu->info(gpu, &gi);
    const int64_t C = (int64_t)o.NH * o.HS, nqkv = (int64_t)o.B * o.T * 3 * C;
    const int64_t nout = (int64_t)o.B * o.T * C, nrow = (int64_t)o.B * o.NH * o.T;
    struct host h = {0};
    h.qkv = malloc((size_t)nqkv * 4);
    h.dout = malloc((size_t)nout * 4);
    h.ref_out = malloc((size_t)nout * 4);
    h.ref_lse = malloc((size_t)nrow * 4);
    h.ref_dqkv = malloc((size_t)nqkv * 4);
    h.out = malloc((size_t)nout * 4);
    h.lse = malloc((size_t)nrow * 4);
    h.dqkv = malloc((size_t)nqkv * 4);
    h.dq2 = malloc((size_t)nqkv * 4);
    int code = EXIT_PASS;
    if (!h.qkv || !h.dout || !h.ref_out || !h.ref_lse || !h.ref_dqkv || !h.out || !h.lse ||
        !h.dqkv || !h.dq2) {
        printf("tessera-attention-dev: out of host memory\n");
        code = EXIT_FAILED;
        goto done;
    }
    const bool bf = o.dt == TS_DTYPE_BF16;
    fill(h.qkv, nqkv, ts_rng_mix(o.seed), o.amp, bf);
    fill(h.dout, nout, ts_rng_mix(o.seed + 1), 1.0f, bf);
    if (o.check_b > 0 && reference(cpu, &o, &h) != TS_OK) {
        printf("ERROR reference: %s\n", ts_last_error());
        code = EXIT_FAILED;
        goto done;
    }
    for (int v = 0; v < 2; v++) {
        const bool flash = v == 1;
        if (strcmp(o.version, "all") != 0 && strcmp(o.version, flash ? "flash" : "reference") != 0)
            continue;
        bool pass = false;
        if (run_version(gpu, gi.name, &o, flash, &h, &pass) != TS_OK) {
            printf("ERROR %s: %s\n", flash ? "flash" : "reference", ts_last_error());
            code = EXIT_FAILED;
            goto done; /* a device fault may have poisoned the context */
        }
        if (!pass)
            code = EXIT_FAILED;
    }
done:
    free(h.qkv), free(h.dout), free(h.ref_out), free(h.ref_lse), free(h.ref_dqkv);
    free(h.out), free(h.lse), free(h.dqkv), free(h.dq2);
    ts_backend_destroy(gpu);
    ts_backend_destroy(cpu);
    return code;
}
