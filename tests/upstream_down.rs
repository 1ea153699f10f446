//! The upstream goes away and comes back: calls get UNAVAILABLE at once
//! (not a hang, not a reset) with a message naming the upstream, and succeed
//! again once it is back, without restarting the proxy.

mod support;

use std::time::{Duration, Instant};

use support::grpc::{pb, GrpcConn, GrpcReply};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::{TemporalOpts, TemporalServer};

const GET_SYSTEM_INFO: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";

async fn system_info(conn: &GrpcConn) -> GrpcReply {
    conn.unary_timeout(
        GET_SYSTEM_INFO,
        &pb::get_system_info(),
        &[("grpc-timeout", "10S")],
        Duration::from_secs(15),
    )
    .await
    .expect("a gRPC reply")
}

async fn until_ok(conn: &GrpcConn) -> GrpcReply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = system_info(conn).await;
        if reply.is_ok() || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_unavailable(reply: &GrpcReply, port: u16) {
    assert_eq!(reply.http_status, 200, "{reply:?}");
    assert_eq!(reply.grpc_status, Some(14), "{reply:?}");
    let message = reply.grpc_message.as_deref().unwrap_or_default();
    assert!(
        message.contains(&format!("upstream http://127.0.0.1:{port} unreachable")),
        "{message}"
    );
}

#[tokio::test]
async fn unavailable_while_down_and_recovers_without_restart() {
    let port = support::tools::free_port();
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &format!("http://127.0.0.1:{port}"), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;

    // Nothing listens: refused at once, answered as UNAVAILABLE (the call's
    // own 10 s deadline is far away, so this is not DEADLINE_EXCEEDED).
    let reply = system_info(&conn).await;
    assert_unavailable(&reply, port);
    assert!(reply.message().is_empty());

    // The frontend comes up on that port: the same client connection, same
    // proxy process, now gets through.
    let mut temporal = TemporalServer::start_with(TemporalOpts {
        port: Some(port),
        ..TemporalOpts::default()
    })
    .await;
    let reply = until_ok(&conn).await;
    assert!(reply.is_ok(), "{reply:?}");
    assert!(pb::server_version(&reply.message()).is_some());

    // It dies (its connections with it) and comes back again. A call that
    // was on the dying connection may learn of it first ("connection
    // failed"); every call is UNAVAILABLE, and soon they say unreachable.
    temporal.stop().await;
    let mut reply = system_info(&conn).await;
    for _ in 0..20 {
        assert_eq!(reply.grpc_status, Some(14), "{reply:?}");
        if reply
            .grpc_message
            .as_deref()
            .unwrap_or_default()
            .contains("unreachable")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply = system_info(&conn).await;
    }
    assert_unavailable(&reply, port);
    temporal.restart().await;
    let reply = until_ok(&conn).await;
    assert!(reply.is_ok(), "{reply:?}");
}
