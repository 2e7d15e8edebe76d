/* fake_nccl.c: stand-ins for libnccl.so.2 that NCCL's loader in the plug-in must refuse, so the
 * refusals are tested on machines without a GPU (test_plugin.c, via TS_NCCL_LIBRARY).
 * Built twice: libfake_nccl_old.so has every entry point the plug-in needs but says it is
 * 2.10.3, older than the 2.18 that ncclCommSplit needs; libfake_nccl_partial.so (FAKE_PARTIAL)
 * says 2.20.3 but lacks everything past ncclGetErrorString. No entry point but the version is
 * ever called: the loader refuses first. */
#include <stddef.h>

#ifdef FAKE_PARTIAL
#define FAKE_VERSION 22003
#else
#define FAKE_VERSION 21003
#endif
#define FAKE_ERROR 1 /* ncclUnhandledCudaError: nothing past the version may run */

int ncclGetVersion(int *version);
const char *ncclGetErrorString(int result);

int ncclGetVersion(int *version) {
    *version = FAKE_VERSION;
    return 0;
}

const char *ncclGetErrorString(int result) {
    (void)result;
    return "fake NCCL: not a real library";
}

#ifndef FAKE_PARTIAL
/* The rest of what the plug-in looks up, each failing if it were ever called. */
#define FAKE(name)                                                                                 \
    int name(void);                                                                                \
    int name(void) { return FAKE_ERROR; }
FAKE(ncclGetUniqueId)
FAKE(ncclCommInitRank)
FAKE(ncclCommSplit)
FAKE(ncclCommDestroy)
FAKE(ncclCommAbort)
FAKE(ncclCommGetAsyncError)
FAKE(ncclAllReduce)
FAKE(ncclReduceScatter)
FAKE(ncclAllGather)
FAKE(ncclReduce)
FAKE(ncclBroadcast)
FAKE(ncclGroupStart)
FAKE(ncclGroupEnd)
#endif
