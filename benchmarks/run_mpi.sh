#!/usr/bin/env bash
# run_mpi.sh PROGRAM NP... -- ARGS: runs PROGRAM under mpirun once per rank count (as root, with
# the Open MPI settings of ../shared/ENVIRONMENT.md), passing ARGS; used by `make bench`.
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
prog=$1
shift
nps=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  nps+=("$1")
  shift
done
[ $# -gt 0 ] && shift
for np in "${nps[@]}"; do
  mpirun --oversubscribe -np "$np" "$prog" "$@"
done
