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
#   TRACKER_CACHE_DIR              download cache (default <repo>/.cache)
#   TRACKER_PYTHON                 python with aiokafka for the readiness probe
#                                  (default .venv/bin/python, then python3);
#                                  without aiokafka Kafka's TopicCommand is used
#
# Files: jars in .cache/kafka-<version>/libs (Maven's own cache in
# .cache/m2), pid/logs/config in .run/kafka, data in .run/kafka/data.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=kafka
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"

POM="$ROOT/deploy/kafka/pom.xml"
TEMPLATE="$ROOT/deploy/kafka/server.properties"
LOG4J_CONF="$ROOT/deploy/kafka/log4j2.yaml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
[[ -n $KAFKA_VERSION ]] || die "cannot read <kafka.version> from $POM"
# Downloads live in the repo's git-ignored .cache/ unless TRACKER_CACHE_DIR
# points elsewhere (e.g. to reuse one cache across clones).
CACHE_ROOT="${TRACKER_CACHE_DIR:-$ROOT/.cache}"
CACHE="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS="$CACHE/libs"
STAMP="$CACHE/libs.complete"
M2="$CACHE_ROOT/m2"
RUN="$ROOT/.run/kafka"
DATA="$RUN/data"
PIDFILE="$RUN/kafka.pid"
OUT="$RUN/kafka.out"
SERVER_LOG="$RUN/server.log"
PROPS="$RUN/server.properties"
CLUSTER_ID_FILE="$RUN/cluster.id"
START_TIMEOUT="${TRACKER_KAFKA_START_TIMEOUT:-90}"
read -r -a HEAP_OPTS <<<"${TRACKER_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"

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

java_major() {
    local v
    v=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
    # "1.8.0_392" is Java 8; "17.0.15" and "21-ea" are 17 and 21.
    [[ $v == 1.* ]] && v=${v#1.}
    printf '%s\n' "${v%%[!0-9]*}"
}

# Missing tools are installed (Debian's default JRE is 17 on bookworm, 21 on
# trixie); a too-old java that is present is left alone, as replacing it could
# break whatever else uses it.
require_java() {
    if ! command -v java >/dev/null 2>&1; then
        apt_install default-jre-headless
        command -v java >/dev/null 2>&1 ||
            die "java not found. Kafka $KAFKA_VERSION needs Java 17 or newer: apt-get install -y default-jre-headless"
    fi
    local major
    major=$(java_major)
    if [[ -z $major ]] || ((major < 17)); then
        die "java on PATH is version '${major:-unknown}'; Kafka $KAFKA_VERSION needs Java 17 or newer (apt-get install -y default-jre-headless or openjdk-17-jre-headless, then put it first on PATH)"
    fi
}

# The jars are fetched once per pom content: the stamp holds the pom's hash,
# so editing the pom (e.g. a version bump) re-resolves, and an interrupted
# download (no stamp) is redone instead of running on a partial classpath.
ensure_libs() {
    local want
    want=$(sha256sum "$POM" | cut -d' ' -f1)
    if [[ -f $STAMP && $(<"$STAMP") == "$want" && -d $LIBS ]]; then
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1; then
        apt_install maven
        command -v mvn >/dev/null 2>&1 ||
            die "mvn not found; it is needed once to download Kafka $KAFKA_VERSION from Maven Central: apt-get install -y maven"
    fi
    log "resolving Kafka $KAFKA_VERSION jars with Maven (first run only; cache in $CACHE_ROOT)"
    local tmp="$CACHE/libs.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp" "$M2"
    if ! mvn -B -q -f "$POM" -Dmaven.repo.local="$M2" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$CACHE/mvn.log" 2>&1; then
        rm -rf "$tmp"
        show_tail "$CACHE/mvn.log"
        die "Maven could not resolve the Kafka jars (full output in ${CACHE#"$ROOT"/}/mvn.log)"
    fi
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    printf '%s\n' "$want" >"$STAMP"
}

# Kafka's own launcher script is not available (no tarball), so these are the
# relevant bits of kafka-run-class.sh.
JAVA_CMD=(
    java "${HEAP_OPTS[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$RUN"
    -cp "$LIBS/*"
)

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
    } >"$PROPS"
}

format_storage_once() {
    [[ -f $DATA/meta.properties ]] && return 0
    local cid
    if [[ -s $CLUSTER_ID_FILE ]]; then
        cid=$(<"$CLUSTER_ID_FILE")
    else
        cid=$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        [[ -n $cid ]] || die "StorageTool random-uuid printed nothing"
        printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
    fi
    log "formatting $DATA (cluster id $cid)"
    mkdir -p "$DATA"
    # --standalone: this node is the whole controller quorum (KIP-853).
    "${JAVA_CMD[@]}" kafka.tools.StorageTool format --standalone -t "$cid" -c "$PROPS" >>"$OUT" 2>&1 ||
        {
            show_tail "$OUT"
            die "storage format failed"
        }
}

# An explicit TRACKER_PYTHON is the only candidate, so the Java probe can be
# forced (e.g. TRACKER_PYTHON=none) and tested.
pick_python() {
    local py
    local -a candidates=("$ROOT/.venv/bin/python" python3)
    [[ -n ${TRACKER_PYTHON:-} ]] && candidates=("$TRACKER_PYTHON")
    for py in "${candidates[@]}"; do
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import aiokafka' >/dev/null 2>&1; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    return 1
}

# A real Kafka round trip, not just a TCP accept: the metadata answer must list
# a live broker, which KRaft only does once the broker is registered and
# unfenced, i.e. ready for producers and consumer groups.
probe_aiokafka() {
    timeout 20 "$1" - "$BOOTSTRAP" >/dev/null 2>&1 <<'PY'
import asyncio
import sys

from aiokafka import AIOKafkaClient


async def main() -> int:
    client = AIOKafkaClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    try:
        await asyncio.wait_for(client.bootstrap(), 10)
        return 0 if client.cluster.brokers() else 1
    finally:
        await client.close()


sys.exit(asyncio.run(main()))
PY
}

probe_java() {
    local cfg="$RUN/probe.properties"
    # Without these the admin client retries for a minute before giving up.
    printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=8000\n' >"$cfg"
    timeout 30 java -Xmx128m -Dlog4j2.level=ERROR -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BOOTSTRAP" --command-config "$cfg" --list >/dev/null 2>&1
}

PROBE_PY=""
probe() {
    if [[ -n $PROBE_PY ]]; then
        probe_aiokafka "$PROBE_PY"
    elif [[ -f $STAMP ]]; then
        probe_java
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
    local t0=$SECONDS pid
    take_lock "$RUN"
    PROBE_PY=$(pick_python || true)
    if pid=$(pid_of "$PIDFILE" kafka.Kafka); then
        # One broker per checkout: .run/kafka holds a single pid and data dir.
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
    format_storage_once
    : >"$OUT"
    LOG_OFFSET=$(stat -c %s "$SERVER_LOG" 2>/dev/null || echo 0)
    # setsid: the broker must outlive the shell (and process group) that
    # started it, e.g. a CI step or a terminal closed with Ctrl-C.
    # shellcheck disable=SC2016 # $$ and $1 are for the inner shell
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
        "${JAVA_CMD[@]}" kafka.Kafka "$PROPS" </dev/null >>"$OUT" 2>&1 9>&- &
    # The pid file is written by the child; give it a moment to appear.
    for _ in $(seq 50); do
        pid=$(pid_of "$PIDFILE" kafka.Kafka) && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || {
        show_tail "$OUT"
        die "Kafka did not start (no pid in $PIDFILE)"
    }
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
