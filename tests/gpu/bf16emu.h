/* bf16emu.h: a test backend that stores bf16 like the CUDA backend and computes with the CPU
 * backend: every bf16 tensor an op receives is widened to f32, the CPU op runs, and every bf16
 * tensor is rounded back (inputs round-trip exactly). It lets the CPU suite run the model's and
 * the GPU check's bf16 paths, which otherwise only a GPU could. */
#ifndef TS_TEST_BF16EMU_H
#define TS_TEST_BF16EMU_H

#include "kernels/backend.h"

/* Destroy with ts_backend_destroy. */
ts_status bf16emu_create(struct ts_backend **out) TS_MUST_CHECK;

#endif
