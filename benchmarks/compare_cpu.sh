#!/usr/bin/env bash
# compare_cpu.sh BUILD: Tessera's CPU training step and PyTorch's on the same configs, run
# alternately in one session (A B A B ...) so machine noise hits both alike; one JSON line each.
set -euo pipefail
build=${1:-build}
rounds=${ROUNDS:-2}
for r in $(seq "$rounds"); do
  "$build/benchmarks/bench_train" --config all --steps 5
  /usr/bin/python3 "$(dirname "$0")/torch_train_ref.py" --config all --steps 5
done
