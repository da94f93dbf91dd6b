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
#   cut-broker N...             cuts brokers N... off the network: they run
#                               on, every packet to or from them dropped, until
#   reconnect-broker N...       lets their packets through again (both only for
#                               brokers in TRACKER_KAFKA_CLUSTER_NETNS)
#   netns-check                 exits 0 when network namespaces, veth pairs
#                               and nftables NAT work here, else says what failed
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
#   TRACKER_KAFKA_CLUSTER_DIR              the nodes' files (default .run/kafka-cluster):
#                                          with other ports, a second cluster beside
#   TRACKER_KAFKA_CLUSTER_NETNS            brokers (numbers, comma separated) that each
#                                          run in a network namespace of their own, so
#                                          that cut-broker can cut them off; give every
#                                          call the same value
#   TRACKER_CACHE_DIR, TRACKER_PYTHON      see _kafka.sh
#
# Files: under .run/kafka-cluster/ (TRACKER_KAFKA_CLUSTER_DIR), a folder per
# node (controller, broker-N) with its kafka.pid, server.properties,
# server.log, kafka.out and data/. Delete it (stopped) to start over with an
# empty cluster.
#
# A broker in a network namespace (TRACKER_KAFKA_CLUSTER_NETNS) reaches the
# host through a veth pair, and NAT at both ends keeps every address as it
# was: clients and nodes still find it at HOST:port, it finds them at theirs.
# cut-broker drops what crosses the pair, which no process can tell from a
# pulled cable: no reset, no error, packets go nowhere. Needs root, iproute2
# and nftables (installed on first use).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=kafka-cluster
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"
# shellcheck source=deploy/local/_kafka.sh
source "$ROOT/deploy/local/_kafka.sh"

TEMPLATE="$ROOT/deploy/kafka/cluster.properties"
RUN="${TRACKER_KAFKA_CLUSTER_DIR:-$ROOT/.run/kafka-cluster}"
CLUSTER_ID_FILE="$RUN/cluster.id"
HOST="${TRACKER_KAFKA_CLUSTER_HOST:-127.0.0.1}"
FIRST_PORT="${TRACKER_KAFKA_CLUSTER_PORT:-19092}"
CONTROLLER_PORT="${TRACKER_KAFKA_CLUSTER_CONTROLLER_PORT:-19090}"
BROKERS="${TRACKER_KAFKA_CLUSTER_BROKERS:-3}"
HEAP="${TRACKER_KAFKA_CLUSTER_HEAP_OPTS:--Xms64m -Xmx384m}"
START_TIMEOUT="${TRACKER_KAFKA_CLUSTER_START_TIMEOUT:-120}"
NETNS_BROKERS="${TRACKER_KAFKA_CLUSTER_NETNS:-}"
NETNS_BROKERS=" ${NETNS_BROKERS//,/ } "
for name in FIRST_PORT CONTROLLER_PORT BROKERS START_TIMEOUT; do
    [[ ${!name} =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '${!name}'"
done
((BROKERS >= 3)) || die "TRACKER_KAFKA_CLUSTER_BROKERS must be at least 3 (topics have 3 replicas), got $BROKERS"
((FIRST_PORT + BROKERS - 1 <= 65535 && CONTROLLER_PORT <= 65535)) || die "ports must be at most 65535"
((CONTROLLER_PORT < FIRST_PORT || CONTROLLER_PORT >= FIRST_PORT + BROKERS)) ||
    die "the controller port $CONTROLLER_PORT is one of the brokers' ($FIRST_PORT and up)"
for n in $NETNS_BROKERS; do
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= BROKERS)) ||
        die "TRACKER_KAFKA_CLUSTER_NETNS: expected broker numbers from 1 to $BROKERS, got '$n'"
done
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

# ---- brokers in network namespaces (TRACKER_KAFKA_CLUSTER_NETNS) ----
in_netns() { [[ $NETNS_BROKERS == *" $1 "* ]]; }

# Sets the names and addresses of broker $1's namespace, derived from its port so
# that two clusters (TRACKER_KAFKA_CLUSTER_DIR) never share one: tkc-19094, the veth
# pair's ends tkc19094h (host) and tkc19094n (namespace), 10.74.134.0/30.
NS="" VETH_HOST="" VETH_NS="" TABLE="" NET=""
netns_names() {
    local port
    port=$(broker_port "$1")
    NS="tkc-$port" VETH_HOST="tkc${port}h" VETH_NS="tkc${port}n" TABLE="tkc_$port"
    NET="10.$((port / 256 % 256)).$((port % 256))"
}

require_netns_tools() {
    ((EUID == 0)) || die "network namespaces (TRACKER_KAFKA_CLUSTER_NETNS) need root"
    [[ $HOST =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
        die "TRACKER_KAFKA_CLUSTER_NETNS needs TRACKER_KAFKA_CLUSTER_HOST as 127.x.y.z, got $HOST"
    command -v ip >/dev/null 2>&1 || apt_install iproute2
    command -v nft >/dev/null 2>&1 || apt_install nftables
}

# Removes broker $1's namespace, veth pair and NAT where they are; only while it is
# stopped (or its old NAT would send its port into an empty namespace).
remove_netns() {
    netns_names "$1"
    [[ -e /run/netns/$NS ]] || ip link show "$VETH_HOST" >/dev/null 2>&1 ||
        nft list table ip "$TABLE" >/dev/null 2>&1 || return 0
    nft delete table ip "$TABLE" 2>/dev/null || true
    ip netns delete "$NS" 2>/dev/null || true # and with it both ends of the pair
    ip link delete "$VETH_HOST" 2>/dev/null || true
}

# Makes broker $1's namespace afresh, for a broker on port $2; fails saying why.
make_netns() {
    local err
    remove_netns "$1"
    netns_names "$1"
    err=$(plumb_netns "$2" 2>&1) || {
        remove_netns "$1"
        die "no network namespace for broker $1: ${err:-(no message)}"
    }
}

# NAT sends 127.x addresses across the pair, which Linux drops as martian unless
# route_localnet says otherwise. The host's table: HOST:port ($1) is the broker;
# what the broker sends to the host's end is for HOST; cut_* hold cut-broker's
# rules. The namespace's table: HOST at any other port is the host.
plumb_netns() {
    local port=$1
    ip netns add "$NS" &&
        ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$NS" &&
        ip addr add "$NET.1/30" dev "$VETH_HOST" &&
        ip link set "$VETH_HOST" up &&
        echo 1 >"/proc/sys/net/ipv4/conf/$VETH_HOST/route_localnet" &&
        ip netns exec "$NS" sh -ec "
            ip link set lo up
            ip addr add $NET.2/30 dev $VETH_NS
            ip link set $VETH_NS up
            echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet
            echo 1 >/proc/sys/net/ipv4/conf/$VETH_NS/route_localnet" || return 1
    nft -f - <<NFT || return 1
table ip $TABLE {
    chain to_broker { type nat hook output priority -100; ip daddr $HOST tcp dport $port dnat to $NET.2; }
    chain from_broker { type nat hook prerouting priority -100; iifname "$VETH_HOST" ip daddr $NET.1 dnat to $HOST; }
    chain source { type nat hook postrouting priority 100; oifname "$VETH_HOST" ip saddr 127.0.0.0/8 masquerade; }
    chain cut_in { type filter hook input priority 0; }
    chain cut_out { type filter hook output priority 0; }
}
NFT
    ip netns exec "$NS" nft -f - <<NFT
table ip $TABLE {
    chain to_host { type nat hook output priority -100; ip daddr $HOST tcp dport != $port dnat to $NET.1; }
    chain source { type nat hook postrouting priority 100; oifname "$VETH_NS" masquerade; }
}
NFT
}

is_cut() {
    netns_names "$1"
    nft list chain ip "$TABLE" cut_in 2>/dev/null | grep -q drop
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
            if in_netns "$id"; then # alone in its namespace; HOST:port is NAT's
                printf 'listeners=PLAINTEXT://0.0.0.0:%s\n' "$port"
            else
                printf 'listeners=PLAINTEXT://%s:%s\n' "$HOST" "$port"
            fi
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
        if [[ $node != controller ]]; then
            remove_netns "$(node_id "$node")"
            if in_netns "$(node_id "$node")"; then
                require_netns_tools
                make_netns "$(node_id "$node")" "$port"
            fi
        fi
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
    local netns=()
    for node in "${todo[@]}"; do
        netns=()
        if [[ $node != controller ]] && in_netns "$(node_id "$node")"; then
            netns_names "$(node_id "$node")"
            netns=(ip netns exec "$NS") # which execs java: the pid is the JVM's
        fi
        : >"$RUN/$node/kafka.out"
        # Where this run's part of server.log (appended to across runs) begins.
        stat -c %s "$RUN/$node/server.log" >"$RUN/$node/log.offset" 2>/dev/null ||
            echo 0 >"$RUN/$node/log.offset"
        # C1 only (no C2 JIT): the four JVMs start in 8-9 s instead of 15-18 s
        # on two cores (measured); a test cluster needs no peak throughput.
        kafka_java "$HEAP -XX:TieredStopAtLevel=1" "$RUN/$node"
        spawn_daemon "$RUN/$node/kafka.pid" "$RUN/$node/kafka.out" \
            "kafka.Kafka $RUN/$node/server.properties" \
            "${netns[@]}" "${JAVA_CMD[@]}" kafka.Kafka "$RUN/$node/server.properties" >/dev/null
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
    local n
    for ((n = 1; n <= BROKERS; n++)); do remove_netns "$n"; done
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
            elif [[ $node != controller ]] && is_cut "$(node_id "$node")"; then
                log "$node: running (pid $pid) in network namespace $NS, cut off"
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

# Checks that brokers "$@" run in their namespaces; sets NODES.
netns_brokers() {
    local n
    broker_nodes "$@"
    take_lock "$RUN"
    for n in "$@"; do
        in_netns "$n" || die "broker $n is not in TRACKER_KAFKA_CLUSTER_NETNS ('${NETNS_BROKERS// /}')"
        node_pid "broker-$n" >/dev/null || die "broker-$n is not running"
        netns_names "$n"
        nft list table ip "$TABLE" >/dev/null 2>&1 ||
            die "broker-$n runs outside a network namespace (started without TRACKER_KAFKA_CLUSTER_NETNS?)"
    done
}

cmd_cut_broker() {
    local n
    netns_brokers "$@"
    for n in "$@"; do
        if ! is_cut "$n"; then
            nft add rule ip "$TABLE" cut_in iifname "$VETH_HOST" drop
            nft add rule ip "$TABLE" cut_out oifname "$VETH_HOST" drop
        fi
        log "broker-$n cut off: every packet to and from $NS is dropped"
    done
}

cmd_reconnect_broker() {
    local n
    netns_brokers "$@"
    for n in "$@"; do
        netns_names "$n"
        nft flush chain ip "$TABLE" cut_in
        nft flush chain ip "$TABLE" cut_out
        log "broker-$n reconnected"
    done
}

# Makes a namespace as a broker's, named after the first port past the brokers',
# then removes it.
cmd_netns_check() {
    local probe=$((FIRST_PORT + BROKERS))
    require_netns_tools
    make_netns "$((BROKERS + 1))" "$probe"
    remove_netns "$((BROKERS + 1))"
    log "network namespaces, veth pairs and nftables NAT work here"
}

dispatch "{start|stop|status|bootstrap|start-broker N...|stop-broker N...|kill-broker N...|pause-broker N...|resume-broker N...|cut-broker N...|reconnect-broker N...|netns-check}" "$@"
