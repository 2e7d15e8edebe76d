/* cuda_backend.cu: the CUDA backend's lifetime, memory, copies, events, device information and
 * energy counter, and the plug-in's three exported entry points (backend_load.h).
 *
 * One device and one non-blocking stream per backend: every op, copy and matmul is issued to it,
 * so work runs in issue order. copy_h2d and copy_d2h wait for the stream (their host buffers may
 * be reused as soon as they return); the _async copies and events do not. NVML is opened with
 * dlopen at create time, so a machine without it still runs (has_energy false). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_handles.h"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/log.h"

#define TS_EXPORT extern "C" __attribute__((visibility("default")))
#define DEFAULT_WORKSPACE (32u << 20)

/* ---- memory and copies ---- */

/* The backend's own allocations are counted in ctx->mem (mem_account.h): info.peak_bytes is
 * their high-water mark, whatever else runs on the device. */
static ts_status cu_alloc(struct ts_backend *be, size_t bytes, void **out) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    *out = NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return ts_error(e == cudaErrorMemoryAllocation ? TS_ERR_OOM : TS_ERR_CUDA,
                        "cudaMalloc of %zu bytes: %s (%zu of %zu bytes free on the device)", bytes,
                        cudaGetErrorString(e), free_b, total_b);
    }
    e = cudaMemsetAsync(p, 0, bytes, ctx->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return ts_error(TS_ERR_CUDA, "cudaMemsetAsync: %s", cudaGetErrorString(e));
    }
    ts_status st = ts_mem_account_add(&ctx->mem, p, bytes);
    if (st != TS_OK) {
        cudaFree(p);
        return st;
    }
    *out = p;
    return TS_OK;
}

static void cu_free(struct ts_backend *be, void *p) {
    if (!p)
        return;
    ts_mem_account_remove(&cuda_ctx_of(be)->mem, p);
    cudaFree(p); /* synchronises the device: no op still uses p */
}

static ts_status cu_h2d(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream), "copy_h2d");
    CUDA_TRY(cudaStreamSynchronize(ctx->stream), "copy_h2d (sync)");
    return TS_OK;
}

static ts_status cu_d2h(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream), "copy_d2h");
    CUDA_TRY(cudaStreamSynchronize(ctx->stream), "copy_d2h (sync)");
    return TS_OK;
}

static ts_status cu_d2d(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream), "copy_d2d");
    return TS_OK;
}

static ts_status cu_memset_zero(struct ts_backend *be, void *dst, size_t bytes) {
    CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, cuda_ctx_of(be)->stream), "memset_zero");
    return TS_OK;
}

static ts_status cu_sync(struct ts_backend *be) {
    CUDA_TRY(cudaStreamSynchronize(cuda_ctx_of(be)->stream), "sync");
    return TS_OK;
}

static ts_status cu_host_alloc(struct ts_backend *be, size_t bytes, void **out) {
    (void)be;
    *out = NULL;
    void *p = NULL;
    CUDA_TRY(cudaMallocHost(&p, bytes ? bytes : 1), "cudaMallocHost");
    memset(p, 0, bytes);
    *out = p;
    return TS_OK;
}

static void cu_host_free(struct ts_backend *be, void *p) {
    (void)be;
    cudaFreeHost(p);
}

static ts_status cu_h2d_async(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_ctx_of(be)->stream),
             "copy_h2d_async");
    return TS_OK;
}

static ts_status cu_d2h_async(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_ctx_of(be)->stream),
             "copy_d2h_async");
    return TS_OK;
}

/* ---- events ---- */

struct ts_event {
    cudaEvent_t ev;
};

static ts_status cu_event_create(struct ts_backend *be, ts_event_t **out) {
    (void)be;
    ts_event_t *e = (ts_event_t *)calloc(1, sizeof *e);
    if (!e)
        return ts_error(TS_ERR_OOM, "event_create: out of memory");
    cudaError_t r = cudaEventCreate(&e->ev);
    if (r != cudaSuccess) {
        free(e);
        return ts_error(TS_ERR_CUDA, "cudaEventCreate: %s", cudaGetErrorString(r));
    }
    *out = e;
    return TS_OK;
}

static void cu_event_destroy(struct ts_backend *be, ts_event_t *e) {
    (void)be;
    if (!e)
        return;
    cudaEventDestroy(e->ev);
    free(e);
}

static ts_status cu_event_record(struct ts_backend *be, ts_event_t *e) {
    CUDA_TRY(cudaEventRecord(e->ev, cuda_ctx_of(be)->stream), "cudaEventRecord");
    return TS_OK;
}

static ts_status cu_event_sync(struct ts_backend *be, ts_event_t *e) {
    (void)be;
    CUDA_TRY(cudaEventSynchronize(e->ev), "cudaEventSynchronize");
    return TS_OK;
}

static ts_status cu_event_elapsed_ms(struct ts_backend *be, ts_event_t *a, ts_event_t *b,
                                     float *ms) {
    (void)be;
    CUDA_TRY(cudaEventElapsedTime(ms, a->ev, b->ev), "cudaEventElapsedTime");
    return TS_OK;
}

/* ---- handles for the plug-in's C files (cuda_handles.h) ---- */

extern "C" cudaStream_t ts_cuda_backend_stream(struct ts_backend *be) {
    return cuda_ctx_of(be)->stream;
}
extern "C" int ts_cuda_backend_device(struct ts_backend *be) { return cuda_ctx_of(be)->device; }
extern "C" cudaEvent_t ts_cuda_event_handle(ts_event_t *e) { return e->ev; }

/* ---- NVML, loaded at run time ---- */

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_by_bus_fn)(const char *bus, void **dev);

/* dlsym's object pointer to a function pointer, without the cast -Wpedantic dislikes. */
template <typename F> static F sym(void *lib, const char *name) {
    F f = NULL;
    void *p = dlsym(lib, name);
    memcpy(&f, &p, sizeof f);
    return f;
}

static void nvml_open(cuda_ctx *ctx) {
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return;
    nvml_init_fn init = sym<nvml_init_fn>(lib, "nvmlInit_v2");
    nvml_by_bus_fn by_bus = sym<nvml_by_bus_fn>(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    ctx->nvml_energy =
        sym<int (*)(void *, unsigned long long *)>(lib, "nvmlDeviceGetTotalEnergyConsumption");
    ctx->nvml_shutdown = sym<int (*)(void)>(lib, "nvmlShutdown");
    char bus[64];
    unsigned long long mj = 0;
    if (!init || !by_bus || !ctx->nvml_energy || !ctx->nvml_shutdown || init() != 0) {
        dlclose(lib);
        ctx->nvml_energy = NULL;
        return;
    }
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, ctx->device) != cudaSuccess ||
        by_bus(bus, &ctx->nvml_dev) != 0 || ctx->nvml_energy(ctx->nvml_dev, &mj) != 0) {
        ctx->nvml_shutdown();
        dlclose(lib);
        ctx->nvml_energy = NULL;
        ctx->nvml_dev = NULL;
        return;
    }
    ctx->nvml_lib = lib;
}

static ts_status cu_energy_mj(struct ts_backend *be, uint64_t *out) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (!ctx->nvml_lib)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "energy: NVML (libnvidia-ml.so.1) is missing or this GPU has no counter");
    unsigned long long mj = 0;
    int r = ctx->nvml_energy(ctx->nvml_dev, &mj);
    if (r != 0)
        return ts_error(TS_ERR_CUDA, "nvmlDeviceGetTotalEnergyConsumption: NVML error %d", r);
    *out = (uint64_t)mj;
    return TS_OK;
}

/* ---- lifetime and information ---- */

static void cu_destroy(struct ts_backend *be) {
    if (!be)
        return;
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (ctx) {
        if (ctx->stream)
            cudaStreamSynchronize(ctx->stream);
        cudaFree(ctx->workspace);
        cudaFree(ctx->partials);
        cudaFree(ctx->colsum_partials);
        cudaFree(ctx->dwte_keys[0]);
        cudaFree(ctx->dwte_keys[1]);
        cudaFree(ctx->dwte_heads);
        cudaFree(ctx->dwte_nheads);
        ts_lt_cache_deinit(&ctx->lt_cache); /* before the handle its plans were made with */
        if (ctx->lt)
            cublasLtDestroy(ctx->lt);
        if (ctx->stream)
            cudaStreamDestroy(ctx->stream);
        if (ctx->nvml_lib) {
            ctx->nvml_shutdown();
            dlclose(ctx->nvml_lib);
        }
        ts_mem_account_deinit(&ctx->mem);
        free(ctx);
    }
    free(be);
}

static void cu_info(struct ts_backend *be, struct ts_backend_info *out) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int rt = 0;
    cudaRuntimeGetVersion(&rt);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%.63s", ctx->prop.name);
    snprintf(out->detail, sizeof out->detail,
             "CUDA device %d, sm_%d%d, %d SMs, runtime %d.%d, cuBLASLt %zu, fp32/bf16%s%s",
             ctx->device, ctx->prop.major, ctx->prop.minor, ctx->prop.multiProcessorCount,
             rt / 1000, (rt % 1000) / 10, cublasLtGetVersion(),
             ctx->nvml_lib ? ", NVML energy" : "",
             ctx->force_fallback_gemm ? ", fallback matmul (TS_CUDA_GEMM)"
             : ctx->lt_cache_on       ? ""
                                      : ", uncached cuBLASLt plans (TS_CUBLASLT_CACHE=0)");
    out->threads = 1;
    out->memory_bytes = ctx->prop.totalGlobalMem;
    out->sm_count = ctx->prop.multiProcessorCount;
    out->cc_major = ctx->prop.major;
    out->cc_minor = ctx->prop.minor;
    out->peak_bytes = ctx->mem.peak;
    out->has_energy = ctx->nvml_lib != NULL;
}

/* The model asks once, at create: flash unless TS_ATTENTION=reference or the head size has no
 * flash kernels (said once per backend). */
static bool cu_flash_usable(struct ts_backend *be, int head_size, enum ts_dtype dtype) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    (void)dtype; /* both dtypes have kernels */
    if (ctx->attention_reference)
        return false;
    if (head_size != 64 && head_size != 128) {
        if (!ctx->warned_flash_hs)
            ts_log(TS_LOG_WARN,
                   "cuda: flash attention has head sizes 64 and 128; head size %d runs the "
                   "materialised attention",
                   head_size);
        ctx->warned_flash_hs = true;
        return false;
    }
    return true;
}

static void fill_table(struct ts_backend *be) {
    be->name = "cuda";
    be->bf16 = true;
    be->host_memory = false; /* device memory: MPI cannot reduce it; NCCL will */
    be->destroy = cu_destroy;
    be->info = cu_info;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->copy_h2d = cu_h2d;
    be->copy_d2h = cu_d2h;
    be->copy_d2d = cu_d2d;
    be->memset_zero = cu_memset_zero;
    be->sync = cu_sync;
    be->fill = cuda_fill;
    be->fill_normal = cuda_fill_normal;
    be->encoder_forward = cuda_encoder_forward;
    be->encoder_backward = cuda_encoder_backward;
    be->layernorm_forward = cuda_layernorm_forward;
    be->layernorm_backward = cuda_layernorm_backward;
    be->matmul_forward = cuda_matmul_forward;
    be->matmul_forward_gelu = cuda_matmul_forward_gelu;
    be->matmul_backward = cuda_matmul_backward;
    be->matmul_backward_dgelu = cuda_matmul_backward_dgelu;
    be->attention_forward = cuda_attention_forward;
    be->attention_backward = cuda_attention_backward;
    be->attention_decode = cuda_attention_decode;
    be->flash_attention_forward = cuda_flash_attention_forward;
    be->flash_attention_backward = cuda_flash_attention_backward;
    be->flash_attention_usable = cu_flash_usable;
    be->gelu_forward = cuda_gelu_forward;
    be->gelu_backward = cuda_gelu_backward;
    be->residual_forward = cuda_residual_forward;
    be->residual_layernorm_forward = cuda_residual_layernorm_forward;
    be->softmax_xent = cuda_softmax_xent;
    /* The vocabulary-parallel slots (encoder_*_slice, xent_slice_*, xent_from_stats) stay NULL:
     * tensor parallelism runs on the CPU backend only until its collectives go over NCCL, and
     * the model refuses tp > 1 on a backend without them. */
    be->adamw = cuda_adamw;
    be->sum_squares = cuda_sum_squares;
    be->cast = cuda_cast;
    be->adamw_master = cuda_adamw_master;
    be->host_alloc = cu_host_alloc;
    be->host_free = cu_host_free;
    be->copy_h2d_async = cu_h2d_async;
    be->copy_d2h_async = cu_d2h_async;
    be->event_create = cu_event_create;
    be->event_destroy = cu_event_destroy;
    be->event_record = cu_event_record;
    be->event_sync = cu_event_sync;
    be->event_elapsed_ms = cu_event_elapsed_ms;
    be->energy_mj = cu_energy_mj;
}

/* A buffer the backend keeps for itself (created with it), counted in info.peak_bytes. */
static cudaError_t own_alloc(cuda_ctx *ctx, void **p, size_t bytes) {
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        return e;
    }
    if (ts_mem_account_add(&ctx->mem, *p, bytes) != TS_OK) {
        cudaFree(*p);
        *p = NULL;
        return cudaErrorMemoryAllocation;
    }
    return cudaSuccess;
}

/* A two-valued knob read once at creation: unset or empty or `dflt` leaves *alt false, `alt`
 * sets it; anything else is refused with *err saying what is expected. */
static bool env_choice(const char *name, const char *dflt, const char *alt, bool *is_alt,
                       const char **err) {
    static char msg[192];
    const char *v = getenv(name);
    *is_alt = false;
    if (!v || !*v || strcmp(v, dflt) == 0)
        return true;
    if (strcmp(v, alt) == 0) {
        *is_alt = true;
        return true;
    }
    snprintf(msg, sizeof msg, "%s=%.40s; expected %s (the default) or %s", name, v, dflt, alt);
    *err = msg;
    return false;
}

/* ---- the plug-in's entry points ---- */

TS_EXPORT int ts_cuda_plugin_abi(void) { return TS_BACKEND_ABI; }

TS_EXPORT void ts_cuda_plugin_probe(struct ts_device_list *out) {
    memset(out, 0, sizeof *out);
    int drv = 0, rt = 0, n = 0;
    cudaRuntimeGetVersion(&rt);
    snprintf(out->runtime, sizeof out->runtime, "CUDA runtime %d.%d, cuBLASLt %zu", rt / 1000,
             (rt % 1000) / 10, cublasLtGetVersion());
    snprintf(out->built_for, sizeof out->built_for, "sm_90 SASS + compute_90 PTX");
    if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
        snprintf(out->driver, sizeof out->driver, "CUDA driver %d.%d", drv / 1000,
                 (drv % 1000) / 10);
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(out->error, sizeof out->error, "cudaGetDeviceCount: %s (%s)",
                 cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError(); /* clear the sticky-free error so a later call starts clean */
        return;
    }
    if (n == 0)
        snprintf(out->error, sizeof out->error, "the CUDA driver reports no device");
    for (int i = 0; i < n && i < TS_MAX_DEVICES; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
            continue;
        struct ts_device_desc *d = &out->dev[out->count++];
        snprintf(d->name, sizeof d->name, "%.95s", p.name);
        d->memory_bytes = p.totalGlobalMem;
        d->sm_count = p.multiProcessorCount;
        d->cc_major = p.major;
        d->cc_minor = p.minor;
    }
}

TS_EXPORT ts_status ts_cuda_plugin_create(struct ts_backend **out,
                                          const struct ts_cuda_options *opt) {
    *out = NULL;
    struct ts_device_list devs;
    ts_cuda_plugin_probe(&devs);
    if (devs.count == 0)
        return ts_error(TS_ERR_UNSUPPORTED, "no CUDA device: %s", devs.error);
    int dev = opt ? opt->device : 0;
    if (dev < 0 || dev >= devs.count)
        return ts_error(TS_ERR_INVALID_ARG, "CUDA device %d does not exist (%d found)", dev,
                        devs.count);
    struct ts_backend *be = (struct ts_backend *)calloc(1, sizeof *be);
    cuda_ctx *ctx = (cuda_ctx *)calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return ts_error(TS_ERR_OOM, "cuda backend: out of memory");
    }
    be->ctx = ctx;
    fill_table(be);
    ctx->device = dev;
    ctx->workspace_bytes = opt && opt->workspace_bytes ? opt->workspace_bytes : DEFAULT_WORKSPACE;
    const char *g = getenv("TS_CUDA_GEMM");
    ctx->force_fallback_gemm = g && strcmp(g, "fallback") == 0;
    const char *att = getenv("TS_ATTENTION");
    if (att && *att && strcmp(att, "reference") != 0 && strcmp(att, "flash") != 0) {
        free(be);
        free(ctx);
        return ts_error(TS_ERR_INVALID_ARG,
                        "cuda backend: TS_ATTENTION=%s; expected flash (the default) or reference",
                        att);
    }
    ctx->attention_reference = att && strcmp(att, "reference") == 0;
    const char *knob_err = NULL;
    if (!env_choice("TS_CUBLASLT_CACHE", "1", "0", &ctx->lt_cache_on, &knob_err) ||
        !env_choice("TS_CUDA_COLSUM", "blocks", "legacy", &ctx->colsum_legacy, &knob_err) ||
        !env_choice("TS_CUDA_DWTE", "sorted", "scan", &ctx->dwte_legacy, &knob_err) ||
        !env_choice("TS_CUDA_VECTOR", "1", "0", &ctx->vector_off, &knob_err) ||
        !env_choice("TS_CUDA_FUSED_LN", "1", "0", &ctx->fused_ln_off, &knob_err) ||
        !env_choice("TS_CUDA_DGELU", "1", "0", &ctx->dgelu_off, &knob_err)) {
        free(be);
        free(ctx);
        return ts_error(TS_ERR_INVALID_ARG, "cuda backend: %s", knob_err);
    }
    ctx->lt_cache_on = !ctx->lt_cache_on; /* env_choice set it for "0" */
    ts_log(TS_LOG_INFO,
           "cuda: cuBLASLt plans %s; column sums %s; wte gradient %s; elementwise kernels %s; "
           "residual + layernorm %s; MLP backward %s (kernels/cuda/README.md)",
           ctx->lt_cache_on ? "cached per shape" : "rebuilt per call (TS_CUBLASLT_CACHE=0)",
           ctx->colsum_legacy ? "single pass (TS_CUDA_COLSUM=legacy)" : "over many blocks",
           ctx->dwte_legacy ? "scanned per vocabulary row (TS_CUDA_DWTE=scan)"
                            : "by positions sorted by id",
           ctx->vector_off ? "one element per thread (TS_CUDA_VECTOR=0)" : "16-byte vectorised",
           ctx->fused_ln_off ? "two kernels (TS_CUDA_FUSED_LN=0)" : "fused",
           ctx->dgelu_off ? "matmul then GELU kernel (TS_CUDA_DGELU=0)"
                          : "cuBLASLt DGELU epilogue (bf16)");
    ts_log(TS_LOG_INFO, "cuda: attention: %s",
           ctx->attention_reference
               ? "materialised (TS_ATTENTION=reference)"
               : "flash (fused kernels, head sizes 64 and 128; TS_ATTENTION=reference for the "
                 "materialised one)");
    ts_status st = TS_OK;
    cudaError_t e;
    cublasStatus_t ls;
#define STEP(call, what)                                                                           \
    do {                                                                                           \
        e = (call);                                                                                \
        if (e != cudaSuccess) {                                                                    \
            st = ts_error(TS_ERR_CUDA, "cuda backend: %s: %s (%s)", (what), cudaGetErrorString(e), \
                          cudaGetErrorName(e));                                                    \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
    STEP(cudaSetDevice(dev), "cudaSetDevice");
    STEP(cudaGetDeviceProperties(&ctx->prop, dev), "cudaGetDeviceProperties");
    STEP(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    STEP(own_alloc(ctx, &ctx->workspace, ctx->workspace_bytes), "cuBLASLt workspace");
    STEP(own_alloc(ctx, (void **)&ctx->partials, TS_NORM_BLOCKS * sizeof(double)), "norm partials");
    STEP(own_alloc(ctx, (void **)&ctx->colsum_partials, TS_COLSUM_PARTIAL_FLOATS * sizeof(float)),
         "column-sum partials");
    for (int i = 0; i < 2; i++)
        STEP(own_alloc(ctx, (void **)&ctx->dwte_keys[i],
                       TS_DWTE_MAX_POSITIONS * sizeof(unsigned long long)),
             "wte gradient sort keys");
    STEP(own_alloc(ctx, (void **)&ctx->dwte_heads, (TS_DWTE_MAX_POSITIONS + 1) * sizeof(int)),
         "wte gradient segments");
    STEP(own_alloc(ctx, (void **)&ctx->dwte_nheads, sizeof(int)), "wte gradient segment count");
#undef STEP
    st = cuda_lt_cache_init(ctx);
    if (st != TS_OK)
        goto fail;
    ls = cublasLtCreate(&ctx->lt);
    if (ls != CUBLAS_STATUS_SUCCESS) {
        ctx->lt = NULL;
        st = ts_error(TS_ERR_CUDA, "cuda backend: cublasLtCreate: status %d", (int)ls);
        goto fail;
    }
    nvml_open(ctx);
    *out = be;
    return TS_OK;
fail:
    cu_destroy(be);
    return st;
}
