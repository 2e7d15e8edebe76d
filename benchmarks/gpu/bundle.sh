#!/usr/bin/env bash
# bundle.sh STAMP DIR FILE...: copies the GPU check, the CUDA plug-in and run.sh into DIR (the
# folder the device tool carries), with this machine's libgomp in DIR/lib for a GPU image that
# lacks it (run.sh uses it only then), and fails when DIR would exceed the tool's 64 MiB.
set -euo pipefail
stamp=$1
dir=$2
shift 2
rm -rf "$dir"
mkdir -p "$dir"
cp "$@" "$dir"/
gomp=$(readlink -f "$(${CC:-cc} -print-file-name=libgomp.so.1)" 2>/dev/null || true)
if [ -f "$gomp" ]; then
  mkdir -p "$dir/lib"
  cp "$gomp" "$dir/lib/libgomp.so.1"
fi
size=$(du -sb "$dir" | cut -f1)
limit=$((64 * 1024 * 1024))
if [ "$size" -ge "$limit" ]; then
  echo "bundle.sh: $dir is $size bytes, over the 64 MiB the device tool carries" >&2
  exit 1
fi
echo "$size" >"$stamp"
