#!/usr/bin/env bash
# The project's single test command: installs what the tests need into
# .tools/ (ignored by git), then runs rustfmt, clippy and every test.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -E 'test(pki)'  # extra args go to `cargo nextest run`
#                                   # (or to `cargo test` without nextest)
#
# Environment: CI=true makes a missing tool that cannot be installed a hard
# failure. SKIP_LINT=1 skips rustfmt and clippy, FUZZ=0 the fuzz targets,
# SOAK=0 the 2-minute soak (local iteration only); SOAK_SECONDS sets the
# soak's length (default 120).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# shellcheck source=scripts/tools.sh
source scripts/tools.sh

# --- 3. Lint and tests -----------------------------------------------------
# `--workspace`: the proxy and the members under tools/ (the benchmark tools
# and the test encoding they share); a plain `cargo` at the root would take
# the proxy's package alone.
if cargo nextest --version >/dev/null 2>&1; then
    HAVE_NEXTEST=1
else
    HAVE_NEXTEST=0
    printf 'scripts/test.sh: cargo-nextest not found; falling back to cargo test\n' >&2
fi

declare -a RESULTS=()
FAILED=0
step() { # step NAME COMMAND...
    local name=$1
    shift
    log "$name: $*"
    local start=$SECONDS
    if "$@"; then
        RESULTS+=("ok      $name ($((SECONDS - start)) s)")
    else
        RESULTS+=("FAILED  $name ($((SECONDS - start)) s, exit $?)")
        FAILED=1
    fi
}

if [ "${SKIP_LINT:-0}" = 1 ] && [ "$CI" != true ]; then
    RESULTS+=("skipped rustfmt, clippy (SKIP_LINT=1)")
else
    step "rustfmt" cargo fmt --all -- --check
    # The fuzz package is outside the workspace.
    step "rustfmt (fuzz)" cargo fmt --manifest-path fuzz/Cargo.toml -- --check
    step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
fi

# Doc tests first, so that the main run's summary is the last test-runner
# output (nextest does not run doc tests).
step "doc tests" cargo test --workspace --doc --locked
if [ "$HAVE_NEXTEST" = 1 ]; then
    step "tests (nextest)" cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    step "tests (cargo test)" cargo test --workspace --locked --no-fail-fast --lib --bins --tests "$@"
fi

# The soak benchmark, 2 minutes (benches/soak.py; SOAK_SECONDS to change):
# real SDK workers, the load generator, connection churn, reloads and two
# upstream restarts through the debug proxy; fails on any failure the
# restarts do not explain or a component that dies. Not with a filter, or
# SOAK=0 outside CI.
soak() {
    if ! "${TMP_PYTHON:-false}" -c 'import temporalio' 2>/dev/null || [ ! -x "${TEMPORAL_BIN:-}" ]; then
        printf 'scripts/test.sh: the soak needs the venv Python with temporalio and the temporal CLI (scripts/tools.sh)\n' >&2
        return 1
    fi
    # Already built by the test step; builds what is missing.
    cargo build --workspace --locked --bins -q &&
        "$TMP_PYTHON" benches/soak.py --duration "${SOAK_SECONDS:-120}" \
            --proxy target/debug/temporal-mtls-proxy --loadgen target/debug/temporal-loadgen
}
if [ $# -gt 0 ] || { [ "${SOAK:-1}" = 0 ] && [ "$CI" != true ]; }; then
    RESULTS+=("skipped soak (a filtered run, or SOAK=0)")
elif [ "$CI" != true ] && { ! "${TMP_PYTHON:-false}" -c 'import temporalio' 2>/dev/null || [ ! -x "${TEMPORAL_BIN:-}" ]; }; then
    printf 'scripts/test.sh: warning: no venv Python with temporalio or no temporal CLI; skipping the soak\n' >&2
    RESULTS+=("skipped soak (tools missing; CI=true fails instead)")
else
    step "soak (2 min)" soak
fi

# Every fuzz target briefly (scripts/fuzz.sh: FUZZ_SECONDS each, default
# 15): a crash on the seeds or one found within seconds fails the run. Not
# with a filter (a run of some tests) or FUZZ=0 outside CI.
if [ $# -gt 0 ] || { [ "${FUZZ:-1}" = 0 ] && [ "$CI" != true ]; }; then
    RESULTS+=("skipped fuzz targets (a filtered run, or FUZZ=0)")
else
    step "fuzz targets" scripts/fuzz.sh
fi

log "summary"
for line in "${RESULTS[@]}"; do
    printf '  %s\n' "$line"
done
if [ "$FAILED" != 0 ]; then
    printf 'scripts/test.sh: FAILED\n'
    exit 1
fi
printf 'scripts/test.sh: all steps passed\n'
