#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM tests (tests/test_slurm.py).
#
#   bash .ci/slurm.sh start     install slurm-wlm + munge if needed, write the config, start
#                               munged, slurmctld and slurmd, wait until the node is idle
#   bash .ci/slurm.sh status    print sinfo; exit 0 when the node is up, 1 otherwise
#   bash .ci/slurm.sh stop      stop the three daemons (by their pid files)
#
# Idempotent: `start` on a running cluster only checks it. Runs as root. Partition "debug"
# (the default), one node named after `hostname -s` with every CPU and 90 % of the memory.
# Environment: SLURM_CI_DIR (state, logs and pid files; default /var/tmp/bids_hrf-slurm).
set -euo pipefail

STATE="${SLURM_CI_DIR:-/var/tmp/bids_hrf-slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
NODE="$(hostname -s)"
MUNGE_PID=/run/munge/munged.pid

log() { printf 'slurm.sh: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

retry() {
    "$@" && return 0
    log "retrying once in 10 s: $*"
    sleep 10
    "$@"
}

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
            && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge with apt"
    export DEBIAN_FRONTEND=noninteractive
    retry timeout 300 apt-get update -qq
    retry timeout 300 apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc --all)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$CONF_DIR" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
    cat > "$CONF.new" <<EOF
# Written by .ci/slurm.sh: one node, no accounting, no cgroups (CI containers).
ClusterName=bidshrf-ci
SlurmctldHost=${NODE}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
StateSaveLocation=${STATE}/spool/ctld
SlurmdSpoolDir=${STATE}/spool/d
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=60
KillWait=5
NodeName=${NODE} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f "$CONF" ]] && cmp -s "$CONF" "$CONF.new"; then
        rm -f "$CONF.new"
    else
        mv "$CONF.new" "$CONF"
    fi
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if pid_alive "$MUNGE_PID"; then return; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge >/dev/null || die "munge round trip"
}

start() {
    install
    if [[ "$(node_state)" == idle* || "$(node_state)" == mix* ]]; then
        log "already running: node $NODE $(node_state)"
        return
    fi
    write_conf
    start_munge
    if ! pid_alive "$STATE/slurmctld.pid"; then
        slurmctld || die "slurmctld did not start (log: $STATE/log/slurmctld.log)"
    fi
    if ! pid_alive "$STATE/slurmd.pid"; then
        slurmd || die "slurmd did not start (log: $STATE/log/slurmd.log)"
    fi
    local i state=""
    for ((i = 0; i < 60; i++)); do
        state=$(node_state)
        case "$state" in
            idle* | mix* | alloc*) break ;;
            down* | drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    case "$state" in
        idle* | mix* | alloc*) log "node $NODE $state after ${i} s (partition debug)" ;;
        *) tail -5 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
           die "node $NODE is '${state:-not known}' after 60 s" ;;
    esac
}

stop_pidfile() {
    local name="$1" file="$2" i
    if ! pid_alive "$file"; then return; fi
    local pid
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $name ($pid)"; return; }
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
    log "killed $name ($pid)"
}

stop() {
    stop_pidfile slurmd "$STATE/slurmd.pid"
    stop_pidfile slurmctld "$STATE/slurmctld.pid"
    stop_pidfile munged "$MUNGE_PID"
}

status() {
    sinfo 2>/dev/null || { log "not running"; return 1; }
    [[ -n "$(node_state)" ]]
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    *) die "usage: bash .ci/slurm.sh [start|stop|status|restart]" ;;
esac
