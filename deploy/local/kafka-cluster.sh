#!/usr/bin/env bash
# Runs a KRaft Kafka cluster on this one machine: a controller and three
# brokers, each its own JVM with its own data dir, beside (not instead of) the
# single dev broker of kafka.sh. It is there to test what one broker cannot
# show: replication, min.insync.replicas and brokers lost and back. Same jars
# and java as kafka.sh (_kafka.sh).
#
# Usage: deploy/local/kafka-cluster.sh VERB
#   start | stop | status       the whole cluster; start starts (or resumes) what
#                               is not running and waits until every broker is
#                               live; start and stop are idempotent
#   bootstrap                   prints the brokers' host:port list
#   start-broker N...           starts brokers N... (1..3) side by side, waits
#                               until they are live (registered, unfenced)
#   stop-broker N...            controlled shutdown (SIGTERM), waits for exit
#   kill-broker N...            SIGKILL: a crash, no shutdown at all
#   pause-broker N...           SIGSTOP: a broker that hangs (GC, VM stall)
#                               with its sockets open, until
#   resume-broker N...          SIGCONT lets it go on
#
# Environment:
#   TRACKER_KAFKA_CLUSTER_HOST             address of every node (default 127.0.0.1)
#   TRACKER_KAFKA_CLUSTER_PORT             broker N listens at this + N - 1
#                                          (default 19092: 19092, 19093, 19094)
#   TRACKER_KAFKA_CLUSTER_CONTROLLER_PORT  the controller's port (default 19090)
#   TRACKER_KAFKA_CLUSTER_BROKERS          number of brokers, at least 3 (default 3)
#   TRACKER_KAFKA_CLUSTER_HEAP_OPTS        JVM heap flags of each node
#                                          (default -Xms64m -Xmx384m)
#   TRACKER_KAFKA_CLUSTER_START_TIMEOUT    seconds to wait for the brokers (default 120)
#   TRACKER_CACHE_DIR, TRACKER_PYTHON      see _kafka.sh
#
# Files: under .run/kafka-cluster/, a folder per node (controller, broker-N)
# with its kafka.pid, server.properties, server.log, kafka.out and data/.
# Delete .run/kafka-cluster (stopped) to start over with an empty cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=kafka-cluster
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"
# shellcheck source=deploy/local/_kafka.sh
source "$ROOT/deploy/local/_kafka.sh"

TEMPLATE="$ROOT/deploy/kafka/cluster.properties"
RUN="$ROOT/.run/kafka-cluster"
CLUSTER_ID_FILE="$RUN/cluster.id"
HOST="${TRACKER_KAFKA_CLUSTER_HOST:-127.0.0.1}"
FIRST_PORT="${TRACKER_KAFKA_CLUSTER_PORT:-19092}"
CONTROLLER_PORT="${TRACKER_KAFKA_CLUSTER_CONTROLLER_PORT:-19090}"
BROKERS="${TRACKER_KAFKA_CLUSTER_BROKERS:-3}"
HEAP="${TRACKER_KAFKA_CLUSTER_HEAP_OPTS:--Xms64m -Xmx384m}"
START_TIMEOUT="${TRACKER_KAFKA_CLUSTER_START_TIMEOUT:-120}"
for name in FIRST_PORT CONTROLLER_PORT BROKERS START_TIMEOUT; do
    [[ ${!name} =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '${!name}'"
done
((BROKERS >= 3)) || die "TRACKER_KAFKA_CLUSTER_BROKERS must be at least 3 (topics have 3 replicas), got $BROKERS"
((FIRST_PORT + BROKERS - 1 <= 65535 && CONTROLLER_PORT <= 65535)) || die "ports must be at most 65535"
((CONTROLLER_PORT < FIRST_PORT || CONTROLLER_PORT >= FIRST_PORT + BROKERS)) ||
    die "the controller port $CONTROLLER_PORT is one of the brokers' ($FIRST_PORT and up)"
# The controller is node 0, broker N is node N.
CONTROLLER_ID=0

broker_port() { printf '%s\n' $((FIRST_PORT + $1 - 1)); }

bootstrap() {
    local n list=()
    for ((n = 1; n <= BROKERS; n++)); do
        list+=("$HOST:$(broker_port "$n")")
    done
    local IFS=,
    printf '%s\n' "${list[*]}"
}

# A node is "controller" or "broker-N"; these give its id, port and files.
node_id() { if [[ $1 == controller ]]; then echo "$CONTROLLER_ID"; else echo "${1#broker-}"; fi; }
node_port() { if [[ $1 == controller ]]; then echo "$CONTROLLER_PORT"; else broker_port "${1#broker-}"; fi; }
nodes() {
    local n
    echo controller
    for ((n = 1; n <= BROKERS; n++)); do echo "broker-$n"; done
}

# The pid of a node's JVM, if that JVM runs; the properties path in the
# command line tells our nodes apart from each other and from kafka.sh's.
node_pid() { pid_of "$RUN/$1/kafka.pid" "kafka.Kafka $RUN/$1/server.properties"; }

# Sets NODES to the nodes of broker numbers "$@" (at least one).
NODES=()
broker_nodes() {
    local n
    (($# > 0)) || die "name the brokers, by number from 1 to $BROKERS"
    NODES=()
    for n in "$@"; do
        if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > BROKERS)); then
            die "expected a broker number from 1 to $BROKERS, got '$n'"
        fi
        NODES+=("broker-$n")
    done
}

# Later keys win in a properties file, so the template's shared settings come
# first and the node's own keys after them. The voters are static (one
# controller, known in advance), so no node needs formatting flags.
# Topic defaults are the controller's to apply: Kafka 4 warns when a broker
# has them (and will ignore them there from 5.0), so brokers get none.
CONTROLLER_ONLY='num\.partitions|default\.replication\.factor'
write_props() {
    local node=$1 id port
    id=$(node_id "$node")
    port=$(node_port "$node")
    {
        if [[ $node == controller ]]; then
            cat "$TEMPLATE"
        else
            grep -Ev "^($CONTROLLER_ONLY)=" "$TEMPLATE"
        fi
        printf '\n# ---- appended by deploy/local/kafka-cluster.sh ----\n'
        printf 'node.id=%s\n' "$id"
        printf 'controller.quorum.voters=%s@%s:%s\n' "$CONTROLLER_ID" "$HOST" "$CONTROLLER_PORT"
        printf 'log.dirs=%s\n' "$RUN/$node/data"
        if [[ $node == controller ]]; then
            printf 'process.roles=controller\n'
            printf 'listeners=CONTROLLER://%s:%s\n' "$HOST" "$port"
        else
            printf 'process.roles=broker\n'
            printf 'listeners=PLAINTEXT://%s:%s\n' "$HOST" "$port"
            printf 'advertised.listeners=PLAINTEXT://%s:%s\n' "$HOST" "$port"
            printf 'inter.broker.listener.name=PLAINTEXT\n'
        fi
    } >"$RUN/$node/server.properties"
}

# Starts those of nodes "$@" that do not run (resumes those paused); waits
# for none of them. New nodes are formatted side by side first: each format
# is a JVM of its own, a few seconds on a busy machine.
start_nodes() {
    local node pid port cid todo=() formats=()
    for node in "$@"; do
        if pid=$(node_pid "$node"); then
            if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == T* ]]; then
                kill -CONT "$pid"
                log "$node (pid $pid) was paused; resumed it"
            fi
            continue
        fi
        port=$(node_port "$node")
        if tcp_open "$HOST" "$port"; then
            die "port $HOST:$port of the $node is taken by a process this script did not start"
        fi
        mkdir -p "$RUN/$node/data"
        write_props "$node"
        todo+=("$node")
    done
    ((${#todo[@]} > 0)) || return 0
    cid=$(cluster_id "$CLUSTER_ID_FILE")
    for node in "${todo[@]}"; do
        format_storage_once "$RUN/$node/data" "$RUN/$node/server.properties" "$cid" "$RUN/$node/kafka.out" &
        formats+=($!)
    done
    for pid in "${formats[@]}"; do
        wait "$pid" || die "a node's storage could not be formatted (see above)"
    done
    for node in "${todo[@]}"; do
        : >"$RUN/$node/kafka.out"
        # Where this run's part of server.log (appended to across runs) begins.
        stat -c %s "$RUN/$node/server.log" >"$RUN/$node/log.offset" 2>/dev/null ||
            echo 0 >"$RUN/$node/log.offset"
        # C1 only (no C2 JIT): the four JVMs start in 8-9 s instead of 15-18 s
        # on two cores (measured); a test cluster needs no peak throughput.
        kafka_java "$HEAP -XX:TieredStopAtLevel=1" "$RUN/$node"
        spawn_daemon "$RUN/$node/kafka.pid" "$RUN/$node/kafka.out" \
            "kafka.Kafka $RUN/$node/server.properties" \
            "${JAVA_CMD[@]}" kafka.Kafka "$RUN/$node/server.properties" >/dev/null
    done
}

# server.log is appended to across runs: on failure show only this run's part.
show_node_logs() {
    local dir="$RUN/$1" offset
    offset=$(cat "$dir/log.offset" 2>/dev/null || echo 0)
    show_tail "$dir/kafka.out"
    if [[ -s $dir/server.log ]]; then
        printf -- '----- last lines of %s (this run) -----\n' "$dir/server.log" >&2
        tail -c +"$((offset + 1))" "$dir/server.log" | tail -n 40 >&2
    fi
}

# Waits until broker $1 lists brokers $2... as live (registered and unfenced);
# fails fast when one of the nodes exits.
wait_live() {
    local ask=$1 deadline=$((SECONDS + START_TIMEOUT)) live node id missing
    shift
    while ((SECONDS < deadline)); do
        for node in $(nodes); do
            if [[ -s $RUN/$node/kafka.pid ]] && ! node_pid "$node" >/dev/null &&
                [[ $node == controller || " $* " == *" $(node_id "$node") "* ]]; then
                show_node_logs "$node"
                die "the $node exited during startup (logs above)"
            fi
        done
        live=" $(live_brokers "$HOST:$(broker_port "$ask")" | tr '\n' ' ') " || live=" "
        missing=()
        for id in "$@"; do
            [[ $live == *" $id "* ]] || missing+=("$id")
        done
        ((${#missing[@]} == 0)) && return 0
        sleep 0.5
    done
    for id in "${missing[@]}"; do show_node_logs "broker-$id"; done
    die "broker(s) ${missing[*]} not live within ${START_TIMEOUT}s (left running; logs above)"
}

prepare() {
    take_lock "$RUN"
    require_local_host "$HOST"
    require_java
    ensure_libs
    PROBE_PY=$(pick_python || true)
}

cmd_bootstrap() { bootstrap; }

cmd_start() {
    local t0=$SECONDS all=() ids=() n
    prepare
    mapfile -t all < <(nodes)
    start_nodes "${all[@]}"
    for ((n = 1; n <= BROKERS; n++)); do ids+=("$n"); done
    wait_live 1 "${ids[@]}"
    log "running at $(bootstrap) (controller $HOST:$CONTROLLER_PORT), ready in $((SECONDS - t0))s; logs: ${RUN#"$ROOT"/}/<node>/{server.log,kafka.out}"
}

# SIGCONT first: a paused JVM would not act on SIGTERM. All are asked at once,
# then awaited, so brokers shut down side by side.
stop_nodes() {
    local node pid pids=()
    for node in "$@"; do
        pid=$(node_pid "$node") || continue
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        log "stopping the $node (pid $pid)"
    done
    # Kafka flushes its logs and writes its clean-shutdown marker on SIGTERM;
    # a broker also hands its partitions' leadership over first.
    for pid in "${pids[@]}"; do
        terminate_pid "$pid" 60
    done
    for node in "$@"; do rm -f "$RUN/$node/kafka.pid"; done
}

cmd_stop() {
    local brokers=()
    take_lock "$RUN"
    mapfile -t brokers < <(nodes | grep '^broker-')
    # Brokers first: their controlled shutdown needs the controller.
    stop_nodes "${brokers[@]}"
    stop_nodes controller
    log "stopped"
}

cmd_status() {
    local node pid rc=0 live
    PROBE_PY=$(pick_python || true)
    for node in $(nodes); do
        if pid=$(node_pid "$node"); then
            if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == T* ]]; then
                log "$node: paused (pid $pid)"
                rc=1
            else
                log "$node: running (pid $pid) at $HOST:$(node_port "$node")"
            fi
        else
            log "$node: not running"
            rc=1
        fi
    done
    if live=$(live_brokers "$(bootstrap)" | tr '\n' ' '); then
        log "live brokers: ${live% }"
    else
        log "no broker answers at $(bootstrap)"
        rc=1
    fi
    return "$rc"
}

cmd_start_broker() {
    local t0=$SECONDS
    broker_nodes "$@"
    prepare
    node_pid controller >/dev/null || die "the controller is not running; run '$0 start'"
    start_nodes "${NODES[@]}"
    wait_live "$1" "$@"
    log "${NODES[*]} live in $((SECONDS - t0))s"
}

cmd_stop_broker() {
    broker_nodes "$@"
    take_lock "$RUN"
    stop_nodes "${NODES[@]}"
    log "${NODES[*]} stopped"
}

# Sends signal $1 to the JVM of each of NODES and logs that it was $2.
SIGNALLED=()
signal_brokers() {
    local node pid
    take_lock "$RUN"
    SIGNALLED=()
    for node in "${NODES[@]}"; do
        pid=$(node_pid "$node") || die "$node is not running"
        kill "-$1" "$pid"
        SIGNALLED+=("$pid")
        log "$node (pid $pid) $2"
    done
}

cmd_kill_broker() {
    local pid
    broker_nodes "$@"
    signal_brokers KILL "killed (SIGKILL)"
    for pid in "${SIGNALLED[@]}"; do
        wait_pid_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    done
}

cmd_pause_broker() {
    broker_nodes "$@"
    signal_brokers STOP "paused (SIGSTOP)"
}

cmd_resume_broker() {
    broker_nodes "$@"
    signal_brokers CONT "resumed (SIGCONT)"
}

dispatch "{start|stop|status|bootstrap|start-broker N...|stop-broker N...|kill-broker N...|pause-broker N...|resume-broker N...}" "$@"
