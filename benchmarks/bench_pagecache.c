/* bench_pagecache.c: how fast write() copies into the page cache, by where the page-cache
 * memory comes from. No fsync is timed; the file is fsync'ed and unlinked after each write.
 *
 * The checkpoint saves of issue 6 spend most of their time copying into the page cache, and a
 * trainer process did so 3-5x slower than the plain benchmark. This probe separates the cases:
 *
 *   idle:     a new file after IDLE seconds in which nothing was freed (pages from the long-free
 *             pool of the machine)
 *   reused:   a new file right after unlinking a file of the same size (pages freed an instant ago)
 *   freed+idle: a new file IDLE seconds after unlinking one of the same size
 *   overwrite: the same bytes written over the file just written (its pages already cached)
 *
 * On a VM whose balloon reports free pages to the host (virtio-balloon free page reporting,
 * Firecracker), memory idle for a couple of seconds is handed back to the host and each page
 * touched again costs a fault on the host: "idle" and "freed+idle" are slow there.
 *
 *   bench_pagecache [--dir DIR] [--mib N] [--idle S] [--reps R] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_util.h"

#define PIECE ((size_t)8 << 20)

static size_t g_bytes;
static char *g_buf;

/* write() of g_bytes in 8 MiB pieces: GB/s of the copy alone; then fsync and close. */
static double write_file(const char *path, int trunc) {
    const int fd = open(path, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0644);
    if (fd < 0)
        return -1;
    const double t0 = ts_bench_now_s();
    for (size_t off = 0; off < g_bytes; off += PIECE)
        if (pwrite(fd, g_buf + off, PIECE, (off_t)off) != (ssize_t)PIECE) {
            close(fd);
            return -1;
        }
    const double dt = ts_bench_now_s() - t0;
    (void)fsync(fd);
    close(fd);
    return (double)g_bytes / dt / 1e9;
}

int main(int argc, char **argv) {
    const char *dir = ".";
    int mib = 1488, idle = 5, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--mib") == 0)
            mib = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--idle") == 0)
            idle = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
    }
    if (reps < 1 || reps > 20)
        reps = 3;
    if (mib < 8)
        mib = 8;
    g_bytes = (size_t)(mib / 8) * PIECE;
    g_buf = malloc(g_bytes);
    if (g_buf == NULL)
        return 1;
    memset(g_buf, 3, g_bytes); /* the source is resident before anything is timed */
    char a[4200], b[4200];
    snprintf(a, sizeof(a), "%s/pagecache_a.bin", dir);
    snprintf(b, sizeof(b), "%s/pagecache_b.bin", dir);
    double v_idle[20], v_reused[20], v_freed_idle[20], v_over[20];
    for (int r = 0; r < reps; r++) {
        (void)write_file(a, 1);
        sleep((unsigned)idle);
        v_idle[r] = write_file(b, 1);
        unlink(a);
        unlink(b);
        (void)write_file(a, 1);
        unlink(a);
        v_reused[r] = write_file(b, 1);
        v_over[r] = write_file(b, 0);
        unlink(b);
        sleep((unsigned)idle);
        v_freed_idle[r] = write_file(a, 1);
        unlink(a);
        fprintf(stderr,
                "round %d: write() GB/s: idle %.2f, reused %.2f, freed+idle %.2f, overwrite "
                "%.2f\n",
                r, v_idle[r], v_reused[r], v_freed_idle[r], v_over[r]);
    }
    struct utsname u;
    uname(&u);
    printf("{\"bench\":\"pagecache\",\"machine\":\"%s %s\",\"bytes\":%zu,\"idle_s\":%d,"
           "\"idle_GBps\":%.3f,\"reused_GBps\":%.3f,\"freed_idle_GBps\":%.3f,"
           "\"overwrite_GBps\":%.3f,\"reps\":%d}\n",
           u.nodename, u.machine, g_bytes, idle, ts_bench_median(v_idle, reps),
           ts_bench_median(v_reused, reps), ts_bench_median(v_freed_idle, reps),
           ts_bench_median(v_over, reps), reps);
    free(g_buf);
    return 0;
}
