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
# Environment (all optional; the README's quick start lists them too):
#   QUICKSTART_LISTEN         address the proxy listens on (127.0.0.1:7443)
#   QUICKSTART_UPSTREAM_PORT  port of the Temporal frontend on 127.0.0.1
#                             (7233); a dev server is started there when
#                             nothing listens on it
#   QUICKSTART_DIR            folder of the development PKI (dev-pki)
#   QUICKSTART_PROXY_BIN      an already built proxy binary (skips the build)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEMO=0
[ "${1:-}" = "--demo" ] && DEMO=1

LISTEN=${QUICKSTART_LISTEN:-127.0.0.1:7443}
UPSTREAM_PORT=${QUICKSTART_UPSTREAM_PORT:-7233}
PKI_DIR=${QUICKSTART_DIR:-dev-pki}

fail() {
    printf '\nscripts/quickstart.sh: error: %s\n' "$*" >&2
    exit 1
}

LISTEN_PORT=${LISTEN##*:}
LISTEN_HOST=${LISTEN%:*}
LISTEN_HOST=${LISTEN_HOST#[}
LISTEN_HOST=${LISTEN_HOST%]}
case $LISTEN_HOST in 0.0.0.0 | "") LISTEN_HOST=127.0.0.1 ;; "::") LISTEN_HOST=::1 ;; esac
[[ $LISTEN == *:* && $LISTEN_PORT =~ ^[0-9]+$ ]] ||
    fail "QUICKSTART_LISTEN=$LISTEN is not an IP:port address (e.g. 127.0.0.1:7443)"
[[ $UPSTREAM_PORT =~ ^[0-9]+$ ]] ||
    fail "QUICKSTART_UPSTREAM_PORT=$UPSTREAM_PORT is not a port number (e.g. 7233)"

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; } # port_open HOST PORT

# Checked before anything is built or started: the proxy could not listen
# there, and the commands below would talk to whatever does.
if port_open "$LISTEN_HOST" "$LISTEN_PORT"; then
    fail "$LISTEN, where the proxy would listen, is already in use (a quick start or proxy still running?).
Stop what listens there, or choose another address for the proxy:
    QUICKSTART_LISTEN=127.0.0.1:7444 scripts/quickstart.sh"
fi

# shellcheck source=scripts/tools.sh
TOOLS_NODE=0 TOOLS_PROMETHEUS=0 source scripts/tools.sh

# Whether a Temporal frontend answers plaintext gRPC on the upstream port:
# its health service, through the real CLI, within a few seconds.
HEALTH_ERROR=
temporal_answers() { # temporal_answers SECONDS
    local deadline=$((SECONDS + $1))
    while :; do
        if HEALTH_ERROR=$("$TEMPORAL_BIN" operator cluster health \
            --address "127.0.0.1:$UPSTREAM_PORT" --command-timeout 4s 2>&1); then
            return 0
        fi
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

UPSTREAM_FOUND=0
if port_open 127.0.0.1 "$UPSTREAM_PORT"; then
    if ! temporal_answers 8; then
        fail "something listens on 127.0.0.1:$UPSTREAM_PORT, but it does not answer as a Temporal frontend (plaintext gRPC); \`temporal operator cluster health\` said:
    $(printf '%s' "$HEALTH_ERROR" | tail -n 1)
Stop it, or point the quick start at another port (a free one, where it starts its own dev server, or your frontend's):
    QUICKSTART_UPSTREAM_PORT=17233 scripts/quickstart.sh"
    fi
    UPSTREAM_FOUND=1
fi

if [ -n "${QUICKSTART_PROXY_BIN:-}" ]; then
    PROXY=$QUICKSTART_PROXY_BIN
    [ -x "$PROXY" ] || fail "QUICKSTART_PROXY_BIN=$PROXY is not an executable file"
else
    log "building temporal-mtls-proxy (the first release build takes several minutes)"
    cargo build --release --locked --bin temporal-mtls-proxy
    PROXY=$ROOT/target/release/temporal-mtls-proxy
fi

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DEV_LOG=$ROOT/.tools/temporal-dev.log
if [ "$UPSTREAM_FOUND" = 1 ]; then
    log "a Temporal frontend already answers on 127.0.0.1:$UPSTREAM_PORT; using it"
else
    log "starting a Temporal dev server on 127.0.0.1:$UPSTREAM_PORT (log: .tools/temporal-dev.log)"
    "$TEMPORAL_BIN" server start-dev --headless --ip 127.0.0.1 --port "$UPSTREAM_PORT" \
        --http-port 0 --metrics-port 0 --log-level warn >"$DEV_LOG" 2>&1 &
    DEV_PID=$!
    PIDS+=("$DEV_PID")
    deadline=$((SECONDS + 60))
    until temporal_answers 0; do
        kill -0 "$DEV_PID" 2>/dev/null ||
            fail "the Temporal dev server exited; its log (.tools/temporal-dev.log) ends with:
$(tail -n 5 "$DEV_LOG")"
        [ $SECONDS -lt $deadline ] ||
            fail "the Temporal dev server did not answer within 60 s (see .tools/temporal-dev.log)"
        sleep 0.5
    done
fi

log "starting the proxy: $PROXY dev --listen $LISTEN --upstream http://127.0.0.1:$UPSTREAM_PORT"
# The proxy's own banner shows the CLI command with a bare `temporal`; the
# CLI here is in .tools/, so that line is rewritten with the full path (for
# a path of plain characters; others are left as they are).
if [[ $TEMPORAL_BIN =~ ^[A-Za-z0-9/._+-]+$ ]]; then
    BANNER_FIX="s|^\\([[:space:]]*\\)temporal operator |\\1$TEMPORAL_BIN operator |"
else
    BANNER_FIX=
fi
"$PROXY" dev --dir "$PKI_DIR" --listen "$LISTEN" --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
    > >(sed -u -e "$BANNER_FIX") &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
deadline=$((SECONDS + 30))
until port_open "$LISTEN_HOST" "$LISTEN_PORT"; do
    kill -0 "$PROXY_PID" 2>/dev/null ||
        fail "the proxy exited (its message is above); if $LISTEN could not be bound, choose another address with QUICKSTART_LISTEN=127.0.0.1:7444"
    [ $SECONDS -lt $deadline ] || fail "the proxy did not start listening on $LISTEN within 30 s"
    sleep 0.2
done
# (Exited right after: it could not bind, and what answered is not the proxy.)
sleep 0.2
kill -0 "$PROXY_PID" 2>/dev/null ||
    fail "the proxy exited (its message is above); if $LISTEN could not be bound, choose another address with QUICKSTART_LISTEN=127.0.0.1:7444"

PKI=$(cd "$PKI_DIR" && pwd)
TLS=(--address "$LISTEN" --tls-ca-path "$PKI/ca.pem" --tls-cert-path "$PKI/client.pem"
    --tls-key-path "$PKI/client.key" --tls-server-name localhost)
# The command as it can be pasted: the CLI by its full path (it is in
# .tools/, not on PATH), every word quoted for the shell where needed.
printf -v CLI_COMMAND '%q ' "$TEMPORAL_BIN" operator namespace list "${TLS[@]}"
CLI_COMMAND=${CLI_COMMAND% }

# The frontend may need a moment after its port opens before it serves.
deadline=$((SECONDS + 30))
until "$TEMPORAL_BIN" operator cluster health "${TLS[@]}" --command-timeout 4s >/dev/null 2>&1; do
    kill -0 "$PROXY_PID" 2>/dev/null || fail "the proxy exited (its message is above)"
    [ $SECONDS -lt $deadline ] ||
        fail "no healthy answer through the proxy on $LISTEN within 30 s (the proxy's log is above)"
    sleep 0.2
done

log "through the proxy with mTLS:"
printf '%s\n' "$CLI_COMMAND"
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
log "the proxy is serving on $LISTEN until Ctrl-C. From another terminal, this lists the namespaces through it:"
printf '\n%s\n\n' "$CLI_COMMAND"
printf 'The temporal CLI is in .tools/, not on PATH. To type just `temporal`, first run:\n\n'
printf 'export PATH=%q:"$PATH"\n\n' "$(dirname "$TEMPORAL_BIN")"
wait "$PROXY_PID"
