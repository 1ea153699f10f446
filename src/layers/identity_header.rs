//! Identity toward the upstream: headers a client could use to claim an
//! identity (`x-forwarded-client-cert` and whatever is configured) are
//! removed from every call, and the verified certificate's identity is set
//! in their place, in the XFCC form Envoy made common:
//! `Hash=<sha256>;Subject="<subject>";URI=<uri>;DNS=<dns>`. A call with a
//! verified bearer token (`layers::token`, above this layer) adds
//! `TokenIssuer=<issuer name>;TokenSubject=<sub>`, alone on a connection
//! without a certificate. The certificate's part is built once per
//! connection; the token's per call that carries one.
//!
//! The certificate's part is at most [`MAX_CERTIFICATE_PART`] bytes: a
//! certificate may carry thousands of SANs (its size is bounded only by the
//! handshake's), and every call would carry them all upstream. Fields that
//! would not fit are left out, the rest kept in order, and
//! `;Truncated=<fields left out>` says so.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use crate::call::Call;
use crate::tls::identity::PeerIdentity;
use crate::token::VerifiedToken;

#[derive(Clone)]
pub struct IdentityHeaderLayer {
    strip: Arc<[HeaderName]>,
    set: Option<Set>,
}

/// The header set on every call: its name, and the certificate's part of
/// its value (`None` without a certificate).
#[derive(Clone)]
struct Set {
    name: HeaderName,
    certificate: Option<(HeaderValue, Arc<str>)>,
}

impl Set {
    /// The value for a call with `token`; `None`: no identity to set.
    fn value(&self, token: Option<&VerifiedToken>) -> Option<HeaderValue> {
        match (token, &self.certificate) {
            (None, Some((value, _))) => Some(value.clone()),
            (None, None) => None,
            (Some(t), certificate) => {
                let mut text = match certificate {
                    Some((_, text)) => format!("{text};"),
                    None => String::new(),
                };
                push_token(&mut text, t);
                HeaderValue::try_from(visible_ascii(&text)).ok()
            }
        }
    }
}

impl IdentityHeaderLayer {
    pub fn new(
        strip: Arc<[HeaderName]>,
        header: Option<&HeaderName>,
        identity: Option<&PeerIdentity>,
    ) -> IdentityHeaderLayer {
        let set = header.map(|name| Set {
            name: name.clone(),
            certificate: identity.and_then(|id| {
                let text = xfcc(id);
                HeaderValue::try_from(text.as_str())
                    .ok()
                    .map(|v| (v, Arc::from(text)))
            }),
        });
        IdentityHeaderLayer { strip, set }
    }
}

/// The longest certificate part of the identity header, in bytes: room
/// for a subject and dozens of SANs, a fraction of the frontend's header
/// list limit, and small enough not to weigh on every call.
pub const MAX_CERTIFICATE_PART: usize = 8 * 1024;

/// Room kept for `;Truncated=<n>`.
const MARKER_ROOM: usize = ";Truncated=".len() + 10;

/// The XFCC value for `id`, at most [`MAX_CERTIFICATE_PART`] bytes. Values
/// are quoted (with `"` and `\` escaped) when they hold characters that
/// separate XFCC fields.
pub fn xfcc(id: &PeerIdentity) -> String {
    let mut out = format!("Hash={}", id.fingerprint_sha256);
    let fields = std::iter::once(("Subject", &id.subject))
        .chain(id.uri.iter().map(|uri| ("URI", uri)))
        .chain(id.dns.iter().map(|dns| ("DNS", dns)));
    let mut left_out = 0usize;
    for (key, value) in fields {
        let mut field = format!(";{key}=");
        push_value(&mut field, value);
        let field = visible_ascii(&field);
        if out.len() + field.len() <= MAX_CERTIFICATE_PART - MARKER_ROOM {
            out.push_str(&field);
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        out.push_str(&format!(";Truncated={left_out}"));
    }
    out
}

/// The token's part: `TokenIssuer=<name>;TokenSubject=<sub>`.
fn push_token(out: &mut String, token: &VerifiedToken) {
    out.push_str("TokenIssuer=");
    push_value(out, &token.issuer);
    out.push_str(";TokenSubject=");
    push_value(out, &token.sub);
}

/// Header values must be visible ASCII; anything else is escaped.
fn visible_ascii(out: &str) -> String {
    out.chars()
        .flat_map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                vec![c]
            } else {
                format!("\\u{{{:x}}}", c as u32).chars().collect()
            }
        })
        .collect()
}

fn push_value(out: &mut String, value: &str) {
    if value.contains([',', ';', '=', '"', ' ']) {
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

impl<S> Layer<S> for IdentityHeaderLayer {
    type Service = IdentityHeader<S>;

    fn layer(&self, inner: S) -> IdentityHeader<S> {
        IdentityHeader {
            inner,
            strip: self.strip.clone(),
            set: self.set.clone(),
        }
    }
}

#[derive(Clone)]
pub struct IdentityHeader<S> {
    inner: S,
    strip: Arc<[HeaderName]>,
    set: Option<Set>,
}

impl<S, B> Service<Call<B>> for IdentityHeader<S>
where
    S: Service<Call<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call<B>) -> Self::Future {
        let headers = call.request.headers_mut();
        for name in self.strip.iter() {
            headers.remove(name);
        }
        if let Some(set) = &self.set {
            if let Some(value) = set.value(call.ctx.token().map(|t| &**t)) {
                call.request.headers_mut().insert(set.name.clone(), value);
            }
        }
        self.inner.call(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> PeerIdentity {
        PeerIdentity {
            subject: "CN=worker, OU=payments, O=Example".into(),
            cn: vec!["worker".into()],
            o: vec!["Example".into()],
            ou: vec!["payments".into()],
            dns: vec!["worker.example.org".into()],
            uri: vec!["spiffe://example.org/ns/payments/sa/worker".into()],
            email: vec![],
            ip: vec![],
            spiffe_id: Some("spiffe://example.org/ns/payments/sa/worker".into()),
            serial: "01".into(),
            fingerprint_sha256: "ab".repeat(32),
            not_after: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn xfcc_has_hash_subject_uri_dns() {
        assert_eq!(
            xfcc(&identity()),
            format!(
                "Hash={};Subject=\"CN=worker, OU=payments, O=Example\";URI=spiffe://example.org/ns/payments/sa/worker;DNS=worker.example.org",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn thousands_of_sans_are_cut_to_the_bound_with_a_marker() {
        let mut id = identity();
        id.dns = (0..5000).map(|i| format!("host-{i}.example.org")).collect();
        id.uri = vec!["spiffe://example.org/ns/payments/sa/worker".into()];
        let value = xfcc(&id);
        assert!(value.len() <= MAX_CERTIFICATE_PART, "{}", value.len());
        assert!(value.len() > MAX_CERTIFICATE_PART - 100, "{}", value.len());
        // In order, the URI kept, the DNS names that fit, then the marker
        // naming how many were left out.
        assert!(value.starts_with(&format!(
            "Hash={};Subject=\"CN=worker, OU=payments, O=Example\";URI=spiffe://example.org/ns/payments/sa/worker;DNS=host-0.example.org;DNS=host-1.example.org;",
            "ab".repeat(32)
        )));
        let kept = value.matches(";DNS=").count();
        assert!(
            value.ends_with(&format!(";Truncated={}", 5000 - kept)),
            "{value}"
        );
        assert!(HeaderValue::try_from(value).is_ok());
        // A subject too long on its own is left out; the SANs still go.
        let mut id = identity();
        id.subject = format!("CN={}", "x".repeat(10_000));
        let value = xfcc(&id);
        assert!(!value.contains("Subject="), "{value}");
        assert!(
            value.ends_with(";DNS=worker.example.org;Truncated=1"),
            "{value}"
        );
        // Within the bound, nothing changes.
        assert!(!xfcc(&identity()).contains("Truncated"));
    }

    #[test]
    fn a_token_adds_its_issuer_and_subject() {
        let token = VerifiedToken {
            issuer: Arc::from("cluster"),
            sub: "system:serviceaccount:payments:worker".into(),
            claims: Default::default(),
            exp: std::time::SystemTime::UNIX_EPOCH,
        };
        let name = HeaderName::from_static("x-forwarded-client-cert");
        let with = IdentityHeaderLayer::new(Arc::from(vec![]), Some(&name), Some(&identity()));
        let value = with.set.as_ref().unwrap().value(Some(&token)).unwrap();
        assert_eq!(
            value.to_str().unwrap(),
            format!(
                "{};TokenIssuer=cluster;TokenSubject=system:serviceaccount:payments:worker",
                xfcc(&identity())
            )
        );
        let without = IdentityHeaderLayer::new(Arc::from(vec![]), Some(&name), None);
        let set = without.set.as_ref().unwrap();
        assert_eq!(
            set.value(Some(&token)).unwrap(),
            "TokenIssuer=cluster;TokenSubject=system:serviceaccount:payments:worker"
        );
        assert!(set.value(None).is_none());
    }

    #[tokio::test]
    async fn client_supplied_identity_is_replaced() {
        let layer = IdentityHeaderLayer::new(
            Arc::from(vec![
                HeaderName::from_static("x-forwarded-client-cert"),
                HeaderName::from_static("x-user"),
            ]),
            Some(&HeaderName::from_static("x-forwarded-client-cert")),
            Some(&identity()),
        );
        let mut svc = layer.layer(tower::service_fn(|call: Call<()>| async move {
            Ok::<_, std::convert::Infallible>(call.request.headers().clone())
        }));
        let req = http::Request::builder()
            .header("x-forwarded-client-cert", "Hash=forged")
            .header("x-user", "admin")
            .header("temporal-namespace", "payments")
            .body(())
            .unwrap();
        let seen = svc.call(crate::layers::testing::call(req)).await.unwrap();
        let xfcc = seen
            .get("x-forwarded-client-cert")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            xfcc.starts_with(&format!("Hash={}", "ab".repeat(32))),
            "{xfcc}"
        );
        assert_eq!(seen.get_all("x-forwarded-client-cert").iter().count(), 1);
        assert!(seen.get("x-user").is_none());
        assert_eq!(seen.get("temporal-namespace").unwrap(), "payments");
    }
}
