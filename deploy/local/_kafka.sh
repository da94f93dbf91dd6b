# shellcheck shell=bash
# Kafka without Docker, shared by kafka.sh (one node) and kafka-cluster.sh (a
# controller and brokers): the jars from Maven Central, the java that runs
# them, storage formatting and the readiness probe. Sourced after _common.sh,
# never run.
#
# Environment:
#   TRACKER_CACHE_DIR    download cache (default <repo>/.cache)
#   TRACKER_PYTHON       python with aiokafka for the readiness probe (default
#                        .venv/bin/python, then python3); without aiokafka
#                        Kafka's own BrokerApiVersionsCommand is used
#
# Files: jars in .cache/kafka-<version>/libs (Maven's own cache in .cache/m2).

POM="$ROOT/deploy/kafka/pom.xml"
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

# Sets JAVA_CMD to a java running a Kafka server with heap (and other JVM)
# flags $1, one string split on spaces, and its server.log in directory $2. Kafka's own
# launcher script is not available (no tarball), so these are the relevant
# bits of kafka-run-class.sh.
JAVA_CMD=()
kafka_java() {
    local -a heap
    read -r -a heap <<<"$1"
    # shellcheck disable=SC2034 # run by the scripts that source this file
    JAVA_CMD=(
        java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$2"
        -cp "$LIBS/*"
    )
}

# Runs one of Kafka's command line tools: "${KAFKA_TOOL[@]}" CLASS ARGS...
# They run for a second or two: C1 alone (no C2 JIT) halves that.
KAFKA_TOOL=(java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.level=ERROR -cp "$LIBS/*")

# The cluster id kept in file $1, made on first use: every node of a cluster
# must be formatted with the same one.
cluster_id() {
    local file=$1 cid
    if [[ ! -s $file ]]; then
        cid=$("${KAFKA_TOOL[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        [[ -n $cid ]] || die "StorageTool random-uuid printed nothing"
        printf '%s\n' "$cid" >"$file"
    fi
    cat "$file"
}

# Formats log dir $1 for properties $2 with cluster id $3, once: a formatted
# dir (meta.properties) is never touched again. Further arguments go to
# StorageTool format (e.g. --standalone); its output is appended to $4.
format_storage_once() {
    local data=$1 props=$2 cid=$3 out=$4
    shift 4
    [[ -f $data/meta.properties ]] && return 0
    log "formatting ${data#"$ROOT"/} (cluster id $cid)"
    mkdir -p "$data"
    "${KAFKA_TOOL[@]}" kafka.tools.StorageTool format -t "$cid" -c "$props" "$@" >>"$out" 2>&1 ||
        {
            show_tail "$out"
            die "storage format of ${data#"$ROOT"/} failed"
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

# Prints the node id of each broker that bootstrap servers $1 report live, one
# a line; fails when none answers. A real Kafka round trip, not just a TCP
# accept: KRaft lists a broker in its metadata only once it is registered and
# unfenced, i.e. ready for producers and consumer groups. Uses aiokafka with
# PROBE_PY (set it with pick_python) or, without it, Kafka's own tool.
PROBE_PY=""
live_brokers() {
    if [[ -n $PROBE_PY ]]; then
        live_brokers_aiokafka "$1"
    else
        live_brokers_java "$1"
    fi
}

live_brokers_aiokafka() {
    timeout 20 "$PROBE_PY" - "$1" 2>/dev/null <<'PY'
import asyncio
import sys

from aiokafka import AIOKafkaClient


async def main() -> int:
    client = AIOKafkaClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    try:
        await asyncio.wait_for(client.bootstrap(), 10)
        brokers = sorted(broker.nodeId for broker in client.cluster.brokers())
        print(*brokers, sep="\n")
        return 0 if brokers else 1
    finally:
        await client.close()


sys.exit(asyncio.run(main()))
PY
}

# Lines like "127.0.0.1:9092 (id: 1 rack: null isFenced: false) -> (" per broker.
live_brokers_java() {
    local cfg="$CACHE/probe.properties" listed
    # Without these the admin client retries for a minute before giving up.
    printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=8000\n' >"$cfg"
    listed=$(timeout 30 "${KAFKA_TOOL[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$1" --command-config "$cfg" 2>/dev/null) || return 1
    sed -n 's/^[^ ]* (id: \([0-9][0-9]*\) .*/\1/p' <<<"$listed" | sort -n | grep .
}
