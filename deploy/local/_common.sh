# shellcheck shell=bash
# Helpers shared by the service scripts of deploy/local. Sourced, never run.
# The caller sets ROOT (repo root) and SERVICE (name used in messages) first.

: "${ROOT:?ROOT must be set by the sourcing script}"
: "${SERVICE:?SERVICE must be set by the sourcing script}"

log() { printf '[%s] %s\n' "$SERVICE" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$SERVICE" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$SERVICE" "$*" >&2
    exit 1
}

# Only loopback addresses can be started here; anything else is someone
# else's server and must be started by them.
require_local_host() {
    case "$1" in
        127.* | localhost | ::1) ;;
        *) die "$1 is not a local address; this script only starts services on this machine" ;;
    esac
}

# A bare TCP connect, bounded so a black-holed address cannot hang us.
tcp_open() {
    # shellcheck disable=SC2016 # $1/$2 are for the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Reads a pid file and succeeds only if that process still runs the expected
# program; a stale file whose pid got reused by something else must not make
# us think the service is up (or make stop kill a stranger).
pid_of() {
    local pidfile=$1 expect=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # While a process execs (a wrapper such as `ip netns exec` becoming the JVM),
    # its command line reads empty for a moment: read again before saying no.
    local line try
    for try in 1 2 3 4 5; do
        line=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
        [[ -n $line ]] && break
        ((try < 5)) && sleep 0.02
    done
    [[ $line == *"$expect"* ]] || return 1
    printf '%s\n' "$pid"
}

# Waits for a pid to go away; returns 1 if it is still there after $2 s.
wait_pid_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        # A daemon re-parented to an init that reaps slowly lingers as a
        # zombie; it has exited all the same.
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# SIGTERM, a grace period for a clean shutdown, then SIGKILL as a last resort.
terminate_pid() {
    local pid=$1 grace=$2
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_pid_exit "$pid" "$grace"; then
        warn "pid $pid did not exit within ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
}

# One start/stop at a time per service: CI steps or test fixtures may call
# start concurrently, and two brokers racing on one data dir end badly.
# Daemons must be launched with 9>&- or they would hold this lock forever.
take_lock() {
    mkdir -p "$1"
    exec 9>"$1/.lock"
    flock -w 180 9 || die "another $SERVICE start/stop has held $1/.lock for 3 minutes"
}

# Installs Debian packages. Called only when a binary is missing, so a
# prepared machine never touches apt. The lock timeout makes us queue behind
# an apt run that is already going instead of failing on the dpkg lock.
apt_install() {
    local -a sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 ||
            die "need root to run: apt-get install -y --no-install-recommends $*"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install these Debian packages (or equivalents) yourself: $*"
    local aptlog="$ROOT/.run/apt-$SERVICE.log"
    mkdir -p "$ROOT/.run"
    log "installing $* with apt-get (one-time; output in ${aptlog#"$ROOT"/})"
    # A fresh machine may have empty or stale package lists.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 update -qq >"$aptlog" 2>&1; then
        show_tail "$aptlog"
        die "apt-get update failed"
    fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >>"$aptlog" 2>&1; then
        show_tail "$aptlog"
        die "apt-get install $* failed"
    fi
}

# Debian's maintainer scripts start a package's own service on install where
# the init system allows it. That copy uses /etc config, not ours, and would
# own the port, so right after we installed a package we stop it and keep it
# from coming back at boot. Never called for a service we did not just install.
stop_debian_service() {
    local name=$1 pidfile=$2 pid
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$name" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service "$name" stop >/dev/null 2>&1 || true
        if command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d "$name" disable >/dev/null 2>&1 || true
        fi
    fi
    # Belt and braces when the init script could not do it.
    if [[ -s $pidfile ]]; then
        pid=$(<"$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            terminate_pid "$pid" 30
        fi
    fi
}

# Starts "$@" as a daemon with its pid in $1, its output appended to $2, and
# prints the pid once pid_of $1 $3 sees it. setsid: the daemon must outlive the
# shell (and process group) that started it, e.g. a CI step or a terminal
# closed with Ctrl-C; 9>&- keeps it from holding take_lock's lock.
spawn_daemon() {
    local pidfile=$1 out=$2 expect=$3 pid
    shift 3
    # shellcheck disable=SC2016 # $$ and $1 are for the inner shell
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" \
        </dev/null >>"$out" 2>&1 9>&- &
    # The pid file is written by the child; give it a moment to appear.
    for _ in $(seq 50); do
        if pid=$(pid_of "$pidfile" "$expect"); then
            printf '%s\n' "$pid"
            return 0
        fi
        sleep 0.1
    done
    show_tail "$out"
    die "'$expect' did not start (no live pid in $pidfile)"
}

show_tail() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

# The end of every service script: "$0 VERB ARGS..." runs its cmd_VERB ARGS...
# (a verb's dashes become underscores: stop-broker runs cmd_stop_broker);
# anything else prints the script's usage line ($1 here) and exits 2.
dispatch() {
    local usage=$1 verb=${2:-}
    shift $(($# < 2 ? $# : 2))
    if [[ $verb =~ ^[a-z]+(-[a-z]+)*$ ]] && declare -F "cmd_${verb//-/_}" >/dev/null; then
        "cmd_${verb//-/_}" "$@"
    else
        echo "usage: $0 $usage" >&2
        exit 2
    fi
}
