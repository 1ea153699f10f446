//! Every way a connection is refused before any call is made: each case
//! asserts both what the real client reports and the reason the proxy logs.
//! No upstream is needed: refusals happen before one is used.

mod support;

use std::time::Duration;

use support::cli::{temporal_cli, CliTls};
use support::pki::{ClientCert, TestPki};
use support::proxy::{config, ProxyProcess};

/// Proxy with the revoked certificate's CRL loaded, in front of nothing.
async fn proxy(pki: &TestPki) -> ProxyProcess {
    let extra_tls = format!("crl = [{:?}]\n", pki.revoked_crl().display().to_string());
    let text = config(pki, "http://127.0.0.1:9", "")
        .replace("[upstream]", &format!("{extra_tls}\n[upstream]"));
    ProxyProcess::start(&text).await
}

fn tls_with(pki: &TestPki, client: Option<&ClientCert>) -> CliTls {
    CliTls {
        ca: pki.ca.clone(),
        cert: client.map(|c| c.cert.clone()),
        key: client.map(|c| c.key.clone()),
        server_name: Some("localhost".into()),
    }
}

/// Runs the CLI with `client` and returns its stderr (it must fail).
async fn cli_error(proxy: &ProxyProcess, tls: &CliTls) -> String {
    let out = temporal_cli(
        &proxy.addr.to_string(),
        Some(tls),
        &["operator", "namespace", "list"],
    )
    .await;
    assert!(!out.status.success(), "the CLI got through: {}", out.stdout);
    out.stderr
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.to_lowercase().contains(&needle.to_lowercase()),
        "expected {needle:?} in:\n{haystack}"
    );
}

#[tokio::test]
async fn no_client_certificate() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let err = cli_error(&proxy, &tls_with(&pki, None)).await;
    assert_contains(&err, "server requires client certificate");
    assert_eq!(
        proxy.refusal_reason("no_client_certificate").await,
        "no client certificate presented"
    );
}

#[tokio::test]
async fn same_subject_from_another_ca() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let err = cli_error(&proxy, &tls_with(&pki, Some(pki.other_ca()))).await;
    assert_contains(&err, "unknown certificate authority");
    assert_contains(
        &proxy.refusal_reason("unknown_ca").await,
        "not issued by a trusted CA",
    );
}

#[tokio::test]
async fn expired_certificate() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let err = cli_error(&proxy, &tls_with(&pki, Some(pki.expired()))).await;
    assert_contains(&err, "expired certificate");
    assert_contains(
        &proxy.refusal_reason("expired").await,
        "client certificate expired (not after ",
    );
}

#[tokio::test]
async fn not_yet_valid_certificate() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let err = cli_error(&proxy, &tls_with(&pki, Some(pki.not_yet_valid()))).await;
    // TLS has one alert for both ends of the validity period.
    assert_contains(&err, "expired certificate");
    assert_contains(
        &proxy.refusal_reason("not_yet_valid").await,
        "client certificate not yet valid (not before ",
    );
}

#[tokio::test]
async fn revoked_certificate() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let err = cli_error(&proxy, &tls_with(&pki, Some(pki.revoked()))).await;
    assert_contains(&err, "revoked certificate");
    assert_contains(
        &proxy.refusal_reason("revoked").await,
        "revoked (listed in a configured CRL)",
    );
}

#[tokio::test]
async fn server_auth_only_key_usage() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let err = cli_error(&proxy, &tls_with(&pki, Some(pki.server_auth_only()))).await;
    assert_contains(&err, "unsupported certificate");
    assert_contains(
        &proxy.refusal_reason("wrong_key_usage").await,
        "wrong key usage",
    );
}

#[tokio::test]
async fn plaintext_http2_to_the_tls_port() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let out = temporal_cli(
        &proxy.addr.to_string(),
        None,
        &["operator", "namespace", "list"],
    )
    .await;
    assert!(!out.status.success());
    assert_contains(&out.stderr, "TLS");
    assert_contains(
        &proxy.refusal_reason("plaintext_h2c").await,
        "plaintext HTTP/2 (h2c) sent to the TLS port",
    );
}

#[tokio::test]
async fn http1_client_over_tls() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10", "--cacert"])
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.client.cert)
        .arg("--key")
        .arg(&pki.client.key)
        .arg(format!("https://localhost:{}/", proxy.addr.port()))
        .output()
        .await
        .expect("curl");
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "no application protocol",
    );
    assert_eq!(
        proxy.refusal_reason("no_alpn_h2").await,
        "client did not offer ALPN h2 (offered: http/1.1)"
    );
}

#[tokio::test]
async fn plaintext_http1_is_told_tls_is_required() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/", proxy.addr.port()))
        .output()
        .await
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.ends_with("400"), "{body}");
    assert_contains(&body, "requires TLS with a client certificate");
    assert_contains(
        &proxy.refusal_reason("plaintext_http1").await,
        "plaintext HTTP/1.x request",
    );
}

#[tokio::test]
async fn handshake_timeout_drops_silent_clients() {
    let pki = TestPki::new();
    let text = config(&pki, "http://127.0.0.1:9", "")
        .replace("[upstream]", "handshake_timeout = \"300ms\"\n[upstream]");
    let proxy = ProxyProcess::start(&text).await;
    // Send the first byte of a TLS record and nothing else.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &[0x16])
        .await
        .unwrap();
    assert_eq!(
        proxy.refusal_reason("timeout").await,
        "handshake not completed within 300ms"
    );
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("the proxy closes the connection")
    .unwrap_or(0);
    assert_eq!(n, 0, "connection closed without data");
}

/// The good certificate, and one issued by an intermediate that the client
/// sends along (the bundle holds only the root), are both accepted.
#[tokio::test]
async fn good_and_intermediate_issued_certificates_are_accepted() {
    let pki = TestPki::new();
    let proxy = proxy(&pki).await;
    for client in [&pki.client, pki.via_intermediate()] {
        let out = temporal_cli(
            &proxy.addr.to_string(),
            Some(&tls_with(&pki, Some(client))),
            &["operator", "namespace", "list"],
        )
        .await;
        // The handshake succeeds; the call then fails because no upstream
        // runs behind this proxy, and the CLI reports the proxy's status.
        assert!(!out.status.success());
        assert_contains(&out.stderr, "unreachable");
    }
    assert!(
        !proxy
            .logs()
            .iter()
            .any(|v| v["message"] == "TLS handshake refused"),
        "{:#?}",
        proxy.logs()
    );
}

async fn curl_tls12(pki: &TestPki, proxy: &ProxyProcess) -> std::process::Output {
    tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--max-time",
            "10",
        ])
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--cacert",
        ])
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.client.cert)
        .arg("--key")
        .arg(&pki.client.key)
        .arg(format!("https://localhost:{}/", proxy.addr.port()))
        .output()
        .await
        .expect("curl")
}

/// TLS 1.2 is served by default and refused with `min_version = "1.3"`.
#[tokio::test]
async fn min_version_is_enforced() {
    let pki = TestPki::new();
    let default = ProxyProcess::start(&config(&pki, "http://127.0.0.1:9", "")).await;
    let out = curl_tls12(&pki, &default).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{out:?}");

    let text = config(&pki, "http://127.0.0.1:9", "")
        .replace("[upstream]", "min_version = \"1.3\"\n[upstream]");
    let strict = ProxyProcess::start(&text).await;
    let out = curl_tls12(&pki, &strict).await;
    assert!(!out.status.success());
    assert_contains(&String::from_utf8_lossy(&out.stderr), "protocol version");
    assert_contains(&strict.refusal_reason("incompatible").await, "TLS version");
}
