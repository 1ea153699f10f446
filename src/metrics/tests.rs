//! The exposition, checked sample by sample.

use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::HashSet;

use super::collectors::seconds_until;
use super::*;

/// The value of the sample whose name and labels are exactly `series`
/// (as written in the exposition), or `None` if there is no such line.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// A finished call of the `WorkflowService` method named `method`.
fn call<'a>(method: Option<&str>, namespace: Option<&'a str>, status: i32) -> FinishedCall<'a> {
    let method = method.map(|name| {
        let path = format!("/{}/{name}", crate::temporal::methods::WORKFLOW_SERVICE);
        crate::temporal::methods::lookup(&path).expect("a WorkflowService method")
    });
    FinishedCall {
        method,
        namespace,
        grpc_status: status,
        duration: Duration::from_millis(3),
        request_bytes: 0,
        response_bytes: 0,
    }
}

const EVERY_FAMILY: [&str; 19] = [
    "temporal_mtls_proxy_connections_open",
    "temporal_mtls_proxy_connections_accepted_total",
    "temporal_mtls_proxy_connections_refused_total",
    "temporal_mtls_proxy_handshake_failures_total",
    "temporal_mtls_proxy_calls_total",
    "temporal_mtls_proxy_call_duration_seconds_bucket",
    "temporal_mtls_proxy_request_bytes_total",
    "temporal_mtls_proxy_response_bytes_total",
    "temporal_mtls_proxy_authz_decisions_total",
    "temporal_mtls_proxy_message_size_refusals_total",
    "temporal_mtls_proxy_keepalive_events_total",
    "temporal_mtls_proxy_upstream_connections_open",
    "temporal_mtls_proxy_upstream_connects_total",
    "temporal_mtls_proxy_upstream_connect_failures_total",
    "temporal_mtls_proxy_certificate_expiry_seconds",
    "temporal_mtls_proxy_certificate_expiry_min_seconds",
    "temporal_mtls_proxy_reloads_total",
    "temporal_mtls_proxy_audit_lines_dropped_total",
    "temporal_mtls_proxy_call_duration_seconds_count",
];

fn exercise_everything(metrics: &Metrics) -> Vec<OpenGuard> {
    let guards = vec![metrics.connection_accepted(), metrics.upstream_connected()];
    metrics.connection_refused(ConnectionRefusal::MaxConnections);
    metrics.handshake_failed("unknown_ca");
    metrics.record_call(&FinishedCall {
        request_bytes: 10,
        response_bytes: 20,
        ..call(Some("StartWorkflowExecution"), Some("default"), 0)
    });
    metrics.authz_decision(None, AuthzDecision::Deny);
    metrics.message_size_refused(MessageDirection::Request);
    metrics.keepalive_event(KeepaliveEvent::TooManyPings);
    metrics.upstream_connect_failed(UpstreamFailure::Refused);
    metrics.reload_succeeded();
    let in_a_day = SystemTime::now() + Duration::from_secs(86_400);
    metrics.set_certificates(
        &[("CN=proxy".to_owned(), in_a_day)],
        &[("CN=ca".to_owned(), in_a_day)],
    );
    guards
}

#[test]
fn encode_contains_every_family_in_both_formats() {
    let metrics = Metrics::new(100);
    let _open = exercise_everything(&metrics);
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let text = metrics.encode_as(format);
        for family in EVERY_FAMILY {
            assert!(
                text.lines().any(|l| l.starts_with(family)),
                "{format:?} exposition lacks {family}:\n{text}"
            );
        }
    }
    let openmetrics = metrics.encode();
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE temporal_mtls_proxy_calls counter\n"));
    assert!(metrics
        .encode_as(Format::PrometheusText)
        .contains("# TYPE temporal_mtls_proxy_calls_total counter\n"));
}

#[test]
fn closed_label_sets_start_at_zero_and_open_ones_appear_on_first_use() {
    let metrics = Metrics::new(100);
    let text = metrics.encode();
    for series in [
        r#"temporal_mtls_proxy_connections_refused_total{reason="max_connections"}"#,
        r#"temporal_mtls_proxy_handshake_failures_total{reason="expired"}"#,
        r#"temporal_mtls_proxy_handshake_failures_total{reason="no_alpn_h2"}"#,
        r#"temporal_mtls_proxy_message_size_refusals_total{direction="response"}"#,
        r#"temporal_mtls_proxy_keepalive_events_total{event="age_closed"}"#,
        r#"temporal_mtls_proxy_upstream_connect_failures_total{reason="tls"}"#,
        r#"temporal_mtls_proxy_reloads_total{result="failure"}"#,
        "temporal_mtls_proxy_connections_open",
        "temporal_mtls_proxy_audit_lines_dropped_total",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series} in\n{text}");
    }
    // prometheus-client leaves a family out entirely until it has a
    // series, and the certificate collector exports nothing until told
    // which certificates are in use.
    for absent in [
        "temporal_mtls_proxy_calls",
        "temporal_mtls_proxy_call_duration_seconds",
        "temporal_mtls_proxy_authz_decisions",
        "temporal_mtls_proxy_certificate_expiry",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}

#[test]
fn counters_increment_exactly() {
    let metrics = Metrics::new(100);
    let first = metrics.connection_accepted();
    let second = metrics.connection_accepted();
    let third = metrics.connection_accepted();
    drop(second);
    let upstream = metrics.upstream_connected();
    for _ in 0..3 {
        metrics.handshake_failed("unknown_ca");
    }
    metrics.handshake_failed("a_reason_not_in_the_list");
    metrics.connection_refused(ConnectionRefusal::MaxConnections);
    metrics.connection_refused(ConnectionRefusal::MaxConnections);
    for _ in 0..5 {
        metrics.record_call(&FinishedCall {
            request_bytes: 100,
            response_bytes: 1000,
            ..call(Some("PollWorkflowTaskQueue"), Some("default"), 0)
        });
    }
    metrics.record_call(&call(Some("PollWorkflowTaskQueue"), Some("default"), 7));
    metrics.record_call(&call(None, Some("default"), 12));
    metrics.record_call(&call(Some("GetSystemInfo"), None, 99));
    let rule: Arc<str> = Arc::from("workers");
    metrics.authz_decision(Some(&rule), AuthzDecision::Allow);
    metrics.authz_decision(Some(&rule), AuthzDecision::Allow);
    metrics.authz_decision(None, AuthzDecision::Deny);
    metrics.authz_decision(None, AuthzDecision::AuditDeny);
    metrics.authz_decision(None, AuthzDecision::Invalid);
    metrics.message_size_refused(MessageDirection::Response);
    metrics.keepalive_event(KeepaliveEvent::PingTimeout);
    metrics.keepalive_event(KeepaliveEvent::IdleClosed);
    metrics.keepalive_event(KeepaliveEvent::IdleClosed);
    metrics.upstream_connect_failed(UpstreamFailure::Timeout);
    metrics.reload_succeeded();
    metrics.reload_failed();
    metrics.reload_failed();

    let text = metrics.encode();
    let expect = [
        ("temporal_mtls_proxy_connections_accepted_total", 3.0),
        ("temporal_mtls_proxy_connections_open", 2.0),
        ("temporal_mtls_proxy_upstream_connects_total", 1.0),
        ("temporal_mtls_proxy_upstream_connections_open", 1.0),
        (
            r#"temporal_mtls_proxy_handshake_failures_total{reason="unknown_ca"}"#,
            3.0,
        ),
        (
            r#"temporal_mtls_proxy_handshake_failures_total{reason="a_reason_not_in_the_list"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_handshake_failures_total{reason="expired"}"#,
            0.0,
        ),
        (
            r#"temporal_mtls_proxy_connections_refused_total{reason="max_connections"}"#,
            2.0,
        ),
        (
            r#"temporal_mtls_proxy_calls_total{method="PollWorkflowTaskQueue",namespace="default",grpc_status="OK"}"#,
            5.0,
        ),
        (
            r#"temporal_mtls_proxy_calls_total{method="PollWorkflowTaskQueue",namespace="default",grpc_status="PERMISSION_DENIED"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_calls_total{method="other",namespace="default",grpc_status="UNIMPLEMENTED"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_calls_total{method="GetSystemInfo",namespace="",grpc_status="UNKNOWN"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_call_duration_seconds_count{method="PollWorkflowTaskQueue"}"#,
            6.0,
        ),
        (
            r#"temporal_mtls_proxy_call_duration_seconds_count{method="other"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_request_bytes_total{method="PollWorkflowTaskQueue"}"#,
            500.0,
        ),
        (
            r#"temporal_mtls_proxy_response_bytes_total{method="PollWorkflowTaskQueue"}"#,
            5000.0,
        ),
        (
            r#"temporal_mtls_proxy_authz_decisions_total{rule="workers",decision="allow"}"#,
            2.0,
        ),
        (
            r#"temporal_mtls_proxy_authz_decisions_total{rule="none",decision="deny"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_authz_decisions_total{rule="none",decision="audit_deny"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_authz_decisions_total{rule="none",decision="invalid"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_message_size_refusals_total{direction="response"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_message_size_refusals_total{direction="request"}"#,
            0.0,
        ),
        (
            r#"temporal_mtls_proxy_keepalive_events_total{event="ping_timeout"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_keepalive_events_total{event="idle_closed"}"#,
            2.0,
        ),
        (
            r#"temporal_mtls_proxy_upstream_connect_failures_total{reason="timeout"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_reloads_total{result="success"}"#,
            1.0,
        ),
        (
            r#"temporal_mtls_proxy_reloads_total{result="failure"}"#,
            2.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    // Calls that sent no bytes create no byte series.
    assert!(!text.contains(r#"request_bytes_total{method="GetSystemInfo"}"#));

    drop((first, third, upstream));
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "temporal_mtls_proxy_connections_open"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "temporal_mtls_proxy_upstream_connections_open"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "temporal_mtls_proxy_connections_accepted_total"),
        Some(3.0)
    );
}

#[test]
fn the_101st_namespace_counts_as_other() {
    let metrics = Metrics::new(100);
    let series = |ns: &str| {
        format!(
            r#"temporal_mtls_proxy_calls_total{{method="DescribeNamespace",namespace="{ns}",grpc_status="OK"}}"#
        )
    };
    let names: Vec<String> = (1..=101).map(|i| format!("ns-{i}")).collect();
    for name in &names {
        metrics.record_call(&call(Some("DescribeNamespace"), Some(name), 0));
    }
    // A kept namespace stays kept after the cap is reached; a new one
    // and a repeat of the 101st both go to "other"; none is "".
    metrics.record_call(&call(Some("DescribeNamespace"), Some("ns-1"), 0));
    metrics.record_call(&call(Some("DescribeNamespace"), Some("ns-101"), 0));
    metrics.record_call(&call(Some("DescribeNamespace"), Some("ns-102"), 0));
    metrics.record_call(&call(Some("DescribeNamespace"), None, 0));
    metrics.record_call(&call(Some("DescribeNamespace"), Some(""), 0));

    let text = metrics.encode();
    assert_eq!(sample(&text, &series("ns-1")), Some(2.0));
    assert_eq!(sample(&text, &series("ns-100")), Some(1.0));
    assert_eq!(sample(&text, &series("ns-101")), None);
    assert_eq!(sample(&text, &series("ns-102")), None);
    assert_eq!(sample(&text, &series("other")), Some(3.0));
    assert_eq!(sample(&text, &series("")), Some(2.0));
    let call_series = text
        .lines()
        .filter(|l| l.starts_with("temporal_mtls_proxy_calls_total{"))
        .count();
    assert_eq!(call_series, 100 + 2, "{text}");
}

#[test]
fn namespace_cap_zero_and_overlong_names() {
    let metrics = Metrics::new(0);
    metrics.record_call(&call(Some("DescribeNamespace"), Some("default"), 0));
    let text = metrics.encode();
    assert!(text.contains(r#"namespace="other""#), "{text}");
    assert!(!text.contains(r#"namespace="default""#), "{text}");

    let metrics = Metrics::new(100);
    let huge = "n".repeat(MAX_NAMESPACE_LABEL_LEN + 1);
    metrics.record_call(&call(Some("DescribeNamespace"), Some(&huge), 0));
    let text = metrics.encode();
    assert!(text.contains(r#"namespace="other""#), "{text}");
    assert!(!text.contains(&huge));
}

#[test]
fn racing_first_calls_never_exceed_the_cap() {
    let labels = NamespaceLabels::new(10);
    let kept: HashSet<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let labels = &labels;
                scope.spawn(move || {
                    (0..50)
                        .map(|i| labels.label(Some(&format!("ns-{t}-{i}"))).to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker panicked"))
            .filter(|label| label != OTHER)
            .collect()
    });
    assert_eq!(kept.len(), 10, "{kept:?}");
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new(100);
    metrics.record_call(&call(Some("DescribeNamespace"), Some("a\"b\\c\nd"), 0));
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let text = metrics.encode_as(format);
        assert!(
            text.contains(r#"namespace="a\"b\\c\nd""#),
            "{format:?}:\n{text}"
        );
    }
}

#[test]
fn long_polls_land_below_the_top_bucket() {
    let metrics = Metrics::new(100);
    metrics.record_call(&FinishedCall {
        duration: Duration::from_secs(70),
        ..call(Some("PollActivityTaskQueue"), Some("default"), 0)
    });
    let text = metrics.encode_as(Format::PrometheusText);
    let bucket = |le: &str| {
        sample(
            &text,
            &format!(
                r#"temporal_mtls_proxy_call_duration_seconds_bucket{{method="PollActivityTaskQueue",le="{le}"}}"#
            ),
        )
    };
    assert_eq!(bucket("0.001"), Some(0.0));
    assert_eq!(bucket("50"), Some(0.0));
    assert_eq!(bucket("75"), Some(1.0));
    assert_eq!(bucket("+Inf"), Some(1.0));
}

#[test]
fn set_certificates_replaces_the_previous_set() {
    let metrics = Metrics::new(100);
    let now = SystemTime::now();
    let hours = |h: u64| now + Duration::from_secs(h * 3600);
    metrics.set_certificates(
        &[("CN=proxy-old".to_owned(), hours(1))],
        &[
            ("CN=root-a".to_owned(), hours(1000)),
            ("CN=root-b".to_owned(), hours(2000)),
        ],
    );
    let text = metrics.encode();
    let expiry = |kind: &str, subject: &str| {
        sample(
            &text,
            &format!(
                r#"temporal_mtls_proxy_certificate_expiry_seconds{{kind="{kind}",subject="{subject}"}}"#
            ),
        )
    };
    let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 60.0);
    assert!(near(expiry("server", "CN=proxy-old"), 3600.0), "{text}");
    assert!(near(expiry("ca", "CN=root-b"), 2000.0 * 3600.0), "{text}");
    assert!(near(
        sample(&text, "temporal_mtls_proxy_certificate_expiry_min_seconds"),
        3600.0
    ));

    // Rotation: new server certificate, root-b gone, and a second
    // "CN=root-a" (old and new CA with the same subject) expired an hour
    // ago.
    metrics.set_certificates(
        &[("CN=proxy-new".to_owned(), hours(24))],
        &[
            ("CN=root-a".to_owned(), hours(1000)),
            ("CN=root-a".to_owned(), now - Duration::from_secs(3600)),
        ],
    );
    let text = metrics.encode();
    let expiry = |kind: &str, subject: &str| {
        sample(
            &text,
            &format!(
                r#"temporal_mtls_proxy_certificate_expiry_seconds{{kind="{kind}",subject="{subject}"}}"#
            ),
        )
    };
    assert_eq!(expiry("server", "CN=proxy-old"), None, "{text}");
    assert_eq!(expiry("ca", "CN=root-b"), None, "{text}");
    assert!(
        near(expiry("server", "CN=proxy-new"), 24.0 * 3600.0),
        "{text}"
    );
    assert!(near(expiry("ca", "CN=root-a"), -3600.0), "{text}");
    assert!(near(
        sample(&text, "temporal_mtls_proxy_certificate_expiry_min_seconds"),
        -3600.0
    ));
    let series = text
        .lines()
        .filter(|l| l.starts_with("temporal_mtls_proxy_certificate_expiry_seconds{"))
        .count();
    assert_eq!(series, 2, "{text}");

    metrics.set_certificates(&[], &[]);
    assert!(!metrics.encode().contains("certificate_expiry"));
}

#[test]
fn seconds_until_counts_down_and_goes_negative() {
    let not_after = SystemTime::now() + Duration::from_secs(3600);
    let now = SystemTime::now();
    let later = now + Duration::from_secs(600);
    let at_now = seconds_until(not_after, now);
    let at_later = seconds_until(not_after, later);
    assert!((at_now - at_later - 600.0).abs() < 1e-6);
    assert!(seconds_until(now, later) < 0.0);
}

#[test]
fn audit_drops_are_read_at_scrape_time_and_stay_monotonic() {
    let metrics = Metrics::new(100);
    let total = |m: &Metrics| sample(&m.encode(), "temporal_mtls_proxy_audit_lines_dropped_total");
    assert_eq!(total(&metrics), Some(0.0));

    let dropped = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&dropped);
    metrics.set_audit_dropped_source(move || counter.load(Ordering::Relaxed));
    dropped.store(4, Ordering::Relaxed);
    assert_eq!(total(&metrics), Some(4.0));

    // A new sink starts counting from zero; the total carries on.
    let replacement = Arc::new(AtomicU64::new(1));
    let counter = Arc::clone(&replacement);
    metrics.set_audit_dropped_source(move || counter.load(Ordering::Relaxed));
    assert_eq!(total(&metrics), Some(5.0));
    replacement.store(3, Ordering::Relaxed);
    metrics.clear_audit_dropped_source();
    assert_eq!(total(&metrics), Some(7.0));
    // The source no longer holds the counter.
    assert_eq!(Arc::strong_count(&replacement), 1);
}

#[test]
fn format_follows_the_accept_header() {
    // Prometheus 3's default scrape header, and Prometheus 2's.
    let prometheus3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let prometheus2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prometheus3)), Format::OpenMetrics);
    assert_eq!(Format::from_accept(Some(prometheus2)), Format::OpenMetrics);
    assert_eq!(
        Format::from_accept(Some("Application/OpenMetrics-Text")),
        Format::OpenMetrics
    );
    for other in [
        None,
        Some("*/*"),
        Some("text/plain"),
        Some("text/plain;version=0.0.4"),
        Some("application/openmetrics-text;q=0"),
        Some(""),
    ] {
        assert_eq!(
            Format::from_accept(other),
            Format::PrometheusText,
            "{other:?}"
        );
    }
    assert!(Format::OpenMetrics
        .content_type()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(Format::PrometheusText
        .content_type()
        .starts_with("text/plain; version=0.0.4"));
}

#[test]
fn grpc_status_labels_are_bounded() {
    assert_eq!(grpc_status_label(0), "OK");
    assert_eq!(grpc_status_label(7), "PERMISSION_DENIED");
    assert_eq!(grpc_status_label(16), "UNAUTHENTICATED");
    assert_eq!(grpc_status_label(17), "UNKNOWN");
    assert_eq!(grpc_status_label(-1), "UNKNOWN");
}

#[test]
fn token_issuer_metrics_follow_the_issuers_status_at_scrape_time() {
    let metrics = Metrics::new(100);
    let text = metrics.encode_as(Format::PrometheusText);
    assert!(
        !text.contains("token_keys"),
        "nothing before a source:\n{text}"
    );
    let failures = Arc::new(AtomicU64::new(0));
    metrics.set_token_keys_source({
        let failures = Arc::clone(&failures);
        move || {
            vec![crate::token::IssuerStatus {
                name: Arc::from("cluster"),
                keys: 2,
                generation: Some(1),
                since: None,
                fetches: 3,
                fetch_failures: failures.load(Ordering::Relaxed),
                early_refetches: 0,
                last_error: None,
            }]
        }
    });
    let series = "temporal_mtls_proxy_token_key_fetch_failures_total{issuer=\"cluster\"}";
    let text = metrics.encode_as(Format::PrometheusText);
    assert_eq!(sample(&text, series), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "temporal_mtls_proxy_token_keys{issuer=\"cluster\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "temporal_mtls_proxy_token_key_fetches_total{issuer=\"cluster\"}"
        ),
        Some(3.0)
    );
    failures.store(4, Ordering::Relaxed);
    let text = metrics.encode_as(Format::PrometheusText);
    assert_eq!(sample(&text, series), Some(4.0), "{text}");
}

#[test]
fn per_method_series_are_the_exposed_ones_whatever_the_method_handle() {
    let metrics = Metrics::new(100);
    let row = call(Some("GetSystemInfo"), None, 0).method.unwrap();
    // A copy is not a row of the table: counted through the family lookup,
    // into the same series as the row's kept handles.
    let copy: &'static Method = Box::leak(Box::new(*row));
    for method in [row, copy, row] {
        metrics.record_call(&FinishedCall {
            method: Some(method),
            request_bytes: 7,
            ..call(None, None, 0)
        });
    }
    let text = metrics.encode();
    for (series, value) in [
        (
            r#"temporal_mtls_proxy_call_duration_seconds_count{method="GetSystemInfo"}"#,
            3.0,
        ),
        (
            r#"temporal_mtls_proxy_request_bytes_total{method="GetSystemInfo"}"#,
            21.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
}
