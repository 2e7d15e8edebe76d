/* bench_tokenizer.c: GPT-2 encode throughput (MB/s on one thread and on all cores) and
 * byte-level BPE training time (the corpus to 4096 tokens), on a text corpus, by default the
 * King James Bible that `make demo` caches ($TESSERA_HOME/corpora/kjv/kjv.txt).
 *
 * Each configuration warms up once, repeats, and prints one JSON line with the median. Checks
 * its results: the parallel encode must equal the serial one, every run the same ids, and the
 * trained vocabulary must reach 4096 with the same hash every time. A fresh encoder per
 * repetition, so the chunk cache starts cold as in one `tessera prepare`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "data/tokenizer.h"
#include "data/tokenizer_train.h"

static int fail(const char *what) {
    fprintf(stderr, "bench_tokenizer: %s: %s\n", what, ts_last_error());
    return 1;
}

int main(int argc, char **argv) {
    char def[4200];
    const char *home = getenv("TESSERA_HOME");
    if (home != NULL && home[0])
        snprintf(def, sizeof(def), "%s/corpora/kjv/kjv.txt", home);
    else
        snprintf(def, sizeof(def), "%s/.cache/tessera/corpora/kjv/kjv.txt", getenv("HOME"));
    const char *path = argc > 1 ? argv[1] : def;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "bench_tokenizer: no corpus at %s (run `make demo` once, or pass a file)\n",
                path);
        return 77; /* meson: skipped */
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *text = malloc(n);
    if (fread(text, 1, n, f) != n)
        return 1;
    fclose(f);
    struct utsname un;
    uname(&un);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    ts_tokenizer_t *t = NULL;
    double l0 = ts_bench_now_s();
    if (ts_tokenizer_load(&t, "gpt2") != TS_OK)
        return fail("loading gpt2");
    double load_s = ts_bench_now_s() - l0;
    struct ts_tok_ids ref = {0};
    int ok = 1;
    for (int threads = 1; threads <= cores && threads <= 2; threads++) {
        double times[32], cpus[32];
        for (int r = 0; r <= reps && r < 32; r++) {
            struct ts_tok_ids ids = {0};
            double s = ts_bench_now_s(), c = ts_bench_cpu_s();
            if (threads == 1) {
                ts_tok_encoder_t *e = NULL;
                if (ts_tok_encoder_create(&e, t) != TS_OK ||
                    ts_tok_encoder_encode(e, text, n, &ids))
                    return fail("encoding");
                ts_tok_encoder_destroy(e);
            } else if (ts_tok_encode_parallel(t, text, n, threads, &ids) != TS_OK) {
                return fail("encoding in parallel");
            }
            double dt = ts_bench_now_s() - s, dc = ts_bench_cpu_s() - c;
            if (ref.n == 0) {
                ref = ids;
                continue; /* the warm-up */
            }
            ok &= ids.n == ref.n && memcmp(ids.ids, ref.ids, (size_t)ids.n * 4) == 0;
            ts_tok_ids_free(&ids);
            if (r > 0) {
                times[r - 1] = dt;
                cpus[r - 1] = dc;
            }
        }
        double med = ts_bench_median(times, reps), medc = ts_bench_median(cpus, reps);
        printf("{\"bench\":\"encode_gpt2\",\"corpus\":\"%s\",\"bytes\":%zu,\"tokens\":%lld,"
               "\"threads\":%d,\"median_s\":%.4f,\"mb_per_s\":%.2f,\"mb_per_cpu_s\":%.2f,"
               "\"load_s\":%.3f,"
               "\"machine\":\"%s %s, %ld cores\",\"ok\":%s}\n",
               path, n, (long long)ref.n, threads, med, (double)n / 1e6 / med,
               (double)n / 1e6 / medc, load_s, un.nodename, un.machine, cores,
               ok ? "true" : "false");
        fflush(stdout);
    }
    ts_tok_ids_free(&ref);
    /* What `sample --prompt` and one fuzzer input pay: a fresh encoder for a short text (the
     * pattern is compiled once per process; the chunk cache starts at 1024 slots). */
    {
        static const char prompt[] = "Hello, world! A short prompt.";
        struct ts_tok_ids want = {0};
        double us[32];
        for (int r = 0; r <= reps && r < 32; r++) {
            double s = ts_bench_now_s();
            for (int i = 0; i < 200; i++) {
                ts_tok_encoder_t *e = NULL;
                struct ts_tok_ids ids = {0};
                if (ts_tok_encoder_create(&e, t) != TS_OK ||
                    ts_tok_encoder_encode(e, (const uint8_t *)prompt, sizeof(prompt) - 1, &ids) !=
                        TS_OK)
                    return fail("encoding a prompt");
                ts_tok_encoder_destroy(e);
                if (want.n == 0)
                    want = ids;
                else {
                    ok &= ids.n == want.n && memcmp(ids.ids, want.ids, (size_t)ids.n * 4) == 0;
                    ts_tok_ids_free(&ids);
                }
            }
            if (r > 0)
                us[r - 1] = (ts_bench_now_s() - s) / 200 * 1e6;
        }
        printf("{\"bench\":\"encoder_create_short\",\"bytes\":%zu,\"tokens\":%lld,"
               "\"median_us\":%.2f,\"machine\":\"%s %s, %ld cores\",\"ok\":%s}\n",
               sizeof(prompt) - 1, (long long)want.n, ts_bench_median(us, reps), un.nodename,
               un.machine, cores, ok ? "true" : "false");
        ts_tok_ids_free(&want);
    }
    ts_tokenizer_destroy(t);

    double times[32], cpus[32];
    char hash0[80] = "";
    for (int r = 0; r <= reps && r < 32; r++) {
        ts_tok_trainer_t *tr = NULL;
        double s = ts_bench_now_s(), c = ts_bench_cpu_s();
        if (ts_tok_trainer_create(&tr) != TS_OK || ts_tok_trainer_feed(tr, text, n) != TS_OK ||
            ts_tok_trainer_run(tr, 4096) != TS_OK)
            return fail("training");
        double dt = ts_bench_now_s() - s, dc = ts_bench_cpu_s() - c;
        ok &= ts_tok_trainer_vocab_size(tr) == 4096;
        char dir[] = "/tmp/ts_bench_tok_XXXXXX";
        if (mkdtemp(dir) == NULL || ts_tok_trainer_save(tr, dir) != TS_OK)
            return fail("saving");
        ts_tokenizer_t *tt = NULL;
        if (ts_tokenizer_load(&tt, dir) != TS_OK)
            return fail("loading the trained tokenizer");
        if (r == 0)
            snprintf(hash0, sizeof(hash0), "%s", ts_tokenizer_vocab_sha256(tt));
        ok &= strcmp(hash0, ts_tokenizer_vocab_sha256(tt)) == 0;
        ts_tokenizer_destroy(tt);
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            ok = 0;
        ts_tok_trainer_destroy(tr);
        if (r > 0) {
            times[r - 1] = dt;
            cpus[r - 1] = dc;
        }
    }
    printf("{\"bench\":\"train_bpe\",\"corpus\":\"%s\",\"bytes\":%zu,\"vocab_size\":4096,"
           "\"median_s\":%.4f,\"median_cpu_s\":%.4f,\"machine\":\"%s %s, %ld cores\",\"ok\":%s}\n",
           path, n, ts_bench_median(times, reps), ts_bench_median(cpus, reps), un.nodename,
           un.machine, cores, ok ? "true" : "false");
    free(text);
    return ok ? 0 : 1;
}
