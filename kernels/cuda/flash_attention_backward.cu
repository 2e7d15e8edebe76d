/* flash_attention_backward.cu: causal attention backward from the saved log-sum-exp
 * (backend.h's flash_attention_backward): dqkv (B,T,3C) from dout, qkv, out and lse; scratch
 * (B,NH,T) f32 takes D.
 *
 * With P[t][t2] = exp(scale q[t].k[t2] - lse[t]) (t2 <= t) recomputed tile by tile:
 *   D[t]      = dout[t].out[t]                 (= sum_t2 P dP, the softmax backward's row dot)
 *   dP        = dout V^T;  dS = P (dP - D[t])   (dS is the CPU's dpre / scale)
 *   dV = P^T dout;  dK = scale dS^T Q;  dQ = scale dS K.
 * Three kernels, none with atomics, so the result repeats bit for bit:
 *   1. D, one warp per row (butterfly sum);
 *   2. dK and dV: one CTA per key tile of 64, looping over the query tiles that can see it
 *      (those with a query >= the tile's first key), accumulating in registers; it alone
 *      writes its keys' dK and dV;
 *   3. dQ: one CTA per query tile of 64, looping over the key tiles up to the diagonal, the
 *      forward's loop order; it alone writes its queries' dQ.
 * Kernel 3 recomputes S and dP that kernel 2 also computes (7 tile products instead of 5):
 * the price of a deterministic dQ without a (T/64, T, HS) f32 buffer of partials.
 * Rows >= T are zeros in shared memory and are never stored; P is set to 0 for queries >= T
 * and keys > query, the only two masks.
 *
 * bf16: 4 warps x 16 rows on tensor cores (flash_attention.h), the inner tile 64 for head size
 * 64 and 32 for 128 (registers: dK and dV take D/2 + D/2 floats a thread). f32: one thread per
 * key (kernel 2) or query (kernel 3), tiles of 32, accumulators in shared memory. */
#include <math.h>

#include "kernels/cuda/flash_attention.h"

/* ---- 1. D = rowsum(dout * out) ---- */

#define BWD_D_WARPS 8

template <typename T>
__global__ void flash_bwd_dot_kernel(float *Dv, const T *dout, const T *out, int64_t rows, int T_,
                                     int NH, int C, int HS) {
    const int64_t row = (int64_t)blockIdx.x * BWD_D_WARPS + (threadIdx.x >> 5); /* (b,h,t) */
    const int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const int64_t bh = row / T_, t = row % T_, b = bh / NH, h = bh % NH;
    const int64_t off = (b * T_ + t) * C + h * HS;
    float s = 0.0f;
    for (int i = lane; i < HS; i += 32)
        s += tof(dout[off + i]) * tof(out[off + i]);
    s = warp_sum(s);
    if (lane == 0)
        Dv[row] = s;
}

/* ---- 2. dK, dV (bf16, tensor cores) ---- */

#define BWD_BK 64 /* keys per CTA in kernel 2, queries per CTA in kernel 3: 4 warps x 16 */

/* the inner tile: queries per step in kernel 2, keys per step in kernel 3 */
template <int D> struct bwd_tile { static constexpr int N = D == 128 ? 32 : 64; };

template <int D> static constexpr int dkv_smem_bf16() {
    constexpr int N = bwd_tile<D>::N;
    /* Ks, Vs [64][D+PAD]; Qs, dOs [N][D+PAD]; Qt, dOt [D][N+PAD]; lse2, D [N] f32 */
    return (2 * BWD_BK * (D + FA_PAD) + 2 * N * (D + FA_PAD) + 2 * D * (N + FA_PAD)) * 2 +
           2 * N * 4;
}

/* Tiling: CTA (key tile kt, head bh) owns keys k0 = 64 kt .. k0 + 63; warp w the 16 keys
 * k0 + 16w ..; in its accumulators, thread (g, c) holds dK, dV rows k0 + 16w + g (+8) and columns
 * 8nd + 2c (+1). Query tiles q0 = N qt for qt = k0 / N .. ceil(T / N) - 1: earlier tiles have
 * every query < k0, fully masked, and are skipped. Per step, S^T = K Q^T is (16 keys x N
 * queries) per warp: st[j] holds queries q0 + 8j .. q0 + 8j + 7, element e at
 * (key k0 + 16w + g + 8 (e >> 1), query q0 + 8j + 2c + (e & 1)). */
template <int D>
__global__ void __launch_bounds__(128)
    flash_bwd_dkv_bf16_kernel(bf16 *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                              const float *Dv, int T, int NH, int C, float sl2, float scale) {
    constexpr int N = bwd_tile<D>::N, LDR = D + FA_PAD, LDT = N + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *Ks = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Vs = Ks + BWD_BK * LDR;
    bf16 *Qs = Vs + BWD_BK * LDR;
    bf16 *dOs = Qs + N * LDR;
    bf16 *Qt = dOs + N * LDR;
    bf16 *dOt = Qt + D * LDT;
    float *lse2 = reinterpret_cast<float *>(dOt + D * LDT);
    float *Ds = lse2 + N;

    const int k0 = (gridDim.x - 1 - blockIdx.x) * BWD_BK; /* the early keys see most queries */
    const fa_head hd = fa_head_of(blockIdx.y, T, NH, C, D);
    const int64_t C3 = 3 * (int64_t)C;
    const bf16 *base = qkv + hd.qkv_off;
    const bf16 *dbase = dout + hd.bt_off;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int r0 = warp * 16;
    const int key[2] = {k0 + r0 + g, k0 + r0 + g + 8};

    tile_rows<D, BWD_BK>(Ks, base + C, C3, k0, T);
    tile_rows<D, BWD_BK>(Vs, base + 2 * C, C3, k0, T);
    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dk[nd][e] = dv[nd][e] = 0.0f;

    const int nqt = (T + N - 1) / N;
    for (int qt = k0 / N; qt < nqt; qt++) {
        const int q0 = qt * N;
        __syncthreads(); /* the previous step's readers are done (first step: K, V are in) */
        tile_rows<D, N>(Qs, base, C3, q0, T);
        tile_cols<D, N>(Qt, base, C3, q0, T);
        tile_rows<D, N>(dOs, dbase, C, q0, T);
        tile_cols<D, N>(dOt, dbase, C, q0, T);
        for (int i = threadIdx.x; i < N; i += blockDim.x) {
            const bool ok = q0 + i < T;
            lse2[i] = ok ? lse[hd.row_off + q0 + i] * FA_LOG2E : 0.0f;
            Ds[i] = ok ? Dv[hd.row_off + q0 + i] : 0.0f;
        }
        __syncthreads();

        float st[N / 8][4], dpt[N / 8][4];
#pragma unroll
        for (int j = 0; j < N / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                st[j][e] = dpt[j][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < D / 16; kd++) {
            uint32_t ak[4], av[4];
            load_a(ak, Ks, LDR, r0, kd * 16);
            load_a(av, Vs, LDR, r0, kd * 16);
#pragma unroll
            for (int j = 0; j < N / 8; j++) {
                uint32_t b[2];
                load_b(b, Qs, LDR, j * 8, kd * 16);
                mma_bf16_16816(st[j], ak, b); /* S^T = K Q^T */
                load_b(b, dOs, LDR, j * 8, kd * 16);
                mma_bf16_16816(dpt[j], av, b); /* dP^T = V dout^T */
            }
        }
        /* P^T and dS^T = P^T (dP^T - D[query]) in place of st and dpt */
#pragma unroll
        for (int j = 0; j < N / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qi = 8 * j + 2 * c + (e & 1), q = q0 + qi;
                const float p = q < T && key[e >> 1] <= q ? exp2f(st[j][e] * sl2 - lse2[qi]) : 0.0f;
                st[j][e] = p;
                dpt[j][e] = p * (dpt[j][e] - Ds[qi]);
            }
            /* dV += P^T dout (B = dOt[d][query]); dK += dS^T Q (B = Qt[d][query]) */
#pragma unroll
        for (int kk = 0; kk < N / 16; kk++) {
            uint32_t ap[4], as[4];
            pack_a_from_c(ap, st[2 * kk], st[2 * kk + 1]);
            pack_a_from_c(as, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) {
                uint32_t b[2];
                load_b(b, dOt, LDT, nd * 8, kk * 16);
                mma_bf16_16816(dv[nd], ap, b);
                load_b(b, Qt, LDT, nd * 8, kk * 16);
                mma_bf16_16816(dk[nd], as, b);
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        if (key[rr] >= T)
            continue;
        bf16 *row = dqkv + hd.qkv_off + (int64_t)key[rr] * C3;
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++) {
            *reinterpret_cast<uint32_t *>(row + C + nd * 8 + 2 * c) =
                pack_bf16(dk[nd][2 * rr] * scale, dk[nd][2 * rr + 1] * scale);
            *reinterpret_cast<uint32_t *>(row + 2 * C + nd * 8 + 2 * c) =
                pack_bf16(dv[nd][2 * rr], dv[nd][2 * rr + 1]);
        }
    }
}

/* ---- 3. dQ (bf16, tensor cores) ---- */

template <int D> static constexpr int dq_smem_bf16() {
    constexpr int N = bwd_tile<D>::N;
    /* Qs, dOs [64][D+PAD]; Ks, Vs [N][D+PAD]; Kt [D][N+PAD] */
    return (2 * BWD_BK * (D + FA_PAD) + 2 * N * (D + FA_PAD) + D * (N + FA_PAD)) * 2;
}

/* Tiling: CTA (query tile, head) owns queries q0 = 64 qt ..; warp w rows q0 + 16w + g (+8).
 * Key tiles k0 = N kb for kb = 0 .. ceil(min(q0 + 64, T) / N) - 1 (later tiles are all masked).
 * s[j] holds keys k0 + 8j .. + 7 as in the forward. */
template <int D>
__global__ void __launch_bounds__(128)
    flash_bwd_dq_bf16_kernel(bf16 *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                             const float *Dv, int T, int NH, int C, float sl2, float scale) {
    constexpr int N = bwd_tile<D>::N, LDR = D + FA_PAD, LDT = N + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *Qs = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *dOs = Qs + BWD_BK * LDR;
    bf16 *Ks = dOs + BWD_BK * LDR;
    bf16 *Vs = Ks + N * LDR;
    bf16 *Kt = Vs + N * LDR;

    const int q0 = (gridDim.x - 1 - blockIdx.x) * BWD_BK;
    const fa_head hd = fa_head_of(blockIdx.y, T, NH, C, D);
    const int64_t C3 = 3 * (int64_t)C;
    const bf16 *base = qkv + hd.qkv_off;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int r0 = warp * 16;
    const int qrow[2] = {q0 + r0 + g, q0 + r0 + g + 8};
    float l2[2], dd[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const bool ok = qrow[rr] < T;
        l2[rr] = ok ? lse[hd.row_off + qrow[rr]] * FA_LOG2E : 0.0f;
        dd[rr] = ok ? Dv[hd.row_off + qrow[rr]] : 0.0f;
    }
    tile_rows<D, BWD_BK>(Qs, base, C3, q0, T);
    tile_rows<D, BWD_BK>(dOs, dout + hd.bt_off, C, q0, T);
    float dq[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
        dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.0f;

    const int nkb = (min(q0 + BWD_BK, T) + N - 1) / N;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * N;
        __syncthreads();
        tile_rows<D, N>(Ks, base + C, C3, k0, T);
        tile_cols<D, N>(Kt, base + C, C3, k0, T);
        tile_rows<D, N>(Vs, base + 2 * C, C3, k0, T);
        __syncthreads();

        float s[N / 8][4], dp[N / 8][4];
#pragma unroll
        for (int j = 0; j < N / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < D / 16; kd++) {
            uint32_t aq[4], ao[4];
            load_a(aq, Qs, LDR, r0, kd * 16);
            load_a(ao, dOs, LDR, r0, kd * 16);
#pragma unroll
            for (int j = 0; j < N / 8; j++) {
                uint32_t b[2];
                load_b(b, Ks, LDR, j * 8, kd * 16);
                mma_bf16_16816(s[j], aq, b); /* S = Q K^T */
                load_b(b, Vs, LDR, j * 8, kd * 16);
                mma_bf16_16816(dp[j], ao, b); /* dP = dout V^T */
            }
        }
#pragma unroll
        for (int j = 0; j < N / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int rr = e >> 1, k = k0 + 8 * j + 2 * c + (e & 1);
                const float p = k <= qrow[rr] ? exp2f(s[j][e] * sl2 - l2[rr]) : 0.0f;
                dp[j][e] = p * (dp[j][e] - dd[rr]); /* dS */
            }
            /* dQ += dS K (B = Kt[d][key]) */
#pragma unroll
        for (int kk = 0; kk < N / 16; kk++) {
            uint32_t as[4];
            pack_a_from_c(as, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) {
                uint32_t b[2];
                load_b(b, Kt, LDT, nd * 8, kk * 16);
                mma_bf16_16816(dq[nd], as, b);
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        if (qrow[rr] >= T)
            continue;
        bf16 *row = dqkv + hd.qkv_off + (int64_t)qrow[rr] * C3;
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++)
            *reinterpret_cast<uint32_t *>(row + nd * 8 + 2 * c) =
                pack_bf16(dq[nd][2 * rr] * scale, dq[nd][2 * rr + 1] * scale);
    }
}

/* ---- 2 and 3 in f32: one thread per row, accumulators in shared memory ---- */

#define BWD32_R 32 /* rows per CTA (one thread each) and rows per inner tile */

template <int D> static constexpr int bwd_smem_f32() {
    /* kernel 2: Ks, Vs, dKs, dVs [R][D+1] + Qs, dOs [R][D] + lse2, D [R];
     * kernel 3: Qs, dOs, dQs [R][D+1] + Ks, Vs [R][D]: the first is larger */
    return (4 * BWD32_R * (D + 1) + 2 * BWD32_R * D + 2 * BWD32_R) * 4;
}

/* Thread r owns key k0 + r; query tiles from the one holding k0, queries in order. */
template <int D>
__global__ void __launch_bounds__(BWD32_R)
    flash_bwd_dkv_f32_kernel(float *dqkv, const float *qkv, const float *dout, const float *lse,
                             const float *Dv, int T, int NH, int C, float sl2, float scale) {
    constexpr int LD = D + 1;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    float *Ks = reinterpret_cast<float *>(fa_smem);
    float *Vs = Ks + BWD32_R * LD;
    float *dKs = Vs + BWD32_R * LD;
    float *dVs = dKs + BWD32_R * LD;
    float *Qs = dVs + BWD32_R * LD;
    float *dOs = Qs + BWD32_R * D;
    float *lse2 = dOs + BWD32_R * D;
    float *Ds = lse2 + BWD32_R;

    const int k0 = (gridDim.x - 1 - blockIdx.x) * BWD32_R;
    const fa_head hd = fa_head_of(blockIdx.y, T, NH, C, D);
    const int64_t C3 = 3 * (int64_t)C;
    const float *base = qkv + hd.qkv_off;
    const int r = threadIdx.x, key = k0 + r;
    tile_rows_f32<D, BWD32_R>(Ks, LD, base + C, C3, k0, T);
    tile_rows_f32<D, BWD32_R>(Vs, LD, base + 2 * C, C3, k0, T);
    for (int d = 0; d < D; d++)
        dKs[r * LD + d] = dVs[r * LD + d] = 0.0f;
    const int nqt = (T + BWD32_R - 1) / BWD32_R;
    for (int qt = k0 / BWD32_R; qt < nqt; qt++) {
        const int q0 = qt * BWD32_R;
        __syncthreads();
        tile_rows_f32<D, BWD32_R>(Qs, D, base, C3, q0, T);
        tile_rows_f32<D, BWD32_R>(dOs, D, dout + hd.bt_off, C, q0, T);
        const bool ok = q0 + r < T;
        lse2[r] = ok ? lse[hd.row_off + q0 + r] * FA_LOG2E : 0.0f;
        Ds[r] = ok ? Dv[hd.row_off + q0 + r] : 0.0f;
        __syncthreads();
        for (int i = 0; i < BWD32_R; i++) {
            const int q = q0 + i;
            if (q >= T || key > q)
                continue;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                s += Ks[r * LD + d] * Qs[i * D + d];
                dp += Vs[r * LD + d] * dOs[i * D + d];
            }
            const float p = exp2f(s * sl2 - lse2[i]);
            const float ds = p * (dp - Ds[i]);
            for (int d = 0; d < D; d++) {
                dVs[r * LD + d] += p * dOs[i * D + d];
                dKs[r * LD + d] += ds * Qs[i * D + d];
            }
        }
    }
    if (key >= T)
        return;
    float *row = dqkv + hd.qkv_off + (int64_t)key * C3;
    for (int d = 0; d < D; d++) {
        row[C + d] = dKs[r * LD + d] * scale;
        row[2 * C + d] = dVs[r * LD + d];
    }
}

/* Thread r owns query q0 + r; key tiles up to its CTA's last query, keys in order. */
template <int D>
__global__ void __launch_bounds__(BWD32_R)
    flash_bwd_dq_f32_kernel(float *dqkv, const float *qkv, const float *dout, const float *lse,
                            const float *Dv, int T, int NH, int C, float sl2, float scale) {
    constexpr int LD = D + 1;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    float *Qs = reinterpret_cast<float *>(fa_smem);
    float *dOs = Qs + BWD32_R * LD;
    float *dQs = dOs + BWD32_R * LD;
    float *Ks = dQs + BWD32_R * LD;
    float *Vs = Ks + BWD32_R * D;

    const int q0 = (gridDim.x - 1 - blockIdx.x) * BWD32_R;
    const fa_head hd = fa_head_of(blockIdx.y, T, NH, C, D);
    const int64_t C3 = 3 * (int64_t)C;
    const float *base = qkv + hd.qkv_off;
    const int r = threadIdx.x, q = q0 + r;
    const bool ok = q < T;
    const float l2 = ok ? lse[hd.row_off + q] * FA_LOG2E : 0.0f;
    const float dd = ok ? Dv[hd.row_off + q] : 0.0f;
    tile_rows_f32<D, BWD32_R>(Qs, LD, base, C3, q0, T);
    tile_rows_f32<D, BWD32_R>(dOs, LD, dout + hd.bt_off, C, q0, T);
    for (int d = 0; d < D; d++)
        dQs[r * LD + d] = 0.0f;
    const int nkb = (min(q0 + BWD32_R, T) + BWD32_R - 1) / BWD32_R;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * BWD32_R;
        __syncthreads();
        tile_rows_f32<D, BWD32_R>(Ks, D, base + C, C3, k0, T);
        tile_rows_f32<D, BWD32_R>(Vs, D, base + 2 * C, C3, k0, T);
        __syncthreads();
        for (int j = 0; j < BWD32_R; j++) {
            if (k0 + j > q)
                break; /* keys only grow */
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                s += Qs[r * LD + d] * Ks[j * D + d];
                dp += dOs[r * LD + d] * Vs[j * D + d];
            }
            const float ds = exp2f(s * sl2 - l2) * (dp - dd);
            for (int d = 0; d < D; d++)
                dQs[r * LD + d] += ds * Ks[j * D + d];
        }
    }
    if (!ok)
        return;
    float *row = dqkv + hd.qkv_off + (int64_t)q * C3;
    for (int d = 0; d < D; d++)
        row[d] = dQs[r * LD + d] * scale;
}

#ifndef FA_HOST_EMU /* the kernels alone are compiled on the host by a test */

/* ---- host ---- */

template <typename K> static ts_status set_smem(K kernel, int bytes, const char *op) {
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), op);
    return TS_OK;
}

template <int D>
static ts_status bwd_launch(cuda_ctx *ctx, const struct ts_tensor *dqkv, float *Dv,
                            const struct ts_tensor *dout, const struct ts_tensor *qkv,
                            const struct ts_tensor *out, const float *lse, int NH) {
    const char *op = "flash_attention_backward";
    const int B = (int)qkv->shape[0], T = (int)qkv->shape[1], C = (int)(qkv->shape[2] / 3);
    const float scale = 1.0f / sqrtf((float)D), sl2 = FA_LOG2E * scale;
    const int64_t rows = (int64_t)B * NH * T;
    const unsigned dot_blocks = grid_for(rows, BWD_D_WARPS);
    const unsigned bh = (unsigned)(B * NH);
    if (qkv->dtype == TS_DTYPE_BF16) {
        const bf16 *q = (const bf16 *)qkv->data, *d = (const bf16 *)dout->data;
        bf16 *dq = (bf16 *)dqkv->data;
        if (((uintptr_t)qkv->data | (uintptr_t)dout->data | (uintptr_t)dqkv->data) % 16 != 0)
            return ts_error(TS_ERR_UNSUPPORTED, "%s: qkv, dout or dqkv is not 16-byte aligned", op);
        flash_bwd_dot_kernel<bf16><<<dot_blocks, BWD_D_WARPS * 32, 0, ctx->stream>>>(
            Dv, d, (const bf16 *)out->data, rows, T, NH, C, D);
        CUDA_LAUNCHED("flash_attention_backward (D)");
        constexpr int s2 = dkv_smem_bf16<D>(), s3 = dq_smem_bf16<D>();
        TS_CHECK(set_smem(flash_bwd_dkv_bf16_kernel<D>, s2, op));
        TS_CHECK(set_smem(flash_bwd_dq_bf16_kernel<D>, s3, op));
        const dim3 grid((unsigned)((T + BWD_BK - 1) / BWD_BK), bh);
        flash_bwd_dkv_bf16_kernel<D>
            <<<grid, 128, s2, ctx->stream>>>(dq, q, d, lse, Dv, T, NH, C, sl2, scale);
        CUDA_LAUNCHED("flash_attention_backward (dK, dV)");
        flash_bwd_dq_bf16_kernel<D>
            <<<grid, 128, s3, ctx->stream>>>(dq, q, d, lse, Dv, T, NH, C, sl2, scale);
        CUDA_LAUNCHED("flash_attention_backward (dQ)");
    } else {
        const float *q = (const float *)qkv->data, *d = (const float *)dout->data;
        float *dq = (float *)dqkv->data;
        flash_bwd_dot_kernel<float><<<dot_blocks, BWD_D_WARPS * 32, 0, ctx->stream>>>(
            Dv, d, (const float *)out->data, rows, T, NH, C, D);
        CUDA_LAUNCHED("flash_attention_backward (D)");
        constexpr int s = bwd_smem_f32<D>();
        TS_CHECK(set_smem(flash_bwd_dkv_f32_kernel<D>, s, op));
        TS_CHECK(set_smem(flash_bwd_dq_f32_kernel<D>, s, op));
        const dim3 grid((unsigned)((T + BWD32_R - 1) / BWD32_R), bh);
        flash_bwd_dkv_f32_kernel<D>
            <<<grid, BWD32_R, s, ctx->stream>>>(dq, q, d, lse, Dv, T, NH, C, sl2, scale);
        CUDA_LAUNCHED("flash_attention_backward (dK, dV)");
        flash_bwd_dq_f32_kernel<D>
            <<<grid, BWD32_R, s, ctx->stream>>>(dq, q, d, lse, Dv, T, NH, C, sl2, scale);
        CUDA_LAUNCHED("flash_attention_backward (dQ)");
    }
    return TS_OK;
}

ts_status cuda_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                        const struct ts_tensor *scratch,
                                        const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                        const struct ts_tensor *out, const struct ts_tensor *lse,
                                        int num_heads) {
    int HS = 0;
    TS_CHECK(fa_check("flash_attention_backward", qkv, num_heads, &HS));
    cuda_ctx *ctx = cuda_ctx_of(be);
    float *Dv = (float *)scratch->data;
    const float *l = (const float *)lse->data;
    if (HS == 64)
        return bwd_launch<64>(ctx, dqkv, Dv, dout, qkv, out, l, num_heads);
    return bwd_launch<128>(ctx, dqkv, Dv, dout, qkv, out, l, num_heads);
}

#endif
