/* resume.c: where a run starts and what a checkpoint fixes about it (resume.h). */
#define _XOPEN_SOURCE 700
#include "launch/resume.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/common.h"
#include "trainer/state.h"
#include "trainer/weights.h"

ts_status ts_launch_find_start(const char *out, bool resume, const char *resume_from,
                               const char *init_from, bool overwrite, struct ts_start *start) {
    memset(start, 0, sizeof(*start));
    const int given = (resume ? 1 : 0) + (resume_from ? 1 : 0) + (init_from ? 1 : 0);
    if (given > 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--resume, --resume-from and --init-from exclude each other");
    const bool existing = ts_ckpt_exists(out);
    if (resume_from != NULL || init_from != NULL) {
        const char *p = resume_from ? resume_from : init_from;
        const char *flag = resume_from ? "--resume-from" : "--init-from";
        const ts_status st = ts_ckpt_resolve(p, start->path, sizeof(start->path));
        if (st != TS_OK)
            return ts_error_wrap(st, "%s", flag);
        /* the new run would save, prune and cut metrics.jsonl in a run that is not its own */
        if (existing && !overwrite)
            return ts_error(TS_ERR_INVALID_ARG,
                            "%s already holds checkpoints; %s would train over them: choose "
                            "another --out, pass --resume to continue that run, or --overwrite "
                            "to replace them (the checkpoint %s is kept)",
                            out, flag, start->path);
        /* a fine-tuned run counts its steps from 0: its saves would replace the source's */
        char real_out[PATH_MAX];
        const size_t n = realpath(out, real_out) != NULL ? strlen(real_out) : 0;
        if (init_from != NULL && n > 0 && strncmp(start->path, real_out, n) == 0 &&
            start->path[n] == '/')
            return ts_error(TS_ERR_INVALID_ARG,
                            "--init-from %s lies inside --out %s, whose new checkpoints would "
                            "replace it: choose another --out (or copy the checkpoint out first)",
                            start->path, out);
        start->kind = resume_from ? TS_START_RESUME : TS_START_INIT;
        return TS_OK;
    }
    if (resume) {
        if (!existing) {
            TS_LOG_I("resume: no checkpoint in %s yet; starting fresh", out);
            start->kind = TS_START_FRESH;
            return TS_OK;
        }
        start->kind = TS_START_RESUME;
        char note[1200];
        TS_CHECK(
            ts_ckpt_resolve_verified(out, start->path, sizeof(start->path), note, sizeof(note)));
        if (note[0] != '\0')
            TS_LOG_W("resume: %s", note);
        return TS_OK;
    }
    if (existing && !overwrite)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s already holds checkpoints; pass --resume to continue it, "
                        "--overwrite to start over, or choose another --out",
                        out);
    start->kind = TS_START_FRESH;
    return TS_OK;
}

/* The "step" of a metrics line, or -1. */
static int64_t line_step(const char *line) {
    const char *at = strstr(line, "\"step\":");
    return at ? strtoll(at + 7, NULL, 10) : -1;
}

ts_status ts_launch_trim_metrics(const char *path, int64_t step) {
    FILE *in = fopen(path, "r");
    if (in == NULL)
        return errno == ENOENT ? TS_OK
                               : ts_error(TS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    char tmp[TS_PATH_MAX];
    TS_CHECK(ts_path_fmt(tmp, sizeof(tmp), "%s.tmp", path));
    FILE *out = fopen(tmp, "w");
    if (out == NULL) {
        fclose(in);
        return ts_error(TS_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    int dropped = 0;
    while (getline(&line, &cap, in) > 0) {
        if (line_step(line) <= step)
            fputs(line, out);
        else
            dropped++;
    }
    free(line);
    fclose(in);
    if (fclose(out) != 0 || rename(tmp, path) != 0)
        return ts_error(TS_ERR_IO, "cannot rewrite %s: %s", path, strerror(errno));
    if (dropped > 0)
        TS_LOG_I("resume: dropped %d metrics line(s) past step %" PRId64 " from %s", dropped, step,
                 path);
    return TS_OK;
}

ts_status ts_launch_clear_checkpoints(const char *ckpt_dir, const char *keep) {
    DIR *d = opendir(ckpt_dir);
    if (d == NULL)
        return errno == ENOENT
                   ? TS_OK
                   : ts_error(TS_ERR_IO, "cannot list %s: %s", ckpt_dir, strerror(errno));
    char keep_real[PATH_MAX] = "";
    if (keep != NULL && realpath(keep, keep_real) == NULL)
        keep_real[0] = '\0';
    ts_status st = TS_OK;
    struct dirent *e;
    int kept = 0;
    while (st == TS_OK && (e = readdir(d)) != NULL) {
        char path[TS_PATH_MAX], real[PATH_MAX];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        st = ts_path_join(path, sizeof(path), ckpt_dir, e->d_name);
        if (st != TS_OK)
            break;
        struct stat sb;
        const bool is_link = lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
        /* the checkpoint being read stays, and so does everything inside it */
        if (!is_link && keep_real[0] != '\0' && realpath(path, real) != NULL &&
            strncmp(keep_real, real, strlen(real)) == 0 &&
            (keep_real[strlen(real)] == '\0' || keep_real[strlen(real)] == '/')) {
            kept++;
            continue;
        }
        st = ts_launch_remove_tree(path);
    }
    closedir(d);
    if (st == TS_OK && kept > 0)
        TS_LOG_I("--overwrite: removed the checkpoints of %s but %s, which this run starts from",
                 ckpt_dir, keep);
    return st;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

ts_status ts_launch_remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return TS_OK;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return ts_error(TS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return TS_OK;
}

ts_status ts_launch_weights_open(struct ts_launch_weights *w, const char *spec,
                                 struct ts_gpt_config *cfg) {
    memset(w, 0, sizeof(*w));
    if (ts_ckpt_exists(spec)) {
        TS_CHECK(ts_ckpt_open(&w->ck, spec));
        TS_CHECK(ts_path_fmt(w->path, sizeof(w->path), "%s", ts_ckpt_path(w->ck)));
        return ts_gpt_config_from_checkpoint(w->ck, cfg);
    }
    TS_CHECK(ts_launch_model_path(spec, w->path, sizeof(w->path)));
    if (!ts_launch_file_exists(w->path))
        return ts_error(TS_ERR_IO,
                        "%s holds no checkpoint (a run directory with checkpoints/, or a "
                        "checkpoint directory) and no model.bin",
                        spec);
    return ts_weights_read_config(w->path, cfg);
}

ts_status ts_launch_weights_load(struct ts_launch_weights *w, ts_gpt_t *gpt) {
    TS_CHECK(w->ck != NULL ? ts_gpt_load_checkpoint(gpt, w->ck) : ts_weights_load(gpt, w->path));
    TS_LOG_I("weights from %s", w->path);
    return TS_OK;
}

void ts_launch_weights_close(struct ts_launch_weights *w) {
    ts_ckpt_close(w->ck);
    w->ck = NULL;
}
