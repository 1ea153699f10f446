//! Certificate identity extraction (`tls::identity::PeerIdentity::from_der`)
//! from arbitrary DER, and from the certificates of arbitrary PEM text (as
//! the proxy's loaders read PEM, with rustls-pki-types).
//!
//! Never a panic; for an identity read:
//! - the fingerprint is the SHA-256 of exactly these bytes (an independent
//!   implementation, the sha2 crate), 64 lowercase hex digits;
//! - the serial is lowercase hex of whole bytes without leading zero bytes
//!   (`00` for zero);
//! - the SPIFFE ID is the first URI SAN with the `spiffe:` scheme (any
//!   case), and none when there is none;
//! - the display name is never empty;
//! - the same DER read twice gives the same identity; DER with a byte more
//!   after it is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use temporal_mtls_proxy::internals::PeerIdentity;

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check(der: &[u8]) {
    let Ok(id) = PeerIdentity::from_der(der) else {
        return;
    };
    let want: String = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id.fingerprint_sha256, want, "fingerprint");
    assert!(
        id.serial.len() >= 2 && id.serial.len() % 2 == 0 && is_hex(&id.serial),
        "serial {:?}",
        id.serial
    );
    assert!(
        id.serial == "00" || !id.serial.starts_with("00"),
        "serial {:?} has a leading zero byte",
        id.serial
    );
    let spiffe = id.uri.iter().find(|u| {
        u.as_bytes()
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"spiffe:"))
    });
    assert_eq!(id.spiffe_id.as_ref(), spiffe, "SPIFFE ID");
    assert!(!id.display_name().is_empty(), "empty display name");
    assert_eq!(
        PeerIdentity::from_der(der).ok().as_ref(),
        Some(&id),
        "not deterministic"
    );
    let mut longer = der.to_vec();
    longer.push(0);
    assert!(
        PeerIdentity::from_der(&longer).is_err(),
        "trailing byte accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    check(data);
    for der in CertificateDer::pem_slice_iter(data).take(8).flatten() {
        check(&der);
    }
});
