/* fuzz_report.c: a run directory's four files, cut from the input at "\n--8<--\n" (ledger.jsonl,
 * metrics.jsonl, config.json, exit.json), read by `tessera report` (lenient, then --strict) and
 * by `tessera plan --calibrate`: every line read, skipped with a warning or refused with a
 * message; a page written when the run reads. An exit code other than 0, 1 (refused) or 2
 * (usage), or a 0 without a whole page, is a finding. The commands print to stdout and stderr:
 * limits.sh runs this harness with -close_fd_mask=3 (libFuzzer and the sanitizers keep theirs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "launch/commands.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const files[] = {"run/ledger.jsonl", "run/metrics.jsonl", "run/config.json",
                                    "run/exit.json"};

/* The page ends as write_page ends it, after the rename (no .tmp left behind). */
static void expect_page(const char *out) {
    FILE *f = fopen(out, "rb");
    fuzz_expect(f != NULL, "report exited 0 without a page");
    char tail[16] = {0};
    fseek(f, -8, SEEK_END);
    const size_t n = fread(tail, 1, 8, f);
    fclose(f);
    fuzz_expect(n == 8 && strstr(tail, "</html>") != NULL, "the page is not whole");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char run[1024], out[1024];
    fuzz_path(run, sizeof(run), "run");
    mkdir(run, 0700);
    const uint8_t *rest = data;
    size_t left = size;
    for (int i = 0; i < 4; i++) {
        const uint8_t *a, *b;
        size_t an, bn;
        fuzz_split(rest, left, "\n--8<--\n", &a, &an, &b, &bn);
        char path[1024];
        fuzz_path(path, sizeof(path), files[i]);
        if (an == 0 && i > 0)
            remove(path); /* a missing file is a case too */
        else
            fuzz_write(files[i], a, an);
        rest = b;
        left = bn;
    }
    fuzz_path(out, sizeof(out), "report.html");
    remove(out);
    char *report[] = {"tessera", "report", run, "--out", out, "--max-points", "50", NULL};
    int code = ts_cmd_report(7, report);
    fuzz_expect(code == 0 || code == 1 || code == 2, "report: an unexpected exit code");
    if (code == 0)
        expect_page(out);
    char *strict[] = {"tessera", "report", run, "--out", out, "--strict", NULL};
    code = ts_cmd_report(6, strict);
    fuzz_expect(code == 0 || code == 1 || code == 2, "report --strict: an unexpected exit code");

    char *plan[] = {"tessera",
                    "plan",
                    "--model",
                    "2,4,64,64",
                    "--device",
                    "cpu",
                    "--gpus",
                    "1",
                    "--seq-len",
                    "64",
                    "--global-batch",
                    "4",
                    "--json",
                    "--peak-tflops",
                    "1",
                    "--calibrate",
                    run,
                    NULL};
    code = ts_cmd_plan(17, plan);
    fuzz_expect(code == 0 || code == 1 || code == 2, "plan --calibrate: an unexpected exit code");
    return 0;
}
