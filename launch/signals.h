/* signals.h: SIGTERM, SIGUSR1 and SIGINT as a request to stop at the next step boundary.
 *
 * The handlers only record the first signal in a sig_atomic_t; the number travels in this
 * rank's step record to the coordinator, which decides for every rank (checkpoint, then stop
 * with the "preempted" exit code). SIGINT's handler is installed with SA_RESETHAND, so a second
 * Ctrl-C ends the process at once (exit status 130 in a shell). */
#ifndef TS_LAUNCH_SIGNALS_H
#define TS_LAUNCH_SIGNALS_H

/* Installs the handlers (idempotent); ts_signals_restore puts the previous ones back. */
void ts_signals_install(void);
void ts_signals_restore(void);

/* The first signal received since install (0: none). Async-signal-safe to read. */
int ts_signals_pending(void);

#endif
