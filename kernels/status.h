/* status.h: the error model every Tessera module shares.
 *
 * Every fallible function returns a ts_status and, on failure, leaves a message in a
 * thread-local buffer saying what failed, where, and what to do (ts_last_error()). Bad input
 * is an error with a message, never an assert: asserts guard internal invariants only. */
#ifndef TS_STATUS_H
#define TS_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ts_status {
    TS_OK = 0,
    TS_ERR_INVALID_ARG, /* a caller passed something meaningless (a shape, a flag value) */
    TS_ERR_IO,          /* the operating system refused: open, read, write, mmap */
    TS_ERR_FORMAT,      /* a file's contents are not what its format promises */
    TS_ERR_OOM,         /* an allocation failed */
    TS_ERR_UNSUPPORTED, /* valid, but this build or backend cannot do it */
    TS_ERR_CUDA,        /* the CUDA runtime, cuBLAS or a kernel failed */
    TS_ERR_COMM,        /* a collective or a peer failed */
    TS_ERR_INTERNAL,    /* a broken invariant inside Tessera: a bug */
} ts_status;

#define TS_MUST_CHECK __attribute__((warn_unused_result))
#define TS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* The message of the most recent failure on this thread ("" when none). Owned by the thread;
 * valid until the next ts_error() on the same thread. */
const char *ts_last_error(void);

/* A short stable name for a status ("invalid argument", "I/O error", ...). */
const char *ts_status_name(ts_status st);

/* Records a formatted message for this thread and returns st, so a failure reads
 *     return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));  */
ts_status ts_error(ts_status st, const char *fmt, ...) TS_PRINTF(2, 3);

/* Prefixes the current message with context ("loading shard x: <old message>") and returns st. */
ts_status ts_error_wrap(ts_status st, const char *fmt, ...) TS_PRINTF(2, 3);

void ts_error_clear(void);

/* The capacity of the thread-local message, its terminating NUL included. */
#define TS_ERROR_MSG_LEN 1024

/* A copy of this thread's message, taken before a cleanup call and put back after it, so that
 * the first failure is the one reported (TS_CHECK_KEEP does both). Caller-owned storage: the
 * copy lives on the caller's stack and nests to any depth. */
struct ts_error_saved {
    char msg[TS_ERROR_MSG_LEN];
};

void ts_error_save(struct ts_error_saved *saved);
/* Puts the saved message back. If the cleanup call in between failed (cleanup_st != TS_OK),
 * its own message is first logged at debug level with file:line, so a second failure is never
 * lost without a trace (and never mistaken for the first). */
void ts_error_restore(const struct ts_error_saved *saved, ts_status cleanup_st, const char *file,
                      int line);

/* Return early on failure: TS_CHECK(ts_op_gelu_forward(be, &out, &in)); */
#define TS_CHECK(expr)                                                                             \
    do {                                                                                           \
        ts_status ts_check_st_ = (expr);                                                           \
        if (ts_check_st_ != TS_OK)                                                                 \
            return ts_check_st_;                                                                   \
    } while (0)

/* Jump to a cleanup label on failure, keeping the status in `st`. */
#define TS_CHECK_GOTO(expr, st, label)                                                             \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if ((st) != TS_OK)                                                                         \
            goto label;                                                                            \
    } while (0)

/* Keep the first error across cleanup (NCCL's NCCLCHECKIGNORE, keeping the first failure):
 * runs `call` whatever `st` holds. While st is TS_OK, st takes the call's status, and its
 * message is the current one. Once st has failed, the call still runs but neither st nor the
 * thread-local message changes: a failure of the call is logged at debug level and dropped.
 *     st = agree(comm, st);           // the collective every rank must join
 *     TS_CHECK_KEEP(st, ckpt_rm_rf(tmp));
 *     return st;                      // and ts_last_error() still says what failed first
 * Also the first failure of a loop that must visit everything (verify every file). */
#define TS_CHECK_KEEP(st, call)                                                                    \
    do {                                                                                           \
        if ((st) == TS_OK) {                                                                       \
            (st) = (call);                                                                         \
        } else {                                                                                   \
            struct ts_error_saved ts_keep_saved_;                                                  \
            ts_error_save(&ts_keep_saved_);                                                        \
            const ts_status ts_keep_st_ = (call);                                                  \
            ts_error_restore(&ts_keep_saved_, ts_keep_st_, __FILE__, __LINE__);                    \
        }                                                                                          \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
