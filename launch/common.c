/* common.c: helpers shared by the subcommands (common.h). */
#include "launch/common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/backend_load.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/fs.h"
#include "kernels/log.h"

static ts_status cpu_backend(struct ts_backend **out, const char *blas, int threads) {
    struct ts_cpu_options opt = {.threads = threads, .blas = TS_BLAS_AUTO};
    if (strcmp(blas, "openblas") == 0)
        opt.blas = TS_BLAS_OPENBLAS;
    else if (strcmp(blas, "reference") == 0)
        opt.blas = TS_BLAS_REFERENCE;
    else if (strcmp(blas, "auto") != 0)
        return ts_error(TS_ERR_INVALID_ARG, "--blas must be auto, openblas or reference, got '%s'",
                        blas);
    if (threads < 0)
        return ts_error(TS_ERR_INVALID_ARG, "--threads must be >= 0 (0 = all cores), got %d",
                        threads);
    return ts_cpu_backend_create(out, &opt);
}

/* auto: the GPU when the plug-in loads and sees a device, else the CPU (saying why). A GPU
 * that is present but fails to start is an error, not a silent fallback. */
ts_status ts_launch_backend(struct ts_backend **out, const char *device, const char *blas,
                            int threads) {
    return ts_launch_backend_at(out, device, blas, threads, -1);
}

/* The CUDA backend on the device for local_rank (< 0: device 0). */
static ts_status cuda_backend_at(struct ts_backend **out, int local_rank) {
    struct ts_cuda_options o = {0};
    if (local_rank > 0) {
        const struct ts_cuda_plugin *p = NULL;
        TS_CHECK(ts_cuda_plugin_open(&p));
        struct ts_device_list devs;
        p->probe(&devs);
        if (devs.count > 0)
            o.device = local_rank % devs.count;
    }
    return ts_cuda_backend_create(out, &o);
}

ts_status ts_launch_backend_at(struct ts_backend **out, const char *device, const char *blas,
                               int threads, int local_rank) {
    *out = NULL;
    if (strcmp(device, "cpu") == 0)
        return cpu_backend(out, blas, threads);
    if (strcmp(device, "cuda") == 0) {
        ts_status st = cuda_backend_at(out, local_rank);
        if (st != TS_OK)
            return ts_error_wrap(st, "--device cuda (tessera info says what was found)");
        return TS_OK;
    }
    if (strcmp(device, "auto") != 0)
        return ts_error(TS_ERR_INVALID_ARG, "--device must be cpu, cuda or auto, got '%s'", device);
    const struct ts_cuda_plugin *p = NULL;
    if (ts_cuda_plugin_open(&p) != TS_OK) {
        TS_LOG_I("--device auto: using the CPU (%s)", ts_last_error());
        return cpu_backend(out, blas, threads);
    }
    struct ts_device_list devs;
    p->probe(&devs);
    if (devs.count == 0) {
        TS_LOG_I("--device auto: using the CPU (no GPU: %s)", devs.error);
        return cpu_backend(out, blas, threads);
    }
    ts_status st = cuda_backend_at(out, local_rank);
    if (st != TS_OK)
        return ts_error_wrap(st, "--device auto found %s but could not use it", devs.dev[0].name);
    return TS_OK;
}

ts_status ts_launch_precision(const struct ts_backend *be, const char *precision,
                              enum ts_dtype *out) {
    if (strcmp(precision, "fp32") == 0) {
        *out = TS_DTYPE_F32;
    } else if (strcmp(precision, "bf16") == 0) {
        if (!be->bf16)
            return ts_error(TS_ERR_INVALID_ARG,
                            "--precision bf16 needs a backend that computes in bf16 (--device "
                            "cuda); the %s backend is fp32 only",
                            be->name);
        *out = TS_DTYPE_BF16;
    } else if (strcmp(precision, "auto") == 0) {
        *out = be->bf16 ? TS_DTYPE_BF16 : TS_DTYPE_F32;
    } else {
        return ts_error(TS_ERR_INVALID_ARG, "--precision must be fp32, bf16 or auto, got '%s'",
                        precision);
    }
    return TS_OK;
}

bool ts_launch_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

ts_status ts_launch_abs_path(const char *path, char *out, size_t len) {
    if (path[0] == '/')
        return ts_path_fmt(out, len, "%s", path);
    /* the directory part must exist; the last part may be a glob ("shards/train_*.bin") */
    char dir[TS_PATH_MAX], real[PATH_MAX];
    TS_CHECK(ts_path_fmt(dir, sizeof(dir), "%s", path));
    char *slash = strrchr(dir, '/');
    const char *base = path;
    if (slash != NULL) {
        *slash = '\0';
        base = path + (slash - dir) + 1;
    } else {
        snprintf(dir, sizeof(dir), ".");
    }
    if (realpath(dir[0] != '\0' ? dir : "/", real) == NULL) {
        if (getcwd(real, sizeof(real)) == NULL)
            return ts_error(TS_ERR_IO, "cannot find the working directory: %s", strerror(errno));
        return ts_path_fmt(out, len, "%s/%s", real, path);
    }
    if (base[0] == '\0' || strcmp(base, ".") == 0)
        return ts_path_fmt(out, len, "%s", real);
    return ts_path_fmt(out, len, "%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/", base);
}

ts_status ts_launch_model_path(const char *ckpt, char *out, size_t len) {
    struct stat st;
    if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode))
        return ts_path_join(out, len, ckpt, "model.bin");
    return ts_path_fmt(out, len, "%s", ckpt);
}

double ts_launch_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail_rank = -1;

void ts_launch_set_rank(int rank) { fail_rank = rank; }

int ts_launch_fail(const char *cmd, int code) {
    if (fail_rank >= 0)
        fprintf(stderr, "[rank %d] tessera %s: %s\n", fail_rank, cmd, ts_last_error());
    else
        fprintf(stderr, "tessera %s: %s\n", cmd, ts_last_error());
    return code;
}
