/* test_plugin.c: finding and loading the CUDA plug-in (suite cpu): a missing plug-in is reported
 * with where it was looked for, and the plug-in this build made (when nvcc was there) loads,
 * resolves its symbols from this executable, and on a machine without a GPU says so instead of
 * creating a backend. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
