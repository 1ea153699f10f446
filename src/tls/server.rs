//! The rustls server configuration for the listener: the server certificate,
//! client certificates verified against the CA bundle (plus optional CRLs),
//! required unless `tls.client_certificate = "optional"` (then a client
//! may connect without one, and its calls need a bearer token), ALPN `h2`
//! only, TLS 1.2+ or 1.3 only.

use std::sync::Arc;

use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};

use super::{provider, ALPN_H2};

/// The lowest TLS version accepted from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTlsVersion {
    Tls12,
    Tls13,
}

/// Everything the listener's TLS needs, already loaded and checked.
#[derive(Debug, Clone)]
pub struct ServerTlsMaterial {
    pub certified_key: Arc<CertifiedKey>,
    pub client_roots: Arc<RootCertStore>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub min_version: MinTlsVersion,
    /// A client may connect without a certificate (a certificate it
    /// presents is still verified); the token layer then requires a valid
    /// bearer token on each of its calls.
    pub client_certificate_optional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS settings rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the server config. Revocation: with CRLs configured, every
/// certificate in the client chain is checked against them; a CA for which
/// no CRL was supplied is not treated as revoked (operators often publish a
/// CRL for the issuing CA only).
pub fn server_config(material: &ServerTlsMaterial) -> Result<Arc<ServerConfig>, ServerTlsError> {
    let provider = provider();
    // No CA names in the CertificateRequest: clients (Go's among them) then
    // send their certificate even when it is from another CA, so the refusal
    // is logged as "unknown CA" instead of a puzzling "no certificate"; it
    // also keeps the CA list private and the handshake small.
    let mut verifier = WebPkiClientVerifier::builder_with_provider(
        material.client_roots.clone(),
        provider.clone(),
    )
    .clear_root_hint_subjects();
    if !material.crls.is_empty() {
        verifier = verifier
            .with_crls(material.crls.iter().cloned())
            .allow_unknown_revocation_status();
    }
    if material.client_certificate_optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build()?;

    let versions: &[&'static rustls::SupportedProtocolVersion] = match material.min_version {
        MinTlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(
            material.certified_key.clone(),
        )));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}
