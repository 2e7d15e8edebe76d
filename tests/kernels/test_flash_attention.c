/* test_flash_attention.c: the flash attention pair on the CPU, and the CUDA kernels' algorithm
 * emulated on the host.
 *
 * The CUDA flash kernels cannot run on a machine without a GPU, so this file replays their tile
 * loops in fp32, in the kernels' order and with their block sizes (forward BR x BC = 64 x 64
 * (bf16) and 32 x 32 (f32); backward 64-row CTAs with inner tiles of 64 (bf16, HS 64), 32 (bf16,
 * HS 128) and 32-row CTAs with tiles of 32 (f32)): the online softmax in log2 units, the causal
 * mask only on tiles that reach past the CTA's first query, the skipped tiles, zero rows past T,
 * the per-thread partial sums of the bf16 forward, lse, and the backward's recomputation of P
 * from lse with D = dout.out. Every (query, key <= query) pair must be visited exactly once by
 * each pass, and the results must match the CPU's materialised attention. What this cannot
 * check is the device code itself: fragment layouts, shared-memory indexing, bf16 rounding. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

struct shape {
    int B, T, C, NH;
};

/* ---- the emulation ---- */

/* q, k or v (part 0, 1, 2) of head h, row t; rows >= T read as zeros (the kernels' padding). */
static const float *row_of(const float *qkv, const float *zeros, struct shape s, int b, int h,
                           int t, int part) {
    const int HS = s.C / s.NH;
    if (t >= s.T)
        return zeros;
    return qkv + ((int64_t)b * s.T + t) * 3 * s.C + part * s.C + h * HS;
}

static float dotf(const float *a, const float *b, int n) {
    float r = 0.0f;
    for (int i = 0; i < n; i++)
        r += a[i] * b[i];
    return r;
}

/* Forward: CTAs of BR query rows, key tiles of BC. quad: the bf16 kernel's row sum, kept as
 * four per-thread partials (columns (j % 8) / 2) and summed in butterfly order at the end.
 * visits (B NH T T) counts the unmasked (query < T, key) pairs. */
static void emu_forward(const float *qkv, float *out, float *lse, struct shape s, int BR, int BC,
                        bool quad, int *visits) {
    const int HS = s.C / s.NH, T = s.T;
    const float sl2 = LOG2E / sqrtf((float)HS);
    float *zeros = calloc((size_t)HS, sizeof(float));
    float *o = malloc((size_t)HS * sizeof(float));
    float *x = malloc((size_t)BC * sizeof(float));
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++)
            for (int q0 = 0; q0 < T; q0 += BR) {
                const int last = q0 + BR < T ? q0 + BR : T;
                const int nkb = (last + BC - 1) / BC;
                for (int r = 0; r < BR; r++) { /* each row's state is its thread's own */
                    const int q = q0 + r;
                    const float *qr = row_of(qkv, zeros, s, b, h, q, 0);
                    float m2 = -INFINITY, l[4] = {0, 0, 0, 0};
                    memset(o, 0, (size_t)HS * sizeof(float));
                    for (int kb = 0; kb < nkb; kb++) {
                        const int k0 = kb * BC;
                        const bool diag = k0 + BC - 1 > q0;
                        float mx = -INFINITY;
                        for (int j = 0; j < BC; j++) {
                            const int key = k0 + j;
                            const float xs =
                                dotf(qr, row_of(qkv, zeros, s, b, h, key, 1), HS) * sl2;
                            x[j] = diag && key > q ? -INFINITY : xs;
                            mx = fmaxf(mx, x[j]);
                            if (x[j] != -INFINITY && q < T) {
                                cr_assert_lt(key, T, "forward: key %d >= T %d unmasked", key, T);
                                visits[(((int64_t)b * s.NH + h) * T + q) * T + key]++;
                            }
                        }
                        const float mnew = fmaxf(m2, mx);
                        const float msafe = mnew == -INFINITY ? 0.0f : mnew;
                        const float alpha = exp2f(m2 - msafe);
                        m2 = mnew;
                        float sum[4] = {0, 0, 0, 0};
                        for (int j = 0; j < BC; j++) {
                            x[j] = exp2f(x[j] - msafe);
                            sum[quad ? (j % 8) / 2 : 0] += x[j];
                        }
                        for (int c = 0; c < 4; c++)
                            l[c] = l[c] * alpha + sum[c];
                        for (int d = 0; d < HS; d++) {
                            float acc = o[d] * alpha;
                            for (int j = 0; j < BC; j++)
                                acc += x[j] * row_of(qkv, zeros, s, b, h, k0 + j, 2)[d];
                            o[d] = acc;
                        }
                    }
                    if (q >= T)
                        continue;
                    const float lt = (l[0] + l[1]) + (l[2] + l[3]);
                    float *orow = out + ((int64_t)b * T + q) * s.C + h * HS;
                    for (int d = 0; d < HS; d++)
                        orow[d] = o[d] * (1.0f / lt);
                    lse[((int64_t)b * s.NH + h) * T + q] = (m2 + log2f(lt)) * LN2;
                }
            }
    free(zeros);
    free(o);
    free(x);
}

/* Backward: D = dout.out; dK, dV by CTAs of BK keys over query tiles of N from the one holding
 * the CTA's first key; dQ by CTAs of BK queries over key tiles of N up to the CTA's last query.
 * vkv and vq (B NH T T) count the pairs each pass uses. */
static void emu_backward(const float *qkv, const float *dout, const float *out, const float *lse,
                         float *dqkv, struct shape s, int BK, int N, int *vkv, int *vq) {
    const int HS = s.C / s.NH, T = s.T, C = s.C;
    const float scale = 1.0f / sqrtf((float)HS), sl2 = LOG2E * scale;
    float *Dv = malloc((size_t)s.B * s.NH * T * sizeof(float));
    float *acc = malloc((size_t)2 * HS * sizeof(float));
    float *zeros = calloc((size_t)HS, sizeof(float));
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++)
            for (int t = 0; t < T; t++) {
                const int64_t off = ((int64_t)b * T + t) * C + h * HS;
                Dv[((int64_t)b * s.NH + h) * T + t] = dotf(dout + off, out + off, HS);
            }
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++) {
            const int64_t bh = (int64_t)b * s.NH + h;
            /* 2. dK, dV */
            for (int k0 = 0; k0 < T; k0 += BK)
                for (int r = 0; r < BK; r++) {
                    const int key = k0 + r;
                    const float *kr = row_of(qkv, zeros, s, b, h, key, 1);
                    const float *vr = row_of(qkv, zeros, s, b, h, key, 2);
                    float *dk = acc, *dv = acc + HS;
                    memset(acc, 0, (size_t)2 * HS * sizeof(float));
                    for (int q0 = k0 / N * N; q0 < T; q0 += N)
                        for (int i = 0; i < N; i++) {
                            const int q = q0 + i;
                            if (q >= T || key > q)
                                continue;
                            vkv[(bh * T + q) * T + key]++;
                            const float *qr = row_of(qkv, zeros, s, b, h, q, 0);
                            const float *dor = dout + ((int64_t)b * T + q) * C + h * HS;
                            const float p = exp2f(dotf(kr, qr, HS) * sl2 - lse[bh * T + q] * LOG2E);
                            const float ds = p * (dotf(vr, dor, HS) - Dv[bh * T + q]);
                            for (int d = 0; d < HS; d++) {
                                dv[d] += p * dor[d];
                                dk[d] += ds * qr[d];
                            }
                        }
                    if (key >= T)
                        continue;
                    float *row = dqkv + ((int64_t)b * T + key) * 3 * C + h * HS;
                    for (int d = 0; d < HS; d++) {
                        row[C + d] = dk[d] * scale;
                        row[2 * C + d] = dv[d];
                    }
                }
            /* 3. dQ */
            for (int q0 = 0; q0 < T; q0 += BK) {
                const int last = q0 + BK < T ? q0 + BK : T;
                const int nkb = (last + N - 1) / N;
                for (int r = 0; r < BK; r++) {
                    const int q = q0 + r;
                    if (q >= T)
                        continue; /* computed on the device, never stored */
                    const float *qr = row_of(qkv, zeros, s, b, h, q, 0);
                    const float *dor = dout + ((int64_t)b * T + q) * C + h * HS;
                    float *dq = acc;
                    memset(acc, 0, (size_t)HS * sizeof(float));
                    for (int kb = 0; kb < nkb; kb++)
                        for (int j = 0; j < N; j++) {
                            const int key = kb * N + j;
                            if (key > q)
                                continue;
                            vq[(bh * T + q) * T + key]++;
                            const float *kr = row_of(qkv, zeros, s, b, h, key, 1);
                            const float p = exp2f(dotf(qr, kr, HS) * sl2 - lse[bh * T + q] * LOG2E);
                            const float ds =
                                p * (dotf(dor, row_of(qkv, zeros, s, b, h, key, 2), HS) -
                                     Dv[bh * T + q]);
                            for (int d = 0; d < HS; d++)
                                dq[d] += ds * kr[d];
                        }
                    float *row = dqkv + ((int64_t)b * T + q) * 3 * C + h * HS;
                    for (int d = 0; d < HS; d++)
                        row[d] = dq[d] * scale;
                }
            }
        }
    free(Dv);
    free(acc);
    free(zeros);
}

/* ---- checks ---- */

static double rel_l2(const float *a, const float *r, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(isfinite(a[i]), "element %lld is %f", (long long)i, a[i]);
        num += ((double)a[i] - r[i]) * ((double)a[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static void assert_each_pair_once(const int *v, struct shape s, const char *pass) {
    for (int64_t bh = 0; bh < (int64_t)s.B * s.NH; bh++)
        for (int q = 0; q < s.T; q++)
            for (int k = 0; k < s.T; k++)
                cr_assert_eq(v[(bh * s.T + q) * s.T + k], k <= q,
                             "%s: (bh %lld, query %d, key %d) visited %d times", pass,
                             (long long)bh, q, k, v[(bh * s.T + q) * s.T + k]);
}

/* lse in double from q and k */
static double lse_ref(const float *qkv, struct shape s, int b, int h, int t) {
    const int HS = s.C / s.NH;
    const double scale = 1.0 / sqrt((double)HS);
    double mx = -INFINITY, sum = 0;
    const float *q = qkv + ((int64_t)b * s.T + t) * 3 * s.C + h * HS;
    for (int pass = 0; pass < 2; pass++)
        for (int t2 = 0; t2 <= t; t2++) {
            const float *k = qkv + ((int64_t)b * s.T + t2) * 3 * s.C + s.C + h * HS;
            double d = 0;
            for (int i = 0; i < HS; i++)
                d += (double)q[i] * k[i];
            d *= scale;
            if (pass == 0)
                mx = d > mx ? d : mx;
            else
                sum += exp(d - mx);
        }
    return mx + log(sum);
}

struct blocks {
    int fwd_br, fwd_bc;
    bool quad;
    int bwd_bk, bwd_n;
    const char *what;
};

/* The kernels' block structures: bf16 HS 64, bf16 HS 128, f32. */
static const struct blocks kernel_blocks[] = {
    {64, 64, true, 64, 64, "bf16 HS 64"},
    {64, 64, true, 64, 32, "bf16 HS 128"},
    {32, 32, false, 32, 32, "f32"},
};

/* Emulation vs the CPU's attention_forward/backward on one shape, qkv uniform in +-amp. */
static void check_emulation(struct shape s, float amp, double tol) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    const int64_t nqkv = (int64_t)s.B * s.T * 3 * s.C, nout = (int64_t)s.B * s.T * s.C;
    const int64_t natt = (int64_t)s.B * s.NH * s.T * s.T, nrow = (int64_t)s.B * s.NH * s.T;
    float *qkv = th_alloc(nqkv), *dout = th_alloc(nout), *out = th_alloc(nout);
    float *att = th_alloc(natt), *scr = th_alloc(natt), *dqkv = th_alloc(nqkv);
    float *eout = th_alloc(nout), *elsev = th_alloc(nrow), *edqkv = th_alloc(nqkv);
    int *v1 = calloc((size_t)natt, sizeof(int)), *v2 = calloc((size_t)natt, sizeof(int)),
        *v3 = calloc((size_t)natt, sizeof(int));
    th_rand(qkv, nqkv, 1000 + (uint64_t)s.T, amp);
    th_rand(dout, nout, 2000 + (uint64_t)s.T, 1.0f);
    struct ts_tensor tq = ts_tensor_3d(qkv, F32, s.B, s.T, 3 * s.C);
    struct ts_tensor to = ts_tensor_3d(out, F32, s.B, s.T, s.C);
    struct ts_tensor td = ts_tensor_3d(dout, F32, s.B, s.T, s.C);
    struct ts_tensor ta = ts_tensor_4d(att, F32, s.B, s.NH, s.T, s.T);
    struct ts_tensor ts = ts_tensor_4d(scr, F32, s.B, s.NH, s.T, s.T);
    struct ts_tensor tdq = ts_tensor_3d(dqkv, F32, s.B, s.T, 3 * s.C);
    cr_assert_eq(ts_op_attention_forward(be, &to, &ta, &tq, s.NH), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_op_attention_backward(be, &tdq, &ts, &td, &tq, &ta, s.NH), TS_OK, "%s",
                 ts_last_error());
    for (size_t k = 0; k < sizeof kernel_blocks / sizeof kernel_blocks[0]; k++) {
        const struct blocks *kb = &kernel_blocks[k];
        memset(v1, 0, (size_t)natt * sizeof(int));
        memset(v2, 0, (size_t)natt * sizeof(int));
        memset(v3, 0, (size_t)natt * sizeof(int));
        for (int64_t i = 0; i < nout; i++)
            eout[i] = NAN;
        for (int64_t i = 0; i < nqkv; i++)
            edqkv[i] = NAN;
        for (int64_t i = 0; i < nrow; i++)
            elsev[i] = NAN;
        emu_forward(qkv, eout, elsev, s, kb->fwd_br, kb->fwd_bc, kb->quad, v1);
        assert_each_pair_once(v1, s, "forward");
        /* the backward starts from the emulated forward, as on the device */
        emu_backward(qkv, dout, eout, elsev, edqkv, s, kb->bwd_bk, kb->bwd_n, v2, v3);
        assert_each_pair_once(v2, s, "backward dK/dV");
        assert_each_pair_once(v3, s, "backward dQ");
        const double ro = rel_l2(eout, out, nout), rd = rel_l2(edqkv, dqkv, nqkv);
        cr_assert_leq(ro, tol, "%s, T %d HS %d amp %g: out rel %.3e", kb->what, s.T, s.C / s.NH,
                      amp, ro);
        cr_assert_leq(rd, tol, "%s, T %d HS %d amp %g: dqkv rel %.3e", kb->what, s.T, s.C / s.NH,
                      amp, rd);
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.NH; h++)
                for (int t = 0; t < s.T; t++) {
                    const double want = lse_ref(qkv, s, b, h, t);
                    const float got = elsev[((int64_t)b * s.NH + h) * s.T + t];
                    cr_assert(fabs(got - want) <= 1e-5 * (1 + fabs(want)),
                              "%s: lse (%d,%d,%d) %f, expected %f", kb->what, b, h, t, got, want);
                }
    }
    free(qkv), free(dout), free(out), free(att), free(scr), free(dqkv);
    free(eout), free(elsev), free(edqkv), free(v1), free(v2), free(v3);
    ts_backend_destroy(be);
}

Test(kernels_flash_attention, emulated_tiles_match_cpu_odd_t_hs64) {
    const int Ts[] = {1, 17, 63, 64, 65, 127, 129};
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++)
        check_emulation((struct shape){1, Ts[i], 128, 2}, 1.0f, 2e-5);
}

Test(kernels_flash_attention, emulated_tiles_match_cpu_hs128) {
    const int Ts[] = {1, 31, 33, 100, 129};
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++)
        check_emulation((struct shape){2, Ts[i], 256, 2}, 1.0f, 2e-5);
}

/* qkv in +-8 puts scores at a standard deviation of about 21 (HS 64): the logits of trained
 * heads, where rounding scores before the softmax goes wrong. */
Test(kernels_flash_attention, emulated_tiles_match_cpu_large_logits) {
    const int Ts[] = {17, 129, 200};
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++)
        check_emulation((struct shape){1, Ts[i], 64, 1}, 8.0f, 1e-4);
}

/* The CPU's flash pair computes the materialised pair's out and dqkv, and lse. */
Test(kernels_flash_attention, cpu_pair_matches_materialised) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    const struct shape s = {2, 37, 24, 3};
    const int64_t nqkv = (int64_t)s.B * s.T * 3 * s.C, nout = (int64_t)s.B * s.T * s.C;
    const int64_t natt = (int64_t)s.B * s.NH * s.T * s.T, nrow = (int64_t)s.B * s.NH * s.T;
    float *qkv = th_alloc(nqkv), *dout = th_alloc(nout), *out = th_alloc(nout);
    float *att = th_alloc(natt), *scr = th_alloc(natt), *dqkv = th_alloc(nqkv);
    float *fout = th_alloc(nout), *lse = th_alloc(nrow), *fscr = th_alloc(nrow);
    float *fdqkv = th_alloc(nqkv);
    th_rand(qkv, nqkv, 7, 2.0f);
    th_rand(dout, nout, 8, 1.0f);
    memset(fout, 0xff, (size_t)nout * sizeof(float));
    memset(lse, 0xff, (size_t)nrow * sizeof(float));
    memset(fdqkv, 0xff, (size_t)nqkv * sizeof(float));
    struct ts_tensor tq = ts_tensor_3d(qkv, F32, s.B, s.T, 3 * s.C);
    struct ts_tensor to = ts_tensor_3d(out, F32, s.B, s.T, s.C);
    struct ts_tensor td = ts_tensor_3d(dout, F32, s.B, s.T, s.C);
    struct ts_tensor ta = ts_tensor_4d(att, F32, s.B, s.NH, s.T, s.T);
    struct ts_tensor ts = ts_tensor_4d(scr, F32, s.B, s.NH, s.T, s.T);
    struct ts_tensor tdq = ts_tensor_3d(dqkv, F32, s.B, s.T, 3 * s.C);
    struct ts_tensor tfo = ts_tensor_3d(fout, F32, s.B, s.T, s.C);
    struct ts_tensor tl = ts_tensor_3d(lse, F32, s.B, s.NH, s.T);
    struct ts_tensor tfs = ts_tensor_3d(fscr, F32, s.B, s.NH, s.T);
    struct ts_tensor tfd = ts_tensor_3d(fdqkv, F32, s.B, s.T, 3 * s.C);
    cr_assert_eq(ts_op_attention_forward(be, &to, &ta, &tq, s.NH), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_op_attention_backward(be, &tdq, &ts, &td, &tq, &ta, s.NH), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(ts_op_flash_attention_forward(be, &tfo, &tl, &tq, s.NH), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(ts_op_flash_attention_backward(be, &tfd, &tfs, &td, &tq, &tfo, &tl, s.NH), TS_OK,
                 "%s", ts_last_error());
    cr_assert_eq(memcmp(fout, out, (size_t)nout * sizeof(float)), 0, "out differs");
    cr_assert_eq(memcmp(fdqkv, dqkv, (size_t)nqkv * sizeof(float)), 0, "dqkv differs");
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++)
            for (int t = 0; t < s.T; t++) {
                const double want = lse_ref(qkv, s, b, h, t);
                const float got = lse[((int64_t)b * s.NH + h) * s.T + t];
                cr_assert(fabs(got - want) <= 1e-5 * (1 + fabs(want)), "lse %f, expected %f", got,
                          want);
            }
    /* the CPU model keeps the materialised pair */
    cr_assert_not(ts_op_flash_attention_usable(be, 64, F32));
    free(qkv), free(dout), free(out), free(att), free(scr), free(dqkv);
    free(fout), free(lse), free(fscr), free(fdqkv);
    ts_backend_destroy(be);
}

Test(kernels_flash_attention, rejects_a_wrong_lse_shape) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    float qkv[2 * 3 * 6] = {0}, out[2 * 3 * 2], lse[8];
    struct ts_tensor tq = ts_tensor_3d(qkv, F32, 1, 3, 6), to = ts_tensor_3d(out, F32, 1, 3, 2);
    struct ts_tensor tl = ts_tensor_3d(lse, F32, 1, 1, 4); /* T is 3 */
    cr_assert_eq(ts_op_flash_attention_forward(be, &to, &tl, &tq, 1), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "lse") != NULL, "%s", ts_last_error());
    ts_backend_destroy(be);
}
