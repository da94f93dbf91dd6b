#!/usr/bin/env bash
# Runs a Redis Cluster on this one machine: three primaries with one replica
# each, six redis-server processes with their own folders, beside (not instead
# of) the single Redis of redis.sh. It is there to test what one Redis cannot
# show: slots that change hands when a primary is lost, and acknowledged writes
# that must outlive it. Same Debian redis-server as redis.sh.
#
# Usage: deploy/local/redis-cluster.sh VERB
#   start | stop | status   the whole cluster; start starts what is not running
#                           (and creates the cluster on the very first start),
#                           then waits until every slot is served and every
#                           replica in sync; start and stop are idempotent;
#                           status exits 0 only when all six run and every
#                           slot is served (cluster_state:ok)
#   url                     prints redis+cluster://127.0.0.1:<port 1>,...,127.0.0.1:<port 6>/0
#   kill-node N             SIGKILL node N (1..6): a crash, no shutdown at all
#   start-node N            starts node N and waits until it is back in the
#                           cluster and, as a replica, in sync (a primary that
#                           was replaced comes back as its successor's replica)
#   primary-of KEY          prints the number of the node that is primary for
#                           the slot of KEY now
#   wait-ok [SECONDS]       waits until every slot is served by a live primary,
#                           as every live node sees it (default: the start
#                           timeout; 0 checks once)
#
# Environment:
#   TRACKER_REDIS_CLUSTER_PORT           node N listens at this + N - 1 and has
#                                        its cluster bus at that + 10000
#                                        (default 7001: 7001..7006)
#   TRACKER_REDIS_CLUSTER_DIR            the nodes' folders (default .run/redis-cluster)
#   TRACKER_REDIS_CLUSTER_START_TIMEOUT  seconds to wait for the cluster (default 60)
#
# Files: under the dir, a folder per node (node-N) with its redis.conf,
# redis.pid, redis.log, nodes.conf (the node's own view of the cluster, written
# by Redis) and AOF (appendonlydir/; a replica also keeps the dump.rdb of its
# last full sync); create.log has the output of the cluster's creation.
# Delete the dir (stopped) to start over with an empty cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=redis-cluster
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"

HOST=127.0.0.1
NODES=6
SLOTS=16384
FIRST_PORT="${TRACKER_REDIS_CLUSTER_PORT:-7001}"
RUN="${TRACKER_REDIS_CLUSTER_DIR:-$ROOT/.run/redis-cluster}"
START_TIMEOUT="${TRACKER_REDIS_CLUSTER_START_TIMEOUT:-60}"
for name in FIRST_PORT START_TIMEOUT; do
    [[ ${!name} =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '${!name}'"
done
# The last node's cluster bus port must exist too.
((FIRST_PORT >= 1 && FIRST_PORT + NODES - 1 + 10000 <= 65535)) ||
    die "TRACKER_REDIS_CLUSTER_PORT must be from 1 to $((65535 - 10000 - NODES + 1)), got $FIRST_PORT"
# A port in the kernel's ephemeral range may be taken at any moment by some
# process's outgoing connection, and a node that cannot bind its bus aborts.
if read -r EPHEMERAL_LOW EPHEMERAL_HIGH </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
    ((FIRST_PORT + NODES - 1 + 10000 < EPHEMERAL_LOW || FIRST_PORT > EPHEMERAL_HIGH)) ||
        die "TRACKER_REDIS_CLUSTER_PORT $FIRST_PORT puts nodes or their cluster bus (port + 10000) in the kernel's ephemeral range $EPHEMERAL_LOW-$EPHEMERAL_HIGH, where outgoing connections may hold them; take a first port below $((EPHEMERAL_LOW - 10000 - NODES + 1))"
fi
[[ $RUN == /* ]] || RUN="$PWD/$RUN"
# Where Debian's packaged service (/etc/redis/redis.conf) keeps its pid.
DEBIAN_PIDFILE=/run/redis/redis-server.pid

node_port() { printf '%s\n' $((FIRST_PORT + $1 - 1)); }
# Every node: a client that starts while one is down asks the next.
url() {
    local n nodes=()
    for ((n = 0; n < NODES; n++)); do nodes+=("$HOST:$((FIRST_PORT + n))"); done
    printf 'redis+cluster://%s/0\n' "$(IFS=,; echo "${nodes[*]}")"
}

# redis-cli to node port $1, bounded so a hung node cannot hang us.
cli() {
    local port=$1
    shift
    timeout 5 redis-cli -h "$HOST" -p "$port" "$@"
}

# The pid of node $1's redis-server, if it runs. Redis sets its process title
# to "redis-server HOST:PORT [cluster]": the address tells our nodes apart from
# each other and from redis.sh's (the space after it, 2210 from 22101).
node_pid() { pid_of "$RUN/node-$1/redis.pid" "redis-server $HOST:$(node_port "$1") "; }

# Sets NODE to the node number $1 after checking it (one number, 1..NODES).
NODE=
node_number() {
    (($# == 1)) || die "name one node, by number from 1 to $NODES"
    if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > NODES)); then
        die "expected a node number from 1 to $NODES, got '$1'"
    fi
    NODE=$1
}

LIVE=()
live_nodes() {
    local n
    LIVE=()
    for ((n = 1; n <= NODES; n++)); do
        if node_pid "$n" >/dev/null; then LIVE+=("$n"); fi
    done
}

ensure_redis_installed() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    apt_install redis-server
    # As in redis.sh: only right after our own install is a running Debian
    # service known to be a by-product of it; it would hold 6379 with /etc
    # settings where redis.sh expects to start its own.
    if [[ -s $DEBIAN_PIDFILE ]]; then
        log "stopping the redis-server service that Debian's package started on install"
        stop_debian_service redis-server "$DEBIAN_PIDFILE"
    fi
}

write_conf() {
    local dir="$RUN/node-$1" port
    port=$(node_port "$1")
    cat >"$dir/redis.conf" <<EOF
# Written by deploy/local/redis-cluster.sh on every start; edit the script, not this.
bind $HOST
port $port
protected-mode yes
daemonize yes
pidfile "$dir/redis.pid"
logfile "$dir/redis.log"
dir "$dir"

cluster-enabled yes
# Redis keeps its view of the cluster here (ids, addresses, epochs, who serves
# which slot) and reads it back on a restart; relative to dir.
cluster-config-file nodes.conf
# A node silent for 2 s is suspected, the primaries' majority then marks it
# failed and its replica takes over: every slot is served again 3.5-4.5 s
# after a SIGKILL (measured; 5-5.5 s with both cores busy), where the 15 s
# default would make each failover test wait 17 s or more. On loopback a live
# node answers a ping in well under a millisecond: 2 s of silence is a dead
# node, not a slow one.
cluster-node-timeout 2000
# By default a replica whose link to its primary has been down for longer than
# 10 x node-timeout (plus the ping period) deems its copy too old and never
# fails over, leaving the slots unserved until the old primary is back. Tests
# kill and restart nodes in any order, so here a replica may always take over
# (0: no age limit). Its data is as fresh as its last sync, which is what WAIT
# vouches for.
cluster-replica-validity-factor 0
# cluster-require-full-coverage keeps its default (yes): while any slot has no
# live primary the cluster answers CLUSTERDOWN and reports cluster_state:fail,
# so cluster_state:ok means that every slot is served (wait-ok relies on it).

# A replica that (re)joins needs a full copy, and by default its primary waits
# 5 s for more replicas to share the transfer; each primary has just one.
repl-diskless-sync-delay 0

# As redis.sh, for the same reason: an acknowledged write must survive a
# crash, so every write goes to the AOF and is fsync'ed before the reply.
appendonly yes
appendfsync always
# No RDB snapshots: the AOF is the only persistence (and six nodes forking
# snapshot copies would crowd a small machine).
save ""
# Redis's default, said so: a counted id evicted would let its duplicate count
# again, and the workers refuse a store that may evict (tracker/redis_nodes.py).
maxmemory-policy noeviction
EOF
}

# The port in node $1's nodes.conf (its own line), if it has one.
conf_port() {
    local conf="$RUN/node-$1/nodes.conf"
    [[ -s $conf ]] || return 0
    awk '$3 ~ /myself/ { split($2, a, "[:@]"); print a[2]; exit }' "$conf"
}

# redis.log is appended to across runs: on failure show only this run's part.
show_node_log() {
    local dir="$RUN/node-$1" offset
    offset=$(cat "$dir/log.offset" 2>/dev/null || echo 0)
    if [[ -s $dir/redis.log ]]; then
        printf -- '----- last lines of %s (this run) -----\n' "$dir/redis.log" >&2
        tail -c +"$((offset + 1))" "$dir/redis.log" | tail -n 40 >&2
    fi
}

# Starts those of nodes "$@" that do not run; waits until each answers PING
# (its AOF loaded), not for the cluster.
start_nodes() {
    local n port dir old todo=()
    for n in "$@"; do
        node_pid "$n" >/dev/null && continue
        port=$(node_port "$n")
        if tcp_open "$HOST" "$port"; then
            die "port $HOST:$port of node $n is taken by a process this script did not start"
        fi
        if tcp_open "$HOST" $((port + 10000)); then
            die "port $HOST:$((port + 10000)) (node $n's cluster bus) is taken by a process this script did not start"
        fi
        dir="$RUN/node-$n"
        mkdir -p "$dir"
        old=$(conf_port "$n")
        if [[ -n $old && $old != 0 && $old != "$port" ]]; then
            die "node $n's nodes.conf is for port $old, not $port (TRACKER_REDIS_CLUSTER_PORT changed?); set it back, or stop the cluster and delete ${RUN#"$ROOT"/} to start over"
        fi
        todo+=("$n")
    done
    # Only once every port is known to be free: no half-started cluster.
    for n in "${todo[@]}"; do
        dir="$RUN/node-$n"
        write_conf "$n"
        stat -c %s "$dir/redis.log" >"$dir/log.offset" 2>/dev/null || echo 0 >"$dir/log.offset"
        # A SIGKILLed node leaves its pid file; a new one must come from this start.
        rm -f "$dir/redis.pid"
        # Daemonizes: redis-server returns once it has forked; 9>&- keeps the
        # daemon from holding take_lock's lock.
        redis-server "$dir/redis.conf" 9>&- || {
            show_node_log "$n"
            die "redis-server of node $n failed to start"
        }
    done
    local deadline=$((SECONDS + START_TIMEOUT))
    for n in "${todo[@]}"; do
        port=$(node_port "$n")
        # LOADING while it reads its AOF; PONG once it serves.
        until [[ $(cli "$port" ping 2>/dev/null) == PONG ]]; do
            # No pid file: not yet written, or the daemon died before writing it
            # (e.g. a port it could not bind); a dead pid: it died since.
            if [[ -s $RUN/node-$n/redis.pid ]] && ! node_pid "$n" >/dev/null; then
                show_node_log "$n"
                die "node $n exited during startup (log above)"
            fi
            if ((SECONDS >= deadline)); then
                show_node_log "$n"
                die "node $n did not answer PING at $HOST:$port within ${START_TIMEOUT}s"
            fi
            sleep 0.1
        done
        node_pid "$n" >/dev/null || die "node $n answers but $RUN/node-$n/redis.pid has no live redis-server pid"
    done
}

# Field $2 of CLUSTER INFO from the node at port $1 (CRLF lines).
info_field() {
    cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'
}

# The slot owners as the node at port $1 sees them: a line "PORT RANGE..." per
# primary that serves slots, sorted by port. Ranges in brackets are slots
# being migrated, still served by the node they are listed after.
slot_map() {
    local nodes
    nodes=$(cli "$1" cluster nodes 2>/dev/null) || return 1
    [[ -n $nodes ]] || return 1
    awk '$3 ~ /(^|,)master(,|$)/ {
            split($2, a, "[:@]")
            ranges = ""
            for (i = 9; i <= NF; i++) if ($i !~ /^\[/) ranges = ranges " " $i
            if (ranges != "") print a[2] ranges
        }' <<<"$nodes" | sort -n
}

# The port that serves slot $1 in a slot_map on stdin.
owner_of_slot() {
    awk -v s="$1" '{
        for (i = 2; i <= NF; i++) {
            n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
            if (s >= lo && s <= hi) { print $1; exit }
        }
    }'
}

# Succeeds when every slot is served by a live primary: every live node
# reports cluster_state:ok with all slots ok (none on a failing node), all of
# them agree on who serves which slot, and each of those primaries runs. The
# last is what cluster_state cannot tell in the first seconds after a crash,
# before anyone has noticed the node is gone. Otherwise sets WHY.
WHY=
cluster_ok() {
    local n port first="" map owner ranges r total=0 live_ports=" "
    live_nodes
    if ((${#LIVE[@]} == 0)); then
        WHY="no node runs"
        return 1
    fi
    for n in "${LIVE[@]}"; do live_ports+="$(node_port "$n") "; done
    for n in "${LIVE[@]}"; do
        port=$(node_port "$n")
        if [[ $(info_field "$port" cluster_state) != ok ]]; then
            WHY="node $n reports cluster_state:$(info_field "$port" cluster_state)"
            return 1
        fi
        if [[ $(info_field "$port" cluster_slots_ok) != "$SLOTS" ]]; then
            WHY="node $n reports $(info_field "$port" cluster_slots_ok) of $SLOTS slots ok"
            return 1
        fi
        if ! map=$(slot_map "$port"); then
            WHY="node $n did not answer CLUSTER NODES"
            return 1
        fi
        if [[ -z $first ]]; then
            first=$map
        elif [[ $map != "$first" ]]; then
            WHY="nodes ${LIVE[0]} and $n disagree on which primary serves which slots"
            return 1
        fi
    done
    while read -r owner ranges; do
        [[ -n $owner ]] || continue
        if [[ $live_ports != *" $owner "* ]]; then
            WHY="the live nodes still see slots $ranges served by port $owner, which is down"
            return 1
        fi
        for r in $ranges; do
            if [[ $r == *-* ]]; then
                total=$((total + ${r#*-} - ${r%-*} + 1))
            else
                total=$((total + 1))
            fi
        done
    done <<<"$first"
    if ((total != SLOTS)); then
        WHY="$total of $SLOTS slots are served"
        return 1
    fi
}

# The whole cluster as the node at port $1 sees it: a line per node, "PORT
# primary RANGE..." or "PORT replica of PORT", sorted by port.
topology() {
    local nodes
    nodes=$(cli "$1" cluster nodes 2>/dev/null) || return 1
    [[ -n $nodes ]] || return 1
    awk '{ split($2, a, "[:@]"); port[$1] = a[2]; line[NR] = $0 }
        END {
            for (i = 1; i <= NR; i++) {
                $0 = line[i]
                if ($3 ~ /(^|,)master(,|$)/) {
                    ranges = ""
                    for (j = 9; j <= NF; j++) if ($j !~ /^\[/) ranges = ranges " " $j
                    print port[$1] " primary" ranges
                } else {
                    print port[$1] " replica of " port[$4]
                }
            }
        }' <<<"$nodes" | sort -n
}

# Succeeds when all live nodes see the same cluster: the same primaries and the
# same replica of each (the slots alone agree sooner: a replica is still taken
# for a primary without slots by some nodes for a moment after the cluster is
# created), else sets WHY.
topology_agreed() {
    local n first="" seen
    for n in "${LIVE[@]}"; do
        if ! seen=$(topology "$(node_port "$n")"); then
            WHY="node $n did not answer CLUSTER NODES"
            return 1
        fi
        if [[ -z $first ]]; then
            first=$seen
        elif [[ $seen != "$first" ]]; then
            WHY="nodes ${LIVE[0]} and $n do not see the same primaries and replicas yet"
            return 1
        fi
    done
}

# Succeeds when every live replica has its link to its primary up (the initial
# sync done), else sets WHY.
replicas_synced() {
    local n port info
    for n in "${LIVE[@]}"; do
        port=$(node_port "$n")
        info=$(cli "$port" info replication 2>/dev/null | tr -d '\r') || {
            WHY="node $n did not answer INFO"
            return 1
        }
        [[ $info == *role:slave* ]] || continue
        if [[ $info != *master_link_status:up* ]]; then
            WHY="replica node $n is not in sync with its primary yet"
            return 1
        fi
    done
}

# What start and start-node wait for: wait-ok's condition, every node seeing
# the same roles, every replica in sync.
healthy() { cluster_ok && topology_agreed && replicas_synced; }

# Runs "$@" until it succeeds; dies after $1 s with its WHY.
wait_until() {
    local timeout=$1 deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || die "not within ${timeout}s: $WHY"
        sleep 0.2
    done
}

# What node $1 is now, for messages: "primary", "replica of node M" or "down".
describe() {
    local info master
    node_pid "$1" >/dev/null || {
        echo down
        return 0
    }
    info=$(cli "$(node_port "$1")" info replication 2>/dev/null | tr -d '\r') || {
        echo "not answering"
        return 0
    }
    if [[ $info == *role:slave* ]]; then
        master=$(awk -F: '$1 == "master_port" { print $2 }' <<<"$info")
        echo "replica of node $((master - FIRST_PORT + 1))"
    else
        echo primary
    fi
}

create_cluster() {
    local n addrs=()
    for ((n = 1; n <= NODES; n++)); do addrs+=("$HOST:$(node_port "$n")"); done
    log "creating the cluster: 3 primaries, 1 replica each"
    # redis-cli assigns the slots and replicas, then waits until every node
    # knows every other one. Its output goes to create.log.
    if ! timeout "$START_TIMEOUT" redis-cli --cluster create "${addrs[@]}" \
        --cluster-replicas 1 --cluster-yes >"$RUN/create.log" 2>&1; then
        show_tail "$RUN/create.log"
        die "redis-cli --cluster create failed (nodes left running; output above)"
    fi
}

# The cluster's slots are assigned once, on the first start of fresh nodes;
# later starts find the cluster in every node's nodes.conf.
form_cluster() {
    local n port known assigned fresh=0 joined=0
    for ((n = 1; n <= NODES; n++)); do
        port=$(node_port "$n")
        known=$(info_field "$port" cluster_known_nodes)
        assigned=$(info_field "$port" cluster_slots_assigned)
        if [[ $known == 1 && $assigned == 0 ]]; then
            fresh=$((fresh + 1))
        elif [[ $known == "$NODES" ]]; then
            joined=$((joined + 1))
        fi
    done
    if ((fresh == NODES)); then
        create_cluster
    elif ((joined != NODES)); then
        die "the nodes in ${RUN#"$ROOT"/} are neither fresh nor one cluster of $NODES (a node's folder deleted, or a failed create?); stop the cluster and delete the folder to start over"
    fi
}

cmd_url() { url; }

cmd_start() {
    local t0=$SECONDS all=() n
    take_lock "$RUN"
    live_nodes
    if ((${#LIVE[@]} == NODES)) && healthy; then
        log "already running at $(url)"
        return 0
    fi
    ensure_redis_installed
    for ((n = 1; n <= NODES; n++)); do all+=("$n"); done
    start_nodes "${all[@]}"
    form_cluster
    wait_until "$START_TIMEOUT" healthy
    log "running at $(url) (ports $FIRST_PORT-$((FIRST_PORT + NODES - 1))), ready in $((SECONDS - t0))s; logs: ${RUN#"$ROOT"/}/node-N/redis.log"
}

# SHUTDOWN fsyncs the AOF and removes the pid file; SIGTERM does the same if
# the client cannot get through. All of "$@" at once, then awaited.
shutdown_nodes() {
    local n pid pids=()
    for n in "$@"; do
        pid=$(node_pid "$n") || continue
        log "stopping node $n (pid $pid)"
        cli "$(node_port "$n")" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        if ! wait_pid_exit "$pid" 30; then
            terminate_pid "$pid" 10
        fi
    done
}

cmd_stop() {
    local n replicas=() primaries=()
    take_lock "$RUN"
    live_nodes
    if ((${#LIVE[@]} == 0)); then
        log "not running"
        return 0
    fi
    # Replicas first: a replica whose primary goes away first would take over
    # (2 s later) and the next start would find the roles swapped.
    for n in "${LIVE[@]}"; do
        if [[ $(describe "$n") == replica* ]]; then replicas+=("$n"); else primaries+=("$n"); fi
    done
    shutdown_nodes "${replicas[@]}"
    shutdown_nodes "${primaries[@]}"
    log "stopped"
}

cmd_status() {
    local n rc=0 pid
    for ((n = 1; n <= NODES; n++)); do
        if pid=$(node_pid "$n"); then
            log "node $n: running (pid $pid) at $HOST:$(node_port "$n"), $(describe "$n")"
        else
            log "node $n: not running"
            rc=1
        fi
    done
    if cluster_ok; then
        log "cluster_state:ok, every slot served by a live primary, at $(url)"
    else
        log "not ok: $WHY"
        rc=1
    fi
    return "$rc"
}

cmd_kill_node() {
    local pid
    node_number "$@"
    take_lock "$RUN"
    pid=$(node_pid "$NODE") || die "node $NODE is not running"
    kill -KILL "$pid"
    wait_pid_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    log "node $NODE (pid $pid) killed (SIGKILL)"
}

cmd_start_node() {
    local t0=$SECONDS
    node_number "$@"
    take_lock "$RUN"
    [[ -s $RUN/node-$NODE/nodes.conf ]] || die "node $NODE has never been part of the cluster; run '$0 start'"
    ensure_redis_installed
    start_nodes "$NODE"
    # Until it has caught up: a primary that was replaced first claims its old
    # slots, learns they are its successor's and turns into its replica.
    wait_until "$START_TIMEOUT" healthy
    log "node $NODE back in $((SECONDS - t0))s as $(describe "$NODE")"
}

cmd_primary_of() {
    local slot n owner="" seen
    (($# == 1)) || die "usage: $0 primary-of KEY"
    live_nodes
    ((${#LIVE[@]} > 0)) || die "no node runs"
    slot=$(cli "$(node_port "${LIVE[0]}")" cluster keyslot "$1" 2>/dev/null) || true
    [[ $slot =~ ^[0-9]+$ ]] || die "node ${LIVE[0]} did not tell the slot of '$1' (got '$slot')"
    # Every live node must name the same primary, and that one must run;
    # right after a crash they may not yet (then run wait-ok first).
    for n in "${LIVE[@]}"; do
        seen=$(slot_map "$(node_port "$n")" | owner_of_slot "$slot") || true
        [[ -n $seen ]] || die "node $n sees no primary for slot $slot of '$1'"
        [[ -z $owner || $seen == "$owner" ]] ||
            die "nodes disagree on the primary for slot $slot (ports $owner and $seen); a failover under way? run wait-ok first"
        owner=$seen
    done
    n=$((owner - FIRST_PORT + 1))
    node_pid "$n" >/dev/null 2>&1 || die "slot $slot of '$1' is still served by node $n, which is down; run wait-ok first"
    printf '%s\n' "$n"
}

cmd_wait_ok() {
    local timeout=${1:-$START_TIMEOUT} t0=$SECONDS
    (($# <= 1)) || die "usage: $0 wait-ok [SECONDS]"
    [[ $timeout =~ ^[0-9]+$ ]] || die "wait-ok takes whole seconds, got '$timeout'"
    wait_until "$timeout" cluster_ok
    log "every slot served by a live primary (waited $((SECONDS - t0))s)"
}

dispatch "{start|stop|status|url|kill-node N|start-node N|primary-of KEY|wait-ok [SECONDS]}" "$@"
