//! The differential conformance suite (issue 10): a table of request shapes
//! built byte by byte with a raw HTTP/2 client, each sent directly to the
//! real Temporal dev server (h2c) and through the real proxy (mTLS) with a
//! payments-only certificate and with one granted every namespace, while a
//! bystander long poll of another tenant (billing) is in flight through the
//! proxy. Per row: the proxy answers as the frontend does (same grpc-status
//! class, same effect on the server) or refuses more strictly on policy
//! grounds; the payments certificate never acts on billing (checked on the
//! server afterwards); the bystander poll survives; a client connection the
//! frontend keeps usable stays usable through the proxy.
//!
//! All rows run; differences are reported together at the end (row name,
//! direct outcome, proxy outcome). `--no-capture` shows the full report
//! also when every row passes; `CONFORMANCE_FRAMES=1` adds the frames
//! received for failing rows.
//!
//! The table lives in tests/support/conformance/shapes.rs, the harness in
//! harness.rs, the protobuf encoders in enc.rs.

mod support;

#[path = "support/conformance/enc.rs"]
mod enc;
#[path = "support/conformance/harness.rs"]
mod harness;
#[path = "support/conformance/shapes.rs"]
mod shapes;

use std::time::Duration;

use harness::{run_rows, Env, Row};
use support::grpc::{pb, ClientTls};
use support::pki::{ClientSpec, TestPki};
use support::proxy::{config, ProxyProcess};
use support::raw_h2::{
    self, error_code, field, flags, frame_type, Field, H2Conn, H2Options, Outcome, Step,
};
use support::temporal::{TemporalOpts, TemporalServer};

async fn suite(label: &str, opts: TemporalOpts, rows: Vec<Row>) {
    let env = Env::start(label, opts).await;
    let (report, failed) = run_rows(&env, rows).await;
    println!("{report}");
    if failed > 0 {
        let failing: Vec<&str> = report
            .lines()
            .skip_while(|l| !l.starts_with("==== summary"))
            .filter(|l| l.starts_with("FAIL"))
            .collect();
        panic!(
            "{failed} conformance row(s) differ from the frontend [{label}] (full report above):\n{}",
            failing.join("\n")
        );
    }
}

/// Every row against a dev server with default options.
#[tokio::test]
async fn all_shapes_against_a_default_server() {
    suite(
        "default server options",
        TemporalOpts::default(),
        shapes::all_rows(),
    )
    .await;
}

/// The namespace rows against a server that acts on cross-namespace
/// commands (StartChildWorkflowExecution, SignalExternal..., RequestCancelExternal...
/// naming another namespace).
#[tokio::test]
async fn namespace_shapes_with_cross_namespace_commands_enabled() {
    suite(
        "system.enableCrossNamespaceCommands=true",
        TemporalOpts::default().dynamic("system.enableCrossNamespaceCommands", "true"),
        shapes::namespace_rows(),
    )
    .await;
}

/// The namespace rows against a server that accepts a task token of
/// another namespace than the request's.
#[tokio::test]
async fn namespace_shapes_without_token_namespace_enforcement() {
    suite(
        "frontend.enableTokenNamespaceEnforcement=false",
        TemporalOpts::default().dynamic("frontend.enableTokenNamespaceEnforcement", "false"),
        shapes::namespace_rows(),
    )
    .await;
}

/// The raw client itself, against the real dev server and the real proxy.
#[tokio::test]
async fn raw_h2_client_selftest() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let gsi = enc::method("GetSystemInfo");
    let who = pki.client_cert("selftest", ClientSpec::cn("selftest"));
    let tls = ClientTls::mtls(&pki.ca, &who.cert, &who.key, "localhost");

    let direct = H2Conn::h2c(temporal.addr, &H2Options::default())
        .await
        .unwrap();
    let via = H2Conn::tls(proxy.addr, &tls, &H2Options::default())
        .await
        .unwrap();
    for (name, conn) in [("direct", &direct), ("proxy", &via)] {
        // A valid unary call.
        let o = conn.call(&gsi, &[], &pb::get_system_info()).await;
        assert!(o.is_ok(), "{name}: GetSystemInfo: {o}");
        let version = pb::server_version(&o.response().unwrap().message());
        assert!(version.is_some_and(|v| !v.is_empty()), "{name}: {o:?}");

        // HEADERS split into CONTINUATION frames, DATA in 1-byte frames.
        let steps = [
            Step::Headers {
                fields: conn.request_headers(&gsi, &[]),
                end_stream: false,
                fragment: Some(40),
            },
            Step::Data {
                bytes: support::grpc::frame(&pb::get_system_info(), false).to_vec(),
                end_stream: true,
                chunk: 1,
            },
        ];
        let (_, o) = conn.run(&steps, Duration::from_secs(10)).await;
        assert!(o.is_ok(), "{name}: continuation + 1-byte DATA: {o}");

        // A dynamic-table entry added by one block is referenced by the next.
        let mut h = conn.request_headers(&gsi, &[]);
        h.push(Field::Indexing(b"x-selftest".to_vec(), b"indexed".to_vec()));
        let (_, o) = conn
            .run(
                &[
                    Step::headers(h),
                    Step::data(support::grpc::frame(&[], false).to_vec(), true),
                ],
                Duration::from_secs(10),
            )
            .await;
        assert!(o.is_ok(), "{name}: incremental indexing: {o}");
        let mut h = conn.request_headers(&gsi, &[]);
        h.push(Field::Indexed(62));
        let (_, o) = conn
            .run(
                &[
                    Step::headers(h),
                    Step::data(support::grpc::frame(&[], false).to_vec(), true),
                ],
                Duration::from_secs(10),
            )
            .await;
        assert!(o.is_ok(), "{name}: indexed reference: {o}");

        // PING is answered.
        conn.ping(*b"selftest").unwrap();
        assert!(
            conn.wait_ping_ack(*b"selftest", Duration::from_secs(5))
                .await,
            "{name}: no PING ACK"
        );

        // An unknown method answers UNIMPLEMENTED (direct) with a message.
        let o = conn.call(&enc::method("NoSuchMethod"), &[], &[]).await;
        assert!(o.grpc_status().is_some(), "{name}: {o}");

        // A response decoded across blocks (the server's dynamic table):
        // many calls on one connection all decode.
        for _ in 0..5 {
            let o = conn
                .call(&gsi, &[("x-n", "1")], &pb::get_system_info())
                .await;
            assert!(o.is_ok(), "{name}: repeated: {o}");
        }
        let (acks, _, _) = conn.counters();
        assert!(acks >= 1, "{name}: our SETTINGS were never acknowledged");
        assert!(conn.closed().is_none(), "{name}: {:?}", conn.closed());
    }

    // Request trailers straight to grpc-go: the connection-level answer is
    // what the suite's trailer rows compare against.
    let steps = [
        Step::headers(direct.request_headers(&gsi, &[])),
        Step::data(support::grpc::frame(&[], false).to_vec(), false),
        Step::trailers(vec![field("x-trailer", "1")]),
    ];
    let (_, o) = direct.run(&steps, Duration::from_secs(10)).await;
    println!(
        "request trailers, direct: {o}; goaways {:?}",
        direct.goaways()
    );

    // A raw RST_STREAM, GOAWAY and WINDOW_UPDATE go out without breaking
    // the client (a fresh connection for each).
    let c = H2Conn::h2c(temporal.addr, &H2Options::default())
        .await
        .unwrap();
    let id = c
        .send_steps(
            &[Step::headers(c.request_headers(&gsi, &[]))],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    c.rst_stream(id, error_code::CANCEL).unwrap();
    c.window_update(0, 1000).unwrap();
    let o = c.call(&gsi, &[], &pb::get_system_info()).await;
    assert!(o.is_ok(), "after RST_STREAM: {o}");
    c.goaway(0, error_code::NO_ERROR, b"bye").unwrap();
    let _ = c.wait_closed(Duration::from_secs(3)).await;

    // A reader that never returns window: the server stops at the window.
    let slow = H2Options {
        auto_window_update: false,
        settings: vec![(raw_h2::setting::INITIAL_WINDOW_SIZE, 10)],
        connection_window_increment: 0,
        ..H2Options::default()
    };
    let c = H2Conn::h2c(temporal.addr, &slow).await.unwrap();
    let (id, o) = c
        .run(
            &[
                Step::headers(c.request_headers(&gsi, &[])),
                Step::data(
                    support::grpc::frame(&pb::get_system_info(), false).to_vec(),
                    true,
                ),
            ],
            Duration::from_secs(2),
        )
        .await;
    assert!(matches!(o, Outcome::Timeout { .. }), "{o}");
    let ev = c.stream(id).unwrap();
    assert!(ev.headers.is_some() && ev.data.len() <= 10, "{ev:?}");
    c.window_update(id, 1 << 20).unwrap();
    c.window_update(0, 1 << 20).unwrap();
    let o = c.wait_stream(id, Duration::from_secs(5)).await;
    assert!(o.is_ok(), "after the window opened: {o}");

    // Raw frame types are available to rows.
    let _ = (flags::END_STREAM, frame_type::DATA);
}
