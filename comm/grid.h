/* grid.h: the process grid: the world split into tensor- and data-parallel groups.
 *
 * World rank w sits at (dp_rank, tp_rank) = (w / tp, w % tp): a tensor-parallel group is tp
 * consecutive ranks (on one host when ranks are placed by host, as mpirun and srun do), a
 * data-parallel group is the ranks with the same tp_rank. `tp` (--tp, 1 by default) carries the
 * model's per-layer all-reduces (trainer/gpt.c: Megatron's column and row splits and the
 * vocabulary-parallel embedding and classifier); `dp` the gradient buckets, the overlap and
 * ZeRO-1, never the world. */
#ifndef TS_GRID_H
#define TS_GRID_H

#include "comm/comm.h"

struct ts_grid {
    ts_comm_t *world; /* borrowed */
    ts_comm_t *dp;    /* owned */
    ts_comm_t *tp;    /* owned */
    int dp_size, dp_rank;
    int tp_size, tp_rank;
};

/* Collective over world. tp must divide the world size. */
ts_status ts_grid_init(struct ts_grid *g, ts_comm_t *world, int tp) TS_MUST_CHECK;
void ts_grid_deinit(struct ts_grid *g);

/* The first tensor-parallel group (w / tp) whose ranks are on more than one host, or -1 when
 * every group is on one host. hosts: n names in world rank order, `stride` bytes apart (each
 * NUL-terminated). tp's all-reduces run on every layer and want one node's interconnect. */
int ts_grid_tp_group_across_hosts(const char *hosts, size_t stride, int n, int tp);

#endif
