//! Values computed when the exposition is encoded rather than updated as
//! events happen: seconds to each certificate's expiry, readiness, and
//! counters kept elsewhere (audit lines dropped, log lines dropped and
//! suppressed).

use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::token::IssuerStatus;

pub(super) const KIND_SERVER: &str = "server";
pub(super) const KIND_CA: &str = "ca";

#[derive(Debug)]
pub(super) struct Expiry {
    kind: &'static str,
    subject: String,
    not_after: SystemTime,
}

/// Exports the seconds left on each certificate, computed at scrape time.
/// The list is replaced on reload, never touched by calls; the mutex is
/// held for a reload or a scrape only.
#[derive(Debug, Default)]
pub(super) struct CertificateExpiry {
    certificates: Mutex<Vec<Expiry>>,
}

impl CertificateExpiry {
    pub(super) fn replace(&self, server: &[(String, SystemTime)], cas: &[(String, SystemTime)]) {
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
pub(super) fn seconds_until(not_after: SystemTime, now: SystemTime) -> f64 {
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

pub(super) type DroppedSource = Box<dyn Fn() -> u64 + Send + Sync>;

/// Exports the audit sink's drop counter, read at scrape time.
#[derive(Default)]
pub(super) struct AuditDropped {
    inner: Mutex<AuditDroppedInner>,
}

#[derive(Default)]
pub(super) struct AuditDroppedInner {
    /// What earlier sources had counted when they were replaced.
    carried: u64,
    source: Option<DroppedSource>,
}

impl AuditDropped {
    pub(super) fn set(&self, source: Option<DroppedSource>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = inner.source.take() {
            inner.carried = inner.carried.saturating_add(old());
        }
        inner.source = source;
    }

    pub(super) fn total(&self) -> u64 {
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
pub(super) struct LogLines;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SiteLabels {
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

pub(super) type TokenKeysSource = Box<dyn Fn() -> Vec<IssuerStatus> + Send + Sync>;

/// `token_keys{issuer}`, `token_key_fetches_total{issuer}` and
/// `token_key_fetch_failures_total{issuer}`: each configured issuer's keys
/// in force and its JWKS fetches (file reads for a file), read from the
/// issuers' own counters at scrape time (set once at start; nothing is
/// exported without `[[tokens.issuer]]`). The label is the issuer's `name`
/// from the config, so the set is bounded.
#[derive(Default)]
pub(super) struct TokenKeys {
    pub(super) source: OnceLock<TokenKeysSource>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("set", &self.source.get().is_some())
            .finish()
    }
}

/// One of an issuer's counters.
type IssuerCount = fn(&IssuerStatus) -> u64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

impl Collector for TokenKeys {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let issuers = source();
        let labels: Vec<IssuerLabels> = issuers
            .iter()
            .map(|status| IssuerLabels {
                issuer: status.name.to_string(),
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "token_keys",
            "Keys in force per token issuer (0: none yet; calls with its tokens are refused).",
            None,
            MetricType::Gauge,
        )?;
        for (status, labels) in issuers.iter().zip(&labels) {
            let keys = i64::try_from(status.keys).unwrap_or(i64::MAX);
            ConstGauge::new(keys).encode(family.encode_family(labels)?)?;
        }
        let counters: [(&str, &str, IssuerCount); 2] = [
            (
                "token_key_fetches",
                "JWKS fetches per token issuer (https), successful or not.",
                |status| status.fetches,
            ),
            (
                "token_key_fetch_failures",
                "JWKS fetches (or JWKS file reads on reload) that failed, per token issuer; the last good key set stays in force.",
                |status| status.fetch_failures,
            ),
        ];
        for (name, help, count) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (status, labels) in issuers.iter().zip(&labels) {
                ConstCounter::new(count(status)).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

pub(super) type ReadySource = Box<dyn Fn() -> bool + Send + Sync>;

/// `ready`: 1 while `/readyz` would answer 200, read from the proxy's
/// health at scrape time (set once at start; nothing is exported before).
#[derive(Default)]
pub(super) struct Ready {
    pub(super) source: OnceLock<ReadySource>,
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("set", &self.source.get().is_some())
            .finish()
    }
}

impl Collector for Ready {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(ready) = self.source.get() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(i64::from(ready()));
        gauge.encode(encoder.encode_descriptor(
            "ready",
            "1 while the proxy is ready (what /readyz answers 200 for: serving, certificates valid, upstream reachable, not draining), else 0.",
            None,
            gauge.metric_type(),
        )?)
    }
}
