# shellcheck shell=bash
# The local stack's demo configuration: just what the README's examples need, so a
# newcomer's first ten minutes work as written. Sourced by tracker.sh, never run.
# Production stays strict by default: nothing here is a default of tracker itself,
# docker compose does not carry it, and TRACKER_DEMO=0 turns it off. A setting the
# caller gave (even empty) always wins.

# shellcheck source=deploy/local/access.sh
source "$(dirname "${BASH_SOURCE[0]}")/access.sh"

DEMO_REDIRECT_ALLOW='shop.example,*.shop.example'
# The README's example secret: public, so good for nothing but this local demo.
DEMO_POSTBACK_SECRETS='net1=s3cret-0123456789abcdef'

demo_enabled() { [[ ${TRACKER_DEMO:-1} != 0 ]]; }

demo_settings() {
    demo_enabled || return 0
    export TRACKER_REDIRECT_ALLOW="${TRACKER_REDIRECT_ALLOW-$DEMO_REDIRECT_ALLOW}"
    export TRACKER_POSTBACK_SECRETS="${TRACKER_POSTBACK_SECRETS-$DEMO_POSTBACK_SECRETS}"
}

# Four weeks of the simulated market (known response curves), so trends, budget and
# report have something to show from the first minute. Once per data directory:
# `make demo-reset` wipes both, `make down` keeps both.
demo_history() {
    demo_enabled || return 0
    local marker="$RUN/demo-history.done"
    [[ -e $marker ]] && return 0
    log "demo history: four weeks of the simulated market, once (log ${RUN#"$ROOT"/}/demo-history.log)"
    "$PYTHON" -m tracker.cli simulate --curves default --backfill-days 28 --duration 0 \
        >"$RUN/demo-history.log" 2>&1 || { show_tail "$RUN/demo-history.log"; die "demo history failed"; }
    demo_applied
    touch "$marker"
}

# Returns once the worker has applied every record of the events topic (the exporter's
# consumer lag reads 0 on every partition), so `tracker budget` right after `make up`
# sees the history; gives up with a warning after two minutes.
demo_applied() {
    local url="http://127.0.0.1:${TRACKER_EXPORTER_PORT:-9108}/metrics" deadline=$((SECONDS + 120)) lags
    local -a auth=()
    if metrics_auth_on; then auth=(-H @-); fi
    while ((SECONDS < deadline)); do
        lags=$(bearer_header | curl -fsS --max-time 5 "${auth[@]}" "$url" 2>/dev/null |
            grep '^tracker_pipeline_consumer_lag_records{' || true)
        if [[ -n $lags ]] && ! grep -qv ' 0\.0$' <<<"$lags"; then
            log "demo history applied"
            return 0
        fi
        sleep 1
    done
    warn "the worker has not applied the demo history within 2 minutes; see .run/tracker/worker.log"
}

# The goal rules and KPI targets of deploy/goals.json and deploy/targets.json, saved
# once per data directory (as the README's PUT /v1/goals would): changes made through
# the API afterwards stay. Compose saves the same files at every start.
demo_rules() {
    demo_enabled || return 0
    local marker="$RUN/demo-rules.done" kind
    [[ -e $marker ]] && return 0
    for kind in goals targets; do
        "$PYTHON" -m tracker.cli "$kind" --file "$ROOT/deploy/$kind.json" >"$RUN/demo-$kind.log" 2>&1 ||
            { show_tail "$RUN/demo-$kind.log"; die "saving deploy/$kind.json failed"; }
    done
    log "goal rules and KPI targets saved from deploy/goals.json and deploy/targets.json"
    touch "$marker"
}

demo_describe() {
    demo_enabled || return 0
    log "demo configuration (local stack only; TRACKER_DEMO=0 turns it off):"
    log "  redirect allow-list  TRACKER_REDIRECT_ALLOW=$TRACKER_REDIRECT_ALLOW"
    log "  postback partner     TRACKER_POSTBACK_SECRETS=${TRACKER_POSTBACK_SECRETS%%=*}=<the README's example secret>"
    log "  history              four weeks of the simulated market (loaded once)"
    log "  goals, targets       deploy/goals.json, deploy/targets.json (saved once)"
}
