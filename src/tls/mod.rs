//! TLS: the files (`material`), the server side that terminates mutual TLS
//! (`server`), the handshake and the reasons it is refused (`handshake`),
//! and the client side toward an `https://` upstream (`client`).

pub mod client;
pub mod handshake;
pub mod identity;
pub mod material;
pub mod server;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The one rustls crypto provider of the process: aws-lc-rs (see README,
/// "Why these crates"). Built once; every config uses this instance.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The ALPN protocol id of HTTP/2, the only one served.
pub const ALPN_H2: &[u8] = b"h2";
