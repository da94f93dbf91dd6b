#!/usr/bin/env bash
# Installs the Debian programs that tests and benchmarks drive, when missing:
#   chromium  the headless browser tests/e2e/test_snippet.py runs t.js in
#   wrk       the HTTP load generator of bench/collector.py
#   node      Node.js and npm, which run the SDKs' Node and browser packages in
#             tests/e2e/test_sdks.py
#
# Usage: deploy/local/tools.sh [chromium] [wrk] [node]    (no names: all)
# A machine that already has them never touches apt.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck disable=SC2034 # read by _common.sh's messages
SERVICE=tools
# shellcheck source=deploy/local/_common.sh
source "$ROOT/deploy/local/_common.sh"

(($# > 0)) || set -- chromium wrk node
missing=()
for tool in "$@"; do
    case "$tool" in
        chromium | wrk) command -v "$tool" >/dev/null 2>&1 || missing+=("$tool") ;;
        node) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
            missing+=(nodejs npm) ;;
        *) die "unknown tool '$tool' (known: chromium, wrk, node)" ;;
    esac
done
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi
for tool in "$@"; do
    log "$tool: $(command -v "$tool")"
done
