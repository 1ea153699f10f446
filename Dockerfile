# Container image for temporal-mtls-proxy.
#
#   docker build -t temporal-mtls-proxy .
#   docker run --rm -p 7233:7233 -p 9090:9090 \
#     -v /path/to/proxy.toml:/etc/temporal-mtls-proxy/proxy.toml:ro \
#     -v /path/to/tls:/etc/temporal-mtls-proxy/tls:ro \
#     temporal-mtls-proxy
#
# The image runs as uid/gid 65532 (no root), reads its config from
# /etc/temporal-mtls-proxy/proxy.toml and logs JSON to stdout. Port 7233 is
# the mTLS listener and 9090 the admin listener (/metrics, /healthz,
# /readyz), when the config sets them so. See deploy/README.md.

# ---- Build stage -----------------------------------------------------------
# aws-lc-sys (the rustls crypto provider) needs only a C compiler, which this
# image has (gcc); cmake and Go are not needed.
FROM rust:1-bookworm AS build
WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml
# or Cargo.lock change, not on every source edit. Cargo needs every target
# the manifest names to exist, so the library, the binary and the bench get
# empty stand-ins for this step.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/authz.rs \
    && cargo build --release --locked --bin temporal-mtls-proxy \
    && rm -rf src benches

# The proxy itself. The stand-ins' build outputs are removed first: COPY keeps
# the files' modification times, which can be older than that build, and
# cargo would otherwise take the stand-in binary as up to date. The last line
# fails the build if the binary is still the silent stand-in.
COPY src ./src
COPY benches ./benches
RUN cargo clean --release -p temporal-mtls-proxy \
    && cargo build --release --locked --bin temporal-mtls-proxy \
    && test -n "$(./target/release/temporal-mtls-proxy --version)"

# ---- Runtime stage ---------------------------------------------------------
FROM debian:bookworm-slim

# CA certificates only: the proxy needs nothing else from the system (it is
# built against the same glibc in the bookworm build image).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid (65532, the usual "nonroot" id), so Kubernetes'
# runAsUser/fsGroup and file ownership on mounted volumes can name it.
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin nonroot \
    && mkdir -p /etc/temporal-mtls-proxy/tls

COPY --from=build /build/target/release/temporal-mtls-proxy /usr/local/bin/temporal-mtls-proxy

USER 65532:65532

# 7233: mTLS gRPC listener; 9090: admin listener (metrics, health probes).
EXPOSE 7233 9090

# SIGTERM starts the graceful drain (shutdown.drain_timeout, 90 s by default):
# give the container more than that to stop, e.g. `docker stop -t 100`.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/temporal-mtls-proxy"]
CMD ["--config", "/etc/temporal-mtls-proxy/proxy.toml", "--log-format", "json"]
