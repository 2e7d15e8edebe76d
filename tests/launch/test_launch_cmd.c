/* test_launch_cmd.c: `tessera launch` without a cluster: the batch script and the mpirun line it
 * writes for --dry-run, and a train command that does not check out refused before anything is
 * written or queued. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"

#define TRAIN                                                                                      \
    "train --data %s --out %s/run --vocab-size 64 --layers 2 --heads 2 --channels 32 "             \
    "--seq-len 16 --batch 2 --steps 4"

static void expect_out(const struct cli_result *r, const char *needle) {
    cr_expect_not_null(strstr(r->out, needle), "stdout lacks '%s':\n%s", needle, r->out);
}

Test(launch_cmd, sbatch_script_for_gpus_and_cpus) {
    char dir[256], data[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, 64, 3);
    struct cli_result r;
    cli_run(&r,
            "launch --nodes 2 --gpus-per-node 8 --time 04:00:00 --partition gpu --signal-margin "
            "300 --sbatch-arg=--qos=high --dry-run -- " TRAIN,
            data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    expect_out(&r, "#SBATCH --nodes=2\n");
    expect_out(&r, "#SBATCH --ntasks-per-node=8\n"); /* one task per GPU */
    expect_out(&r, "#SBATCH --gpus-per-node=8\n");
    expect_out(&r, "#SBATCH --time=04:00:00\n");
    expect_out(&r, "#SBATCH --partition=gpu\n");
    expect_out(&r, "#SBATCH --signal=USR1@300\n"); /* to the steps, not B: the batch shell */
    expect_out(&r, "#SBATCH --requeue\n");
    expect_out(&r, "#SBATCH --qos=high\n");
    expect_out(&r, "/run/slurm/%x-%j.out");
    expect_out(&r, "srun --mpi=pmix");
    expect_out(&r, "--resume --device cuda");
    expect_out(&r, "scontrol requeue");
    cr_expect_not_null(strstr(r.err, "train check: ok for 16 rank(s)"), "%s", r.err);
    /* CPU ranks */
    cli_run(&r,
            "launch --nodes 1 --tasks-per-node 2 --gpus-per-node 0 --time 10 --dry-run -- " TRAIN,
            data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    expect_out(&r, "#SBATCH --ntasks-per-node=2\n");
    cr_expect_null(strstr(r.out, "--gpus-per-node"), "%s", r.out);
    cr_expect_null(strstr(r.out, "--device cuda"), "%s", r.out);
    cli_rmdir(dir);
}

Test(launch_cmd, mpirun_line_and_hostfile) {
    char dir[256], data[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, 64, 3);
    struct cli_result r;
    cli_run(&r, "launch --mpirun --hosts h1:2,h2:2 --tasks-per-node 2 --dry-run -- " TRAIN, data,
            dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    expect_out(&r, "h1 slots=2\nh2 slots=2\n");
    expect_out(&r, "mpirun -np 4 --hostfile ");
    expect_out(&r, "--resume\n");
    cli_run(&r, "launch --mpirun --hosts h1:0 --dry-run -- " TRAIN, data, dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "1-4096 slots"), "%s", r.err);
    cli_rmdir(dir);
}

/* Nothing is written or queued when the train command would fail on the cluster. */
Test(launch_cmd, refused_before_queueing) {
    char dir[256], data[400], path[600];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, 64, 3);
    struct cli_result r;
    cli_run(&r, "launch --nodes 1 --time 00:10:00 -- " TRAIN " --heads 3", data, dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "--heads 3 does not divide --channels 32"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "nothing was submitted"), "%s", r.err);
    snprintf(path, sizeof(path), "%s/run/launch/job.sbatch", dir);
    cr_expect_eq(access(path, F_OK), -1, "a script was written");
    cli_run(&r, "launch --nodes 1 --time 00:10:00 -- train --data %s/none_*.bin --out %s/run", dir,
            dir);
    cr_expect_eq(r.code, 2);
    cli_run(&r, "launch --nodes 1 --time 1:xx -- " TRAIN, data, dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "is not a Slurm time limit"), "%s", r.err);
    cli_run(&r, "launch --nodes 1 -- " TRAIN, data, dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "--time is required"), "%s", r.err);
    cli_run(&r, "launch --nodes 1 --time 5 --dry-run -- frobnicate");
    cr_expect_eq(r.code, 2);
    cli_rmdir(dir);
}
