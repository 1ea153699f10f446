//! Who the client is: the verified leaf certificate read once per connection
//! (x509-parser) into a [`PeerIdentity`], which the connection's calls share
//! behind an `Arc` for authorization, identity headers and audit.
//!
//! This module only reads; it does not verify. It runs after rustls has
//! verified the chain, so a certificate that does not parse here is refused
//! as a whole rather than read partly. Attribute values that are not text
//! (or not decodable text) are skipped: the policy only grants, so a value
//! that cannot be read can only cost permissions, never add them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::asn1_rs::Tag;
use x509_parser::prelude::{AttributeTypeAndValue, FromDer, GeneralName, X509Certificate};

/// The verified client certificate's identity, built once per connection and
/// shared by its calls (`Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject as x509-parser formats it, e.g.
    /// `CN=good-client, OU=payments, O=Example`. For display only: values
    /// are not escaped, so never match on it.
    pub subject: String,
    /// Every subject commonName, in certificate order.
    pub cn: Vec<String>,
    /// Every subject organizationName.
    pub o: Vec<String>,
    /// Every subject organizationalUnitName (a subject may have several).
    pub ou: Vec<String>,
    /// SAN dNSName entries.
    pub dns: Vec<String>,
    /// SAN uniformResourceIdentifier entries.
    pub uri: Vec<String>,
    /// SAN rfc822Name entries, then subject emailAddress values not already
    /// listed (compared case-insensitively).
    pub email: Vec<String>,
    /// SAN iPAddress entries.
    pub ip: Vec<IpAddr>,
    /// The first URI SAN whose scheme is `spiffe` (any case).
    pub spiffe_id: Option<String>,
    /// Serial number, lowercase hex without separators or leading zero bytes
    /// (`00` for a zero serial).
    pub serial: String,
    /// Lowercase hex SHA-256 of the certificate DER.
    pub fingerprint_sha256: String,
    pub not_after: SystemTime,
}

/// Why a client certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("client certificate cannot be parsed: {0}")]
    Parse(String),
}

impl PeerIdentity {
    /// Reads the identity from a DER certificate (the leaf the client
    /// presented and rustls verified).
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(IdentityError::Parse(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }
        let name = cert.subject();

        let mut dns = Vec::new();
        let mut uri = Vec::new();
        let mut email = Vec::new();
        let mut ip = Vec::new();
        // An unreadable or duplicated SAN extension is an error, not "no
        // SANs": the SANs are the identity of most workload certificates.
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Parse(format!("subject alternative name: {e}")))?;
        for general_name in san.iter().flat_map(|san| &san.value.general_names) {
            match general_name {
                GeneralName::DNSName(name) => dns.push((*name).to_owned()),
                GeneralName::URI(name) => uri.push((*name).to_owned()),
                GeneralName::RFC822Name(name) => email.push((*name).to_owned()),
                GeneralName::IPAddress(bytes) => ip.extend(ip_address(bytes)),
                // Other names, directory names, and entries x509-parser
                // could not decode (GeneralName::Invalid) grant nothing.
                _ => {}
            }
        }
        for address in attribute_texts(name.iter_email()) {
            if !email.iter().any(|e| e.eq_ignore_ascii_case(&address)) {
                email.push(address);
            }
        }
        let spiffe_id = uri.iter().find(|u| is_spiffe(u)).cloned();
        if cert.raw_serial().is_empty() {
            // DER has no empty INTEGER; x509-parser reads one all the same.
            return Err(IdentityError::Parse(
                "the serial number is empty (not valid DER)".to_owned(),
            ));
        }

        let not_after = system_time(cert.validity().not_after.timestamp()).ok_or_else(|| {
            IdentityError::Parse("not-after date out of the system's time range".to_owned())
        })?;
        let fingerprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);

        Ok(PeerIdentity {
            subject: name.to_string(),
            cn: attribute_texts(name.iter_common_name()),
            o: attribute_texts(name.iter_organization()),
            ou: attribute_texts(name.iter_organizational_unit()),
            dns,
            uri,
            email,
            ip,
            spiffe_id,
            serial: hex(serial_bytes(cert.raw_serial())),
            fingerprint_sha256: hex(fingerprint.as_ref()),
            not_after,
        })
    }

    /// One short human label for logs and error messages: the SPIFFE ID,
    /// else the first CN, else the subject; for a certificate with an empty
    /// subject and no SPIFFE ID, the first URI, DNS name or email SAN, and
    /// as a last resort the fingerprint (never empty).
    pub fn display_name(&self) -> &str {
        self.spiffe_id
            .as_deref()
            .or_else(|| first_non_empty(&self.cn))
            .or_else(|| Some(self.subject.as_str()).filter(|s| !s.is_empty()))
            .or_else(|| first_non_empty(&self.uri))
            .or_else(|| first_non_empty(&self.dns))
            .or_else(|| first_non_empty(&self.email))
            .unwrap_or(&self.fingerprint_sha256)
    }
}

fn first_non_empty(values: &[String]) -> Option<&str> {
    values.iter().find(|v| !v.is_empty()).map(String::as_str)
}

/// The readable values among `attributes`, in order.
fn attribute_texts<'x, 'a: 'x>(
    attributes: impl Iterator<Item = &'x AttributeTypeAndValue<'a>>,
) -> Vec<String> {
    attributes.filter_map(attribute_text).collect()
}

/// An attribute value as text: the string types x509-parser reads itself
/// (UTF8String, PrintableString, IA5String, NumericString), plus BMPString
/// (UTF-16) and UniversalString (UTF-32) that older CAs still issue, and
/// VisibleString/TeletexString when their bytes are UTF-8 (as x509-parser's
/// subject formatting reads them). Anything else: `None`.
fn attribute_text(attribute: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(text) = attribute.as_str() {
        return Some(text.to_owned());
    }
    let value = attribute.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|p| char::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
                .collect()
        }
        Tag::VisibleString | Tag::T61String => std::str::from_utf8(data).ok().map(str::to_owned),
        _ => None,
    }
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    // 8- and 32-byte forms (address + mask) belong to name constraints, not
    // to an end-entity's SAN.
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

fn is_spiffe(uri: &str) -> bool {
    uri.as_bytes()
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"spiffe:"))
}

/// The serial's magnitude: DER's leading zero bytes (added to keep a serial
/// with its high bit set positive) removed, one zero byte kept for zero.
fn serial_bytes(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw.get(start..).unwrap_or_default()
}

fn system_time(unix_seconds: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::string::{BmpString, Ia5String, UniversalString};
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType, SerialNumber,
    };

    const OU_OID: [u64; 4] = [2, 5, 4, 11];
    const EMAIL_ADDRESS_OID: [u64; 7] = [1, 2, 840, 113549, 1, 9, 1];

    fn ia5(text: &str) -> Ia5String {
        Ia5String::try_from(text).unwrap()
    }

    fn self_signed(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn params(dn: DistinguishedName, sans: Vec<SanType>) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params
    }

    /// A client certificate with every field the identity reads: CN, two
    /// OUs, O, subject emailAddress, and DNS, URI (SPIFFE and another),
    /// email and IP SANs.
    fn full_certificate() -> (Vec<u8>, time::OffsetDateTime) {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "good-client");
        dn.push(DnType::OrganizationalUnitName, "payments");
        // rcgen keeps one value per attribute type; the same OID under a
        // custom type gives the subject a second OU.
        dn.push(DnType::CustomDnType(OU_OID.to_vec()), "platform");
        dn.push(DnType::OrganizationName, "Example");
        dn.push(
            DnType::CustomDnType(EMAIL_ADDRESS_OID.to_vec()),
            DnValue::Ia5String(ia5("Subject@Example.org")),
        );
        let mut params = params(
            dn,
            vec![
                SanType::DnsName(ia5("worker.payments.example.org")),
                SanType::URI(ia5("https://example.org/not-spiffe")),
                SanType::URI(ia5("spiffe://example.org/ns/payments/sa/worker")),
                SanType::Rfc822Name(ia5("team@example.org")),
                SanType::Rfc822Name(ia5("subject@example.org")),
                SanType::IpAddress("10.1.2.3".parse().unwrap()),
                SanType::IpAddress("2001:db8::7".parse().unwrap()),
            ],
        );
        // High bit set: DER prefixes a zero byte that the serial must not show.
        params.serial_number = Some(SerialNumber::from_slice(&[0x8f, 0x01, 0x0a]));
        let not_after = rcgen::date_time_ymd(2031, 5, 6);
        params.not_after = not_after;
        (self_signed(params), not_after)
    }

    /// SHA-256 through rustls' hash provider and `format!`: a different path
    /// to the same answer than the one under test.
    fn sha256_hex(der: &[u8]) -> String {
        let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let hash = suite.tls13().unwrap().common.hash_provider.hash(der);
        hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn reads_every_field() {
        let (der, not_after) = full_certificate();
        let id = PeerIdentity::from_der(&der).unwrap();
        assert_eq!(
            id.subject,
            "CN=good-client, OU=payments, OU=platform, O=Example, Email=Subject@Example.org"
        );
        assert_eq!(id.cn, ["good-client"]);
        assert_eq!(id.ou, ["payments", "platform"]);
        assert_eq!(id.o, ["Example"]);
        assert_eq!(id.dns, ["worker.payments.example.org"]);
        assert_eq!(
            id.uri,
            [
                "https://example.org/not-spiffe",
                "spiffe://example.org/ns/payments/sa/worker"
            ]
        );
        // SAN emails first; the subject's emailAddress only when new.
        assert_eq!(id.email, ["team@example.org", "subject@example.org"]);
        assert_eq!(
            id.ip,
            [
                "10.1.2.3".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(
            id.spiffe_id.as_deref(),
            Some("spiffe://example.org/ns/payments/sa/worker")
        );
        assert_eq!(id.serial, "8f010a");
        assert_eq!(id.fingerprint_sha256, sha256_hex(&der));
        assert_eq!(id.fingerprint_sha256.len(), 64);
        let seconds = u64::try_from(not_after.unix_timestamp()).unwrap();
        assert_eq!(id.not_after, UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(
            id.display_name(),
            "spiffe://example.org/ns/payments/sa/worker"
        );
    }

    #[test]
    fn subject_email_is_added_when_no_san_lists_it() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "c");
        dn.push(
            DnType::CustomDnType(EMAIL_ADDRESS_OID.to_vec()),
            DnValue::Ia5String(ia5("only@example.org")),
        );
        let id = PeerIdentity::from_der(&self_signed(params(dn, vec![]))).unwrap();
        assert_eq!(id.email, ["only@example.org"]);
        assert!(id.dns.is_empty() && id.uri.is_empty() && id.ip.is_empty());
        assert_eq!(id.spiffe_id, None);
    }

    #[test]
    fn spiffe_scheme_is_case_insensitive_and_the_first_one_wins() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "c");
        let sans = vec![
            SanType::URI(ia5("spiffe-like://example.org/x")),
            SanType::URI(ia5("SPIFFE://Example.org/ns/a/sa/one")),
            SanType::URI(ia5("spiffe://example.org/ns/a/sa/two")),
        ];
        let id = PeerIdentity::from_der(&self_signed(params(dn, sans))).unwrap();
        assert_eq!(
            id.spiffe_id.as_deref(),
            Some("SPIFFE://Example.org/ns/a/sa/one")
        );
    }

    #[test]
    fn display_name_falls_back_from_spiffe_to_cn_to_subject_to_sans() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "good-client");
        dn.push(DnType::OrganizationName, "Example");
        let id = PeerIdentity::from_der(&self_signed(params(dn, vec![]))).unwrap();
        assert_eq!(id.display_name(), "good-client");

        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Example");
        let id = PeerIdentity::from_der(&self_signed(params(dn, vec![]))).unwrap();
        assert_eq!(id.display_name(), "O=Example");

        let sans = vec![SanType::DnsName(ia5("worker.example.org"))];
        let id =
            PeerIdentity::from_der(&self_signed(params(DistinguishedName::new(), sans))).unwrap();
        assert_eq!(id.subject, "");
        assert_eq!(id.display_name(), "worker.example.org");

        let mut id = id;
        id.dns.clear();
        assert_eq!(id.display_name(), id.fingerprint_sha256);
    }

    #[test]
    fn bmp_and_universal_strings_are_decoded() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            DnValue::BmpString(BmpString::try_from("Zahlungsverkehr-Ä").unwrap()),
        );
        dn.push(
            DnType::OrganizationName,
            DnValue::UniversalString(UniversalString::try_from("Ébène 🦀").unwrap()),
        );
        let id = PeerIdentity::from_der(&self_signed(params(dn, vec![]))).unwrap();
        assert_eq!(id.cn, ["Zahlungsverkehr-Ä"]);
        assert_eq!(id.o, ["Ébène 🦀"]);
    }

    /// Found by the `peer_identity` fuzz target: a certificate whose serial
    /// is an empty INTEGER gave an identity with an empty serial.
    #[test]
    fn an_empty_serial_is_an_error() {
        let der = include_bytes!("../../fuzz/corpus/peer_identity/regression-empty-serial");
        let error = PeerIdentity::from_der(der).unwrap_err();
        assert!(
            error.to_string().contains("serial number is empty"),
            "{error}"
        );
    }

    #[test]
    fn zero_and_small_serials() {
        assert_eq!(hex(serial_bytes(&[0x00])), "00");
        assert_eq!(hex(serial_bytes(&[0x00, 0x00, 0x01])), "01");
        assert_eq!(hex(serial_bytes(&[0x00, 0x80])), "80");
        assert_eq!(hex(serial_bytes(&[0x7f, 0x00])), "7f00");
        assert_eq!(hex(serial_bytes(&[])), "");
    }

    #[test]
    fn hex_known_answer() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"abc");
        assert_eq!(
            hex(digest.as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for der in [
            &b""[..],
            b"not a certificate",
            &[0x30, 0x03, 0x02, 0x01, 0x00],
        ] {
            let error = PeerIdentity::from_der(der).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("client certificate cannot be parsed"),
                "{error}"
            );
        }
    }

    #[test]
    fn truncated_or_padded_certificate_is_an_error() {
        let (der, _) = full_certificate();
        assert!(PeerIdentity::from_der(&der[..der.len() - 1]).is_err());
        let mut padded = der.clone();
        padded.push(0);
        let error = PeerIdentity::from_der(&padded).unwrap_err();
        assert!(error.to_string().contains("trailing"), "{error}");
    }

    #[test]
    fn no_panic_on_corrupted_certificates() {
        let (der, _) = full_certificate();
        for i in 0..der.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                let _ = PeerIdentity::from_der(&bad);
            }
            let _ = PeerIdentity::from_der(&der[..i]);
        }
    }
}
