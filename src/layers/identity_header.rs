//! Identity toward the upstream: headers a client could use to claim an
//! identity (`x-forwarded-client-cert` and whatever is configured) are
//! removed from every call, and the verified certificate's identity is set
//! in their place, in the XFCC form Envoy made common:
//! `Hash=<sha256>;Subject="<subject>";URI=<uri>;DNS=<dns>`.
//! The header value is built once per connection.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use crate::call::Call;
use crate::tls::identity::PeerIdentity;

#[derive(Clone)]
pub struct IdentityHeaderLayer {
    strip: Arc<[HeaderName]>,
    set: Option<(HeaderName, HeaderValue)>,
}

impl IdentityHeaderLayer {
    pub fn new(
        strip: Arc<[HeaderName]>,
        header: Option<&HeaderName>,
        identity: Option<&PeerIdentity>,
    ) -> IdentityHeaderLayer {
        let set = match (header, identity) {
            (Some(name), Some(id)) => HeaderValue::try_from(xfcc(id))
                .ok()
                .map(|v| (name.clone(), v)),
            _ => None,
        };
        IdentityHeaderLayer { strip, set }
    }
}

/// The XFCC value for `id`. Values are quoted (with `"` and `\` escaped)
/// when they hold characters that separate XFCC fields.
pub fn xfcc(id: &PeerIdentity) -> String {
    let mut out = format!("Hash={}", id.fingerprint_sha256);
    out.push_str(";Subject=");
    push_value(&mut out, &id.subject);
    for uri in &id.uri {
        out.push_str(";URI=");
        push_value(&mut out, uri);
    }
    for dns in &id.dns {
        out.push_str(";DNS=");
        push_value(&mut out, dns);
    }
    // Header values must be visible ASCII; anything else is escaped.
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
    set: Option<(HeaderName, HeaderValue)>,
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
        if let Some((name, value)) = &self.set {
            headers.insert(name.clone(), value.clone());
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
