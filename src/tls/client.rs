//! The rustls client configuration toward an `https://` upstream: its own CA,
//! an optional client certificate, ALPN `h2`.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};

use super::{provider, ALPN_H2};

#[derive(Debug, Clone)]
pub struct ClientTlsMaterial {
    pub roots: Arc<RootCertStore>,
    pub client_key: Option<Arc<CertifiedKey>>,
}

#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

pub fn client_config(material: &ClientTlsMaterial) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(material.roots.clone());
    let mut config = match &material.client_key {
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key.clone()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}
