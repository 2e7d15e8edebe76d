/* grid.c: the process grid over a world communicator (grid.h). */
#include "comm/grid.h"

#include <string.h>

ts_status ts_grid_init(struct ts_grid *g, ts_comm_t *world, int tp) {
    memset(g, 0, sizeof(*g));
    if (world == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "grid: no world communicator");
    const int n = ts_comm_size(world), w = ts_comm_rank(world);
    if (tp < 1 || n % tp != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "grid: tensor-parallel size %d does not divide the world size %d", tp, n);
    g->world = world;
    g->tp_size = tp;
    g->dp_size = n / tp;
    g->tp_rank = w % tp;
    g->dp_rank = w / tp;
    ts_status st;
    TS_CHECK_GOTO(ts_comm_split(world, g->dp_rank, g->tp_rank, &g->tp), st, fail);
    TS_CHECK_GOTO(ts_comm_split(world, g->tp_rank, g->dp_rank, &g->dp), st, fail);
    if (ts_comm_size(g->dp) != g->dp_size || ts_comm_rank(g->dp) != g->dp_rank ||
        ts_comm_size(g->tp) != g->tp_size || ts_comm_rank(g->tp) != g->tp_rank) {
        st = ts_error(TS_ERR_INTERNAL, "grid: split groups do not match the layout");
        goto fail;
    }
    return TS_OK;
fail:
    ts_grid_deinit(g);
    return st;
}

void ts_grid_deinit(struct ts_grid *g) {
    ts_comm_destroy(g->dp);
    ts_comm_destroy(g->tp);
    g->dp = g->tp = NULL;
}

int ts_grid_tp_group_across_hosts(const char *hosts, size_t stride, int n, int tp) {
    if (hosts == NULL || tp < 1)
        return -1;
    for (int w = 0; w < n; w++)
        if (strcmp(hosts + (size_t)w * stride, hosts + (size_t)(w / tp * tp) * stride) != 0)
            return w / tp;
    return -1;
}
