#!/usr/bin/env bash
# Side-by-side benchmark: temporal-mtls-proxy vs nginx vs HAProxy, with the
# fake Temporal frontend behind each, against the floors (direct h2c and
# direct mTLS to the fake).
#
#   benches/compare.sh [--quick] [--no-build] [--rate R] [SECTION...]
#
# SECTIONs (default: all, in this order):
#   throughput  unary GetSystemInfo, closed loop, 1 then 2 proxy threads:
#               calls/s, p50, p99, proxy CPU µs/call, PSS
#   latency     open loop at a fixed rate (30 % of HAProxy's closed-loop
#               maximum, or nginx's / ours when HAProxy is missing, or --rate),
#               1 thread: p50/p99 and the latency added over direct mTLS
#   handshakes  a full mTLS handshake (ECDSA P-256, no resumption) per call,
#               1 thread: handshakes/s, proxy CPU µs per handshake
#   memory      PSS per open long poll (1,000 and 10,000), per idle mTLS
#               connection (1,000 and 10,000; each made one call), and per
#               client that asks for a 1 MiB response and never reads it
#               (100 and 1,000; temporal-stall), 1 thread
#   streaming   1 MiB echo messages: MiB/s, ratio to direct mTLS
#
# --quick: 1 run, 1 s runs, memory at 100 only (a smoke test of the script).
# --no-build: use the binaries in target/release as they are.
# --rate R: the latency section's rate in calls/s.
#
# Environment (defaults in brackets):
#   RUNS [3, quick 1]        measured runs per cell; the tables give medians
#   DURATION [5s, quick 1s]  one measured run
#   WARMUP [1s, quick 500ms] unmeasured run before each measured one
#   THREADS ["1 2"]          proxy thread counts of the throughput section
#   PROXY_CPUS / LOAD_CPUS   placement with 1 proxy thread [1 / 0]
#   PROXY_CPUS_2 / LOAD_CPUS_2  with 2 threads [0-1 / 0-1]
#                            (LOAD = temporal-loadgen and the fake frontends;
#                            the generator and the fake get as many threads
#                            as LOAD has CPUs)
#   TP_CONNECTIONS [2] TP_CONCURRENCY [32]   throughput / latency load shape
#   HS_DIALERS [4]           parallel dialers of the handshakes section
#   STREAM_CONCURRENCY [4]   1 MiB echo calls in flight (one connection)
#   PACER_SPIN_US [0]        temporal-loadgen --pacer-spin-us for the open
#                            loop (0: the pacer sleeps; spinning would take the
#                            load CPU from the generator and the fake)
#   MEM_SIZES ["1000 10000", quick "100"]  N of the memory section
#   UNREAD_SIZES ["100 1000", quick "10"]  N of its clients that stop reading
#   UNREAD_BYTES [1048576]   the response each of them asks for
#   MEM_RUNS [1]             runs per memory cell (fresh proxy each)
#   HOLD_FOR [12s, quick 5s] SETTLE [4, quick 2]  memory: hold time, and
#                            seconds before the first memory sample
#   OUT [target/bench-compare/<timestamp>]  results directory
#   TARGETS ["h2c direct-tls tmp nginx haproxy"]  what to measure; add
#                            tmp-token for the proxy with a bearer token on
#                            every call (an ES256 JWT verified against a
#                            JWKS file, matched by the [authz] rule)
#   BIN [target/release]     where temporal-loadgen, temporal-fake-frontend
#                            (package temporal-mtls-proxy-tools) and the
#                            proxy are (with --no-build)
#
# Results: raw temporal-loadgen JSON under OUT/raw/, every measurement as a
# JSON line in OUT/measurements.jsonl, the tables on stdout and in
# OUT/results.md (markdown for BENCHMARKS.md). Configs and logs of the
# proxies: OUT/work/.
#
# Every process started here is stopped on exit. All traffic is on 127.0.0.1.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER=$ROOT/benches/compare_report.py
BIN=${BIN:-$ROOT/target/release}
BENCH=$BIN/temporal-loadgen
FAKE=$BIN/temporal-fake-frontend
STALL=$BIN/temporal-stall
UNREAD_BYTES=${UNREAD_BYTES:-1048576}
PROXY=$BIN/temporal-mtls-proxy

usage() { sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '!!! %s\n' "$*" >&2; }
die() {
    printf 'compare.sh: error: %s\n' "$*" >&2
    exit 1
}
py() { python3 "$HELPER" "$@"; }

# --- Options ---------------------------------------------------------------
QUICK=0
BUILD=1
RATE_ARG=
SECTIONS=()
ALL_SECTIONS=(throughput latency handshakes memory streaming)
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --rate)
        [ $# -ge 2 ] || die "--rate needs a value"
        RATE_ARG=$2
        shift
        ;;
    --rate=*) RATE_ARG=${1#--rate=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    throughput | latency | handshakes | memory | streaming) SECTIONS+=("$1") ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[ ${#SECTIONS[@]} -gt 0 ] || SECTIONS=("${ALL_SECTIONS[@]}")
want() {
    local s
    for s in "${SECTIONS[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-1}
    DURATION=${DURATION:-1s}
    WARMUP=${WARMUP:-500ms}
    MEM_SIZES=${MEM_SIZES:-100}
    UNREAD_SIZES=${UNREAD_SIZES:-10}
    HOLD_FOR=${HOLD_FOR:-5s}
    SETTLE=${SETTLE:-2}
else
    RUNS=${RUNS:-3}
    DURATION=${DURATION:-5s}
    WARMUP=${WARMUP:-1s}
    MEM_SIZES=${MEM_SIZES:-1000 10000}
    UNREAD_SIZES=${UNREAD_SIZES:-100 1000}
    HOLD_FOR=${HOLD_FOR:-12s}
    SETTLE=${SETTLE:-4}
fi
THREADS=${THREADS:-1 2}
MEM_RUNS=${MEM_RUNS:-1}
TP_CONNECTIONS=${TP_CONNECTIONS:-2}
TP_CONCURRENCY=${TP_CONCURRENCY:-32}
HS_DIALERS=${HS_DIALERS:-4}
STREAM_CONCURRENCY=${STREAM_CONCURRENCY:-4}
PACER_SPIN_US=${PACER_SPIN_US:-0}
NCPU=$(nproc)
if [ "$NCPU" -ge 4 ]; then
    PROXY_CPUS_1=${PROXY_CPUS:-2}
    LOAD_CPUS_1=${LOAD_CPUS:-0-1}
    PROXY_CPUS_2=${PROXY_CPUS_2:-2-3}
    LOAD_CPUS_2=${LOAD_CPUS_2:-0-1}
else
    PROXY_CPUS_1=${PROXY_CPUS:-1}
    LOAD_CPUS_1=${LOAD_CPUS:-0}
    PROXY_CPUS_2=${PROXY_CPUS_2:-0-1}
    LOAD_CPUS_2=${LOAD_CPUS_2:-0-1}
fi
HOLD_S=${HOLD_FOR%s}
case $HOLD_S in '' | *[!0-9]*) die "HOLD_FOR must be whole seconds like 12s" ;; esac
for t in $THREADS; do
    case $t in 1 | 2) ;; *) die "THREADS may hold 1 and 2 (placement is defined for those)" ;; esac
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/target/bench-compare/$STAMP}
RAW=$OUT/raw
WORK=$OUT/work
PKI=$OUT/pki
RESULTS=$OUT/measurements.jsonl
META=$OUT/meta.json
mkdir -p "$RAW" "$WORK" "$PKI"
HZ=$(getconf CLK_TCK)

# --- Processes: every one started is stopped on exit -------------------------
STARTED=()
kill_tree() {
    local pids i
    # shellcheck disable=SC2207 # space-separated numbers
    pids=($(py tree "$@" 2>/dev/null || echo "$@"))
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in $(seq 1 30); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for i in "$@"; do wait "$i" 2>/dev/null || true; done
}
cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill_tree "$pid"
    done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until 127.0.0.1:$1 accepts a TCP connection (10 s at most).
wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        [ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# --- Prerequisites -----------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed"
command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"
command -v taskset >/dev/null || die "taskset is needed (apt-get install util-linux)"
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } || true
HAPROXY=$(command -v haproxy || true)
[ -n "$HAPROXY" ] || { [ -x /usr/sbin/haproxy ] && HAPROXY=/usr/sbin/haproxy; } || true
MISSING=()
[ -n "$NGINX" ] || MISSING+=(nginx)
[ -n "$HAPROXY" ] || MISSING+=(haproxy)
if [ ${#MISSING[@]} -gt 0 ]; then
    warn "not installed: ${MISSING[*]} - their rows are skipped."
    warn "install with: apt-get install ${MISSING[*]}   (Debian/Ubuntu packages)"
fi

# Two builds, so the proxy measured is the one `cargo build --release` and
# `cargo install` make (its dependencies' features not unified with the
# tools' ones).
BUILD_PROXY=(cargo build --release --locked --package temporal-mtls-proxy --bin temporal-mtls-proxy)
BUILD_TOOLS=(cargo build --release --locked --package temporal-mtls-proxy-tools --bins)
if [ "$BUILD" = 1 ]; then
    log "${BUILD_PROXY[*]}"
    (cd "$ROOT" && "${BUILD_PROXY[@]}") ||
        die "the build failed (benches/compare.sh --no-build uses the binaries already in target/release)"
    log "${BUILD_TOOLS[*]}"
    (cd "$ROOT" && "${BUILD_TOOLS[@]}") ||
        die "the build failed (benches/compare.sh --no-build uses the binaries already in target/release)"
fi
for b in "$BENCH" "$FAKE" "$STALL" "$PROXY"; do
    [ -x "$b" ] || die "$b is missing: ${BUILD_PROXY[*]} && ${BUILD_TOOLS[*]}"
done

# Many connections in the memory section: as many open files as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt 22000 ]; then
    warn "open files limit is $NOFILE (the hard limit); 10,000 connections need ~10,100 per process: enough, but no more"
fi
MAXCONN=20000
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt 20100 ]; then MAXCONN=$((NOFILE - 100)); fi

# --- PKI: ECDSA P-256 CA, server (localhost, 127.0.0.1) and client certs ----
# shellcheck source=benches/pki.sh
source "$ROOT/benches/pki.sh"
log "PKI (ECDSA P-256) in $PKI"
make_pki "$PKI"

# --- Bearer token for tmp-token: an EC P-256 key, its JWKS, an ES256 JWT ----
# iss "bench", sub "bench", aud "temporal", valid 23 h (under the issuer's
# default max_lifetime of 24 h). Sets TOKEN.
make_token() {
    local d=$PKI
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/token.key" 2>/dev/null
    openssl pkey -in "$d/token.key" -pubout -outform DER -out "$d/token.pub.der" 2>/dev/null
    # JWKS from the public point (the last 65 bytes of the SubjectPublicKeyInfo:
    # 0x04 || x || y), and the signing input header.payload.
    python3 - "$d" <<'PY'
import base64, json, sys, time
d = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
spki = open(f"{d}/token.pub.der", "rb").read()
point = spki[-65:]
assert point[0] == 4, "uncompressed EC point"
jwk = {"kty": "EC", "crv": "P-256", "kid": "bench", "use": "sig", "alg": "ES256",
       "x": b64(point[1:33]), "y": b64(point[33:])}
json.dump({"keys": [jwk]}, open(f"{d}/jwks.json", "w"))
now = int(time.time())
header = {"alg": "ES256", "typ": "JWT", "kid": "bench"}
claims = {"iss": "bench", "sub": "bench", "aud": "temporal", "iat": now, "nbf": now,
          "exp": now + 23 * 3600}
enc = lambda o: b64(json.dumps(o, separators=(",", ":")).encode())
open(f"{d}/token.input", "w").write(enc(header) + "." + enc(claims))
PY
    openssl dgst -sha256 -sign "$d/token.key" -out "$d/token.sig.der" "$d/token.input"
    # The DER ECDSA signature (SEQUENCE of two INTEGERs) as JWS wants it: r || s, 32 bytes each.
    python3 - "$d" <<'PY'
import base64, sys
d = sys.argv[1]
der = open(f"{d}/token.sig.der", "rb").read()
def integer(b, i):
    assert b[i] == 2, "INTEGER"
    n = b[i + 1]
    return int.from_bytes(b[i + 2:i + 2 + n], "big"), i + 2 + n
assert der[0] == 0x30, "SEQUENCE"
i = 3 if der[1] & 0x80 else 2
r, i = integer(der, i)
s, _ = integer(der, i)
sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
jws = open(f"{d}/token.input").read() + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
open(f"{d}/token.jwt", "w").write(jws)
PY
    TOKEN=$(cat "$d/token.jwt")
}
make_token

# --- Ports (fixed for the whole run) -------------------------------------------
read -r P_FAKE P_FAKE_TLS P_TMP P_TMP_TOKEN P_NGINX P_HAPROXY <<<"$(py ports 6)"
declare -A PORT=([h2c]=$P_FAKE [direct-tls]=$P_FAKE_TLS [tmp]=$P_TMP [tmp-token]=$P_TMP_TOKEN
    [nginx]=$P_NGINX [haproxy]=$P_HAPROXY)

# The project's own proxy (with or without the token): it must start and
# pass the smoke checks, or the run stops.
ours() { [ "$1" = tmp ] || [ "$1" = tmp-token ]; }
declare -A PID=()
declare -A UP=()

# Sets PROXY_CPUS, LOAD_CPUS, GEN_THREADS for $1 proxy threads.
placement() {
    if [ "$1" = 1 ]; then
        PROXY_CPUS=$PROXY_CPUS_1
        LOAD_CPUS=$LOAD_CPUS_1
    else
        PROXY_CPUS=$PROXY_CPUS_2
        LOAD_CPUS=$LOAD_CPUS_2
    fi
    GEN_THREADS=$(taskset -c "$LOAD_CPUS" nproc)
}
placement_text() {
    placement "$1"
    printf 'proxy (%s thread(s)) on CPU %s; temporal-loadgen (--threads %s) and fake frontend (--threads %s) on CPU %s' \
        "$1" "$PROXY_CPUS" "$GEN_THREADS" "$GEN_THREADS" "$LOAD_CPUS"
}

# --- Fake frontends --------------------------------------------------------------
# start_fake NAME (h2c|direct-tls): on LOAD_CPUS with GEN_THREADS threads.
start_fake() {
    local name=$1 out=$WORK/fake-$1.out extra=() i
    if [ "$name" = direct-tls ]; then
        extra=(--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --tls-client-ca "$PKI/ca.pem")
    fi
    : >"$out"
    taskset -c "$LOAD_CPUS" "$FAKE" --listen "127.0.0.1:${PORT[$name]}" --threads "$GEN_THREADS" \
        --poll-hold 600s "${extra[@]}" >"$out" 2>"$WORK/fake-$name.err" &
    PID[$name]=$!
    STARTED+=("${PID[$name]}")
    for i in $(seq 1 100); do
        grep -q '^listening on' "$out" && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    die "the fake frontend ($name) did not start: $(tail -n 5 "$WORK/fake-$name.err")"
}

# --- Proxies -------------------------------------------------------------------------
# start_proxy NAME THREADS: on PROXY_CPUS; sets PID[NAME]; 1 when it fails.
start_proxy() {
    local name=$1 threads=$2 dir=$WORK/$1-t$2
    mkdir -p "$dir"
    case $name in
    tmp | tmp-token)
        # tmp-token: the same rule, but matched by the bearer token (which
        # the load generator sends on every call) instead of the certificate.
        local match='{ uri = "spiffe://bench.local/ns/default/*" }' tokens=
        if [ "$name" = tmp-token ]; then
            match='{ token = { issuer = "bench", sub = "bench" } }'
            tokens="[[tokens.issuer]]
name = \"bench\"
issuer = \"bench\"
audiences = [\"temporal\"]
jwks = \"$PKI/jwks.json\"
algorithms = [\"ES256\"]"
        fi
        cat >"$dir/proxy.toml" <<EOF
[listen]
address = "127.0.0.1:${PORT[$name]}"
[tls]
cert = "$PKI/server.pem"
key = "$PKI/server.key"
client_ca = "$PKI/ca.pem"
[upstream]
address = "http://127.0.0.1:${PORT[h2c]}"
[admin]
address = ""
[runtime]
worker_threads = $threads
[limits]
max_connections = $MAXCONN
# As deployed: every call authorized by the client certificate's identity
# (work nginx and HAProxy do not do); tmp-token: by its bearer token.
$tokens
[authz]
mode = "enforce"
[[authz.rule]]
name = "bench-client"
match = $match
namespaces = ["*"]
roles = ["admin"]
# The fake frontend's echo method of the streaming section and its bulk
# answer (the memory section's clients that stop reading) are no Temporal
# RPCs: allowed by name, as a rule allows RPCs newer than the method table.
methods = ["/test.Echo/Echo", "/test.Bulk/Download"]
EOF
        if ! "$PROXY" --config "$dir/proxy.toml" --check-config >"$dir/check.log" 2>&1; then
            warn "temporal-mtls-proxy refuses its config: $(tail -n 5 "$dir/check.log")"
            return 1
        fi
        taskset -c "$PROXY_CPUS" "$PROXY" --config "$dir/proxy.toml" --log-level warn \
            >"$dir/stdout.log" 2>"$dir/stderr.log" &
        ;;
    nginx)
        mkdir -p "$dir/logs" "$dir/tmp"
        local user=
        # Workers run as the invoking user (they write body temp files).
        if [ "$(id -u)" = 0 ]; then user="user root root;"; fi
        cat >"$dir/nginx.conf" <<EOF
$user
worker_processes $threads;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events {
    worker_connections $MAXCONN;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    http2_max_concurrent_streams 1000;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    client_body_timeout 300s;
    upstream fake {
        server 127.0.0.1:${PORT[h2c]};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} ssl http2;
        ssl_certificate $PKI/server.pem;
        ssl_certificate_key $PKI/server.key;
        ssl_client_certificate $PKI/ca.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            grpc_pass grpc://fake;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }
    }
}
EOF
        if ! "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" >"$dir/check.log" 2>&1; then
            warn "nginx -t refuses the config: $(tail -n 5 "$dir/check.log")"
            return 1
        fi
        taskset -c "$PROXY_CPUS" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
            >"$dir/stdout.log" 2>"$dir/stderr.log" &
        ;;
    haproxy)
        cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread $threads
    maxconn $MAXCONN
    # HAProxy wants 2 x maxconn file descriptors up front; with a lower hard
    # limit it starts anyway (the memory section needs ~10,100).
    no strict-limits
    pidfile $dir/haproxy.pid
defaults
    mode http
    maxconn $MAXCONN
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:${PORT[haproxy]} ssl crt $PKI/haproxy.pem ca-file $PKI/ca.pem verify required alpn h2
    default_backend be
backend be
    server s1 127.0.0.1:${PORT[h2c]} proto h2
EOF
        if ! "$HAPROXY" -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1; then
            warn "haproxy -c refuses the config: $(tail -n 5 "$dir/check.log")"
            return 1
        fi
        taskset -c "$PROXY_CPUS" "$HAPROXY" -f "$dir/haproxy.cfg" -db \
            >"$dir/stdout.log" 2>"$dir/stderr.log" &
        ;;
    esac
    PID[$name]=$!
    STARTED+=("${PID[$name]}")
    if ! wait_port "${PORT[$name]}" "${PID[$name]}"; then
        warn "$name did not open its port: $(tail -n 5 "$dir/stderr.log" 2>/dev/null)"
        stop_target "$name"
        return 1
    fi
    return 0
}

stop_target() {
    if [ -n "${PID[$1]:-}" ]; then
        kill_tree "${PID[$1]}"
        PID[$1]=
    fi
    UP[$1]=
}

# Sets BARGS: temporal-loadgen's target arguments for $1.
target_args() {
    BARGS=(--target "127.0.0.1:${PORT[$1]}")
    if [ "$1" != h2c ]; then
        BARGS+=(--tls --ca "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" --server-name localhost)
    fi
    if [ "$1" = tmp-token ]; then
        BARGS+=(--header "authorization:Bearer $TOKEN")
    fi
}

# smoke TARGET [temporal-loadgen args]: 20 calls, all OK, or the target is skipped.
smoke() {
    local t=$1 f=$RAW/smoke-$1-$SECTION.json why
    shift
    target_args "$t"
    taskset -c "$LOAD_CPUS" "$BENCH" "${BARGS[@]}" --threads "$GEN_THREADS" --json --quiet \
        --calls 20 --connections 1 --concurrency 4 --duration 10s "$@" >"$f" 2>"$f.err" || true
    if why=$(py bench-ok "$f" 20); then
        return 0
    fi
    # The project's own proxy and the floors must work: that is a bug, not
    # a missing package.
    case $t in nginx | haproxy) ;; *) die "$t failed the smoke check in $SECTION: $why $(tail -n 3 "$f.err")" ;; esac
    warn "SKIPPING $t in $SECTION: the smoke check failed: $why $(tail -n 3 "$f.err")"
    return 1
}

# bring_up THREADS TARGETS...: fakes and proxies for one thread count; UP[t]=1
# for those that pass the smoke check.
bring_up() {
    local threads=$1 t
    shift
    placement "$threads"
    start_fake h2c
    start_fake direct-tls
    for t in "$@"; do
        UP[$t]=
        case $t in
        h2c | direct-tls) ;;
        nginx) [ -n "$NGINX" ] || continue ;;
        haproxy) [ -n "$HAPROXY" ] || continue ;;
        esac
        if [ "$t" != h2c ] && [ "$t" != direct-tls ]; then
            start_proxy "$t" "$threads" || {
                ! ours "$t" || die "temporal-mtls-proxy ($t) did not start (see $WORK)"
                warn "SKIPPING $t in $SECTION: it did not start"
                continue
            }
        fi
        if smoke "$t"; then UP[$t]=1; else stop_target "$t"; fi
    done
}

tear_down() {
    local t
    for t in tmp tmp-token nginx haproxy h2c direct-tls; do stop_target "$t"; done
}

up_targets() {
    local t
    for t in h2c direct-tls tmp tmp-token nginx haproxy; do [ -n "${UP[$t]:-}" ] && printf '%s ' "$t"; done
    return 0
}

# run_bench OUTFILE ARGS...: temporal-loadgen at the current target, on LOAD_CPUS.
run_bench() {
    local f=$1
    shift
    taskset -c "$LOAD_CPUS" "$BENCH" "${BARGS[@]}" --threads "$GEN_THREADS" --json --quiet "$@" \
        >"$f" 2>"$f.err"
}

# measure SECTION TARGET THREADS RUN [key=value...] -- LOADGEN ARGS (no --duration)
# A warm-up run, then a measured one with the CPU of the proxy and of the fake.
measure() {
    local section=$1 t=$2 threads=$3 run=$4 extra=() ppid fake f
    shift 4
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        extra+=("$1")
        shift
    done
    shift
    target_args "$t"
    f=$RAW/$section-$t-t$threads-run$run.json
    if [ "$WARMUP" != 0 ]; then
        run_bench "$f.warmup" "$@" --duration "$WARMUP" || true
    fi
    ppid=
    case $t in
    h2c | direct-tls) fake=${PID[$t]} ;;
    *)
        ppid=${PID[$t]}
        fake=${PID[h2c]}
        ;;
    esac
    local p0=0 p1=0 f0 f1 pss=0 rss=0 n=0 w0 w1
    [ -z "$ppid" ] || read -r p0 _ _ _ <<<"$(py procstat "$ppid")"
    read -r f0 _ _ _ <<<"$(py procstat "$fake")"
    w0=$(date +%s%N)
    run_bench "$f" "$@" --duration "$DURATION" || warn "temporal-loadgen failed against $t: $(tail -n 3 "$f.err")"
    w1=$(date +%s%N)
    [ -z "$ppid" ] || read -r p1 pss rss n <<<"$(py procstat "$ppid")"
    read -r f1 _ _ _ <<<"$(py procstat "$fake")"
    py record "$RESULTS" --bench "$f" section="$section" target="$t" threads="$threads" run="$run" \
        hz="$HZ" proxy="$([ -n "$ppid" ] && echo 1 || echo 0)" proxy_ticks=$((p1 - p0)) \
        fake_ticks=$((f1 - f0)) wall_ns=$((w1 - w0)) \
        pss_kib="$pss" rss_kib="$rss" nprocs="$n" "${extra[@]}"
    printf '    %-10s run %s: %s calls/s, p50 %s µs, p99 %s µs\n' "$t" "$run" \
        "$(py field "$f" calls_per_sec)" "$(py field "$f" latency_us.p50)" "$(py field "$f" latency_us.p99)" >&2
}

# --- Header ----------------------------------------------------------------------
PROXY_VERSION="$("$PROXY" --version 2>/dev/null | head -n 1) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', src modified'))"
NGINX_VERSION="not installed"
HAPROXY_VERSION="not installed"
if [ -n "$NGINX" ]; then
    NGINX_VERSION=$("$NGINX" -v 2>&1 || true)
    NGINX_VERSION=${NGINX_VERSION#nginx version: }
fi
if [ -n "$HAPROXY" ]; then
    HAPROXY_VERSION=$("$HAPROXY" -v 2>/dev/null || true)
    HAPROXY_VERSION=${HAPROXY_VERSION%%$'\n'*}
    HAPROXY_VERSION=${HAPROXY_VERSION%% - http*}
fi
CPU_MODEL="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $NCPU CPUs"
P1=$(placement_text 1)
P2=$(placement_text 2)
py meta "$META" date="$(date -u '+%Y-%m-%d %H:%M UTC')" cpu="$CPU_MODEL" kernel="$(uname -sr)" \
    proxy_version="$PROXY_VERSION" nginx_version="$NGINX_VERSION" haproxy_version="$HAPROXY_VERSION" \
    placement="1 thread: $P1. 2 threads: $P2. Pinned with taskset (direct runs: the same load placement, the proxy CPU idle)" \
    placement_T1="$P1" placement_T2="$P2" \
    durations="$DURATION per measured run after a $WARMUP warm-up run$([ "$QUICK" = 1 ] && echo ' (--quick)')" \
    runs="$RUNS per cell, medians (memory: $MEM_RUNS per cell)" nofile="$NOFILE" \
    notes="temporal-mtls-proxy with default settings plus one [authz] rule (so every call is authorized by certificate identity and namespace, and gets the x-forwarded-client-cert header); nginx: grpc_pass with upstream keepalive 64, ssl_verify_client on; HAProxy: proto h2 to the server, http-reuse always, verify required. All three log nothing per call. The tmp-token row (when in TARGETS): the same proxy with a [[tokens.issuer]] (JWKS file, ES256) and the rule matched by the token, every call carrying authorization: Bearer (one ES256 JWT, so verified once and then taken from the proxy's token cache). Fake frontend: temporal-fake-frontend (h2c upstream, and mTLS for the direct row)."

log "results: $OUT"
log "nginx: $NGINX_VERSION; HAProxy: $HAPROXY_VERSION; proxy: $PROXY_VERSION"
log "placement, 1 thread: $P1"
log "placement, 2 threads: $P2"
log "runs: $RUNS x $DURATION (warm-up $WARMUP); sections: ${SECTIONS[*]}; open files: $NOFILE"

read -r -a ALL_TARGETS <<<"${TARGETS:-h2c direct-tls tmp nginx haproxy}"
PROXIES=(tmp nginx haproxy)
for t in "${ALL_TARGETS[@]}"; do
    case $t in
    h2c | direct-tls | tmp | nginx | haproxy) ;;
    tmp-token) PROXIES=(tmp tmp-token nginx haproxy) ;;
    *) die "unknown target '$t' in TARGETS (h2c direct-tls tmp tmp-token nginx haproxy)" ;;
    esac
done

# --- Sections -------------------------------------------------------------------
section_throughput() {
    SECTION=throughput
    local threads run t
    py meta "$META" throughput_shape="temporal-loadgen --method get-system-info --connections $TP_CONNECTIONS --concurrency $TP_CONCURRENCY, $DURATION per run"
    for threads in $THREADS; do
        log "throughput, $threads proxy thread(s): $(placement_text "$threads")"
        bring_up "$threads" "${ALL_TARGETS[@]}"
        for run in $(seq 1 "$RUNS"); do
            for t in $(up_targets); do
                measure throughput "$t" "$threads" "$run" -- \
                    --method get-system-info --connections "$TP_CONNECTIONS" --concurrency "$TP_CONCURRENCY"
            done
        done
        tear_down
    done
}

section_latency() {
    SECTION=latency
    local run t rate="$RATE_ARG" ref="" src
    log "latency (open loop), 1 proxy thread: $(placement_text 1)"
    bring_up 1 "${ALL_TARGETS[@]}"
    if [ -z "$rate" ]; then
        for ref in haproxy nginx tmp; do [ -n "${UP[$ref]:-}" ] && break; done
        [ -n "${UP[$ref]:-}" ] || die "no proxy is up to take the latency rate from"
        local max
        max=$(py median-calls "$RESULTS" throughput "$ref" 1)
        if [ -z "$max" ]; then
            log "measuring $ref's closed-loop maximum for the rate"
            target_args "$ref"
            run_bench "$RAW/latency-ratebase-$ref.json" --method get-system-info \
                --connections "$TP_CONNECTIONS" --concurrency "$TP_CONCURRENCY" --duration "$DURATION" || true
            max=$(py field "$RAW/latency-ratebase-$ref.json" calls_per_sec)
        fi
        [ -n "$max" ] || die "could not measure $ref's maximum for the latency rate"
        rate=$(python3 -c "print(max(1, round(0.3 * float('$max'))))")
        src="30 % of the closed-loop maximum of $ref, 1 thread ($max calls/s)"
    else
        src="given with --rate"
    fi
    py meta "$META" latency_rate_source="$src" \
        latency_shape="temporal-loadgen --rate $rate --connections $TP_CONNECTIONS --concurrency $TP_CONCURRENCY --pacer-spin-us $PACER_SPIN_US, $DURATION per run"
    log "rate: $rate calls/s ($src)"
    for run in $(seq 1 "$RUNS"); do
        for t in $(up_targets); do
            measure latency "$t" 1 "$run" rate="$rate" -- --method get-system-info --rate "$rate" \
                --connections "$TP_CONNECTIONS" --concurrency "$TP_CONCURRENCY" --pacer-spin-us "$PACER_SPIN_US"
        done
    done
    tear_down
}

section_handshakes() {
    SECTION=handshakes
    local run t
    log "handshakes, 1 proxy thread: $(placement_text 1)"
    py meta "$META" handshake_shape="temporal-loadgen --mode new-connection --connections $HS_DIALERS --concurrency 1 (parallel dialers, one GetSystemInfo per connection), $DURATION per run"
    bring_up 1 direct-tls "${PROXIES[@]}"
    for run in $(seq 1 "$RUNS"); do
        for t in $(up_targets); do
            measure handshakes "$t" 1 "$run" -- --mode new-connection --method get-system-info \
                --connections "$HS_DIALERS" --concurrency 1 --timeout 10s
        done
    done
    tear_down
}

section_streaming() {
    SECTION=streaming
    local run t
    log "streaming (1 MiB echo), 1 proxy thread: $(placement_text 1)"
    py meta "$META" streaming_shape="temporal-loadgen --method echo --payload-bytes 1048576 --connections 1 --concurrency $STREAM_CONCURRENCY, $DURATION per run"
    bring_up 1 "${ALL_TARGETS[@]}"
    for t in $(up_targets); do
        target_args "$t"
        run_bench "$RAW/smoke-$t-echo.json" --method echo --payload-bytes 1048576 --calls 4 \
            --connections 1 --concurrency 1 --duration 10s || true
        local why
        if ! why=$(py bench-ok "$RAW/smoke-$t-echo.json" 4); then
            case $t in nginx | haproxy) ;; *) die "$t failed a 1 MiB echo: $why" ;; esac
            warn "SKIPPING $t in streaming: a 1 MiB echo failed: $why"
            stop_target "$t"
        fi
    done
    for run in $(seq 1 "$RUNS"); do
        for t in $(up_targets); do
            measure streaming "$t" 1 "$run" -- --method echo --payload-bytes 1048576 \
                --connections 1 --concurrency "$STREAM_CONCURRENCY"
        done
    done
    tear_down
}

# sample_peak SECONDS PID: highest PSS/RSS sum of PID's tree over SECONDS
# (every 0.5 s); sets PEAK_PSS PEAK_RSS.
sample_peak() {
    local until pss rss
    PEAK_PSS=0
    PEAK_RSS=0
    until=$(($(date +%s) + $1))
    while [ "$(date +%s)" -lt "$until" ]; do
        read -r _ pss rss _ <<<"$(py procstat "$2")"
        [ "$pss" -gt "$PEAK_PSS" ] && PEAK_PSS=$pss
        [ "$rss" -gt "$PEAK_RSS" ] && PEAK_RSS=$rss
        sleep 0.5
    done
}

# first_line FILE PATTERN PID: the first line of FILE matching PATTERN, once
# it is there (empty if PID exits first); bounded: 320 s.
first_line() {
    local i
    for i in $(seq 1 3200); do
        grep -q "$2" "$1" && break
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    grep -m 1 "$2" "$1" || true
}

# memory_cell PROXY KIND(polls|idle|unread) N RUN
memory_cell() {
    local t=$1 kind=$2 n=$3 run=$4 conns base f lp note="" line
    start_proxy "$t" 1 || {
        ! ours "$t" || die "temporal-mtls-proxy ($t) did not start (see $WORK)"
        warn "SKIPPING $t in memory: it did not start"
        return 0
    }
    if ! smoke "$t"; then
        stop_target "$t"
        return 0
    fi
    sleep 1
    read -r _ base _ _ <<<"$(py procstat "${PID[$t]}")"
    f=$RAW/memory-$t-$kind-$n-run$run
    target_args "$t"
    if [ "$kind" = polls ]; then
        conns=$(((n + 99) / 100))
        taskset -c "$LOAD_CPUS" "$BENCH" "${BARGS[@]}" --threads "$GEN_THREADS" --json --quiet \
            --mode hold --hold-calls "$n" --connections "$conns" --hold-for "${HOLD_S}s" \
            >"$f.json" 2>"$f.json.err" &
        lp=$!
        STARTED+=("$lp")
        sleep "$SETTLE"
        sample_peak $((HOLD_S - SETTLE - 1)) "${PID[$t]}"
        wait "$lp" || note="temporal-loadgen failed: $(tail -n 2 "$f.json.err")"
        local peak_open open_end
        peak_open=$(py field "$f.json" hold.peak_open)
        open_end=$(py field "$f.json" hold.open_at_end)
        if [ "$peak_open" != "$n" ] || [ "$open_end" != "$n" ]; then
            note="${note:+$note; }peak open $peak_open, open at end $open_end of $n"
        elif ! py bench-ok "$f.json" >/dev/null; then
            note="failed polls were retried after 100 ms: all $n open at the end"
        fi
    elif [ "$kind" = unread ]; then
        conns=$n
        # N clients, each one call of UNREAD_BYTES, none read (a check
        # connection first reads one to the end); "ready N" once all are
        # written, held 8 s for the samples below (1 s, then 3 s).
        taskset -c "$LOAD_CPUS" "$STALL" --target "127.0.0.1:${PORT[$t]}" --ca "$PKI/ca.pem" \
            --cert "$PKI/client.pem" --key "$PKI/client.key" --server-name localhost \
            --connections "$n" --bytes "$UNREAD_BYTES" --hold-for 8s >"$f.out" 2>"$f.err" &
        lp=$!
        STARTED+=("$lp")
        line=$(first_line "$f.out" '^ready ' "$lp")
        sleep 1
        sample_peak 3 "${PID[$t]}"
        if [ -z "$line" ]; then
            note="temporal-stall: not ready within 320 s, or it failed: $(tail -n 2 "$f.err")"
            kill_tree "$lp"
        else
            wait "$lp" || note="temporal-stall failed: $(tail -n 2 "$f.err")"
        fi
    else
        conns=$n
        # Held long enough for the samples below (1 s, then 3 s):
        # temporal-loadgen reports how many were still open when the hold
        # ended.
        taskset -c "$LOAD_CPUS" "$BENCH" "${BARGS[@]}" --threads "$GEN_THREADS" --json \
            --mode idle --connections "$n" --method get-system-info --timeout 10s --hold-for 8s \
            >"$f.json" 2>"$f.json.err" &
        lp=$!
        STARTED+=("$lp")
        # "idle: K of N connections open" on stderr once all are dialed;
        # bounded: 320 s to open them.
        line=$(first_line "$f.json.err" '^idle: ' "$lp")
        sleep 1
        sample_peak 3 "${PID[$t]}"
        if [ -z "$line" ]; then
            note="idle connections: not all dialed within 320 s, or temporal-loadgen failed: $(tail -n 2 "$f.json.err")"
            kill_tree "$lp"
        else
            wait "$lp" || note="temporal-loadgen failed: $(tail -n 2 "$f.json.err")"
            local opened open_end
            opened=$(py field "$f.json" idle.opened)
            open_end=$(py field "$f.json" idle.open_at_end)
            if [ "$opened" != "$n" ] || [ "$open_end" != "$n" ]; then
                note="${note:+$note; }opened $opened, open at end $open_end of $n"
            fi
        fi
    fi
    local each
    each=$(python3 -c "print(round(($PEAK_PSS - $base) / $n, 2))")
    local args=(section=memory target="$t" threads=1 run="$run" n="$n" kind="$kind" conns="$conns"
        base_pss_kib="$base" peak_pss_kib="$PEAK_PSS" peak_rss_kib="$PEAK_RSS" kib_per_item="$each")
    [ -z "$note" ] || args+=(note="${note// /_}")
    [ "$kind" = unread ] || args+=(--bench "$f.json")
    py record "$RESULTS" "${args[@]}"
    printf '    %-8s %-5s N=%-6s baseline %s KiB, peak %s KiB: %s KiB each %s\n' \
        "$t" "$kind" "$n" "$base" "$PEAK_PSS" "$each" "$note" >&2
    stop_target "$t"
}

section_memory() {
    SECTION=memory
    local run t n kind
    placement 1
    log "memory, 1 proxy thread: $(placement_text 1); N = $MEM_SIZES; hold ${HOLD_S}s"
    py meta "$META" memory_shape="Long polls: temporal-loadgen --mode hold --hold-calls N over N/100 connections for ${HOLD_S}s (the fake holds polls longer); idle: N mTLS connections that each made one GetSystemInfo call and then sit idle (temporal-loadgen --mode idle --connections N, 64 dialed at once, full handshakes); not reading: N mTLS clients (temporal-stall --connections N --bytes $UNREAD_BYTES), each granting the largest HTTP/2 windows, asking for one response of $UNREAD_BYTES bytes from the fake's /test.Bulk/Download and never reading its socket (a check connection first reads one such response to the end). A fresh proxy per cell; $MEM_RUNS run(s) per cell"
    start_fake h2c
    for kind in polls idle unread; do
        local sizes=$MEM_SIZES
        [ "$kind" != unread ] || sizes=$UNREAD_SIZES
        for n in $sizes; do
            for run in $(seq 1 "$MEM_RUNS"); do
                for t in "${PROXIES[@]}"; do
                    case $t in
                    nginx) [ -n "$NGINX" ] || continue ;;
                    haproxy) [ -n "$HAPROXY" ] || continue ;;
                    # temporal-stall sends no bearer token.
                    tmp-token) [ "$kind" != unread ] || continue ;;
                    esac
                    memory_cell "$t" "$kind" "$n" "$run"
                done
            done
        done
    done
    tear_down
}

for s in "${ALL_SECTIONS[@]}"; do
    if want "$s"; then "section_$s"; fi
done

log "report"
py report "$OUT"
log "raw results: $OUT (results.md, measurements.jsonl, raw/)"
