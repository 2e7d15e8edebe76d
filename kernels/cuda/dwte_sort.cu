/* dwte_sort.cu: the wte gradient by positions sorted by token id, deterministic without atomics.
 *
 * dwte (Vp, C) += for each position p = (b, t): row tokens[p] gets dout[p]. The previous kernel
 * (encoder.cu, TS_CUDA_DWTE=scan) has one block per vocabulary row scan all B T tokens: B T Vp
 * reads. Here, once per call:
 *   1. keys (id << 32 | p), unique, sorted: each block sorts 1024 of them in shared memory by
 *      rank merges (an element's place in the merged run is its index in its own run plus its
 *      rank in the partner run, found by binary search), then global merge passes of the same
 *      kind double the runs until one holds all. Ids outside [0, Vp) get id 0xffffffff and sort
 *      last; they are skipped, as by the CPU's validation before upload.
 *   2. One block finds the segments (runs of one id) and writes their starts in order.
 *   3. Summing blocks stride over the segments; block (k, y) owns columns [128 y, 128 y + 128)
 *      of segment k's row: its 8 warps take every 8th position of the segment in sorted (= B T)
 *      order, and warp 0 adds the 8 partial sums in order to dwte. Each dwte element has one
 *      owner and a fixed order of additions, so results repeat bit for bit; ids never seen cost
 *      nothing.
 * The sorted order is unique (the keys are), so which block sorts what never changes the sums.
 * Buffers for up to TS_DWTE_MAX_POSITIONS positions are allocated with the backend; more runs
 * the scan kernel (said once).
 *
 * TS_CUDA_HOST_EMU compiles the kernels alone as host C++ (tests/kernels/test_cuda_emu.cpp). */
#include <stdint.h>

#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#include "kernels/log.h"
#endif

typedef unsigned long long dwte_key;

#define DWTE_BAD_ID 0xffffffffull
#define DWTE_PAD (~0ull) /* past the last position of the last sort block */

__device__ __forceinline__ uint32_t dwte_id(dwte_key k) { return (uint32_t)(k >> 32); }
__device__ __forceinline__ int64_t dwte_pos(dwte_key k) { return (int64_t)(k & 0xffffffffull); }

/* The first index in a[0, n) whose key is >= key (upper: > key). */
__device__ __forceinline__ int64_t dwte_bound(const dwte_key *a, int64_t n, dwte_key key,
                                              bool upper) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = (lo + hi) >> 1;
        if (upper ? a[mid] <= key : a[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Where element i of src (runs of w, n elements) goes when runs 2r and 2r+1 are merged: left
 * runs count the partner's smaller keys, right runs also its equal ones (stable; only the pads
 * are equal). */
__device__ __forceinline__ int64_t dwte_merged_index(const dwte_key *src, int64_t n, int64_t w,
                                                     int64_t i) {
    const int64_t run = i / w, pstart = (run ^ 1) * w;
    if (pstart >= n)
        return i; /* the last run has no partner yet */
    const int64_t plen = pstart + w < n ? w : n - pstart;
    const int64_t rank = dwte_bound(src + pstart, plen, src[i], (run & 1) != 0);
    return (run & ~(int64_t)1) * w + (i - run * w) + rank;
}

/* 1. keys of block x's TS_DWTE_SORT_BLOCK positions, sorted, into keys. */
__global__ void dwte_block_sort_kernel(dwte_key *keys, const int32_t *tok, int64_t n, int64_t Vp) {
    __shared__ dwte_key buf[2][TS_DWTE_SORT_BLOCK];
    const int64_t base = (int64_t)blockIdx.x * TS_DWTE_SORT_BLOCK;
    for (int e = threadIdx.x; e < TS_DWTE_SORT_BLOCK; e += blockDim.x) {
        const int64_t p = base + e;
        dwte_key k = DWTE_PAD;
        if (p < n) {
            const int32_t id = tok[p];
            k = ((id >= 0 && id < Vp) ? (dwte_key)id : DWTE_BAD_ID) << 32 | (dwte_key)p;
        }
        buf[0][e] = k;
    }
    __syncthreads();
    int cur = 0;
    for (int64_t w = 1; w < TS_DWTE_SORT_BLOCK; w *= 2) {
        for (int e = threadIdx.x; e < TS_DWTE_SORT_BLOCK; e += blockDim.x)
            buf[cur ^ 1][dwte_merged_index(buf[cur], TS_DWTE_SORT_BLOCK, w, e)] = buf[cur][e];
        __syncthreads();
        cur ^= 1;
    }
    for (int e = threadIdx.x; e < TS_DWTE_SORT_BLOCK; e += blockDim.x)
        if (base + e < n)
            keys[base + e] = buf[cur][e];
}

/* 1b. one merge pass: runs of w in src become runs of 2w in dst. */
__global__ void dwte_merge_kernel(dwte_key *dst, const dwte_key *src, int64_t n, int64_t w) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[dwte_merged_index(src, n, w, i)] = src[i];
}

/* 2. one block: heads[k] = start of the k-th segment of valid keys, heads[nheads] = the number of
 * valid keys, *nheads = the segment count. Each thread owns a contiguous range of keys; counts
 * are scanned per warp by warp 0's lanes, then across warps by thread 0. */
#define DWTE_HEAD_THREADS 1024
__global__ void dwte_heads_kernel(int *heads, int *nheads, const dwte_key *keys, int64_t n) {
    __shared__ int cnt[DWTE_HEAD_THREADS], valid[DWTE_HEAD_THREADS];
    __shared__ int wsum[DWTE_HEAD_THREADS / 32], wvalid[DWTE_HEAD_THREADS / 32];
    const int t = threadIdx.x;
    const int64_t per = (n + DWTE_HEAD_THREADS - 1) / DWTE_HEAD_THREADS;
    const int64_t i0 = t * per, i1 = i0 + per < n ? i0 + per : n;
    int c = 0, v = 0;
    for (int64_t i = i0; i < i1; i++) {
        const uint32_t id = dwte_id(keys[i]);
        if (id == (uint32_t)DWTE_BAD_ID)
            break; /* sorted: the rest are invalid too */
        v++;
        c += i == 0 || dwte_id(keys[i - 1]) != id;
    }
    cnt[t] = c;
    valid[t] = v;
    __syncthreads();
    if (t < DWTE_HEAD_THREADS / 32) { /* exclusive scan within warp t's 32 counts */
        int s = 0, sv = 0;
        for (int j = 0; j < 32; j++) {
            const int x = cnt[32 * t + j], xv = valid[32 * t + j];
            cnt[32 * t + j] = s;
            valid[32 * t + j] = sv;
            s += x;
            sv += xv;
        }
        wsum[t] = s;
        wvalid[t] = sv;
    }
    __syncthreads();
    if (t == 0) { /* across warps */
        int s = 0, sv = 0;
        for (int j = 0; j < DWTE_HEAD_THREADS / 32; j++) {
            const int x = wsum[j], xv = wvalid[j];
            wsum[j] = s;
            wvalid[j] = sv;
            s += x;
            sv += xv;
        }
        *nheads = s;
        heads[s] = sv;
    }
    __syncthreads();
    int k = wsum[t >> 5] + cnt[t];
    for (int64_t i = i0; i < i1; i++) {
        const uint32_t id = dwte_id(keys[i]);
        if (id == (uint32_t)DWTE_BAD_ID)
            break;
        if (i == 0 || dwte_id(keys[i - 1]) != id)
            heads[k++] = (int)i;
    }
}

/* 3. dwte[id] += the dout rows of each segment; block (x, y) takes segments x, x + gridDim.x, ...
 * and columns [TS_DWTE_SUM_COLS y, + TS_DWTE_SUM_COLS). */
#define DWTE_CPT (TS_DWTE_SUM_COLS / 32)
template <typename T>
__global__ void dwte_sum_kernel(float *dwte, const T *dout, const dwte_key *keys, const int *heads,
                                const int *nheads, int64_t C) {
    __shared__ float sh[TS_DWTE_SUM_WARPS][TS_DWTE_SUM_COLS + 1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t c0 = (int64_t)blockIdx.y * TS_DWTE_SUM_COLS;
    const int count = *nheads;
    for (int k = blockIdx.x; k < count; k += gridDim.x) {
        const int64_t start = heads[k], end = heads[k + 1];
        float acc[DWTE_CPT];
        for (int q = 0; q < DWTE_CPT; q++)
            acc[q] = 0.0f;
        for (int64_t j = start + warp; j < end; j += TS_DWTE_SUM_WARPS) {
            const T *row = dout + dwte_pos(keys[j]) * C;
            for (int q = 0; q < DWTE_CPT; q++) {
                const int64_t c = c0 + lane + 32 * q;
                if (c < C)
                    acc[q] += tof(row[c]);
            }
        }
        for (int q = 0; q < DWTE_CPT; q++)
            sh[warp][lane + 32 * q] = acc[q];
        __syncthreads();
        if (warp == 0) {
            float *out = dwte + (int64_t)dwte_id(keys[start]) * C;
            for (int q = 0; q < DWTE_CPT; q++) {
                const int64_t c = c0 + lane + 32 * q;
                if (c >= C)
                    continue;
                float s = 0.0f;
                for (int g = 0; g < TS_DWTE_SUM_WARPS; g++)
                    s += sh[g][lane + 32 * q];
                out[c] += s;
            }
        }
        __syncthreads(); /* sh is rewritten for the next segment */
    }
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */

/* TS_OK with *done false when B T exceeds the buffers (the caller runs the scan kernel). */
ts_status cuda_dwte_sorted(cuda_ctx *ctx, enum ts_dtype dt, float *dwte, const void *dout,
                           const int32_t *tok, int64_t n, int64_t C, int64_t Vp, bool *done) {
    *done = false;
    if (n > TS_DWTE_MAX_POSITIONS) {
        if (!ctx->warned_dwte_size)
            ts_log(TS_LOG_WARN,
                   "cuda: encoder_backward: B*T = %lld is past the %d positions the sorted wte "
                   "gradient holds; the scan kernel runs (slower, same sums)",
                   (long long)n, TS_DWTE_MAX_POSITIONS);
        ctx->warned_dwte_size = true;
        return TS_OK;
    }
    *done = true;
    if (n == 0 || C == 0)
        return TS_OK;
    dwte_key *k[2] = {ctx->dwte_keys[0], ctx->dwte_keys[1]};
    const unsigned blocks = grid_for(n, TS_DWTE_SORT_BLOCK);
    dwte_block_sort_kernel<<<blocks, TS_DWTE_SORT_THREADS, 0, ctx->stream>>>(k[0], tok, n, Vp);
    CUDA_LAUNCHED("encoder_backward (wte: block sort)");
    int cur = 0;
    for (int64_t w = TS_DWTE_SORT_BLOCK; w < n; w *= 2, cur ^= 1) {
        dwte_merge_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(k[cur ^ 1], k[cur], n, w);
        CUDA_LAUNCHED("encoder_backward (wte: merge)");
    }
    dwte_heads_kernel<<<1, DWTE_HEAD_THREADS, 0, ctx->stream>>>(ctx->dwte_heads, ctx->dwte_nheads,
                                                                k[cur], n);
    CUDA_LAUNCHED("encoder_backward (wte: segments)");
    const int64_t segs = n < Vp ? n : Vp;
    const dim3 grid((unsigned)(segs < TS_DWTE_SUM_BLOCKS ? segs : TS_DWTE_SUM_BLOCKS),
                    grid_for(C, TS_DWTE_SUM_COLS));
    if (dt == TS_DTYPE_BF16)
        dwte_sum_kernel<__nv_bfloat16><<<grid, TS_DWTE_SUM_WARPS * 32, 0, ctx->stream>>>(
            dwte, (const __nv_bfloat16 *)dout, k[cur], ctx->dwte_heads, ctx->dwte_nheads, C);
    else
        dwte_sum_kernel<float><<<grid, TS_DWTE_SUM_WARPS * 32, 0, ctx->stream>>>(
            dwte, (const float *)dout, k[cur], ctx->dwte_heads, ctx->dwte_nheads, C);
    CUDA_LAUNCHED("encoder_backward (wte: sums)");
    return TS_OK;
}

#endif
