/* test_comm.c: the communicator without MPI: the single-process group, the grid over it, the
 * argument checks every backend shares (through a fake host transport), and the launcher
 * cross-check (environment only). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/grid.h"

static void clear_launcher_env(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE",
                          "OMPI_COMM_WORLD_RANK",
                          "OMPI_COMM_WORLD_LOCAL_RANK",
                          "PMIX_RANK",
                          "SLURM_STEP_ID",
                          "SLURM_PROCID",
                          "SLURM_LOCALID",
                          "SLURM_STEP_NUM_TASKS",
                          "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

/* A host buffer as a 1-D f32 tensor. */
static struct ts_tensor host_f32(float *data, int64_t n) {
    return ts_tensor_1d(data, TS_DTYPE_F32, n);
}

Test(comm_single, collectives_are_the_identity) {
    ts_comm_t *c = NULL;
    cr_assert_eq(ts_comm_create_single(&c), TS_OK);
    cr_assert_eq(ts_comm_size(c), 1);
    cr_assert_str_eq(ts_comm_name(c), "single");
    float x[5] = {1, 2, 3, 4, 5};
    struct ts_tensor t = host_f32(x, 5);
    struct ts_comm_req req = {0};
    cr_assert_eq(ts_comm_all_reduce_start(c, NULL, &t, NULL, &req), TS_OK);
    cr_assert_eq(ts_comm_wait(c, &req), TS_OK);
    int counts[1] = {5}, displs[1] = {0};
    cr_assert_eq(ts_comm_reduce_scatter(c, NULL, &t, counts, NULL), TS_OK);
    cr_assert_eq(ts_comm_all_gather(c, NULL, &t, counts, displs, NULL), TS_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(x[i], (float)(i + 1));
    uint64_t out[1];
    cr_assert_eq(ts_comm_all_gather_u64(c, 42, out), TS_OK);
    cr_assert_eq(out[0], 42);

    /* The shared checks: a part past the buffer, a request still in flight. */
    int too_many[1] = {6};
    cr_assert_eq(ts_comm_reduce_scatter(c, NULL, &t, too_many, NULL), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "past the buffer") != NULL, "%s", ts_last_error());
    req.active = true;
    cr_assert_eq(ts_comm_all_reduce_start(c, NULL, &t, NULL, &req), TS_ERR_INVALID_ARG);
    ts_comm_destroy(c);
}

/* ---- the shared checks, through a fake transport of host memory ---- */

static int fake_calls, fake_syncs;
static enum ts_dtype fake_dtype;

static ts_status fake_start(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                            ts_event_t *ready, struct ts_comm_req *req) {
    (void)c;
    (void)req;
    fake_calls++;
    fake_dtype = buf->dtype;
    return ready != NULL ? be->event_sync(be, ready) : TS_OK;
}

static ts_status fake_all_gather(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                                 const int *counts, const int *displs, ts_event_t *ready,
                                 struct ts_comm_req *req) {
    (void)counts;
    (void)displs;
    return fake_start(c, be, buf, ready, req);
}

static ts_status fake_event_sync(struct ts_backend *be, ts_event_t *ev) {
    (void)be;
    (void)ev;
    fake_syncs++;
    return TS_OK;
}

static const struct ts_comm_ops fake_ops = {
    .name = "fake",
    .memory = TS_COMM_MEM_HOST,
    .max_count = 8,
    .all_reduce_start = fake_start,
    .all_gather_start = fake_all_gather,
};

Test(comm_checks, dtype_memory_count_and_event_are_checked_once_for_every_backend) {
    ts_comm_t c = {.ops = &fake_ops, .rank = 0, .size = 1, .local_size = 1};
    struct ts_backend host = {
        .name = "hostmem", .host_memory = true, .event_sync = fake_event_sync};
    struct ts_backend device = {.name = "gpu", .host_memory = false, .event_sync = fake_event_sync};
    ts_event_t *ev = (ts_event_t *)&host; /* any non-NULL handle: the fake's sync ignores it */
    uint16_t h[8] = {0};
    int32_t ids[8] = {0};
    struct ts_comm_req req = {0};
    fake_calls = fake_syncs = 0;

    /* bf16 passes through to the transport with its dtype; the event is handed on. */
    struct ts_tensor bf = ts_tensor_1d(h, TS_DTYPE_BF16, 8);
    cr_assert_eq(ts_comm_all_reduce_start(&c, &host, &bf, ev, &req), TS_OK, "%s", ts_last_error());
    cr_assert_eq(fake_calls, 1);
    cr_assert_eq(fake_dtype, TS_DTYPE_BF16);
    cr_assert_eq(fake_syncs, 1);
    int counts[1] = {8}, displs[1] = {0};
    cr_assert_eq(ts_comm_all_gather_start(&c, NULL, &bf, counts, displs, NULL, &req), TS_OK);
    cr_assert_eq(fake_calls, 2);

    /* Refused before the transport sees them: */
    struct ts_tensor it = ts_tensor_1d(ids, TS_DTYPE_I32, 8);
    cr_assert_eq(ts_comm_all_reduce_start(&c, &host, &it, NULL, &req), TS_ERR_UNSUPPORTED);
    cr_assert(strstr(ts_last_error(), "only f32 and bf16") != NULL, "%s", ts_last_error());
    cr_assert_eq(ts_comm_all_reduce_start(&c, &device, &bf, NULL, &req), TS_ERR_UNSUPPORTED);
    cr_assert(strstr(ts_last_error(), "device memory") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "gpu") != NULL, "%s", ts_last_error());
    cr_assert_eq(ts_comm_check_backend(&c, &device), TS_ERR_UNSUPPORTED);
    cr_assert_eq(ts_comm_check_backend(&c, &host), TS_OK);
    cr_assert_eq(ts_comm_check_backend(&c, NULL), TS_OK);
    uint16_t big[9] = {0};
    struct ts_tensor too_big = ts_tensor_1d(big, TS_DTYPE_BF16, 9);
    cr_assert_eq(ts_comm_all_reduce_start(&c, &host, &too_big, NULL, &req), TS_ERR_UNSUPPORTED);
    cr_assert(strstr(ts_last_error(), "limit of 8") != NULL, "%s", ts_last_error());
    cr_assert_eq(ts_comm_all_reduce_start(&c, NULL, &bf, ev, &req), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "ready event") != NULL, "%s", ts_last_error());
    cr_assert_eq(fake_calls, 2);

    /* The single process takes any memory and either dtype. */
    ts_comm_t *one = NULL;
    cr_assert_eq(ts_comm_create_single(&one), TS_OK);
    cr_assert_eq(ts_comm_check_backend(one, &device), TS_OK);
    cr_assert_eq(ts_comm_all_reduce(one, &device, &bf, TS_REDUCE_AVG, ev), TS_OK);
    ts_comm_destroy(one);
}

Test(comm_grid, one_process_grid) {
    ts_comm_t *c = NULL;
    cr_assert_eq(ts_comm_create_single(&c), TS_OK);
    struct ts_grid g;
    cr_assert_eq(ts_grid_init(&g, c, 1), TS_OK, "%s", ts_last_error());
    cr_assert_eq(g.dp_size, 1);
    cr_assert_eq(g.tp_size, 1);
    cr_assert_eq(ts_comm_size(g.dp), 1);
    ts_grid_deinit(&g);
    cr_assert_eq(ts_grid_init(&g, c, 2), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "does not divide") != NULL, "%s", ts_last_error());
    ts_comm_destroy(c);
}

/* tp groups are consecutive ranks; one that straddles two hosts is named (for the warning). */
Test(comm_grid, tp_group_across_hosts_is_found) {
    char hosts[8][16];
    for (int w = 0; w < 8; w++)
        snprintf(hosts[w], sizeof(hosts[w]), "node%d", w / 4);
    cr_assert_eq(ts_grid_tp_group_across_hosts(hosts[0], 16, 8, 1), -1);
    cr_assert_eq(ts_grid_tp_group_across_hosts(hosts[0], 16, 8, 2), -1);
    cr_assert_eq(ts_grid_tp_group_across_hosts(hosts[0], 16, 8, 4), -1);
    cr_assert_eq(ts_grid_tp_group_across_hosts(hosts[0], 16, 8, 8), 0, "8 ranks on 2 hosts");
    snprintf(hosts[5], sizeof(hosts[5]), "node9"); /* a scheduler's odd placement */
    cr_assert_eq(ts_grid_tp_group_across_hosts(hosts[0], 16, 8, 2), 2);
    cr_assert_eq(ts_grid_tp_group_across_hosts(hosts[0], 16, 8, 4), 1);
}

Test(comm_launcher, detects_the_launcher) {
    clear_launcher_env();
    const char *err;
    cr_assert_null(ts_comm_detect_launcher(&err));
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    cr_assert_str_eq(ts_comm_detect_launcher(&err), "mpirun");
    clear_launcher_env();
    setenv("SLURM_STEP_ID", "0", 1);
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_STEP_NUM_TASKS", "4", 1);
    cr_assert_null(ts_comm_detect_launcher(&err));
    cr_assert_not_null(err);
    cr_assert(strstr(err, "--mpi=pmix") != NULL, "%s", err);
    setenv("PMIX_RANK", "1", 1);
    cr_assert_str_eq(ts_comm_detect_launcher(&err), "srun");
    cr_assert_null(err);
    clear_launcher_env();
}

Test(comm_launcher, cross_check_names_the_variable) {
    clear_launcher_env();
    cr_assert_eq(ts_comm_check_launcher_env(3, 4, 1), TS_OK); /* no launcher: nothing to check */
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_RANK", "3", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    setenv("PMIX_RANK", "3", 1);
    cr_assert_eq(ts_comm_check_launcher_env(3, 4, 1), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_comm_check_launcher_env(2, 4, 1), TS_ERR_COMM);
    cr_assert(strstr(ts_last_error(), "PMIX_RANK=3") != NULL, "%s", ts_last_error());
    unsetenv("PMIX_RANK");
    cr_assert_eq(ts_comm_check_launcher_env(3, 2, 1), TS_ERR_COMM);
    cr_assert(strstr(ts_last_error(), "OMPI_COMM_WORLD_SIZE=4") != NULL, "%s", ts_last_error());
    cr_assert_eq(ts_comm_check_launcher_env(3, 4, 0), TS_ERR_COMM);
    cr_assert(strstr(ts_last_error(), "OMPI_COMM_WORLD_LOCAL_RANK=1") != NULL, "%s",
              ts_last_error());
    clear_launcher_env();
    setenv("SLURM_STEP_ID", "0", 1);
    setenv("SLURM_PROCID", "2", 1);
    setenv("SLURM_LOCALID", "0", 1);
    setenv("SLURM_STEP_NUM_TASKS", "4", 1);
    setenv("PMIX_RANK", "2", 1);
    cr_assert_eq(ts_comm_check_launcher_env(2, 4, 0), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_comm_check_launcher_env(2, 4, 1), TS_ERR_COMM);
    cr_assert(strstr(ts_last_error(), "SLURM_LOCALID=0") != NULL, "%s", ts_last_error());
    clear_launcher_env();
}
