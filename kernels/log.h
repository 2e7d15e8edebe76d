/* log.h: leveled logging to stderr.
 *
 * One process-wide level and prefix. The prefix lets multi-rank runs tag lines with their rank
 * ("[rank 3] "); the level lets rank 0 log at info while other ranks log warnings only. */
#ifndef TS_LOG_H
#define TS_LOG_H

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ts_log_level {
    TS_LOG_ERROR = 0,
    TS_LOG_WARN = 1,
    TS_LOG_INFO = 2,
    TS_LOG_DEBUG = 3,
};

void ts_log_set_level(enum ts_log_level level);
enum ts_log_level ts_log_get_level(void);
/* Copies prefix (at most 63 bytes); "" removes it. */
void ts_log_set_prefix(const char *prefix);

void ts_log(enum ts_log_level level, const char *fmt, ...) TS_PRINTF(2, 3);

#define TS_LOG_E(...) ts_log(TS_LOG_ERROR, __VA_ARGS__)
#define TS_LOG_W(...) ts_log(TS_LOG_WARN, __VA_ARGS__)
#define TS_LOG_I(...) ts_log(TS_LOG_INFO, __VA_ARGS__)
#define TS_LOG_D(...) ts_log(TS_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif
