//! Every metric the proxy exports, in one registry, with bounded labels.
//!
//! [`Metrics`] is created once at start-up and shared as `Arc<Metrics>`.
//! The rest of the proxy calls its small methods (`connection_accepted`,
//! `record_call`, `authz_decision`, ...) and never builds metric names or
//! label strings itself, so what is exported is decided here alone. The admin
//! listener (`admin.rs`) serves [`Metrics::encode_as`] on `GET /metrics`.
//!
//! # Label cardinality
//!
//! Every label takes its values from a bounded set, so a client cannot grow
//! the exposition (or the proxy's memory) by what it sends:
//!
//! - `method`: the short RPC name from the Temporal method table (a
//!   `&'static str`), or `other` for anything not in it.
//! - `namespace`: the first `namespace_cap` distinct namespaces (default
//!   100) keep their name; later ones, and names longer than Temporal itself
//!   accepts, count as `other`; calls without a namespace have `""`. First
//!   come, first kept: a client allowed to send arbitrary namespaces can use
//!   up the cap with junk, after which real ones count as `other`. That costs
//!   detail, never memory. A cap of 0 turns the namespace label off (every
//!   call counts as `other`).
//! - `grpc_status`: the canonical code name (`OK`, `PERMISSION_DENIED`, ...);
//!   numbers outside 0..=16 count as `UNKNOWN`, as the gRPC spec says a client
//!   must treat them.
//! - `rule`: authorization rule names come from the configured policy
//!   (reloads may add names; each stays until the process exits).
//! - every other label is a closed set of `&'static str` values.
//!
//! No label carries a client identity. A namespace literally named `other`,
//! or a rule named `none`, shares its series with the overflow bucket or
//! with undecided calls; the cost of a fixed, readable vocabulary.
//!
//! # What a call costs
//!
//! [`Metrics::record_call`] takes an uncontended read lock on the namespace
//! set (a hit clones an `Arc<str>`; only the first call of a new namespace
//! takes the write lock) and four read-locked `Family` lookups, plus the
//! histogram's own short mutex. That is a few hundred nanoseconds next to a
//! gRPC call through TLS, and none of it waits on I/O.
//!
//! # Values computed at scrape time
//!
//! Some metrics are read when they are encoded rather than updated as events
//! happen, so they are never stale:
//!
//! - `certificate_expiry_seconds` and `certificate_expiry_min_seconds`:
//!   [`Metrics::set_certificates`] stores each certificate's not-after time;
//!   the seconds left are computed against the clock on every scrape (a
//!   custom collector), so they count down without anyone refreshing them.
//! - `audit_lines_dropped_total`: read from the audit sink's own counter
//!   through [`Metrics::set_audit_dropped_source`].
//!
//! # Names
//!
//! prometheus-client appends `_total` to counters and the unit to metrics
//! registered with one, so names are registered here without them; the
//! exported names are `temporal_mtls_proxy_connections_accepted_total`,
//! `temporal_mtls_proxy_call_duration_seconds`, and so on.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Prefix of every exported metric name.
pub const PREFIX: &str = "temporal_mtls_proxy";

/// Namespaces that keep their own label value before the rest count as
/// `other`.
pub const DEFAULT_NAMESPACE_CAP: usize = 100;

/// Longer namespace names count as `other`: Temporal refuses them anyway
/// (its `limit.maxIDLength`, default 1000 bytes, covers namespace names), and
/// the cap alone would let 100 label values of up to a request's size each
/// sit in memory and in every scrape.
const MAX_NAMESPACE_LABEL_LEN: usize = 1000;

/// Label value for a method outside the method table, and for namespaces
/// beyond the cap.
const OTHER: &str = "other";

/// Label value for an authorization decision no rule made.
const NO_RULE: &str = "none";

/// Call duration buckets, in seconds: 1-2.5-5 steps from 1 ms to 10 s for
/// ordinary calls, then coarser steps up to 100 s so that long polls (held
/// up to about 70 s by the frontend and the SDKs) land in a bucket of their
/// own instead of in `+Inf`.
const CALL_DURATION_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0,
    100.0,
];

/// Handshake refusal reasons, as `tls::handshake::Refusal::label` names them.
/// Their series exist from start-up with value 0, so a dashboard or an alert
/// on `rate(...)` sees the first failure as an increase rather than as a new
/// series appearing. Any other `&'static str` is still accepted.
const HANDSHAKE_REASONS: [&str; 18] = [
    "no_client_certificate",
    "unknown_ca",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "revoked",
    "wrong_key_usage",
    "bad_certificate",
    "no_alpn_h2",
    "plaintext_h2c",
    "plaintext_http1",
    "not_tls",
    "incompatible",
    "client_alert",
    "timeout",
    "closed",
    "tls_error",
    "io_error",
];

/// The exposition formats `/metrics` can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, for `curl` and for
    /// scrapers that do not ask for OpenMetrics.
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// Picks the format for a request's `Accept` header: OpenMetrics when the
    /// client accepts `application/openmetrics-text` at all (with a non-zero
    /// q), the Prometheus text format otherwise. This is how the Go client's
    /// `promhttp` negotiates, and what Prometheus, which always lists
    /// OpenMetrics, expects.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && parts.all(|param| {
                    let (key, value) = param.split_once('=').unwrap_or((param, ""));
                    !key.trim().eq_ignore_ascii_case("q")
                        || value.trim().parse::<f32>().map_or(true, |q| q > 0.0)
                })
        });
        if openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// Why a connection was refused before its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// `limits.max_connections` client connections were already open.
    MaxConnections,
}

impl RefusalReason {
    const ALL: [RefusalReason; 1] = [RefusalReason::MaxConnections];

    fn label(self) -> &'static str {
        match self {
            RefusalReason::MaxConnections => "max_connections",
        }
    }
}

/// The outcome of one authorization decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthzDecision {
    /// A rule allowed the call.
    Allow,
    /// The call was denied (enforce mode).
    Deny,
    /// The call would have been denied, but audit mode forwarded it.
    AuditDeny,
    /// The request could not be decided on (malformed, header mismatch).
    Invalid,
}

impl AuthzDecision {
    pub fn label(self) -> &'static str {
        match self {
            AuthzDecision::Allow => "allow",
            AuthzDecision::Deny => "deny",
            AuthzDecision::AuditDeny => "audit_deny",
            AuthzDecision::Invalid => "invalid",
        }
    }
}

/// Which way a message over the size limit was travelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageDirection {
    /// Client to upstream.
    Request,
    /// Upstream to client.
    Response,
}

impl MessageDirection {
    const ALL: [MessageDirection; 2] = [MessageDirection::Request, MessageDirection::Response];

    pub fn label(self) -> &'static str {
        match self {
            MessageDirection::Request => "request",
            MessageDirection::Response => "response",
        }
    }
}

/// A keepalive or connection-lifetime policy acting on a client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepaliveEvent {
    /// The client pinged more often than allowed and got GOAWAY.
    TooManyPings,
    /// A keepalive ping went unanswered and the connection was closed.
    PingTimeout,
    /// The connection was closed for having no calls for too long.
    IdleClosed,
    /// The connection reached its maximum age and was rotated.
    AgeClosed,
}

impl KeepaliveEvent {
    const ALL: [KeepaliveEvent; 4] = [
        KeepaliveEvent::TooManyPings,
        KeepaliveEvent::PingTimeout,
        KeepaliveEvent::IdleClosed,
        KeepaliveEvent::AgeClosed,
    ];

    fn label(self) -> &'static str {
        match self {
            KeepaliveEvent::TooManyPings => "too_many_pings",
            KeepaliveEvent::PingTimeout => "ping_timeout",
            KeepaliveEvent::IdleClosed => "idle_closed",
            KeepaliveEvent::AgeClosed => "age_closed",
        }
    }
}

/// Why a new upstream connection could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The frontend refused the TCP connection.
    Refused,
    /// No connection within `upstream.connect_timeout`.
    Timeout,
    /// The TLS handshake with the frontend failed.
    Tls,
    /// The HTTP/2 handshake with the frontend failed.
    Handshake,
    /// Anything else (DNS, I/O).
    Other,
}

impl UpstreamFailure {
    const ALL: [UpstreamFailure; 5] = [
        UpstreamFailure::Refused,
        UpstreamFailure::Timeout,
        UpstreamFailure::Tls,
        UpstreamFailure::Handshake,
        UpstreamFailure::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamFailure::Refused => "refused",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Tls => "tls",
            UpstreamFailure::Handshake => "handshake",
            UpstreamFailure::Other => "other",
        }
    }
}

/// One finished call, as [`Metrics::record_call`] counts it.
#[derive(Clone, Copy, Debug)]
pub struct CallRecord<'a> {
    /// The short RPC name from the method table; `None` counts as `other`.
    pub method: Option<&'static str>,
    /// The namespace the call named, if any.
    pub namespace: Option<&'a str>,
    /// The call's final `grpc-status` (`tonic::Code` converts with `.into()`).
    pub grpc_status: i32,
    /// From the request's arrival to the end of the response.
    pub duration: Duration,
    /// Request body bytes (gRPC framing included).
    pub request_bytes: u64,
    /// Response body bytes (gRPC framing included).
    pub response_bytes: u64,
}

/// Keeps a gauge of open things raised for as long as it lives.
#[derive(Debug)]
#[must_use = "the gauge goes back down when this guard is dropped"]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    namespace: Arc<str>,
    grpc_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthzLabels {
    rule: Arc<str>,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

const RELOAD_SUCCESS: &str = "success";
const RELOAD_FAILURE: &str = "failure";

/// Creates the series of a closed label set with value 0.
fn start_at_zero<S, M, C>(family: &Family<S, M, C>, label_sets: impl IntoIterator<Item = S>)
where
    S: Clone + Hash + Eq,
    C: MetricConstructor<M>,
{
    for labels in label_sets {
        drop(family.get_or_create(&labels));
    }
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn call_duration_histogram() -> Histogram {
    Histogram::new(CALL_DURATION_BUCKETS)
}

/// The proxy's metrics: the registry and a typed handle for each metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    namespaces: NamespaceLabels,
    no_rule: Arc<str>,

    connections_open: Gauge,
    connections_accepted: Counter,
    connections_refused: Family<ReasonLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,

    calls: Family<CallLabels, Counter>,
    call_duration: HistogramFamily<MethodLabels>,
    request_bytes: Family<MethodLabels, Counter>,
    response_bytes: Family<MethodLabels, Counter>,

    authz_decisions: Family<AuthzLabels, Counter>,

    message_size_refusals: Family<DirectionLabels, Counter>,
    keepalive_events: Family<EventLabels, Counter>,

    upstream_connections_open: Gauge,
    upstream_connects: Counter,
    upstream_connect_failures: Family<ReasonLabels, Counter>,

    reloads: Family<ResultLabels, Counter>,

    certificates: Arc<CertificateExpiry>,
    audit_dropped: Arc<AuditDropped>,
}

impl Metrics {
    /// Creates and registers every metric. `namespace_cap` is how many
    /// distinct namespaces keep their own label value
    /// ([`DEFAULT_NAMESPACE_CAP`] unless configured).
    pub fn new(namespace_cap: usize) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix(PREFIX);

        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now (TCP accepted and not yet closed)",
            connections_open.clone(),
        );
        let connections_accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections refused at accept, by reason",
            connections_refused.clone(),
        );
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "handshake_failures",
            "Client TLS handshakes that failed or were refused, by reason",
            handshake_failures.clone(),
        );

        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Calls finished, by method, namespace and final grpc-status",
            calls.clone(),
        );
        let call_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(call_duration_histogram);
        registry.register_with_unit(
            "call_duration",
            "Time from a call's arrival to the end of its response, by method",
            Unit::Seconds,
            call_duration.clone(),
        );
        let request_bytes = Family::<MethodLabels, Counter>::default();
        registry.register_with_unit(
            "request",
            "Request body bytes received from clients, by method",
            Unit::Bytes,
            request_bytes.clone(),
        );
        let response_bytes = Family::<MethodLabels, Counter>::default();
        registry.register_with_unit(
            "response",
            "Response body bytes sent to clients, by method",
            Unit::Bytes,
            response_bytes.clone(),
        );

        let authz_decisions = Family::<AuthzLabels, Counter>::default();
        registry.register(
            "authz_decisions",
            "Authorization decisions, by deciding rule (\"none\" when no rule matched) and decision",
            authz_decisions.clone(),
        );

        let message_size_refusals = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "message_size_refusals",
            "gRPC messages refused for exceeding the size limit, by direction",
            message_size_refusals.clone(),
        );
        let keepalive_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "keepalive_events",
            "Keepalive and connection-lifetime enforcement on client connections, by event",
            keepalive_events.clone(),
        );

        let upstream_connections_open = Gauge::default();
        registry.register(
            "upstream_connections_open",
            "Connections to the upstream frontend open now",
            upstream_connections_open.clone(),
        );
        let upstream_connects = Counter::default();
        registry.register(
            "upstream_connects",
            "Connections to the upstream frontend established",
            upstream_connects.clone(),
        );
        let upstream_connect_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "upstream_connect_failures",
            "Attempts to connect to the upstream frontend that failed, by reason",
            upstream_connect_failures.clone(),
        );

        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of certificates, CA bundle, CRLs and policy, by result",
            reloads.clone(),
        );

        let certificates = Arc::new(CertificateExpiry::default());
        registry.register_collector(Box::new(Arc::clone(&certificates)));
        let audit_dropped = Arc::new(AuditDropped::default());
        registry.register_collector(Box::new(Arc::clone(&audit_dropped)));
        registry.register_collector(Box::new(LogLines));

        // Closed label sets start at zero: see HANDSHAKE_REASONS.
        start_at_zero(
            &connections_refused,
            RefusalReason::ALL.map(|r| ReasonLabels { reason: r.label() }),
        );
        start_at_zero(
            &handshake_failures,
            HANDSHAKE_REASONS.map(|reason| ReasonLabels { reason }),
        );
        start_at_zero(
            &message_size_refusals,
            MessageDirection::ALL.map(|d| DirectionLabels {
                direction: d.label(),
            }),
        );
        start_at_zero(
            &keepalive_events,
            KeepaliveEvent::ALL.map(|e| EventLabels { event: e.label() }),
        );
        start_at_zero(
            &upstream_connect_failures,
            UpstreamFailure::ALL.map(|f| ReasonLabels { reason: f.label() }),
        );
        start_at_zero(
            &reloads,
            [RELOAD_SUCCESS, RELOAD_FAILURE].map(|result| ResultLabels { result }),
        );

        Arc::new(Metrics {
            registry,
            namespaces: NamespaceLabels::new(namespace_cap),
            no_rule: Arc::from(NO_RULE),
            connections_open,
            connections_accepted,
            connections_refused,
            handshake_failures,
            calls,
            call_duration,
            request_bytes,
            response_bytes,
            authz_decisions,
            message_size_refusals,
            keepalive_events,
            upstream_connections_open,
            upstream_connects,
            upstream_connect_failures,
            reloads,
            certificates,
            audit_dropped,
        })
    }

    /// Counts an accepted client connection; `connections_open` stays raised
    /// until the returned guard is dropped.
    pub fn connection_accepted(&self) -> OpenGuard {
        self.connections_accepted.inc();
        self.connections_open.inc();
        OpenGuard(self.connections_open.clone())
    }

    /// Counts a client connection refused at accept.
    pub fn connection_refused(&self, reason: RefusalReason) {
        self.connections_refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts a failed or refused client handshake; `reason` is the short
    /// label of the refusal (`tls::handshake::Refusal::label`).
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one finished call: its status, duration and bytes.
    pub fn record_call(&self, call: &CallRecord<'_>) {
        let method = call.method.unwrap_or(OTHER);
        self.calls
            .get_or_create(&CallLabels {
                method,
                namespace: self.namespaces.label(call.namespace),
                grpc_status: grpc_status_label(call.grpc_status),
            })
            .inc();
        let by_method = MethodLabels { method };
        self.call_duration
            .get_or_create(&by_method)
            .observe(call.duration.as_secs_f64());
        if call.request_bytes > 0 {
            self.request_bytes
                .get_or_create(&by_method)
                .inc_by(call.request_bytes);
        }
        if call.response_bytes > 0 {
            self.response_bytes
                .get_or_create(&by_method)
                .inc_by(call.response_bytes);
        }
    }

    /// Counts one authorization decision; `rule` is the name of the rule that
    /// decided, `None` when none matched.
    pub fn authz_decision(&self, rule: Option<&Arc<str>>, decision: AuthzDecision) {
        let rule = rule.unwrap_or(&self.no_rule);
        self.authz_decisions
            .get_or_create(&AuthzLabels {
                rule: Arc::clone(rule),
                decision: decision.label(),
            })
            .inc();
    }

    /// Counts a message refused for its size.
    pub fn message_size_refused(&self, direction: MessageDirection) {
        self.message_size_refusals
            .get_or_create(&DirectionLabels {
                direction: direction.label(),
            })
            .inc();
    }

    /// Counts a keepalive or connection-lifetime enforcement event.
    pub fn keepalive_event(&self, event: KeepaliveEvent) {
        self.keepalive_events
            .get_or_create(&EventLabels {
                event: event.label(),
            })
            .inc();
    }

    /// Counts a new upstream connection; `upstream_connections_open` stays
    /// raised until the returned guard is dropped.
    pub fn upstream_connected(&self) -> OpenGuard {
        self.upstream_connects.inc();
        self.upstream_connections_open.inc();
        OpenGuard(self.upstream_connections_open.clone())
    }

    /// Counts an upstream connection attempt that failed.
    pub fn upstream_connect_failed(&self, reason: UpstreamFailure) {
        self.upstream_connect_failures
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts a reload that was applied.
    pub fn reload_succeeded(&self) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: RELOAD_SUCCESS,
            })
            .inc();
    }

    /// Counts a reload that was refused (the old material keeps serving).
    pub fn reload_failed(&self) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: RELOAD_FAILURE,
            })
            .inc();
    }

    /// Replaces the certificates whose expiry is exported: the server chain
    /// in use and each CA of the client CA bundle, as (subject, not-after).
    /// Series of certificates no longer listed disappear. Two certificates
    /// with the same kind and subject (a CA bundle holding the old and the
    /// new CA during a rotation) export the earlier expiry, since that is
    /// the one that will break something first.
    pub fn set_certificates(&self, server: &[(String, SystemTime)], cas: &[(String, SystemTime)]) {
        self.certificates.replace(server, cas);
    }

    /// Sets where `audit_lines_dropped_total` is read from on each scrape,
    /// typically `move || counter.load(Ordering::Relaxed)` on the audit
    /// sink's drop counter. Replacing or clearing a source keeps the total
    /// monotonic: what the old source had counted is carried over.
    ///
    /// The closure must not keep the sink itself alive if something waits
    /// for every sink handle to be dropped (`AuditSink::finished`): capture
    /// the counter, not an `AuditSink` clone, or clear the source first.
    pub fn set_audit_dropped_source(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        self.audit_dropped.set(Some(Box::new(source)));
    }

    /// Stops reading the audit drop counter (its last value is kept).
    pub fn clear_audit_dropped_source(&self) {
        self.audit_dropped.set(None);
    }

    /// The exposition in OpenMetrics text format.
    pub fn encode(&self) -> String {
        self.encode_as(Format::OpenMetrics)
    }

    /// The exposition in the given format.
    pub fn encode_as(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        // Writing to a String cannot fail and our collectors do not fail
        // either; should that change, the scraper gets a truncated body
        // (an OpenMetrics one without `# EOF`, which it rejects) and the
        // log says why.
        if let Err(error) = encoded {
            tracing::error!(%error, "encoding metrics failed; the scrape is incomplete");
        }
        out
    }
}

/// The `grpc_status` label of a status code.
fn grpc_status_label(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The namespace label values: the first `cap` distinct names, then
/// `other`.
///
/// A call takes the read lock and, on a hit, clones an `Arc<str>`; only a
/// namespace seen for the first time (at most `cap` times over the process's
/// life) takes the write lock. Readers never wait on each other.
#[derive(Debug)]
struct NamespaceLabels {
    cap: usize,
    kept: RwLock<HashSet<Arc<str>>>,
    other: Arc<str>,
    none: Arc<str>,
}

impl NamespaceLabels {
    fn new(cap: usize) -> NamespaceLabels {
        NamespaceLabels {
            cap,
            kept: RwLock::new(HashSet::new()),
            other: Arc::from(OTHER),
            none: Arc::from(""),
        }
    }

    fn label(&self, namespace: Option<&str>) -> Arc<str> {
        let namespace = match namespace {
            None | Some("") => return Arc::clone(&self.none),
            Some(n) if n.len() > MAX_NAMESPACE_LABEL_LEN => return Arc::clone(&self.other),
            Some(n) => n,
        };
        // A panic while holding the lock cannot leave the set inconsistent
        // (an insert either happened or not), so a poisoned lock is used as is.
        {
            let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(label) = kept.get(namespace) {
                return Arc::clone(label);
            }
            if kept.len() >= self.cap {
                return Arc::clone(&self.other);
            }
        }
        let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        // Another call may have filled the last place, or added this very
        // name, between the two locks.
        if let Some(label) = kept.get(namespace) {
            return Arc::clone(label);
        }
        if kept.len() >= self.cap {
            return Arc::clone(&self.other);
        }
        let label: Arc<str> = Arc::from(namespace);
        kept.insert(Arc::clone(&label));
        label
    }
}

const KIND_SERVER: &str = "server";
const KIND_CA: &str = "ca";

#[derive(Debug)]
struct Expiry {
    kind: &'static str,
    subject: String,
    not_after: SystemTime,
}

/// Exports the seconds left on each certificate, computed at scrape time.
/// The list is replaced on reload, never touched by calls; the mutex is
/// held for a reload or a scrape only.
#[derive(Debug, Default)]
struct CertificateExpiry {
    certificates: Mutex<Vec<Expiry>>,
}

impl CertificateExpiry {
    fn replace(&self, server: &[(String, SystemTime)], cas: &[(String, SystemTime)]) {
        let mut list: Vec<Expiry> = Vec::with_capacity(server.len() + cas.len());
        let tagged = server
            .iter()
            .map(|c| (KIND_SERVER, c))
            .chain(cas.iter().map(|c| (KIND_CA, c)));
        for (kind, (subject, not_after)) in tagged {
            match list
                .iter_mut()
                .find(|e| e.kind == kind && e.subject == *subject)
            {
                Some(existing) => existing.not_after = existing.not_after.min(*not_after),
                None => list.push(Expiry {
                    kind,
                    subject: subject.clone(),
                    not_after: *not_after,
                }),
            }
        }
        list.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
        *self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = list;
    }
}

/// Seconds from `now` until `not_after`, negative once it has passed.
fn seconds_until(not_after: SystemTime, now: SystemTime) -> f64 {
    match not_after.duration_since(now) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    }
}

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let certificates = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if certificates.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let unit = Unit::Seconds;
        {
            let mut family = encoder.encode_descriptor(
                "certificate_expiry",
                "Seconds until each certificate's not-after time (negative once expired), by kind (server, ca) and subject.",
                Some(&unit),
                MetricType::Gauge,
            )?;
            for cert in certificates.iter() {
                let labels = [("kind", cert.kind), ("subject", cert.subject.as_str())];
                ConstGauge::new(seconds_until(cert.not_after, now))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let earliest = certificates
            .iter()
            .map(|c| c.not_after)
            .min()
            .map_or(0.0, |t| seconds_until(t, now));
        let gauge = ConstGauge::new(earliest);
        gauge.encode(encoder.encode_descriptor(
            "certificate_expiry_min",
            "Seconds until the earliest not-after time of the server certificate and the CAs.",
            Some(&unit),
            gauge.metric_type(),
        )?)
    }
}

type DroppedSource = Box<dyn Fn() -> u64 + Send + Sync>;

/// Exports the audit sink's drop counter, read at scrape time.
#[derive(Default)]
struct AuditDropped {
    inner: Mutex<AuditDroppedInner>,
}

#[derive(Default)]
struct AuditDroppedInner {
    /// What earlier sources had counted when they were replaced.
    carried: u64,
    source: Option<DroppedSource>,
}

impl AuditDropped {
    fn set(&self, source: Option<DroppedSource>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = inner.source.take() {
            inner.carried = inner.carried.saturating_add(old());
        }
        inner.source = source;
    }

    fn total(&self) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let current = inner.source.as_ref().map_or(0, |read| read());
        inner.carried.saturating_add(current)
    }
}

impl fmt::Debug for AuditDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditDropped")
            .field("total", &self.total())
            .finish()
    }
}

impl Collector for AuditDropped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counter = ConstCounter::new(self.total());
        counter.encode(encoder.encode_descriptor(
            "audit_lines_dropped",
            "Audit lines dropped because the sink was slow or failing.",
            None,
            counter.metric_type(),
        )?)
    }
}

/// `log_lines_dropped_total` and `log_lines_suppressed_total{site}`, read
/// from the logging module's own counters at scrape time.
#[derive(Debug)]
struct LogLines;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: &'static str,
}

impl Collector for LogLines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let dropped = ConstCounter::new(crate::logging::dropped_lines());
        dropped.encode(encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because stdout could not keep up (the writer never blocks serving).",
            None,
            dropped.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "log_lines_suppressed",
            "Log lines a peer caused that the per-site rate limit suppressed.",
            None,
            MetricType::Counter,
        )?;
        for site in crate::logging::limit::SITES {
            let labels = SiteLabels { site: site.name() };
            ConstCounter::new(site.suppressed()).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// The value of the sample whose name and labels are exactly `series`
    /// (as written in the exposition), or `None` if there is no such line.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.parse().ok()
        })
    }

    fn call<'a>(
        method: Option<&'static str>,
        namespace: Option<&'a str>,
        status: i32,
    ) -> CallRecord<'a> {
        CallRecord {
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
        metrics.connection_refused(RefusalReason::MaxConnections);
        metrics.handshake_failed("unknown_ca");
        metrics.record_call(&CallRecord {
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
        let first = metrics.connection_accepted();
        let second = metrics.connection_accepted();
        let third = metrics.connection_accepted();
        drop(second);
        let upstream = metrics.upstream_connected();
        for _ in 0..3 {
            metrics.handshake_failed("unknown_ca");
        }
        metrics.handshake_failed("a_reason_not_in_the_list");
        metrics.connection_refused(RefusalReason::MaxConnections);
        metrics.connection_refused(RefusalReason::MaxConnections);
        for _ in 0..5 {
            metrics.record_call(&CallRecord {
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
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

        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
        metrics.record_call(&CallRecord {
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
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
        let metrics = Metrics::new(DEFAULT_NAMESPACE_CAP);
        let total =
            |m: &Metrics| sample(&m.encode(), "temporal_mtls_proxy_audit_lines_dropped_total");
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
}
