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
//! takes the write lock) and one read-locked `Family` lookup (the `calls`
//! series, whose labels include the namespace and status), plus the
//! histogram's own short mutex. The per-method series (duration, bytes each
//! way) are looked up in their families once per method and then kept in a
//! table indexed by the method's row, so later calls touch no lock and hash
//! nothing for them. None of it waits on I/O.
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
//! - `ready`: the proxy's readiness, through [`Metrics::set_ready_source`].
//! - `token_keys`, `token_key_fetches_total`,
//!   `token_key_fetch_failures_total`: each token issuer's keys and JWKS
//!   fetches, through [`Metrics::set_token_keys_source`].
//!
//! # Names
//!
//! prometheus-client appends `_total` to counters and the unit to metrics
//! registered with one, so names are registered here without them; the
//! exported names are `temporal_mtls_proxy_connections_accepted_total`,
//! `temporal_mtls_proxy_call_duration_seconds`, and so on.

mod collectors;
mod events;
mod labels;
#[cfg(test)]
mod tests;

use std::hash::Hash;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::authz::AuthzDecision;
use crate::temporal::methods::{Method, METHODS};
use collectors::{AuditDropped, CertificateExpiry, LogLines, Ready, TokenKeys};
pub use events::{ConnectionRefusal, Format, KeepaliveEvent, MessageDirection, UpstreamFailure};
use labels::{
    AuthzLabels, CallLabels, ClientLabels, DirectionLabels, EventLabels, MethodLabels,
    NamespaceLabels, ReasonLabels, ResultLabels,
};

/// Prefix of every exported metric name.
pub const PREFIX: &str = "temporal_mtls_proxy";

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

/// One finished call, as [`Metrics::record_call`] counts it.
#[derive(Clone, Copy, Debug)]
pub struct FinishedCall<'a> {
    /// The method from the method table; `None` counts as `other`.
    pub method: Option<&'static Method>,
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

/// One method's series of the per-method families, each taken from its
/// family on the method's first use (so that a series appears only once
/// a call has counted into it, as a family lookup would create it) and
/// shared with it (the same counter, not a copy).
#[derive(Debug, Default)]
struct MethodSeries {
    duration: OnceLock<Histogram>,
    request_bytes: OnceLock<Counter>,
    response_bytes: OnceLock<Counter>,
}

/// `use_it` on the series kept in `slot`, taken with `create` on first use;
/// without a slot, on a series `create` looks up each time.
fn with_series<M>(slot: Option<&OnceLock<M>>, create: impl FnOnce() -> M, use_it: impl FnOnce(&M)) {
    match slot {
        Some(slot) => use_it(slot.get_or_init(create)),
        None => use_it(&create()),
    }
}

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
    handshakes: Family<ClientLabels, Counter>,
    token_refusals: Family<ReasonLabels, Counter>,

    calls: Family<CallLabels, Counter>,
    /// Indexed by [`Method::index`]; the last entry is `other`'s.
    by_method: Box<[MethodSeries]>,
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
    ready: Arc<Ready>,
    token_keys: Arc<TokenKeys>,
}

impl Metrics {
    /// Creates and registers every metric. `namespace_cap` is how many
    /// distinct namespaces keep their own label value
    /// (`admin.max_namespace_labels`, 100 by default).
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

        let handshakes = Family::<ClientLabels, Counter>::default();
        registry.register(
            "handshakes",
            "Client TLS handshakes completed, by kind of client: \"certificate\", or \"token_only\" (no certificate, tls.client_certificate = \"optional\")",
            handshakes.clone(),
        );
        let token_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "token_refusals",
            "Calls refused UNAUTHENTICATED for their bearer token (or for none on a connection without a certificate), by reason",
            token_refusals.clone(),
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
        let ready = Arc::new(Ready::default());
        registry.register_collector(Box::new(Arc::clone(&ready)));
        let token_keys = Arc::new(TokenKeys::default());
        registry.register_collector(Box::new(Arc::clone(&token_keys)));

        // Closed label sets start at zero, so that a dashboard or an alert on
        // `rate(...)` sees the first failure as an increase rather than as a
        // new series appearing. Any other `&'static str` is still accepted.
        start_at_zero(
            &connections_refused,
            ConnectionRefusal::ALL.map(|r| ReasonLabels { reason: r.label() }),
        );
        start_at_zero(
            &handshake_failures,
            crate::tls::handshake::HandshakeRefusal::LABELS.map(|reason| ReasonLabels { reason }),
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
            handshakes,
            token_refusals,
            calls,
            by_method: (0..=METHODS.len())
                .map(|_| MethodSeries::default())
                .collect(),
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
            ready,
            token_keys,
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
    pub fn connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts a failed or refused client handshake; `reason` is the short
    /// label of the refusal (`tls::handshake::HandshakeRefusal::label`).
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a completed client handshake by kind of client
    /// (`"certificate"` or `"token_only"`).
    pub fn client_connected(&self, client: &'static str) {
        self.handshakes
            .get_or_create(&ClientLabels { client })
            .inc();
    }

    /// Counts a call refused for its bearer token; `reason` is the fixed
    /// label of the refusal (`TokenError::kind`, or `no_credentials`),
    /// never anything of the token.
    pub fn token_refused(&self, reason: &'static str) {
        self.token_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one finished call: its status, duration and bytes.
    pub fn record_call(&self, call: &FinishedCall<'_>) {
        let method = call.method.map_or(OTHER, |m| m.name);
        self.calls
            .get_or_create(&CallLabels {
                method,
                namespace: self.namespaces.label(call.namespace),
                grpc_status: grpc_status_label(call.grpc_status),
            })
            .inc();
        let by_method = MethodLabels { method };
        let series = match call.method {
            None => self.by_method.last(),
            Some(m) => m.index().and_then(|i| self.by_method.get(i)),
        };
        with_series(
            series.map(|s| &s.duration),
            || self.call_duration.get_or_create(&by_method).clone(),
            |h| h.observe(call.duration.as_secs_f64()),
        );
        if call.request_bytes > 0 {
            with_series(
                series.map(|s| &s.request_bytes),
                || self.request_bytes.get_or_create(&by_method).clone(),
                |c| {
                    c.inc_by(call.request_bytes);
                },
            );
        }
        if call.response_bytes > 0 {
            with_series(
                series.map(|s| &s.response_bytes),
                || self.response_bytes.get_or_create(&by_method).clone(),
                |c| {
                    c.inc_by(call.response_bytes);
                },
            );
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

    /// Where the `ready` gauge reads readiness from (the proxy's health);
    /// the first source set stays.
    pub fn set_ready_source(&self, ready: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.ready.source.set(Box::new(ready));
    }

    /// Where the token issuer metrics (`token_keys`,
    /// `token_key_fetches_total`, `token_key_fetch_failures_total`) are read
    /// from (the issuers' own status); the first source set stays.
    pub fn set_token_keys_source(
        &self,
        source: impl Fn() -> Vec<crate::token::IssuerStatus> + Send + Sync + 'static,
    ) {
        let _ = self.token_keys.source.set(Box::new(source));
    }

    /// Stops reading the audit drop counter (its last value is kept).
    pub fn clear_audit_dropped_source(&self) {
        self.audit_dropped.set(None);
    }

    /// The exposition in OpenMetrics text format.
    #[cfg(test)]
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
    // Bounded label values: an unknown number is UNKNOWN.
    crate::grpc::code_name(code).unwrap_or("UNKNOWN")
}
