/* test_comm.c: the communicator without MPI: the single-process group, the grid over it, the
 * argument checks every backend shares, and the launcher cross-check (environment only). */
#include <criterion/criterion.h>
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
    cr_assert_eq(ts_comm_all_reduce_start(c, &t, &req), TS_OK);
    cr_assert_eq(ts_comm_wait(c, &req), TS_OK);
    int counts[1] = {5}, displs[1] = {0};
    cr_assert_eq(ts_comm_reduce_scatter(c, &t, counts), TS_OK);
    cr_assert_eq(ts_comm_all_gather(c, &t, counts, displs), TS_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(x[i], (float)(i + 1));
    uint64_t out[1];
    cr_assert_eq(ts_comm_all_gather_u64(c, 42, out), TS_OK);
    cr_assert_eq(out[0], 42);

    /* The shared checks: a part past the buffer, a request still in flight. */
    int too_many[1] = {6};
    cr_assert_eq(ts_comm_reduce_scatter(c, &t, too_many), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "past the buffer") != NULL, "%s", ts_last_error());
    req.active = true;
    cr_assert_eq(ts_comm_all_reduce_start(c, &t, &req), TS_ERR_INVALID_ARG);
    ts_comm_destroy(c);
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
