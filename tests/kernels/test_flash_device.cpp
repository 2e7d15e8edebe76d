/* test_flash_device.cpp: the CUDA flash attention kernels themselves, run on the host.
 *
 * flash_attention_forward.cu and flash_attention_backward.cu are compiled here as host C++
 * (FA_HOST_EMU: their launch code left out). Every CUDA thread of a CTA is a host thread;
 * __syncthreads is a barrier over the CTA, __shfl_xor_sync an exchange within the warp, and
 * mma.sync.m16n8k16 is computed from the fragments of all 32 lanes, placed by the PTX ISA's
 * fragment layout (written out below independently of the kernels' helpers). So the device
 * code's indexing runs for real: tile loads and transposes, fragment loads, the reuse of S's
 * accumulators as P's A operand, masks, row ownership, the output stores. What it cannot
 * check: that the hardware's layout is the PTX document's, timing, and races the barriers hide
 * (a host thread sees shared memory at once; the GPU's memory model is weaker only across
 * missing barriers, and every shared-memory hand-off in the kernels is behind __syncthreads). */
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

/* ---- what the kernels see of CUDA ---- */

#define FA_HOST_EMU 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) /* fa_smem below is 16-byte aligned */

struct emu_dim3 {
    unsigned x, y, z;
};
static thread_local emu_dim3 threadIdx;
static emu_dim3 blockIdx, blockDim, gridDim;

struct uint4 {
    unsigned x, y, z, w;
};
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return uint4{x, y, z, w};
}
using std::min;

struct __nv_bfloat16 {
    uint16_t bits;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y; /* x in the low half, as on the device */
};
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{{ts_bf16_from_f32(lo)}, {ts_bf16_from_f32(hi)}};
}
static inline float tof(float x) { return x; }
static inline float tof(__nv_bfloat16 x) { return ts_f32_from_bf16(x.bits); }

/* One CTA's barriers and each warp's exchange slots. */
struct emu_cta {
    pthread_barrier_t all;
    pthread_barrier_t warp[8];
    float fx[8][32];
    uint32_t a[8][32][4], b[8][32][2];
    float c[8][32][4];
};
static emu_cta *cta;

static inline void __syncthreads() { pthread_barrier_wait(&cta->all); }
static inline int emu_warp() { return (int)threadIdx.x >> 5; }
static inline void emu_warp_sync() { pthread_barrier_wait(&cta->warp[emu_warp()]); }

static inline float __shfl_xor_sync(unsigned mask, float v, int o) {
    (void)mask;
    const int w = emu_warp(), lane = (int)threadIdx.x & 31;
    cta->fx[w][lane] = v;
    emu_warp_sync();
    const float r = cta->fx[w][lane ^ o];
    emu_warp_sync();
    return r;
}

static float emu_bf16(uint32_t word, int half) {
    return ts_f32_from_bf16((uint16_t)(half ? word >> 16 : word & 0xffffu));
}

/* D = A B + C for the warp; PTX ISA, mma.m16n8k16 with .bf16: A[r][k] is in lane
 * 4 (r % 8) + (k % 8) / 2, register (r >= 8) + 2 (k >= 8), half k % 2; B[k][n] in lane
 * 4 n + (k % 8) / 2, register (k >= 8), half k % 2; C/D[r][n] in lane 4 (r % 8) + n / 2,
 * element 2 (r >= 8) + n % 2. */
static void fa_emu_mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    const int w = emu_warp(), lane = (int)threadIdx.x & 31;
    memcpy(cta->a[w][lane], a, sizeof(uint32_t) * 4);
    memcpy(cta->b[w][lane], b, sizeof(uint32_t) * 2);
    emu_warp_sync();
    const int g = lane >> 2, cc = lane & 3;
    for (int e = 0; e < 4; e++) {
        const int r = g + 8 * (e >> 1), n = 2 * cc + (e & 1);
        float acc = c[e];
        for (int k = 0; k < 16; k++) {
            const float av =
                emu_bf16(cta->a[w][4 * (r % 8) + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)], k % 2);
            const float bv = emu_bf16(cta->b[w][4 * n + (k % 8) / 2][k >= 8], k % 2);
            acc += av * bv;
        }
        c[e] = acc;
    }
    emu_warp_sync();
}

static inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

alignas(16) unsigned char fa_smem[128 * 1024];

#include "kernels/cuda/flash_attention_backward.cu"
#include "kernels/cuda/flash_attention_forward.cu"

/* Runs body once per thread of every CTA of grid, CTAs one after another. */
template <typename F> static void launch(unsigned gx, unsigned gy, int threads, F body) {
    gridDim = {gx, gy, 1};
    blockDim = {(unsigned)threads, 1, 1};
    emu_cta *c = new emu_cta;
    pthread_barrier_init(&c->all, NULL, (unsigned)threads);
    for (int w = 0; w < threads / 32; w++)
        pthread_barrier_init(&c->warp[w], NULL, 32);
    cta = c;
    for (unsigned y = 0; y < gy; y++)
        for (unsigned x = 0; x < gx; x++) {
            blockIdx = {x, y, 0};
            memset(fa_smem, 0xff, sizeof fa_smem); /* NaN-ish garbage: every read must be written */
            std::vector<std::thread> th;
            for (int t = 0; t < threads; t++)
                th.emplace_back([t, &body] {
                    threadIdx = {(unsigned)t, 0, 0};
                    body();
                });
            for (auto &t : th)
                t.join();
        }
    pthread_barrier_destroy(&c->all);
    for (int w = 0; w < threads / 32; w++)
        pthread_barrier_destroy(&c->warp[w]);
    delete c;
}

/* ---- the check ---- */

struct shape {
    int B, T, NH, HS;
    float amp;
};

/* Host data, the CPU's flash pair as the reference, and the kernels' results (as floats). */
struct run {
    std::vector<float> qkv, dout, out, lse, dqkv;          /* reference */
    std::vector<float> k_out, k_lse, k_dqkv, k_dqkv_again; /* kernels */
};

static void reference(const shape &s, run &r) {
    struct ts_backend *be = NULL;
    struct ts_cpu_options o = {};
    o.threads = 1;
    o.blas = TS_BLAS_REFERENCE;
    cr_assert_eq(ts_cpu_backend_create(&be, &o), TS_OK, "%s", ts_last_error());
    const int64_t C = (int64_t)s.NH * s.HS;
    struct ts_tensor q = ts_tensor_3d(r.qkv.data(), TS_DTYPE_F32, s.B, s.T, 3 * C);
    struct ts_tensor d = ts_tensor_3d(r.dout.data(), TS_DTYPE_F32, s.B, s.T, C);
    struct ts_tensor out = ts_tensor_3d(r.out.data(), TS_DTYPE_F32, s.B, s.T, C);
    struct ts_tensor lse = ts_tensor_3d(r.lse.data(), TS_DTYPE_F32, s.B, s.NH, s.T);
    struct ts_tensor dq = ts_tensor_3d(r.dqkv.data(), TS_DTYPE_F32, s.B, s.T, 3 * C);
    std::vector<float> scratch((size_t)s.B * s.NH * s.T);
    struct ts_tensor sc = ts_tensor_3d(scratch.data(), TS_DTYPE_F32, s.B, s.NH, s.T);
    cr_assert_eq(ts_op_flash_attention_forward(be, &out, &lse, &q, s.NH), TS_OK);
    cr_assert_eq(ts_op_flash_attention_backward(be, &dq, &sc, &d, &q, &out, &lse, s.NH), TS_OK);
    ts_backend_destroy(be);
}

static double rel_l2(const std::vector<float> &a, const std::vector<float> &r, const char *what) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        cr_assert(std::isfinite(a[i]), "%s[%zu] = %f (unwritten or not finite)", what, i, a[i]);
        num += ((double)a[i] - r[i]) * ((double)a[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1e-30));
}

template <typename T> static std::vector<T> to_dev(const std::vector<float> &h);
template <> std::vector<float> to_dev<float>(const std::vector<float> &h) { return h; }
template <> std::vector<bf16> to_dev<bf16>(const std::vector<float> &h) {
    std::vector<bf16> r(h.size());
    for (size_t i = 0; i < h.size(); i++)
        r[i].bits = ts_bf16_from_f32(h[i]);
    return r;
}
static std::vector<float> from_dev(const std::vector<float> &d) { return d; }
static std::vector<float> from_dev(const std::vector<bf16> &d) {
    std::vector<float> r(d.size());
    for (size_t i = 0; i < d.size(); i++)
        r[i] = ts_f32_from_bf16(d[i].bits);
    return r;
}

template <typename T, int D> static void run_kernels(const shape &s, run &r) {
    const bool bf = sizeof(T) == 2;
    const int T_ = s.T, NH = s.NH, C = NH * D;
    const unsigned bh = (unsigned)(s.B * NH);
    const float scale = 1.0f / sqrtf((float)D), sl2 = FA_LOG2E * scale;
    std::vector<T> qkv = to_dev<T>(r.qkv), dout = to_dev<T>(r.dout);
    std::vector<T> out = to_dev<T>(std::vector<float>(r.out.size(), NAN));
    std::vector<T> dqkv = to_dev<T>(std::vector<float>(r.dqkv.size(), NAN));
    std::vector<float> lse(r.lse.size(), NAN), Dv(r.lse.size(), NAN);
    const T *q = qkv.data(), *d = dout.data();
    if (bf) {
        launch((unsigned)((T_ + FWD_BR - 1) / FWD_BR), bh, 128, [&] {
            flash_fwd_bf16_kernel<D>((const bf16 *)q, (bf16 *)out.data(), lse.data(), T_, NH, C,
                                     sl2);
        });
    } else {
        launch((unsigned)((T_ + FWD32_BR - 1) / FWD32_BR), bh, FWD32_BR, [&] {
            flash_fwd_f32_kernel<D>((const float *)q, (float *)out.data(), lse.data(), T_, NH, C,
                                    sl2);
        });
    }
    r.k_out = from_dev(out);
    r.k_lse = lse;
    for (int pass = 0; pass < 2; pass++) {
        const int64_t rows = (int64_t)bh * T_;
        launch((unsigned)((rows + BWD_D_WARPS - 1) / BWD_D_WARPS), 1, BWD_D_WARPS * 32,
               [&] { flash_bwd_dot_kernel<T>(Dv.data(), d, out.data(), rows, T_, NH, C, D); });
        if (bf) {
            const unsigned gx = (unsigned)((T_ + BWD_BK - 1) / BWD_BK);
            launch(gx, bh, 128, [&] {
                flash_bwd_dkv_bf16_kernel<D>((bf16 *)dqkv.data(), (const bf16 *)q, (const bf16 *)d,
                                             lse.data(), Dv.data(), T_, NH, C, sl2, scale);
            });
            launch(gx, bh, 128, [&] {
                flash_bwd_dq_bf16_kernel<D>((bf16 *)dqkv.data(), (const bf16 *)q, (const bf16 *)d,
                                            lse.data(), Dv.data(), T_, NH, C, sl2, scale);
            });
        } else {
            const unsigned gx = (unsigned)((T_ + BWD32_R - 1) / BWD32_R);
            launch(gx, bh, BWD32_R, [&] {
                flash_bwd_dkv_f32_kernel<D>((float *)dqkv.data(), (const float *)q,
                                            (const float *)d, lse.data(), Dv.data(), T_, NH, C, sl2,
                                            scale);
            });
            launch(gx, bh, BWD32_R, [&] {
                flash_bwd_dq_f32_kernel<D>((float *)dqkv.data(), (const float *)q, (const float *)d,
                                           lse.data(), Dv.data(), T_, NH, C, sl2, scale);
            });
        }
        (pass == 0 ? r.k_dqkv : r.k_dqkv_again) = from_dev(dqkv);
    }
}

/* Inputs rounded to bf16 for the bf16 kernels, so the reference sees the kernels' values. */
template <typename T, int D> static void check(shape s, double tol_out, double tol_dqkv) {
    s.HS = D;
    const bool bf = sizeof(T) == 2;
    const int64_t C = (int64_t)s.NH * D, nqkv = (int64_t)s.B * s.T * 3 * C;
    const int64_t nout = (int64_t)s.B * s.T * C, nrow = (int64_t)s.B * s.NH * s.T;
    run r;
    r.qkv.resize(nqkv);
    r.dout.resize(nout);
    r.out.resize(nout);
    r.lse.resize(nrow);
    r.dqkv.resize(nqkv);
    for (int64_t i = 0; i < nqkv; i++) {
        const float v = s.amp * (2.0f * ts_rng_uniform(11 + s.T, (uint64_t)i) - 1.0f);
        r.qkv[i] = bf ? ts_bf16_round(v) : v;
    }
    for (int64_t i = 0; i < nout; i++) {
        const float v = 2.0f * ts_rng_uniform(12 + s.T, (uint64_t)i) - 1.0f;
        r.dout[i] = bf ? ts_bf16_round(v) : v;
    }
    reference(s, r);
    run_kernels<T, D>(s, r);
    const char *dt = bf ? "bf16" : "f32";
    const double ro = rel_l2(r.k_out, r.out, "out"), rl = rel_l2(r.k_lse, r.lse, "lse");
    const double rd = rel_l2(r.k_dqkv, r.dqkv, "dqkv");
    cr_log_info("%s HS %d T %d amp %g: out %.2e lse %.2e dqkv %.2e", dt, D, s.T, (double)s.amp, ro,
                rl, rd);
    cr_assert_leq(ro, tol_out, "%s HS %d T %d: out rel %.3e", dt, D, s.T, ro);
    cr_assert_leq(rl, 1e-4, "%s HS %d T %d: lse rel %.3e", dt, D, s.T, rl);
    cr_assert_leq(rd, tol_dqkv, "%s HS %d T %d: dqkv rel %.3e", dt, D, s.T, rd);
    cr_assert_eq(memcmp(r.k_dqkv.data(), r.k_dqkv_again.data(), (size_t)nqkv * sizeof(float)), 0,
                 "%s HS %d T %d: the backward did not repeat bit for bit", dt, D, s.T);
}

/* T 1; 70 and 129 cross the 64-row tiles (and the 32-row ones) with a ragged last tile. */
Test(kernels_flash_device, bf16_hs64) {
    check<bf16, 64>({1, 1, 2, 0, 1.0f}, 2e-2, 3e-2);
    check<bf16, 64>({2, 70, 2, 0, 1.0f}, 2e-2, 3e-2);
    check<bf16, 64>({1, 129, 1, 0, 8.0f}, 2e-2, 3e-2);
}

Test(kernels_flash_device, bf16_hs128) {
    check<bf16, 128>({1, 17, 1, 0, 1.0f}, 2e-2, 3e-2);
    check<bf16, 128>({1, 129, 2, 0, 8.0f}, 2e-2, 3e-2);
}

Test(kernels_flash_device, f32_both_head_sizes) {
    check<float, 64>({1, 1, 1, 0, 1.0f}, 1e-5, 1e-5);
    check<float, 64>({2, 70, 2, 0, 8.0f}, 1e-4, 1e-4);
    check<float, 128>({1, 33, 2, 0, 1.0f}, 1e-5, 1e-5);
}
