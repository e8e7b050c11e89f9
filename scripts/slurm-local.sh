#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for `advrl sweep --executor slurm` and its test:
# installs Debian's slurm-wlm and munge if missing (root, apt), writes slurm.conf (one node with
# this machine's CPUs and memory, partition `debug`), starts munged, slurmctld and slurmd, and
# waits until the node is idle. Idempotent: a cluster already up is left as it is.
#   bash scripts/slurm-local.sh          # start (or check) the cluster
#   bash scripts/slurm-local.sh --stop   # stop the daemons it started
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-local          # controller state, daemon logs and pid files
NODE=$(hostname -s)

stop() {
  for daemon in slurmd slurmctld; do
    if [ -f "$STATE/$daemon.pid" ]; then
      kill "$(cat "$STATE/$daemon.pid")" 2>/dev/null || true
      rm -f "$STATE/$daemon.pid"
    fi
  done
  if [ -f "$STATE/munged.started" ] && [ -f /run/munge/munged.pid ]; then  # only a munged this script started
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    rm -f "$STATE/munged.started"
  fi
  echo "slurm-local: stopped"
}

if [ "${1:-}" = "--stop" ]; then
  stop
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm-local: installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if sinfo -h -p debug -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc|comp)'; then  # up, maybe running jobs
  echo "slurm-local: already up ($(sinfo -h -p debug -o '%D node, %c CPUs, state %t'))"
  exit 0
fi

mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" /run/munge /var/log/munge /var/lib/munge /etc/munge
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))  # leave the OS some memory
cat > "$CONF_DIR/slurm.conf" <<EOF
# written by advrl's scripts/slurm-local.sh: a single-node cluster for tests and small sweeps
ClusterName=advrl-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (default 120): keep it short
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=60
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
chmod 0700 /etc/munge
if ! munge -n >/dev/null 2>&1; then
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c munged
  else
    munged --force
  fi
  touch "$STATE/munged.started"
fi

pgrep -F "$STATE/slurmctld.pid" >/dev/null 2>&1 || slurmctld
pgrep -F "$STATE/slurmd.pid" >/dev/null 2>&1 || slurmd

for _ in $(seq 60); do
  state=$(sinfo -h -p debug -o %t 2>/dev/null || true)
  case "$state" in
    idle) echo "slurm-local: up ($(sinfo -h -p debug -o '%D node, %c CPUs'), partition debug)"; exit 0 ;;
    down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "slurm-local: the node did not become idle in 60 s; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
exit 1
