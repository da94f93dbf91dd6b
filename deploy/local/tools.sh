#!/usr/bin/env bash
# Installs the programs that tests and benchmarks drive, when missing:
#   chromium  the headless browser tests/e2e/test_snippet.py runs t.js in (Debian)
#   wrk       the HTTP load generator of bench/collector.py (Debian)
#   node      Node.js and npm, which run the SDKs' Node and browser packages in
#             tests/e2e/test_sdks.py (Debian)
#   helm      Helm 4, which renders deploy/helm/tracker in tests/unit/test_helm.py:
#             built with Go from the Go module proxy into .cache/helm/bin (Helm ships
#             no Debian package of this version); a few minutes the first time
#
# Usage: deploy/local/tools.sh [chromium] [wrk] [node] [helm]    (no names: all)
# A machine that already has them never touches apt, nor builds helm again.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck disable=SC2034 # read by _common.sh's messages
SERVICE=tools
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"

HELM_VERSION=v4.3.2
HELM_CACHE="$ROOT/.cache/helm"
HELM="$HELM_CACHE/bin/helm"

# Builds helm once into $HELM_CACHE, its modules and build cache beside it. Gently: at
# the lowest priority and one compile at a time, so tests running meanwhile keep the
# cores. -modcacherw: Go's module cache is read-only otherwise, and `rm -rf .cache`
# would fail on it. The version is stamped as Helm's Makefile does (else it says v4.3).
build_helm() {
    [[ -x $HELM ]] && "$HELM" version --template '{{.Version}}' 2>/dev/null |
        grep -qx "$HELM_VERSION" && return 0
    command -v go >/dev/null 2>&1 ||
        die "helm needs Go to be built (go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION)"
    # Two runs building at once would race on the caches: the second waits for the first
    # (CI builds in the background while the suite runs; the test then waits here).
    mkdir -p "$HELM_CACHE"
    exec 9>"$HELM_CACHE/.lock"
    flock -w 1200 9 || die "another helm build has held $HELM_CACHE/.lock for 20 minutes"
    [[ -x $HELM ]] && "$HELM" version --template '{{.Version}}' 2>/dev/null |
        grep -qx "$HELM_VERSION" && return 0
    local out="$HELM_CACHE/build.log" started=$SECONDS
    log "building helm $HELM_VERSION with $(go env GOVERSION) (one-time; output in ${out#"$ROOT"/})"
    if ! GOBIN="$HELM_CACHE/bin" GOMODCACHE="$HELM_CACHE/mod" GOCACHE="$HELM_CACHE/go-build" \
        GOFLAGS=-modcacherw GOMAXPROCS=1 CGO_ENABLED=0 \
        nice -n 19 go install -p 1 -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >"$out" 2>&1; then
        show_tail "$out"
        die "building helm $HELM_VERSION failed"
    fi
    log "built helm in $((SECONDS - started)) s"
}

(($# > 0)) || set -- chromium wrk node helm
missing=()
for tool in "$@"; do
    case "$tool" in
        chromium | wrk) command -v "$tool" >/dev/null 2>&1 || missing+=("$tool") ;;
        node) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
            missing+=(nodejs npm) ;;
        helm) ;;
        *) die "unknown tool '$tool' (known: chromium, wrk, node, helm)" ;;
    esac
done
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi
for tool in "$@"; do
    if [[ $tool == helm ]]; then
        build_helm
        log "helm: $HELM"
    else
        log "$tool: $(command -v "$tool")"
    fi
done
