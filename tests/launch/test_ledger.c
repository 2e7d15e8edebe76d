/* test_ledger.c: the cost ledger's arithmetic on a fake clock and a fake energy counter, the
 * peak table and the CPU peak on a fake /proc and /sys, RAPL's wrap, and the price table. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_util.h"
#include "launch/energy.h"
#include "launch/ledger.h"
#include "launch/peak.h"
#include "launch/prices.h"

struct fake {
    double t, joules;
    bool measured;
};

static double fake_now(void *ctx) { return ((struct fake *)ctx)->t; }

static bool fake_energy(void *ctx, double *j) {
    const struct fake *f = ctx;
    *j = f->joules;
    return f->measured;
}

static struct ts_ledger_config config(struct fake *f, int devices, double per_hour, double kwh,
                                      int64_t resumed_from) {
    struct ts_ledger_config c = {
        .devices = devices,
        .cpu = true,
        .flops_per_token = 1e6,
        .peak_flops = 1e10,
        .prices = {.usd_per_device_hour = per_hour, .usd_per_kwh = kwh},
        .src = {.ctx = f, .now_s = fake_now, .energy_j = fake_energy},
        .t_launch = f->t,
        .resumed_from = resumed_from,
    };
    snprintf(c.device_name, sizeof(c.device_name), "cpu");
    snprintf(c.precision, sizeof(c.precision), "fp32");
    snprintf(c.prices.source, sizeof(c.prices.source), "test");
    return c;
}

/* One segment on 2 devices at $3/device-hour and $0.5/kWh: start-up 4 s, 10 steps of 100 tokens
 * at 1 s each except the first (3 s), an eval of 2 s after step 5, a save of 0.5 s at the end;
 * 50 J per second of wall. Everything below is worked out by hand from those numbers. */
static void one_segment(const char *path, struct fake *f) {
    f->t = 100;
    f->joules = 1000;
    f->measured = true;
    struct ts_ledger_config c = config(f, 2, 3.0, 0.5, -1);
    ts_ledger_t *l;
    cr_assert_eq(ts_ledger_create(&l, path, &c), TS_OK, "%s", ts_last_error());
    f->t += 4;
    f->joules += 200;
    cr_assert_eq(ts_ledger_begin(l), TS_OK);
    for (int s = 1; s <= 10; s++) {
        const double w = s == 1 ? 3 : 1;
        f->t += w;
        f->joules += 50 * w;
        if (s == 6) { /* the eval after step 5 is inside this interval */
            f->t += 2;
            f->joules += 100;
            ts_ledger_note_eval(l, 2);
        }
        cr_assert_eq(ts_ledger_step(l, s, 100), TS_OK);
    }
    f->t += 0.5;
    f->joules += 25;
    ts_ledger_note_checkpoint(l, 0.5);
    cr_assert_eq(ts_ledger_end(l, "done"), TS_OK);
    ts_ledger_destroy(l);
}

Test(launch_ledger, arithmetic_on_a_fake_clock) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    struct fake f;
    one_segment(path, &f);
    struct ts_ledger_summary s;
    cr_assert_eq(ts_ledger_summarize(path, &s), TS_OK, "%s", ts_last_error());
    cr_expect_eq(s.tokens, 1000);
    cr_expect_eq(s.steps, 10);
    cr_expect_eq(s.segments, 1);
    cr_expect_eq(s.restarts, 0);
    /* wall: 4 start-up + 12 steps + 2 eval + 0.5 save = 18.5 s; x 2 devices */
    cr_expect_float_eq(s.wall_s, 18.5, 1e-9);
    cr_expect_float_eq(s.device_seconds, 37.0, 1e-9);
    cr_expect_float_eq(s.startup_s, 4.0, 1e-9);
    cr_expect_float_eq(s.step_s, 12.0, 1e-9);
    cr_expect_float_eq(s.eval_s, 2.0, 1e-9);
    cr_expect_float_eq(s.checkpoint_s, 0.5, 1e-9);
    /* energy from the ledger's first read: 200 + 600 + 100 + 25 */
    cr_expect_float_eq(s.energy_j, 925.0, 1e-9);
    /* $ = 37 device-s / 3600 x 3 + 925 J / 3.6e6 x 0.5 */
    const double usd = 37.0 / 3600 * 3 + 925.0 / 3.6e6 * 0.5;
    cr_expect_float_eq(s.usd, usd, 1e-12);
    cr_expect_float_eq(s.goodput_usd_per_1m_tokens, usd / 1000 * 1e6, 1e-9);
    /* steady: warm-up of 10 steps is 1 step; steps 2..10: 9 s wall x 2 devices, 900 tokens,
     * 450 J (50 per step) + 100 J of the eval inside step 6's interval */
    cr_expect_eq(ts_ledger_warmup_steps(10), 1);
    const double steady = (18.0 / 3600 * 3 + 550.0 / 3.6e6 * 0.5) / 900 * 1e6;
    cr_expect_float_eq(s.usd_per_1m_tokens, steady, 1e-9);
    cr_expect_geq(s.goodput_usd_per_1m_tokens, s.usd_per_1m_tokens);
    cr_expect_float_eq(s.tokens_per_s_per_device, 900.0 / 18.0, 1e-9);
    cr_expect_float_eq(s.mfu, 1e6 * 900 / (18.0 * 1e10), 1e-12);
    cr_expect(s.energy_priced);
    cr_expect_str_eq(s.exit_reason, "done");
    cli_rmdir(dir);
}

/* The eval before step 6 is its line's pause_s (the report's time axis places the step after
 * it), and a segment killed before its end line still counts it in its wall. */
Test(launch_ledger, pauses_are_on_the_step_line_and_in_a_killed_segment) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    struct fake f;
    one_segment(path, &f);
    FILE *in = fopen(path, "r");
    cr_assert_not_null(in);
    char line[2048], kept[16384] = "";
    double pauses[11] = {0};
    while (fgets(line, sizeof(line), in) != NULL) {
        const char *p = strstr(line, "\"pause_s\":"), *st = strstr(line, "\"step\":");
        if (p != NULL && st != NULL)
            pauses[atoi(st + 7) % 11] = strtod(p + 10, NULL);
        if (strstr(line, "\"type\":\"segment\"") == NULL) /* drop the end line: killed */
            strncat(kept, line, sizeof(kept) - strlen(kept) - 1);
    }
    fclose(in);
    for (int s = 1; s <= 10; s++)
        cr_expect_float_eq(pauses[s], s == 6 ? 2.0 : 0.0, 1e-12, "step %d: pause %g", s, pauses[s]);
    FILE *out = fopen(path, "w");
    cr_assert_not_null(out);
    fputs(kept, out);
    fclose(out);
    struct ts_ledger_summary s;
    cr_assert_eq(ts_ledger_summarize(path, &s), TS_OK, "%s", ts_last_error());
    /* 4 start-up + 12 steps + the 2 s eval its lines know; the final save is lost with the end */
    cr_expect_float_eq(s.wall_s, 18.0, 1e-9);
    cli_rmdir(dir);
}

/* A restart from the checkpoint at step 6 after the ledger had recorded step 10: 4 steps lost,
 * redone; tokens count each step once, usd counts both segments whole. */
Test(launch_ledger, restarts_count_lost_work_once_in_tokens) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    struct fake f;
    one_segment(path, &f);
    f.measured = false; /* the second machine has no counter */
    struct ts_ledger_config c = config(&f, 1, 3.0, 0.5, 6);
    ts_ledger_t *l;
    cr_assert_eq(ts_ledger_create(&l, path, &c), TS_OK, "%s", ts_last_error());
    f.t += 1;
    cr_assert_eq(ts_ledger_begin(l), TS_OK);
    for (int s = 7; s <= 12; s++) {
        f.t += 2;
        cr_assert_eq(ts_ledger_step(l, s, 100), TS_OK);
    }
    cr_assert_eq(ts_ledger_end(l, "done"), TS_OK);
    ts_ledger_destroy(l);
    struct ts_ledger_summary s;
    cr_assert_eq(ts_ledger_summarize(path, &s), TS_OK, "%s", ts_last_error());
    cr_expect_eq(s.segments, 2);
    cr_expect_eq(s.restarts, 1);
    cr_expect_eq(s.lost_steps, 4);
    cr_expect_eq(s.steps, 12);
    cr_expect_eq(s.tokens, 1200);
    cr_expect_eq(s.step_lines, 16);
    cr_expect_float_eq(s.device_seconds, 37.0 + 13.0, 1e-9);
    cr_expect(isnan(s.energy_j), "a segment without energy makes the job's unknown");
    cr_expect_float_eq(s.usd, 37.0 / 3600 * 3 + 925.0 / 3.6e6 * 0.5 + 13.0 / 3600 * 3, 1e-12);
    cr_expect_geq(s.goodput_usd_per_1m_tokens, s.usd_per_1m_tokens);
    cli_rmdir(dir);
}

/* Steps past 2^32 (a run resumed there): the summary counted distinct steps in a table indexed
 * by step, 32 GB for step 4294967301, so the counts came out 0. A redone step still counts once. */
Test(launch_ledger, steps_past_2_32_counted) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    struct fake f = {.t = 100, .joules = 0, .measured = false};
    const int64_t base = 4294967296LL; /* 2^32 */
    struct ts_ledger_config c = config(&f, 1, 3.0, 0.5, base);
    ts_ledger_t *l;
    cr_assert_eq(ts_ledger_create(&l, path, &c), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ledger_begin(l), TS_OK);
    for (int64_t s = base + 1; s <= base + 5; s++) {
        f.t += 1;
        cr_assert_eq(ts_ledger_step(l, s, 100), TS_OK);
    }
    cr_assert_eq(ts_ledger_end(l, "preempted"), TS_OK);
    ts_ledger_destroy(l);
    c = config(&f, 1, 3.0, 0.5, base + 3); /* resumed from step base + 3: two redone */
    cr_assert_eq(ts_ledger_create(&l, path, &c), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ledger_begin(l), TS_OK);
    for (int64_t s = base + 4; s <= base + 6; s++) {
        f.t += 1;
        cr_assert_eq(ts_ledger_step(l, s, 50), TS_OK);
    }
    cr_assert_eq(ts_ledger_end(l, "done"), TS_OK);
    ts_ledger_destroy(l);
    struct ts_ledger_summary s;
    cr_assert_eq(ts_ledger_summarize(path, &s), TS_OK, "%s", ts_last_error());
    cr_expect_eq(s.step_lines, 8);
    cr_expect_eq(s.steps, 6);
    cr_expect_eq(s.tokens, 3 * 100 + 3 * 50, "the last training of a redone step counts: %lld",
                 (long long)s.tokens);
    cli_rmdir(dir);
}

/* Damaged ledgers (what the report's fuzzing found): a NaN or huge step, tokens or device
 * count was cast to an integer (undefined), and a segment started twice or a step line after
 * another segment began made the summary read step lines that were not its own. Each is refused
 * with the file and line. */
Test(launch_ledger, damaged_lines_are_refused_with_their_line) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    static const char start1[] =
        "{\"type\":\"segment_start\",\"segment\":1,\"devices\":1,\"first_step\":0}\n";
    static const char step1[] =
        "{\"type\":\"step\",\"segment\":1,\"step\":1,\"tokens\":64,\"wall_s\":0.1,"
        "\"device_s\":0.1}\n";
    static const char start2[] =
        "{\"type\":\"segment_start\",\"segment\":2,\"devices\":1,\"first_step\":1}\n";
    const struct {
        const char *lines[3];
        const char *want;
    } cases[] = {
        {{start1, "{\"type\":\"step\",\"segment\":1,\"step\":2,\"tokens\":null}\n"},
         "line 2: a step line without its step or tokens"},
        {{start1, "{\"type\":\"step\",\"segment\":1,\"step\":1e300,\"tokens\":1}\n"},
         "line 2: a step line without its step or tokens"},
        {{"{\"type\":\"segment_start\",\"segment\":1,\"devices\":-4e18}\n"},
         "line 1: a segment_start without a device count"},
        {{start1, step1, start1}, "line 3: segment 1 starts a second time"},
        {{start1, start2, step1}, "line 3: a step of segment 1 after segment 2 began"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        for (int j = 0; j < 3 && cases[k].lines[j]; j++)
            fputs(cases[k].lines[j], f);
        fclose(f);
        struct ts_ledger_summary sum;
        cr_assert_eq(ts_ledger_summarize(path, &sum), TS_ERR_FORMAT, "case %zu was accepted", k);
        cr_assert(strstr(ts_last_error(), cases[k].want) != NULL, "case %zu: %s", k,
                  ts_last_error());
    }
    cli_rmdir(dir);
}

Test(launch_ledger, no_price_reports_hours_and_says_so) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    struct fake f = {.t = 5};
    struct ts_ledger_config c = config(&f, 4, -1, -1, -1);
    c.peak_flops = 0; /* an unknown device */
    ts_ledger_t *l;
    cr_assert_eq(ts_ledger_create(&l, path, &c), TS_OK);
    cr_assert_eq(ts_ledger_begin(l), TS_OK);
    f.t += 2;
    cr_assert_eq(ts_ledger_step(l, 1, 10), TS_OK);
    cr_assert_eq(ts_ledger_end(l, "done"), TS_OK);
    ts_ledger_destroy(l);
    struct ts_ledger_summary s;
    cr_assert_eq(ts_ledger_summarize(path, &s), TS_OK);
    cr_expect_float_eq(s.device_seconds, 8.0, 1e-12);
    cr_expect(isnan(s.usd) && isnan(s.usd_per_1m_tokens) && isnan(s.mfu));
    cr_expect_eq(cli_count_lines(path, "\"mfu\":null"), 1);
    struct cli_result r;
    cli_run(&r, "cost %s", dir);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "no price was given"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "MFU unknown"), "%s", r.out);
    cli_run(&r, "cost --json %s", dir);
    cr_expect_not_null(strstr(r.out, "\"usd\":null"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "\"energy_j\":null"), "%s", r.out);
    cli_run(&r, "cost --sort bogus %s", dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "--sort bogus"), "%s", r.err);
    cli_rmdir(dir);
}

Test(launch_ledger, gpu_peaks_are_dense_and_unknown_is_unknown) {
    struct ts_peak p;
    ts_peak_gpu("NVIDIA H100 80GB HBM3", true, &p);
    cr_expect_str_eq(p.key, "H100 SXM");
    cr_expect_float_eq(p.flops, 989.5e12, 1.0);
    ts_peak_gpu("NVIDIA H100 PCIe", true, &p);
    cr_expect_str_eq(p.key, "H100 PCIe");
    cr_expect_float_eq(p.flops, 756.5e12, 1.0);
    ts_peak_gpu("NVIDIA A100-SXM4-80GB", false, &p);
    cr_expect_str_eq(p.key, "A100 80GB");
    cr_expect_float_eq(p.flops, 19.5e12, 1.0);
    ts_peak_gpu("NVIDIA A100-PCIE-40GB", true, &p);
    cr_expect_str_eq(p.key, "A100 40GB");
    cr_expect_float_eq(p.flops, 312e12, 1.0);
    ts_peak_gpu("NVIDIA L40S", true, &p);
    cr_expect_str_eq(p.key, "L40S");
    ts_peak_gpu("NVIDIA H200", true, &p);
    cr_expect_str_eq(p.key, "H200");
    ts_peak_gpu("NVIDIA A10", true, &p);
    cr_expect_str_eq(p.key, "A10");
    ts_peak_gpu("Tesla T4", true, &p);
    cr_expect_eq(p.flops, 0);
    cr_expect_str_eq(p.key, "");
    cr_expect_not_null(strstr(p.source, "unknown"));
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

Test(launch_ledger, cpu_peak_from_a_fake_proc_and_sys) {
    char root[256], path[1024];
    cli_tmpdir(root, sizeof(root));
    snprintf(path, sizeof(path), "mkdir -p %s/proc %s/sys/devices/system/cpu/cpu0/cpufreq", root,
             root);
    cr_assert_eq(system(path), 0);
    snprintf(path, sizeof(path), "%s/proc/cpuinfo", root);
    write_file(path, "processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu sse2 avx avx2 fma\n");
    struct ts_peak p;
    ts_peak_cpu(2, "fp32, 2 OpenMP threads, matmul: OpenBLAS 0.3.21 (SkylakeX kernels, openmp)",
                root, &p);
    cr_expect_float_eq(p.flops, 2 * 2.0e9 * 64, 1.0, "%s", p.source);
    cr_expect_not_null(strstr(p.source, "SkylakeX"), "%s", p.source);
    /* the reference BLAS: the flags say AVX2 + FMA */
    ts_peak_cpu(1, "fp32, 1 OpenMP threads, matmul: reference (blocked, OpenMP)", root, &p);
    cr_expect_float_eq(p.flops, 2.0e9 * 32, 1.0, "%s", p.source);
    /* cpufreq's max wins over a lower current clock */
    snprintf(path, sizeof(path), "%s/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", root);
    write_file(path, "3500000\n");
    ts_peak_cpu(1, "matmul: OpenBLAS 0.3.21 (Haswell kernels, openmp)", root, &p);
    cr_expect_float_eq(p.flops, 3.5e9 * 32, 1.0, "%s", p.source);
    cli_rmdir(root);
    ts_peak_cpu(1, "matmul: OpenBLAS (Haswell kernels)", "/nonexistent", &p);
    cr_expect_eq(p.flops, 0, "no clock: unknown");
}

static void cpu_info_v(struct ts_backend *be, struct ts_backend_info *out) {
    (void)be;
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "cpu");
}

Test(launch_ledger, rapl_counters_add_up_across_a_wrap) {
    char root[256], dir[512], path[1024];
    cli_tmpdir(root, sizeof(root));
    snprintf(dir, sizeof(dir), "%s/sys/class/powercap/intel-rapl:0", root);
    snprintf(path, sizeof(path), "mkdir -p %s", dir);
    cr_assert_eq(system(path), 0);
    snprintf(path, sizeof(path), "%s/max_energy_range_uj", dir);
    write_file(path, "1000000\n");
    snprintf(path, sizeof(path), "%s/energy_uj", dir);
    write_file(path, "900000\n");
    struct ts_backend be = {.name = "cpu", .info = cpu_info_v};
    struct ts_energy e;
    ts_energy_init(&e, &be, root);
    cr_assert_eq(e.num_pkg, 1, "%s", e.what);
    write_file(path, "50000\n"); /* wrapped: 100000 + 50000 uJ later */
    double j;
    cr_assert(ts_energy_read(&e, &j));
    cr_expect_float_eq(j, 0.15, 1e-12);
    cli_rmdir(root);
    ts_energy_init(&e, &be, "/nonexistent");
    cr_expect_not(ts_energy_read(&e, &j));
    cr_expect_not_null(strstr(e.what, "not measured"));
}

Test(launch_ledger, prices_flags_win_over_the_table) {
    char dir[256], path[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/p.json", dir);
    write_file(path, "{\"usd_per_kwh\": 0.2, \"usd_per_device_hour\": {\"cpu\": 0.5}}");
    struct ts_ledger_prices p;
    cr_assert_eq(ts_prices_resolve(path, -1, -1, "cpu", "flags", &p), TS_OK, "%s", ts_last_error());
    cr_expect_float_eq(p.usd_per_device_hour, 0.5, 1e-15);
    cr_expect_float_eq(p.usd_per_kwh, 0.2, 1e-15);
    cr_assert_eq(ts_prices_resolve(path, 2.49, -1, "cpu", "flags", &p), TS_OK);
    cr_expect_float_eq(p.usd_per_device_hour, 2.49, 1e-15);
    cr_expect_float_eq(p.usd_per_kwh, 0.2, 1e-15);
    cr_assert_eq(ts_prices_resolve(path, -1, -1, "H100 SXM", "flags", &p), TS_OK);
    cr_expect_lt(p.usd_per_device_hour, 0, "no row: no price");
    write_file(path, "{\"usd_per_kwh\": -3}");
    cr_expect_eq(ts_prices_resolve(path, -1, -1, "cpu", "flags", &p), TS_ERR_INVALID_ARG);
    cr_expect_not_null(strstr(ts_last_error(), "negative"), "%s", ts_last_error());
    snprintf(path, sizeof(path), "%s/missing.json", dir);
    cr_expect_eq(ts_prices_resolve(path, -1, -1, "cpu", "flags", &p), TS_ERR_INVALID_ARG);
    cli_rmdir(dir);
}
