/* cmd_launch.c: `tessera launch`: a Slurm batch script or an mpirun line written from the same
 * flags the job trains with, checked before anything is queued.
 *
 *   tessera launch --nodes 2 --gpus-per-node 8 --time 04:00:00 [--dry-run] -- train --data ...
 *   tessera launch --mpirun --hosts h1:8,h2:8 [--dry-run] -- train ...
 *
 * The script runs one task per GPU (or --tasks-per-node CPU ranks) with `srun --mpi=pmix`, asks
 * Slurm for SIGUSR1 --signal-margin seconds before the time limit (delivered to the job's steps,
 * so every rank checkpoints at the next step boundary and exits "preempted"), passes --resume so
 * every allocation continues the run, and requeues the job itself when training stopped for
 * time or was preempted (Slurm does not requeue a timed-out job by itself), up to
 * --max-restarts times. Output goes under the run directory. Before writing anything the train
 * command is checked as the job would run it (`tessera train --check-world N`: flags, data,
 * model against the layout, the resume), so a typo fails in a second, not after an hour in the
 * queue. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/settings.h"

static const char usage[] = "tessera launch [flags] -- train --data PATTERN --out DIR [flags]";
static const char description[] =
    "Writes and submits a Slurm batch script (or, with --mpirun, an mpirun line and hostfile) "
    "that\n"
    "runs the train command on every rank: one task per GPU (--gpus-per-node 0: CPU ranks),\n"
    "srun --mpi=pmix, SIGUSR1 --signal-margin seconds before the time limit, --resume, and a\n"
    "requeue when training stopped for time (exit 3) or was preempted (exit 4). The train flags\n"
    "are checked for the job's layout before anything is queued. --dry-run prints instead.";

#define MAX_EXTRA 32

struct launch_args {
    int nodes, gpus_per_node, tasks_per_node, cpus_per_task, signal_margin, max_restarts;
    const char *time, *partition, *account, *job_name, *script, *tessera, *hosts;
    const char *extra[MAX_EXTRA]; /* --sbatch-arg lines */
    int num_extra;
    bool dry_run, mpirun, no_requeue;
};

/* ---- the words of the train command, quoted for a shell ---- */

static void put_quoted(FILE *f, const char *s) {
    bool plain = *s != '\0';
    for (const char *p = s; *p && plain; p++)
        plain = isalnum((unsigned char)*p) || strchr("-_./=:,+@%", *p) != NULL;
    if (plain) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", f);
        else
            fputc(*p, f);
    }
    fputc('\'', f);
}

/* "train ARGS... --resume" (the --resume added unless given). */
static void put_train(FILE *f, const char *tessera, int argc, char **argv) {
    put_quoted(f, tessera);
    bool resume = false;
    for (int i = 0; i < argc; i++) {
        fputc(' ', f);
        put_quoted(f, argv[i]);
        resume = resume || strcmp(argv[i], "--resume") == 0;
    }
    if (!resume)
        fputs(" --resume", f);
}

/* ---- checks ---- */

/* "HH:MM:SS", "MM:SS", "D-HH:MM:SS" or minutes, as Slurm reads --time; seconds out. */
static ts_status parse_time(const char *t, long *seconds) {
    long d = 0, parts[3] = {0, 0, 0};
    int n = 0;
    const char *p = t;
    char *end;
    const char *dash = strchr(t, '-');
    if (dash != NULL) {
        d = strtol(t, &end, 10);
        if (end != dash || d < 0)
            goto bad;
        p = dash + 1;
    }
    while (n < 3) {
        errno = 0;
        parts[n++] = strtol(p, &end, 10);
        if (end == p || errno != 0 || parts[n - 1] < 0)
            goto bad;
        if (*end == '\0')
            break;
        if (*end != ':')
            goto bad;
        p = end + 1;
    }
    if (*end != '\0')
        goto bad;
    if (dash == NULL && n == 1)
        *seconds = parts[0] * 60; /* minutes */
    else if (dash == NULL && n == 2)
        *seconds = parts[0] * 60 + parts[1]; /* MM:SS */
    else
        *seconds =
            d * 86400 + parts[0] * 3600 + (n > 1 ? parts[1] * 60 : 0) + (n > 2 ? parts[2] : 0);
    if (*seconds > 0)
        return TS_OK;
bad:
    return ts_error(TS_ERR_INVALID_ARG,
                    "--time '%s' is not a Slurm time limit (MM, MM:SS, HH:MM:SS or D-HH:MM:SS)", t);
}

/* Runs `tessera train ... --check-world N` and passes its verdict on. */
static ts_status check_train(const char *tessera, int world, int argc, char **argv) {
    const pid_t pid = fork();
    if (pid < 0)
        return ts_error(TS_ERR_IO, "cannot fork to check the train flags: %s", strerror(errno));
    if (pid == 0) {
        char **args = calloc((size_t)argc + 4, sizeof(char *));
        char n[16];
        snprintf(n, sizeof(n), "%d", world);
        if (args == NULL)
            _exit(1);
        args[0] = (char *)tessera;
        for (int i = 0; i < argc; i++)
            args[i + 1] = argv[i];
        args[argc + 1] = "--check-world";
        args[argc + 2] = n;
        execv(tessera, args);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0)
        return ts_error(TS_ERR_IO, "waiting for the train check: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return TS_OK;
    return ts_error(TS_ERR_INVALID_ARG,
                    "the train command does not check out for %d rank(s) (its message is above); "
                    "nothing was submitted",
                    world);
}

/* --hosts h1:8,h2:8 -> hostfile lines; *ranks = the slots' sum. */
static ts_status write_hostfile(const char *hosts, FILE *f, int *ranks) {
    *ranks = 0;
    const char *p = hosts;
    while (*p) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[256];
        if (len == 0 || len >= sizeof(item))
            return ts_error(TS_ERR_INVALID_ARG, "--hosts: an empty or too long entry in '%s'",
                            hosts);
        memcpy(item, p, len);
        item[len] = '\0';
        char *colon = strrchr(item, ':');
        long slots = 1;
        if (colon != NULL) {
            char *end;
            slots = strtol(colon + 1, &end, 10);
            if (*end != '\0' || slots < 1 || slots > 4096)
                return ts_error(TS_ERR_INVALID_ARG,
                                "--hosts: '%s' needs HOST:SLOTS with 1-4096 slots", item);
            *colon = '\0';
        }
        fprintf(f, "%s slots=%ld\n", item, slots);
        *ranks += (int)slots;
        p = comma ? comma + 1 : p + len;
    }
    if (*ranks == 0)
        return ts_error(TS_ERR_INVALID_ARG, "--hosts names no host");
    return TS_OK;
}

/* ---- the sbatch script ---- */

static void write_script(FILE *f, const struct launch_args *a, const char *out, int argc,
                         char **argv) {
    fprintf(f, "#!/bin/bash\n# Written by `tessera launch` for the run in %s.\n", out);
    fprintf(f, "#SBATCH --job-name=%s\n", a->job_name);
    fprintf(f, "#SBATCH --nodes=%d\n#SBATCH --ntasks-per-node=%d\n", a->nodes, a->tasks_per_node);
    if (a->gpus_per_node > 0)
        fprintf(f, "#SBATCH --gpus-per-node=%d\n", a->gpus_per_node);
    if (a->cpus_per_task > 0)
        fprintf(f, "#SBATCH --cpus-per-task=%d\n", a->cpus_per_task);
    fprintf(f, "#SBATCH --time=%s\n", a->time);
    if (a->partition)
        fprintf(f, "#SBATCH --partition=%s\n", a->partition);
    if (a->account)
        fprintf(f, "#SBATCH --account=%s\n", a->account);
    /* Without B: the signal goes to every job step, so every rank sees it; the batch shell
     * only waits for srun. */
    fprintf(f, "#SBATCH --signal=USR1@%d\n", a->signal_margin);
    if (!a->no_requeue)
        fprintf(f, "#SBATCH --requeue\n");
    fprintf(f, "#SBATCH --open-mode=append\n");
    char cwd[TS_PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) != NULL) /* relative --data and --out resolve as they did here */
        fprintf(f, "#SBATCH --chdir=%s\n", cwd);
    fprintf(f, "#SBATCH --output=%s/slurm/%%x-%%j.out\n#SBATCH --error=%s/slurm/%%x-%%j.err\n", out,
            out);
    for (int i = 0; i < a->num_extra; i++)
        fprintf(f, "#SBATCH %s\n", a->extra[i]);
    fprintf(f, "\nset -u\n");
    fprintf(f, "restarts=${SLURM_RESTART_COUNT:-0}\n");
    fprintf(f, "echo \"tessera launch: job $SLURM_JOB_ID allocation $restarts on "
               "$SLURM_JOB_NUM_NODES node(s) at $(date -u +%%FT%%TZ)\"\n");
    fprintf(f, "# one OpenMP/BLAS pool per rank, as wide as its CPUs\n");
    fprintf(f, "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n");
    if (a->gpus_per_node > 0)
        fprintf(f, "# NCCL's own settings (NCCL_DEBUG, NCCL_SOCKET_IFNAME, NCCL_IB_HCA, ...) pass "
                   "through from the submitting shell\n"
                   "export NCCL_DEBUG=${NCCL_DEBUG:-WARN}\n");
    fputs("run_dir=", f);
    put_quoted(f, out);
    fputs("\nrm -f \"$run_dir/exit.json\"\n", f);
    fprintf(f, "srun --mpi=pmix --kill-on-bad-exit=1 ");
    put_train(f, a->tessera, argc, argv);
    if (a->gpus_per_node > 0)
        fputs(" --device cuda", f);
    if (a->cpus_per_task > 0)
        fputs(" --threads \"$SLURM_CPUS_PER_TASK\"", f);
    fprintf(f, "\nrc=$?\n");
    /* srun can exit 0 when its tasks never launched (seen on a node still cleaning up the last
     * allocation): only train's own note says a run ended */
    fprintf(f, "retry=0\n"
               "if [ $rc -eq 0 ] && [ ! -s \"$run_dir/exit.json\" ]; then\n"
               "  echo \"tessera launch: srun exited 0 but train wrote no exit.json: the step did "
               "not run\" >&2\n"
               "  rc=1 retry=1\n"
               "fi\n");
    fprintf(f, "echo \"tessera launch: train exited $rc at $(date -u +%%FT%%TZ)\"\n");
    if (!a->no_requeue) {
        fprintf(f,
                "# 3: stopped for time, 4: preempted; both saved a checkpoint that --resume "
                "continues (a step that never ran is retried too)\n"
                "if { [ $rc -eq 3 ] || [ $rc -eq 4 ] || [ $retry -eq 1 ]; } && "
                "[ \"$restarts\" -lt %d ]; then\n"
                "  echo \"tessera launch: requeueing job $SLURM_JOB_ID (restart $((restarts + "
                "1)) of at most %d)\"\n"
                "  scontrol requeue \"$SLURM_JOB_ID\" && exit 0\n"
                "fi\n",
                a->max_restarts, a->max_restarts);
    }
    fprintf(f, "exit $rc\n");
}

static ts_status submit(const char *script, char *job_id, size_t len) {
    char cmd[TS_PATH_MAX + 64];
    TS_CHECK(ts_path_fmt(cmd, sizeof(cmd), "sbatch --parsable '%s' 2>&1", script));
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return ts_error(TS_ERR_IO, "cannot run sbatch: %s", strerror(errno));
    char line[512] = "";
    if (fgets(line, sizeof(line), p) == NULL)
        line[0] = '\0';
    const int status = pclose(p);
    line[strcspn(line, "\n")] = '\0';
    if (status != 0 || line[0] == '\0' || !isdigit((unsigned char)line[0]))
        return ts_error(TS_ERR_IO, "sbatch refused %s: %s", script,
                        line[0] ? line : "(no output; is Slurm installed and reachable?)");
    snprintf(job_id, len, "%.*s", (int)strcspn(line, ";"), line);
    return TS_OK;
}

/* The train command's --out (needed for the script's and logs' place). */
static ts_status train_out(int argc, char **argv, char *out, size_t len) {
    struct ts_train_flags *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return ts_error(TS_ERR_OOM, "launch: out of memory");
    bool help = false;
    ts_status st = ts_train_flags_parse(f, argc, argv, 1, &help);
    if (st == TS_OK && (help || f->v.out == NULL))
        st = ts_error(TS_ERR_INVALID_ARG, "the train command needs --out DIR");
    if (st == TS_OK) {
        char cwd[TS_PATH_MAX];
        if (f->v.out[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
            st = ts_path_fmt(out, len, "%s", f->v.out);
        else
            st = ts_path_join(out, len, cwd, f->v.out);
    }
    free(f);
    return st;
}

static int launch(struct launch_args *a, int targc, char **targv) {
    char out[TS_PATH_MAX], script[TS_PATH_MAX], self[TS_PATH_MAX], dir[TS_PATH_MAX];
    if (targc < 1 || strcmp(targv[0], "train") != 0) {
        ts_error(TS_ERR_INVALID_ARG,
                 "after --, give the train command: -- train --data ... --out ...");
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    }
    if (train_out(targc, targv, out, sizeof(out)) != TS_OK)
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    if (strpbrk(out, " \t\n\"'%") != NULL) { /* #SBATCH --output cannot quote it */
        ts_error(TS_ERR_INVALID_ARG,
                 "--out '%s' holds a space, quote or '%%', which #SBATCH lines cannot carry; "
                 "choose a plainer run directory",
                 out);
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    }
    if (a->tessera == NULL) {
        const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0 || (size_t)n >= sizeof(self) - 1) {
            ts_error(TS_ERR_IO, "cannot find this binary's path; pass --tessera PATH");
            return ts_launch_fail("launch", TS_EXIT_FAILURE);
        }
        self[n] = '\0';
        a->tessera = self;
    }
    int world = a->nodes * a->tasks_per_node;
    FILE *hostfile = NULL;
    if (a->mpirun) {
        if (a->hosts == NULL) {
            ts_error(TS_ERR_INVALID_ARG, "--mpirun needs --hosts HOST:SLOTS[,HOST:SLOTS...]");
            return ts_launch_fail("launch", TS_EXIT_USAGE);
        }
        char *text = NULL;
        size_t len = 0;
        hostfile = open_memstream(&text, &len);
        if (hostfile == NULL || write_hostfile(a->hosts, hostfile, &world) != TS_OK) {
            if (hostfile)
                fclose(hostfile);
            free(text);
            return ts_launch_fail("launch", TS_EXIT_USAGE);
        }
        fclose(hostfile);
        hostfile = NULL;
        if (check_train(a->tessera, world, targc, targv) != TS_OK) {
            free(text);
            return ts_launch_fail("launch", TS_EXIT_USAGE);
        }
        if (ts_path_join(dir, sizeof(dir), out, "launch") != TS_OK ||
            ts_path_join(script, sizeof(script), dir, "hostfile") != TS_OK) {
            free(text);
            return ts_launch_fail("launch", TS_EXIT_USAGE);
        }
        if (a->dry_run) {
            printf("# %s\n%s", script, text);
        } else {
            FILE *f = NULL;
            if (ts_fs_mkdirs(dir) != TS_OK || (f = fopen(script, "w")) == NULL ||
                fputs(text, f) < 0 || fclose(f) != 0) {
                free(text);
                ts_error(TS_ERR_IO, "cannot write %s", script);
                return ts_launch_fail("launch", TS_EXIT_FAILURE);
            }
        }
        free(text);
        printf("mpirun -np %d --hostfile ", world);
        put_quoted(stdout, script);
        printf(" --map-by ppr:%d:node -x OMP_NUM_THREADS -x PATH -x LD_LIBRARY_PATH ",
               a->tasks_per_node > 0 ? a->tasks_per_node : 1);
        put_train(stdout, a->tessera, targc, targv);
        printf("\n");
        if (!a->dry_run)
            TS_LOG_I("launch: hostfile %s written; run the line above on the first host", script);
        return TS_EXIT_OK;
    }

    long seconds = 0;
    if (a->time == NULL) {
        ts_error(TS_ERR_INVALID_ARG, "--time is required for a batch job (HH:MM:SS)");
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    }
    if (parse_time(a->time, &seconds) != TS_OK)
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    if (a->signal_margin >= seconds) {
        ts_error(TS_ERR_INVALID_ARG,
                 "--signal-margin %d s is not shorter than --time %s (%ld s): the job would be "
                 "warned before it starts",
                 a->signal_margin, a->time, seconds);
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    }
    if (check_train(a->tessera, world, targc, targv) != TS_OK)
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    char base[256];
    const char *slash = strrchr(out, '/');
    snprintf(base, sizeof(base), "tessera-%.200s", slash ? slash + 1 : out);
    if (a->job_name == NULL)
        a->job_name = base;
    if (a->dry_run) {
        write_script(stdout, a, out, targc, targv);
        return TS_EXIT_OK;
    }
    char logs[TS_PATH_MAX];
    if (a->script != NULL) {
        if (ts_path_fmt(script, sizeof(script), "%s", a->script) != TS_OK)
            return ts_launch_fail("launch", TS_EXIT_USAGE);
    } else if (ts_path_join(dir, sizeof(dir), out, "launch") != TS_OK ||
               ts_path_join(script, sizeof(script), dir, "job.sbatch") != TS_OK ||
               ts_fs_mkdirs(dir) != TS_OK) {
        return ts_launch_fail("launch", TS_EXIT_FAILURE);
    }
    if (ts_path_join(logs, sizeof(logs), out, "slurm") != TS_OK || ts_fs_mkdirs(logs) != TS_OK)
        return ts_launch_fail("launch", TS_EXIT_FAILURE);
    FILE *f = fopen(script, "w");
    if (f == NULL) {
        ts_error(TS_ERR_IO, "cannot write %s: %s", script, strerror(errno));
        return ts_launch_fail("launch", TS_EXIT_FAILURE);
    }
    write_script(f, a, out, targc, targv);
    if (fclose(f) != 0) {
        ts_error(TS_ERR_IO, "cannot write %s", script);
        return ts_launch_fail("launch", TS_EXIT_FAILURE);
    }
    char job[64];
    if (submit(script, job, sizeof(job)) != TS_OK)
        return ts_launch_fail("launch", TS_EXIT_FAILURE);
    printf("%s\n", job);
    TS_LOG_I("launch: submitted %s as job %s; logs in %s", script, job, logs);
    return TS_EXIT_OK;
}

int ts_cmd_launch(int argc, char **argv) {
    struct launch_args a = {
        .nodes = 1,
        .gpus_per_node = 0,
        .tasks_per_node = 0,
        .signal_margin = 120,
        .max_restarts = 20,
    };
    const char *extra = NULL;
    struct ts_flag flags[] = {
        {"nodes", TS_FLAG_INT, &a.nodes, "N", "nodes"},
        {"gpus-per-node", TS_FLAG_INT, &a.gpus_per_node, "G", "GPUs per node (0: CPU ranks)"},
        {"tasks-per-node", TS_FLAG_INT, &a.tasks_per_node, "N",
         "ranks per node (0: one per GPU, or 1 on CPUs)"},
        {"cpus-per-task", TS_FLAG_INT, &a.cpus_per_task, "N",
         "CPUs per rank (0: Slurm's default); also the rank's --threads"},
        {"time", TS_FLAG_STRING, &a.time, "HH:MM:SS", "the job's time limit (sbatch)"},
        {"partition", TS_FLAG_STRING, &a.partition, "P", "Slurm partition"},
        {"account", TS_FLAG_STRING, &a.account, "A", "Slurm account"},
        {"job-name", TS_FLAG_STRING, &a.job_name, "NAME",
         "Slurm job name (default: tessera-<run directory>)"},
        {"signal-margin", TS_FLAG_INT, &a.signal_margin, "S",
         "SIGUSR1 this many seconds before the time limit (Slurm may send it up to 60 s early)"},
        {"max-restarts", TS_FLAG_INT, &a.max_restarts, "N",
         "requeue at most N times after stopping for time or preemption"},
        {"no-requeue", TS_FLAG_BOOL, &a.no_requeue, NULL, "never requeue the job"},
        {"sbatch-arg", TS_FLAG_STRING, &extra, "ARG",
         "an extra #SBATCH line, e.g. --sbatch-arg=--qos=high (repeatable)"},
        {"script", TS_FLAG_STRING, &a.script, "PATH",
         "where to write the script (default: <out>/launch/job.sbatch)"},
        {"tessera", TS_FLAG_STRING, &a.tessera, "PATH",
         "the tessera binary the job runs (default: this one)"},
        {"mpirun", TS_FLAG_BOOL, &a.mpirun, NULL, "write an mpirun line and hostfile instead"},
        {"hosts", TS_FLAG_STRING, &a.hosts, "H:N,...", "hosts and slots for --mpirun"},
        {"dry-run", TS_FLAG_BOOL, &a.dry_run, NULL, "print what would be submitted or run"},
    };
    const int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    /* Our flags end at "--"; the train command follows. --sbatch-arg accumulates. */
    int split = argc;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            split = i;
            break;
        }
    for (int i = 2; i < split; i++) {
        const char *v = NULL;
        if (strncmp(argv[i], "--sbatch-arg=", 13) == 0)
            v = argv[i] + 13;
        else if (strcmp(argv[i], "--sbatch-arg") == 0 && i + 1 < split)
            v = argv[i + 1];
        if (v != NULL && a.num_extra < MAX_EXTRA)
            a.extra[a.num_extra++] = v;
    }
    const char *pos[1];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, split, argv, 2, pos, 0, &npos, &help) != TS_OK)
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, flags, nflags);
        return TS_EXIT_OK;
    }
    if (a.nodes < 1 || a.gpus_per_node < 0 || a.tasks_per_node < 0 || a.cpus_per_task < 0 ||
        a.signal_margin < 1 || a.max_restarts < 0) {
        ts_error(TS_ERR_INVALID_ARG, "--nodes and --signal-margin must be positive; "
                                     "--gpus-per-node, --tasks-per-node, --cpus-per-task and "
                                     "--max-restarts >= 0");
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    }
    if (a.tasks_per_node == 0)
        a.tasks_per_node = a.gpus_per_node > 0 ? a.gpus_per_node : 1;
    if (a.gpus_per_node > 0 && a.tasks_per_node != a.gpus_per_node)
        TS_LOG_W("launch: %d tasks per node on %d GPUs per node: Tessera runs one rank per GPU",
                 a.tasks_per_node, a.gpus_per_node);
    if (split >= argc) {
        ts_error(TS_ERR_INVALID_ARG, "no train command: tessera launch [flags] -- train ...");
        return ts_launch_fail("launch", TS_EXIT_USAGE);
    }
    return launch(&a, argc - split - 1, argv + split + 1);
}
