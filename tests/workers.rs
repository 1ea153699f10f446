//! Thread per core (`[runtime] worker_threads`): client connections are
//! handed to the workers in turn, and each worker reaches the frontend on
//! upstream connections of its own, so a call never leaves its thread.

mod support;

use support::grpc::{pb, ClientTls, GrpcConn};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

#[tokio::test]
async fn connections_are_spread_over_workers_each_with_its_own_upstream() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(
        &pki,
        &temporal.url(),
        "[runtime]\nworker_threads = 3",
    ))
    .await;
    let listening = proxy
        .logs()
        .into_iter()
        .find(|v| v["message"] == "listening (mTLS, HTTP/2)")
        .expect("a listening line");
    assert_eq!(listening["workers"], 3, "{listening}");

    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    // Six connections, open at once: two per worker.
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(GrpcConn::connect(proxy.addr, Some(&tls)).await.unwrap());
    }
    for (i, conn) in conns.iter().enumerate() {
        for _ in 0..3 {
            let reply = conn
                .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
                .await
                .unwrap();
            assert!(reply.is_ok(), "connection {i}: {reply:?}");
        }
    }
    // One upstream connection per worker (the readiness probe shares the
    // first worker's); with one shared pool there would be one in all.
    assert_eq!(
        proxy.upstream_connections_opened(),
        3,
        "one upstream connection per worker"
    );
}

#[tokio::test]
async fn one_worker_serves_everything_on_the_main_thread() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(
        &pki,
        &temporal.url(),
        "[runtime]\nworker_threads = 1",
    ))
    .await;
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(GrpcConn::connect(proxy.addr, Some(&tls)).await.unwrap());
    }
    for conn in &conns {
        let reply = conn
            .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
            .await
            .unwrap();
        assert!(reply.is_ok(), "{reply:?}");
    }
    assert_eq!(
        proxy.upstream_connections_opened(),
        1,
        "one worker, one upstream connection"
    );
}
