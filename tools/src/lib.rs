//! Benchmark tools of temporal-mtls-proxy, kept out of the product: the
//! load generator `temporal-loadgen` and the fake Temporal frontend
//! `temporal-fake-frontend` (`src/bin/`), and what they share. Nothing
//! here is installed with the proxy; see `benches/README.md`.

pub mod tls;
