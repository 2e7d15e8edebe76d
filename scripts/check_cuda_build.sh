#!/usr/bin/env bash
# check_cuda_build.sh BUILD: what CI checks of the CUDA build wherever nvcc exists:
#   - `tessera` links no CUDA, cuBLAS, NCCL or NVML library (the plug-in is dlopen'ed);
#   - `tessera-gpucheck` links nothing beyond the C/C++ runtimes, libm and libgomp (by name: no
#     MPI, HDF5, protobuf-c, BLAS, PCRE2, json-c or Nettle), and holds no code of data/ or
#     checkpoint/ (it is built from kernels, the model core and the single-process comm);
#   - `tessera-attention-dev` links the same libraries only;
#   - the bundle the GPU machine needs (build/gpu-bundle) holds the check, the attention bench, the
#     plug-in and run.sh and is under the device tool's 64 MiB;
#   - the GPU check and the attention bench, run here, load the plug-in and report "no GPU" with
#     exit code 3 (a machine with a GPU runs the checks instead and must pass them);
#   - the Criterion cuda suite skips (or passes, on a GPU).
set -euo pipefail
build=${1:-build}
fail() { echo "check_cuda_build: $*" >&2; exit 1; }

plugin=$build/kernels/cuda/libtessera_cuda.so
check=$build/benchmarks/gpu/tessera-gpucheck
bundle=$build/gpu-bundle
[ -f "$plugin" ] || fail "$plugin was not built (is nvcc on PATH?)"
[ -x "$check" ] || fail "$check was not built"

if ldd "$build/launch/tessera" | grep -Ei 'cuda|cublas|nccl|nvidia-ml|nvrtc'; then
  fail "tessera links a CUDA library (above); it must only dlopen the plug-in"
fi
if ldd "$check" | grep -Ei 'mpi|hdf5|protobuf|blas|lapack|pcre|json|nettle|hogweed|criterion'; then
  fail "tessera-gpucheck links a library above; it must run on a bare GPU machine"
fi
if nm "$check" | grep -E ' [TtDdBbRr] ts_(data|tokenizer|tok|shard|loader|sha256|ckpt|comm_mpi)_'; then
  fail "tessera-gpucheck holds data/, checkpoint/ or MPI code (above)"
fi
allowed='^(linux-vdso\.so|/?lib64/ld-linux|ld-linux|libc\.so|libm\.so|libgomp\.so|libstdc\+\+\.so|libgcc_s\.so|libdl\.so|libpthread\.so|librt\.so)'
for exe in "$check" "$build/benchmarks/gpu/tessera-attention-dev"; do
  while read -r lib _; do
    [ -z "$lib" ] && continue
    echo "$(basename "$lib")" | grep -Eq "$allowed" || fail "$(basename "$exe") links $lib"
  done < <(ldd "$exe")
done

for f in tessera-gpucheck tessera-attention-dev libtessera_cuda.so run.sh; do
  [ -f "$bundle/$f" ] || fail "$bundle lacks $f"
done
size=$(du -sb "$bundle" | cut -f1)
[ "$size" -lt $((64 * 1024 * 1024)) ] || fail "$bundle is $size bytes, over 64 MiB"
echo "check_cuda_build: bundle $bundle is $((size / 1024)) KiB: $(ls "$bundle" | tr '\n' ' ')"

set +e
out=$("$bundle/tessera-gpucheck" --ops --small 2>&1)
rc=$?
set -e
echo "$out" | tail -n 3
if [ "$rc" -eq 3 ]; then
  echo "check_cuda_build: no GPU here, reported as such (exit 3)"
elif [ "$rc" -ne 0 ]; then
  fail "tessera-gpucheck exited $rc (0: passed on a GPU, 3: no GPU expected here)"
fi
set +e
out=$("$bundle/tessera-attention-dev" --T 64 --B 1 2>&1)
rc=$?
set -e
if [ "$rc" -eq 3 ]; then
  echo "check_cuda_build: tessera-attention-dev: no GPU here, reported as such (exit 3)"
elif [ "$rc" -ne 0 ]; then
  echo "$out" | tail -n 3
  fail "tessera-attention-dev exited $rc (0: passed on a GPU, 3: no GPU expected here)"
fi
bash scripts/run_tests.sh "$build" cuda | tail -n 1
