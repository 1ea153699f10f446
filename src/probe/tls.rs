//! The TLS check: what the handshake of the probe's first connection
//! settled (version, cipher suite, key exchange, ALPN) and the chain the
//! server sent, each certificate's subject, issuer and expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::conn::{ConnectError, TlsSession};
use super::{millis, Check, Details, Outcome};

/// A certificate in the chain that expires sooner than this is a warning,
/// as `--check-config` and the expiry alert have it.
const EXPIRY_WARNING_DAYS: i64 = 14;

#[derive(Debug, Serialize)]
pub struct TlsDetails {
    pub version: String,
    pub cipher_suite: String,
    pub key_exchange: Option<String>,
    pub alpn: Option<String>,
    /// TCP connect and TLS handshake.
    pub handshake_ms: f64,
    /// As the server sent it, leaf first.
    pub chain: Vec<CertificateReport>,
}

#[derive(Debug, Serialize)]
pub struct CertificateReport {
    pub subject: String,
    pub issuer: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
}

fn certificate(der: &[u8], now: i64) -> CertificateReport {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let not_after = cert.validity().not_after.timestamp();
            CertificateReport {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                not_after: rfc3339(not_after),
                days_left: (not_after - now).div_euclid(86_400),
            }
        }
        Err(e) => CertificateReport {
            subject: format!("(cannot be parsed: {e})"),
            issuer: String::new(),
            not_after: String::new(),
            days_left: 0,
        },
    }
}

fn rfc3339(unix: i64) -> String {
    match u64::try_from(unix) {
        Ok(secs) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        Err(_) => format!("{unix} (before 1970)"),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The check of a connection that was made.
pub fn check(session: &TlsSession) -> Check {
    judge(session, now_unix())
}

fn judge(session: &TlsSession, now: i64) -> Check {
    let chain: Vec<CertificateReport> = session
        .chain
        .iter()
        .map(|der| certificate(der, now))
        .collect();
    let mut notes: Vec<String> = chain
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "[{i}] {} (issuer {}), not after {}, {} days left",
                c.subject, c.issuer, c.not_after, c.days_left
            )
        })
        .collect();
    let mut outcome = Outcome::Pass;
    let mut problems = Vec::new();
    if session.alpn.as_deref() != Some("h2") {
        outcome = Outcome::Fail;
        problems.push(format!(
            "ALPN {} instead of h2 (gRPC clients, grpc-go 1.67+ among them, refuse such a server)",
            session.alpn.as_deref().unwrap_or("none")
        ));
    }
    let soonest = chain.iter().min_by_key(|c| c.days_left);
    if let Some(c) = soonest.filter(|c| c.days_left < EXPIRY_WARNING_DAYS) {
        outcome = outcome.max(Outcome::Warn);
        problems.push(format!(
            "{} expires in {} days (under {EXPIRY_WARNING_DAYS})",
            c.subject, c.days_left
        ));
    }
    if chain.is_empty() {
        notes.push("the server sent no certificate".into());
    }
    let mut reason = format!(
        "{}, {}, ALPN {}",
        session.version,
        session.cipher_suite,
        session.alpn.as_deref().unwrap_or("none")
    );
    match (problems.is_empty(), soonest) {
        (true, Some(c)) => reason.push_str(&format!(
            "; the chain is valid {} more days (soonest: {})",
            c.days_left, c.subject
        )),
        (true, None) => {}
        (false, _) => {
            reason.push_str(": ");
            reason.push_str(&problems.join("; "));
        }
    }
    Check::new("tls", outcome, reason)
        .notes(notes)
        .details(Details::Tls(TlsDetails {
            version: session.version.clone(),
            cipher_suite: session.cipher_suite.clone(),
            key_exchange: session.key_exchange.clone(),
            alpn: session.alpn.clone(),
            handshake_ms: millis(session.handshake),
            chain,
        }))
}

/// The check when no connection could be made: `name` is `tls`, or `h2c`
/// for a plaintext probe.
pub fn failed(name: &'static str, error: &ConnectError) -> Check {
    Check::new(name, Outcome::Fail, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(alpn: Option<&str>, not_after_days: i64) -> (TlsSession, i64) {
        let now = 1_800_000_000;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(now + not_after_days * 86_400 + 60).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 86_400).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (
            TlsSession {
                version: "TLS 1.3".into(),
                cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
                key_exchange: Some("X25519".into()),
                alpn: alpn.map(str::to_owned),
                chain: vec![cert.der().clone()],
                handshake: Duration::from_millis(3),
            },
            now,
        )
    }

    #[test]
    fn a_valid_chain_with_h2_passes() {
        let (s, now) = session(Some("h2"), 30);
        let c = judge(&s, now);
        assert_eq!(c.outcome, Outcome::Pass, "{}", c.reason);
        assert!(c.reason.contains("valid 30 more days"), "{}", c.reason);
    }

    #[test]
    fn expiry_under_14_days_warns_and_no_h2_fails() {
        let (s, now) = session(Some("h2"), 5);
        let c = judge(&s, now);
        assert_eq!(c.outcome, Outcome::Warn);
        assert!(c.reason.contains("expires in 5 days"), "{}", c.reason);
        let (s, now) = session(None, 30);
        let c = judge(&s, now);
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(c.reason.contains("ALPN none instead of h2"), "{}", c.reason);
    }
}
