/* log.c: leveled logging to stderr with a process-wide prefix.
 *
 * A mutex keeps lines from different threads whole; each line is formatted into a local buffer
 * first so the lock is held only for one fputs. */
#include "kernels/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum ts_log_level log_level = TS_LOG_INFO;
static char log_prefix[64];

void ts_log_set_level(enum ts_log_level level) {
    pthread_mutex_lock(&log_lock);
    log_level = level;
    pthread_mutex_unlock(&log_lock);
}

enum ts_log_level ts_log_get_level(void) {
    pthread_mutex_lock(&log_lock);
    enum ts_log_level level = log_level;
    pthread_mutex_unlock(&log_lock);
    return level;
}

void ts_log_set_prefix(const char *prefix) {
    pthread_mutex_lock(&log_lock);
    snprintf(log_prefix, sizeof log_prefix, "%s", prefix ? prefix : "");
    pthread_mutex_unlock(&log_lock);
}

static const char *level_tag(enum ts_log_level level) {
    switch (level) {
    case TS_LOG_ERROR:
        return "error: ";
    case TS_LOG_WARN:
        return "warning: ";
    case TS_LOG_INFO:
        return "";
    case TS_LOG_DEBUG:
        return "debug: ";
    }
    return "";
}

void ts_log(enum ts_log_level level, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    int need_newline = n == 0 || line[n - 1] != '\n';

    pthread_mutex_lock(&log_lock);
    if (level <= log_level) {
        fprintf(stderr, "%s%s%s%s", log_prefix, level_tag(level), line, need_newline ? "\n" : "");
        fflush(stderr);
    }
    pthread_mutex_unlock(&log_lock);
}
