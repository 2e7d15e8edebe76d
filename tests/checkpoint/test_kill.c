/* test_kill.c: SIGKILL a process that saves checkpoints back to back, at random moments, many
 * times; every time `latest` must open, verify and hold exactly the values of its step, and
 * never be older than the last save the process finished. The next process continues from it,
 * as a resumed job would. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

struct progress {
    volatile int64_t completed; /* last step whose save returned */
    volatile int in_save;
};

static void saver(const char *dir, int64_t first, struct progress *p) {
    ts_comm_t *c = NULL;
    if (ts_comm_create_single(&c) != TS_OK)
        _exit(3);
    for (int64_t step = first;; step++) {
        char path[TS_PATH_MAX];
        p->in_save = 1;
        if (fix_save(c, dir, step, 2, path, sizeof(path)) != TS_OK) {
            fprintf(stderr, "save %lld: %s\n", (long long)step, ts_last_error());
            _exit(2);
        }
        p->completed = step;
        p->in_save = 0;
    }
}

/* The same with the background writer: a save begins, "training" goes on polling it at every
 * boundary (1 ms steps), and `completed` moves when a poll reports the commit. Kills land while
 * the writer thread writes, while it commits, and between saves. */
static void async_saver(const char *dir, int64_t first, struct progress *p) {
    ts_comm_t *c = NULL;
    ts_ckpt_writer_t *w = NULL;
    if (ts_comm_create_single(&c) != TS_OK || ts_ckpt_writer_create(&w, true) != TS_OK)
        _exit(3);
    static struct fixture f;
    for (int64_t step = first;; step++) {
        p->in_save = 1;
        if (fix_begin(w, &f, c, dir, step, 2) != TS_OK) {
            fprintf(stderr, "save %lld: %s\n", (long long)step, ts_last_error());
            _exit(2);
        }
        struct ts_ckpt_saved saved;
        while (!ts_ckpt_writer_take(w, &saved)) {
            usleep(1000); /* a training step */
            if (ts_ckpt_writer_poll(w, false) != TS_OK) {
                fprintf(stderr, "save %lld: %s\n", (long long)step, ts_last_error());
                _exit(2);
            }
        }
        fix_free(&f);
        p->completed = saved.step;
        p->in_save = 0;
    }
}

static void kill_trials(void (*save_loop)(const char *, int64_t, struct progress *)) {
    char *dir = ck_mkdtemp();
    struct progress *p =
        mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED);
    p->completed = 0;
    srand((unsigned)time(NULL));
    int64_t next = 1;
    int kills = 0, during = 0;
    for (int round = 0; round < 36; round++) {
        p->in_save = 0;
        const int64_t before = p->completed;
        pid_t pid = fork();
        if (pid == 0)
            save_loop(dir, next, p);
        usleep((useconds_t)(2000 + rand() % 40000));
        during += p->in_save;
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "the saver exited by itself (status %d)", status);
        kills++;
        if (!ts_ckpt_exists(dir)) {
            cr_assert_eq(before, 0, "no checkpoint after one completed");
            cr_assert_eq(p->completed, 0, "no checkpoint after a completed save");
            continue;
        }
        char msg[512];
        int64_t step = -1;
        cr_assert(fix_check(dir, msg, sizeof(msg), &step), "round %d: %s", round, msg);
        cr_assert_geq(step, p->completed,
                      "round %d: latest is step %lld, but step %lld had "
                      "completed",
                      round, (long long)step, (long long)p->completed);
        next = step + 1; /* resume from latest */
        p->completed = step;
    }
    cr_assert_geq(kills, 30);
    cr_log_info("%d kills, %d of them during a save, last step %lld", kills, during,
                (long long)p->completed);
    cr_assert_geq(during, kills / 2, "only %d of %d kills landed during a save", during, kills);
    munmap(p, sizeof(*p));
    ck_rmdir(dir);
}

Test(checkpoint_kill, sigkill_during_saves_never_breaks_latest, .timeout = 240) {
    kill_trials(saver);
}

Test(checkpoint_kill, sigkill_during_background_saves_never_breaks_latest, .timeout = 240) {
    kill_trials(async_saver);
}
