/* test_cuda_emu.cpp: the CUDA kernels of gemm_fallback.cu, colsum.cu and dwte_sort.cu run on
 * the host, against the CPU backend's ops, without a GPU.
 *
 * The .cu files are compiled here as host C++ (TS_CUDA_HOST_EMU: their launch code left out),
 * with the grids their launchers use (cuda_geom.h). A CTA's threads are host threads: one pool
 * per launch, walking the CTAs in order with a barrier between them, __syncthreads a barrier
 * over the pool and __shared__ arrays statics (one CTA at a time uses them). Kernels without
 * barriers run their threads one after another in a loop (launch_serial), which makes grids of
 * 65,535 blocks affordable. So the kernels' indexing runs for real: grid-stride loops past the
 * grid limits, chunks and tiles with ragged edges, the sort's merges and the segment walk. What
 * it cannot check: timing, the hardware, and races the barriers hide (every shared-memory
 * hand-off in these kernels is behind __syncthreads). tests/kernels/test_flash_device.cpp does
 * the same for the flash attention kernels, with an mma.sync emulation. */
#include <criterion/criterion.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <pthread.h>
#include <thread>
#include <vector>

extern "C" {
#include "kernels/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
}

#include "tests/kernels/cuda_emu.h"

#include "kernels/cuda/colsum.cu"
#include "kernels/cuda/dwte_sort.cu"
#include "kernels/cuda/gemm_fallback.cu"

static unsigned blocks_for(int64_t n, int64_t per) { return (unsigned)((n + per - 1) / per); }

static float uni(uint64_t seed, uint64_t i, float lo, float hi) {
    return lo + (hi - lo) * ts_rng_uniform(seed, i);
}

static struct ts_backend *cpu(void) {
    struct ts_backend *be = NULL;
    struct ts_cpu_options o = {};
    o.threads = 1;
    o.blas = TS_BLAS_REFERENCE;
    cr_assert_eq(ts_cpu_backend_create(&be, &o), TS_OK, "%s", ts_last_error());
    return be;
}

static double rel_l2(const std::vector<float> &a, const std::vector<float> &r) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        cr_assert(std::isfinite(a[i]), "element %zu = %f", i, (double)a[i]);
        num += ((double)a[i] - r[i]) * ((double)a[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1e-30));
}

/* ---- the fallback gemm: grid-stride rows and batches ---- */

/* C (batch, m, n) = alpha A B + beta C + bias with A (m, k) (or stored (k, m) when ta), B (k, n)
 * (or (n, k) when tb); the kernel on the grid ts_gemm_fallback_grid gives for yz_max. */
static void check_gemm(int m, int n, int k, int batch, bool ta, bool tb, int64_t yz_max) {
    const int64_t sa = (int64_t)m * k, sb = (int64_t)k * n, sc = (int64_t)m * n;
    std::vector<float> A(sa * batch), B(sb * batch), bias(n), C(sc * batch), ref;
    for (size_t i = 0; i < A.size(); i++)
        A[i] = uni(1, i, -1, 1);
    for (size_t i = 0; i < B.size(); i++)
        B[i] = uni(2, i, -1, 1);
    for (int i = 0; i < n; i++)
        bias[i] = uni(3, (uint64_t)i, -1, 1);
    for (size_t i = 0; i < C.size(); i++)
        C[i] = uni(4, i, -1, 1);
    ref = C;
    const float alpha = 0.5f, beta = 0.25f;
    for (int z = 0; z < batch; z++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float acc = 0.0f;
                for (int p = 0; p < k; p++)
                    acc += A[z * sa + (ta ? (int64_t)p * m + i : (int64_t)i * k + p)] *
                           B[z * sb + (tb ? (int64_t)j * k + p : (int64_t)p * n + j)];
                float &c = ref[z * sc + (int64_t)i * n + j];
                c = alpha * acc + beta * c + bias[j];
            }
    fb_gemm g = {};
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    g.batch = batch;
    g.alpha = alpha;
    g.beta = beta;
    g.a = A.data();
    g.b = B.data();
    g.bias = bias.data();
    g.c = C.data();
    g.lda = ta ? m : k;
    g.ldb = tb ? k : n;
    g.ldc = n;
    g.stride_a = sa;
    g.stride_b = sb;
    g.stride_c = sc;
    const ts_grid3 gr = ts_gemm_fallback_grid(m, n, batch, yz_max);
    cr_assert(gr.y <= yz_max && gr.z <= yz_max, "grid (%u, %u, %u) over %lld", gr.x, gr.y, gr.z,
              (long long)yz_max);
    launch_serial({gr.x, gr.y, gr.z}, TS_GEMM_FB_THREADS,
                  [&] { gemm_fallback_kernel<float, float>(g); });
    for (size_t i = 0; i < C.size(); i++)
        cr_assert(std::fabs(C[i] - ref[i]) <= 1e-5f * (1 + std::fabs(ref[i])),
                  "m %d n %d batch %d: C[%zu] = %f, expected %f (rows past the grid unwritten?)", m,
                  n, batch, i, (double)C[i], (double)ref[i]);
}

Test(kernels_cuda_emu, fallback_grid_stays_within_limits) {
    ts_grid3 g = ts_gemm_fallback_grid(65536, 768, 1, TS_CUDA_GRID_YZ_MAX);
    cr_assert_eq(g.y, 65535u);
    cr_assert_eq(g.x, 6u);
    g = ts_gemm_fallback_grid(3, 1, 70000, TS_CUDA_GRID_YZ_MAX);
    cr_assert_eq(g.z, 65535u);
    cr_assert_eq(g.y, 3u);
    g = ts_gemm_fallback_grid(0, 5, 1, TS_CUDA_GRID_YZ_MAX);
    cr_assert_eq(g.x, 0u, "an empty C launches nothing");
}

/* B T = 70,000 rows (past 65,535) with the device's limit: every row written. */
Test(kernels_cuda_emu, fallback_gemm_past_65535_rows) {
    check_gemm(70000, 3, 2, 1, false, false, TS_CUDA_GRID_YZ_MAX);
}

/* Small limits so both strides wrap several times, with transposes and ragged column blocks. */
Test(kernels_cuda_emu, fallback_gemm_strides_rows_and_batches) {
    check_gemm(13, 130, 7, 7, false, false, 5);
    check_gemm(9, 3, 4, 3, true, true, 2);
    check_gemm(1, 1, 1, 1, false, true, 1);
}

/* ---- column sums ---- */

template <typename T> static std::vector<T> to_dev(const std::vector<float> &h);
template <> std::vector<float> to_dev<float>(const std::vector<float> &h) { return h; }
template <> std::vector<__nv_bfloat16> to_dev<__nv_bfloat16>(const std::vector<float> &h) {
    std::vector<__nv_bfloat16> r(h.size());
    for (size_t i = 0; i < h.size(); i++)
        r[i].bits = ts_bf16_from_f32(h[i]);
    return r;
}

/* What colsum_t launches: the partials over (tiles, chunks), then the final sum. */
template <typename T, bool LN>
static void run_colsum(std::vector<float> &out0, std::vector<float> &out1, const T *dout,
                       const T *inp, const float *mean, const float *rstd, int64_t N, int64_t C,
                       int chunks) {
    const int nout = LN ? 2 : 1;
    std::vector<float> part((size_t)chunks * nout * C, NAN);
    const int64_t rows = ts_colsum_rows_per_chunk(N, chunks);
    launch({blocks_for(C, TS_COLSUM_COLS), (unsigned)chunks, 1}, TS_COLSUM_GROUPS * 32, [&] {
        colsum_partial_kernel<T, LN>(part.data(), dout, inp, mean, rstd, N, (int)C, rows);
    });
    launch_serial({blocks_for(C, 256), 1, 1}, 256, [&] {
        colsum_final_kernel(out0.data(), out1.data(), part.data(), chunks, C, nout);
    });
}

Test(kernels_cuda_emu, colsum_chunks_are_a_function_of_the_shape) {
    cr_assert_eq(ts_colsum_chunks(8192, 768, 2, TS_COLSUM_PARTIAL_FLOATS), 64);
    cr_assert_eq(ts_colsum_chunks(1000, 768, 2, TS_COLSUM_PARTIAL_FLOATS), 8);
    cr_assert_eq(ts_colsum_chunks(1, 768, 1, TS_COLSUM_PARTIAL_FLOATS), 1);
    /* wide rows: fewer chunks, then none (the single-pass kernel) */
    cr_assert_eq(ts_colsum_chunks(8192, 100000, 2, TS_COLSUM_PARTIAL_FLOATS), 5);
    cr_assert_eq(ts_colsum_chunks(8192, 600000, 1, TS_COLSUM_PARTIAL_FLOATS), 1);
    cr_assert_eq(ts_colsum_chunks(8192, 600000, 2, TS_COLSUM_PARTIAL_FLOATS), 0);
    for (int64_t N = 1; N < 3000; N += 97) {
        const int ch = ts_colsum_chunks(N, 64, 2, TS_COLSUM_PARTIAL_FLOATS);
        const int64_t r = ts_colsum_rows_per_chunk(N, ch);
        cr_assert(ch >= 1 && (ch - 1) * r < N && ch * r >= N, "N %lld: %d chunks of %lld",
                  (long long)N, ch, (long long)r);
    }
}

/* layernorm's dweight, dbias (and the bias gradient) against the CPU op, "+=" from random
 * values, ragged tiles (C 130 = 2 x 64 + 2) and chunks (N 1000 = 7 x 143 + 999 mod 143), and
 * bit for bit again on a second run. */
template <typename T> static void check_colsum(int64_t N, int64_t C, double tol) {
    const bool bf = sizeof(T) == 2;
    std::vector<float> dout(N * C), inp(N * C), w(C), mean(N), rstd(N);
    for (int64_t i = 0; i < N * C; i++) {
        dout[i] = uni(5, (uint64_t)i, -1, 1);
        inp[i] = uni(6, (uint64_t)i, -2, 2);
        if (bf) {
            dout[i] = ts_bf16_round(dout[i]);
            inp[i] = ts_bf16_round(inp[i]);
        }
    }
    for (int64_t c = 0; c < C; c++)
        w[c] = uni(7, (uint64_t)c, 0.5f, 1.5f);
    for (int64_t n = 0; n < N; n++) {
        mean[n] = uni(8, (uint64_t)n, -0.5f, 0.5f);
        rstd[n] = uni(9, (uint64_t)n, 0.5f, 1.5f);
    }
    std::vector<float> dw0(C), db0(C);
    for (int64_t c = 0; c < C; c++) {
        dw0[c] = uni(10, (uint64_t)c, -1, 1);
        db0[c] = uni(11, (uint64_t)c, -1, 1);
    }
    /* the CPU op */
    struct ts_backend *be = cpu();
    std::vector<float> dinp(N * C, 0.0f), rdw = dw0, rdb = db0;
    struct ts_tensor tdi = ts_tensor_2d(dinp.data(), TS_DTYPE_F32, N, C);
    struct ts_tensor tdw = ts_tensor_1d(rdw.data(), TS_DTYPE_F32, C);
    struct ts_tensor tdb = ts_tensor_1d(rdb.data(), TS_DTYPE_F32, C);
    struct ts_tensor tdo = ts_tensor_2d(dout.data(), TS_DTYPE_F32, N, C);
    struct ts_tensor tin = ts_tensor_2d(inp.data(), TS_DTYPE_F32, N, C);
    struct ts_tensor tw = ts_tensor_1d(w.data(), TS_DTYPE_F32, C);
    struct ts_tensor tm = ts_tensor_1d(mean.data(), TS_DTYPE_F32, N);
    struct ts_tensor tr = ts_tensor_1d(rstd.data(), TS_DTYPE_F32, N);
    cr_assert_eq(ts_op_layernorm_backward(be, &tdi, &tdw, &tdb, &tdo, &tin, &tw, &tm, &tr), TS_OK,
                 "%s", ts_last_error());
    ts_backend_destroy(be);

    const std::vector<T> d = to_dev<T>(dout), x = to_dev<T>(inp);
    const int chunks = ts_colsum_chunks(N, C, 2, TS_COLSUM_PARTIAL_FLOATS);
    std::vector<float> kdb = db0, kdw = dw0;
    run_colsum<T, true>(kdb, kdw, d.data(), x.data(), mean.data(), rstd.data(), N, C, chunks);
    const double eb = rel_l2(kdb, rdb), ew = rel_l2(kdw, rdw);
    cr_log_info("colsum %s N %lld C %lld (%d chunks): dbias %.2e dweight %.2e", bf ? "bf16" : "f32",
                (long long)N, (long long)C, chunks, eb, ew);
    cr_assert_leq(eb, tol, "dbias rel %.3e", eb);
    cr_assert_leq(ew, tol, "dweight rel %.3e", ew);
    std::vector<float> again_b = db0, again_w = dw0;
    run_colsum<T, true>(again_b, again_w, d.data(), x.data(), mean.data(), rstd.data(), N, C,
                        chunks);
    cr_assert_eq(memcmp(again_b.data(), kdb.data(), C * sizeof(float)), 0, "dbias not repeatable");
    cr_assert_eq(memcmp(again_w.data(), kdw.data(), C * sizeof(float)), 0,
                 "dweight not repeatable");

    /* the bias gradient alone (nout 1) must equal layernorm's dbias bit for bit: same order */
    std::vector<float> bias = db0, unused;
    run_colsum<T, false>(bias, unused, d.data(), (const T *)NULL, NULL, NULL, N, C,
                         ts_colsum_chunks(N, C, 1, TS_COLSUM_PARTIAL_FLOATS));
    cr_assert_eq(memcmp(bias.data(), kdb.data(), C * sizeof(float)), 0,
                 "the bias gradient differs from layernorm's dbias");

    /* the legacy kernel agrees within rounding */
    std::vector<float> lb = db0, lw = dw0;
    launch({blocks_for(C, 32), 1, 1}, 1024, [&] {
        colsum_legacy_kernel<T, true>(lb.data(), lw.data(), d.data(), x.data(), mean.data(),
                                      rstd.data(), N, C);
    });
    cr_assert_leq(rel_l2(lb, rdb), tol);
    cr_assert_leq(rel_l2(lw, rdw), tol);
}

Test(kernels_cuda_emu, colsum_f32_against_the_cpu) {
    check_colsum<float>(1000, 130, 2e-6);
    check_colsum<float>(1, 5, 1e-6);
    check_colsum<float>(300, 64, 2e-6);
}

Test(kernels_cuda_emu, colsum_bf16_against_the_cpu) { check_colsum<__nv_bfloat16>(517, 70, 2e-6); }

/* ---- the wte gradient by sorted positions ---- */

/* What cuda_dwte_sorted launches, with `sum_blocks` summing blocks along x (the device's
 * TS_DWTE_SUM_BLOCKS; fewer here, so blocks stride over several segments). */
template <typename T>
static void run_dwte(std::vector<float> &dwte, const std::vector<T> &dout,
                     const std::vector<int32_t> &tok, int64_t C, int64_t Vp, unsigned sum_blocks,
                     std::vector<dwte_key> *sorted) {
    const int64_t n = (int64_t)tok.size();
    std::vector<dwte_key> k[2] = {std::vector<dwte_key>(n, 0), std::vector<dwte_key>(n, 0)};
    std::vector<int> heads(n + 1, -1), nheads(1, -1);
    launch({blocks_for(n, TS_DWTE_SORT_BLOCK), 1, 1}, TS_DWTE_SORT_THREADS,
           [&] { dwte_block_sort_kernel(k[0].data(), tok.data(), n, Vp); });
    int cur = 0, passes = 0;
    for (int64_t w = TS_DWTE_SORT_BLOCK; w < n; w *= 2, cur ^= 1, passes++)
        launch_serial({blocks_for(n, 256), 1, 1}, 256,
                      [&] { dwte_merge_kernel(k[cur ^ 1].data(), k[cur].data(), n, w); });
    cr_assert_eq(passes, ts_dwte_merge_passes(n));
    launch({1, 1, 1}, DWTE_HEAD_THREADS,
           [&] { dwte_heads_kernel(heads.data(), nheads.data(), k[cur].data(), n); });
    launch({sum_blocks, blocks_for(C, TS_DWTE_SUM_COLS), 1}, TS_DWTE_SUM_WARPS * 32, [&] {
        dwte_sum_kernel<T>(dwte.data(), dout.data(), k[cur].data(), heads.data(), nheads.data(), C);
    });
    if (sorted)
        *sorted = k[cur];
}

/* Tokens: a few frequent ids (long segments), a wide spread, ids never seen (Vp > the range
 * drawn), and with `bad` ids outside [0, Vp) that must be skipped. */
static std::vector<int32_t> tokens(int64_t n, int64_t Vp, bool bad, uint64_t seed) {
    std::vector<int32_t> t(n);
    for (int64_t i = 0; i < n; i++) {
        const float u = ts_rng_uniform(seed, (uint64_t)i);
        if (u < 0.4f)
            t[i] = (int32_t)(u * 10); /* ids 0..3, each hundreds of times */
        else
            t[i] = (int32_t)(ts_rng_uniform(seed + 1, (uint64_t)i) * (float)(Vp / 2));
        if (bad && i % 97 == 5)
            t[i] = i % 2 ? (int32_t)Vp : -1 - (int32_t)(i % 3);
    }
    return t;
}

template <typename T>
static void check_dwte(int64_t n, int64_t C, int64_t Vp, bool bad, unsigned sum_blocks,
                       double tol) {
    const bool bf = sizeof(T) == 2;
    const std::vector<int32_t> tok = tokens(n, Vp, bad, 20 + (uint64_t)n);
    std::vector<float> dout(n * C), dwte0(Vp * C);
    for (int64_t i = 0; i < n * C; i++) {
        dout[i] = uni(21, (uint64_t)i, -1, 1);
        if (bf)
            dout[i] = ts_bf16_round(dout[i]);
    }
    for (int64_t i = 0; i < Vp * C; i++)
        dwte0[i] = uni(22, (uint64_t)i, -1, 1);
    /* the reference: the CPU op where every id is valid, else the same sum skipping bad ids */
    std::vector<float> ref = dwte0;
    if (!bad) {
        struct ts_backend *be = cpu();
        std::vector<float> dwpe(n * C, 0.0f);
        struct ts_tensor tdw = ts_tensor_2d(ref.data(), TS_DTYPE_F32, Vp, C);
        struct ts_tensor tdp = ts_tensor_2d(dwpe.data(), TS_DTYPE_F32, n, C);
        struct ts_tensor tdo = ts_tensor_3d(dout.data(), TS_DTYPE_F32, 1, n, C);
        struct ts_tensor tt = ts_tensor_2d((void *)tok.data(), TS_DTYPE_I32, 1, n);
        cr_assert_eq(ts_op_encoder_backward(be, &tdw, &tdp, &tdo, &tt), TS_OK, "%s",
                     ts_last_error());
        ts_backend_destroy(be);
    } else {
        for (int64_t p = 0; p < n; p++)
            if (tok[p] >= 0 && tok[p] < Vp)
                for (int64_t c = 0; c < C; c++)
                    ref[tok[p] * C + c] += dout[p * C + c];
    }
    const std::vector<T> d = to_dev<T>(dout);
    std::vector<float> got = dwte0, again = dwte0;
    std::vector<dwte_key> sorted;
    run_dwte<T>(got, d, tok, C, Vp, sum_blocks, &sorted);
    /* the keys: sorted, a permutation of the positions, bad ids last */
    std::vector<char> seen(n, 0);
    for (int64_t i = 0; i < n; i++) {
        cr_assert(i == 0 || sorted[i - 1] < sorted[i], "keys not strictly increasing at %lld",
                  (long long)i);
        const int64_t p = dwte_pos(sorted[i]);
        cr_assert(p >= 0 && p < n && !seen[p], "position %lld lost or repeated", (long long)p);
        seen[p] = 1;
        const bool valid = tok[p] >= 0 && tok[p] < Vp;
        cr_assert_eq(dwte_id(sorted[i]), valid ? (uint32_t)tok[p] : (uint32_t)DWTE_BAD_ID);
    }
    /* rows of ids never seen are untouched */
    std::vector<char> used(Vp, 0);
    for (int32_t t : tok)
        if (t >= 0 && t < Vp)
            used[t] = 1;
    int64_t unseen = 0;
    for (int64_t v = 0; v < Vp; v++)
        if (!used[v]) {
            unseen++;
            cr_assert_eq(memcmp(&got[v * C], &dwte0[v * C], C * sizeof(float)), 0,
                         "row %lld of an id never seen changed", (long long)v);
        }
    cr_assert_gt(unseen, 0, "the case should leave ids unseen");
    const double e = rel_l2(got, ref);
    cr_log_info("dwte %s n %lld C %lld Vp %lld: rel %.2e", bf ? "bf16" : "f32", (long long)n,
                (long long)C, (long long)Vp, e);
    cr_assert_leq(e, tol, "dwte rel %.3e", e);
    run_dwte<T>(again, d, tok, C, Vp, sum_blocks + 2, NULL);
    cr_assert_eq(memcmp(again.data(), got.data(), got.size() * sizeof(float)), 0,
                 "dwte not bit-identical with another summing grid");
}

/* n 2500: three sort blocks (the last ragged), two merge passes, the last with a lone run */
Test(kernels_cuda_emu, dwte_sorted_f32_against_the_cpu) {
    check_dwte<float>(2500, 130, 300, false, 7, 1e-6);
    check_dwte<float>(1, 5, 4, false, 1, 1e-6);
    check_dwte<float>(1024, 33, 64, false, 3, 1e-6);
    check_dwte<float>(1025, 33, 2000, false, 5, 1e-6);
}

Test(kernels_cuda_emu, dwte_sorted_skips_ids_outside_the_table) {
    check_dwte<float>(1300, 20, 50, true, 4, 1e-6);
}

Test(kernels_cuda_emu, dwte_sorted_bf16_against_the_cpu) {
    check_dwte<__nv_bfloat16>(1500, 70, 100, false, 6, 1e-6);
}

/* The legacy scan kernel is encoder.cu's; the number of merge passes is a pure function of n. */
Test(kernels_cuda_emu, dwte_merge_passes) {
    cr_assert_eq(ts_dwte_merge_passes(1), 0);
    cr_assert_eq(ts_dwte_merge_passes(1024), 0);
    cr_assert_eq(ts_dwte_merge_passes(1025), 1);
    cr_assert_eq(ts_dwte_merge_passes(65536), 6);
}
