/* status.c: the thread-local error message behind ts_error() and ts_last_error().
 *
 * Each thread keeps its own buffer so that concurrent failures (OpenMP workers, a comm thread)
 * never overwrite each other's messages, and no allocation happens on the error path. */
#include "kernels/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MSG_LEN 1024

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
