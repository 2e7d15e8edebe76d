/* cuda_geom.h: launch geometry of the kernels whose grids depend on the problem size, as pure
 * host functions (plain C, no CUDA header), shared by the .cu launchers and by the cpu suite
 * (tests/kernels/test_cuda_emu.cpp checks that the grids cover every element exactly once at
 * sizes past the hardware's grid limits, running the kernels' own source on host threads). */
#ifndef TS_CUDA_GEOM_H
#define TS_CUDA_GEOM_H

#include <stdint.h>

/* The largest gridDim.y and gridDim.z a launch may use (the hardware's limit). */
#define TS_CUDA_GRID_YZ_MAX 65535

/* ---- the fallback gemm (gemm_fallback.cu): one thread per column of C, rows and batches
 * walked by grid-stride loops over gridDim.y and gridDim.z, so any m and batch work ---- */
#define TS_GEMM_FB_THREADS 128

struct ts_grid3 {
    unsigned x, y, z;
};

/* The grid for C (m, n) x batch; y and z are capped at yz_max (TS_CUDA_GRID_YZ_MAX on the
 * device; smaller in tests). Any dimension 0 gives x = 0: nothing to launch. */
static inline struct ts_grid3 ts_gemm_fallback_grid(int64_t m, int64_t n, int64_t batch,
                                                    int64_t yz_max) {
    struct ts_grid3 g = {0, 0, 0};
    if (m <= 0 || n <= 0 || batch <= 0)
        return g;
    g.x = (unsigned)((n + TS_GEMM_FB_THREADS - 1) / TS_GEMM_FB_THREADS);
    g.y = (unsigned)(m < yz_max ? m : yz_max);
    g.z = (unsigned)(batch < yz_max ? batch : yz_max);
    return g;
}

/* ---- the column sums (colsum.cu): tiles of TS_COLSUM_COLS columns by chunks of rows, each
 * block writing fixed partials, summed in chunk order by a second kernel ---- */
/* Columns per block (32 lanes x 2), row groups (warps) per block, rows per chunk at least (16
 * per row group), chunks at most (with C 768: 12 x 64 blocks of 256 threads, one wave on 132
 * SMs), and the partials buffer the backend allocates, in floats (4 MiB). */
#define TS_COLSUM_COLS 64
#define TS_COLSUM_GROUPS 8
#define TS_COLSUM_MIN_ROWS 128
#define TS_COLSUM_MAX_CHUNKS 64
#define TS_COLSUM_PARTIAL_FLOATS (1 << 20)

/* Chunks of rows for N rows of C columns and nout sums per column (1: a bias gradient; 2:
 * layernorm's dbias and dweight), given the partials buffer holds capacity floats: a pure
 * function of its arguments, so the summation order depends only on the shape. 0 when even one
 * chunk does not fit (the caller then runs the single-pass kernel). */
static inline int ts_colsum_chunks(int64_t N, int64_t C, int nout, int64_t capacity) {
    if (N <= 0 || C <= 0 || nout <= 0)
        return 0;
    int64_t want = (N + TS_COLSUM_MIN_ROWS - 1) / TS_COLSUM_MIN_ROWS;
    if (want > TS_COLSUM_MAX_CHUNKS)
        want = TS_COLSUM_MAX_CHUNKS;
    const int64_t fit = capacity / ((int64_t)nout * C);
    return (int)(want < fit ? want : fit);
}

/* Rows per chunk: chunk y covers rows [y r, min(N, (y + 1) r)). */
static inline int64_t ts_colsum_rows_per_chunk(int64_t N, int chunks) {
    return chunks > 0 ? (N + chunks - 1) / chunks : 0;
}

/* ---- the wte gradient by sorted positions (encoder.cu) ---- */
/* Keys sorted per block in shared memory (4 per thread), the B T the preallocated buffers hold
 * (B 256 at T 1024), and the summing blocks: columns (32 lanes x 4), row groups (warps), and
 * blocks along x, which stride over the segments. */
#define TS_DWTE_SORT_BLOCK 1024
#define TS_DWTE_SORT_THREADS 256
#define TS_DWTE_MAX_POSITIONS (1 << 18)
#define TS_DWTE_SUM_COLS 128
#define TS_DWTE_SUM_WARPS 8
#define TS_DWTE_SUM_BLOCKS 1024

/* Global merge passes after the block sort: runs of TS_DWTE_SORT_BLOCK doubled until one run
 * holds all n keys. */
static inline int ts_dwte_merge_passes(int64_t n) {
    int p = 0;
    for (int64_t w = TS_DWTE_SORT_BLOCK; w < n; w *= 2)
        p++;
    return p;
}

/* ---- the vectorised elementwise kernels (vec16.h): k elements per thread through 16-byte
 * loads and stores (k = 16 / the smallest element size: 4 f32, 8 bf16), the n % k tail one
 * element per thread in the same launch ---- */

/* Threads for n elements at k per thread: one per full group of k, and at least one per tail
 * element (the tail's n % k < k elements go to threads 0 .. n % k - 1). */
static inline int64_t ts_vec_threads(int64_t n, int k) {
    if (n <= 0 || k <= 0)
        return 0;
    const int64_t groups = n / k, tail = n % k;
    return groups > tail ? groups : tail;
}

/* Whether the 16-byte kernels may run: not switched off (TS_CUDA_VECTOR=0) and every pointer
 * 16-byte aligned (NULL, an absent operand, counts as aligned). A misaligned view (a ZeRO slice
 * at an odd offset) runs the one-element-per-thread kernel instead. */
static inline int ts_vec_usable(int switched_off, const void *const *ptrs, int nptrs) {
    if (switched_off)
        return 0;
    for (int i = 0; i < nptrs; i++)
        if (((uintptr_t)ptrs[i] & 15u) != 0)
            return 0;
    return 1;
}

#endif
