/* gemm_fallback.cu: the plain matmul kernel behind cuda_gemm (matmul.cu) where cuBLASLt has no
 * algorithm, fails at launch, or TS_CUDA_GEMM=fallback asks for it: one thread per column of C,
 * float accumulation in k order. Rows and batches are walked by grid-stride loops over gridDim.y
 * and gridDim.z (cuda_geom.h), so any m works, B T = 65,536 rows and more included (the
 * hardware caps both at 65,535).
 *
 * TS_CUDA_HOST_EMU compiles the kernel alone as host C++ (tests/kernels/test_cuda_emu.cpp). */
#include <stdint.h>

#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif

/* What the kernel needs of gemm_args (its element types are template arguments). */
struct fb_gemm {
    bool ta, tb;
    int m, n, k, batch;
    float alpha, beta;
    const void *a, *b, *bias;
    void *c;
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c;
};

template <typename TA, typename TC> __global__ void gemm_fallback_kernel(fb_gemm g) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* column of C */
    if (j >= g.n)
        return;
    for (int64_t z = blockIdx.z; z < g.batch; z += gridDim.z) {
        const TA *A = (const TA *)g.a + z * g.stride_a;
        const TA *B = (const TA *)g.b + z * g.stride_b;
        TC *C = (TC *)g.c + z * g.stride_c;
        for (int64_t i = blockIdx.y; i < g.m; i += gridDim.y) {
            float acc = 0.0f;
            for (int64_t p = 0; p < g.k; p++) {
                const float a = tof(g.ta ? A[p * g.lda + i] : A[i * g.lda + p]);
                const float b = tof(g.tb ? B[j * g.ldb + p] : B[p * g.ldb + j]);
                acc += a * b;
            }
            float out = g.alpha * acc;
            if (g.beta != 0.0f)
                out += g.beta * tof(C[i * g.ldc + j]);
            if (g.bias)
                out += tof(((const TC *)g.bias)[j]);
            C[i * g.ldc + j] = fromf<TC>(out);
        }
    }
}

#ifndef TS_CUDA_HOST_EMU /* the kernel alone is compiled on the host by a test */

ts_status cuda_gemm_fallback(cuda_ctx *ctx, const gemm_args *g) {
    const ts_grid3 gr = ts_gemm_fallback_grid(g->m, g->n, g->batch, TS_CUDA_GRID_YZ_MAX);
    if (gr.x == 0)
        return TS_OK; /* an empty C */
    fb_gemm f;
    f.ta = g->ta;
    f.tb = g->tb;
    f.m = g->m;
    f.n = g->n;
    f.k = g->k;
    f.batch = g->batch;
    f.alpha = g->alpha;
    f.beta = g->beta;
    f.a = g->a;
    f.b = g->b;
    f.bias = g->bias;
    f.c = g->c;
    f.lda = g->lda;
    f.ldb = g->ldb;
    f.ldc = g->ldc;
    f.stride_a = g->stride_a;
    f.stride_b = g->stride_b;
    f.stride_c = g->stride_c;
    const dim3 grid(gr.x, gr.y, gr.z);
    const bool ab16 = g->ab_type == CUDA_R_16BF, c16 = g->c_type == CUDA_R_16BF;
    if (ab16 && c16)
        gemm_fallback_kernel<__nv_bfloat16, __nv_bfloat16>
            <<<grid, TS_GEMM_FB_THREADS, 0, ctx->stream>>>(f);
    else if (ab16)
        gemm_fallback_kernel<__nv_bfloat16, float><<<grid, TS_GEMM_FB_THREADS, 0, ctx->stream>>>(f);
    else
        gemm_fallback_kernel<float, float><<<grid, TS_GEMM_FB_THREADS, 0, ctx->stream>>>(f);
    CUDA_LAUNCHED("fallback gemm");
    return TS_OK;
}

#endif
