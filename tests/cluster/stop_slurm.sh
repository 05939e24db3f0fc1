#!/usr/bin/env bash
# stop_slurm.sh -- stop exactly the daemons that start_slurm.sh started.
#
# Reads $STATE_DIR/started ("<name> <pid>" lines written by start_slurm.sh;
# STATE_DIR = $KANLIB_SLURM_DIR or /tmp/slurm-kanlib) and stops each pid only
# if it is still a process with that name. Daemons that start_slurm.sh found
# already running (and so did not start) are left alone. Order: slurmd,
# slurmctld, munged. Idempotent: exits 0 when nothing is running.
# Installed packages, /etc/slurm/slurm.conf, logs and state are kept.
set -euo pipefail

STATE_DIR="${KANLIB_SLURM_DIR:-/tmp/slurm-kanlib}"
STARTED="$STATE_DIR/started"
TIMEOUT="${KANLIB_SLURM_STOP_TIMEOUT:-20}"

log() { echo "[stop_slurm] $*" >&2; }

if [[ ! -s "$STARTED" ]]; then
    log "nothing recorded in $STARTED; nothing to stop."
    exit 0
fi

is_ours() { # is_ours PID NAME
    [[ -n "$1" && -r "/proc/$1/comm" && "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]]
}

stop_one() { # stop_one NAME PID
    local name="$1" pid="$2" deadline
    if ! is_ours "$pid" "$name"; then
        log "$name (pid $pid) is not running."
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while is_ours "$pid" "$name"; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) did not exit after ${TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
}

for name in slurmd slurmctld munged; do
    # a name may appear more than once if start was re-run after a crash
    while read -r n pid; do
        [[ "$n" == "$name" ]] && stop_one "$n" "$pid"
    done <"$STARTED"
done

rm -f "$STARTED"
log "done."
