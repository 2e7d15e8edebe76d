/* flash_attention_forward.cu: causal attention forward without the (T,T) matrix (backend.h's
 * flash_attention_forward): out (B,T,C) and lse (B,NH,T) f32 from qkv (B,T,3C).
 *
 * One CTA owns BR query rows of one head and walks the key tiles left to right, keeping for
 * each row a running max m2, a running sum l and an unnormalised output o (flash attention 2):
 *   x  = scale log2(e) q.k for the tile's keys, -inf where key > query (the causal mask);
 *   m' = max(m2, max x);  a = exp2(m2 - m');  p = exp2(x - m');
 *   l  = a l + sum p;     o = a o + p V;      m2 = m';
 * and at the end out = o / l, lse = (m2 + log2 l) ln 2. Only key tiles that hold a key <= the
 * CTA's last query are visited (tiles 0 .. ceil(min(q0 + BR, T) / BC) - 1), and only those that
 * reach past the CTA's first query (k0 + BC - 1 > q0) are masked; the rest are skipped.
 * Rows >= T are loaded as zeros (finite scores) and never stored, which is all odd T needs.
 *
 * bf16: 4 warps x 16 rows (BR 64), BC 64, S = Q K^T and O += P V on tensor cores (mma.sync
 * m16n8k16, f32 accumulators), P rounded to bf16 as the A operand (flash_attention.h).
 * f32: one thread per query row (BR 32), BC 32, plain FMAs; the same loop, so an indexing
 * bug shows in fp32 without bf16 rounding in the way. Both read CTAs heaviest-first (the last
 * query tile has the most key tiles). */
#include <math.h>

#include "kernels/cuda/flash_attention.h"

/* ---- bf16, tensor cores ---- */

#define FWD_BR 64 /* query rows per CTA: 4 warps x 16 */
#define FWD_BC 64 /* keys per tile */

template <int D> static constexpr int fwd_smem_bf16() {
    /* Qs [BR][D+PAD], Ks [BC][D+PAD], Vt [D][BC+PAD] */
    return (FWD_BR * (D + FA_PAD) + FWD_BC * (D + FA_PAD) + D * (FWD_BC + FA_PAD)) * 2;
}

template <int D>
__global__ void __launch_bounds__(128)
    flash_fwd_bf16_kernel(const bf16 *qkv, bf16 *out, float *lse, int T, int NH, int C, float sl2) {
    constexpr int LDQ = D + FA_PAD, LDV = FWD_BC + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *Qs = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Ks = Qs + FWD_BR * LDQ;
    bf16 *Vt = Ks + FWD_BC * LDQ;

    const int qb = gridDim.x - 1 - blockIdx.x, q0 = qb * FWD_BR;
    const fa_head hd = fa_head_of(blockIdx.y, T, NH, C, D);
    const int64_t C3 = 3 * (int64_t)C;
    const bf16 *base = qkv + hd.qkv_off;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int r0 = warp * 16;                           /* the warp's rows in the tile */
    const int qrow[2] = {q0 + r0 + g, q0 + r0 + g + 8}; /* this thread's two query rows */

    tile_rows<D, FWD_BR>(Qs, base, C3, q0, T);
    __syncthreads();
    uint32_t qf[D / 16][4]; /* the warp's 16 x D queries as A fragments, for every key tile */
#pragma unroll
    for (int kd = 0; kd < D / 16; kd++)
        load_a(qf[kd], Qs, LDQ, r0, kd * 16);

    float o[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
        o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    float m2[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    const int last = min(q0 + FWD_BR, T); /* one past the CTA's last valid query */
    const int nkb = (last + FWD_BC - 1) / FWD_BC;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * FWD_BC;
        __syncthreads(); /* every warp is done with the previous K and V */
        tile_rows<D, FWD_BC>(Ks, base + C, C3, k0, T);
        tile_cols<D, FWD_BC>(Vt, base + 2 * C, C3, k0, T);
        __syncthreads();

        /* S (16 x BC per warp) = Q K^T; s[j] holds keys k0 + 8j .. k0 + 8j + 7 */
        float s[FWD_BC / 8][4];
#pragma unroll
        for (int j = 0; j < FWD_BC / 8; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int kd = 0; kd < D / 16; kd++) {
                uint32_t b[2];
                load_b(b, Ks, LDQ, j * 8, kd * 16);
                mma_bf16_16816(s[j], qf[kd], b);
            }
        }
        /* scale to log2 units; mask keys after the query (this covers keys >= T for every
         * stored row, since a stored row has query < T) */
        const bool diag = k0 + FWD_BC - 1 > q0;
#pragma unroll
        for (int j = 0; j < FWD_BC / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + 8 * j + 2 * c + (e & 1);
                const float x = s[j][e] * sl2;
                s[j][e] = diag && key > qrow[e >> 1] ? -INFINITY : x;
            }
            /* online softmax per row; the 4 threads of a group share the row (shuffles 1, 2) */
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < FWD_BC / 8; j++)
                mx = fmaxf(mx, fmaxf(s[j][2 * rr], s[j][2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mnew = fmaxf(m2[rr], mx);
            /* a row with every key masked so far keeps m2 = -inf: subtract 0, not -inf */
            const float msafe = mnew == -INFINITY ? 0.0f : mnew;
            const float alpha = exp2f(m2[rr] - msafe);
            m2[rr] = mnew;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < FWD_BC / 8; j++) {
                s[j][2 * rr] = exp2f(s[j][2 * rr] - msafe);
                s[j][2 * rr + 1] = exp2f(s[j][2 * rr + 1] - msafe);
                sum += s[j][2 * rr] + s[j][2 * rr + 1];
            }
            l[rr] = l[rr] * alpha + sum; /* this thread's columns only; summed at the end */
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) {
                o[nd][2 * rr] *= alpha;
                o[nd][2 * rr + 1] *= alpha;
            }
        }
        /* O (16 x D) += P (16 x BC) V (BC x D): P from the accumulators, V from Vt[d][key] */
#pragma unroll
        for (int kk = 0; kk < FWD_BC / 16; kk++) {
            uint32_t a[4];
            pack_a_from_c(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) {
                uint32_t b[2];
                load_b(b, Vt, LDV, nd * 8, kk * 16);
                mma_bf16_16816(o[nd], a, b);
            }
        }
    }

    /* l over the whole row (fixed butterfly order), then out = o / l and lse */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        float lt = l[rr];
        lt += __shfl_xor_sync(0xffffffffu, lt, 1);
        lt += __shfl_xor_sync(0xffffffffu, lt, 2);
        const int q = qrow[rr];
        if (q >= T)
            continue;
        const float inv = 1.0f / lt;
        bf16 *orow = out + hd.bt_off + (int64_t)q * C;
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++)
            *reinterpret_cast<uint32_t *>(orow + nd * 8 + 2 * c) =
                pack_bf16(o[nd][2 * rr] * inv, o[nd][2 * rr + 1] * inv);
        if (c == 0)
            lse[hd.row_off + q] = (m2[rr] + log2f(lt)) * FA_LN2;
    }
}

/* ---- f32, one thread per query row ---- */

#define FWD32_BR 32 /* query rows per CTA, one thread each */
#define FWD32_BC 32 /* keys per tile */

template <int D> static constexpr int fwd_smem_f32() {
    /* Qs, Os [BR][D+1]; Ks, Vs [BC][D] */
    return (2 * FWD32_BR * (D + 1) + 2 * FWD32_BC * D) * 4;
}

template <int D>
__global__ void __launch_bounds__(FWD32_BR)
    flash_fwd_f32_kernel(const float *qkv, float *out, float *lse, int T, int NH, int C,
                         float sl2) {
    constexpr int LD = D + 1; /* thread r walks row r: stride D+1 puts the 32 rows in 32 banks */
    extern __shared__ __align__(16) unsigned char fa_smem[];
    float *Qs = reinterpret_cast<float *>(fa_smem);
    float *Os = Qs + FWD32_BR * LD;
    float *Ks = Os + FWD32_BR * LD;
    float *Vs = Ks + FWD32_BC * D;

    const int q0 = (gridDim.x - 1 - blockIdx.x) * FWD32_BR;
    const fa_head hd = fa_head_of(blockIdx.y, T, NH, C, D);
    const int64_t C3 = 3 * (int64_t)C;
    const float *base = qkv + hd.qkv_off;
    const int r = threadIdx.x, q = q0 + r;

    tile_rows_f32<D, FWD32_BR>(Qs, LD, base, C3, q0, T);
    for (int d = 0; d < D; d++)
        Os[r * LD + d] = 0.0f;
    float m2 = -INFINITY, l = 0.0f;
    const int nkb = (min(q0 + FWD32_BR, T) + FWD32_BC - 1) / FWD32_BC;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * FWD32_BC;
        __syncthreads();
        tile_rows_f32<D, FWD32_BC>(Ks, D, base + C, C3, k0, T);
        tile_rows_f32<D, FWD32_BC>(Vs, D, base + 2 * C, C3, k0, T);
        __syncthreads();
        float x[FWD32_BC];
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < FWD32_BC; j++) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++)
                dot += Qs[r * LD + d] * Ks[j * D + d];
            x[j] = k0 + j > q ? -INFINITY : dot * sl2;
            mx = fmaxf(mx, x[j]);
        }
        const float mnew = fmaxf(m2, mx);
        const float msafe = mnew == -INFINITY ? 0.0f : mnew;
        const float alpha = exp2f(m2 - msafe);
        m2 = mnew;
        l *= alpha;
#pragma unroll
        for (int j = 0; j < FWD32_BC; j++) {
            x[j] = exp2f(x[j] - msafe);
            l += x[j];
        }
        for (int d = 0; d < D; d++) {
            float acc = Os[r * LD + d] * alpha;
#pragma unroll
            for (int j = 0; j < FWD32_BC; j++)
                acc += x[j] * Vs[j * D + d];
            Os[r * LD + d] = acc;
        }
    }
    if (q >= T)
        return;
    const float inv = 1.0f / l;
    float *orow = out + hd.bt_off + (int64_t)q * C;
    for (int d = 0; d < D; d++)
        orow[d] = Os[r * LD + d] * inv;
    lse[hd.row_off + q] = (m2 + log2f(l)) * FA_LN2;
}

#ifndef FA_HOST_EMU /* the kernels alone are compiled on the host by a test */

/* ---- host ---- */

ts_status fa_check(const char *op, const struct ts_tensor *qkv, int num_heads, int *HS) {
    const int64_t B = qkv->shape[0], T = qkv->shape[1], C = qkv->shape[2] / 3;
    *HS = (int)(C / num_heads);
    if (*HS != 64 && *HS != 128)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "%s: head size %d; the flash kernels have 64 and 128 (the model runs the "
                        "materialised attention for other sizes)",
                        op, *HS);
    if (T > INT32_MAX / 2 || 3 * C > INT32_MAX || B * num_heads > 65535)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: T, C or B x NH too large", op);
    return TS_OK;
}

/* 16-byte vectors need every row start 16-byte aligned: base and 3C HS multiples of 8 are. */
static ts_status need_aligned(const char *op, const char *name, const void *p) {
    if ((uintptr_t)p % 16 != 0)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: %s is not 16-byte aligned", op, name);
    return TS_OK;
}

template <typename K> static ts_status set_smem(K kernel, int bytes, const char *op) {
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), op);
    return TS_OK;
}

template <int D>
static ts_status fwd_launch(cuda_ctx *ctx, const struct ts_tensor *out, const struct ts_tensor *lse,
                            const struct ts_tensor *qkv, int NH) {
    const char *op = "flash_attention_forward";
    const int B = (int)qkv->shape[0], T = (int)qkv->shape[1], C = (int)(qkv->shape[2] / 3);
    const float sl2 = FA_LOG2E / sqrtf((float)D);
    if (qkv->dtype == TS_DTYPE_BF16) {
        TS_CHECK(need_aligned(op, "qkv", qkv->data));
        TS_CHECK(need_aligned(op, "out", out->data));
        constexpr int smem = fwd_smem_bf16<D>();
        TS_CHECK(set_smem(flash_fwd_bf16_kernel<D>, smem, op));
        dim3 grid((unsigned)((T + FWD_BR - 1) / FWD_BR), (unsigned)(B * NH));
        flash_fwd_bf16_kernel<D><<<grid, 128, smem, ctx->stream>>>(
            (const bf16 *)qkv->data, (bf16 *)out->data, (float *)lse->data, T, NH, C, sl2);
    } else {
        constexpr int smem = fwd_smem_f32<D>();
        TS_CHECK(set_smem(flash_fwd_f32_kernel<D>, smem, op));
        dim3 grid((unsigned)((T + FWD32_BR - 1) / FWD32_BR), (unsigned)(B * NH));
        flash_fwd_f32_kernel<D><<<grid, FWD32_BR, smem, ctx->stream>>>(
            (const float *)qkv->data, (float *)out->data, (float *)lse->data, T, NH, C, sl2);
    }
    CUDA_LAUNCHED(op);
    return TS_OK;
}

ts_status cuda_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                       const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                       int num_heads) {
    int HS = 0;
    TS_CHECK(fa_check("flash_attention_forward", qkv, num_heads, &HS));
    if (HS == 64)
        return fwd_launch<64>(cuda_ctx_of(be), out, lse, qkv, num_heads);
    return fwd_launch<128>(cuda_ctx_of(be), out, lse, qkv, num_heads);
}

#endif
