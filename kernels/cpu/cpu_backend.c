/* cpu_backend.c: the CPU backend's lifetime, memory and function table.
 *
 * Host memory is the backend's memory, so copies are memcpy and sync has nothing to wait for.
 * Allocations are 64-byte aligned (one cache line, one AVX-512 vector) and zero-filled. */
#include "kernels/cpu/cpu_backend.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu_impl.h"

static void cpu_destroy(struct ts_backend *be) {
    if (!be)
        return;
    struct cpu_ctx *ctx = cpu_ctx_of(be);
    if (ctx) {
        ts_blas_unload(&ctx->blas);
        free(ctx);
    }
    free(be);
}

static void cpu_info(struct ts_backend *be, struct ts_backend_info *out) {
    struct cpu_ctx *ctx = cpu_ctx_of(be);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "cpu");
    snprintf(out->detail, sizeof out->detail, "fp32, %d OpenMP threads, matmul: %s", ctx->threads,
             ctx->blas.description);
    out->threads = ctx->threads;
    out->memory_bytes = 0;
}

static ts_status cpu_alloc(struct ts_backend *be, size_t bytes, void **out) {
    (void)be;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        *out = NULL;
        return ts_error(TS_ERR_OOM, "cpu alloc: cannot allocate %zu bytes", bytes);
    }
    memset(p, 0, rounded);
    *out = p;
    return TS_OK;
}

static void cpu_free(struct ts_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

static ts_status cpu_copy(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes)
        memmove(dst, src, bytes);
    return TS_OK;
}

static ts_status cpu_memset_zero(struct ts_backend *be, void *dst, size_t bytes) {
    (void)be;
    if (bytes)
        memset(dst, 0, bytes);
    return TS_OK;
}

static ts_status cpu_sync(struct ts_backend *be) {
    (void)be;
    return TS_OK;
}

/* Host memory is already what the "device" copies from; async copies are plain copies. */
static ts_status cpu_host_alloc(struct ts_backend *be, size_t bytes, void **out) {
    return cpu_alloc(be, bytes, out);
}

/* An event on the CPU is the time it was recorded: all work is done when a call returns. */
struct ts_event {
    double ms;
};

static ts_status cpu_event_create(struct ts_backend *be, ts_event_t **out) {
    (void)be;
    *out = calloc(1, sizeof **out);
    if (!*out)
        return ts_error(TS_ERR_OOM, "cpu event: out of memory");
    return TS_OK;
}

static void cpu_event_destroy(struct ts_backend *be, ts_event_t *ev) {
    (void)be;
    free(ev);
}

static ts_status cpu_event_record(struct ts_backend *be, ts_event_t *ev) {
    (void)be;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ev->ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return TS_OK;
}

static ts_status cpu_event_sync(struct ts_backend *be, ts_event_t *ev) {
    (void)be;
    (void)ev;
    return TS_OK;
}

static ts_status cpu_event_elapsed_ms(struct ts_backend *be, ts_event_t *start, ts_event_t *end,
                                      float *ms) {
    (void)be;
    *ms = (float)(end->ms - start->ms);
    return TS_OK;
}

static ts_status blas_choice_from_env(enum ts_blas_choice *choice) {
    const char *env = getenv("TS_BLAS");
    if (*choice != TS_BLAS_AUTO || !env || !*env || strcmp(env, "auto") == 0)
        return TS_OK;
    if (strcmp(env, "openblas") == 0)
        *choice = TS_BLAS_OPENBLAS;
    else if (strcmp(env, "reference") == 0)
        *choice = TS_BLAS_REFERENCE;
    else
        return ts_error(TS_ERR_INVALID_ARG,
                        "cpu backend: TS_BLAS=%s; expected auto, openblas or reference", env);
    return TS_OK;
}

ts_status ts_cpu_backend_create(struct ts_backend **out, const struct ts_cpu_options *opt) {
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "cpu backend: out is NULL");
    *out = NULL;
    struct ts_cpu_options o = {0};
    if (opt)
        o = *opt;
    if (o.threads < 0)
        return ts_error(TS_ERR_INVALID_ARG, "cpu backend: threads = %d, expected >= 0", o.threads);
    if (o.blas != TS_BLAS_AUTO && o.blas != TS_BLAS_OPENBLAS && o.blas != TS_BLAS_REFERENCE)
        return ts_error(TS_ERR_INVALID_ARG, "cpu backend: unknown BLAS choice %d", (int)o.blas);
    TS_CHECK(blas_choice_from_env(&o.blas));

    struct ts_backend *be = calloc(1, sizeof *be);
    struct cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return ts_error(TS_ERR_OOM, "cpu backend: out of memory");
    }
    ctx->threads = o.threads > 0 ? o.threads : omp_get_max_threads();
    ts_status st = ts_blas_load(&ctx->blas, o.blas, ctx->threads);
    if (st != TS_OK) {
        free(be);
        free(ctx);
        return ts_error_wrap(st, "cpu backend");
    }

    be->name = "cpu";
    be->ctx = ctx;
    be->host_memory = true;
    be->destroy = cpu_destroy;
    be->info = cpu_info;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->copy_h2d = cpu_copy;
    be->copy_d2h = cpu_copy;
    be->copy_d2d = cpu_copy;
    be->memset_zero = cpu_memset_zero;
    be->sync = cpu_sync;
    be->fill = ts_cpu_fill;
    be->fill_normal = ts_cpu_fill_normal;
    be->encoder_forward = ts_cpu_encoder_forward;
    be->encoder_backward = ts_cpu_encoder_backward;
    be->encoder_forward_slice = ts_cpu_encoder_forward_slice;
    be->encoder_backward_slice = ts_cpu_encoder_backward_slice;
    be->layernorm_forward = ts_cpu_layernorm_forward;
    be->layernorm_backward = ts_cpu_layernorm_backward;
    be->matmul_forward = ts_cpu_matmul_forward;
    be->matmul_backward = ts_cpu_matmul_backward;
    be->attention_forward = ts_cpu_attention_forward;
    be->attention_backward = ts_cpu_attention_backward;
    be->attention_decode = ts_cpu_attention_decode;
    /* the flash pair as the device kernels' oracle; the model keeps the materialised pair */
    be->flash_attention_forward = ts_cpu_flash_attention_forward;
    be->flash_attention_backward = ts_cpu_flash_attention_backward;
    be->flash_attention_usable = NULL;
    be->gelu_forward = ts_cpu_gelu_forward;
    be->gelu_backward = ts_cpu_gelu_backward;
    be->residual_forward = ts_cpu_residual_forward;
    be->softmax_xent = ts_cpu_softmax_xent;
    be->xent_slice_max = ts_cpu_xent_slice_max;
    be->xent_slice_sumexp = ts_cpu_xent_slice_sumexp;
    be->xent_from_stats = ts_cpu_xent_from_stats;
    be->adamw = ts_cpu_adamw;
    be->sum_squares = ts_cpu_sum_squares;
    be->cast = ts_cpu_cast;
    be->adamw_master = ts_cpu_adamw_master;
    be->host_alloc = cpu_host_alloc;
    be->host_free = cpu_free;
    be->copy_h2d_async = cpu_copy;
    be->copy_d2h_async = cpu_copy;
    be->event_create = cpu_event_create;
    be->event_destroy = cpu_event_destroy;
    be->event_record = cpu_event_record;
    be->event_sync = cpu_event_sync;
    be->event_elapsed_ms = cpu_event_elapsed_ms;
    be->energy_mj = NULL; /* no portable CPU energy counter */
    *out = be;
    return TS_OK;
}
