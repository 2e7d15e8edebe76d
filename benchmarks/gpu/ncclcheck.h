/* ncclcheck.h: the GPU check's one-rank NCCL round trip (ncclcheck.c). */
#ifndef TS_NCCLCHECK_H
#define TS_NCCLCHECK_H

#include "kernels/backend.h"

enum { TS_NCCLCHECK_PASSED = 0, TS_NCCLCHECK_FAILED = 1, TS_NCCLCHECK_SKIPPED = 2 };

/* Prints one line per collective and dtype; skipped where libnccl.so.2 is missing. */
int ts_ncclcheck_run(struct ts_backend *gpu);

#endif
