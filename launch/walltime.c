/* walltime.c: the job's time limit (walltime.h). */
#define _GNU_SOURCE /* strptime, popen */
#include "launch/walltime.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

ts_status ts_walltime_parse(const char *text, double *seconds) {
    if (text == NULL || *text == '\0')
        return ts_error(TS_ERR_INVALID_ARG, "--walltime is empty");
    if (strchr(text, ':') == NULL) {
        char *end = NULL;
        const double s = strtod(text, &end);
        if (end == text || *end != '\0' || !(s > 0) || s > 1e9)
            return ts_error(TS_ERR_INVALID_ARG,
                            "--walltime '%s' is neither HH:MM:SS nor a positive number of seconds",
                            text);
        *seconds = s;
        return TS_OK;
    }
    long days = 0, f[3] = {0, 0, 0};
    int nf = 0;
    const char *p = text;
    const char *dash = strchr(text, '-');
    if (dash != NULL) {
        char *end = NULL;
        days = strtol(text, &end, 10);
        if (end != dash || days < 0)
            goto bad;
        p = dash + 1;
    }
    while (*p) {
        if (nf == 3 || !isdigit((unsigned char)*p))
            goto bad;
        char *end = NULL;
        f[nf++] = strtol(p, &end, 10);
        p = end;
        if (*p == ':')
            p++;
        else if (*p != '\0')
            goto bad;
    }
    if (nf < 2)
        goto bad;
    /* MM:SS or HH:MM:SS */
    const double s = nf == 2 ? (double)f[0] * 60 + (double)f[1]
                             : (double)f[0] * 3600 + (double)f[1] * 60 + (double)f[2];
    *seconds = s + (double)days * 86400;
    if (*seconds > 0)
        return TS_OK;
bad:
    return ts_error(TS_ERR_INVALID_ARG,
                    "--walltime '%s' is not [D-]HH:MM:SS, MM:SS or a positive number of seconds",
                    text);
}

/* squeue's %e: "2026-12-02T16:00:00" in local time, or "N/A"/"Unknown"/"NONE". */
static double squeue_end(const char *job, char *source, size_t len) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "squeue -h -j '%s' -o %%e 2>/dev/null", job);
    for (const char *c = job; *c; c++)
        if (!isdigit((unsigned char)*c) && *c != '_')
            return -1; /* not a job id: never hand it to a shell */
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    char line[128] = {0};
    const bool got = fgets(line, sizeof(line), p) != NULL;
    pclose(p);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_isdst = -1;
    const char *end = got ? strptime(line, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (end == NULL)
        return -1;
    snprintf(source, len, "squeue (job %s ends %.19s)", job, line);
    return (double)mktime(&tm);
}

double ts_walltime_slurm_left(char *source, size_t len) {
    const char *job = getenv("SLURM_JOB_ID");
    const char *env = getenv("SLURM_JOB_END_TIME");
    double end = -1;
    if (env != NULL && *env != '\0') {
        char *e = NULL;
        const double v = strtod(env, &e);
        if (e != env && *e == '\0' && v > 0) {
            end = v;
            snprintf(source, len, "SLURM_JOB_END_TIME=%s", env);
        }
    }
    if (end < 0 && job != NULL && *job != '\0')
        end = squeue_end(job, source, len);
    if (end < 0)
        return -1;
    return end - (double)time(NULL);
}
