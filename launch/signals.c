/* signals.c: the stop-request handlers (signals.h). A handler does one thing, set a flag: the
 * decision to checkpoint and stop is the coordinator's, at a step boundary, for every rank. */
#include "launch/signals.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>

static volatile sig_atomic_t first_signal;
static bool installed;
static struct sigaction saved[3];
static const int handled[3] = {SIGTERM, SIGUSR1, SIGINT};

static void on_signal(int sig) {
    if (first_signal == 0)
        first_signal = sig;
}

void ts_signals_install(void) {
    if (installed)
        return;
    for (int i = 0; i < 3; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        /* SA_RESTART: a signal must not fail a write or a read in flight; after one SIGINT the
         * next gets the default action */
        sa.sa_flags = SA_RESTART | (handled[i] == SIGINT ? (int)SA_RESETHAND : 0);
        sigaction(handled[i], &sa, &saved[i]);
    }
    installed = true;
}

void ts_signals_restore(void) {
    if (!installed)
        return;
    for (int i = 0; i < 3; i++)
        sigaction(handled[i], &saved[i], NULL);
    installed = false;
}

int ts_signals_pending(void) { return first_signal; }
