/* status.c: the thread-local error message behind ts_error() and ts_last_error().
 *
 * Each thread keeps its own buffer so that concurrent failures (OpenMP workers, a comm thread)
 * never overwrite each other's messages, and no allocation happens on the error path. Keeping
 * the first error across cleanup (TS_CHECK_KEEP) saves and restores the message rather than
 * suppressing ts_error(): a cleanup call then sees its own failures (to wrap them, report them),
 * and the dropped one is still logged at debug level. */
#include "kernels/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernels/log.h"

#define MSG_LEN TS_ERROR_MSG_LEN

static _Thread_local char msg_buf[MSG_LEN];

const char *ts_last_error(void) { return msg_buf; }

const char *ts_status_name(ts_status st) {
    switch (st) {
    case TS_OK:
        return "ok";
    case TS_ERR_INVALID_ARG:
        return "invalid argument";
    case TS_ERR_IO:
        return "I/O error";
    case TS_ERR_FORMAT:
        return "format error";
    case TS_ERR_OOM:
        return "out of memory";
    case TS_ERR_UNSUPPORTED:
        return "unsupported";
    case TS_ERR_CUDA:
        return "CUDA error";
    case TS_ERR_COMM:
        return "communication error";
    case TS_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown status";
}

ts_status ts_error(ts_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg_buf, sizeof msg_buf, fmt, ap);
    va_end(ap);
    return st;
}

ts_status ts_error_wrap(ts_status st, const char *fmt, ...) {
    char old[MSG_LEN];
    memcpy(old, msg_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg_buf, sizeof msg_buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof msg_buf && old[0] != '\0')
        snprintf(msg_buf + n, sizeof msg_buf - (size_t)n, ": %s", old);
    return st;
}

void ts_error_clear(void) { msg_buf[0] = '\0'; }

void ts_error_save(struct ts_error_saved *saved) { memcpy(saved->msg, msg_buf, sizeof msg_buf); }

void ts_error_restore(const struct ts_error_saved *saved, ts_status cleanup_st, const char *file,
                      int line) {
    if (cleanup_st != TS_OK)
        TS_LOG_D("%s:%d: cleanup after an earlier error also failed (%s): %s", file, line,
                 ts_status_name(cleanup_st), msg_buf);
    memcpy(msg_buf, saved->msg, sizeof msg_buf);
}
