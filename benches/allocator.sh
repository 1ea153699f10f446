#!/usr/bin/env bash
# What the allocator and its purge setting cost and give back: for each value
# of mimalloc's purge delay, and for glibc's malloc, the proxy's CPU per unary
# call and its resident memory before, at the peak of, and after a burst of
# idle mTLS connections.
#
#   benches/allocator.sh                 # build release; delays 1000 (mimalloc's default), 100, 10, 0, then glibc
#   benches/allocator.sh --no-build 1000 0 glibc
#
# mimalloc frees a page's memory to the OS only `purge_delay` ms after the
# page became empty, and only when that thread next allocates: a burst (an
# attack, a traffic spike) can leave the proxy with its peak RSS long after
# the connections are gone. The delay is read from MIMALLOC_PURGE_DELAY at
# start, so every such row is the same binary with another environment. The
# row `glibc` runs the proxy built without the `mimalloc` feature
# (`$BIN/temporal-mtls-proxy-glibc`, which the build step makes).
#
# Per row, a fresh proxy (one worker thread on CPU 1, defaults plus one
# [authz] rule as compare.sh's "temporal-mtls-proxy") in front of
# temporal-fake-frontend, both loads from temporal-loadgen on CPU 0:
#   1. CPU per call: CALLS unary GetSystemInfo calls, 2 connections x 32
#      streams; proxy utime+stime from /proc divided by the calls;
#   2. burst: BURST idle mTLS connections opened (one call each) and held
#      for 5 s, then closed; RSS sampled every 0.2 s for the peak;
#   3. quiet: RSS QUIET s after the burst with no traffic at all;
#   4. trickle: RSS after 5 s of 50 calls/s on one connection.
# The last column is the burst's memory per connection, (peak - fresh) / BURST.
#
# Environment:
#   BIN [target/release]  OUT [target/bench-allocator/<time>]
#   CALLS [200000]  BURST [3000]  QUIET [10]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/target/bench-allocator/$STAMP}
CALLS=${CALLS:-200000}
BURST=${BURST:-3000}
QUIET=${QUIET:-10}

die() {
    printf 'allocator.sh: error: %s\n' "$*" >&2
    exit 1
}
log() { printf '==> %s\n' "$*" >&2; }

BUILD=1
DELAYS=()
while [ $# -gt 0 ]; do
    case $1 in
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    glibc) DELAYS+=("$1") ;;
    *[!0-9]* | '') die "unknown argument '$1' (see --help)" ;;
    *) DELAYS+=("$1") ;;
    esac
    shift
done
[ ${#DELAYS[@]} -gt 0 ] || DELAYS=(1000 100 10 0 glibc)

for tool in openssl taskset python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --locked --no-default-features --bin temporal-mtls-proxy &&
        cp target/release/temporal-mtls-proxy target/release/temporal-mtls-proxy-glibc &&
        cargo build --release --locked --bin temporal-mtls-proxy &&
        cargo build --release --locked -p temporal-mtls-proxy-tools)
fi
PROXY=$BIN/temporal-mtls-proxy
LOADGEN=$BIN/temporal-loadgen
FAKE=$BIN/temporal-fake-frontend
needed=("$PROXY" "$LOADGEN" "$FAKE")
case " ${DELAYS[*]} " in *" glibc "*) needed+=("$PROXY-glibc") ;; esac
for b in "${needed[@]}"; do
    [ -x "$b" ] || die "$b is missing (run without --no-build)"
done
# A burst of BURST connections needs as many descriptors on both sides.
ulimit -n "$((BURST * 2 + 1024))" 2>/dev/null || die "cannot raise the open-file limit to $((BURST * 2 + 1024))"

mkdir -p "$OUT/pki"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=benches/pki.sh
source "$ROOT/benches/pki.sh"
make_pki "$OUT/pki"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

FAKE_PORT=$(free_port)
taskset -c 0 "$FAKE" --listen "127.0.0.1:$FAKE_PORT" --threads 1 >"$OUT/fake.out" 2>"$OUT/fake.err" &
PIDS+=($!)

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # load PORT OUTFILE loadgen-args...
    local port=$1 out=$2
    shift 2
    taskset -c 0 "$LOADGEN" --target "127.0.0.1:$port" --tls --ca "$OUT/pki/ca.pem" \
        --cert "$OUT/pki/client.pem" --key "$OUT/pki/client.key" --server-name localhost \
        --threads 1 --json --quiet "$@" >"$out" 2>"$out.err"
}

printf '%s\n' "allocator cpu_us_per_call rss_fresh_kib rss_peak_kib rss_quiet_kib rss_trickle_kib kib_per_burst_conn" >"$OUT/results.txt"
for delay in "${DELAYS[@]}"; do
    port=$(free_port)
    if [ "$delay" = glibc ]; then
        proxy=$PROXY-glibc label="glibc-malloc" env=()
    else
        proxy=$PROXY label="mimalloc-purge-$delay" env=("MIMALLOC_PURGE_DELAY=$delay")
    fi
    dir=$OUT/$label
    mkdir -p "$dir"
    cat >"$dir/proxy.toml" <<EOF
[listen]
address = "127.0.0.1:$port"
[tls]
cert = "$OUT/pki/server.pem"
key = "$OUT/pki/server.key"
client_ca = "$OUT/pki/ca.pem"
[upstream]
address = "http://127.0.0.1:$FAKE_PORT"
[admin]
address = ""
[runtime]
worker_threads = 1
[limits]
max_connections = $((BURST + 100))
[authz]
mode = "enforce"
[[authz.rule]]
name = "bench-client"
match = { uri = "spiffe://bench.local/ns/default/*" }
namespaces = ["*"]
roles = ["admin"]
EOF
    env "${env[@]}" taskset -c 1 "$proxy" --config "$dir/proxy.toml" --log-level warn \
        >"$dir/proxy.out" 2>"$dir/proxy.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do
        if load "$port" "$dir/ready.json" --calls 1 --duration 5s 2>/dev/null; then break; fi
        kill -0 "$pid" 2>/dev/null || die "the proxy exited: $(tail -n 5 "$dir/proxy.err")"
        sleep 0.2
    done
    fresh=$(rss_kib "$pid")
    log "$label: $CALLS calls"
    t0=$(cpu_ticks "$pid")
    load "$port" "$dir/unary.json" --connections 2 --concurrency 32 --calls "$CALLS" --duration 120s
    t1=$(cpu_ticks "$pid")
    log "$label: burst of $BURST idle connections"
    load "$port" "$dir/burst.json" --mode idle --connections "$BURST" --hold-for 5s --timeout 60s --duration 120s &
    burst=$!
    peak=0
    while kill -0 "$burst" 2>/dev/null; do
        r=$(rss_kib "$pid")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.2
    done
    wait "$burst" || die "the burst failed: $(tail -n 5 "$dir/burst.json.err")"
    sleep "$QUIET"
    quiet=$(rss_kib "$pid")
    load "$port" "$dir/trickle.json" --rate 50 --duration 5s
    trickle=$(rss_kib "$pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$dir/unary.json" "$t0" "$t1" "$(getconf CLK_TCK)" "$label" "$BURST" "$fresh" "$peak" "$quiet" "$trickle" >>"$OUT/results.txt" <<'PY'
import json, sys
report, t0, t1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
label, burst, fresh, peak = sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
calls = json.load(open(report))["calls"]
print(label, f"{(t1 - t0) / hz * 1e6 / calls:.2f}", *sys.argv[7:], f"{(peak - fresh) / burst:.1f}")
PY
done
column -t "$OUT/results.txt"
printf 'results: %s\n' "$OUT/results.txt"
