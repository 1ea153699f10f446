#!/usr/bin/env bash
# The quick start: build the proxy, make sure a Temporal dev server answers
# on 127.0.0.1:7233 (start one from .tools/ if not), run the proxy in front
# of it on 127.0.0.1:7443 with a fresh development PKI, and go through it
# with the `temporal` CLI over mTLS. The proxy then keeps running until
# Ctrl-C (and stops the dev server this script started).
#
#   scripts/quickstart.sh            # run, demonstrate, keep serving
#   scripts/quickstart.sh --demo     # run, demonstrate, exit
#
# Environment: QUICKSTART_LISTEN (default 127.0.0.1:7443),
# QUICKSTART_UPSTREAM_PORT (default 7233), QUICKSTART_DIR (default dev-pki),
# QUICKSTART_PROXY_BIN (an already built binary; skips the build).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEMO=0
[ "${1:-}" = "--demo" ] && DEMO=1

LISTEN=${QUICKSTART_LISTEN:-127.0.0.1:7443}
UPSTREAM_PORT=${QUICKSTART_UPSTREAM_PORT:-7233}
PKI_DIR=${QUICKSTART_DIR:-dev-pki}

# shellcheck source=scripts/tools.sh
TOOLS_NODE=0 source scripts/tools.sh

if [ -n "${QUICKSTART_PROXY_BIN:-}" ]; then
    PROXY=$QUICKSTART_PROXY_BIN
else
    log "building temporal-mtls-proxy"
    cargo build --release --locked --bin temporal-mtls-proxy
    PROXY=$ROOT/target/release/temporal-mtls-proxy
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT SECONDS
    local deadline=$((SECONDS + $2))
    until port_open "$1"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

if port_open "$UPSTREAM_PORT"; then
    log "a Temporal frontend already answers on 127.0.0.1:$UPSTREAM_PORT; using it"
else
    log "starting a Temporal dev server on 127.0.0.1:$UPSTREAM_PORT (log: .tools/temporal-dev.log)"
    "$TEMPORAL_BIN" server start-dev --headless --ip 127.0.0.1 --port "$UPSTREAM_PORT" \
        --http-port 0 --metrics-port 0 --log-level warn >"$ROOT/.tools/temporal-dev.log" 2>&1 &
    PIDS+=($!)
    wait_port "$UPSTREAM_PORT" 60 || die "the Temporal dev server did not start (see .tools/temporal-dev.log)"
fi

log "starting the proxy: $PROXY dev --listen $LISTEN --upstream http://127.0.0.1:$UPSTREAM_PORT"
"$PROXY" dev --dir "$PKI_DIR" --listen "$LISTEN" --upstream "http://127.0.0.1:$UPSTREAM_PORT" &
PIDS+=($!)
wait_port "${LISTEN##*:}" 30 || die "the proxy did not start listening on $LISTEN"

PKI=$(cd "$PKI_DIR" && pwd)
TLS=(--address "$LISTEN" --tls-ca-path "$PKI/ca.pem" --tls-cert-path "$PKI/client.pem"
    --tls-key-path "$PKI/client.key" --tls-server-name localhost)
# The dev server needs a moment after its port opens before it serves.
for _ in $(seq 1 50); do
    "$TEMPORAL_BIN" operator cluster health "${TLS[@]}" >/dev/null 2>&1 && break
    sleep 0.2
done

log "through the proxy with mTLS: temporal operator namespace list ${TLS[*]}"
NAMESPACES=$("$TEMPORAL_BIN" operator namespace list "${TLS[@]}" -o json)
grep -m1 '"name"' <<<"$NAMESPACES"
log "starting a workflow through the proxy"
WF_ID=quickstart-$(date +%s)
"$TEMPORAL_BIN" workflow start --type QuickstartWorkflow --task-queue quickstart \
    --workflow-id "$WF_ID" "${TLS[@]}"
"$TEMPORAL_BIN" workflow list "${TLS[@]}" --query "WorkflowId = '$WF_ID'"
log "without a client certificate the proxy refuses the connection:"
"$TEMPORAL_BIN" operator namespace list --address "$LISTEN" --tls-ca-path "$PKI/ca.pem" \
    --tls-server-name localhost 2>&1 | head -n 1 || true

if [ "$DEMO" = 1 ]; then
    log "quick start OK"
    exit 0
fi
log "the proxy is serving on $LISTEN; try the commands above. Ctrl-C stops it."
wait "${PIDS[-1]}"
