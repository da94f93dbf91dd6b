# shellcheck shell=bash
# The local stack's access to the query API (/v1/* on the exporter): one admin token,
# made once, kept in .run/api-token (mode 600), given to the exporter as
# TRACKER_API_TOKENS=admin:<token>; Prometheus scrapes with it when TRACKER_METRICS_AUTH
# protects /metrics too. Unlike demo.sh this is no demo: TRACKER_DEMO=0 keeps it.
# A TRACKER_API_TOKENS the caller gave (even empty, an open API) always wins.
# Sourced by tracker.sh, prometheus.sh and demo.sh, never run; the caller sets ROOT.

api_token_file() { printf '%s/.run/api-token\n' "${ROOT:?ROOT must be set by the sourcing script}"; }

# Makes the token unless it exists. 32 random bytes, URL-safe base64 (43 characters):
# what a Bearer header carries as is. Written aside and hard-linked into place, so a
# reader never sees half a token and two starts racing keep the first one's.
ensure_api_token() {
    local file tmp
    file=$(api_token_file)
    [[ -s $file ]] && return 0
    mkdir -p "$(dirname "$file")"
    tmp=$(umask 077 && mktemp "$file.XXXXXX")
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$tmp"
    [[ -e $file && ! -s $file ]] && rm -f "$file"
    ln "$tmp" "$file" 2>/dev/null || true
    rm -f "$tmp"
    [[ -s $file ]]
}

api_settings() {
    [[ -n ${TRACKER_API_TOKENS+set} ]] && return 0
    ensure_api_token
    TRACKER_API_TOKENS="admin:$(<"$(api_token_file)")"
    export TRACKER_API_TOKENS
}

# TRACKER_METRICS_AUTH as tracker reads a boolean (tracker/settings.py _parse_bool).
metrics_auth_on() {
    local value=${TRACKER_METRICS_AUTH:-false}
    value=${value,,}
    value=${value//[[:space:]]/}
    [[ $value == 1 || $value == true || $value == yes || $value == on ]]
}

# "Authorization: Bearer <the first token of TRACKER_API_TOKENS>", for curl -H @-:
# on stdin, the token stays out of every process's command line.
bearer_header() {
    local first=${TRACKER_API_TOKENS%%,*}
    first=${first#*:}
    printf 'Authorization: Bearer %s\n' "${first//[[:space:]]/}"
}

api_describe() {
    local file shown token=""
    file=$(api_token_file)
    shown=${file#"$ROOT"/}
    [[ -s $file ]] && token=$(<"$file")
    if [[ -z ${TRACKER_API_TOKENS//[[:space:],]/} ]]; then
        warn "the query API is open: TRACKER_API_TOKENS is empty, so /v1/* answers anyone"
    elif [[ -n $token && $TRACKER_API_TOKENS == "admin:$token" ]]; then
        log "query API (/v1/*): an admin token, in $shown (mode 600); send it as"
        log "  export TRACKER_API_TOKEN=\$(cat $shown)"
        log "  curl -H \"Authorization: Bearer \$TRACKER_API_TOKEN\" 'http://127.0.0.1:${TRACKER_EXPORTER_PORT:-9108}/v1/kpis?dimension=channel'"
    else
        log "query API (/v1/*): the tokens of your TRACKER_API_TOKENS"
        if metrics_auth_on && [[ ,${TRACKER_API_TOKENS//[[:space:]]/}, != *":$token,"* ]]; then
            warn "Prometheus scrapes /metrics with $shown, which is not in your TRACKER_API_TOKENS: add read:<its token>"
        fi
    fi
    if metrics_auth_on; then log "  /metrics needs a token too (TRACKER_METRICS_AUTH); Prometheus sends $shown"; fi
}
