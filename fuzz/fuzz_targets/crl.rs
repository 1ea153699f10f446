//! CRL loading (`tls::material::load_crls`, as `[tls] crl` files are read)
//! and, over the same file, the certificate loaders (`load_cert_chain`,
//! `load_ca_bundle`) that read `tls.cert`, `tls.client_ca` and
//! `upstream.ca`.
//!
//! - Never a panic; every error names the file.
//! - The CRLs loaded are exactly the `X509 CRL` PEM blocks of the file, in
//!   order, as an independent PEM reader (the pem crate) finds them; each
//!   is a CRL webpki (what rustls checks revocation with) accepts too.
//! - The certificates loaded are exactly the file's `CERTIFICATE` blocks.
#![no_main]

use std::io::Write;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{load_ca_bundle, load_cert_chain, load_crls};

fn file() -> &'static PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("tmp-fuzz-crl-{}.pem", std::process::id()))
    })
}

/// The DER of every block labelled `label` that the pem crate reads, or
/// `None` when it cannot read the text at all.
fn blocks(data: &[u8], label: &str) -> Option<Vec<Vec<u8>>> {
    let all = pem::parse_many(data).ok()?;
    Some(
        all.into_iter()
            .filter(|p| p.tag() == label)
            .map(|p| p.into_contents())
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let path = file();
    std::fs::File::create(path)
        .unwrap()
        .write_all(data)
        .unwrap();
    let shown = path.display().to_string();

    match load_crls(path) {
        Ok(crls) => {
            assert!(!crls.is_empty());
            if let Some(want) = blocks(data, "X509 CRL") {
                let got: Vec<Vec<u8>> = crls.iter().map(|c| c.as_ref().to_vec()).collect();
                assert_eq!(got, want, "CRL blocks");
            }
            for crl in &crls {
                // webpki must take what the loader takes: the client
                // verifier is built from these.
                if let Err(e) = webpki_accepts(crl.as_ref()) {
                    panic!("the loader accepted a CRL webpki refuses: {e}");
                }
            }
        }
        Err(e) => assert!(
            e.to_string().contains(&shown),
            "error does not name the file: {e}"
        ),
    }
    match load_cert_chain(path) {
        Ok(certs) => {
            if let Some(want) = blocks(data, "CERTIFICATE") {
                let got: Vec<Vec<u8>> = certs.iter().map(|c| c.as_ref().to_vec()).collect();
                assert_eq!(got, want, "certificate blocks");
            }
        }
        Err(e) => assert!(
            e.to_string().contains(&shown),
            "error does not name the file: {e}"
        ),
    }
    if let Err(e) = load_ca_bundle(path) {
        assert!(
            e.to_string().contains(&shown),
            "error does not name the file: {e}"
        );
    }
});

fn webpki_accepts(der: &[u8]) -> Result<(), String> {
    let roots = roots();
    let crl = rustls::pki_types::CertificateRevocationListDer::from(der.to_vec());
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .with_crls([crl])
    .build()
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn roots() -> &'static std::sync::Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<std::sync::Arc<rustls::RootCertStore>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let mut store = rustls::RootCertStore::empty();
        store.add(ca.der().clone()).unwrap();
        std::sync::Arc::new(store)
    })
}
