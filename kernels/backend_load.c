/* backend_load.c: finds libtessera_cuda.so, checks it was built for this backend table, and
 * hands out its entry points (backend_load.h says where it looks and why).
 *
 * The handle is kept for the life of the process: backends created by the plug-in point into
 * its code, and CUDA does not tolerate being unloaded. */
#include "kernels/backend_load.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TS_PLUGIN_DIR
#define TS_PLUGIN_DIR "/usr/local/lib/tessera"
#endif

static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ts_cuda_plugin plugin;
static bool plugin_loaded;

/* The executable's directory, or "" when it is unknown or would not fit (readlink cuts
 * silently: a result that fills the buffer may be cut, so it is not used). */
static void exe_dir(char *out, size_t len) {
    out[0] = '\0';
    ssize_t n = readlink("/proc/self/exe", out, len);
    if (n <= 0 || (size_t)n >= len) {
        out[0] = '\0';
        return;
    }
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
}

/* Appends "path: reason; " to the report of what was tried. */
static void note(char *tried, size_t len, const char *path, const char *why) {
    size_t used = strlen(tried);
    if (used + 1 >= len)
        return;
    int n = snprintf(tried + used, len - used, "%s%.1000s (%.400s)", used ? "; " : "", path, why);
    (void)n;
}

static ts_status load_from(const char *path, char *tried, size_t len) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        note(tried, len, path, e ? e : "dlopen failed");
        return ts_error(TS_ERR_UNSUPPORTED, "cannot load the CUDA plug-in: %s", tried);
    }
    /* POSIX guarantees dlsym's object pointer converts to a function pointer; memcpy says so
     * without the cast ISO C frowns on. */
    ts_plugin_abi_fn abi = NULL;
    ts_cuda_probe_fn probe = NULL;
    ts_cuda_create_fn create = NULL;
    void *sym = dlsym(h, TS_CUDA_SYM_ABI);
    memcpy(&abi, &sym, sizeof abi);
    sym = dlsym(h, TS_CUDA_SYM_PROBE);
    memcpy(&probe, &sym, sizeof probe);
    sym = dlsym(h, TS_CUDA_SYM_CREATE);
    memcpy(&create, &sym, sizeof create);
    if (!abi || !probe || !create) {
        dlclose(h);
        return ts_error(TS_ERR_UNSUPPORTED, "%s is not a Tessera CUDA plug-in (missing %s)", path,
                        !abi     ? TS_CUDA_SYM_ABI
                        : !probe ? TS_CUDA_SYM_PROBE
                                 : TS_CUDA_SYM_CREATE);
    }
    if (abi() != TS_BACKEND_ABI) {
        int got = abi();
        dlclose(h);
        return ts_error(TS_ERR_UNSUPPORTED,
                        "%s was built for backend ABI %d, this binary needs %d: rebuild it", path,
                        got, TS_BACKEND_ABI);
    }
    if (ts_path_fmt(plugin.path, sizeof plugin.path, "%s", path) != TS_OK) {
        dlclose(h);
        return ts_error_wrap(TS_ERR_UNSUPPORTED, "the CUDA plug-in's path");
    }
    plugin.handle = h;
    plugin.probe = probe;
    plugin.create = create;
    plugin_loaded = true;
    return TS_OK;
}

static bool exists(const char *path) { return access(path, R_OK) == 0; }

static ts_status find_and_load(void) {
    char tried[2048] = "";
    const char *env = getenv("TS_CUDA_PLUGIN");
    if (env && *env) {
        if (!exists(env))
            return ts_error(TS_ERR_UNSUPPORTED,
                            "TS_CUDA_PLUGIN=%s: no such file (unset it to search the usual places)",
                            env);
        return load_from(env, tried, sizeof tried);
    }
    char dir[TS_PATH_MAX], path[TS_PATH_MAX];
    exe_dir(dir, sizeof dir);
    if (dir[0] == '\0')
        note(tried, sizeof tried, "next to the executable", "its path is unknown or too long");
    const char *rel[] = {"", "/../kernels/cuda", "/../../kernels/cuda"};
    for (size_t i = 0; dir[0] && i < sizeof rel / sizeof rel[0]; i++) {
        if (ts_path_fmt(path, sizeof path, "%s%s/%s", dir, rel[i], TS_CUDA_PLUGIN_FILE) != TS_OK) {
            note(tried, sizeof tried, dir, "path too long");
            continue;
        }
        if (exists(path))
            return load_from(path, tried, sizeof tried);
        note(tried, sizeof tried, path, "not found");
    }
    TS_CHECK(ts_path_join(path, sizeof path, TS_PLUGIN_DIR, TS_CUDA_PLUGIN_FILE));
    if (exists(path))
        return load_from(path, tried, sizeof tried);
    note(tried, sizeof tried, path, "not found");
    /* Last, the loader's own search: a failure here is "not found" in the report. */
    return load_from(TS_CUDA_PLUGIN_FILE, tried, sizeof tried);
}

ts_status ts_cuda_plugin_open(const struct ts_cuda_plugin **out) {
    *out = NULL;
    pthread_mutex_lock(&plugin_lock);
    ts_status st = plugin_loaded ? TS_OK : find_and_load();
    pthread_mutex_unlock(&plugin_lock);
    if (st == TS_OK)
        *out = &plugin;
    return st;
}

ts_status ts_cuda_backend_create(struct ts_backend **out, const struct ts_cuda_options *opt) {
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "cuda backend: out is NULL");
    *out = NULL;
    const struct ts_cuda_plugin *p;
    TS_CHECK(ts_cuda_plugin_open(&p));
    struct ts_cuda_options o = {0};
    if (opt)
        o = *opt;
    return p->create(out, &o);
}
