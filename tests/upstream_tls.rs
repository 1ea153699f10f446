//! An `https://` upstream: the proxy verifies the frontend's certificate
//! with its own CA, presents a client certificate when the frontend wants
//! one, and checks the name given by `server_name`. The TLS frontend here is
//! a second proxy (mTLS, HTTP/2) in front of the real Temporal dev server.

mod support;

use support::cli::{self, CliTls};
use support::grpc::pb;
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

/// A TLS "frontend": a proxy with a certificate only for
/// `frontend.internal`, requiring client certificates from the test CA.
async fn tls_frontend(pki: &TestPki, temporal: &TemporalServer) -> ProxyProcess {
    let (cert, key) = pki.server_cert_for("frontend", &["frontend.internal"]);
    let text = config(pki, &temporal.url(), "")
        .replace(
            &pki.server_cert.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &pki.server_key.display().to_string(),
            &key.display().to_string(),
        );
    // A process of its own: its logs are read apart from the proxy's.
    ProxyProcess::spawn(&text).await
}

fn upstream_tls(pki: &TestPki, frontend: &ProxyProcess, server_name: Option<&str>) -> String {
    let mut extra = format!(
        "ca = {:?}\ncert = {:?}\nkey = {:?}\n",
        pki.ca.display().to_string(),
        pki.client.cert.display().to_string(),
        pki.client.key.display().to_string()
    );
    if let Some(name) = server_name {
        extra.push_str(&format!("server_name = \"{name}\"\n"));
    }
    config(
        pki,
        &format!("https://127.0.0.1:{}", frontend.addr.port()),
        &extra,
    )
}

fn client(pki: &TestPki) -> CliTls {
    CliTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost")
}

#[tokio::test]
async fn https_upstream_with_client_certificate_and_server_name() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let frontend = tls_frontend(&pki, &temporal).await;
    let proxy =
        ProxyProcess::start(&upstream_tls(&pki, &frontend, Some("frontend.internal"))).await;
    let out = cli::list_namespaces(&proxy.addr.to_string(), Some(&client(&pki))).await;
    out.assert_success("namespace list through two proxies");
    assert!(cli::namespace_names(&out).contains(&"default".to_owned()));
    // The frontend saw a verified client certificate: no refusal logged.
    assert!(!frontend
        .logs()
        .iter()
        .any(|v| v["message"] == "TLS handshake refused"));
}

#[tokio::test]
async fn wrong_upstream_name_is_unavailable_with_the_reason() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let frontend = tls_frontend(&pki, &temporal).await;
    // Without server_name the proxy checks "127.0.0.1", which the frontend's
    // certificate does not name.
    let proxy = ProxyProcess::start(&upstream_tls(&pki, &frontend, None)).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = conn
        .unary(
            "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo",
            &pb::get_system_info(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.grpc_status, Some(14), "{reply:?}");
    let message = reply.grpc_message.unwrap_or_default();
    assert!(message.contains("TLS handshake failed"), "{message}");
    assert!(
        message.contains("not valid for name \"127.0.0.1\""),
        "{message}"
    );
}
