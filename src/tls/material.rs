//! Reading certificates, keys, CA bundles and CRLs from PEM files, with
//! errors that name the file and say what is wrong with it. Nothing here
//! panics on a bad file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::provider;

/// A problem with one TLS file.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no PEM {what} found (expected a '-----BEGIN {what}-----' block)", path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{}: invalid PEM: {detail}", path.display())]
    Pem { path: PathBuf, detail: String },
    #[error("{}: not a usable private key (PKCS#8, SEC1 or PKCS#1 with RSA, ECDSA P-256/P-384 or Ed25519): {detail}", path.display())]
    Key { path: PathBuf, detail: String },
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: certificate #{index} cannot be parsed: {detail}", path.display())]
    Certificate {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error("{}: certificate {subject} expired on {not_after}", path.display())]
    Expired {
        path: PathBuf,
        subject: String,
        not_after: String,
    },
    #[error("{}: certificate {subject} is not valid before {not_before}", path.display())]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: String,
    },
    #[error("{}: CA certificate #{index} rejected as a trust anchor: {detail}", path.display())]
    Anchor {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error("{}: not a valid CRL: {detail}", path.display())]
    Crl { path: PathBuf, detail: String },
}

fn pem_error(path: &Path, err: rustls::pki_types::pem::Error) -> MaterialError {
    match err {
        rustls::pki_types::pem::Error::Io(source) => MaterialError::Read {
            path: path.to_owned(),
            source,
        },
        other => MaterialError::Pem {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Refuses a PEM file with a `-----BEGIN` that does not start a line: the
/// PEM reader skips such a block without a word, so a file concatenated
/// from two without a newline between them (`-----END X509 CRL----------BEGIN
/// X509 CRL-----`) would lose its second CRL, certificate or CA.
fn check_block_starts(path: &Path) -> Result<(), MaterialError> {
    let text = std::fs::read(path).map_err(|source| MaterialError::Read {
        path: path.to_owned(),
        source,
    })?;
    const BEGIN: &[u8] = b"-----BEGIN";
    let mut line = 1;
    for (at, window) in text.windows(BEGIN.len()).enumerate() {
        if window == BEGIN && at > 0 && text[at - 1] != b'\n' {
            return Err(MaterialError::Pem {
                path: path.to_owned(),
                detail: format!(
                    "line {line}: a '-----BEGIN' in the middle of a line (files joined without a newline?); every PEM block must start on a line of its own"
                ),
            });
        }
        if text[at] == b'\n' {
            line += 1;
        }
    }
    Ok(())
}

/// A PEM certificate chain, leaf first; each certificate must parse and be
/// within its validity period now.
pub fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    check_block_starts(path)?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(MaterialError::Empty {
            path: path.to_owned(),
            what: "CERTIFICATE",
        });
    }
    for (index, der) in certs.iter().enumerate() {
        check_validity(path, index, der)?;
    }
    Ok(certs)
}

fn check_validity(
    path: &Path,
    index: usize,
    der: &CertificateDer<'_>,
) -> Result<(), MaterialError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| MaterialError::Certificate {
            path: path.to_owned(),
            index,
            detail: e.to_string(),
        })?;
    let now = x509_parser::time::ASN1Time::now();
    let validity = cert.validity();
    if now > validity.not_after {
        return Err(MaterialError::Expired {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now < validity.not_before {
        return Err(MaterialError::NotYetValid {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// Subject and not-after of each certificate (DER) that parses.
pub fn expiry_dates<'a>(ders: impl Iterator<Item = &'a [u8]>) -> Vec<(String, SystemTime)> {
    ders.filter_map(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let secs = cert.validity().not_after.timestamp();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        Some((cert.subject().to_string(), at))
    })
    .collect()
}

/// [`expiry_dates`] of the certificates of a PEM file (none when it cannot
/// be read: its loading, which reports that, comes first).
pub fn file_expiry_dates(path: &Path) -> Vec<(String, SystemTime)> {
    let Ok(iter) = CertificateDer::pem_file_iter(path) else {
        return Vec::new();
    };
    let ders: Vec<CertificateDer<'static>> = iter.filter_map(Result::ok).collect();
    expiry_dates(ders.iter().map(|d| d.as_ref()))
}

/// A PEM private key: PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, MaterialError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => MaterialError::Empty {
            path: path.to_owned(),
            what: "PRIVATE KEY",
        },
        other => pem_error(path, other),
    })
}

/// Pairs an already loaded chain and key, checking that they belong together
/// (the paths are for messages).
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, MaterialError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| MaterialError::Key {
            path: key.to_owned(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        // `Unknown` means the key type cannot export its public key for the
        // comparison; the handshake will still fail loudly if it is wrong.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(MaterialError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// A PEM bundle of CA certificates (roots and intermediates), each one a
/// trust anchor. Expired CAs are refused so that a stale bundle is noticed at
/// start rather than as handshake failures.
pub fn load_ca_bundle(path: &Path) -> Result<RootCertStore, MaterialError> {
    let certs = load_cert_chain(path)?;
    let mut roots = RootCertStore::empty();
    for (index, der) in certs.into_iter().enumerate() {
        roots.add(der).map_err(|e| MaterialError::Anchor {
            path: path.to_owned(),
            index,
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A CRL file (PEM `X509 CRL` blocks; several may be concatenated).
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, MaterialError> {
    check_block_starts(path)?;
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if crls.is_empty() {
        return Err(MaterialError::Empty {
            path: path.to_owned(),
            what: "X509 CRL",
        });
    }
    for crl in &crls {
        x509_parser::parse_x509_crl(crl).map_err(|e| MaterialError::Crl {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        // The client verifier is built from these by webpki, which is
        // stricter (trailing data, for one): what it refuses is refused here,
        // under the file's name.
        webpki::OwnedCertRevocationList::from_der(crl).map_err(|e| MaterialError::Crl {
            path: path.to_owned(),
            detail: format!("webpki refuses it: {e}"),
        })?;
    }
    Ok(crls)
}
