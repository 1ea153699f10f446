//! Readiness: what it is made of and how it is checked. [`Health`] holds
//! the checks' results (set by the server when it starts, stops and drains,
//! by the reloader with the certificates in force, and by the upstream
//! probe after each check); the admin listener reports it (`/readyz`), and
//! `[health] local` answers gRPC health checks from it. The certificates are
//! judged against the clock again on every probe, so one that expires while
//! the process runs turns readiness false, and a rotated one that replaces
//! it turns it true again. With `[tokens]`, readiness also waits until
//! every token issuer has a key set (see `token`'s module doc).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use crate::tls::material;
use crate::token::Tokens;
use crate::upstream::Forward;

/// The readiness checks' results; shared with the rest of the proxy.
///
/// The flags are atomics, cheap enough to read on a call path (answering
/// `grpc.health.v1.Health/Check` from readiness reads [`Health::ready`]).
/// The text of the last problem sits behind a mutex, taken only by whoever
/// sets a problem and by `/readyz`.
#[derive(Debug)]
pub struct Health {
    serving: AtomicBool,
    draining: AtomicBool,
    certs_valid: AtomicBool,
    upstream_ok: AtomicBool,
    certs_problem: Mutex<String>,
    upstream_problem: Mutex<String>,
    /// The certificates in force (server leaf, then CAs), with their
    /// not-after: replaced on every load and reload, re-checked against the
    /// clock by the readiness probe, so readiness follows what is served.
    live_certs: Mutex<LiveCertificates>,
    /// The token verifier, when `[tokens]` is on: ready once every issuer
    /// has keys.
    tokens: std::sync::OnceLock<TokenIssuers>,
}

/// The verifier, as readiness sees it.
struct TokenIssuers(Arc<Tokens>);

impl std::fmt::Debug for TokenIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuers")
    }
}

#[derive(Debug, Default)]
struct LiveCertificates {
    server: Vec<(String, SystemTime)>,
    cas: Vec<(String, SystemTime)>,
}

impl Health {
    /// Not serving, not draining, certificates not loaded, upstream not
    /// checked: not ready until the proxy says otherwise.
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            serving: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            certs_valid: AtomicBool::new(false),
            upstream_ok: AtomicBool::new(false),
            certs_problem: Mutex::new("not loaded yet".to_owned()),
            upstream_problem: Mutex::new("not checked yet".to_owned()),
            live_certs: Mutex::new(LiveCertificates::default()),
            tokens: std::sync::OnceLock::new(),
        })
    }

    /// With `[tokens]`: readiness also needs every issuer's keys.
    pub fn set_tokens(&self, tokens: Arc<Tokens>) {
        let _ = self.tokens.set(TokenIssuers(tokens));
    }

    /// Why the token issuers are not all ready (an issuer without keys).
    pub fn tokens_problem(&self) -> Option<String> {
        self.tokens.get().and_then(|t| t.0.ready().err())
    }

    /// Whether the process is serving: set when the listener accepts, and
    /// kept through the drain, until the process is about to exit.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// See [`Health::set_serving`].
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Set first on SIGTERM, so load balancers stop sending new work before
    /// the listener closes.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    /// See [`Health::set_draining`].
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The server certificate and CA bundle in use are loaded and within
    /// their validity.
    pub fn set_certificates_valid(&self) {
        self.certs_valid.store(true, Ordering::Release);
    }

    /// The certificates in use are not usable (expired, for instance);
    /// `reason` appears in `/readyz`.
    pub fn set_certificates_invalid(&self, reason: impl Into<String>) {
        set_problem(&self.certs_problem, &self.certs_valid, reason.into());
    }

    /// Takes the certificates now in force (the server leaf and the CAs,
    /// each with its subject and not-after) and judges them against the
    /// clock; [`Health::recheck_certificates`] judges them again later.
    pub fn set_live_certificates(
        &self,
        server: Vec<(String, SystemTime)>,
        cas: Vec<(String, SystemTime)>,
    ) {
        *self
            .live_certs
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = LiveCertificates { server, cas };
        self.recheck_certificates(SystemTime::now());
    }

    /// Judges the certificates in force against `now`: a certificate can
    /// expire while the process runs, and a rotated one replaces it.
    pub fn recheck_certificates(&self, now: SystemTime) {
        let live = self
            .live_certs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let expired = live
            .server
            .iter()
            .chain(live.cas.iter())
            .find(|(_, at)| *at <= now);
        match expired {
            Some((subject, _)) => {
                let reason = format!("certificate {subject} has expired");
                drop(live);
                self.set_certificates_invalid(reason);
            }
            None if live.server.is_empty() => {
                drop(live);
                self.set_certificates_invalid("no server certificate loaded");
            }
            None => self.set_certificates_valid(),
        }
    }

    /// See [`Health::set_certificates_valid`].
    pub fn certificates_valid(&self) -> bool {
        self.certs_valid.load(Ordering::Acquire)
    }

    /// The last upstream check succeeded.
    pub fn set_upstream_ok(&self) {
        self.upstream_ok.store(true, Ordering::Release);
    }

    /// The last upstream check failed; `error` appears in `/readyz`.
    pub fn set_upstream_failed(&self, error: impl Into<String>) {
        set_problem(&self.upstream_problem, &self.upstream_ok, error.into());
    }

    /// See [`Health::set_upstream_ok`].
    pub fn upstream_ok(&self) -> bool {
        self.upstream_ok.load(Ordering::Acquire)
    }

    /// Why the upstream is not ok, while it is not.
    pub fn upstream_error(&self) -> Option<String> {
        problem(&self.upstream_problem, &self.upstream_ok)
    }

    /// Why the certificates are not valid, while they are not.
    pub fn certificates_problem(&self) -> Option<String> {
        problem(&self.certs_problem, &self.certs_valid)
    }

    /// Serving, not draining, certificates valid, upstream reachable, and
    /// every token issuer with keys.
    pub fn ready(&self) -> bool {
        self.serving()
            && !self.draining()
            && self.certificates_valid()
            && self.upstream_ok()
            && self.tokens_problem().is_none()
    }

    /// One line per check, `ok <check>` or `fail <check>: <why>`, each ending
    /// in a newline: what `/readyz` answers.
    pub fn readiness_report(&self) -> String {
        let mut report = String::with_capacity(128);
        let mut line = |ok: bool, check: &str, why: Option<String>| {
            report.push_str(if ok { "ok " } else { "fail " });
            report.push_str(check);
            if let (false, Some(why)) = (ok, why) {
                report.push_str(": ");
                report.push_str(&why);
            }
            report.push('\n');
        };
        line(
            self.serving(),
            "serving",
            Some("the proxy is not accepting connections".to_owned()),
        );
        line(
            self.certificates_valid(),
            "certificates",
            self.certificates_problem(),
        );
        line(self.upstream_ok(), "upstream", self.upstream_error());
        if self.tokens.get().is_some() {
            let problem = self.tokens_problem();
            line(problem.is_none(), "token issuers", problem);
        }
        if self.draining() {
            line(
                false,
                "draining",
                Some("shutting down, finishing calls in flight".to_owned()),
            );
        } else {
            line(true, "not draining", None);
        }
        report
    }
}

/// Records why a check fails, then fails it, so a reader that sees the flag
/// down finds the reason already there. Newlines are flattened: the report
/// is one line per check.
fn set_problem(text: &Mutex<String>, flag: &AtomicBool, why: String) {
    let why = if why.contains(['\n', '\r']) {
        why.replace(['\n', '\r'], " ")
    } else {
        why
    };
    let mut current = text.lock().unwrap_or_else(PoisonError::into_inner);
    *current = why;
    flag.store(false, Ordering::Release);
}

fn problem(text: &Mutex<String>, flag: &AtomicBool) -> Option<String> {
    if flag.load(Ordering::Acquire) {
        return None;
    }
    Some(text.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

/// Subjects and expiry times of some certificates.
pub type CertificateDates = Vec<(String, SystemTime)>;

/// The certificates of a TLS material in force, for readiness and the
/// expiry metrics: the server leaf, and each CA of the client CA bundle
/// (read from its file: the loaded bundle holds trust anchors, without
/// dates).
pub fn certificate_expiries(
    server_chain: &[rustls_pki_types::CertificateDer<'_>],
    client_ca: &std::path::Path,
) -> (CertificateDates, CertificateDates) {
    let server = material::expiry_dates(server_chain.iter().take(1).map(|c| c.as_ref()));
    let cas = material::file_expiry_dates(client_ca);
    (server, cas)
}

/// Checks the upstream with `grpc.health.v1.Health/Check` through the
/// proxy's own upstream pool every `interval` (each check within
/// `timeout`), and judges the certificates in force against the clock on
/// the way; runs until dropped.
pub async fn probe_upstream(
    health: Arc<Health>,
    forward: Forward,
    interval: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(timeout, check(&forward)).await {
            Ok(Ok(())) => health.set_upstream_ok(),
            Ok(Err(e)) => health.set_upstream_failed(e),
            Err(_) => health.set_upstream_failed(format!(
                "no health check answer within {}",
                humantime::format_duration(timeout)
            )),
        }
        health.recheck_certificates(SystemTime::now());
    }
}

/// One health check of the WorkflowService on the upstream.
async fn check(forward: &Forward) -> Result<(), String> {
    // HealthCheckRequest { service = 1: "temporal.api.workflowservice.v1.WorkflowService" }
    const SERVICE: &[u8] = b"temporal.api.workflowservice.v1.WorkflowService";
    let mut message = vec![
        0u8,
        0,
        0,
        0,
        (SERVICE.len() + 2) as u8,
        0x0a,
        SERVICE.len() as u8,
    ];
    message.extend_from_slice(SERVICE);
    let req = http::Request::post("http://upstream/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(message)))
        .map_err(|e| e.to_string())?;
    let mut forward = forward.clone();
    let resp = forward.call(req).await.map_err(|e| e.to_string())?;
    let headers_status = crate::grpc::grpc_status(resp.headers());
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let status = collected
        .trailers()
        .and_then(crate::grpc::grpc_status)
        .or(headers_status);
    match status {
        Some(0) => {
            let body = collected.to_bytes();
            // HealthCheckResponse { status = 1: SERVING(1) }
            if body.len() >= 7 && body[5] == 0x08 && body[6] != 1 {
                return Err(format!(
                    "upstream health status is {} (not SERVING)",
                    body[6]
                ));
            }
            Ok(())
        }
        Some(code) => Err(format!("upstream health check answered grpc-status {code}")),
        None => Err("upstream health check answered without grpc-status".into()),
    }
}
