/* test_plugin.c: finding and loading the CUDA plug-in (suite cpu): a missing plug-in is reported
 * with where it was looked for, and the plug-in this build made (when nvcc was there) loads,
 * resolves its symbols from this executable, and on a machine without a GPU says so instead of
 * creating a backend. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_nccl.h"
#include "kernels/backend_load.h"

Test(gpu_plugin, a_missing_plugin_is_reported) {
    setenv("TS_CUDA_PLUGIN", "/nonexistent/libtessera_cuda.so", 1);
    const struct ts_cuda_plugin *p = NULL;
    cr_assert_eq(ts_cuda_plugin_open(&p), TS_ERR_UNSUPPORTED);
    cr_assert_null(p);
    cr_assert(strstr(ts_last_error(), "/nonexistent/libtessera_cuda.so") != NULL, "%s",
              ts_last_error());
    struct ts_backend *be = (struct ts_backend *)1;
    cr_assert_eq(ts_cuda_backend_create(&be, NULL), TS_ERR_UNSUPPORTED);
    cr_assert_null(be);
}

Test(gpu_plugin, the_built_plugin_loads_and_probes) {
    const char *build = getenv("TS_BUILD_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/kernels/cuda/libtessera_cuda.so", build ? build : ".");
    if (access(path, R_OK) != 0)
        cr_skip_test("this build has no CUDA plug-in (%s)", path);
    setenv("TS_CUDA_PLUGIN", path, 1);
    const struct ts_cuda_plugin *p = NULL;
    cr_assert_eq(ts_cuda_plugin_open(&p), TS_OK, "%s", ts_last_error());
    cr_assert_str_eq(p->path, path);
    struct ts_device_list d;
    p->probe(&d);
    cr_assert(strstr(d.runtime, "CUDA runtime") != NULL, "%s", d.runtime);
    struct ts_backend *be = NULL;
    ts_status st = ts_cuda_backend_create(&be, NULL);
    if (d.count == 0) {
        cr_assert_neq(d.error[0], '\0', "no device and no reason given");
        cr_assert_eq(st, TS_ERR_UNSUPPORTED);
        cr_assert(strstr(ts_last_error(), "no CUDA device") != NULL, "%s", ts_last_error());
        cr_assert_null(be);
    } else {
        cr_assert_eq(st, TS_OK, "%s", ts_last_error());
        cr_assert(be->bf16);
        ts_backend_destroy(be);
    }
}

/* The NCCL communicator in the plug-in: its table is filled (device memory), the plug-in answers
 * NCCL's version or why NCCL is unusable, and without a GPU creating one says so cleanly. */
Test(gpu_plugin, the_nccl_table_is_filled_and_refuses_cleanly_without_a_gpu) {
    const char *build = getenv("TS_BUILD_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/kernels/cuda/libtessera_cuda.so", build ? build : ".");
    if (access(path, R_OK) != 0)
        cr_skip_test("this build has no CUDA plug-in (%s)", path);
    setenv("TS_CUDA_PLUGIN", path, 1);
    const struct ts_cuda_plugin *p = NULL;
    cr_assert_eq(ts_cuda_plugin_open(&p), TS_OK, "%s", ts_last_error());
    void *s = dlsym(p->handle, TS_NCCL_SYM_OPS);
    cr_assert_not_null(s, "the plug-in exports no %s", TS_NCCL_SYM_OPS);
    ts_nccl_ops_fn ops_fn;
    memcpy(&ops_fn, &s, sizeof ops_fn);
    const struct ts_comm_ops *o = ops_fn();
    cr_assert_str_eq(o->name, "nccl");
    cr_assert_eq(o->memory, TS_COMM_MEM_DEVICE);
    cr_assert(o->max_count > 0);
    cr_assert(o->destroy && o->all_reduce && o->broadcast_host && o->all_reduce_host &&
              o->barrier && o->all_reduce_start && o->reduce_scatter_start && o->all_gather_start &&
              o->test && o->wait && o->all_gather_u64 && o->split && o->abort);
    int version = 0;
    if (ts_comm_nccl_version(&version) == TS_OK)
        cr_assert_geq(version, 21800);
    else
        cr_assert(strstr(ts_last_error(), "NCCL") != NULL, "%s", ts_last_error());
    struct ts_device_list d;
    p->probe(&d);
    if (d.count > 0)
        return; /* on a GPU the cuda suite and the GPU check run the communicator */
    s = dlsym(p->handle, TS_NCCL_SYM_CREATE);
    cr_assert_not_null(s);
    ts_nccl_create_fn create;
    memcpy(&create, &s, sizeof create);
    ts_comm_t *host = NULL;
    cr_assert_eq(ts_comm_create_single(&host), TS_OK);
    unsigned char id[TS_NCCL_ID_BYTES] = {0};
    ts_comm_t *c = (ts_comm_t *)1;
    cr_assert_eq(create(&c, host, NULL, id, sizeof id, NULL), TS_ERR_UNSUPPORTED);
    cr_assert_null(c);
    cr_assert(strstr(ts_last_error(), "no GPU") != NULL, "%s", ts_last_error());
    ts_comm_destroy(host);
}

/* Where NCCL is missing or unusable, asking for it says why and names the library tried; these
 * are the refusals `tessera train` with several ranks on GPUs turns into its message. Each test
 * is its own process, so the plug-in's once-per-process loader starts fresh in each. */
static void open_built_plugin(void) {
    const char *build = getenv("TS_BUILD_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/kernels/cuda/libtessera_cuda.so", build ? build : ".");
    if (access(path, R_OK) != 0)
        cr_skip_test("this build has no CUDA plug-in (%s)", path);
    setenv("TS_CUDA_PLUGIN", path, 1);
}

static void use_nccl_library(const char *name) {
    const char *build = getenv("TS_BUILD_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/gpu/%s", build ? build : ".", name);
    cr_assert_eq(access(path, R_OK), 0, "%s was not built", path);
    setenv("TS_NCCL_LIBRARY", path, 1);
}

Test(gpu_plugin, an_absent_nccl_is_refused_naming_the_library) {
    open_built_plugin();
    setenv("TS_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
    int version = -1;
    cr_assert_eq(ts_comm_nccl_version(&version), TS_ERR_UNSUPPORTED);
    cr_assert_eq(version, 0);
    const char *e = ts_last_error();
    cr_assert(strstr(e, "NCCL is not available") != NULL, "%s", e);
    cr_assert(strstr(e, "/nonexistent/libnccl.so.2") != NULL, "%s", e);
    cr_assert(strstr(e, "TS_NCCL_LIBRARY") != NULL, "%s", e);
    /* the communicator is refused the same way, before any device is touched */
    ts_comm_t *host = NULL;
    cr_assert_eq(ts_comm_create_single(&host), TS_OK);
    ts_comm_t *c = (ts_comm_t *)1;
    cr_assert_eq(ts_comm_nccl_create(&c, host, NULL, NULL), TS_ERR_UNSUPPORTED);
    cr_assert_null(c);
    cr_assert(strstr(ts_last_error(), "/nonexistent/libnccl.so.2") != NULL, "%s", ts_last_error());
    ts_comm_destroy(host);
}

Test(gpu_plugin, an_nccl_older_than_2_18_is_refused_with_its_version) {
    open_built_plugin();
    use_nccl_library("libfake_nccl_old.so");
    int version = -1;
    cr_assert_eq(ts_comm_nccl_version(&version), TS_ERR_UNSUPPORTED);
    const char *e = ts_last_error();
    cr_assert(strstr(e, "is version 21003, 2.18 (21800) or newer is needed") != NULL, "%s", e);
    cr_assert(strstr(e, "libfake_nccl_old.so") != NULL, "%s", e);
}

Test(gpu_plugin, an_nccl_lacking_an_entry_point_is_refused_naming_it) {
    open_built_plugin();
    use_nccl_library("libfake_nccl_partial.so");
    int version = -1;
    cr_assert_eq(ts_comm_nccl_version(&version), TS_ERR_UNSUPPORTED);
    const char *e = ts_last_error();
    cr_assert(strstr(e, "lacks ncclGetUniqueId") != NULL, "%s", e);
}
