#!/usr/bin/env bash
# Starts, stops or checks the local services the tracker needs, in dependency
# order: Kafka, Redis, Prometheus to start; the reverse to stop.
#
# Usage: deploy/local/services.sh {start|stop|status} [kafka] [redis] [prometheus]
#   With no names, all three. Names restrict the set; the order is always the
#   dependency order above, whatever order they are given in.
# Each service reads its own TRACKER_* variables (see the individual scripts).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ALL=(kafka redis prometheus)

usage() {
    echo "usage: $0 {start|stop|status} [kafka] [redis] [prometheus]" >&2
    exit 2
}

action="${1:-}"
[[ $action == start || $action == stop || $action == status ]] || usage
shift

declare -A wanted=()
for name in "$@"; do
    case "$name" in
        kafka | redis | prometheus) wanted[$name]=1 ;;
        *)
            echo "unknown service '$name'" >&2
            usage
            ;;
    esac
done

selected=()
for name in "${ALL[@]}"; do
    if (($# == 0)) || [[ -n ${wanted[$name]:-} ]]; then
        selected+=("$name")
    fi
done

case "$action" in
    start)
        # Fail fast: a later service is no use without an earlier one.
        for name in "${selected[@]}"; do
            "$HERE/$name.sh" start
        done
        ;;
    stop)
        # Keep going on errors so one stuck service does not leave the others
        # running; report failure at the end.
        rc=0
        for ((i = ${#selected[@]} - 1; i >= 0; i--)); do
            "$HERE/${selected[i]}.sh" stop || rc=1
        done
        exit "$rc"
        ;;
    status)
        rc=0
        for name in "${selected[@]}"; do
            "$HERE/$name.sh" status || rc=1
        done
        exit "$rc"
        ;;
esac
