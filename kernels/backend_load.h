/* backend_load.h: device backends that live in plug-ins, found and loaded at run time.
 *
 * CUDA, cuBLASLt and NVML are only ever in libtessera_cuda.so, which the core opens with dlopen
 * when a run asks for a GPU: `tessera` links none of them and a machine without them runs
 * everything on the CPU. The plug-in resolves ts_error and ts_log from the executable that
 * loads it, so every executable that loads it is linked with --export-dynamic.
 *
 * Search order (the first file that exists is loaded; a file that fails to load is an error):
 *   1. $TS_CUDA_PLUGIN, a path to the file (then nothing else is tried);
 *   2. next to the executable;
 *   3. ../kernels/cuda/ and ../../kernels/cuda/ from the executable (the build tree);
 *   4. the install directory (TS_PLUGIN_DIR, <libdir>/tessera);
 *   5. the dynamic loader's own search (LD_LIBRARY_PATH, ldconfig). */
#ifndef TS_BACKEND_LOAD_H
#define TS_BACKEND_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/fs.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TS_CUDA_PLUGIN_FILE "libtessera_cuda.so"
#define TS_MAX_DEVICES 16

struct ts_cuda_options {
    int device;             /* CUDA ordinal */
    size_t workspace_bytes; /* cuBLASLt workspace; 0: 32 MiB */
};

struct ts_device_desc {
    char name[96];
    uint64_t memory_bytes;
    int sm_count;
    int cc_major, cc_minor;
};

/* What the plug-in sees of the machine (tessera info). */
struct ts_device_list {
    int count;          /* devices found; 0 with `error` set when the driver refused */
    char error[256];    /* why there is no device: "no CUDA-capable device is detected", ... */
    char driver[64];    /* "CUDA driver 13.0" or "" */
    char runtime[64];   /* "CUDA runtime 13.0, cuBLASLt 130100" */
    char built_for[64]; /* "sm_90 + compute_90 PTX" */
    struct ts_device_desc dev[TS_MAX_DEVICES];
};

/* The plug-in's exported entry points (C linkage, looked up with dlsym). */
typedef int (*ts_plugin_abi_fn)(void); /* returns TS_BACKEND_ABI it was built with */
typedef void (*ts_cuda_probe_fn)(struct ts_device_list *out);
typedef ts_status (*ts_cuda_create_fn)(struct ts_backend **out, const struct ts_cuda_options *opt);
#define TS_CUDA_SYM_ABI "ts_cuda_plugin_abi"
#define TS_CUDA_SYM_PROBE "ts_cuda_plugin_probe"
#define TS_CUDA_SYM_CREATE "ts_cuda_plugin_create"

struct ts_cuda_plugin {
    char path[TS_PATH_MAX]; /* the file loaded */
    void *handle;           /* its dlopen handle, for entry points of other modules (NCCL) */
    ts_cuda_probe_fn probe;
    ts_cuda_create_fn create;
};

/* Finds and loads the plug-in (once per process; it is never unloaded, since backends created
 * from it point into it). On failure the message lists every place tried and dlerror()'s text. */
ts_status ts_cuda_plugin_open(const struct ts_cuda_plugin **out) TS_MUST_CHECK;

/* Loads the plug-in and creates a CUDA backend on device opt->device (opt NULL: device 0).
 * TS_ERR_UNSUPPORTED when the plug-in is missing or there is no device, with the reason. */
ts_status ts_cuda_backend_create(struct ts_backend **out,
                                 const struct ts_cuda_options *opt) TS_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif
