#!/usr/bin/env bash
# Instructions per call inside the proxy, counted by valgrind's callgrind:
# repeatable for the same binary and load whatever else the machine is
# doing, so a change to the per-call path can be judged by a few-percent
# difference that wall-clock benchmarks on a shared 2-core VM cannot show.
#
#   benches/callgrind.sh                  # build release, 20,000 calls
#   benches/callgrind.sh --no-build 5000  # the binaries in $BIN, 5,000 calls
#
# Starts temporal-fake-frontend (h2c) and the proxy (one worker thread,
# defaults plus one [authz] rule, as compare.sh's "temporal-mtls-proxy"
# row) under `valgrind --tool=callgrind` with instrumentation off; after a
# warm-up of WARMUP_CALLS calls, it is switched on, CALLS calls are
# made with temporal-loadgen, and the counts are dumped. Prints the proxy's
# instructions per call (Ir) and the functions with the most Ir of their own;
# the callgrind file stays in OUT for callgrind_annotate or kcachegrind.
#
# Environment:
#   BIN [target/release]      the binaries (temporal-mtls-proxy, temporal-loadgen,
#                             temporal-fake-frontend)
#   OUT [target/bench-callgrind/<time>]
#   WARMUP_CALLS [2000]  CONNECTIONS [2]  CONCURRENCY [32]
#   METHOD [get-system-info]  PAYLOAD_BYTES [0]   (temporal-loadgen's)
#   EXTRA_CONFIG []           TOML appended to the proxy's config
#   TOP [25]                  functions listed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/target/bench-callgrind/$STAMP}
WARMUP_CALLS=${WARMUP_CALLS:-2000}
CONNECTIONS=${CONNECTIONS:-2}
CONCURRENCY=${CONCURRENCY:-32}
METHOD=${METHOD:-get-system-info}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-0}
EXTRA_CONFIG=${EXTRA_CONFIG:-}
TOP=${TOP:-25}

die() {
    printf 'callgrind.sh: error: %s\n' "$*" >&2
    exit 1
}
log() { printf '==> %s\n' "$*" >&2; }

BUILD=1
CALLS=20000
while [ $# -gt 0 ]; do
    case $1 in
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *[!0-9]* | '') die "unknown argument '$1' (see --help)" ;;
    *) CALLS=$1 ;;
    esac
    shift
done

for tool in valgrind callgrind_control callgrind_annotate openssl; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian: valgrind, openssl)"
done
if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --locked --bin temporal-mtls-proxy &&
        cargo build --release --locked -p temporal-mtls-proxy-tools)
fi
PROXY=$BIN/temporal-mtls-proxy
LOADGEN=$BIN/temporal-loadgen
FAKE=$BIN/temporal-fake-frontend
for b in "$PROXY" "$LOADGEN" "$FAKE"; do
    [ -x "$b" ] || die "$b is missing (run without --no-build)"
done

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
"$FAKE" --listen "127.0.0.1:$FAKE_PORT" --threads 1 >"$OUT/fake.out" 2>"$OUT/fake.err" &
PIDS+=($!)

PROXY_PORT=$(free_port)
cat >"$OUT/proxy.toml" <<EOF
[listen]
address = "127.0.0.1:$PROXY_PORT"
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
[authz]
mode = "enforce"
[[authz.rule]]
name = "bench-client"
match = { uri = "spiffe://bench.local/ns/default/*" }
namespaces = ["*"]
roles = ["admin"]
methods = ["/test.Echo/Echo"]
$EXTRA_CONFIG
EOF
"$PROXY" --config "$OUT/proxy.toml" --check-config >"$OUT/check.log" 2>&1 ||
    die "the proxy refuses its config: $(tail -n 5 "$OUT/check.log")"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
    "$PROXY" --config "$OUT/proxy.toml" --log-level warn >"$OUT/proxy.out" 2>"$OUT/proxy.err" &
VG=$!
PIDS+=("$VG")

load() { # load CALLS OUTFILE
    "$LOADGEN" --target "127.0.0.1:$PROXY_PORT" --tls --ca "$OUT/pki/ca.pem" \
        --cert "$OUT/pki/client.pem" --key "$OUT/pki/client.key" --server-name localhost \
        --method "$METHOD" --payload-bytes "$PAYLOAD_BYTES" \
        --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" \
        --calls "$1" --duration 600s --threads 1 --json --quiet >"$2" 2>"$2.err"
}

log "waiting for the proxy under valgrind"
for _ in $(seq 1 300); do
    if load 1 "$OUT/ready.json" 2>/dev/null; then break; fi
    kill -0 "$VG" 2>/dev/null || die "the proxy exited: $(tail -n 5 "$OUT/proxy.err")"
    sleep 0.5
done
log "warm-up: $WARMUP_CALLS calls"
load "$WARMUP_CALLS" "$OUT/warmup.json"
callgrind_control -i on "$VG" >/dev/null
log "measured: $CALLS calls ($CONNECTIONS connections x $CONCURRENCY streams, $METHOD)"
load "$CALLS" "$OUT/measured.json"
callgrind_control -d "$VG" >/dev/null
callgrind_control -i off "$VG" >/dev/null
kill "$VG" 2>/dev/null || true

DUMP=$(ls -t "$OUT"/callgrind.out* | head -n 1)
python3 - "$DUMP" "$OUT/measured.json" "$CALLS" <<'PY'
import json, sys
dump, report, asked = sys.argv[1], sys.argv[2], int(sys.argv[3])
total = None
for line in open(dump):
    if line.startswith(("summary:", "totals:")):
        total = int(line.split()[1])
r = json.load(open(report))
calls = r.get("calls") or asked
e = r.get("errors", {})
print(f"calls: {calls} ({r.get('ok')} ok; grpc-status errors {e.get('grpc_status')}, transport {e.get('transport')})")
if total is None:
    sys.exit(f"no totals in {dump}")
print(f"proxy instructions (Ir): {total:,} in all, {total / calls:,.0f} per call")
PY
printf 'Ir by function, its own instructions (the first line is the total):\n'
callgrind_annotate --auto=no "$DUMP" 2>/dev/null |
    grep -E '^ *[0-9,]+ +\(' | head -n "$((TOP + 1))" |
    sed -E 's|/[^ ]*/registry/src/[^/]+/||; s| \[[^]]*\]$||' | cut -c1-180 || true
printf 'callgrind file: %s\n' "$DUMP"
