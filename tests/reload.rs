//! Hot reload under load: the server certificate and the CA bundle rotate
//! while a real SDK worker runs (no call fails, new connections see the new
//! material); a broken certificate is refused and the old one keeps serving;
//! SIGHUP applies a new policy, to open connections too.

mod support;

use std::time::Duration;

use support::cli::CliTls;
use support::grpc::{pb, ClientTls};
use support::pki::{cert_der, TestPki};
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

async fn wait_reload(proxy: &ProxyProcess, message_prefix: &str, seen_before: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n = proxy
            .logs()
            .iter()
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message_prefix))
            })
            .count();
        if n > seen_before {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {message_prefix:?} log: {:#?}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(proxy: &ProxyProcess, prefix: &str) -> usize {
    proxy
        .logs()
        .iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .count()
}

#[tokio::test]
async fn certificates_and_ca_rotate_under_a_running_worker() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let original = proxy.served_certificate(&pki).await;
    assert_eq!(original, cert_der(&pki.server_cert));

    // A worker runs workflows (one started every 0.3 s) through the rotation.
    let tls = CliTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let addr = proxy.addr.to_string();
    let mut args: Vec<String> = [
        "--mode",
        "run",
        "--address",
        &addr,
        "--workflows",
        "20",
        "--interval",
        "0.3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(support::python::tls_args(&tls));
    let worker = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::python::run_python(&args, Duration::from_secs(120)).await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // New server certificate (same CA), written over the configured files.
    let reloads = count(&proxy, "reloaded");
    let (cert, key) = pki.server_cert_for("rotated", &["localhost", "127.0.0.1"]);
    std::fs::copy(&key, &pki.server_key).unwrap();
    std::fs::copy(&cert, &pki.server_cert).unwrap();
    wait_reload(&proxy, "reloaded", reloads).await;
    let rotated = proxy.served_certificate(&pki).await;
    assert_ne!(rotated, original);
    assert_eq!(rotated, cert_der(&cert));

    // A CA bundle with a second CA: its clients get in, the old ones too.
    let stranger = pki.other_ca();
    let tls_other = ClientTls::mtls(&pki.ca, &stranger.cert, &stranger.key, "localhost");
    let refused = support::grpc::GrpcConn::connect(proxy.addr, Some(&tls_other)).await;
    assert!(
        refused.is_err(),
        "a client of the other CA got in before the rotation"
    );
    let reloads = count(&proxy, "reloaded");
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&pki.ca).unwrap(),
        std::fs::read_to_string(&pki.other_ca_cert).unwrap()
    );
    // The bundle is a new file the config now names (clients keep verifying
    // the server with the original CA file).
    std::fs::write(pki.dir.path().join("ca-bundle.pem"), &bundle).unwrap();
    let text = std::fs::read_to_string(&proxy.config_path)
        .unwrap()
        .replace(
            &format!("client_ca = {:?}", pki.ca.display().to_string()),
            &format!(
                "client_ca = {:?}",
                pki.dir.path().join("ca-bundle.pem").display().to_string()
            ),
        );
    std::fs::write(&proxy.config_path, text).unwrap();
    wait_reload(&proxy, "reloaded", reloads).await;
    let conn = support::grpc::GrpcConn::connect(proxy.addr, Some(&tls_other))
        .await
        .expect("new CA accepted");
    let r = conn
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(r.is_ok(), "{r:?}");

    let worker = worker.await.unwrap();
    worker.assert_success("worker across rotations");
    assert_eq!(worker.json()["ok"], true);
    assert_eq!(count(&proxy, "reload refused"), 0, "{:#?}", proxy.logs());
}

#[tokio::test]
async fn broken_certificate_is_refused_and_the_old_one_keeps_serving() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let original = proxy.served_certificate(&pki).await;
    let refusals = count(&proxy, "reload refused");
    std::fs::write(
        &pki.server_cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    wait_reload(&proxy, "reload refused", refusals).await;
    let line = proxy
        .logs()
        .into_iter()
        .rfind(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reload refused"))
        })
        .unwrap();
    assert!(
        line["reason"].as_str().unwrap().contains("tls.cert"),
        "{line}"
    );
    // New handshakes still get the old certificate, and calls work.
    assert_eq!(proxy.served_certificate(&pki).await, original);
    let conn = proxy.grpc(&pki, &pki.client).await;
    let r = conn
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(r.is_ok());
    // An expired replacement is refused too.
    let refusals = count(&proxy, "reload refused");
    std::fs::copy(&pki.expired().cert, &pki.server_cert).unwrap();
    std::fs::copy(&pki.expired().key, &pki.server_key).unwrap();
    wait_reload(&proxy, "reload refused", refusals).await;
    assert_eq!(proxy.served_certificate(&pki).await, original);
}

#[tokio::test]
async fn sighup_applies_a_new_policy_to_open_connections() {
    let temporal = TemporalServer::start(&["nsa"]).await;
    let pki = TestPki::new();
    let rule = |ns: &str| {
        format!("[authz]\n[[authz.rule]]\nname = \"r\"\nmatch = {{ cn = \"good-client\" }}\nnamespaces = [\"{ns}\"]\nroles = [\"reader\"]\n")
    };
    let base = config(&pki, &temporal.url(), "");
    // SIGHUP: the binary as a child process.
    let proxy = ProxyProcess::spawn(&format!("{base}\n{}", rule("default"))).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let path = format!("{WS}/DescribeNamespace");
    let denied = conn
        .unary(&path, &pb::describe_namespace("nsa"), &[])
        .await
        .unwrap();
    assert_eq!(denied.grpc_status, Some(7));

    std::fs::write(&proxy.config_path, format!("{base}\n{}", rule("nsa"))).unwrap();
    let reloads = count(&proxy, "reloaded");
    proxy.signal("HUP");
    wait_reload(&proxy, "reloaded", reloads).await;
    let allowed = conn
        .unary(&path, &pb::describe_namespace("nsa"), &[])
        .await
        .unwrap();
    assert!(
        allowed.is_ok(),
        "the open connection still has the old policy: {allowed:?}"
    );
    let now_denied = conn
        .unary(&path, &pb::describe_namespace("default"), &[])
        .await
        .unwrap();
    assert_eq!(now_denied.grpc_status, Some(7));

    // A listen address change is reported as needing a restart.
    std::fs::write(
        &proxy.config_path,
        format!("{base}\n{}", rule("nsa")).replace("127.0.0.1:0", "127.0.0.1:1"),
    )
    .unwrap();
    proxy
        .wait_log(Duration::from_secs(15), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("changed settings need a restart"))
                && v["settings"]
                    .as_str()
                    .is_some_and(|s| s.contains("listen.address"))
        })
        .await
        .expect("restart-needed warning");
}
