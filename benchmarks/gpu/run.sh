#!/usr/bin/env bash
# run.sh [BUNDLE]: everything a GPU machine runs to check the CUDA backend, in one call of under
# eight minutes, ending with one table. BUNDLE holds tessera-gpucheck, tessera-attention-dev and
# libtessera_cuda.so
# (default: this script's own folder, i.e. build/gpu-bundle after `meson compile`, which the
# device tool carries). Steps, each under its own time limit:
#   1. every op, fp32 then bf16, against the CPU backend on fresh random inputs (the flash
#      attention pair among them), and 20 training steps of a small model against the CPU backend
#      (fp32 and bf16, each run twice on the GPU), then the same training with the materialised
#      attention (TS_ATTENTION=reference); the small op checks with the previous kernels
#      (TS_CUDA_COLSUM=legacy TS_CUDA_DWTE=scan TS_CUBLASLT_CACHE=0 TS_CUDA_VECTOR=0
#      TS_CUDA_FUSED_LN=0 TS_CUDA_DGELU=0) and the
#      tall ones (B T past 65,535) with the plain matmul kernel (TS_CUDA_GEMM=fallback);
#   2. compute-sanitizer (memcheck) over the small op checks, where the machine has it, with the
#      plain matmul kernel instead of cuBLASLt (TS_CUDA_GEMM=fallback: instrumenting cuBLASLt's
#      kernels would take most of the time budget; wrong cuBLASLt arguments show up in step 1);
#   3. the timing of GPT-2 124M training steps (bf16, batch 8, T 1024), then each op alone at
#      the step's shapes (--timing: ms, GB/s, TFLOP/s);
#   4. the attention kernels on their own (tessera-attention-dev): materialised vs flash at GPT-2
#      124M's shape, checked against the CPU and timed, plus flash at T 4096 with large logits,
#      head size 128, and fp32 at odd T.
# Logs go to $OUT (the device tool's result folder) when set, else /tmp/tessera-gpucheck.
# Limits 150 + 30 + 30 + 30 + 60 + 75 + 90 s (SIGKILL 5 s after each SIGTERM): under eight minutes.
# Exit: 0 when every step passed, else 1 (3 from the check itself means "no GPU").
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=${1:-$here}
out=${OUT:-/tmp/tessera-gpucheck}
mkdir -p "$out"
check=$bundle/tessera-gpucheck
export TS_CUDA_PLUGIN=$bundle/libtessera_cuda.so
seed=${TS_SEED:-$(date +%s)}

# cuBLASLt 13 where the plug-in's rpath (/usr/local/cuda/lib64) does not find it: the toolkit's
# other folders, then pip's nvidia-cublas wheel (the GPU image has PyTorch's CUDA libraries).
if ldd "$TS_CUDA_PLUGIN" 2>/dev/null | grep -q 'not found'; then
  lt=$(ls /usr/local/cuda*/lib64/libcublasLt.so.13 /usr/local/cuda*/targets/*/lib/libcublasLt.so.13 \
         2>/dev/null | head -1)
  [ -n "$lt" ] || lt=$(find /usr /opt -name 'libcublasLt.so.13' 2>/dev/null | head -1)
  [ -n "$lt" ] && export LD_LIBRARY_PATH="$(dirname "$lt"):${LD_LIBRARY_PATH:-}"
  echo "cuBLASLt: ${lt:-not found}"
fi

# the C runtime's OpenMP library, from the bundle where the image has none
if ldd "$check" 2>/dev/null | grep -q 'libgomp.*not found' && [ -e "$bundle/lib/libgomp.so.1" ]; then
  export LD_LIBRARY_PATH="$bundle/lib:${LD_LIBRARY_PATH:-}"
fi

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4
date -u +%Y-%m-%dT%H:%M:%SZ
ldd "$check" "$TS_CUDA_PLUGIN" | sed 's/^/  /'

status=0
echo "== 1. op checks and training (seed $seed)"
timeout -k 5 150 "$check" --ops --nccl --train --seed "$seed" 2>&1 | tee "$out/checks.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || status=1
[ "$rc" -eq 3 ] && { echo "no GPU on this machine"; exit 3; }

echo "== 1b. training with the materialised attention (TS_ATTENTION=reference)"
TS_ATTENTION=reference timeout -k 5 30 "$check" --train --seed "$seed" 2>&1 | tee "$out/train_reference.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 1c. the previous kernels, and the fallback matmul past 65,535 rows"
# each new kernel's switch back (kernels/cuda/README.md) over the small op checks, then the tall
# op checks (B T 70,000 and 270,000) with the plain matmul kernel instead of cuBLASLt
TS_CUDA_COLSUM=legacy TS_CUDA_DWTE=scan TS_CUBLASLT_CACHE=0 TS_CUDA_VECTOR=0 TS_CUDA_FUSED_LN=0 \
  TS_CUDA_DGELU=0 timeout -k 5 30 "$check" --ops --small --seed "$seed" >"$out/previous_kernels.log" 2>&1
[ $? -eq 0 ] && previous="pass" || { previous="FAIL (see previous_kernels.log)"; status=1; }
TS_CUDA_GEMM=fallback timeout -k 5 30 "$check" --ops --filter _tall --seed "$seed" \
  >"$out/fallback_tall.log" 2>&1
[ $? -eq 0 ] && tall="pass" || { tall="FAIL (see fallback_tall.log)"; status=1; }
echo "previous kernels: $previous; fallback matmul, tall: $tall"

echo "== 2. compute-sanitizer"
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$san" ]; then
  TS_CUDA_GEMM=fallback timeout -k 5 60 "$san" --tool memcheck --error-exitcode 9 "$check" --ops \
    --small --seed "$seed" >"$out/sanitizer.log" 2>&1
  src=$?
  tail -n 5 "$out/sanitizer.log"
  case $src in
    0) sanitizer="clean (memcheck, small op checks, fallback matmul)" ;;
    9) sanitizer="FAILED: memcheck found errors (see sanitizer.log)"; status=1 ;;
    124) sanitizer="inconclusive: timed out after 60 s (see sanitizer.log)" ;;
    *) if grep -qiE 'not supported|error 999' "$out/sanitizer.log"; then
         sanitizer="not available: compute-sanitizer refused this device (exit $src)"
       elif grep -q '^result: FAIL' "$out/sanitizer.log"; then
         # memcheck clean but an op check failed: the fallback matmul computes wrong values
         sanitizer="FAILED: op checks failed with the fallback matmul (see sanitizer.log)"
         status=1
       else
         sanitizer="inconclusive: exit $src, no memcheck error reported (see sanitizer.log)"
       fi ;;
  esac
else
  sanitizer="not available on this machine (no compute-sanitizer)"
fi

echo "== 3. GPT-2 124M timing: training steps, then each op alone at the step's shapes"
timeout -k 5 100 "$check" --bench --timing --bench-batch "${TS_BENCH_BATCH:-8}" 2>&1 | tee "$out/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 4. attention kernels"
dev=$bundle/tessera-attention-dev
att_fail=0
att_run() { # LIMIT ARGS...: one configuration; its JSON lines go to attention.log
  local limit=$1
  shift
  timeout -k 5 "$limit" "$dev" "$@" 2>&1 | tee -a "$out/attention.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || att_fail=1
}
: >"$out/attention.log"
att_run 40 --version all --dtype bf16 --B 8 --T 1024 --NH 12 --HS 64
att_run 20 --version flash --dtype bf16 --B 1 --T 4096 --NH 12 --HS 64 --amp 8 --repeats 5
att_run 15 --version all --dtype bf16 --B 4 --T 1024 --NH 6 --HS 128 --repeats 10
att_run 15 --version all --dtype fp32 --B 2 --T 1000 --NH 4 --HS 64 --repeats 3
[ $att_fail -eq 0 ] || status=1

echo
echo "================ tessera GPU check ================"
if grep -q '^== summary' "$out/checks.log"; then
  sed -n '/^== summary/,$p' "$out/checks.log"
else
  echo "op checks and training did not finish; last lines of checks.log:"
  grep -E '^(FAIL|ERROR)' "$out/checks.log" | head -20
  tail -n 5 "$out/checks.log"
fi
echo "previous kernels (TS_CUDA_COLSUM=legacy TS_CUDA_DWTE=scan TS_CUBLASLT_CACHE=0" \
  "TS_CUDA_VECTOR=0 TS_CUDA_FUSED_LN=0 TS_CUDA_DGELU=0), small op checks: $previous"
echo "fallback matmul (TS_CUDA_GEMM=fallback), tall op checks (B T 70,000 and 270,000): $tall"
echo "compute-sanitizer: $sanitizer"
grep -E '^GPT-2 124M|^ERROR' "$out/bench.log" || echo "GPT-2 124M timing: did not finish"
sed -n '/^== op timing/,/^$/p' "$out/bench.log"
grep -E '^(step|ERROR)' "$out/train_reference.log" | tail -n 2 | sed 's/^/training, TS_ATTENTION=reference: /'
echo "attention kernels (version dtype B T NH HS: fwd ms, bwd ms, pass):"
sed -nE 's/.*"version":"([a-z]+)".*"dtype":"([a-z0-9]+)","B":([0-9]+),"T":([0-9]+),"NH":([0-9]+),"HS":([0-9]+).*"fwd_ms":([0-9.]+),"bwd_ms":([0-9.]+).*"pass":([a-z]+).*/  \1 \2 B\3 T\4 NH\5 HS\6: \7, \8, \9/p' \
  "$out/attention.log"
grep -E '^ERROR' "$out/attention.log" || true
echo "overall: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
