/* cuda_handles.h: the CUDA handles behind a CUDA backend and its events, in C, for the plug-in's
 * own C files (comm/comm_nccl.c, built into libtessera_cuda.so). Private to the plug-in: these
 * symbols are hidden, the core never sees them. */
#ifndef TS_CUDA_HANDLES_H
#define TS_CUDA_HANDLES_H

#include <cuda_runtime_api.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* be must be a backend this plug-in created (its name is "cuda"). */
cudaStream_t ts_cuda_backend_stream(struct ts_backend *be);
int ts_cuda_backend_device(struct ts_backend *be);
/* An event created by such a backend's event_create. */
cudaEvent_t ts_cuda_event_handle(ts_event_t *ev);

#ifdef __cplusplus
}
#endif

#endif
