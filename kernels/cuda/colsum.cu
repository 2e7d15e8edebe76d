/* colsum.cu: the column sums of the backward pass, deterministic without atomics: the bias
 * gradient (dbias += sum over rows of dout) and layernorm's parameter gradients (dbias += sum of
 * dout, dweight += sum of (inp - mean) rstd dout).
 *
 * Many blocks: block (x, y) owns TS_COLSUM_COLS columns of chunk y of the rows; its 8 warps take
 * every 8th row of the chunk in order, lane l columns l and l + 32 (a warp reads 64 or 128
 * contiguous bytes per row), and warp 0 adds the 8 row-group sums in order into the chunk's
 * partial. A second kernel adds the partials in chunk order into the output ("+="). The chunk
 * count is a pure function of (N, C) (cuda_geom.h), so the summation order, and the bits, depend
 * only on the shape. With C 768 and N 8192 that is 12 x 64 blocks instead of 24.
 *
 * TS_CUDA_COLSUM=legacy runs the previous single-pass kernels (one block of 32 columns x 32 row
 * groups per 32 columns: C/32 blocks), as does a C too wide for the partials buffer.
 *
 * TS_CUDA_HOST_EMU compiles the kernels alone as host C++ (tests/kernels/test_cuda_emu.cpp). */
#include <stdint.h>

#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#include "kernels/log.h"
#endif

#define CS_CPT (TS_COLSUM_COLS / 32) /* columns per thread */

/* part ((chunk, LN ? 2 : 1), C): this block's sums of dout (and of norm dout with LN). */
template <typename T, bool LN>
__global__ void colsum_partial_kernel(float *part, const T *dout, const T *inp, const float *mean,
                                      const float *rstd, int64_t N, int C, int64_t rows) {
    __shared__ float sh[LN ? 2 : 1][TS_COLSUM_GROUPS][TS_COLSUM_COLS + 1];
    const int lane = threadIdx.x & 31, grp = threadIdx.x >> 5;
    const int64_t c0 = (int64_t)blockIdx.x * TS_COLSUM_COLS;
    const int64_t r0 = (int64_t)blockIdx.y * rows;
    const int64_t r1 = r0 + rows < N ? r0 + rows : N;
    float ab[CS_CPT], aw[CS_CPT];
    for (int q = 0; q < CS_CPT; q++)
        ab[q] = aw[q] = 0.0f;
    for (int64_t n = r0 + grp; n < r1; n += TS_COLSUM_GROUPS) {
        float m = 0.0f, r = 0.0f;
        if (LN) {
            m = mean[n];
            r = rstd[n];
        }
        for (int q = 0; q < CS_CPT; q++) {
            const int64_t c = c0 + lane + 32 * q;
            if (c < C) {
                const float d = tof(dout[n * C + c]);
                ab[q] += d;
                if (LN)
                    aw[q] += (tof(inp[n * C + c]) - m) * r * d;
            }
        }
    }
    for (int q = 0; q < CS_CPT; q++) {
        sh[0][grp][lane + 32 * q] = ab[q];
        if (LN)
            sh[LN ? 1 : 0][grp][lane + 32 * q] = aw[q];
    }
    __syncthreads();
    if (grp != 0)
        return;
    const int nout = LN ? 2 : 1;
    for (int q = 0; q < CS_CPT; q++) {
        const int64_t c = c0 + lane + 32 * q;
        if (c >= C)
            continue;
        for (int o = 0; o < nout; o++) {
            float s = 0.0f;
            for (int g = 0; g < TS_COLSUM_GROUPS; g++)
                s += sh[o][g][lane + 32 * q];
            part[((int64_t)blockIdx.y * nout + o) * C + c] = s;
        }
    }
}

/* out0[c] += sum over chunks of part[chunk][0][c] (out1 with [1]), chunks in order. */
__global__ void colsum_final_kernel(float *out0, float *out1, const float *part, int chunks,
                                    int64_t C, int nout) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float s0 = 0.0f, s1 = 0.0f;
    for (int y = 0; y < chunks; y++) {
        s0 += part[((int64_t)y * nout) * C + c];
        if (nout == 2)
            s1 += part[((int64_t)y * nout + 1) * C + c];
    }
    out0[c] += s0;
    if (nout == 2)
        out1[c] += s1;
}

/* ---- the previous kernels (TS_CUDA_COLSUM=legacy): block (32 columns, 32 row groups) ---- */

template <typename T, bool LN>
__global__ void colsum_legacy_kernel(float *out0, float *out1, const T *dout, const T *inp,
                                     const float *mean, const float *rstd, int64_t N, int64_t C) {
    __shared__ float sb[32][33], sw[32][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const int64_t c = (int64_t)blockIdx.x * 32 + tx;
    float ab = 0.0f, aw = 0.0f;
    if (c < C) {
        for (int64_t n = ty; n < N; n += 32) {
            const float d = tof(dout[n * C + c]);
            ab += d;
            if (LN)
                aw += (tof(inp[n * C + c]) - mean[n]) * rstd[n] * d;
        }
    }
    sb[ty][tx] = ab;
    sw[ty][tx] = aw;
    __syncthreads();
    if (ty == 0 && c < C) {
        float b = 0.0f, w = 0.0f;
        for (int k = 0; k < 32; k++) {
            b += sb[k][tx];
            w += sw[k][tx];
        }
        out0[c] += b;
        if (LN)
            out1[c] += w;
    }
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */

template <typename T, bool LN>
static ts_status colsum_t(cuda_ctx *ctx, float *out0, float *out1, const void *dout,
                          const void *inp, const float *mean, const float *rstd, int64_t N,
                          int64_t C, const char *what) {
    const int nout = LN ? 2 : 1;
    const int chunks =
        ctx->colsum_legacy ? 0 : ts_colsum_chunks(N, C, nout, TS_COLSUM_PARTIAL_FLOATS);
    if (N <= 0 || C <= 0)
        return TS_OK;
    if (chunks == 0) {
        colsum_legacy_kernel<T, LN><<<grid_for(C, 32), 1024, 0, ctx->stream>>>(
            out0, out1, (const T *)dout, (const T *)inp, mean, rstd, N, C);
        CUDA_LAUNCHED(what);
        return TS_OK;
    }
    const dim3 grid(grid_for(C, TS_COLSUM_COLS), (unsigned)chunks);
    colsum_partial_kernel<T, LN><<<grid, TS_COLSUM_GROUPS * 32, 0, ctx->stream>>>(
        ctx->colsum_partials, (const T *)dout, (const T *)inp, mean, rstd, N, (int)C,
        ts_colsum_rows_per_chunk(N, chunks));
    CUDA_LAUNCHED(what);
    colsum_final_kernel<<<grid_for(C, 256), 256, 0, ctx->stream>>>(out0, out1, ctx->colsum_partials,
                                                                   chunks, C, nout);
    CUDA_LAUNCHED(what);
    return TS_OK;
}

ts_status cuda_colsum(cuda_ctx *ctx, enum ts_dtype dt, float *out0, float *out1, const void *dout,
                      const void *inp, const float *mean, const float *rstd, int64_t N, int64_t C,
                      const char *what) {
    if (C > INT32_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: C = %lld is too large", what, (long long)C);
    const bool ln = inp != NULL;
    if (dt == TS_DTYPE_BF16)
        return ln ? colsum_t<__nv_bfloat16, true>(ctx, out0, out1, dout, inp, mean, rstd, N, C,
                                                  what)
                  : colsum_t<__nv_bfloat16, false>(ctx, out0, out1, dout, inp, mean, rstd, N, C,
                                                   what);
    return ln ? colsum_t<float, true>(ctx, out0, out1, dout, inp, mean, rstd, N, C, what)
              : colsum_t<float, false>(ctx, out0, out1, dout, inp, mean, rstd, N, C, what);
}

#endif
