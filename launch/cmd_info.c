/* cmd_info.c: `tessera info`: the build, the backends this binary can use, the devices the CUDA
 * plug-in sees, and, for a backend that is unavailable, why (plug-in not found or not loadable,
 * no GPU, the driver's error text). Always exits 0: it reports, it does not judge. */
#include <stdio.h>
#include <string.h>

#include "comm/comm_nccl.h"
#include "kernels/backend_load.h"
#include "kernels/cpu/cpu_backend.h"
#include "launch/cli.h"
#include "launch/commands.h"

#ifndef TS_VERSION
#define TS_VERSION "unknown"
#endif
#ifndef TS_BUILD_DESC
#define TS_BUILD_DESC "unknown"
#endif

static void print_cpu(void) {
    struct ts_backend *be = NULL;
    if (ts_cpu_backend_create(&be, NULL) != TS_OK) {
        printf("  cpu   unavailable: %s\n", ts_last_error());
        return;
    }
    struct ts_backend_info info;
    be->info(be, &info);
    printf("  cpu   available: %s\n", info.detail);
    ts_backend_destroy(be);
}

static void print_cuda(void) {
    const struct ts_cuda_plugin *p = NULL;
    if (ts_cuda_plugin_open(&p) != TS_OK) {
        printf("  cuda  unavailable: plug-in not loaded: %s\n", ts_last_error());
        return;
    }
    struct ts_device_list d;
    p->probe(&d);
    printf("  cuda  plug-in %s\n", p->path);
    printf("        %s%s%s; built for %s\n", d.runtime, d.driver[0] ? ", " : "", d.driver,
           d.built_for);
    int nccl = 0;
    if (ts_comm_nccl_version(&nccl) == TS_OK)
        printf("        NCCL %d.%d.%d (libnccl.so.2, opened at run time): several ranks, one GPU "
               "each\n",
               nccl / 10000, (nccl / 100) % 100, nccl % 100);
    else
        printf("        NCCL unavailable (one GPU per job only): %s\n", ts_last_error());
    if (d.count == 0) {
        printf("        unavailable: no GPU: %s\n", d.error);
        return;
    }
    printf("        available: %d device(s)\n", d.count);
    for (int i = 0; i < d.count; i++)
        printf("        %d: %s, %.1f GiB, %d SMs, compute capability %d.%d%s\n", i, d.dev[i].name,
               (double)d.dev[i].memory_bytes / (1024.0 * 1024.0 * 1024.0), d.dev[i].sm_count,
               d.dev[i].cc_major, d.dev[i].cc_minor,
               d.dev[i].cc_major == 9 ? "" : " (the plug-in is built for sm_90; PTX JIT)");
}

int ts_cmd_info(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tessera info\n\nPrints the build, the backends this binary can use, "
                   "the GPUs the CUDA plug-in sees,\nand why a backend is unavailable. "
                   "TS_CUDA_PLUGIN=/path/libtessera_cuda.so picks the plug-in.\n");
            return TS_EXIT_OK;
        }
        fprintf(stderr, "tessera info: unexpected argument '%s'\n", argv[i]);
        return TS_EXIT_USAGE;
    }
    printf("tessera %s (%s)\n", TS_VERSION, TS_BUILD_DESC);
    printf("backends:\n");
    print_cpu();
    print_cuda();
    return TS_EXIT_OK;
}
