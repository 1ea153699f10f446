#!/usr/bin/env bash
# The fuzz targets (fuzz/, cargo-fuzz and libFuzzer; README "Fuzzing").
#
#   scripts/fuzz.sh                  every target briefly: FUZZ_SECONDS (15)
#                                    each, FUZZ_JOBS (2) at a time; fails on
#                                    the first crash or invariant violation.
#                                    Mutations follow FUZZ_SEED (1), so a run
#                                    repeats the last one's inputs (0: random)
#   scripts/fuzz.sh TARGET SECONDS   one target for longer (on FUZZ_JOBS
#                                    processes, default 1: libFuzzer -fork)
#   scripts/fuzz.sh --list           the targets
#   scripts/fuzz.sh --build          only build them
#
# Extra libFuzzer flags go after `--`, e.g.
#   scripts/fuzz.sh hpack 3600 -- -runs=20000000
#
# The stable toolchain builds them with RUSTC_BOOTSTRAP=1 (libFuzzer's
# instrumentation needs nightly flags). cargo-fuzz is installed into
# .tools/cargo when missing; under CI=true a failed install fails the run,
# elsewhere the run is skipped with a warning. Builds go to fuzz/target
# (FUZZ_TARGET_DIR to keep them elsewhere);
# inputs found while fuzzing to fuzz/target/corpus/TARGET (the committed
# seeds in fuzz/corpus/TARGET are only read); a crash's input to
# fuzz/artifacts/TARGET/, with the command that replays it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
tools="$root/.tools/cargo"
cargo_fuzz="$tools/bin/cargo-fuzz"
CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-15}"
jobs="${FUZZ_JOBS:-2}"

targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz/Cargo.toml" | grep -v '^temporal-mtls-proxy-fuzz$'
}

case "${1:-}" in
    --list)
        targets
        exit 0
        ;;
    -h | --help)
        sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac

if [ ! -x "$cargo_fuzz" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/cargo" >&2
    if ! cargo install --quiet --root "$tools" cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked; then
        if [ "${CI:-}" = true ]; then
            echo "fuzz: FAILED: cannot install cargo-fuzz" >&2
            exit 1
        fi
        echo "fuzz: WARNING: cannot install cargo-fuzz; fuzz targets not run" >&2
        exit 0
    fi
fi

# The Temporal API protos the temporal_api target decodes with: those the
# official Python SDK ships (scripts/tools.sh installs it into .tools/venv).
if [ -z "${TEMPORAL_API_PROTOS:-}" ]; then
    for dir in "$root"/.tools/venv/lib/python3*/site-packages/temporalio/bridge/sdk-core/crates/protos/protos/api_upstream; do
        [ -f "$dir/temporal/api/workflowservice/v1/service.proto" ] && TEMPORAL_API_PROTOS="$dir"
    done
fi
if [ -z "${TEMPORAL_API_PROTOS:-}" ]; then
    if [ "${CI:-}" = true ]; then
        echo "fuzz: FAILED: no Temporal API protos (the Python SDK in .tools/venv: run scripts/tools.sh)" >&2
        exit 1
    fi
    echo "fuzz: WARNING: no Temporal API protos (run scripts/tools.sh first); fuzz targets not run" >&2
    exit 0
fi
export TEMPORAL_API_PROTOS

export RUSTC_BOOTSTRAP=1
# Coverage instrumentation without a sanitizer (the proxy forbids unsafe
# code; debug assertions and overflow checks stay on), release mode.
build_flags=(--sanitizer none --debug-assertions --release)
target_dir="${FUZZ_TARGET_DIR:-$fuzz/target}"
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    build_flags+=(--target-dir "$FUZZ_TARGET_DIR")
fi
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

build() {
    local started=$SECONDS
    (cd "$fuzz" && "$cargo_fuzz" build "${build_flags[@]}") >&2
    echo "fuzz: built in $((SECONDS - started)) s" >&2
}

# Flags per target: how long an input may be.
max_len() {
    case "$1" in
        config | crl | peer_identity) echo 16384 ;;
        frame_guard | hpack | temporal_api) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

# Runs one target for $2 seconds; extra libFuzzer flags after.
run() {
    local target="$1" time="$2"
    shift 2
    local work="$target_dir/corpus/$target" seeds="$fuzz/corpus/$target"
    local artifacts="$fuzz/artifacts/$target" log="$target_dir/logs/$target.log"
    mkdir -p "$work" "$seeds" "$artifacts" "$(dirname "$log")"
    local dict=()
    if [ -f "$fuzz/dict/$target.dict" ]; then
        dict=("-dict=$fuzz/dict/$target.dict")
    fi
    local status=0
    "$bin_dir/$target" "$work" "$seeds" \
        -max_total_time="$time" -max_len="$(max_len "$target")" \
        -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "${dict[@]}" "$@" >"$log" 2>&1 || status=$?
    local runs
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $target FAILED (exit $status) after ${runs:-?} runs; log $log:" >&2
        # The panic and libFuzzer's summary, without the backtrace.
        grep -v -e '^#[0-9]' -e '^ *[0-9]*: ' -e '^ *at ' -e '^INFO' -e '^WARNING' "$log" | tail -25 >&2
        local crash
        crash="$(ls -t "$artifacts" 2>/dev/null | head -1)"
        if [ -n "$crash" ]; then
            echo "fuzz: replay with: $bin_dir/$target $artifacts/$crash" >&2
        fi
        return 1
    fi
    echo "fuzz: $target ok: ${runs:-?} runs in ${time} s"
}

if [ "${1:-}" = --build ]; then
    build
    exit 0
fi

if [ $# -ge 1 ]; then
    target="$1"
    time="${2:-60}"
    shift $(($# >= 2 ? 2 : 1))
    [ "${1:-}" = -- ] && shift
    if ! targets | grep -qx "$target"; then
        echo "fuzz: no target $target (scripts/fuzz.sh --list)" >&2
        exit 2
    fi
    build
    jobs="${FUZZ_JOBS:-1}"
    if [ "$jobs" -gt 1 ]; then
        run "$target" "$time" -fork="$jobs" -ignore_crashes=0 "$@"
    else
        run "$target" "$time" "$@"
    fi
    exit
fi

started=$SECONDS
build
failed=()
all=($(targets))
for ((i = 0; i < ${#all[@]}; i += jobs)); do
    pids=()
    names=()
    for target in "${all[@]:i:jobs}"; do
        run "$target" "$seconds" -seed="${FUZZ_SEED:-1}" &
        pids+=($!)
        names+=("$target")
    done
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || failed+=("${names[$k]}")
    done
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds} s clean (${#all[@]} targets, $((SECONDS - started)) s in all)"
