#!/usr/bin/env bash
# start_slurm.sh -- bring up a real single-node SLURM cluster on this machine
# (for the kanlib Snakemake/SLURM integration tests). Idempotent.
#
# What it does
#   1. apt-get installs, only if missing: slurmctld slurmd slurm-client munge
#      (no slurmdbd/mariadb: accounting is NOT needed -- the Snakemake SLURM
#      executor plugin is run with `--slurm-status-command squeue`, which works
#      because MinJobAge is large, see below).
#   2. writes /etc/slurm/slurm.conf (default path, so every client --
#      sbatch/squeue/sinfo/scontrol, and Snakemake -- finds it without
#      SLURM_CONF). A copy is kept in $STATE_DIR/slurm.conf.
#   3. starts the daemons directly (no systemd): munged (as user munge),
#      slurmctld, `slurmd -N localhost`.
#   4. waits until the node is idle and both `sbatch --wrap` and `srun` work.
#
# Second run: if munge, slurmctld and slurmd are already up and the node is
# usable, it prints a line and exits 0 (in well under a second).
#
# Layout (STATE_DIR, default /tmp/slurm-kanlib; override with KANLIB_SLURM_DIR):
#   $STATE_DIR/slurm.conf          copy of the generated /etc/slurm/slurm.conf
#   $STATE_DIR/log/slurmctld.log   controller log
#   $STATE_DIR/log/slurmd.log      node daemon log
#   $STATE_DIR/log/munged.log      munge daemon log
#   $STATE_DIR/state/              StateSaveLocation
#   $STATE_DIR/spool/              SlurmdSpoolDir
#   $STATE_DIR/run/*.pid           slurmctld/slurmd pid files
#   /run/munge/munged.pid          munged pid file (munge key: /etc/munge/munge.key)
#   $STATE_DIR/started             "<name> <pid>" per daemon THIS script started
#                                  (stop_slurm.sh stops exactly these)
#
# Cluster facts: ClusterName=kanlib, one node `localhost` (127.0.0.1),
# one partition `debug` (Default=YES), no accounts (AccountingStorage none;
# submit without -A, i.e. Snakemake `--slurm-no-account`), MinJobAge=3600 so
# finished jobs stay visible in squeue/scontrol for an hour.
#
# Environment knobs:
#   KANLIB_SLURM_DIR      state/log dir                 (default /tmp/slurm-kanlib)
#   KANLIB_SLURM_CPUS     CPUs advertised for the node  (default: nproc)
#   KANLIB_SLURM_MEM_MB   RealMemory of the node in MB  (default: total - max(1024, 10%))
#   KANLIB_SLURM_TIMEOUT  seconds to wait for readiness (default 60)
set -euo pipefail

STATE_DIR="${KANLIB_SLURM_DIR:-/tmp/slurm-kanlib}"
TIMEOUT="${KANLIB_SLURM_TIMEOUT:-60}"
CONF=/etc/slurm/slurm.conf
PARTITION=debug
LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
STARTED="$STATE_DIR/started"

log() { echo "[start_slurm] $*" >&2; }

show_logs() {
    local f
    for f in "$LOG_DIR/munged.log" "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        if [[ -f "$f" ]]; then
            echo "----- last lines of $f -----" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
}

die() {
    echo "[start_slurm] ERROR: $*" >&2
    echo "[start_slurm] daemon logs: $LOG_DIR/{munged,slurmctld,slurmd}.log ; config: $CONF" >&2
    show_logs
    exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
    local secs="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "timed out after ${secs}s waiting for: $what"
        fi
        sleep 0.2
    done
}

have_all_binaries() {
    command -v munged >/dev/null 2>&1 && command -v munge >/dev/null 2>&1 &&
        command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
        command -v sbatch >/dev/null 2>&1 && command -v squeue >/dev/null 2>&1 &&
        command -v srun >/dev/null 2>&1 && command -v sinfo >/dev/null 2>&1
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n1; }
node_ok() {
    local s
    s="$(node_state)"
    [[ "$s" =~ ^(idle|mixed|allocated|completing) ]]
}
node_idle() { [[ "$(node_state)" == idle* ]]; }

# pid_alive PIDFILE NAME : the pid in PIDFILE is running and its comm is NAME
pid_alive() {
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# process_running NAME : any process whose comm is exactly NAME
process_running() { pgrep -x "$1" >/dev/null 2>&1; }

record_started() { echo "$1 $2" >>"$STARTED"; }

# ---------------------------------------------------------------- fast path
if have_all_binaries && munge_ok && ctld_ok && process_running slurmd && node_ok; then
    log "SLURM already running (node localhost: $(node_state)); nothing to do."
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    die "must run as root (installs packages and starts daemons)"
fi

# ---------------------------------------------------------------- install
if ! have_all_binaries; then
    log "installing slurmctld slurmd slurm-client munge via apt-get ..."
    # Keep the packages' postinst from starting daemons themselves.
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
        >"/tmp/slurm-kanlib-apt.log" 2>&1; then
        apt-get update -q >>"/tmp/slurm-kanlib-apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
            >>"/tmp/slurm-kanlib-apt.log" 2>&1 ||
            { [[ $created_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
              tail -n 30 /tmp/slurm-kanlib-apt.log >&2
              die "apt-get install failed (full log: /tmp/slurm-kanlib-apt.log)"; }
    fi
    [[ $created_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    have_all_binaries || die "SLURM/munge binaries still missing after apt-get install"
fi

mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/state" "$STATE_DIR/spool"
chmod 755 "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"

# ---------------------------------------------------------------- munge
if ! munge_ok; then
    if process_running munged; then
        die "a munged process is running but 'munge -n | unmunge' fails (stale/foreign munged?)"
    fi
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    touch "$LOG_DIR/munged.log"
    chown munge:munge "$LOG_DIR/munged.log"
    rm -f /run/munge/munged.pid
    log "starting munged"
    runuser -u munge -- munged --log-file="$LOG_DIR/munged.log" \
        --pid-file=/run/munge/munged.pid ||
        die "munged failed to start"
    wait_for "$TIMEOUT" "munge credential round trip" munge_ok
    wait_for 5 "munged pid file" pid_alive /run/munge/munged.pid munged
    record_started munged "$(cat /run/munge/munged.pid)"
fi

# ---------------------------------------------------------------- config
cpus="${KANLIB_SLURM_CPUS:-$(nproc)}"
total_mb="$(free -m | awk '/^Mem:/{print $2}')"
reserve_mb=$((total_mb / 10))
((reserve_mb < 1024)) && reserve_mb=1024
mem_mb="${KANLIB_SLURM_MEM_MB:-$((total_mb - reserve_mb))}"
((mem_mb < 256)) && mem_mb=256

new_conf="$(mktemp)"
cat >"$new_conf" <<EOF
# Generated by tests/cluster/start_slurm.sh (kanlib) -- single-node test cluster.
ClusterName=kanlib
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
# accounting: none (use squeue for job status; MinJobAge keeps finished jobs)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
# keep finished jobs visible in squeue/scontrol for an hour
MinJobAge=3600
MaxJobCount=100000
# reject impossible requests (e.g. more CPUs than the node has) at submit
# time instead of leaving them PENDING forever (Snakemake would hang)
EnforcePartLimits=ALL
# fast scheduling / short timeouts for tests
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MessageTimeout=10
SlurmctldTimeout=120
SlurmdTimeout=300
Waittime=0
# node / partition
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

if ! ctld_ok; then
    # controller down: (re)write the config, then start it
    mkdir -p /etc/slurm
    if [[ -f "$CONF" ]] && ! grep -q 'Generated by tests/cluster/start_slurm.sh' "$CONF"; then
        cp -p "$CONF" "$CONF.kanlib-backup.$(date +%s)"
        log "backed up foreign $CONF"
    fi
    install -m 0644 "$new_conf" "$CONF"
    cp "$CONF" "$STATE_DIR/slurm.conf"
    if process_running slurmctld; then
        die "a slurmctld process is running but 'scontrol ping' does not report it UP"
    fi
    log "starting slurmctld"
    slurmctld || die "slurmctld failed to start"
    wait_for "$TIMEOUT" "slurmctld to answer 'scontrol ping'" ctld_ok
    wait_for 5 "slurmctld pid file" test -s "$RUN_DIR/slurmctld.pid"
    record_started slurmctld "$(cat "$RUN_DIR/slurmctld.pid")"
fi
rm -f "$new_conf"

# ---------------------------------------------------------------- slurmd
if pid_alive "$RUN_DIR/slurmd.pid" slurmd; then
    :
elif process_running slurmd; then
    log "a slurmd is already running (pid $(pgrep -x slurmd | head -n1)); not starting another"
else
    log "starting slurmd -N localhost"
    slurmd -N localhost || die "slurmd failed to start"
    wait_for 10 "slurmd pid file" pid_alive "$RUN_DIR/slurmd.pid" slurmd
    record_started slurmd "$(cat "$RUN_DIR/slurmd.pid")"
fi

# a node left DOWN/DRAIN from an earlier run: resume it
wait_for "$TIMEOUT" "node localhost to register" test -n "$(node_state)"
if [[ "$(node_state)" =~ ^(down|drain|drained|draining|fail) ]]; then
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
fi
deadline=$((SECONDS + TIMEOUT))
until node_idle; do
    ((SECONDS >= deadline)) && die "timed out waiting for node localhost to become idle (state: $(node_state))"
    sleep 0.2
done

# ---------------------------------------------------------------- smoke test
# 1) a batch job (what Snakemake submits)
jobid="$(sbatch --parsable -p "$PARTITION" -J kanlib-smoke -o /dev/null --wrap true)" ||
    die "sbatch --wrap true failed"
jobid="${jobid%%;*}"
deadline=$((SECONDS + TIMEOUT))
while :; do
    st="$(scontrol show job "$jobid" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n1)"
    [[ "$st" == COMPLETED ]] && break
    [[ "$st" =~ ^(FAILED|CANCELLED|NODE_FAIL|BOOT_FAIL|TIMEOUT|OUT_OF_MEMORY)$ ]] &&
        die "smoke batch job $jobid ended in state $st"
    ((SECONDS >= deadline)) && die "smoke batch job $jobid did not complete within ${TIMEOUT}s (state: ${st:-?})"
    sleep 0.2
done
# 2) an interactive step (the plugin runs `srun` inside each batch job)
timeout "$TIMEOUT" srun -N1 -p "$PARTITION" -J kanlib-smoke true ||
    die "srun -N1 true failed"

log "SLURM is up: node localhost ($cpus CPUs, ${mem_mb} MB), partition $PARTITION; logs in $LOG_DIR"
