#!/usr/bin/env bash
# slurm_local.sh start|stop|status: a one-node Slurm cluster on this machine, for the tests of
# srun and sbatch. Installs slurm-wlm and munge when missing (as root), writes its configuration
# and state under ${TS_SLURM_DIR:-/tmp/tessera-slurm}, starts munged, slurmctld and slurmd by hand
# (no systemd here), and stops them by PID. Prints the SLURM_CONF to export.
set -euo pipefail
dir=${TS_SLURM_DIR:-/tmp/tessera-slurm}
conf="$dir/slurm.conf"
cpus=${TS_SLURM_CPUS:-4}

need_packages() {
  local missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "slurm_local: install ${missing[*]} (needs root)" >&2; exit 2; }
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

write_conf() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  local host
  host=$(hostname -s)
  cat >"$conf" <<CONF
ClusterName=tessera
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmdParameters=config_overrides
ReturnToService=2
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  need_packages
  write_conf
  if ! [ -S /run/munge/munge.socket.2 ] || ! pgrep -x munged >/dev/null; then
    install -d -o munge -g munge /run/munge
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey -c 2>/dev/null || /usr/sbin/create-munge-key -f; }
    runuser -u munge -- /usr/sbin/munged
  fi
  export SLURM_CONF="$conf"
  /usr/sbin/slurmctld -f "$conf"
  /usr/sbin/slurmd -f "$conf"
  for _ in $(seq 50); do
    if sinfo -h -o '%T' 2>/dev/null | grep -q idle; then
      echo "export SLURM_CONF=$conf"
      return 0
    fi
    sleep 0.2
  done
  echo "slurm_local: the node did not become idle; see $dir/log" >&2
  return 1
}

stop() {
  export SLURM_CONF="$conf"
  for f in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  if [ -f /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF="$conf" sinfo ;;
  *) echo "usage: slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
