#!/usr/bin/env bash
# setup.sh: installs the Debian packages Tessera builds and tests with, only those missing.
# Run as root (or with sudo available). CUDA is not a Debian package: where nvcc exists under
# /usr/local/cuda the build compiles the CUDA code too; elsewhere it is skipped.
set -euo pipefail

packages=(
  gcc libc6-dev make meson ninja-build pkg-config   # the build
  libopenblas-dev libopenblas0-openmp               # the CPU matmul, loaded at run time
  libpcre2-dev libjson-c-dev nettle-dev             # the tokenizer: regex, JSON, sha256
  zlib1g-dev libzstd-dev                            # prepare: gzip and zstd inputs
  libcriterion-dev                                  # the test suites
  libopenmpi-dev openmpi-bin                        # data parallelism (mpirun), multirank tests
  libhdf5-dev libprotobuf-c-dev protobuf-c-compiler # checkpoints (serial HDF5, protobuf-c)
  hdf5-tools python3-h5py                           # checkpoint tests: h5dump, h5py
  python3 python3-torch python3-numpy               # the PyTorch oracle
  clang-format                                      # the format check
  clang libclang-rt-14-dev                          # the libFuzzer harnesses (tests/fuzz)
  chromium                                          # tessera report's test in a real browser
)

# node and npm run the tokenizer tests' oracle (js-tiktoken) and `tessera tokenizer fetch gpt2`.
# Debian's npm pulls in Debian's nodejs; a Node.js from elsewhere that already has npm is kept.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exec bash "$(dirname "$0")/setup_npm.sh"
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "setup: missing packages (${missing[*]}) and not root; install them or rerun as root" >&2
    exit 2
  fi
fi
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
bash "$(dirname "$0")/setup_npm.sh"
