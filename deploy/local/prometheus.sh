#!/usr/bin/env bash
# Runs Prometheus (Debian's package, installed on first use) scraping the
# tracker's exporter and collector, with this repo's config and rules.
#
# Usage: deploy/local/prometheus.sh {start|stop|status|render FILE}
#   render FILE  writes the config 'start' would run with to FILE and checks it
#                with promtool (rules included); starts nothing.
#
# Environment:
#   TRACKER_PROMETHEUS_PORT           listen port on 127.0.0.1 (default 9090)
#   TRACKER_EXPORTER_PORT             scrape target port (default 9108)
#   TRACKER_COLLECTOR_PORT            scrape target port (default 8080)
#   TRACKER_PROMETHEUS_START_TIMEOUT  seconds to wait for /-/ready (default 60)
#   TRACKER_METRICS_AUTH              when true, the exporter is scraped with the
#                                     local admin token, .run/api-token (access.sh)
#
# Files: rendered config, pid, log and TSDB in .run/prometheus.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICE=prometheus
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"
# shellcheck source=deploy/local/access.sh
source "$ROOT/deploy/local/access.sh"

SRC_CONF="$ROOT/deploy/prometheus/prometheus.yml"
RULES_DIR="$ROOT/deploy/prometheus/rules"
RUN="$ROOT/.run/prometheus"
CONF="$RUN/prometheus.yml"
PIDFILE="$RUN/prometheus.pid"
LOGFILE="$RUN/prometheus.log"
HOST=127.0.0.1
PORT="${TRACKER_PROMETHEUS_PORT:-9090}"
EXPORTER_PORT="${TRACKER_EXPORTER_PORT:-9108}"
COLLECTOR_PORT="${TRACKER_COLLECTOR_PORT:-8080}"
START_TIMEOUT="${TRACKER_PROMETHEUS_START_TIMEOUT:-60}"
BASE_URL="http://$HOST:$PORT"
# Where Debian's packaged services keep their pids.
DEBIAN_PIDFILE=/run/prometheus/prometheus.pid
DEBIAN_NODE_EXPORTER_PIDFILE=/run/prometheus/prometheus-node-exporter.pid

for p in "$PORT" "$EXPORTER_PORT" "$COLLECTOR_PORT"; do
    [[ $p =~ ^[0-9]+$ ]] || die "ports must be numbers, got '$p'"
done

http_ok() {
    curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null
}

ready() { http_ok "$BASE_URL/-/ready"; }

ensure_prometheus_installed() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 &&
        command -v curl >/dev/null 2>&1 && return 0
    # --no-install-recommends (in apt_install) keeps prometheus-node-exporter,
    # a Recommends, from being installed and started as a side effect.
    apt_install prometheus curl
    # Right after our own install a running packaged Prometheus is the
    # package's doing (config from /etc/prometheus, 0.0.0.0:9090): stop it so
    # ours owns the port with our config.
    if [[ -s $DEBIAN_PIDFILE ]] || http_ok "http://127.0.0.1:9090/-/ready"; then
        log "stopping the prometheus service that Debian's package started on install"
        stop_debian_service prometheus "$DEBIAN_PIDFILE"
    fi
    if [[ -s $DEBIAN_NODE_EXPORTER_PIDFILE ]]; then
        log "stopping prometheus-node-exporter started by Debian's package"
        stop_debian_service prometheus-node-exporter "$DEBIAN_NODE_EXPORTER_PIDFILE"
    fi
}

# sed replacement text: escape the characters special to it (\, &, and the
# | delimiter) so any checkout path is taken literally.
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }

# The rendered copy lives in .run/, so rule_files must become absolute or
# Prometheus would look for rules next to the copy. With TRACKER_METRICS_AUTH the
# exporter's job sends the local token; Prometheus reads the file at every scrape.
render_conf() {
    local out=$1 rules auth=()
    rules=$(sed_escape "$RULES_DIR")
    if metrics_auth_on; then
        ensure_api_token
        auth=(-e "/^  - job_name: tracker-exporter\$/a\\
    authorization: {type: Bearer, credentials_file: \"$(sed_escape "$(api_token_file)")\"}")
    fi
    sed -e "s|127\.0\.0\.1:9108|127.0.0.1:$EXPORTER_PORT|g" \
        -e "s|127\.0\.0\.1:8080|127.0.0.1:$COLLECTOR_PORT|g" \
        -e "s|^\(  - \)rules/|\1$rules/|" \
        "${auth[@]}" \
        "$SRC_CONF" >"$out"
    promtool check config "$out" >"$RUN/promtool.out" 2>&1 || {
        cat "$RUN/promtool.out" >&2
        die "rendered config $out is invalid"
    }
}

wait_ready() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    until ready; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_tail "$LOGFILE"
            die "Prometheus (pid $pid) exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            show_tail "$LOGFILE"
            die "Prometheus not ready at $BASE_URL within ${START_TIMEOUT}s (pid $pid left running)"
        fi
        sleep 0.5
    done
}

cmd_start() {
    local t0=$SECONDS pid
    take_lock "$RUN"
    if pid=$(pid_of "$PIDFILE" prometheus); then
        if ! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "--web.listen-address=$HOST:$PORT"; then
            die "this checkout's Prometheus (pid $pid) listens on another port than $PORT; run '$0 stop' first"
        fi
        wait_ready "$pid"
        # Target ports may have changed since it started: apply them live
        # (the server runs with --web.enable-lifecycle).
        local fresh="$RUN/prometheus.yml.new"
        render_conf "$fresh"
        if cmp -s "$fresh" "$CONF"; then
            rm -f "$fresh"
        else
            mv "$fresh" "$CONF"
            curl -fsS -m 10 -X POST "$BASE_URL/-/reload" >/dev/null || die "config reload failed; see $LOGFILE"
            log "reloaded config with new target ports"
        fi
        log "already running (pid $pid) at $BASE_URL"
        return 0
    fi
    if tcp_open "$HOST" "$PORT"; then
        if ready; then
            warn "a Prometheus not started by this script answers at $BASE_URL; using it, but it does not run this repo's config"
            return 0
        fi
        die "port $PORT is taken by something that is not Prometheus"
    fi
    ensure_prometheus_installed
    if ready; then
        warn "a Prometheus not started by this script answers at $BASE_URL; using it, but it does not run this repo's config"
        return 0
    fi
    mkdir -p "$RUN/data"
    render_conf "$CONF"
    : >"$LOGFILE"
    pid=$(spawn_daemon "$PIDFILE" "$LOGFILE" prometheus \
        prometheus --config.file="$CONF" --storage.tsdb.path="$RUN/data" \
        --storage.tsdb.retention.time=2d \
        --web.listen-address="$HOST:$PORT" --web.enable-lifecycle)
    wait_ready "$pid"
    log "started (pid $pid) at $BASE_URL in $((SECONDS - t0))s; scraping exporter :$EXPORTER_PORT, collector :$COLLECTOR_PORT"
}

cmd_stop() {
    local pid
    take_lock "$RUN"
    if pid=$(pid_of "$PIDFILE" prometheus); then
        log "stopping pid $pid"
        # SIGTERM lets it close the TSDB head cleanly (no WAL replay next time).
        terminate_pid "$pid" 30
        rm -f "$PIDFILE"
        log "stopped"
    elif ready; then
        log "a Prometheus answers at $BASE_URL but was not started by this script; leaving it alone"
    else
        log "not running"
    fi
}

cmd_render() {
    (($# == 1)) || die "usage: $0 render FILE"
    mkdir -p "$RUN"
    render_conf "$1"
    log "rendered $1 (promtool check config passed)"
}

cmd_status() {
    local pid
    if ready; then
        if pid=$(pid_of "$PIDFILE" prometheus); then
            log "running (pid $pid) at $BASE_URL"
        else
            log "answering at $BASE_URL (not started by this script)"
        fi
        return 0
    fi
    log "not running"
    return 1
}

dispatch "{start|stop|status|render FILE}" "$@"
