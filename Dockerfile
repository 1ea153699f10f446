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

# The whole build context, as .dockerignore leaves it (no target/, .tools/,
# dev-pki/, .git): whatever targets, benches and workspace members the
# manifests name, their files are here. No hand-kept list of stand-ins to
# drift out of step with Cargo.toml (tests/dockerfile.rs runs these steps on
# a copy of the tree).
COPY . .

# Only the proxy binary is built. The two cache mounts (BuildKit, the default
# builder since Docker 23; Podman and Buildah support them too) keep the
# downloaded crates and the build folder from one build to the next, so a
# source edit rebuilds the proxy, not its dependencies. The build folder is a
# cache, not part of the image: the binary is copied out of it, and the last
# line fails the build if it does not run.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --package temporal-mtls-proxy --bin temporal-mtls-proxy \
    && install -D -m 0755 target/release/temporal-mtls-proxy /out/temporal-mtls-proxy \
    && /out/temporal-mtls-proxy --version

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

COPY --from=build /out/temporal-mtls-proxy /usr/local/bin/temporal-mtls-proxy

# The allocator (mimalloc) gives memory it no longer uses back to the OS at
# once. Its own default waits 1 s, and then only when that thread allocates
# again: after a burst of 3,000 connections the proxy kept ~183 MiB resident
# with no use for it; with 0 it falls back to ~26 MiB (benches/allocator.sh,
# BENCHMARKS.md "Allocator: memory after a burst").
ENV MIMALLOC_PURGE_DELAY=0

USER 65532:65532

# 7233: mTLS gRPC listener; 9090: admin listener (metrics, health probes).
EXPOSE 7233 9090

# SIGTERM starts the graceful drain (shutdown.drain_timeout, 90 s by default):
# give the container more than that to stop, e.g. `docker stop -t 100`.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/temporal-mtls-proxy"]
CMD ["--config", "/etc/temporal-mtls-proxy/proxy.toml", "--log-format", "json"]
