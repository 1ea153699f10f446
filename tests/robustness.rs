//! What a client's certificate can make the proxy send upstream is bounded:
//! a certificate with thousands of SANs does not make every call carry them
//! all in the identity header.

mod support;

use support::grpc::{ClientTls, GrpcConn};
use support::pki::{ClientSpec, TestPki};
use support::proxy::{config, ProxyProcess};

/// The README's bound on the certificate's part of `x-forwarded-client-cert`.
const MAX_CERTIFICATE_PART: usize = 8 * 1024;

#[tokio::test]
async fn a_certificate_with_thousands_of_sans_gets_a_bounded_identity_header() {
    let upstream = support::fake_upstream::FakeUpstream::start().await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    // About 37 KB of names, under TLS's 64 KiB handshake message limit.
    let dns: Vec<String> = (0..1500).map(|i| format!("h{i}.example.org")).collect();
    let client = pki.client_cert(
        "many-sans",
        ClientSpec {
            dns: dns.clone(),
            uris: vec!["spiffe://example.org/ns/payments/sa/worker".into()],
            ..ClientSpec::cn("many-sans")
        },
    );
    let conn = proxy.grpc(&pki, &client).await;
    let reply = conn
        .unary(support::fake_upstream::ECHO, b"payload", &[])
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    let xfcc = reply
        .metadata("echo-x-forwarded-client-cert")
        .expect("identity header");
    assert!(xfcc.len() <= MAX_CERTIFICATE_PART, "{} bytes", xfcc.len());
    // The URI (what authorization upstream is most likely to read) is
    // kept, the first names that fit follow, and the marker says how many
    // were left out.
    assert!(
        xfcc.contains(";URI=spiffe://example.org/ns/payments/sa/worker;DNS=h0.example.org;"),
        "{xfcc}"
    );
    let kept = xfcc.matches(";DNS=").count();
    assert!(kept > 100 && kept < dns.len(), "{kept}");
    assert!(
        xfcc.ends_with(&format!(";Truncated={}", dns.len() - kept)),
        "{xfcc}"
    );
}

/// A client certificate chain past TLS's 64 KiB handshake message limit:
/// the proxy's log says what happened in words (it said "not a TLS
/// handshake"), and the handshake fails for the client. rustls sends no
/// alert for an over-size handshake message (its handshake deframer's
/// error skips the alert path), so the client sees only the close.
#[tokio::test]
async fn an_oversize_client_certificate_chain_is_refused_with_its_reason() {
    let upstream = support::fake_upstream::FakeUpstream::start().await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    // A leaf of about 37 KB (one DER certificate cannot pass 64 KiB), sent
    // three times: a Certificate message of about 110 KB.
    let dns: Vec<String> = (0..1500).map(|i| format!("h{i}.example.org")).collect();
    let client = pki.client_cert(
        "huge",
        ClientSpec {
            dns,
            ..ClientSpec::cn("huge")
        },
    );
    let pem = std::fs::read_to_string(&client.cert).unwrap();
    let chain = client.cert.with_extension("chain.pem");
    std::fs::write(&chain, pem.repeat(3)).unwrap();
    let tls = ClientTls::mtls(&pki.ca, &chain, &client.key, "localhost");
    let err = match GrpcConn::connect(proxy.addr, Some(&tls)).await {
        Ok(conn) => conn
            .unary(support::fake_upstream::ECHO, b"x", &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("a 110 KB certificate chain was accepted")),
        Err(e) => e,
    };
    eprintln!("client saw: {err}");
    assert!(err.starts_with("TLS"), "not a handshake failure: {err}");
    let reason = proxy.refusal_reason("handshake_too_large").await;
    eprintln!("proxy logged: {reason}");
    assert!(reason.contains("64 KiB limit"), "{reason}");
    let (_, metrics) = proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains(
            "temporal_mtls_proxy_handshake_failures_total{reason=\"handshake_too_large\"} 1"
        ),
        "{metrics}"
    );
}
