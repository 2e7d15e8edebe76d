/* world.c: the job's processes: MPI or not, per-rank logging, layout, agreement, failure.
 *
 * Why no MPI without a launcher: Open MPI's singleton MPI_Init forks a helper daemon and costs
 * time for nothing in the common single-process case, and a binary run by a plain srun (no
 * PMIx) would silently become N independent jobs; instead the launcher is detected from the
 * environment and MPI is used only under mpirun or `srun --mpi=pmix`. */
#include "launch/world.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"
#include "launch/common.h"
#ifdef TS_HAVE_MPI
#include "comm/comm_mpi.h"
#endif

ts_status ts_world_create(ts_comm_t **out, int *argc, char ***argv) {
    *out = NULL;
    const char *err = NULL;
    const char *launcher = ts_comm_detect_launcher(&err);
    if (err != NULL)
        return ts_error(TS_ERR_INVALID_ARG, "%s", err);
    if (launcher == NULL)
        return ts_comm_create_single(out);
#ifdef TS_HAVE_MPI
    TS_CHECK(ts_comm_mpi_create_world(out, argc, argv));
    const int rank = ts_comm_rank(*out);
    if (ts_comm_size(*out) > 1) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "[rank %d] ", rank);
        ts_log_set_prefix(prefix);
        ts_launch_set_rank(rank);
        if (rank != 0 && getenv("TS_LOG") == NULL)
            ts_log_set_level(TS_LOG_WARN);
    }
    return TS_OK;
#else
    (void)argc;
    (void)argv;
    return ts_error(TS_ERR_UNSUPPORTED,
                    "started by %s, but this tessera was built without MPI; rebuild with "
                    "libopenmpi-dev installed (meson -Dmpi=enabled)",
                    launcher);
#endif
}

#define HOST_STRIDE 64

ts_status ts_world_log_layout(ts_comm_t *world, const struct ts_grid *grid) {
    const int n = ts_comm_size(world);
    char *hosts = calloc((size_t)n, HOST_STRIDE);
    uint64_t *locals = calloc((size_t)n, sizeof(uint64_t));
    ts_status st = TS_OK;
    if (hosts == NULL || locals == NULL) {
        st = ts_error(TS_ERR_OOM, "layout: out of memory");
        goto exit;
    }
#ifdef TS_HAVE_MPI
    TS_CHECK_GOTO(ts_comm_mpi_host_names(world, hosts, HOST_STRIDE), st, exit);
#else
    snprintf(hosts, HOST_STRIDE, "localhost");
#endif
    TS_CHECK_GOTO(ts_comm_all_gather_u64(world, (uint64_t)ts_comm_local_rank(world), locals), st,
                  exit);
    int nhosts = 0;
    for (int r = 0; r < n; r++) {
        bool seen = false;
        for (int q = 0; q < r && !seen; q++)
            seen = strcmp(hosts + (size_t)q * HOST_STRIDE, hosts + (size_t)r * HOST_STRIDE) == 0;
        nhosts += !seen;
    }
    TS_LOG_I("layout: world %d = dp %d x tp %d, %s, %d host(s)", n, grid->dp_size, grid->tp_size,
             ts_comm_name(world), nhosts);
    for (int r = 0; r < n && r < 64; r++)
        TS_LOG_I("  rank %d: host %s, local rank %d", r, hosts + (size_t)r * HOST_STRIDE,
                 (int)locals[r]);
    if (n > 64)
        TS_LOG_I("  ... %d more ranks", n - 64);
    const int across = ts_grid_tp_group_across_hosts(hosts, HOST_STRIDE, n, grid->tp_size);
    if (across >= 0 && ts_comm_rank(world) == 0)
        TS_LOG_W("--tp %d: tensor-parallel group %d (ranks %d..%d) spans more than one host; its "
                 "all-reduces run on every layer and are meant for one node's interconnect: place "
                 "%d consecutive ranks on each host",
                 grid->tp_size, across, across * grid->tp_size, (across + 1) * grid->tp_size - 1,
                 grid->tp_size);
exit:
    free(hosts);
    free(locals);
    return st;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

#define CANON_BYTES 4096

/* The first line where a and b differ: its key, a's value and b's value. */
static void first_difference(const char *a, const char *b, char *msg, size_t len, int rank) {
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || strncmp(a, b, la) != 0) {
            snprintf(msg, len, "rank %d has %.*s, rank 0 has %.*s", rank, (int)la, a, (int)lb, b);
            return;
        }
        a += la + (ea != NULL);
        b += lb + (eb != NULL);
    }
    snprintf(msg, len, "rank %d's settings differ from rank 0's", rank);
}

ts_status ts_world_check_agreement(ts_comm_t *world, const char *canonical) {
    const int n = ts_comm_size(world);
    if (n == 1)
        return TS_OK;
    uint64_t *hashes = calloc((size_t)n, sizeof(uint64_t));
    char *mine = calloc(1, CANON_BYTES), *other = calloc(1, CANON_BYTES);
    ts_status st = TS_OK;
    if (hashes == NULL || mine == NULL || other == NULL) {
        st = ts_error(TS_ERR_OOM, "config check: out of memory");
        goto exit;
    }
    snprintf(mine, CANON_BYTES, "%s", canonical);
    TS_CHECK_GOTO(ts_comm_all_gather_u64(world, fnv1a(mine), hashes), st, exit);
    int bad = -1;
    for (int r = 1; r < n && bad < 0; r++)
        if (hashes[r] != hashes[0])
            bad = r;
    if (bad < 0)
        goto exit;
    /* Everyone sees the same hashes, so every rank takes this branch: fetch rank 0's and the
     * first differing rank's settings and name the difference, identically on all ranks. */
    char rank0[CANON_BYTES];
    memcpy(rank0, mine, CANON_BYTES);
    TS_CHECK_GOTO(ts_comm_broadcast_host(world, rank0, CANON_BYTES, 0), st, exit);
    memcpy(other, mine, CANON_BYTES);
    TS_CHECK_GOTO(ts_comm_broadcast_host(world, other, CANON_BYTES, bad), st, exit);
    char diff[512];
    first_difference(other, rank0, diff, sizeof(diff), bad);
    st = ts_error(TS_ERR_INVALID_ARG,
                  "ranks disagree on the configuration (%s); start every rank with the same "
                  "flags",
                  diff);
exit:
    free(hashes);
    free(mine);
    free(other);
    return st;
}

int ts_world_fail(ts_comm_t *world, const char *cmd, int code) {
    ts_launch_fail(cmd, code);
    if (world != NULL && ts_comm_size(world) > 1) {
        fflush(stderr);
        ts_comm_abort(world, code);
    }
    return code;
}

bool ts_world_fault_due(int rank, int64_t step, bool *kill) {
    const char *spec = getenv("TS_FAULT_INJECT");
    int r;
    int64_t s;
    char kind[16] = {0};
    if (spec == NULL || sscanf(spec, "%d:%" SCNd64 ":%15s", &r, &s, kind) != 3)
        return false;
    if (r != rank || s != step)
        return false;
    /* term, usr1, int: this rank receives the signal (a deterministic preemption for tests) */
    const int sig = strcmp(kind, "term") == 0   ? SIGTERM
                    : strcmp(kind, "usr1") == 0 ? SIGUSR1
                    : strcmp(kind, "int") == 0  ? SIGINT
                                                : 0;
    if (sig != 0) {
        raise(sig);
        return false;
    }
    *kill = strcmp(kind, "kill") == 0;
    if (*kill) {
        fflush(stderr);
        raise(SIGKILL);
    }
    return true;
}
