#!/usr/bin/env bash
# Runs a single-node Kafka (KRaft, broker+controller in one JVM) for local
# development and CI, without Docker: the broker jars come from Maven Central
# (the only place Kafka is reachable from our machines) and run on plain java.
#
# Usage: deploy/local/kafka.sh {start|stop|status}
#
# Environment:
#   TRACKER_KAFKA_BOOTSTRAP        host:port to serve (default 127.0.0.1:9092);
#                                  a kafka:// prefix or a list is accepted, the
#                                  first entry is used. Controller = port + 1.
#   TRACKER_KAFKA_START_TIMEOUT    seconds to wait for the broker (default 90)
#   TRACKER_KAFKA_HEAP_OPTS        JVM heap flags (default -Xms256m -Xmx1g)
#   TRACKER_KAFKA_RUN_DIR          pid, logs, config and data (default .run/kafka):
#                                  another folder runs another broker beside it
#   TRACKER_KAFKA_PROPERTIES       a properties file appended to the broker's, whose
#                                  keys win (more listeners, TLS, SASL: see
#                                  harness/secure_kafka.py)
#   TRACKER_KAFKA_FORMAT_ARGS      more arguments of the storage format, the first
#                                  start only (--add-scram for SASL SCRAM users)
#   TRACKER_CACHE_DIR, TRACKER_PYTHON   see _kafka.sh
#
# Files: jars in .cache/kafka-<version>/libs (see _kafka.sh), pid/logs/config
# in .run/kafka, data in .run/kafka/data. deploy/local/kafka-cluster.sh runs a
# three-broker cluster beside this one.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=kafka
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"
# shellcheck source=deploy/local/_kafka.sh
source "$ROOT/deploy/local/_kafka.sh"

TEMPLATE="$ROOT/deploy/kafka/server.properties"
RUN="${TRACKER_KAFKA_RUN_DIR:-$ROOT/.run/kafka}"
DATA="$RUN/data"
PIDFILE="$RUN/kafka.pid"
OUT="$RUN/kafka.out"
SERVER_LOG="$RUN/server.log"
PROPS="$RUN/server.properties"
CLUSTER_ID_FILE="$RUN/cluster.id"
START_TIMEOUT="${TRACKER_KAFKA_START_TIMEOUT:-90}"

# Faust-style URLs (kafka://host:port) and comma lists are both in use.
BOOTSTRAP="${TRACKER_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
BOOTSTRAP="${BOOTSTRAP#kafka://}"
BOOTSTRAP="${BOOTSTRAP%%,*}"
BOOTSTRAP="${BOOTSTRAP%/}"
HOST="${BOOTSTRAP%:*}"
PORT="${BOOTSTRAP##*:}"
[[ $PORT =~ ^[0-9]+$ && $HOST != "$BOOTSTRAP" ]] ||
    die "TRACKER_KAFKA_BOOTSTRAP must look like host:port, got '${TRACKER_KAFKA_BOOTSTRAP:-}'"
CONTROLLER_PORT=$((PORT + 1))

kafka_java "${TRACKER_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}" "$RUN"

# Later keys win in a properties file, so appending is enough to move ports
# and paths without editing the checked-in template.
write_props() {
    {
        cat "$TEMPLATE"
        printf '\n# ---- appended by deploy/local/kafka.sh ----\n'
        printf 'listeners=PLAINTEXT://%s:%s,CONTROLLER://%s:%s\n' "$HOST" "$PORT" "$HOST" "$CONTROLLER_PORT"
        printf 'advertised.listeners=PLAINTEXT://%s:%s,CONTROLLER://%s:%s\n' "$HOST" "$PORT" "$HOST" "$CONTROLLER_PORT"
        printf 'controller.quorum.bootstrap.servers=%s:%s\n' "$HOST" "$CONTROLLER_PORT"
        printf 'log.dirs=%s\n' "$DATA"
        if [[ -n ${TRACKER_KAFKA_PROPERTIES:-} ]]; then
            printf '\n# ---- from %s ----\n' "$TRACKER_KAFKA_PROPERTIES"
            cat "$TRACKER_KAFKA_PROPERTIES"
        fi
    } >"$PROPS"
}

probe() {
    if [[ -n $PROBE_PY || -f $STAMP ]]; then
        live_brokers "$BOOTSTRAP" >/dev/null
    else
        # Nothing to speak Kafka with yet (foreign broker, empty cache).
        tcp_open "$HOST" "$PORT"
    fi
}

# server.log is appended to across runs: on failure show only this run's part.
LOG_OFFSET=0
show_logs() {
    show_tail "$OUT"
    if [[ -s $SERVER_LOG ]]; then
        printf -- '----- last lines of %s (this run) -----\n' "$SERVER_LOG" >&2
        tail -c +"$((LOG_OFFSET + 1))" "$SERVER_LOG" | tail -n 40 >&2
    fi
}

wait_ready() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_logs
            die "Kafka (pid $pid) exited during startup"
        fi
        if probe; then
            return 0
        fi
        sleep 1
    done
    show_logs
    die "Kafka did not answer at $BOOTSTRAP within ${START_TIMEOUT}s (pid $pid left running; logs above)"
}

cmd_start() {
    local t0=$SECONDS pid cid
    take_lock "$RUN"
    PROBE_PY=$(pick_python || true)
    if pid=$(pid_of "$PIDFILE" kafka.Kafka); then
        # One broker per run folder (.run/kafka by default): one pid, one data dir.
        if [[ $(cat "$RUN/bootstrap" 2>/dev/null) != "$BOOTSTRAP" ]]; then
            die "this checkout's Kafka (pid $pid) serves $(cat "$RUN/bootstrap" 2>/dev/null || echo '?'), not $BOOTSTRAP; run '$0 stop' first"
        fi
        # Ours is up or still coming up (e.g. a parallel start): just wait.
        wait_ready "$pid"
        log "already running (pid $pid) at $BOOTSTRAP"
        return 0
    fi
    if tcp_open "$HOST" "$PORT"; then
        log "something already answers at $BOOTSTRAP (not started by this script); using it"
        return 0
    fi
    require_local_host "$HOST"
    if tcp_open "$HOST" "$CONTROLLER_PORT"; then
        die "controller port $HOST:$CONTROLLER_PORT (broker port + 1) is taken by another process"
    fi
    require_java
    ensure_libs
    mkdir -p "$DATA"
    write_props
    printf '%s\n' "$BOOTSTRAP" >"$RUN/bootstrap"
    cid=$(cluster_id "$CLUSTER_ID_FILE")
    # --standalone: this node is the whole controller quorum (KIP-853).
    local -a format_args
    read -r -a format_args <<<"${TRACKER_KAFKA_FORMAT_ARGS:-}"
    format_storage_once "$DATA" "$PROPS" "$cid" "$OUT" --standalone "${format_args[@]}"
    : >"$OUT"
    LOG_OFFSET=$(stat -c %s "$SERVER_LOG" 2>/dev/null || echo 0)
    pid=$(spawn_daemon "$PIDFILE" "$OUT" kafka.Kafka "${JAVA_CMD[@]}" kafka.Kafka "$PROPS")
    wait_ready "$pid"
    log "started (pid $pid) at $BOOTSTRAP in $((SECONDS - t0))s; logs: ${RUN#"$ROOT"/}/{server.log,kafka.out}"
}

cmd_stop() {
    local pid
    take_lock "$RUN"
    if pid=$(pid_of "$PIDFILE" kafka.Kafka); then
        log "stopping pid $pid (controlled shutdown, up to 60s)"
        # Kafka flushes logs and writes its clean-shutdown marker on SIGTERM;
        # killing it earlier only costs a log recovery on the next start.
        terminate_pid "$pid" 60
        rm -f "$PIDFILE"
        log "stopped"
    elif tcp_open "$HOST" "$PORT"; then
        log "something answers at $BOOTSTRAP but was not started by this script; leaving it alone"
    else
        rm -f "$PIDFILE"
        log "not running"
    fi
}

cmd_status() {
    local pid
    PROBE_PY=$(pick_python || true)
    if probe; then
        if pid=$(pid_of "$PIDFILE" kafka.Kafka); then
            log "running (pid $pid) at $BOOTSTRAP"
        else
            log "answering at $BOOTSTRAP (not started by this script)"
        fi
        return 0
    fi
    if pid=$(pid_of "$PIDFILE" kafka.Kafka); then
        log "pid $pid is running but Kafka does not answer at $BOOTSTRAP (starting, or stuck: see ${RUN#"$ROOT"/}/server.log)"
    else
        log "not running"
    fi
    return 1
}

dispatch "{start|stop|status}" "$@"
