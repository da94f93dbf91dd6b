#!/usr/bin/env bash
# Runs the Redis that holds the stream processor's state, using Debian's
# redis-server (installed on first use) with this repo's persistence settings.
#
# Usage: deploy/local/redis.sh {start|stop|status}
#
# Environment:
#   TRACKER_REDIS_URL            redis://[user:pass@]host[:port][/db]
#                                (default redis://127.0.0.1:6379/0)
#   TRACKER_REDIS_START_TIMEOUT  seconds to wait for PING (default 30)
#
# Files: config, pid, log and data (AOF) in .run/redis.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=redis
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"

RUN="$ROOT/.run/redis"
CONF="$RUN/redis.conf"
PIDFILE="$RUN/redis.pid"
LOGFILE="$RUN/redis.log"
START_TIMEOUT="${TRACKER_REDIS_START_TIMEOUT:-30}"
# Where Debian's packaged service (/etc/redis/redis.conf) keeps its pid.
DEBIAN_PIDFILE=/run/redis/redis-server.pid

URL="${TRACKER_REDIS_URL:-redis://127.0.0.1:6379/0}"
hostport="${URL#*://}"
hostport="${hostport%%/*}"
hostport="${hostport##*@}"
if [[ $hostport == *:* ]]; then
    HOST="${hostport%:*}"
    PORT="${hostport##*:}"
else
    HOST="$hostport"
    PORT=6379
fi
[[ -n $HOST && $PORT =~ ^[0-9]+$ ]] || die "cannot parse host/port from TRACKER_REDIS_URL='$URL'"

# Speaks RESP over /dev/tcp so the check also works before redis-cli exists.
# NOAUTH still proves a Redis is there (the URL carries the password).
redis_ping() {
    local reply
    # shellcheck disable=SC2016 # $1/$2 are for the inner shell
    reply=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && IFS= read -r line <&3 && printf "%s" "$line"' \
        _ "$HOST" "$PORT" 2>/dev/null) || return 1
    [[ $reply == +PONG* || $reply == -NOAUTH* ]]
}

ensure_redis_installed() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    apt_install redis-server
    # Only now, right after our own install, is a running Debian service
    # known to be a by-product of that install (and not something a person
    # set up on purpose): it runs with /etc/redis settings (RDB snapshots, no
    # fsync-per-write), so stop it and run ours.
    if [[ -s $DEBIAN_PIDFILE ]] || redis_ping; then
        log "stopping the redis-server service that Debian's package started on install"
        stop_debian_service redis-server "$DEBIAN_PIDFILE"
    fi
}

write_conf() {
    cat >"$CONF" <<EOF
# Written by deploy/local/redis.sh on every start; edit the script, not this.
bind $HOST
port $PORT
protected-mode yes
daemonize yes
pidfile "$PIDFILE"
logfile "$LOGFILE"
dir "$RUN"

# The stream processor commits its Kafka offsets only after Redis has
# acknowledged the state writes; its exactly-once guarantee therefore needs
# Redis to never lose an acknowledged write, even on a crash or restart:
# every write goes to the AOF and is fsync'ed before the reply.
appendonly yes
appendfsync always
# No RDB snapshots: the AOF is the only persistence (and snapshots would fork
# a second copy of the dataset on a small machine).
save ""
# Redis's default, said so: a counted id evicted would let its duplicate count
# again, and the workers refuse a store that may evict (tracker/redis_nodes.py).
maxmemory-policy noeviction
EOF
}

wait_ping() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until redis_ping; do
        if ((SECONDS >= deadline)); then
            show_tail "$LOGFILE"
            die "Redis did not answer PING at $HOST:$PORT within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

cmd_start() {
    local t0=$SECONDS pid
    take_lock "$RUN"
    if pid=$(pid_of "$PIDFILE" redis-server); then
        wait_ping
        log "already running (pid $pid) at $HOST:$PORT"
        return 0
    fi
    if redis_ping; then
        log "something already answers PING at $HOST:$PORT (not started by this script); using it"
        return 0
    fi
    require_local_host "$HOST"
    ensure_redis_installed
    # The Debian service we may just have stopped could have been on our port.
    if redis_ping; then
        log "a Redis still answers at $HOST:$PORT; using it"
        return 0
    fi
    [[ $HOST == localhost ]] && HOST=127.0.0.1
    mkdir -p "$RUN"
    write_conf
    : >"$LOGFILE"
    redis-server "$CONF" 9>&- || {
        show_tail "$LOGFILE"
        die "redis-server failed to start"
    }
    wait_ping
    pid=$(pid_of "$PIDFILE" redis-server) || die "Redis answers but $PIDFILE has no live redis-server pid"
    log "started (pid $pid) at $HOST:$PORT in $((SECONDS - t0))s; data and log in ${RUN#"$ROOT"/}"
}

cmd_stop() {
    local pid
    take_lock "$RUN"
    if pid=$(pid_of "$PIDFILE" redis-server); then
        log "stopping pid $pid"
        # Address from the config it was started with, not from the current
        # environment, so a changed TRACKER_REDIS_URL cannot shut down someone
        # else's Redis.
        local host port
        host=$(awk '$1 == "bind" {print $2}' "$CONF")
        port=$(awk '$1 == "port" {print $2}' "$CONF")
        # SHUTDOWN flushes and fsyncs the AOF before exiting; SIGTERM does the
        # same if the client cannot connect (e.g. a password was set later).
        redis-cli -h "${host:-$HOST}" -p "${port:-$PORT}" shutdown >/dev/null 2>&1 ||
            kill -TERM "$pid" 2>/dev/null || true
        if ! wait_pid_exit "$pid" 30; then
            terminate_pid "$pid" 10
        fi
        rm -f "$PIDFILE"
        log "stopped"
    elif redis_ping; then
        log "a Redis answers at $HOST:$PORT but was not started by this script; leaving it alone"
    else
        log "not running"
    fi
}

cmd_status() {
    local pid
    if redis_ping; then
        if pid=$(pid_of "$PIDFILE" redis-server); then
            log "running (pid $pid) at $HOST:$PORT"
        else
            log "answering at $HOST:$PORT (not started by this script)"
        fi
        return 0
    fi
    log "not running"
    return 1
}

dispatch "{start|stop|status}" "$@"
