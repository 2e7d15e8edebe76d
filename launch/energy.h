/* energy.h: the job's energy counter for the ledger: the backend's (NVML on a GPU) or, on the
 * CPU, the powercap RAPL package counters where they are readable; otherwise none ("not
 * measured"). Never an estimate.
 *
 * RAPL counts a whole CPU package: every process on it, other jobs on a shared machine included;
 * the source says so. The counters wrap at max_energy_range_uj; reads are taken often enough
 * (every step) that one wrap between reads is the most there can be. */
#ifndef TS_LAUNCH_ENERGY_H
#define TS_LAUNCH_ENERGY_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"

#define TS_ENERGY_MAX_PKG 16

struct ts_energy {
    struct ts_backend *be; /* borrowed; NULL unless the backend counts */
    int num_pkg;           /* RAPL packages read */
    char pkg[TS_ENERGY_MAX_PKG][160];
    uint64_t last_uj[TS_ENERGY_MAX_PKG], range_uj[TS_ENERGY_MAX_PKG];
    double total_j; /* RAPL: accumulated since init */
    char what[160]; /* "NVML", "RAPL package counters (...)", "not measured: ..." */
};

/* Picks the counter: the backend's when it has one, else RAPL under `root` ("" for /) when the
 * backend is the CPU. The result may count nothing (ts_energy_read says false). */
void ts_energy_init(struct ts_energy *e, struct ts_backend *be, const char *root);

/* Joules since some fixed point; false when nothing is measured (or a read failed). */
bool ts_energy_read(struct ts_energy *e, double *joules);

#endif
