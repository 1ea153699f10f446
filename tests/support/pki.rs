//! A test PKI made at run time with rcgen: a root CA, an intermediate CA
//! (signed by the root), an unrelated "other" CA, a server certificate for
//! `localhost`/`127.0.0.1`, a good client certificate, and one pre-made
//! certificate for each refusal case (expired, not yet valid, other CA,
//! serverAuth-only EKU, revoked + CRL). Everything is written as PEM into a
//! temporary folder that lives as long as the [`TestPki`].
//!
//! All keys are ECDSA P-256 except [`TestPki::rsa_server`]. Good certificates
//! are valid from one day ago to 30 days from now.
//!
//! Files (all PEM), relative to `dir`:
//! - `ca.pem`: the root CA only (the trust bundle to give the proxy);
//! - `intermediate-ca.pem`: the intermediate CA certificate alone;
//! - `other-ca.pem`: the unrelated CA (not trusted by anything by default);
//! - `server.pem` / `server-key.pem` (PKCS#8);
//! - `<name>.pem` / `<name>-key.pem` for each client certificate. A client
//!   certificate's PEM holds the leaf, followed by the intermediate when the
//!   intermediate issued it.
//!
//! rcgen limitation: a distinguished name holds at most one value per
//! attribute type, so [`ClientSpec`] supports at most two `o` and two `ou`
//! values (the second is written under the same OID through rcgen's custom
//! attribute type).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, RsaKeySize, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
const OID_ORGANIZATIONAL_UNIT: &[u64] = &[2, 5, 4, 11];

/// The good client's subject.
pub const GOOD_CLIENT_CN: &str = "good-client";
pub const GOOD_CLIENT_O: &str = "Example";
pub const GOOD_CLIENT_OU: &str = "payments";
pub const GOOD_CLIENT_SPIFFE: &str = "spiffe://example.org/ns/payments/sa/worker";

/// A client (or other leaf) certificate on disk.
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// PEM: the leaf, then the intermediate when the intermediate issued it.
    pub cert: PathBuf,
    /// PEM, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub key: PathBuf,
    /// The subject common name ("" when the certificate has none).
    pub cn: String,
    /// Serial number, big-endian, as it appears in the certificate and CRLs.
    pub serial: Vec<u8>,
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
}

/// Which extended key usages a leaf gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Eku {
    /// clientAuth only.
    #[default]
    Client,
    /// serverAuth only (a client must be refused with this one).
    ServerOnly,
    /// clientAuth and serverAuth.
    ClientAndServer,
    /// No extended key usage extension at all.
    None,
}

/// Which CA signs a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signer {
    /// The root CA (the one in `ca.pem`).
    #[default]
    Root,
    /// The intermediate CA (signed by the root; sent in the client's chain).
    Intermediate,
    /// A separate CA that nothing trusts.
    OtherCa,
}

/// What to put into a client certificate issued by [`TestPki::client_cert`].
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// Subject CN; an empty string leaves the CN out.
    pub cn: String,
    /// Subject O values (at most two).
    pub o: Vec<String>,
    /// Subject OU values (at most two).
    pub ou: Vec<String>,
    /// SAN dNSName entries.
    pub dns: Vec<String>,
    /// SAN URI entries (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// SAN rfc822Name entries.
    pub emails: Vec<String>,
    /// Defaults to now − 1 day.
    pub not_before: Option<OffsetDateTime>,
    /// Defaults to now + 30 days.
    pub not_after: Option<OffsetDateTime>,
    pub eku: Eku,
    pub signer: Signer,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            cn: "test-client".to_string(),
            o: Vec::new(),
            ou: Vec::new(),
            dns: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            not_before: None,
            not_after: None,
            eku: Eku::Client,
            signer: Signer::Root,
        }
    }
}

impl ClientSpec {
    /// A spec with only the CN set.
    pub fn cn(cn: &str) -> Self {
        ClientSpec {
            cn: cn.to_string(),
            ..Default::default()
        }
    }

    /// The good client's subject (CN, O, OU, SPIFFE URI).
    pub fn good_client() -> Self {
        ClientSpec {
            cn: GOOD_CLIENT_CN.to_string(),
            o: vec![GOOD_CLIENT_O.to_string()],
            ou: vec![GOOD_CLIENT_OU.to_string()],
            uris: vec![GOOD_CLIENT_SPIFFE.to_string()],
            ..Default::default()
        }
    }
}

/// A CA: its parameters (needed by rcgen to issue), key and certificate.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A root (self-signed) or, with `parent`, an intermediate CA.
    fn new(cn: &str, parent: Option<&Ca>) -> Ca {
        let key = new_ec_key();
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "temporal-mtls-proxy tests");
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial());
        params.not_before = now - Duration::days(2);
        params.not_after = now + Duration::days(365);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = match parent {
            None => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.self_signed(&key).expect("self-sign root CA")
            }
            Some(parent) => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.use_authority_key_identifier_extension = true;
                params
                    .signed_by(&key, &parent.issuer())
                    .expect("sign intermediate CA")
            }
        };
        Ca {
            params,
            key,
            pem: cert.pem(),
        }
    }
}

/// The test PKI. Dropping it deletes its files.
pub struct TestPki {
    pub dir: TempDir,
    /// Root CA certificate (PEM): the only trust anchor.
    pub ca: PathBuf,
    /// The intermediate CA certificate alone (PEM).
    pub intermediate_ca: PathBuf,
    /// The unrelated CA's certificate (PEM).
    pub other_ca_cert: PathBuf,
    /// Server certificate (PEM, leaf only, issued by the root): SAN
    /// `localhost` and `127.0.0.1`, EKU serverAuth.
    pub server_cert: PathBuf,
    /// Server key, PKCS#8 PEM.
    pub server_key: PathBuf,
    /// The good client: CN `good-client`, O `Example`, OU `payments`,
    /// SAN URI `spiffe://example.org/ns/payments/sa/worker`, EKU clientAuth.
    pub client: ClientCert,
    root: Ca,
    intermediate: Ca,
    other: Ca,
    expired: ClientCert,
    not_yet_valid: ClientCert,
    other_ca_client: ClientCert,
    server_auth_only: ClientCert,
    revoked: ClientCert,
    revoked_crl: PathBuf,
    via_intermediate: ClientCert,
    counter: AtomicU64,
}

/// The first certificate of a PEM file, as DER.
pub fn cert_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut reader = &text[..];
    let cert: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::pem_reader_iter(&mut reader)
            .next()
            .expect("a certificate")
            .expect("valid PEM");
    cert.to_vec()
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// Generates the whole PKI into a fresh temporary folder.
    pub fn new() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("test-pki-")
            .tempdir()
            .expect("create temp dir for the test PKI");
        let root = Ca::new("Test Root CA", None);
        let intermediate = Ca::new("Test Intermediate CA", Some(&root));
        let other = Ca::new("Other Test Root CA", None);

        let ca = write(dir.path(), "ca.pem", &root.pem);
        let intermediate_ca = write(dir.path(), "intermediate-ca.pem", &intermediate.pem);
        let other_ca_cert = write(dir.path(), "other-ca.pem", &other.pem);
        let (server_cert, server_key) =
            issue_server(dir.path(), &root, "server", &["localhost", "127.0.0.1"]);

        let mut pki = TestPki {
            ca,
            intermediate_ca,
            other_ca_cert,
            server_cert,
            server_key,
            client: placeholder(),
            root,
            intermediate,
            other,
            expired: placeholder(),
            not_yet_valid: placeholder(),
            other_ca_client: placeholder(),
            server_auth_only: placeholder(),
            revoked: placeholder(),
            revoked_crl: PathBuf::new(),
            via_intermediate: placeholder(),
            counter: AtomicU64::new(1),
            dir,
        };

        let now = OffsetDateTime::now_utc();
        let good = ClientSpec::good_client;
        pki.client = pki.client_cert("client", good());
        pki.expired = pki.client_cert(
            "expired",
            ClientSpec {
                not_before: Some(now - Duration::days(30)),
                not_after: Some(now - Duration::days(1)),
                ..good()
            },
        );
        pki.not_yet_valid = pki.client_cert(
            "not-yet-valid",
            ClientSpec {
                not_before: Some(now + Duration::days(1)),
                not_after: Some(now + Duration::days(30)),
                ..good()
            },
        );
        pki.other_ca_client = pki.client_cert(
            "other-ca-client",
            ClientSpec {
                signer: Signer::OtherCa,
                ..good()
            },
        );
        pki.server_auth_only = pki.client_cert(
            "server-auth-only",
            ClientSpec {
                eku: Eku::ServerOnly,
                ..good()
            },
        );
        pki.revoked = pki.client_cert("revoked", good());
        pki.revoked_crl = pki.crl_revoking(&[&pki.revoked]);
        pki.via_intermediate = pki.client_cert(
            "via-intermediate",
            ClientSpec {
                signer: Signer::Intermediate,
                ..good()
            },
        );
        pki
    }

    /// Issues another client certificate. Files: `<name>.pem` (leaf, plus
    /// the intermediate when it signed) and `<name>-key.pem` (PKCS#8).
    pub fn client_cert(&self, name: &str, spec: ClientSpec) -> ClientCert {
        let key = new_ec_key();
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&spec.cn, &spec.o, &spec.ou);
        params.serial_number = Some(random_serial());
        params.not_before = spec.not_before.unwrap_or(now - Duration::days(1));
        params.not_after = spec.not_after.unwrap_or(now + Duration::days(30));
        let mut sans = Vec::new();
        for d in &spec.dns {
            sans.push(SanType::DnsName(d.clone().try_into().expect("DNS SAN")));
        }
        for u in &spec.uris {
            sans.push(SanType::URI(u.clone().try_into().expect("URI SAN")));
        }
        for e in &spec.emails {
            sans.push(SanType::Rfc822Name(
                e.clone().try_into().expect("email SAN"),
            ));
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.eku {
            Eku::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::ServerOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::ClientAndServer => vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
            Eku::None => Vec::new(),
        };
        params.use_authority_key_identifier_extension = true;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();

        let ca = self.ca_of(spec.signer);
        let cert = params
            .signed_by(&key, &ca.issuer())
            .unwrap_or_else(|e| panic!("issue client cert {name}: {e}"));
        let mut chain = cert.pem();
        if spec.signer == Signer::Intermediate {
            chain.push_str(&self.intermediate.pem);
        }
        let dir = self.dir.path();
        ClientCert {
            cert: write(dir, &format!("{name}.pem"), &chain),
            key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
            cn: spec.cn,
            serial,
            der: cert.der().to_vec(),
        }
    }

    /// A CRL signed by the root CA (this_update 1 h ago, next_update in 30
    /// days) listing the serials of `certs`. An empty slice gives a valid,
    /// empty CRL. Each call writes a new file (`crl-<n>.pem`).
    pub fn crl_revoking(&self, certs: &[&ClientCert]) -> PathBuf {
        self.crl_revoking_by(Signer::Root, certs)
    }

    /// Like [`crl_revoking`](Self::crl_revoking), signed by the given CA
    /// (use `Signer::Intermediate` for certificates it issued).
    pub fn crl_revoking_by(&self, signer: Signer, certs: &[&ClientCert]) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let ca = self.ca_of(signer);
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from(n),
            issuing_distribution_point: None,
            revoked_certs: certs
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&c.serial),
                    revocation_time: now - Duration::minutes(30),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: ca.params.key_identifier_method.clone(),
        };
        let crl = params.signed_by(&ca.issuer()).expect("sign CRL");
        write(
            self.dir.path(),
            &format!("crl-{n}.pem"),
            &crl.pem().expect("CRL PEM"),
        )
    }

    /// Another server certificate signed by the root CA, e.g. for an
    /// upstream TLS server. `sans` entries that parse as IP addresses become
    /// IP SANs, the rest DNS SANs. Returns (cert PEM, PKCS#8 key PEM).
    pub fn server_cert_for(&self, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        issue_server(self.dir.path(), &self.root, name, sans)
    }

    /// A server certificate like [`TestPki::server_cert_for`] that expires
    /// `valid_for` from now (whole seconds), for rotation and expiry tests.
    pub fn server_cert_expiring_in(
        &self,
        name: &str,
        sans: &[&str],
        valid_for: std::time::Duration,
    ) -> (PathBuf, PathBuf) {
        let key = new_ec_key();
        let mut params = server_params(name, sans);
        params.not_after = OffsetDateTime::now_utc()
            + Duration::seconds(i64::try_from(valid_for.as_secs()).expect("seconds"));
        let cert = params
            .signed_by(&key, &self.root.issuer())
            .unwrap_or_else(|e| panic!("issue server cert {name}: {e}"));
        (
            write(self.dir.path(), &format!("{name}.pem"), &cert.pem()),
            write(
                self.dir.path(),
                &format!("{name}-key.pem"),
                &key.serialize_pem(),
            ),
        )
    }

    /// Client cert with the good client's subject, not_after yesterday.
    pub fn expired(&self) -> &ClientCert {
        &self.expired
    }

    /// Client cert with the good client's subject, not_before tomorrow.
    pub fn not_yet_valid(&self) -> &ClientCert {
        &self.not_yet_valid
    }

    /// Same subject as the good client, signed by a CA not in `ca.pem`.
    pub fn other_ca(&self) -> &ClientCert {
        &self.other_ca_client
    }

    /// Good client's subject, EKU serverAuth only.
    pub fn server_auth_only(&self) -> &ClientCert {
        &self.server_auth_only
    }

    /// Good client's subject, listed in [`revoked_crl`](Self::revoked_crl).
    pub fn revoked(&self) -> &ClientCert {
        &self.revoked
    }

    /// A root-signed CRL listing only [`revoked`](Self::revoked)'s serial
    /// (so the good client still passes with it loaded).
    pub fn revoked_crl(&self) -> &Path {
        &self.revoked_crl
    }

    /// Good client's subject, issued by the intermediate CA; its PEM holds
    /// leaf + intermediate, while `ca.pem` holds only the root.
    pub fn via_intermediate(&self) -> &ClientCert {
        &self.via_intermediate
    }

    /// The server key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), which is
    /// what [`server_key`](Self::server_key) already is.
    pub fn server_key_pkcs8(&self) -> PathBuf {
        self.server_key.clone()
    }

    /// The server key as SEC1 PEM (`-----BEGIN EC PRIVATE KEY-----`).
    pub fn server_key_sec1(&self) -> PathBuf {
        self.sec1_key(&self.server_key)
    }

    /// The good client's key as SEC1 PEM (`-----BEGIN EC PRIVATE KEY-----`).
    pub fn client_key_sec1(&self) -> PathBuf {
        self.sec1_key(&self.client.key)
    }

    /// Converts a P-256 PKCS#8 PEM key file made here into SEC1 (RFC 5915,
    /// with the curve OID and public key), written next to it as
    /// `<stem>-sec1.pem`.
    pub fn sec1_key(&self, pkcs8_key: &Path) -> PathBuf {
        use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

        let der = read_pem(pkcs8_key, "PRIVATE KEY");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .expect("parse P-256 PKCS#8 key");
        let sec1: EcPrivateKeyRfc5915Der<'static> =
            key.private_key().as_der().expect("export SEC1 key");
        let stem = pkcs8_key
            .file_stem()
            .expect("key file name")
            .to_string_lossy();
        write(
            self.dir.path(),
            &format!("{stem}-sec1.pem"),
            &pem_encode("EC PRIVATE KEY", sec1.as_ref()),
        )
    }

    /// A fresh RSA-2048 server certificate (SAN `localhost`, `127.0.0.1`,
    /// EKU serverAuth, signed by the root CA) with its key as PKCS#1 PEM
    /// (`-----BEGIN RSA PRIVATE KEY-----`). Returns (cert, key).
    pub fn rsa_server(&self) -> (PathBuf, PathBuf) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)
            .expect("generate RSA key");
        let params = server_params("rsa-server", &["localhost", "127.0.0.1"]);
        let cert = params
            .signed_by(&key, &self.root.issuer())
            .expect("sign RSA server cert");
        let pkcs1 = pkcs8_inner_key(key.serialized_der());
        let dir = self.dir.path();
        (
            write(dir, &format!("rsa-server-{n}.pem"), &cert.pem()),
            write(
                dir,
                &format!("rsa-server-{n}-key.pem"),
                &pem_encode("RSA PRIVATE KEY", pkcs1),
            ),
        )
    }

    fn ca_of(&self, signer: Signer) -> &Ca {
        match signer {
            Signer::Root => &self.root,
            Signer::Intermediate => &self.intermediate,
            Signer::OtherCa => &self.other,
        }
    }
}

fn placeholder() -> ClientCert {
    ClientCert {
        cert: PathBuf::new(),
        key: PathBuf::new(),
        cn: String::new(),
        serial: Vec::new(),
        der: Vec::new(),
    }
}

fn new_ec_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate P-256 key")
}

/// 16 random bytes whose first byte is in 0x01..=0x7f, so the DER INTEGER
/// content is exactly these bytes (positive, no padding, no stripping).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random serial");
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

fn subject(cn: &str, o: &[String], ou: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    push_multi(&mut dn, DnType::OrganizationName, OID_ORGANIZATION, o, "O");
    push_multi(
        &mut dn,
        DnType::OrganizationalUnitName,
        OID_ORGANIZATIONAL_UNIT,
        ou,
        "OU",
    );
    if !cn.is_empty() {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

/// rcgen keys a DN by attribute type, so a second value of the same
/// attribute goes in under `CustomDnType` with the same OID.
fn push_multi(dn: &mut DistinguishedName, ty: DnType, oid: &[u64], values: &[String], what: &str) {
    assert!(
        values.len() <= 2,
        "the test PKI supports at most two {what} values (rcgen limitation)"
    );
    if let Some(v) = values.first() {
        dn.push(ty, v.as_str());
    }
    if let Some(v) = values.get(1) {
        dn.push(DnType::CustomDnType(oid.to_vec()), v.as_str());
    }
}

fn server_params(cn: &str, sans: &[&str]) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("server SANs");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params
}

fn issue_server(dir: &Path, ca: &Ca, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let key = new_ec_key();
    let cert = server_params(name, sans)
        .signed_by(&key, &ca.issuer())
        .unwrap_or_else(|e| panic!("issue server cert {name}: {e}"));
    (
        write(dir, &format!("{name}.pem"), &cert.pem()),
        write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    )
}

fn write(dir: &Path, file: &str, contents: &str) -> PathBuf {
    let path = dir.join(file);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn pem_encode(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der), config)
}

fn read_pem(path: &Path, tag: &str) -> Vec<u8> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let block = pem::parse(text).unwrap_or_else(|e| panic!("PEM in {}: {e}", path.display()));
    assert_eq!(block.tag(), tag, "PEM label in {}", path.display());
    block.contents().to_vec()
}

/// PKCS#8 `PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm
/// AlgorithmIdentifier, privateKey OCTET STRING, ... }`: returns the
/// contents of `privateKey` (for RSA, the PKCS#1 `RSAPrivateKey`).
fn pkcs8_inner_key(der: &[u8]) -> &[u8] {
    let (tag, body, _) = der_tlv(der);
    assert_eq!(tag, 0x30, "PKCS#8: outer SEQUENCE");
    let (tag, _, rest) = der_tlv(body);
    assert_eq!(tag, 0x02, "PKCS#8: version INTEGER");
    let (tag, _, rest) = der_tlv(rest);
    assert_eq!(tag, 0x30, "PKCS#8: AlgorithmIdentifier");
    let (tag, key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8: privateKey OCTET STRING");
    key
}

/// One DER TLV: (tag, contents, rest). Single-byte tags only.
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    assert!(input.len() >= 2, "DER: truncated");
    let tag = input[0];
    let (len, header) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            assert!(
                (1..=4).contains(&n) && input.len() >= 2 + n,
                "DER: bad length"
            );
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        }
    };
    assert!(input.len() >= header + len, "DER: truncated contents");
    (tag, &input[header..header + len], &input[header + len..])
}
