/* bench_ckpt.c: checkpoint save and load throughput against the raw sequential speed of the
 * same disk, measured in the same run.
 *
 * A GPT-2 124M-shaped state (params, AdamW m and v: fp32, Vp = 50304) is saved with
 * ts_ckpt_save (one rank: CRC32C, HDF5 writes, fsyncs, model.h5, manifest, rename) and loaded
 * back with ts_ckpt_read (every tensor, checksums checked), alternating with a dd-style raw
 * write (8 MiB write()s then fsync) and read of the same number of bytes in the same directory.
 * Page-cache copies are dropped with posix_fadvise before each read so both reads come from the
 * disk where the kernel honours it. The loaded state must equal the saved one. Prints one JSON
 * line with medians.
 *
 * With --trainer the state is a real GPT-2 124M trainer on the CPU backend after one update,
 * saved with ts_train_state_save (staging copies through the backend included): the time is
 * the training stall per save, again beside the raw write speed of the same bytes.
 *
 * Each --trainer round also saves the same state in the background (ts_train_saver, as
 * `tessera train` does by default): the stall is the copy into the saver's reused buffers, and
 * training steps run while the writer thread writes, polling it at each boundary; a second JSON
 * line compares that stall with the synchronous save of the same round, and the background
 * save's own duration with the raw write.
 *
 * --gap S waits S seconds before each plain save, as a training step would: on a VM that hands
 * idle memory back to its host, the page cache the save writes into is then slower to fill
 * (see bench_pagecache.c).
 *
 * --ab alternates the rounds between early writeback on and off (TS_CKPT_WRITEBACK=0) and
 * prints one more line with the medians of each.
 *
 *   bench_ckpt [--dir DIR] [--reps N] [--layers L] [--gap S] [--ab] [--trainer] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "checkpoint/ckpt.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/log.h"
#include "trainer/state.h"

#define MAXT 256

struct state {
    int n;
    struct ts_ckpt_tensor t[MAXT * 3];
    int64_t bytes;
};

static void add(struct state *s, const char *name, int ndim, int64_t d0, int64_t d1,
                int64_t export_rows) {
    const char *tables[3] = {"params", "adam_m", "adam_v"};
    for (int g = 0; g < 3; g++) {
        struct ts_ckpt_tensor *t = &s->t[s->n++];
        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s/%s", tables[g], name);
        t->dtype = TS_DTYPE_F32;
        t->ndim = ndim;
        t->shape[0] = d0;
        t->shape[1] = d1;
        t->num_boxes = 1;
        t->boxes[0].extent[0] = d0;
        t->boxes[0].extent[1] = d1;
        if (g == 0)
            t->export_shape[0] = export_rows;
        const int64_t n = ndim == 1 ? d0 : d0 * d1;
        float *p = malloc((size_t)n * sizeof(float));
        uint32_t x = (uint32_t)s->n * 2654435761u;
        for (int64_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            p[i] = (float)(int32_t)x * 1e-10f;
        }
        t->data = p;
        s->bytes += n * 4;
    }
}

static void build(struct state *s, int L) {
    const int64_t C = 768, V = 50257, Vp = 50304, maxT = 1024;
    memset(s, 0, sizeof(*s));
    add(s, "wte.weight", 2, Vp, C, V);
    add(s, "wpe.weight", 2, maxT, C, 0);
    for (int l = 0; l < L; l++) {
        char n[64];
#define ADD(suffix, nd, a, b)                                                                      \
    snprintf(n, sizeof(n), "h.%d.%s", l, suffix);                                                  \
    add(s, n, nd, a, b, 0)
        ADD("ln_1.weight", 1, C, 1);
        ADD("ln_1.bias", 1, C, 1);
        ADD("attn.c_attn.weight", 2, C, 3 * C);
        ADD("attn.c_attn.bias", 1, 3 * C, 1);
        ADD("attn.c_proj.weight", 2, C, C);
        ADD("attn.c_proj.bias", 1, C, 1);
        ADD("ln_2.weight", 1, C, 1);
        ADD("ln_2.bias", 1, C, 1);
        ADD("mlp.c_fc.weight", 2, C, 4 * C);
        ADD("mlp.c_fc.bias", 1, 4 * C, 1);
        ADD("mlp.c_proj.weight", 2, 4 * C, C);
        ADD("mlp.c_proj.bias", 1, C, 1);
#undef ADD
    }
    add(s, "ln_f.weight", 1, C, 1, 0);
    add(s, "ln_f.bias", 1, C, 1, 0);
}

static void drop_cache(const char *path) {
    const int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

static void drop_dir_cache(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "%s/rank_00000.h5", dir);
    drop_cache(cmd);
    snprintf(cmd, sizeof(cmd), "%s/model.h5", dir);
    drop_cache(cmd);
}

/* dd if=/dev/zero-like (but the state's own bytes) of=path bs=8M conv=fsync; *copy_s: the
 * write() calls alone (the copy into the page cache), the rest is the fsync */
static double raw_write(const char *path, const struct state *s, double *copy_s) {
    const double t0 = ts_bench_now_s();
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    for (int i = 0; i < s->n; i++) {
        const int64_t n =
            s->t[i].ndim == 1 ? s->t[i].shape[0] : s->t[i].shape[0] * s->t[i].shape[1];
        const char *p = s->t[i].data;
        int64_t left = n * 4;
        while (left > 0) {
            const size_t chunk = left > (8 << 20) ? (8 << 20) : (size_t)left;
            const ssize_t w = write(fd, p, chunk);
            if (w <= 0) {
                close(fd);
                return -1;
            }
            p += w;
            left -= w;
        }
    }
    *copy_s = ts_bench_now_s() - t0;
    fsync(fd);
    close(fd);
    return ts_bench_now_s() - t0;
}

/* CPU seconds (user + system) of the process or of the calling thread */
static double cpu_s(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double raw_read(const char *path, char *buf, size_t cap) {
    drop_cache(path);
    const double t0 = ts_bench_now_s();
    const int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    while (read(fd, buf, cap) > 0) {
    }
    close(fd);
    return ts_bench_now_s() - t0;
}

/* The training stall per save of a real trainer, beside raw writes of the same byte count. */
static int bench_trainer(const char *dir, int reps, int L, const struct state *s) {
    char shard[4200], ckdir[4200], raw[4200], path[4400];
    snprintf(shard, sizeof(shard), "%s/train.bin", dir);
    snprintf(ckdir, sizeof(ckdir), "%s/checkpoints", dir);
    snprintf(raw, sizeof(raw), "%s/raw.bin", dir);
    static uint16_t tok[4096];
    for (int i = 0; i < 4096; i++)
        tok[i] = (uint16_t)((i * 7919) % 50257);
    struct ts_backend *be = NULL;
    struct ts_cpu_options opt = {.threads = 0, .blas = TS_BLAS_AUTO};
    struct ts_gpt_config cfg = {.max_seq_len = 1024,
                                .vocab_size = 50257,
                                .num_layers = L,
                                .num_heads = 12,
                                .channels = 768};
    ts_gpt_t *gpt = NULL;
    ts_loader_t *loader = NULL;
    ts_comm_t *comm = NULL;
    ts_trainer_t *tr = NULL;
    struct ts_train_config tc = {.batch = 1, .seq_len = 64, .grad_accum = 1};
    tc.lr = (struct ts_lr_schedule){.max_lr = 6e-4f, .warmup = 1, .total = 10, .min_lr_frac = 0.1f};
    tc.adamw = ts_adamw_defaults();
    struct ts_step_record rec;
    if (ts_shard_write(shard, tok, 4096) != TS_OK || ts_cpu_backend_create(&be, &opt) != TS_OK ||
        ts_gpt_config_finish(&cfg) != TS_OK || ts_gpt_create(&gpt, &cfg, be, 1, 64) != TS_OK ||
        ts_gpt_init(gpt, 1) != TS_OK || ts_loader_create(&loader, shard, 64, 50257) != TS_OK ||
        ts_comm_create_single(&comm) != TS_OK ||
        ts_trainer_create(&tr, gpt, loader, comm, &tc) != TS_OK ||
        ts_trainer_step(tr, &rec) != TS_OK) {
        fprintf(stderr, "trainer: %s\n", ts_last_error());
        return 1;
    }
    const int64_t bytes = ts_gpt_num_params(gpt) * 3 * 4;
    double stall[20], rw[20], astall[20], asave[20];
    int asteps[20];
    ts_train_saver_t *saver = NULL; /* the background saver a run keeps */
    char ackdir[4200];
    snprintf(ackdir, sizeof(ackdir), "%s/async_checkpoints", dir);
    if (ts_train_saver_create(&saver, tr, comm, true) != TS_OK) {
        fprintf(stderr, "saver: %s\n", ts_last_error());
        return 1;
    }
    for (int r = 0; r < reps + 1; r++) {
        double wc = 0;
        const double w = raw_write(raw, s, &wc);
        unlink(raw);
        struct ts_train_state_info info = {.global_batch = 1};
        const double c0 = cpu_s(RUSAGE_SELF), ct0 = cpu_s(RUSAGE_THREAD);
        const double t0 = ts_bench_now_s();
        if (ts_train_state_save(tr, comm, &info, ckdir, 1, path, sizeof(path)) != TS_OK) {
            fprintf(stderr, "save: %s\n", ts_last_error());
            return 1;
        }
        const double dt = ts_bench_now_s() - t0;
        /* other threads (OpenMP, OpenBLAS) busy during the save would show as process CPU
         * beyond this thread's */
        fprintf(stderr, "round %d: save CPU: process %.2f s, this thread %.2f s, wall %.2f s\n", r,
                cpu_s(RUSAGE_SELF) - c0, cpu_s(RUSAGE_THREAD) - ct0, dt);
        fprintf(stderr,
                "round %d: raw write %.2f GB/s (write() %.2f s, fsync %.2f s), trainer save "
                "(stall) %.2f s, %.2f GB/s of state\n",
                r, (double)s->bytes / w / 1e9, wc, w - wc, dt, (double)bytes / dt / 1e9);
        if (ts_trainer_step(tr, &rec) != TS_OK)
            return 1;
        /* the same state saved in the background: the stall is the copy into the saver's
         * buffers; training steps go on, polling at each boundary as the run loop does */
        const double a0 = ts_bench_now_s();
        if (ts_train_saver_begin(saver, &info, ackdir, 1) != TS_OK) {
            fprintf(stderr, "async save: %s\n", ts_last_error());
            return 1;
        }
        const double adt = ts_bench_now_s() - a0;
        struct ts_ckpt_saved saved;
        int steps = 0;
        while (!ts_ckpt_writer_take(ts_train_saver_writer(saver), &saved)) {
            if (ts_trainer_step(tr, &rec) != TS_OK ||
                ts_ckpt_writer_poll(ts_train_saver_writer(saver), false) != TS_OK) {
                fprintf(stderr, "async save: %s\n", ts_last_error());
                return 1;
            }
            steps++;
        }
        fprintf(stderr,
                "round %d: background save: stall %.3f s, save %.2f s (%.2f GB/s of state), %d "
                "training steps ran during it\n",
                r, adt, saved.save_s, (double)bytes / saved.save_s / 1e9, steps);
        if (r > 0) {
            stall[r - 1] = dt;
            rw[r - 1] = w;
            astall[r - 1] = adt;
            asave[r - 1] = saved.save_s;
            asteps[r - 1] = steps;
        }
    }
    ts_train_saver_destroy(saver);
    const double as = ts_bench_median(astall, reps), asv = ts_bench_median(asave, reps);
    int min_steps = asteps[0];
    for (int i = 1; i < reps; i++)
        min_steps = asteps[i] < min_steps ? asteps[i] : min_steps;
    const double st = ts_bench_median(stall, reps), w = ts_bench_median(rw, reps);
    struct utsname u;
    uname(&u);
    printf("{\"bench\":\"ckpt_trainer_stall\",\"machine\":\"%s %s\",\"layers\":%d,"
           "\"state_bytes\":%" PRId64 ",\"stall_s\":%.3f,\"save_state_GBps\":%.3f,"
           "\"raw_write_GBps\":%.3f,\"save_vs_raw\":%.3f,\"reps\":%d}\n",
           u.nodename, u.machine, L, bytes, st, (double)bytes / st / 1e9,
           (double)s->bytes / w / 1e9, ((double)bytes / st) / ((double)s->bytes / w), reps);
    printf("{\"bench\":\"ckpt_async_stall\",\"machine\":\"%s %s\",\"layers\":%d,"
           "\"state_bytes\":%" PRId64 ",\"async_stall_s\":%.3f,\"sync_save_s\":%.3f,"
           "\"stall_vs_sync\":%.3f,\"async_save_s\":%.3f,\"async_save_state_GBps\":%.3f,"
           "\"raw_write_GBps\":%.3f,\"async_save_vs_raw\":%.3f,\"min_steps_during_save\":%d,"
           "\"reps\":%d}\n",
           u.nodename, u.machine, L, bytes, as, st, as / st, asv, (double)bytes / asv / 1e9,
           (double)s->bytes / w / 1e9, ((double)bytes / asv) / ((double)s->bytes / w), min_steps,
           reps);
    ts_trainer_destroy(tr);
    ts_comm_destroy(comm);
    ts_loader_destroy(loader);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = "bench_ckpt_tmp";
    int reps = 3, L = 12, gap = 0;
    bool trainer = false, ab = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--trainer") == 0)
            trainer = true;
        if (strcmp(argv[i], "--ab") == 0)
            ab = true;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--trainer") == 0 || strcmp(argv[i], "--ab") == 0)
            i--;
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--layers") == 0)
            L = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--gap") == 0)
            gap = atoi(argv[i + 1]);
    }
    if (reps < 1 || reps > 20)
        reps = 3;
    if (getenv("TS_LOG") != NULL && strcmp(getenv("TS_LOG"), "debug") == 0)
        ts_log_set_level(TS_LOG_DEBUG); /* the save's phase timings */
    struct state *s = malloc(sizeof(*s)), *back = malloc(sizeof(*back));
    build(s, L);
    if (trainer) {
        char mk[4200];
        snprintf(mk, sizeof(mk), "mkdir -p %s", dir);
        if (system(mk) != 0)
            return 1;
        const int rc = bench_trainer(dir, reps, L, s);
        snprintf(mk, sizeof(mk), "rm -rf %s", dir);
        return system(mk) != 0 ? 1 : rc;
    }
    *back = *s;
    for (int i = 0; i < back->n; i++) {
        const int64_t n =
            s->t[i].ndim == 1 ? s->t[i].shape[0] : s->t[i].shape[0] * s->t[i].shape[1];
        back->t[i].data = malloc((size_t)n * 4);
    }
    char ckdir[4096], raw[4200], path[4200];
    snprintf(ckdir, sizeof(ckdir), "%s/checkpoints", dir);
    snprintf(raw, sizeof(raw), "%s/raw.bin", dir);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", dir);
    if (system(cmd) != 0)
        return 1;
    ts_comm_t *comm = NULL;
    if (ts_comm_create_single(&comm) != TS_OK)
        return 1;
    struct ts_ckpt_meta meta = {.global_batch = 512, .layout = {.dp = 1, .tp = 1}};
    snprintf(meta.build_version, sizeof(meta.build_version), "bench");
    char *rbuf = malloc(8 << 20);
    double ts_save[20], ts_load[20], ts_rw[20], ts_rr[20], ab_save[2][20], ab_rw[2][20];
    int ab_n[2] = {0, 0};
    int64_t written = 0;
    int ok = 1;
    for (int r = 0; r < reps + 1; r++) { /* the first round warms up */
        double rwc = 0;
        const double rw = raw_write(raw, s, &rwc);
        const double rr = raw_read(raw, rbuf, 8 << 20);
        unlink(raw);
        meta.step = r + 1;
        if (gap > 0)
            sleep((unsigned)gap);
        const int off = ab && r % 2 == 1;
        if (off)
            setenv("TS_CKPT_WRITEBACK", "0", 1);
        else
            unsetenv("TS_CKPT_WRITEBACK");
        struct ts_ckpt_save_args a = {.dir = ckdir,
                                      .meta = &meta,
                                      .tensors = s->t,
                                      .num_tensors = s->n,
                                      .model_table = "params",
                                      .keep_last = 1,
                                      .comm = comm};
        double t0 = ts_bench_now_s();
        if (ts_ckpt_save(&a, path, sizeof(path)) != TS_OK) {
            fprintf(stderr, "save: %s\n", ts_last_error());
            return 1;
        }
        const double save = ts_bench_now_s() - t0;
        struct stat sb;
        char f[4400];
        written = 0;
        snprintf(f, sizeof(f), "%s/rank_00000.h5", path);
        if (stat(f, &sb) == 0)
            written += sb.st_size;
        snprintf(f, sizeof(f), "%s/model.h5", path);
        if (stat(f, &sb) == 0)
            written += sb.st_size;
        drop_dir_cache(path);
        t0 = ts_bench_now_s();
        ts_ckpt_t *ck = NULL;
        if (ts_ckpt_open(&ck, path) != TS_OK) {
            fprintf(stderr, "open: %s\n", ts_last_error());
            return 1;
        }
        for (int i = 0; i < back->n; i++)
            if (ts_ckpt_read(ck, &back->t[i]) != TS_OK) {
                fprintf(stderr, "read: %s\n", ts_last_error());
                return 1;
            }
        const double load = ts_bench_now_s() - t0;
        ts_ckpt_close(ck);
        for (int i = 0; i < back->n && r == 0; i++) {
            const int64_t n =
                s->t[i].ndim == 1 ? s->t[i].shape[0] : s->t[i].shape[0] * s->t[i].shape[1];
            ok &= memcmp(back->t[i].data, s->t[i].data, (size_t)n * 4) == 0;
        }
        fprintf(stderr,
                "round %d%s: raw write %.2f GB/s (write() %.2f s, fsync %.2f s), raw read %.2f "
                "GB/s, save %.2f s (%.2f GB/s of state), load %.2f s (%.2f GB/s)\n",
                r,
                !ab   ? ""
                : off ? " (writeback off)"
                      : " (writeback on)",
                (double)s->bytes / rw / 1e9, rwc, rw - rwc, (double)s->bytes / rr / 1e9, save,
                (double)s->bytes / save / 1e9, load, (double)s->bytes / load / 1e9);
        if (r > 0) {
            ts_save[r - 1] = save;
            ab_save[off][ab_n[off]] = save;
            ab_rw[off][ab_n[off]++] = rw;
            ts_load[r - 1] = load;
            ts_rw[r - 1] = rw;
            ts_rr[r - 1] = rr;
        }
    }
    if (ab && ab_n[0] > 0 && ab_n[1] > 0) {
        const double on = ts_bench_median(ab_save[0], ab_n[0]);
        const double offs = ts_bench_median(ab_save[1], ab_n[1]);
        printf("{\"bench\":\"ckpt_writeback_ab\",\"save_s_on\":%.3f,\"save_s_off\":%.3f,"
               "\"raw_write_GBps_on\":%.3f,\"raw_write_GBps_off\":%.3f,\"rounds_on\":%d,"
               "\"rounds_off\":%d}\n",
               on, offs, (double)s->bytes / ts_bench_median(ab_rw[0], ab_n[0]) / 1e9,
               (double)s->bytes / ts_bench_median(ab_rw[1], ab_n[1]) / 1e9, ab_n[0], ab_n[1]);
    }
    const double save = ts_bench_median(ts_save, reps), load = ts_bench_median(ts_load, reps);
    const double rw = ts_bench_median(ts_rw, reps), rr = ts_bench_median(ts_rr, reps);
    struct utsname u;
    uname(&u);
    printf("{\"bench\":\"ckpt\",\"machine\":\"%s %s\",\"layers\":%d,\"state_bytes\":%" PRId64
           ",\"written_bytes\":%" PRId64
           ",\"save_s\":%.3f,\"save_state_GBps\":%.3f,\"save_written_GBps\":%.3f,"
           "\"raw_write_GBps\":%.3f,\"save_vs_raw\":%.3f,\"load_s\":%.3f,\"load_GBps\":%.3f,"
           "\"raw_read_GBps\":%.3f,\"load_vs_raw\":%.3f,\"gap_s\":%d,\"reps\":%d,\"correct\":%s}\n",
           u.nodename, u.machine, L, s->bytes, written, save, (double)s->bytes / save / 1e9,
           (double)written / save / 1e9, (double)s->bytes / rw / 1e9,
           ((double)s->bytes / save) / ((double)s->bytes / rw), load, (double)s->bytes / load / 1e9,
           (double)s->bytes / rr / 1e9, rr / load, gap, reps, ok ? "true" : "false");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        ok = 0;
    ts_comm_destroy(comm);
    return ok ? 0 : 1;
}
