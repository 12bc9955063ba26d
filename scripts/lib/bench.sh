# scripts/lib/bench.sh — what the bench scripts (bench-wrk, bench-load,
# bench-conns, ab-node) share; sourced, never run. The script sets
# BENCH_NAME (its log lines' prefix), STOP_TIMEOUT (seconds from SIGTERM to
# SIGKILL) and READY_TIMEOUT (seconds a server gets to answer) first.

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# stop_pid PID: SIGTERM, SIGKILL if it outlives STOP_TIMEOUT, then reaped.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# free_port: a loopback TCP port nobody listens on right now.
free_port() {
    local port i used
    used=$(ss -ltnH 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}')
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + RANDOM % 3000))
        grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
    done
    die "no free port found"
}

# wait_ready URL EXPECTED_STATUS LOGFILE [PID]: polls until URL answers
# EXPECTED_STATUS; dies (LOGFILE's tail on stderr) when PID, if given,
# exits first or after READY_TIMEOUT.
wait_ready() {
    local url=$1 want=$2 logf=$3 pid=${4:-} code='' i
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logf" >&2 || true
            die "server exited before it was ready ($url)"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        [[ $code == "$want" ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$logf" >&2 || true
    die "server not ready after ${READY_TIMEOUT}s ($url last answered '$code')"
}
