//! The tools' own TLS setup (rustls with the aws-lc-rs provider, as the
//! proxy): PEM files in, client and server configs with ALPN `h2` out. Kept
//! apart from the proxy's TLS code on purpose: the tools are clients and a
//! fake server for benchmarks, not the product, and check less (no validity
//! or CRL checks; a handshake with a bad certificate simply fails).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol id of HTTP/2, the only one spoken.
pub const ALPN_H2: &[u8] = b"h2";

/// The rustls crypto provider of the tools: aws-lc-rs, the proxy's.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// A certificate chain and its private key, as read from PEM files.
pub struct KeyPair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Every certificate of a PEM file, in order; an error names the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM CERTIFICATE found", path.display()));
    }
    Ok(certs)
}

/// A CA bundle (PEM): every certificate in it is a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in load_certs(path)?.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("{}: CA certificate #{index}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8,
/// SEC1 or PKCS#1).
pub fn load_key_pair(cert: &Path, key: &Path) -> Result<KeyPair, String> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(KeyPair { chain, key })
}

/// A client config: server certificates verified against `roots`, the
/// client certificate `identity` if given, ALPN `h2`.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<KeyPair>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(pair) => builder
            .with_client_auth_cert(pair.chain, pair.key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// A server config: the certificate `identity`, client certificates
/// required and verified against `client_roots` if given, ALPN `h2`.
pub fn server_config(
    identity: KeyPair,
    client_roots: Option<RootCertStore>,
) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| format!("server certificate: {e}"))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}
