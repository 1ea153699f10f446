//! Every way a connection is refused before any call is made, as one table:
//! each row names the proxy's setup and the client (a real one: the
//! `temporal` CLI, curl, a raw socket), what that client reports, and the
//! refusal the proxy must give — its label (the log line's `kind` and the
//! `handshake_failures_total` reason) and the reason it logs. No upstream is
//! needed: refusals happen before one is used.

mod support;

use std::time::Duration;

use support::cli::{temporal_cli, CliTls};
use support::pki::{ClientCert, TestPki};
use support::proxy::{config, ProxyProcess};

/// The proxy a row runs against, in front of nothing.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The revoked certificate's CRL loaded.
    WithCrl,
    /// `handshake_timeout = "300ms"`.
    HandshakeTimeout300ms,
    /// `min_version = "1.3"`.
    MinVersion13,
}

impl Setup {
    async fn start(self, pki: &TestPki) -> ProxyProcess {
        let tls_keys = match self {
            Setup::WithCrl => {
                format!("crl = [{:?}]\n", pki.revoked_crl().display().to_string())
            }
            Setup::HandshakeTimeout300ms => "handshake_timeout = \"300ms\"\n".to_owned(),
            Setup::MinVersion13 => "min_version = \"1.3\"\n".to_owned(),
        };
        let text = config(pki, "http://127.0.0.1:9", "")
            .replace("[upstream]", &format!("{tls_keys}\n[upstream]"));
        ProxyProcess::start(&text).await
    }
}

/// The client certificate the CLI presents.
#[derive(Clone, Copy, Debug)]
enum Cert {
    None,
    /// Same subject as the good client, from another CA.
    OtherCa,
    Expired,
    NotYetValid,
    Revoked,
    /// Extended key usage serverAuth only.
    ServerAuthOnly,
}

impl Cert {
    fn of(self, pki: &TestPki) -> Option<&ClientCert> {
        match self {
            Cert::None => None,
            Cert::OtherCa => Some(pki.other_ca()),
            Cert::Expired => Some(pki.expired()),
            Cert::NotYetValid => Some(pki.not_yet_valid()),
            Cert::Revoked => Some(pki.revoked()),
            Cert::ServerAuthOnly => Some(pki.server_auth_only()),
        }
    }
}

/// How the client connects.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// `temporal operator namespace list` over TLS with this certificate.
    Cli(Cert),
    /// The same without TLS: plaintext HTTP/2 (h2c) to the TLS port.
    CliPlaintext,
    /// curl over TLS with the good certificate, offering HTTP/1.1 only.
    CurlHttp1OverTls,
    /// curl speaking plaintext HTTP/1.1 to the TLS port.
    CurlPlaintextHttp1,
    /// curl over TLS 1.2 at most, with the good certificate.
    CurlTls12,
    /// The first byte of a TLS record, then silence.
    Silent,
}

/// The reason the proxy logs.
#[derive(Clone, Copy, Debug)]
enum Reason {
    Is(&'static str),
    Contains(&'static str),
}

#[derive(Debug)]
struct Case {
    setup: Setup,
    client: Client,
    /// What the client reports (case-insensitive; `""`: nothing to read).
    client_says: &'static str,
    /// The refusal's label.
    label: &'static str,
    reason: Reason,
}

use Client::*;
use Reason::*;
use Setup::*;

/// One test per row, named by it.
macro_rules! refusals {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                refused($case).await;
            }
        )*
    };
}

refusals! {
    no_client_certificate: Case {
        setup: WithCrl, client: Cli(Cert::None),
        client_says: "server requires client certificate",
        label: "no_client_certificate", reason: Is("no client certificate presented"),
    };
    same_subject_from_another_ca: Case {
        setup: WithCrl, client: Cli(Cert::OtherCa),
        client_says: "unknown certificate authority",
        label: "unknown_ca", reason: Contains("not issued by a trusted CA"),
    };
    expired_certificate: Case {
        setup: WithCrl, client: Cli(Cert::Expired),
        client_says: "expired certificate",
        label: "expired", reason: Contains("client certificate expired (not after "),
    };
    // TLS has one alert for both ends of the validity period.
    not_yet_valid_certificate: Case {
        setup: WithCrl, client: Cli(Cert::NotYetValid),
        client_says: "expired certificate",
        label: "not_yet_valid", reason: Contains("client certificate not yet valid (not before "),
    };
    revoked_certificate: Case {
        setup: WithCrl, client: Cli(Cert::Revoked),
        client_says: "revoked certificate",
        label: "revoked", reason: Contains("revoked (listed in a configured CRL)"),
    };
    server_auth_only_key_usage: Case {
        setup: WithCrl, client: Cli(Cert::ServerAuthOnly),
        client_says: "unsupported certificate",
        label: "wrong_key_usage", reason: Contains("wrong key usage"),
    };
    plaintext_http2_to_the_tls_port: Case {
        setup: WithCrl, client: CliPlaintext,
        client_says: "TLS",
        label: "plaintext_h2c", reason: Contains("plaintext HTTP/2 (h2c) sent to the TLS port"),
    };
    http1_client_over_tls: Case {
        setup: WithCrl, client: CurlHttp1OverTls,
        client_says: "no application protocol",
        label: "no_alpn_h2", reason: Is("client did not offer ALPN h2 (offered: http/1.1)"),
    };
    // Told in its own protocol: a 400 whose body says why.
    plaintext_http1_is_told_tls_is_required: Case {
        setup: WithCrl, client: CurlPlaintextHttp1,
        client_says: "requires TLS with a client certificate",
        label: "plaintext_http1", reason: Contains("plaintext HTTP/1.x request"),
    };
    // The silent client's connection is closed, without data.
    handshake_timeout_drops_silent_clients: Case {
        setup: HandshakeTimeout300ms, client: Silent,
        client_says: "",
        label: "timeout", reason: Is("handshake not completed within 300ms"),
    };
    min_version_is_enforced: Case {
        setup: MinVersion13, client: CurlTls12,
        client_says: "protocol version",
        label: "incompatible", reason: Contains("TLS version"),
    };
}

/// Runs one row: the client is refused, says so, and the proxy logs and
/// counts the refusal with the row's label and reason.
async fn refused(case: Case) {
    let pki = TestPki::new();
    let proxy = case.setup.start(&pki).await;
    let said = connect(&pki, &proxy, case.client).await;
    assert_contains(&said, case.client_says);
    let reason = proxy.refusal_reason(case.label).await;
    match case.reason {
        Is(want) => assert_eq!(reason, want, "{case:?}"),
        Contains(want) => assert_contains(&reason, want),
    }
    let (_, metrics) = proxy.admin_get("/metrics").await;
    let series = format!(
        "temporal_mtls_proxy_handshake_failures_total{{reason=\"{}\"}}",
        case.label
    );
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(counted >= 1.0, "{series} is {counted}: {case:?}");
}

/// Connects as `client` (which must not get through) and returns what it
/// reported.
async fn connect(pki: &TestPki, proxy: &ProxyProcess, client: Client) -> String {
    match client {
        Cli(cert) => cli_error(proxy, &tls_with(pki, cert.of(pki))).await,
        CliPlaintext => {
            let out = temporal_cli(
                &proxy.addr.to_string(),
                None,
                &["operator", "namespace", "list"],
            )
            .await;
            assert!(!out.status.success());
            out.stderr
        }
        CurlHttp1OverTls => {
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
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
        CurlPlaintextHttp1 => {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
                .arg(format!("http://127.0.0.1:{}/", proxy.addr.port()))
                .output()
                .await
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(body.ends_with("400"), "{body}");
            body
        }
        CurlTls12 => {
            let out = curl_tls12(pki, proxy).await;
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
        Silent => {
            let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut tcp, &[0x16])
                .await
                .unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
            )
            .await
            .expect("the proxy closes the connection")
            .unwrap_or(0);
            assert_eq!(n, 0, "connection closed without data");
            String::new()
        }
    }
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

/// The good certificate, and one issued by an intermediate that the client
/// sends along (the bundle holds only the root), are both accepted.
#[tokio::test]
async fn good_and_intermediate_issued_certificates_are_accepted() {
    let pki = TestPki::new();
    let proxy = WithCrl.start(&pki).await;
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

/// TLS 1.2 is served by default (and refused with `min_version = "1.3"`:
/// the table's `min_version_is_enforced`).
#[tokio::test]
async fn tls12_is_served_by_default() {
    let pki = TestPki::new();
    let default = ProxyProcess::start(&config(&pki, "http://127.0.0.1:9", "")).await;
    let out = curl_tls12(&pki, &default).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{out:?}");
}
