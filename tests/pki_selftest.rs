//! Checks the test PKI itself (tests/support/pki.rs): what the certificates
//! contain (x509-parser), that independent verifiers agree on which ones
//! chain, expire or are revoked (rustls' WebPKI client verifier, the same
//! code path the proxy uses, and the `openssl` CLI), and that the extra key
//! formats (SEC1, PKCS#1) are what they claim.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use support::pki::{ClientCert, ClientSpec, Eku, Signer, TestPki};
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;
use x509_parser::{parse_x509_certificate, parse_x509_crl};

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("open {}: {e:?}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("parse {}: {e:?}", path.display()))
}

fn leaf(path: &Path) -> CertificateDer<'static> {
    certs(path).remove(0)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn eku(der: &[u8]) -> (bool, bool) {
    let (_, cert) = parse_x509_certificate(der).expect("parse cert");
    let eku = cert
        .extended_key_usage()
        .expect("EKU extension parses")
        .expect("EKU extension present")
        .value;
    (eku.client_auth, eku.server_auth)
}

fn first_attr(name: &X509Name<'_>, oid: &x509_parser::der_parser::Oid<'_>) -> Vec<String> {
    name.iter_by_oid(oid)
        .map(|a| a.as_str().expect("string attribute").to_string())
        .collect()
}

#[test]
fn good_client_has_expected_subject_sans_and_eku() {
    let pki = TestPki::new();
    let der = leaf(&pki.client.cert);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    assert_eq!(pki.client.cn, "good-client");
    let subject = cert.subject();
    assert_eq!(
        first_attr(subject, &x509_parser::oid_registry::OID_X509_COMMON_NAME),
        ["good-client"]
    );
    assert_eq!(
        first_attr(
            subject,
            &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME
        ),
        ["Example"]
    );
    assert_eq!(
        first_attr(
            subject,
            &x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT
        ),
        ["payments"]
    );
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert!(san.general_names.iter().any(|n| matches!(
        n,
        GeneralName::URI("spiffe://example.org/ns/payments/sa/worker")
    )));
    assert_eq!(eku(&der), (true, false), "clientAuth only");
    assert!(cert.validity().is_valid());
    assert_eq!(cert.raw_serial(), pki.client.serial.as_slice());
    assert_eq!(der.as_ref(), pki.client.der.as_slice());
    // Issued by the root.
    let root = leaf(&pki.ca);
    let (_, root) = parse_x509_certificate(&root).unwrap();
    assert_eq!(cert.issuer(), root.subject());
    assert_eq!(certs(&pki.ca).len(), 1, "ca.pem holds only the root");
}

#[test]
fn server_cert_has_localhost_sans_and_server_auth() {
    let pki = TestPki::new();
    let der = leaf(&pki.server_cert);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert!(san
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName("localhost"))));
    assert!(san
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::IPAddress([127, 0, 0, 1]))));
    assert_eq!(eku(&der), (false, true));
    assert!(PrivateKeyDer::from_pem_file(&pki.server_key).is_ok());
}

#[test]
fn refusal_certs_are_defective_in_exactly_the_intended_way() {
    let pki = TestPki::new();
    let validity = |c: &ClientCert| {
        let (_, cert) = parse_x509_certificate(&c.der).unwrap();
        let v = cert.validity();
        (v.not_before.timestamp(), v.not_after.timestamp())
    };
    let (_, not_after) = validity(pki.expired());
    assert!(not_after < now(), "expired cert's not_after is in the past");
    let (not_before, _) = validity(pki.not_yet_valid());
    assert!(
        not_before > now(),
        "not-yet-valid cert starts in the future"
    );
    assert_eq!(eku(&pki.server_auth_only().der), (false, true));

    let (_, other) = parse_x509_certificate(&pki.other_ca().der).unwrap();
    let (_, good) = parse_x509_certificate(&pki.client.der).unwrap();
    assert_eq!(
        other.subject(),
        good.subject(),
        "same subject as the good client"
    );
    assert_ne!(other.issuer(), good.issuer(), "other issuer");

    let chain = certs(&pki.via_intermediate().cert);
    assert_eq!(chain.len(), 2, "leaf + intermediate");
    assert_eq!(chain[1], leaf(&pki.intermediate_ca));
}

#[test]
fn crl_parses_is_current_and_lists_only_the_revoked_serial() {
    let pki = TestPki::new();
    let der = CertificateRevocationListDer::from_pem_file(pki.revoked_crl()).expect("CRL PEM");
    let (_, crl) = parse_x509_crl(&der).expect("CRL DER");
    let root_der = leaf(&pki.ca);
    let (_, root) = parse_x509_certificate(&root_der).unwrap();
    assert_eq!(crl.issuer(), root.subject());
    assert!(crl.last_update().timestamp() <= now());
    assert!(crl.next_update().expect("next_update").timestamp() > now());
    let serials: Vec<&[u8]> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial())
        .collect();
    assert_eq!(serials, [pki.revoked().serial.as_slice()]);
    assert_ne!(pki.revoked().serial, pki.client.serial);

    // A CRL with several entries, and an empty one.
    let two = pki.crl_revoking(&[&pki.client, pki.expired()]);
    let der = CertificateRevocationListDer::from_pem_file(&two).unwrap();
    let (_, crl) = parse_x509_crl(&der).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 2);
    let empty = pki.crl_revoking(&[]);
    let der = CertificateRevocationListDer::from_pem_file(&empty).unwrap();
    let (_, crl) = parse_x509_crl(&der).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
}

#[test]
fn client_spec_fields_end_up_in_the_certificate() {
    let pki = TestPki::new();
    let c = pki.client_cert(
        "custom",
        ClientSpec {
            cn: "custom".into(),
            o: vec!["Org1".into(), "Org2".into()],
            ou: vec!["ou-a".into(), "ou-b".into()],
            dns: vec!["worker.example.org".into()],
            uris: vec!["spiffe://example.org/ns/a/sa/b".into()],
            emails: vec!["ops@example.org".into()],
            eku: Eku::ClientAndServer,
            ..Default::default()
        },
    );
    let (_, cert) = parse_x509_certificate(&c.der).unwrap();
    assert_eq!(
        first_attr(
            cert.subject(),
            &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME
        ),
        ["Org1", "Org2"]
    );
    assert_eq!(
        first_attr(
            cert.subject(),
            &x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT
        ),
        ["ou-a", "ou-b"]
    );
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names.len(), 3);
    assert_eq!(eku(&c.der), (true, true));

    let no_cn = pki.client_cert(
        "no-cn",
        ClientSpec {
            cn: String::new(),
            eku: Eku::None,
            ..Default::default()
        },
    );
    let (_, cert) = parse_x509_certificate(&no_cn.der).unwrap();
    assert_eq!(cert.subject().iter_common_name().count(), 0);
    assert!(cert.extended_key_usage().unwrap().is_none());
}

/// rustls' WebPKI client verifier (what the proxy uses) agrees with the
/// intended outcome of every pre-made certificate.
#[test]
fn rustls_client_verifier_accepts_and_refuses_as_intended() {
    let pki = TestPki::new();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs(&pki.ca) {
        roots.add(c).unwrap();
    }
    let roots = Arc::new(roots);
    let crls = |paths: &[&Path]| -> Vec<CertificateRevocationListDer<'static>> {
        paths
            .iter()
            .map(|p| CertificateRevocationListDer::from_pem_file(p).unwrap())
            .collect()
    };
    // CRLs: the root's (revokes `revoked`), plus an empty one from the
    // intermediate, since WebPKI denies unknown revocation status by default
    // for every certificate in the chain.
    let intermediate_crl = pki.crl_revoking_by(Signer::Intermediate, &[]);
    let with_crls = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls(&[pki.revoked_crl(), &intermediate_crl]))
        .build()
        .unwrap();
    let plain = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();

    let check = |v: &Arc<dyn ClientCertVerifier>, c: &ClientCert| {
        let chain = certs(&c.cert);
        v.verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    };
    for v in [&plain, &with_crls] {
        check(v, &pki.client).expect("good client");
        check(v, pki.via_intermediate()).expect("client via intermediate");
        let e = check(v, pki.expired()).unwrap_err();
        assert!(e.contains("Expired"), "{e}");
        let e = check(v, pki.not_yet_valid()).unwrap_err();
        assert!(e.contains("NotValidYet"), "{e}");
        let e = check(v, pki.other_ca()).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        let e = check(v, pki.server_auth_only()).unwrap_err();
        assert!(e.contains("InvalidPurpose"), "{e}");
    }
    check(&plain, pki.revoked()).expect("revoked cert passes without CRL");
    let e = check(&with_crls, pki.revoked()).unwrap_err();
    assert!(e.contains("Revoked"), "{e}");

    // The server certificate is a valid serverAuth cert for rustls.
    let server = certs(&pki.server_cert);
    let mut roots = RootCertStore::empty();
    roots.add(leaf(&pki.ca)).unwrap();
    let sv = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    for name in ["localhost", "127.0.0.1"] {
        sv.verify_server_cert(
            &server[0],
            &server[1..],
            &rustls::pki_types::ServerName::try_from(name).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| panic!("server cert for {name}: {e:?}"));
    }
}

#[test]
fn key_formats_parse_and_match_their_certificates() {
    let pki = TestPki::new();
    let pkcs8 = PrivateKeyDer::from_pem_file(pki.server_key_pkcs8()).unwrap();
    assert!(matches!(pkcs8, PrivateKeyDer::Pkcs8(_)));

    let sec1_path = pki.server_key_sec1();
    assert!(std::fs::read_to_string(&sec1_path)
        .unwrap()
        .starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    let sec1 = PrivateKeyDer::from_pem_file(&sec1_path).unwrap();
    assert!(matches!(sec1, PrivateKeyDer::Sec1(_)));
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .key_provider
        .load_private_key(sec1)
        .expect("rustls loads the SEC1 key");
    let client_sec1 = PrivateKeyDer::from_pem_file(pki.client_key_sec1()).unwrap();
    assert!(matches!(client_sec1, PrivateKeyDer::Sec1(_)));

    let (rsa_cert, rsa_key) = pki.rsa_server();
    assert!(std::fs::read_to_string(&rsa_key)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    let pkcs1 = PrivateKeyDer::from_pem_file(&rsa_key).unwrap();
    assert!(matches!(pkcs1, PrivateKeyDer::Pkcs1(_)));
    provider
        .key_provider
        .load_private_key(pkcs1)
        .expect("rustls loads the PKCS#1 key");
    assert_eq!(eku(&leaf(&rsa_cert)), (false, true));

    // Each key belongs to its certificate (compare public keys with openssl).
    let pubkey_of_cert =
        |cert: &Path| openssl(&["x509", "-noout", "-pubkey", "-in", path_str(cert)]);
    let pubkey_of_key = |key: &Path| openssl(&["pkey", "-pubout", "-in", path_str(key)]);
    assert_eq!(pubkey_of_cert(&pki.server_cert), pubkey_of_key(&sec1_path));
    assert_eq!(
        pubkey_of_cert(&pki.server_cert),
        pubkey_of_key(&pki.server_key)
    );
    assert_eq!(
        pubkey_of_cert(&pki.client.cert),
        pubkey_of_key(&pki.client_key_sec1())
    );
    assert_eq!(pubkey_of_cert(&rsa_cert), pubkey_of_key(&rsa_key));
    openssl(&["ec", "-check", "-noout", "-in", path_str(&sec1_path)]);
    openssl(&["rsa", "-check", "-noout", "-in", path_str(&rsa_key)]);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Runs `openssl` (installed by scripts/test.sh); returns stdout, panics
/// with stderr on failure.
fn openssl(args: &[&str]) -> String {
    let out = openssl_status(args);
    match out {
        Ok(stdout) => stdout,
        Err(stderr) => panic!("openssl {args:?} failed: {stderr}"),
    }
}

fn openssl_status(args: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run `openssl` (scripts/test.sh installs it)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// OpenSSL, an independent verifier, agrees on chains, purposes and the CRL.
#[test]
fn openssl_verifies_chains_purposes_and_crl() {
    let pki = TestPki::new();
    let ca = path_str(&pki.ca);
    let verify = |purpose: &str, cert: &ClientCert, extra: &[&str]| {
        let mut args = vec!["verify", "-CAfile", ca, "-purpose", purpose];
        args.extend_from_slice(extra);
        args.push(path_str(&cert.cert));
        openssl_status(&args)
    };
    // Leaf only in the file given to `verify`; the intermediate as untrusted.
    let via = pki.via_intermediate();
    let inter = path_str(&pki.intermediate_ca);
    let via_leaf_pem = pki.dir.path().join("via-leaf-only-pem.pem");
    std::fs::write(
        &via_leaf_pem,
        pem::encode(&pem::Pem::new("CERTIFICATE", via.der.clone())),
    )
    .unwrap();
    openssl(&[
        "verify",
        "-CAfile",
        ca,
        "-untrusted",
        inter,
        "-purpose",
        "sslclient",
        path_str(&via_leaf_pem),
    ]);

    verify("sslclient", &pki.client, &[]).expect("good client");
    verify("sslclient", pki.expired(), &[]).expect_err("expired");
    verify("sslclient", pki.not_yet_valid(), &[]).expect_err("not yet valid");
    verify("sslclient", pki.other_ca(), &[]).expect_err("other CA");
    verify("sslclient", pki.server_auth_only(), &[]).expect_err("serverAuth only");
    verify("sslserver", pki.server_auth_only(), &[]).expect("serverAuth for server");
    let server = ClientCert {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        cn: "server".into(),
        serial: Vec::new(),
        der: Vec::new(),
    };
    verify("sslserver", &server, &[]).expect("server cert");
    verify("sslclient", &server, &[]).expect_err("server cert is not a client cert");

    let crl = path_str(pki.revoked_crl());
    let text = openssl(&["crl", "-in", crl, "-noout", "-text", "-CAfile", ca]);
    let serial_hex: String = pki
        .revoked()
        .serial
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(text.contains(&serial_hex), "CRL lists the serial:\n{text}");
    assert!(text.contains("Next Update"), "{text}");
    let with_crl = ["-crl_check", "-CRLfile", crl];
    verify("sslclient", &pki.client, &with_crl).expect("good client with CRL");
    let e = verify("sslclient", pki.revoked(), &with_crl).expect_err("revoked");
    assert!(e.contains("revoked"), "{e}");
}
