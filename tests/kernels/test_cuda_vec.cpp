/* test_cuda_vec.cpp: the 16-byte vectorised elementwise kernels of kernels/cuda (residual, GELU
 * forward and backward, the casts, AdamW) run on the host (cuda_emu.h), against the
 * one-element-per-thread kernels they replace (the same bits) and the CPU backend's ops.
 *
 * Each kernel runs on the grid its launcher uses (ts_vec_threads threads of 256), over sizes that
 * leave every tail length (n % k from 0 to k - 1, with k = 4 for f32 and 8 for bf16) and sizes
 * below one pack, into outputs with a sentinel past the end: every element written once, none
 * past n. Misaligned operands are the launcher's business (ts_vec_usable picks the one-element
 * kernel), checked here as a pure function. */
#include <criterion/criterion.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
#include "kernels/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
}

#include "tests/kernels/cuda_emu.h"

#include "kernels/cuda/adamw.cu"
#include "kernels/cuda/cast.cu"
#include "kernels/cuda/gelu.cu"
#include "kernels/cuda/layernorm.cu"
#include "kernels/cuda/residual.cu"

static const int64_t sizes[] = {1, 3, 5, 7, 8, 9, 12, 13, 15, 16, 17, 23, 4096, 4101, 30007};

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

/* n values in [lo, hi) rounded to T, and their float values. */
template <typename T> struct arr {
    std::vector<T> d;
    std::vector<float> f;
};

template <typename T> static arr<T> random_arr(int64_t n, uint64_t seed, float lo, float hi) {
    arr<T> a;
    for (int64_t i = 0; i < n; i++) {
        a.d.push_back(fromf<T>(uni(seed, (uint64_t)i, lo, hi)));
        a.f.push_back(tof(a.d.back()));
    }
    return a;
}

template <typename T> static uint32_t bits(T x) {
    uint32_t b = 0;
    std::memcpy(&b, &x, sizeof x);
    return b;
}

/* n + 1 elements, all the sentinel: the kernel may write [0, n) only. */
template <typename T> static std::vector<T> sentinel_out(int64_t n) {
    return std::vector<T>((size_t)n + 1, fromf<T>(-12345.0f));
}

/* body(): one vectorised-kernel thread on the launcher's grid for n at k per thread. */
template <typename F> static void launch_vec(int64_t n, int k, F body) {
    const int64_t threads = ts_vec_threads(n, k);
    launch_serial({(unsigned)((threads + 255) / 256), 1, 1}, 256, body);
}

template <typename F> static void launch_one(int64_t n, F body) {
    launch_serial({(unsigned)((n + 255) / 256), 1, 1}, 256, body);
}

/* vec and one element per thread agree bit for bit over [0, n), and the sentinel at n stands. */
template <typename T>
static void same_bits(const std::vector<T> &vec, const std::vector<T> &one, int64_t n,
                      const char *what) {
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(bits(vec[i]), bits(one[i]), "%s n %lld: element %lld: %g vs %g", what,
                     (long long)n, (long long)i, (double)tof(vec[i]), (double)tof(one[i]));
    const uint32_t sentinel = bits(fromf<T>(-12345.0f));
    cr_assert_eq(bits(vec[n]), sentinel, "%s n %lld: written past the end", what, (long long)n);
    cr_assert_eq(bits(one[n]), sentinel, "%s n %lld: written past the end", what, (long long)n);
}

template <typename T> static enum ts_dtype dtype_of() {
    return sizeof(T) == 4 ? TS_DTYPE_F32 : TS_DTYPE_BF16;
}

/* out (T, n) against the CPU op's f32 result on the same (rounded) inputs, rounded to T. */
template <typename T>
static void near_cpu(const std::vector<T> &out, const std::vector<float> &ref, int64_t n, float tol,
                     const char *what) {
    for (int64_t i = 0; i < n; i++) {
        const float r = tof(fromf<T>(ref[(size_t)i]));
        cr_assert(std::fabs(tof(out[(size_t)i]) - r) <= tol * (1 + std::fabs(r)),
                  "%s n %lld: element %lld = %.9g, the CPU %.9g", what, (long long)n, (long long)i,
                  (double)tof(out[(size_t)i]), (double)r);
    }
}

/* ---- residual ---- */

template <typename T> static void check_residual(struct ts_backend *be) {
    constexpr int K = pack16<T>::n;
    for (int64_t n : sizes) {
        arr<T> a = random_arr<T>(n, 1, -2, 2), b = random_arr<T>(n, 2, -2, 2);
        std::vector<T> vec = sentinel_out<T>(n), one = sentinel_out<T>(n);
        launch_vec(n, K, [&] { residual_vec_kernel<T>(vec.data(), a.d.data(), b.d.data(), n); });
        launch_one(n, [&] { residual_kernel<T>(one.data(), a.d.data(), b.d.data(), n); });
        same_bits(vec, one, n, "residual");
        std::vector<float> ref((size_t)n);
        struct ts_tensor o = ts_tensor_1d(ref.data(), TS_DTYPE_F32, n);
        struct ts_tensor ta = ts_tensor_1d(a.f.data(), TS_DTYPE_F32, n);
        struct ts_tensor tb = ts_tensor_1d(b.f.data(), TS_DTYPE_F32, n);
        cr_assert_eq(ts_op_residual_forward(be, &o, &ta, &tb), TS_OK, "%s", ts_last_error());
        near_cpu(vec, ref, n, 0.0f, "residual"); /* one rounding of the same float sum */
    }
}

Test(kernels_cuda_vec, residual_f32_and_bf16) {
    struct ts_backend *be = cpu();
    check_residual<float>(be);
    check_residual<__nv_bfloat16>(be);
    ts_backend_destroy(be);
}

/* ---- GELU ---- */

template <typename T> static void check_gelu(struct ts_backend *be) {
    constexpr int K = pack16<T>::n;
    for (int64_t n : sizes) {
        arr<T> x = random_arr<T>(n, 3, -5, 5), d = random_arr<T>(n, 4, -1, 1);
        std::vector<T> vf = sentinel_out<T>(n), of = sentinel_out<T>(n);
        std::vector<T> vb = sentinel_out<T>(n), ob = sentinel_out<T>(n);
        launch_vec(n, K, [&] { gelu_forward_vec_kernel<T>(vf.data(), x.d.data(), n); });
        launch_one(n, [&] { gelu_forward_kernel<T>(of.data(), x.d.data(), n); });
        launch_vec(n, K,
                   [&] { gelu_backward_vec_kernel<T>(vb.data(), x.d.data(), d.d.data(), n); });
        launch_one(n, [&] { gelu_backward_kernel<T>(ob.data(), x.d.data(), d.d.data(), n); });
        same_bits(vf, of, n, "gelu_forward");
        same_bits(vb, ob, n, "gelu_backward");
        std::vector<float> rf((size_t)n), rb((size_t)n);
        struct ts_tensor tf = ts_tensor_1d(rf.data(), TS_DTYPE_F32, n);
        struct ts_tensor tbk = ts_tensor_1d(rb.data(), TS_DTYPE_F32, n);
        struct ts_tensor tx = ts_tensor_1d(x.f.data(), TS_DTYPE_F32, n);
        struct ts_tensor td = ts_tensor_1d(d.f.data(), TS_DTYPE_F32, n);
        cr_assert_eq(ts_op_gelu_forward(be, &tf, &tx), TS_OK, "%s", ts_last_error());
        cr_assert_eq(ts_op_gelu_backward(be, &tbk, &tx, &td), TS_OK, "%s", ts_last_error());
        /* the CPU's formula term for term, but its tanh is 1 - 2 / (exp(2x) + 1) (cpu_math.h),
         * a few 1e-6 off where it saturates; bf16 results round from floats that close */
        const float tol = sizeof(T) == 4 ? 4e-6f : 8e-3f;
        near_cpu(vf, rf, n, tol, "gelu_forward");
        near_cpu(vb, rb, n, tol, "gelu_backward");
    }
}

Test(kernels_cuda_vec, gelu_f32_and_bf16) {
    struct ts_backend *be = cpu();
    check_gelu<float>(be);
    check_gelu<__nv_bfloat16>(be);
    ts_backend_destroy(be);
}

/* ---- casts: 8 elements per thread both ways ---- */

Test(kernels_cuda_vec, casts_both_ways) {
    cr_assert_eq((vec_k<float, __nv_bfloat16>::value), 8);
    for (int64_t n : sizes) {
        arr<float> f = random_arr<float>(n, 5, -3, 3);
        f.d[0] = 1.0f + 1.0f / 256; /* a tie: rounds to even (1.0) */
        std::vector<__nv_bfloat16> vb = sentinel_out<__nv_bfloat16>(n),
                                   ob = sentinel_out<__nv_bfloat16>(n);
        launch_vec(n, 8, [&] { cast_vec_kernel<__nv_bfloat16, float>(vb.data(), f.d.data(), n); });
        launch_one(n, [&] { cast_kernel<__nv_bfloat16, float>(ob.data(), f.d.data(), n); });
        same_bits(vb, ob, n, "cast f32 -> bf16");
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(vb[(size_t)i].bits, ts_bf16_from_f32(f.d[(size_t)i]), "element %lld",
                         (long long)i);
        std::vector<float> vf = sentinel_out<float>(n), of = sentinel_out<float>(n);
        launch_vec(n, 8, [&] { cast_vec_kernel<float, __nv_bfloat16>(vf.data(), vb.data(), n); });
        launch_one(n, [&] { cast_kernel<float, __nv_bfloat16>(of.data(), vb.data(), n); });
        same_bits(vf, of, n, "cast bf16 -> f32");
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(vf[(size_t)i], ts_f32_from_bf16(vb[(size_t)i].bits));
    }
}

/* ---- AdamW ---- */

template <typename T> static void check_adamw(struct ts_backend *be, bool with_master) {
    constexpr int K = pack16<T>::n;
    const adamw_args a = {
        1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, 1.0f - powf(0.9f, 3.0f), 1.0f - powf(0.95f, 3.0f)};
    for (int64_t n : sizes) {
        arr<float> master0 = random_arr<float>(n, 6, -1, 1), g = random_arr<float>(n, 7, -1, 1);
        arr<float> m0 = random_arr<float>(n, 8, -0.1f, 0.1f),
                   v0 = random_arr<float>(n, 9, 0, 0.01f);
        std::vector<T> p0((size_t)n + 1, fromf<T>(-12345.0f));
        for (int64_t i = 0; i < n; i++)
            p0[(size_t)i] = fromf<T>(master0.d[(size_t)i]);
        /* the two kernels on copies of the same state */
        std::vector<T> pv = p0, po = p0;
        std::vector<float> mv = m0.d, mo = m0.d, vv = v0.d, vo = v0.d;
        std::vector<float> wv = master0.d, wo = master0.d;
        float *mastv = with_master ? wv.data() : nullptr,
              *masto = with_master ? wo.data() : nullptr;
        launch_vec(n, K, [&] {
            adamw_vec_kernel<T>(pv.data(), mastv, g.d.data(), mv.data(), vv.data(), n, a);
        });
        launch_one(
            n, [&] { adamw_kernel<T>(po.data(), masto, g.d.data(), mo.data(), vo.data(), n, a); });
        same_bits(pv, po, n, "adamw param");
        for (int64_t i = 0; i < n; i++) {
            cr_assert_eq(bits(mv[(size_t)i]), bits(mo[(size_t)i]), "m[%lld]", (long long)i);
            cr_assert_eq(bits(vv[(size_t)i]), bits(vo[(size_t)i]), "v[%lld]", (long long)i);
            cr_assert_eq(bits(wv[(size_t)i]), bits(wo[(size_t)i]), "master[%lld]", (long long)i);
        }
        /* the CPU op: adamw_master on (bf16-rounded when T is) parameters and f32 masters */
        std::vector<float> cp((size_t)n), cm = m0.d, cv = v0.d, cw = master0.d;
        for (int64_t i = 0; i < n; i++)
            cp[(size_t)i] = tof(p0[(size_t)i]);
        struct ts_tensor tp = ts_tensor_1d(cp.data(), TS_DTYPE_F32, n);
        struct ts_tensor tg = ts_tensor_1d(g.d.data(), TS_DTYPE_F32, n);
        struct ts_tensor tm = ts_tensor_1d(cm.data(), TS_DTYPE_F32, n);
        struct ts_tensor tv = ts_tensor_1d(cv.data(), TS_DTYPE_F32, n);
        struct ts_tensor tw = ts_tensor_1d(cw.data(), TS_DTYPE_F32, n);
        if (with_master)
            cr_assert_eq(ts_op_adamw_master(be, &tp, &tw, &tg, &tm, &tv, a.lr, a.beta1, a.beta2,
                                            a.eps, a.wd, a.grad_scale, 3),
                         TS_OK, "%s", ts_last_error());
        else
            cr_assert_eq(ts_op_adamw(be, &tp, &tg, &tm, &tv, a.lr, a.beta1, a.beta2, a.eps, a.wd,
                                     a.grad_scale, 3),
                         TS_OK, "%s", ts_last_error());
        const float tol = sizeof(T) == 4 ? 4e-6f : 8e-3f;
        near_cpu(pv, cp, n, tol, "adamw param");
        near_cpu(mv, cm, n, 1e-6f, "adamw m");
        near_cpu(vv, cv, n, 1e-6f, "adamw v");
    }
}

Test(kernels_cuda_vec, adamw_f32_bf16_and_master) {
    struct ts_backend *be = cpu();
    check_adamw<float>(be, false);
    check_adamw<float>(be, true);
    check_adamw<__nv_bfloat16>(be, true);
    ts_backend_destroy(be);
}

/* ---- the launchers' choices, as pure functions ---- */

Test(kernels_cuda_vec, threads_cover_packs_and_tail) {
    cr_assert_eq(ts_vec_threads(0, 8), 0);
    cr_assert_eq(ts_vec_threads(1, 8), 1, "one tail element");
    cr_assert_eq(ts_vec_threads(7, 8), 7, "no pack: seven tail threads");
    cr_assert_eq(ts_vec_threads(8, 8), 1);
    cr_assert_eq(ts_vec_threads(15, 8), 7, "one pack, seven tail elements");
    cr_assert_eq(ts_vec_threads(8 * 1000 + 3, 8), 1000);
    cr_assert_eq(ts_vec_threads(4101, 4), 1025);
}

Test(kernels_cuda_vec, misaligned_operands_take_the_scalar_kernel) {
    alignas(16) static float buf[16];
    const void *aligned[3] = {buf, buf + 4, nullptr};
    cr_assert(ts_vec_usable(0, aligned, 3), "16-byte aligned (and absent) operands");
    cr_assert_not(ts_vec_usable(1, aligned, 3), "TS_CUDA_VECTOR=0");
    const void *odd[3] = {buf, buf + 1, buf + 8}; /* a slice at an odd float offset */
    cr_assert_not(ts_vec_usable(0, odd, 3));
    const void *bf[2] = {buf, (const char *)buf + 8};
    cr_assert_not(ts_vec_usable(0, bf, 2), "8-byte aligned is not enough");
}

/* ---- residual + layernorm, fused (layernorm.cu) ---- */

/* The fused kernel against residual_kernel then layernorm_forward_kernel: the same bits in res,
 * out, mean and rstd, and near the CPU's two ops. Rows are a multiple of LN_WARPS (the warp sum
 * emulation needs every thread of a CTA). */
template <typename T> static void check_residual_layernorm(struct ts_backend *be) {
    const int64_t N = 2 * LN_WARPS;
    for (int C : {1, 5, 32, 33, 100, 768}) {
        const int64_t n = N * C;
        arr<T> a = random_arr<T>(n, 31 + (uint64_t)C, -2, 4), b = random_arr<T>(n, 37, -1, 1);
        arr<T> w = random_arr<T>(C, 41, 0.5f, 1.5f), bias = random_arr<T>(C, 43, -0.5f, 0.5f);
        std::vector<T> res1 = sentinel_out<T>(n), out1 = sentinel_out<T>(n);
        std::vector<T> res2 = sentinel_out<T>(n), out2 = sentinel_out<T>(n);
        std::vector<float> m1(N + 1, -7.0f), r1(N + 1, -7.0f), m2(N + 1, -7.0f), r2(N + 1, -7.0f);
        launch_one(n, [&] { residual_kernel<T>(res1.data(), a.d.data(), b.d.data(), n); });
        launch({(unsigned)(N / LN_WARPS), 1, 1}, LN_WARPS * 32, [&] {
            layernorm_forward_kernel<T>(out1.data(), m1.data(), r1.data(), res1.data(), w.d.data(),
                                        bias.d.data(), N, C);
        });
        launch({(unsigned)(N / LN_WARPS), 1, 1}, LN_WARPS * 32, [&] {
            residual_layernorm_forward_kernel<T>(res2.data(), out2.data(), m2.data(), r2.data(),
                                                 a.d.data(), b.d.data(), w.d.data(), bias.d.data(),
                                                 N, C);
        });
        same_bits(res2, res1, n, "fused res");
        same_bits(out2, out1, n, "fused out");
        for (int64_t i = 0; i <= N; i++) {
            cr_assert_eq(bits(m2[(size_t)i]), bits(m1[(size_t)i]), "C %d mean %lld", C,
                         (long long)i);
            cr_assert_eq(bits(r2[(size_t)i]), bits(r1[(size_t)i]), "C %d rstd %lld", C,
                         (long long)i);
        }
        cr_assert_eq(m2[(size_t)N], -7.0f, "C %d: mean written past N", C);

        /* the CPU's residual then layernorm on the same values */
        const int64_t shape[2] = {N, C}, wshape[1] = {C}, nshape[1] = {N};
        struct ts_tensor ta, tb, tr, to, tw, tbias, tm, ts;
        cr_assert_eq(ts_op_alloc(be, &ta, TS_DTYPE_F32, 2, shape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &tb, TS_DTYPE_F32, 2, shape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &tr, TS_DTYPE_F32, 2, shape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &to, TS_DTYPE_F32, 2, shape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &tw, TS_DTYPE_F32, 1, wshape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &tbias, TS_DTYPE_F32, 1, wshape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &tm, TS_DTYPE_F32, 1, nshape), TS_OK);
        cr_assert_eq(ts_op_alloc(be, &ts, TS_DTYPE_F32, 1, nshape), TS_OK);
        std::memcpy(ta.data, a.f.data(), (size_t)n * 4);
        std::memcpy(tb.data, b.f.data(), (size_t)n * 4);
        std::memcpy(tw.data, w.f.data(), (size_t)C * 4);
        std::memcpy(tbias.data, bias.f.data(), (size_t)C * 4);
        cr_assert_eq(ts_op_residual_forward(be, &tr, &ta, &tb), TS_OK);
        /* normalise the residual as T stores it, as the kernels do */
        float *rr = (float *)tr.data;
        for (int64_t i = 0; i < n; i++)
            rr[i] = tof(fromf<T>(rr[i]));
        cr_assert_eq(ts_op_layernorm_forward(be, &to, &tm, &ts, &tr, &tw, &tbias), TS_OK);
        std::vector<float> ref_out((float *)to.data, (float *)to.data + n);
        near_cpu(out2, ref_out, n, sizeof(T) == 4 ? 1e-5f : 1e-2f, "fused out vs cpu");
        std::vector<float> ref_res(rr, rr + n);
        near_cpu(res2, ref_res, n, 0, "fused res vs cpu");
        for (struct ts_tensor *t : {&ta, &tb, &tr, &to, &tw, &tbias, &tm, &ts})
            ts_op_free(be, t);
    }
}

Test(kernels_cuda_vec, residual_layernorm_fused_equals_the_two_kernels) {
    struct ts_backend *be = cpu();
    check_residual_layernorm<float>(be);
    check_residual_layernorm<__nv_bfloat16>(be);
    ts_backend_destroy(be);
}
