/* blas.c: row-major sgemm from OpenBLAS loaded with dlopen, or a reference matmul.
 *
 * OpenBLAS is never linked: binaries that must run without it (the GPU check) still start, and
 * loading late lets us set OPENBLAS_CORETYPE from the CPU's features first, because Debian's
 * 0.3.21 misdetects recent Xeons and would otherwise run its SSE3 kernels. The OpenMP build is
 * preferred so that BLAS and our own OpenMP loops share one thread pool instead of two pools
 * oversubscribing the cores. The reference matmul is cache-blocked and OpenMP-parallel: slow
 * next to OpenBLAS, but dependency-free and deterministic. */
#include "kernels/cpu/blas.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"

/* CBLAS enum values (cblas.h), passed as int: same ABI. */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*cblas_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k,
                               float alpha, const float *a, int lda, const float *b, int ldb,
                               float beta, float *c, int ldc);
typedef void (*set_threads_fn)(int n);
typedef char *(*get_str_fn)(void);
typedef int (*get_int_fn)(void);

static const char *const openblas_paths[] = {
    "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "libopenblas.so.0",
};

/* ---- reference sgemm ---- */

/* Tile sizes: a packed (MB x KB) block of A, a packed (KB x NB) block of B and the (MB x NB)
 * accumulator together stay around 48 KiB, per thread, on the stack. */
#define MB 32
#define NB 64
#define KB 128

/* acc (MB x NB) += Ap (mb x kb) @ Bp (kb x NB); rows of Bp are NB wide so the j loop is a fixed,
 * vectorisable length. Clones for AVX2/AVX-512 are picked at load time by the loader (ifunc). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
tile_kernel(float *restrict acc, const float *restrict ap, const float *restrict bp, int mb,
            int kb) {
    for (int i = 0; i < mb; i++) {
        float *restrict ci = acc + i * NB;
        const float *restrict ai = ap + i * KB;
        for (int p = 0; p < kb; p++) {
            float a = ai[p];
            const float *restrict bpp = bp + p * NB;
            for (int j = 0; j < NB; j++)
                ci[j] += a * bpp[j];
        }
    }
}

static void ref_sgemm(const struct ts_blas *blas, bool trans_a, bool trans_b, int m, int n, int k,
                      float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                      float *c, int ldc) {
    (void)blas;
    int mblocks = (m + MB - 1) / MB, nblocks = (n + NB - 1) / NB;
#pragma omp parallel for collapse(2) schedule(static) if ((long)m * n * k > 32768)
    for (int ib = 0; ib < mblocks; ib++) {
        for (int jb = 0; jb < nblocks; jb++) {
            float acc[MB * NB] __attribute__((aligned(64)));
            float ap[MB * KB] __attribute__((aligned(64)));
            float bp[KB * NB] __attribute__((aligned(64)));
            int i0 = ib * MB, j0 = jb * NB;
            int mb = m - i0 < MB ? m - i0 : MB, nb = n - j0 < NB ? n - j0 : NB;
            memset(acc, 0, sizeof acc);
            for (int p0 = 0; p0 < k; p0 += KB) {
                int kb = k - p0 < KB ? k - p0 : KB;
                for (int i = 0; i < mb; i++)
                    for (int p = 0; p < kb; p++)
                        ap[i * KB + p] = trans_a ? a[(size_t)(p0 + p) * lda + (i0 + i)]
                                                 : a[(size_t)(i0 + i) * lda + (p0 + p)];
                for (int p = 0; p < kb; p++) {
                    for (int j = 0; j < nb; j++)
                        bp[p * NB + j] = trans_b ? b[(size_t)(j0 + j) * ldb + (p0 + p)]
                                                 : b[(size_t)(p0 + p) * ldb + (j0 + j)];
                    for (int j = nb; j < NB; j++)
                        bp[p * NB + j] = 0.0f;
                }
                tile_kernel(acc, ap, bp, mb, kb);
            }
            for (int i = 0; i < mb; i++) {
                float *ci = c + (size_t)(i0 + i) * ldc + j0;
                const float *ai = acc + i * NB;
                if (beta == 0.0f) /* C is not read: it may hold garbage or NaN */
                    for (int j = 0; j < nb; j++)
                        ci[j] = alpha * ai[j];
                else
                    for (int j = 0; j < nb; j++)
                        ci[j] = alpha * ai[j] + beta * ci[j];
            }
        }
    }
}

/* ---- OpenBLAS ---- */

static void openblas_sgemm(const struct ts_blas *blas, bool trans_a, bool trans_b, int m, int n,
                           int k, float alpha, const float *a, int lda, const float *b, int ldb,
                           float beta, float *c, int ldc) {
    cblas_sgemm_fn f;
    memcpy(&f, &blas->fn_sgemm, sizeof f);
    f(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS,
      trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* OpenBLAS reads OPENBLAS_CORETYPE once, in its constructor; pick from the CPU's features. */
static void choose_coretype(void) {
    if (getenv("OPENBLAS_CORETYPE"))
        return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    else if (__builtin_cpu_supports("avx2"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 0);
#endif
}

/* dlsym returns an object pointer; POSIX guarantees it converts to a function pointer, and
 * memcpy says so without the cast ISO C frowns on. */
#define LOAD_SYM(fnptr, handle, name)                                                              \
    do {                                                                                           \
        void *sym_ = dlsym((handle), (name));                                                      \
        memcpy(&(fnptr), &sym_, sizeof sym_);                                                      \
    } while (0)

static ts_status load_openblas(struct ts_blas *out, int threads) {
    choose_coretype();
    const char *forced = getenv("TS_OPENBLAS_LIB");
    const char *const *paths = openblas_paths;
    size_t npaths = sizeof openblas_paths / sizeof openblas_paths[0];
    if (forced && *forced) {
        paths = &forced;
        npaths = 1;
    }
    void *h = NULL;
    const char *path = NULL, *last_err = "not tried";
    for (size_t i = 0; i < npaths && !h; i++) {
        h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (h)
            path = paths[i];
        else
            last_err = dlerror();
    }
    if (!h)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "cannot load OpenBLAS (%s); install libopenblas0-openmp or set "
                        "TS_BLAS=reference",
                        last_err ? last_err : "?");
    void *fn = dlsym(h, "cblas_sgemm");
    if (!fn) {
        dlclose(h);
        return ts_error(TS_ERR_UNSUPPORTED, "%s has no cblas_sgemm", path);
    }
    set_threads_fn set_threads;
    get_str_fn get_corename, get_config;
    get_int_fn get_parallel;
    LOAD_SYM(set_threads, h, "openblas_set_num_threads");
    LOAD_SYM(get_corename, h, "openblas_get_corename");
    LOAD_SYM(get_config, h, "openblas_get_config");
    LOAD_SYM(get_parallel, h, "openblas_get_parallel");
    if (set_threads && threads > 0)
        set_threads(threads);

    char version[32] = "OpenBLAS";
    const char *config = get_config ? get_config() : NULL;
    if (config && strncmp(config, "OpenBLAS ", 9) == 0) /* "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." */
        snprintf(version, sizeof version, "OpenBLAS %.*s", (int)strcspn(config + 9, " "),
                 config + 9);
    const char *build = "unknown build";
    int par = get_parallel ? get_parallel() : -1;
    if (par == 0)
        build = "sequential build";
    else if (par == 1)
        build = "pthread build";
    else if (par == 2)
        build = "openmp build";
    snprintf(out->description, sizeof out->description, "%s (%s kernels, %s)", version,
             get_corename ? get_corename() : "?", build);
    out->is_reference = false;
    out->handle = h;
    out->fn_sgemm = fn;
    out->sgemm = openblas_sgemm;
    TS_LOG_D("blas: loaded %s from %s", out->description, path);
    return TS_OK;
}

static void use_reference(struct ts_blas *out) {
    out->is_reference = true;
    out->handle = NULL;
    out->fn_sgemm = NULL;
    out->sgemm = ref_sgemm;
    snprintf(out->description, sizeof out->description, "reference (blocked, OpenMP)");
}

ts_status ts_blas_load(struct ts_blas *out, enum ts_blas_choice choice, int threads) {
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "blas: out is NULL");
    memset(out, 0, sizeof *out);
    if (choice == TS_BLAS_REFERENCE) {
        use_reference(out);
        return TS_OK;
    }
    ts_status st = load_openblas(out, threads);
    if (st == TS_OK)
        return TS_OK;
    if (choice == TS_BLAS_OPENBLAS)
        return st;
    TS_LOG_D("blas: %s; using the reference matmul", ts_last_error());
    ts_error_clear();
    use_reference(out);
    return TS_OK;
}

void ts_blas_unload(struct ts_blas *blas) {
    if (!blas)
        return;
    /* OpenBLAS is not dlclose'd: its thread pool and atexit handlers may outlive this backend
     * (another backend in the process may still use the same handle), and unloading a library
     * with live threads crashes. dlopen reference-counts, so keeping it is harmless. */
    blas->handle = NULL;
    blas->fn_sgemm = NULL;
    blas->sgemm = NULL;
}
