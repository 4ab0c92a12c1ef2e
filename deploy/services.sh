#!/usr/bin/env bash
# deploy/services.sh — run Clicktrack's own processes (redirector, counter, api, webhook relay,
# lag exporter) in the background.
#
# Usage: deploy/services.sh up|down|status
# Logs: .stack/logs/<name>.log (JSON lines). Pids: .stack/run/<name>.pid.
# `up` waits until each answers /readyz; `down` sends SIGTERM (the services drain and commit),
# then SIGKILL after 30 s, and only to the pids it recorded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
PY=${PYTHON:-$ROOT/.venv/bin/python}
RUN=$STACK_DIR/run
LOGS=$STACK_DIR/logs
SERVICES=(counter redirector api relay ops)
cd "$ROOT"

msg() { printf 'services: %s\n' "$*"; }

port_of() {
    case $1 in
        redirector) echo "${REDIRECTOR_PORT:-8080}" ;;
        counter) echo "${COUNTER_PORT:-8081}" ;;
        api) echo "${API_PORT:-8082}" ;;
        relay) echo "${RELAY_PORT:-8086}" ;;
        ops) echo "${LAG_PORT:-8083}" ;;
    esac
}

# is_ours NAME PID: the pid is alive and runs our module (never signal a recycled pid).
is_ours() {
    [ -r "/proc/$2/cmdline" ] && tr '\0' ' ' <"/proc/$2/cmdline" | grep -q "services\.$1"
}

start_one() {
    local name=$1 pidfile=$RUN/$1.pid port
    port=$(port_of "$name")
    if [ -f "$pidfile" ] && is_ours "$name" "$(cat "$pidfile")"; then
        msg "$name already running (pid $(cat "$pidfile"))"
        return
    fi
    # No job control in a script: the child is not a group leader, so setsid execs in place and
    # $! is the service's own pid.
    setsid nohup "$PY" -m "services.$name" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 60); do
        if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            msg "$name ready on 127.0.0.1:$port (pid $(cat "$pidfile"), log $LOGS/$name.log)"
            return
        fi
        if ! is_ours "$name" "$(cat "$pidfile")"; then
            break
        fi
        sleep 0.5
    done
    echo "services: FAILED: $name did not become ready on port $port; last lines of $LOGS/$name.log:" >&2
    tail -n 30 "$LOGS/$name.log" >&2 || true
    exit 1
}

stop_one() {
    local name=$1 pidfile=$RUN/$1.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if is_ours "$name" "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            is_ours "$name" "$pid" || break
            sleep 0.5
        done
        if is_ours "$name" "$pid"; then
            msg "$name did not stop in 30 s, killing it"
            kill -KILL "$pid"
        fi
        msg "$name stopped"
    fi
    rm -f "$pidfile"
}

case ${1:-} in
    up)
        mkdir -p "$RUN" "$LOGS"
        # The development keys every service needs outside production (kept if present): run
        # on its own, without `make up`, this script must not start services that crash-loop
        # for a missing key.
        if [[ ${CLICKTRACK_ENV:-} != production ]]; then
            (cd "$ROOT" && "$PY" -m shared.settings --dev-keys >/dev/null)
        fi
        for s in "${SERVICES[@]}"; do start_one "$s"; done
        ;;
    down)
        # In reverse start order: the redirector drains into Kafka before the counter stops.
        for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_one "${SERVICES[i]}"; done
        ;;
    status)
        rc=0
        for s in "${SERVICES[@]}"; do
            if [ -f "$RUN/$s.pid" ] && is_ours "$s" "$(cat "$RUN/$s.pid")"; then
                msg "$s running (pid $(cat "$RUN/$s.pid"), port $(port_of "$s"))"
            else
                msg "$s down"
                rc=3
            fi
        done
        exit $rc
        ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
