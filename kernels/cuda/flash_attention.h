/* flash_attention.h: what flash_attention_forward.cu and flash_attention_backward.cu share: the
 * tiling constants, the tensor-core fragment helpers (mma.sync m16n8k16, bf16 in, f32
 * accumulators) and the global-to-shared tile loaders. Private to kernels/cuda.
 *
 * Layout. qkv (B,T,3C): head h of batch row b has q[t] at qkv + (b T + t) 3C + h HS, k at +C,
 * v at +2C; out and dout (B,T,C) have row t of head h at (b T + t) C + h HS; lse and the
 * backward's D (B,NH,T) f32 at (b NH + h) T + t. One CTA works on one (b,h) (blockIdx.y) and one
 * tile of rows (blockIdx.x).
 *
 * Scores live in the log2 domain: x = s scale log2(e), so exp(s scale - m) = exp2(x - m2) and
 * lse = (m2 + log2 l) ln 2, with m2 the running max of x and l the running sum of exp2(x - m2).
 *
 * Fragments of mma.sync.m16n8k16.row.col (PTX ISA, "Matrix fragments for mma.m16n8k16"), for
 * lane = 4 g + c (g = lane >> 2 the row group, c = lane & 3 the thread in the group):
 *   A (16 x 16, row-major), 4 x b32: a0 = A[g][2c..2c+1], a1 = A[g+8][2c..2c+1],
 *                                    a2 = A[g][2c+8..2c+9], a3 = A[g+8][2c+8..2c+9];
 *   B (16 x 8, k x n),      2 x b32: b0 = B[2c..2c+1][g], b1 = B[2c+8..2c+9][g];
 *   C (16 x 8, f32),        4 x f32: c0,c1 = C[g][2c..2c+1], c2,c3 = C[g+8][2c..2c+1];
 * the lower-indexed element of each pair in the low 16 bits. So a B operand is read as two
 * 32-bit words when it is stored n-major, Bs[n][k] (k contiguous): every product below keeps its
 * B operand that way in shared memory, transposing on the way in where needed. Two C tiles
 * side by side (n 0..7 and 8..15) hold exactly the elements of one A fragment (k 0..15) of the
 * same rows: P = exp(S) goes from the accumulators of S = Q K^T straight into the A operand of
 * O += P V without touching shared memory (pack_a_from_c).
 *
 * FA_HOST_EMU compiles the kernels as host C++ for tests/kernels/test_flash_device.cpp, which
 * runs every CUDA thread as a host thread and mma.sync from the PTX layout above.
 *
 * Shared-memory rows are padded by 8 elements (16 bytes): with a row of 72 elements (36 words)
 * or 136 (68 words, = 4 mod 32), the 32 lanes of a fragment load (8 rows g x 4 words c) hit
 * banks 4g + c, all different; a 40-element row (20 words) gives 20g + c mod 32, also all
 * different. */
#ifndef TS_CUDA_FLASH_ATTENTION_H
#define TS_CUDA_FLASH_ATTENTION_H

#include <stdint.h>

#ifndef FA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif

#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f
#define FA_PAD 8 /* elements of padding per shared-memory row (bf16 tiles) */

typedef __nv_bfloat16 bf16;

/* The (b,h) a CTA works on and the head's base pointers. */
struct fa_head {
    int64_t qkv_off; /* element offset of q[0] of head (b,h) in qkv */
    int64_t bt_off;  /* element offset of row 0 of head (b,h) in out/dout */
    int64_t row_off; /* element offset of (b,h)'s T entries in lse/D */
};

__device__ __forceinline__ fa_head fa_head_of(int bh, int T, int NH, int C, int HS) {
    const int b = bh / NH, h = bh % NH;
    fa_head r;
    r.qkv_off = (int64_t)b * T * 3 * C + (int64_t)h * HS;
    r.bt_off = (int64_t)b * T * C + (int64_t)h * HS;
    r.row_off = (int64_t)bh * T;
    return r;
}

/* ---- tensor-core fragments ---- */

__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4],
                                               const uint32_t b[2]) {
#ifdef FA_HOST_EMU /* tests/kernels/test_flash_device.cpp: the PTX fragment layout on the host */
    fa_emu_mma(c, a, b);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

/* (lo, hi) rounded to bf16, lo in the low half. */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* A fragment of rows r0..r0+15, columns k0..k0+15 of a row-major tile s (leading dim ld). */
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *s, int ld, int r0, int k0) {
    const int g = (threadIdx.x & 31) >> 2, c = threadIdx.x & 3;
    const bf16 *p = s + (r0 + g) * ld + k0 + 2 * c;
    a[0] = ld32(p);
    a[1] = ld32(p + 8 * ld);
    a[2] = ld32(p + 8);
    a[3] = ld32(p + 8 * ld + 8);
}

/* B fragment (k0..k0+15) x (n0..n0+7) of a tile stored n-major: s[n][k], leading dim ld. */
__device__ __forceinline__ void load_b(uint32_t b[2], const bf16 *s, int ld, int n0, int k0) {
    const int g = (threadIdx.x & 31) >> 2, c = threadIdx.x & 3;
    const bf16 *p = s + (n0 + g) * ld + k0 + 2 * c;
    b[0] = ld32(p);
    b[1] = ld32(p + 8);
}

/* The A fragment (16 rows x k 0..15) made of two accumulator tiles: lo holds k 0..7, hi 8..15. */
__device__ __forceinline__ void pack_a_from_c(uint32_t a[4], const float lo[4], const float hi[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

/* ---- global -> shared tiles (bf16, 16-byte vectors; rows >= T become zeros) ---- */

/* s[r][0..D) = g[(t0 + r) ld ...], rows r < R; s has leading dim D + FA_PAD. */
template <int D, int R>
__device__ __forceinline__ void tile_rows(bf16 *s, const bf16 *g, int64_t ld, int t0, int T) {
    constexpr int VEC = D / 8; /* 16-byte vectors per row */
    for (int i = threadIdx.x; i < R * VEC; i += blockDim.x) {
        const int r = i / VEC, c = (i % VEC) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t0 + r < T)
            v = *reinterpret_cast<const uint4 *>(g + (int64_t)(t0 + r) * ld + c);
        *reinterpret_cast<uint4 *>(s + r * (D + FA_PAD) + c) = v;
    }
}

/* The same rows transposed: s[d][r], leading dim R + FA_PAD (the B operand of a product whose
 * k runs over the rows). */
template <int D, int R>
__device__ __forceinline__ void tile_cols(bf16 *s, const bf16 *g, int64_t ld, int t0, int T) {
    constexpr int VEC = D / 8;
    for (int i = threadIdx.x; i < R * VEC; i += blockDim.x) {
        const int r = i / VEC, c = (i % VEC) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t0 + r < T)
            v = *reinterpret_cast<const uint4 *>(g + (int64_t)(t0 + r) * ld + c);
        const bf16 *e = reinterpret_cast<const bf16 *>(&v);
#pragma unroll
        for (int j = 0; j < 8; j++)
            s[(c + j) * (R + FA_PAD) + r] = e[j];
    }
}

/* ---- fp32 tiles (scalar; the fp32 kernels are the simple twins) ---- */

/* s[r][0..D) with leading dim lds, rows >= T zero. */
template <int D, int R>
__device__ __forceinline__ void tile_rows_f32(float *s, int lds, const float *g, int64_t ld, int t0,
                                              int T) {
    for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
        const int r = i / D, c = i % D;
        s[r * lds + c] = t0 + r < T ? g[(int64_t)(t0 + r) * ld + c] : 0.0f;
    }
}

#ifndef FA_HOST_EMU
/* Launch-time checks shared by both ops: head size, grid limits, 16-byte alignment. */
ts_status fa_check(const char *op, const struct ts_tensor *qkv, int num_heads, int *HS);
#endif

#endif
