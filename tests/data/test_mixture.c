/* test_mixture.c: data mixtures (several datasets with weights, data/mixture.h) and the order
 * of shard names.
 *
 * The loader: the share of each source over many draws is within a binomial tolerance of its
 * weight; the source of a window is a pure function of (seed, global index), so reading by index
 * in any split (one rank or two) gives the same windows; each source reads its own windows once
 * per epoch of its own; a loader sought to a position (recounting, or with saved counts) reads
 * what one that got there step by step reads. The spelling: PATH:WEIGHT split at the last ':',
 * bad weights refused. `tessera train`: a mixture is recorded in config.json, resumes bit-exactly
 * (the same losses and the same final weights as an uninterrupted run), refuses a resume with
 * other weights unless --data-changed, and bad specs exit 2 naming the problem. Shard names
 * beyond 999 sort by number. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/mixture.h"
#include "data/shard.h"
#include "tok_util.h"

#define T 4

/* A shard of `windows` windows of T+1 tokens at stride T whose every token is base + (its window
 * index), so a window's first input names the source (base) and the window. */
static void write_marked_shard(const char *path, int base, int64_t windows) {
    const int64_t n = windows * T + 1;
    uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++)
        tok[i] = (uint16_t)(base + (i / T < windows ? i / T : windows - 1));
    cr_assert_eq(ts_shard_write(path, tok, n), TS_OK, "%s", ts_last_error());
    free(tok);
}

/* Three sources in dir/s0, s1, s2 with 50, 30 and 7 windows, marked 0, 1000 and 2000. */
static void three_sources(const char *dir, char paths[3][4200]) {
    const int64_t windows[3] = {50, 30, 7};
    for (int s = 0; s < 3; s++) {
        snprintf(paths[s], sizeof(paths[s]), "%s/s%d_train_000.bin", dir, s);
        write_marked_shard(paths[s], 1000 * s, windows[s]);
    }
}

static ts_loader_t *three_mix(char paths[3][4200], const double *w, uint64_t seed) {
    const char *p[3] = {paths[0], paths[1], paths[2]};
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_loader_create_mix(&l, p, w, 3, T, 4096), TS_OK, "%s", ts_last_error());
    ts_loader_set_shuffle(l, true, seed);
    return l;
}

Test(data_mixture, proportions_match_the_weights) {
    char *dir = tok_mkdtemp();
    char paths[3][4200];
    three_sources(dir, paths);
    const double w[3] = {5, 3, 2}; /* relative: 0.5, 0.3, 0.2 */
    ts_loader_t *l = three_mix(paths, w, 1337);
    const int64_t N = 30000;
    int64_t drawn[3] = {0}, read[3] = {0};
    int32_t in[64 * T], tg[64 * T];
    for (int64_t g = 0; g < N; g++)
        drawn[ts_loader_source_at(l, g)]++;
    for (int64_t g = 0; g < N; g += 64) {
        cr_assert_eq(ts_loader_next(l, 64, in, tg), TS_OK, "%s", ts_last_error());
        for (int b = 0; b < 64 && g + b < N; b++)
            read[in[b * T] / 1000]++;
    }
    for (int s = 0; s < 3; s++) {
        const double p = w[s] / 10.0;
        /* five standard deviations of a binomial(N, p): a fixed seed, so this either always
         * passes or shows a biased draw */
        const double tol = 5.0 * sqrt((double)N * p * (1 - p));
        cr_assert(fabs((double)drawn[s] - (double)N * p) < tol,
                  "source %d: %lld of %lld draws, expected %.0f +- %.0f", s, (long long)drawn[s],
                  (long long)N, N * p, tol);
        cr_assert_eq(read[s], drawn[s], "source %d: read %lld windows, drew %lld", s,
                     (long long)read[s], (long long)drawn[s]);
        cr_assert_float_eq(ts_loader_source_weight(l, s), p, 1e-12);
    }
    ts_loader_destroy(l);
    /* two sources at 0.7 / 0.3 with another seed */
    const char *p2[2] = {paths[0], paths[1]};
    const double w2[2] = {0.7, 0.3};
    cr_assert_eq(ts_loader_create_mix(&l, p2, w2, 2, T, 4096), TS_OK);
    ts_loader_set_shuffle(l, false, 99);
    int64_t first = 0;
    for (int64_t g = 0; g < N; g++)
        first += ts_loader_source_at(l, g) == 0;
    const double tol = 5.0 * sqrt((double)N * 0.7 * 0.3);
    cr_assert(fabs((double)first - 0.7 * N) < tol, "%lld of %lld from the 0.7 source",
              (long long)first, (long long)N);
    ts_loader_destroy(l);
    tok_rmdir(dir);
}

Test(data_mixture, each_source_reads_its_windows_once_per_own_epoch) {
    char *dir = tok_mkdtemp();
    char paths[3][4200];
    three_sources(dir, paths);
    const double w[3] = {0.2, 0.3, 0.5};
    const int64_t nwin[3] = {50, 30, 7};
    ts_loader_t *l = three_mix(paths, w, 4);
    int64_t k[3] = {0};
    char *seen[3];
    for (int s = 0; s < 3; s++)
        seen[s] = calloc((size_t)nwin[s], 1);
    int32_t in[T], tg[T];
    for (int64_t g = 0; g < 2000; g++) {
        cr_assert_eq(ts_loader_next(l, 1, in, tg), TS_OK);
        const int s = in[0] / 1000, win = in[0] % 1000;
        cr_assert_eq(s, ts_loader_source_at(l, g));
        if (k[s] % nwin[s] == 0)
            memset(seen[s], 0, (size_t)nwin[s]);
        cr_assert_eq(seen[s][win], 0, "source %d window %d twice in one of its epochs", s, win);
        seen[s][win] = 1;
        k[s]++;
    }
    for (int s = 0; s < 3; s++)
        free(seen[s]);
    ts_loader_destroy(l);
    tok_rmdir(dir);
}

/* Windows [first, first + n) read by index, as B-sized pieces in any split. */
static void read_split(const ts_loader_t *l, int64_t first, int n, int B, int32_t *out) {
    int32_t tg[64 * T];
    for (int i = 0; i < n; i += B)
        cr_assert_eq(ts_loader_read(l, first + i, B, false, out + (int64_t)i * T, tg), TS_OK);
}

Test(data_mixture, layout_free_and_resumable) {
    char *dir = tok_mkdtemp();
    char paths[3][4200];
    three_sources(dir, paths);
    const double w[3] = {0.6, 0.3, 0.1};
    ts_loader_t *a = three_mix(paths, w, 21);
    const int G = 16; /* a global batch */
    int32_t in[64 * T], tg[64 * T];
    for (int step = 0; step < 37; step++)
        cr_assert_eq(ts_loader_next(a, G, in, tg), TS_OK);
    const int64_t pos = ts_loader_position(a);
    int64_t counts[TS_LOADER_MAX_SOURCES];
    ts_loader_source_counts(a, counts);
    cr_assert_eq(counts[0] + counts[1] + counts[2], pos);
    /* a loader that recounts to the position, and one given the counts, read the same */
    ts_loader_t *b = three_mix(paths, w, 21), *c = three_mix(paths, w, 21);
    ts_loader_seek(b, pos);
    cr_assert_eq(ts_loader_seek_counts(c, pos, counts, 3), TS_OK, "%s", ts_last_error());
    int64_t cb[TS_LOADER_MAX_SOURCES];
    ts_loader_source_counts(b, cb);
    cr_assert(memcmp(cb, counts, 3 * sizeof(int64_t)) == 0, "recounted counts differ");
    /* the next global batch as one rank (B 16), two ranks (B 8 each) and four (B 4) */
    int32_t one[64 * T], two[64 * T], four[64 * T], viac[64 * T];
    read_split(a, pos, G, 16, one);
    read_split(b, pos, G, 8, two);
    read_split(c, pos, G, 4, four);
    cr_assert_eq(ts_loader_next(c, G, viac, tg), TS_OK);
    cr_assert(memcmp(one, two, sizeof(int32_t) * G * T) == 0, "dp 2 reads other windows");
    cr_assert(memcmp(one, four, sizeof(int32_t) * G * T) == 0, "dp 4 reads other windows");
    cr_assert(memcmp(one, viac, sizeof(int32_t) * G * T) == 0, "saved counts read otherwise");
    /* bad saved counts are refused */
    counts[0]++;
    cr_assert_eq(ts_loader_seek_counts(c, pos, counts, 3), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_loader_seek_counts(c, pos, counts, 2), TS_ERR_INVALID_ARG);
    /* another seed draws otherwise */
    ts_loader_t *d = three_mix(paths, w, 22);
    int differ = 0;
    for (int64_t g = 0; g < 200; g++)
        differ += ts_loader_source_at(a, g) != ts_loader_source_at(d, g);
    cr_assert_gt(differ, 20);
    ts_loader_destroy(a);
    ts_loader_destroy(b);
    ts_loader_destroy(c);
    ts_loader_destroy(d);
    tok_rmdir(dir);
}

Test(data_mixture, spelling) {
    char text[8192];
    const char *two[2] = {"web/:0.7", "a:b/code:3e-1"};
    cr_assert_eq(ts_data_mix_from_args(two, 2, text, sizeof(text)), TS_OK, "%s", ts_last_error());
    cr_assert_str_eq(text, "web/:0.7\na:b/code:0.3");
    cr_assert(ts_data_is_mix(text));
    struct ts_data_mix m;
    cr_assert_eq(ts_data_mix_parse(text, &m), TS_OK);
    cr_assert_eq(m.n, 2);
    cr_assert_str_eq(m.path[1], "a:b/code"); /* only the last ':' splits */
    cr_assert_eq(m.weight[0], 0.7);
    ts_data_mix_deinit(&m);
    /* a single --data is a path, ':' and all */
    const char *one[1] = {"web/:0.7"};
    cr_assert_eq(ts_data_mix_from_args(one, 1, text, sizeof(text)), TS_OK);
    cr_assert_str_eq(text, "web/:0.7");
    cr_assert(!ts_data_is_mix(text));
    cr_assert_eq(ts_data_mix_parse(text, &m), TS_OK);
    cr_assert(m.n == 1 && strcmp(m.path[0], "web/:0.7") == 0);
    ts_data_mix_deinit(&m);
    const char *newline[1] = {"we\nb/"};
    cr_assert_eq(ts_data_mix_from_args(newline, 1, text, sizeof(text)), TS_ERR_INVALID_ARG);
    static const struct {
        const char *a, *b, *says;
    } bad[] = {
        {"web/", "code/:0.3", "needs a weight"},
        {"web/:0", "code/:0.3", "must be > 0"},
        {"web/:-1", "code/:0.3", "not a number"},
        {"web/:abc", "code/:0.3", "'abc' is not a number"},
        {"web/:0.5x", "code/:0.3", "not a number"},
        {"web/:nan", "code/:0.3", "not a number"},
        {"web/:inf", "code/:0.3", "not a number"},
        {":0.5", "code/:0.3", "path before the weight is empty"},
        {"web/:", "code/:0.3", "not a number"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[2] = {bad[i].a, bad[i].b};
        cr_assert_eq(ts_data_mix_from_args(args, 2, text, sizeof(text)), TS_ERR_INVALID_ARG,
                     "%s accepted", bad[i].a);
        cr_assert(strstr(ts_last_error(), bad[i].says) != NULL, "%s: %s", bad[i].a,
                  ts_last_error());
    }
}

/* ---- `tessera train` with a mixture ---- */

static const char tiny[] = "--vocab-size 64 --layers 1 --heads 2 --channels 16 --seq-len 16 "
                           "--batch 2 --threads 1 --log-every 1 --lr 3e-3 --warmup 1";

/* Two prepared-style sources: shards of a vocab-64 pattern in dir/web and dir/code. */
static void two_shards(const char *dir, char *web, char *code, size_t len) {
    snprintf(web, len, "%s/web_train_000.bin", dir);
    snprintf(code, len, "%s/code_train_000.bin", dir);
    const int64_t n = 6000;
    uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++)
        tok[i] = (uint16_t)((i * 7 + i / 13) % 32); /* web: the lower half of the vocabulary */
    cr_assert_eq(ts_shard_write(web, tok, n), TS_OK);
    for (int64_t i = 0; i < n; i++)
        tok[i] = (uint16_t)(32 + (i * 5 + i / 3) % 32); /* code: the upper half */
    cr_assert_eq(ts_shard_write(code, tok, n), TS_OK);
    free(tok);
}

/* The "loss" values of metrics.jsonl's step lines, as printed (%.9g: a float exactly). */
static int losses(const char *run, char out[][32], int max) {
    char path[8600];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", run);
    size_t n = 0;
    char *text = tok_read_file(path, &n);
    cr_assert_not_null(text, "no %s", path);
    int k = 0;
    for (const char *p = text; k < max && (p = strstr(p, "\"loss\":")) != NULL; p += 7) {
        const char *v = p + 7;
        size_t len = strcspn(v, ",}");
        snprintf(out[k++], 32, "%.*s", (int)(len < 31 ? len : 31), v);
    }
    free(text);
    return k;
}

static char *eval_json(const char *run, const char *data) {
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log,
                                 "eval --ckpt %s --data %s --batch 2 --seq-len 16 "
                                 "--batches 4 --threads 1 --json",
                                 run, data),
                 0, "%s", log);
    char *j = strstr(log, "{\"loss\":");
    cr_assert_not_null(j, "%s", log);
    char *copy = strdup(j);
    free(log);
    return copy;
}

Test(data_mixture, train_resumes_bit_exactly_and_records_the_mixture, .timeout = 300) {
    char *dir = tok_mkdtemp();
    char web[4200], code[4200], mix[8500];
    two_shards(dir, web, code, sizeof(web));
    snprintf(mix, sizeof(mix), "--data %s:0.7 --data %s:0.3", web, code);
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log, "train %s %s --steps 8 --out %s/straight", mix, tiny, dir),
                 0, "%s", log);
    cr_assert(strstr(log, "mixture source 0: weight 0.7") && strstr(log, "source 1: weight 0.3"),
              "%s", log);
    free(log);
    /* the mixture is recorded as the canonical text */
    char path[8600];
    snprintf(path, sizeof(path), "%s/straight/config.json", dir);
    size_t n = 0;
    char *config = tok_read_file(path, &n);
    /* (json-c writes '/' as "\/") */
    cr_assert(config && strstr(config, "web_train_000.bin:0.7\\n") &&
                  strstr(config, "code_train_000.bin:0.3\","),
              "config.json lacks the mixture:\n%s", config);
    free(config);
    /* 3 steps, stop, resume to 8 (the resume takes --data from the checkpoint) */
    cr_assert_eq(tok_run_tessera(&log, "train %s %s --steps 8 --stop-after 3 --out %s/split", mix,
                                 tiny, dir),
                 0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/split --threads 1", dir), 0, "%s",
                 log);
    cr_assert(strstr(log, "mixture source 1: weight 0.3") && strstr(log, "changed") == NULL, "%s",
              log);
    free(log);
    char la[16][32], lb[16][32];
    snprintf(path, sizeof(path), "%s/straight", dir);
    cr_assert_eq(losses(path, la, 16), 8);
    snprintf(path, sizeof(path), "%s/split", dir);
    cr_assert_eq(losses(path, lb, 16), 8);
    for (int s = 0; s < 8; s++)
        cr_assert_str_eq(la[s], lb[s], "step %d: straight %s, resumed %s", s + 1, la[s], lb[s]);
    /* the same final weights: eval gives the same loss to the last bit */
    char ra[4300], rb[4300];
    snprintf(ra, sizeof(ra), "%s/straight", dir);
    snprintf(rb, sizeof(rb), "%s/split", dir);
    char *ea = eval_json(ra, web), *eb = eval_json(rb, web);
    cr_assert_str_eq(ea, eb);
    free(ea);
    free(eb);
    /* a single source with the same steps trains on other data: the losses differ */
    cr_assert_eq(
        tok_run_tessera(&log, "train --data %s %s --steps 8 --out %s/web_only", web, tiny, dir), 0,
        "%s", log);
    free(log);
    snprintf(path, sizeof(path), "%s/web_only", dir);
    cr_assert_eq(losses(path, lb, 16), 8);
    cr_assert(strcmp(la[7], lb[7]) != 0, "the mixture trained like web alone");

    /* a resume with other weights is refused, then allowed with --data-changed */
    cr_assert_eq(
        tok_run_tessera(&log, "train %s %s --steps 8 --stop-after 3 --out %s/rew", mix, tiny, dir),
        0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log,
                                 "train --resume --out %s/rew --threads 1 --data %s:0.5 --data "
                                 "%s:0.5",
                                 dir, web, code),
                 2, "%s", log);
    cr_assert(strstr(log, "weights were 0.7, 0.3, now 0.5, 0.5") && strstr(log, "--data-changed"),
              "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log,
                                 "train --resume --out %s/rew --threads 1 --data %s:0.5 --data "
                                 "%s:0.5 --data-changed",
                                 dir, web, code),
                 0, "%s", log);
    cr_assert(strstr(log, "restarts at window 0"), "%s", log);
    free(log);
    /* a mixture resumed as a single dataset is refused too */
    cr_assert_eq(tok_run_tessera(&log, "train %s %s --steps 8 --stop-after 3 --out %s/single", mix,
                                 tiny, dir),
                 0, "%s", log);
    free(log);
    cr_assert_eq(
        tok_run_tessera(&log, "train --resume --out %s/single --threads 1 --data %s", dir, web), 2,
        "%s", log);
    cr_assert(strstr(log, "--data-changed"), "%s", log);
    free(log);
    tok_rmdir(dir);
}

Test(data_mixture, bad_specs_exit_2_with_a_message) {
    char *dir = tok_mkdtemp();
    char web[4200], code[4200];
    two_shards(dir, web, code, sizeof(web));
    static const struct {
        const char *a, *b, *says;
    } bad[] = {
        {"%s:0", "%s:1", "must be > 0"},
        {"%s:-0.5", "%s:1", "not a number"},
        {"%s:heavy", "%s:1", "the weight 'heavy' is not a number"},
        {"%s", "%s:1", "needs a weight"},
    };
    char *log = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char a[4300], b[4300];
        snprintf(a, sizeof(a), bad[i].a, web);
        snprintf(b, sizeof(b), bad[i].b, code);
        cr_assert_eq(tok_run_tessera(&log, "train --data '%s' --data '%s' %s --steps 2 --out %s/x",
                                     a, b, tiny, dir),
                     2, "%s", log);
        cr_assert(strstr(log, bad[i].says), "%s: %s", a, log);
        free(log);
    }
    /* a missing source names itself */
    cr_assert_eq(tok_run_tessera(&log,
                                 "train --data %s:0.5 --data %s/nowhere/:0.5 %s --steps 2 --out "
                                 "%s/x",
                                 web, dir, tiny, dir),
                 2, "%s", log);
    cr_assert(strstr(log, "nowhere"), "%s", log);
    free(log);
    tok_rmdir(dir);
}

/* ---- the order of shard names ---- */

Test(data_mixture, shard_names_sort_by_number) {
    cr_assert_lt(ts_shard_name_cmp("train_999.bin", "train_1000.bin"), 0);
    cr_assert_lt(ts_shard_name_cmp("train_100.bin", "train_101.bin"), 0);
    cr_assert_lt(ts_shard_name_cmp("train_101.bin", "train_1000.bin"), 0);
    cr_assert_lt(ts_shard_name_cmp("train_000999.bin", "train_001000.bin"), 0);
    cr_assert_gt(ts_shard_name_cmp("b/train_1.bin", "a/train_2.bin"), 0);
    cr_assert_eq(ts_shard_name_cmp("train_7.bin", "train_7.bin"), 0);
    cr_assert_neq(ts_shard_name_cmp("train_07.bin", "train_7.bin"), 0); /* a total order */
    cr_assert_eq(ts_shard_name_cmp("x", "x1") < 0, true);
    /* the loader reads train_998, 999, 1000, 1001 in that order (glob's order would put
     * train_1000.bin and train_1001.bin before train_998.bin) */
    char *dir = tok_mkdtemp();
    const int ids[4] = {1001, 998, 1000, 999};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof(name), "train_%03d.bin", ids[i]);
        char *p = tok_path(dir, name);
        write_marked_shard(p, ids[i] * 10, 1); /* one window marked by the number */
        free(p);
    }
    char pattern[4300];
    snprintf(pattern, sizeof(pattern), "%s/train_*.bin", dir);
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_loader_create(&l, pattern, T, 20000), TS_OK, "%s", ts_last_error());
    int32_t in[4 * T], tg[4 * T];
    cr_assert_eq(ts_loader_read(l, 0, 4, true, in, tg), TS_OK);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(in[i * T], (998 + i) * 10, "window %d is from train_%d.bin", i,
                     in[i * T] / 10);
    ts_loader_destroy(l);
    tok_rmdir(dir);
}
