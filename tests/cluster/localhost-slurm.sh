#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to try profiles/slurm and to test it.
#
#   sudo tests/cluster/localhost-slurm.sh start DIR   # munged, slurmctld, slurmd; state in DIR
#   export SLURM_CONF=DIR/slurm.conf                  # (printed by start)
#   snakemake --profile profiles/slurm --slurm-status-command squeue --slurm-no-account \
#     --config 'cluster={fit: cap}' ...                # a laptop's node is smaller than the profile's requests
#   sudo tests/cluster/localhost-slurm.sh stop DIR    # cancels its jobs, stops its daemons by PID
#
# Needs root and Debian's packages: apt-get install slurmctld slurmd slurm-client munge.
# Without systemd or cgroups: linuxproc process tracking, no task plugin. There is no
# accounting database (slurmdbd): jobs are checked with squeue (MinJobAge keeps finished
# jobs visible for an hour) and every finished job is written to DIR/jobs-completed.txt (jobcomp/filetxt).
# The node is declared as this machine really is (`slurmd -C`: its CPUs and memory, no GPU),
# like the small cluster a user may have. LOCALHOST_SLURM_GPUS=1 adds one GPU as a generic
# resource with no device behind it, only to check that a `gres` request reaches SLURM.
# The plugin's job step drops SLURM_CONF before calling srun inside a job, so srun reads
# /etc/slurm/slurm.conf: start links it to DIR/slurm.conf (only if no slurm.conf is there)
# and stop removes that link.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$(realpath -m "$2")
etc_conf=/etc/slurm/slurm.conf

starting=0
fail() {
  echo "localhost-slurm: $*" >&2
  ((starting)) && stop
  exit 1
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what did not come up within the time allowed; see the logs in $dir/log"
    sleep 0.5
  done
}

stop() {
  # Reverse order of start; each daemon by the PID it wrote, and only if that PID is still the
  # daemon we started (its command name), never by name.
  local name pidfile pid
  # Jobs still running (e.g. Snakemake was killed) would outlive slurmd: cancel them first.
  if [[ -s $dir/run/slurmctld.pid ]] && SLURM_CONF=$dir/slurm.conf scontrol ping >/dev/null 2>&1; then
    SLURM_CONF=$dir/slurm.conf scancel --user="$(id -un)" >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
      [[ -z $(SLURM_CONF=$dir/slurm.conf squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  for name in slurmd slurmctld munged; do
    pidfile=$dir/run/$name.pid
    [[ -s $pidfile ]] || continue
    pid=$(<"$pidfile")
    if [[ $(ps -o comm= -p "$pid" 2>/dev/null) == "$name" ]]; then
      kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
  done
  if [[ -L $etc_conf && $(readlink "$etc_conf") == "$dir/slurm.conf" ]]; then
    rm -f "$etc_conf"
  fi
}

start() {
  [[ $(id -u) -eq 0 ]] || fail "needs root (daemons run as root and the munge user); run it with sudo"
  local tool
  for tool in munged mungekey slurmctld slurmd sinfo squeue; do
    command -v "$tool" >/dev/null || fail "$tool not found: apt-get install slurmctld slurmd slurm-client munge"
  done
  id munge >/dev/null 2>&1 || fail "no 'munge' user: reinstall the munge package"
  if [[ -e $etc_conf && ! -L $etc_conf ]]; then
    fail "$etc_conf exists: this machine already has a SLURM configuration; use that cluster instead"
  fi
  mkdir -p "$dir"/{run,log,spool/ctld,spool/d,munge}
  runuser -u munge -- test -x "$dir" || fail "$dir must be reachable by the munge user: chmod 755 it and its parent folders, or pick a folder under /tmp"
  # The node as slurmd itself measures it (CPUs, sockets, cores, RealMemory), so slurmd accepts
  # it without config_overrides and no job is scheduled on CPUs or memory that do not exist.
  # Memory is not enforced (no cgroups).
  local host node_hw gres_line="" gres_types=""
  host=$(hostname -s)
  node_hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
  [[ $node_hw == *RealMemory=* ]] || fail "slurmd -C did not describe this machine: $node_hw"
  if [[ ${LOCALHOST_SLURM_GPUS:-0} -gt 0 ]]; then
    gres_line=" Gres=gpu:$LOCALHOST_SLURM_GPUS"
    gres_types="GresTypes=gpu"
  fi

  # munge: its own key and socket under DIR, so a system munged (if any) is untouched.
  chown munge: "$dir/munge"
  chmod 755 "$dir/munge"
  [[ -s $dir/munge/munge.key ]] || mungekey -c -k "$dir/munge/munge.key"
  chown munge: "$dir/munge/munge.key"
  chmod 600 "$dir/munge/munge.key"
  local socket=$dir/munge/munge.socket
  touch "$dir/log/munged.log" && chown munge: "$dir/log/munged.log"
  runuser -u munge -- munged --socket="$socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" --force
  wait_for 10 munged test -s "$dir/munge/munged.pid"
  cp "$dir/munge/munged.pid" "$dir/run/munged.pid"

  cat > "$dir/slurm.conf" <<CONF
# Written by tests/cluster/localhost-slurm.sh: one node, no cgroups, no accounting database.
ClusterName=localhost
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# Finished jobs stay visible to squeue and scontrol for an hour: the executor checks status
# with squeue, and the test reads every job of its run back from scontrol.
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobs-completed.txt
$gres_types
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 $node_hw$gres_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  if [[ -n $gres_line ]]; then
    cat > "$dir/gres.conf" <<CONF
AutoDetect=off
NodeName=$host Name=gpu File=/dev/null Count=$LOCALHOST_SLURM_GPUS
CONF
  fi
  export SLURM_CONF=$dir/slurm.conf
  if [[ ! -e $etc_conf ]]; then
    mkdir -p "$(dirname "$etc_conf")"
    ln -s "$dir/slurm.conf" "$etc_conf"
  fi
  slurmctld -c -i -f "$dir/slurm.conf"
  wait_for 20 slurmctld scontrol ping
  slurmd -N "$host" -f "$dir/slurm.conf"
  wait_for 30 "slurmd (node $host idle)" bash -c "sinfo -h -N -o %t | grep -qx idle"
  echo "SLURM is up: export SLURM_CONF=$dir/slurm.conf   (stop: $0 stop $dir)"
}

case $action in
  start) starting=1; trap 'stop' ERR; start ;;
  stop) stop ;;
  *) usage ;;
esac
