#!/usr/bin/env bash
# Starts or stops tracker's own processes (collector, worker, exporter, simulator)
# in the background, logs and pid files under .run/tracker/.
#   deploy/local/tracker.sh {start|stop|status} [collector worker serve simulate]
# Settings come from TRACKER_* variables, exactly as for `tracker <command>`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVICE=tracker
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"
# shellcheck source=deploy/local/access.sh
source "$ROOT/deploy/local/access.sh"
# shellcheck source=deploy/local/demo.sh
source "$ROOT/deploy/local/demo.sh"

RUN="$ROOT/.run/tracker"
PYTHON=${TRACKER_PYTHON:-$ROOT/.venv/bin/python}
ALL=(worker collector serve simulate)

health_url() {
    case "$1" in
        collector) echo "http://127.0.0.1:${TRACKER_COLLECTOR_PORT:-8080}/healthz" ;;
        worker) echo "http://127.0.0.1:${TRACKER_WORKER_PORT:-6066}/healthz" ;;
        serve) echo "http://127.0.0.1:${TRACKER_EXPORTER_PORT:-9108}/healthz" ;;
        *) echo "" ;;
    esac
}

args_of() {
    # The simulator keeps the numbers moving at a demo's pace until stopped.
    if [[ $1 == simulate ]]; then echo "--rate ${TRACKER_SIMULATE_RATE:-300}"; fi
}

answers() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

start_one() {
    local name=$1 pid url
    url=$(health_url "$name")
    if pid=$(pid_of "$RUN/$name.pid" "tracker.cli $name"); then
        log "$name already running (pid $pid)"
        return 0
    fi
    # shellcheck disable=SC2046 # word splitting of the extra arguments is intended
    nohup "$PYTHON" -m tracker.cli "$name" $(args_of "$name") \
        >"$RUN/$name.log" 2>&1 9>&- &
    echo $! >"$RUN/$name.pid"
    [[ -z $url ]] && { log "$name started (pid $!)"; return 0; }
    local deadline=$((SECONDS + 90))
    until answers "$url"; do
        if ! kill -0 "$(<"$RUN/$name.pid")" 2>/dev/null; then
            show_tail "$RUN/$name.log"
            die "$name exited during start"
        fi
        ((SECONDS < deadline)) || { show_tail "$RUN/$name.log"; die "$name did not answer $url in 90 s"; }
        sleep 0.3
    done
    log "$name answers at ${url%/healthz} (pid $(<"$RUN/$name.pid"), log ${RUN#"$ROOT"/}/$name.log)"
}

stop_one() {
    local name=$1 pid
    if pid=$(pid_of "$RUN/$name.pid" "tracker.cli $name"); then
        terminate_pid "$pid" 60
        log "$name stopped"
    fi
    rm -f "$RUN/$name.pid"
}

main() {
    local action=${1:-}
    shift || true
    local -a names=("$@")
    ((${#names[@]})) || names=("${ALL[@]}")
    [[ -x $PYTHON ]] || die "$PYTHON not found; run 'make install' first"
    mkdir -p "$RUN"
    take_lock "$RUN"
    case "$action" in
        start)
            api_settings
            demo_settings
            demo_rules
            for n in "${names[@]}"; do start_one "$n"; done
            # The history goes through the collector and the worker just started.
            if [[ " ${names[*]} " == *" collector "* ]]; then demo_history; fi
            demo_describe
            if [[ " ${names[*]} " == *" serve "* ]]; then api_describe; fi
            ;;
        stop)
            local i
            for ((i = ${#names[@]} - 1; i >= 0; i--)); do stop_one "${names[i]}"; done
            ;;
        status)
            local n rc=0
            for n in "${names[@]}"; do
                if pid=$(pid_of "$RUN/$n.pid" "tracker.cli $n"); then log "$n running (pid $pid)"; else log "$n stopped"; rc=1; fi
            done
            return $rc
            ;;
        *) die "usage: $0 {start|stop|status} [${ALL[*]}]" ;;
    esac
}

main "$@"
