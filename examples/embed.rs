//! Embedding the proxy in another Rust program: load a config, bind, and
//! run until Ctrl-C.
//!
//!   cargo run --release -- dev            # once, to make dev-pki/proxy.toml
//!   cargo run --example embed -- dev-pki/proxy.toml
//!
//! Examples may `expect()`: a failure here should stop the program loudly.

use std::path::PathBuf;

use temporal_mtls_proxy::Config;

#[tokio::main]
async fn main() {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("dev-pki/proxy.toml"));
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(64);
        }
    };
    // Held until the end: dropping it writes out the queued log lines.
    let _log =
        temporal_mtls_proxy::logging::init(temporal_mtls_proxy::logging::LogFormat::Text, "info")
            .expect("log level");
    let listener = temporal_mtls_proxy::bind(&config).await.expect("bind");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    temporal_mtls_proxy::run(config, listener, shutdown)
        .await
        .expect("run");
}
