//! Bearer tokens (`[tokens]`): a call's one `authorization: Bearer` header
//! is verified (`token::Tokens`: issuer, key, signature, claims; cached by
//! the token's hash) and the verified token is recorded in the call's
//! context, where the authz layer matches rules against it beside the
//! connection's certificate, and the identity header and the audit line
//! name it. A token that does not verify, two `authorization` headers, or
//! another scheme than Bearer: UNAUTHENTICATED with the reason, whatever
//! the policy. On a connection without a client certificate
//! (`tls.client_certificate = "optional"`) a call without a token is
//! UNAUTHENTICATED too. The header is removed before the call goes on
//! unless `[tokens] forward = true`. Without `[tokens]` the layer passes
//! every call as it is.
//!
//! The token's text is never logged, counted or kept: only the verifier's
//! cache holds its SHA-256.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::future::Either;
use http::header::AUTHORIZATION;
use tower_layer::Layer;
use tower_service::Service;

use crate::call::Call;
use crate::error::ProxyError;
use crate::logging::limit;
use crate::metrics::Metrics;
use crate::token::{bearer_token, Tokens};

#[derive(Clone)]
pub struct TokenLayer {
    /// `None`: no `[tokens]`, calls pass as they are.
    tokens: Option<Arc<Tokens>>,
    /// Whether the connection presented a client certificate.
    certificate: bool,
    metrics: Arc<Metrics>,
}

impl TokenLayer {
    pub fn new(
        tokens: Option<Arc<Tokens>>,
        certificate: bool,
        metrics: Arc<Metrics>,
    ) -> TokenLayer {
        TokenLayer {
            tokens,
            certificate,
            metrics,
        }
    }
}

impl<S> Layer<S> for TokenLayer {
    type Service = Token<S>;

    fn layer(&self, inner: S) -> Token<S> {
        Token {
            inner,
            tokens: self.tokens.clone(),
            certificate: self.certificate,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Token<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
    certificate: bool,
    metrics: Arc<Metrics>,
}

/// Counts and logs (rate-limited) a call refused for its token.
fn refused<B>(metrics: &Metrics, call: &Call<B>, err: &ProxyError) {
    metrics.token_refused(err.kind().label());
    if limit::CALL_REFUSED.admit() {
        tracing::info!(peer = %call.ctx.conn.peer, method = call.request.uri().path(), reason = err.kind().label(), error = %err, "call refused: bearer token");
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Call<B>> for Token<S>
where
    S: Service<Call<B>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<Result<S::Response, ProxyError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call<B>) -> Self::Future {
        let metrics = &self.metrics;
        let refuse = |call: &Call<B>, err: ProxyError| -> Self::Future {
            refused(metrics, call, &err);
            Either::Right(Box::pin(std::future::ready(Err(err))))
        };
        let Some(tokens) = &self.tokens else {
            if !self.certificate {
                // Never reached by a valid config (an optional certificate
                // needs [tokens]); refused rather than let through.
                return refuse(&call, ProxyError::NoCredentials);
            }
            return Either::Left(self.inner.call(call));
        };
        let token = match bearer_token(call.request.headers()) {
            Ok(Some(token)) => token.to_vec(),
            Ok(None) if self.certificate => {
                // The certificate alone decides this call.
                return Either::Left(self.inner.call(call));
            }
            Ok(None) => return refuse(&call, ProxyError::NoCredentials),
            Err(e) => return refuse(&call, ProxyError::BearerToken(e)),
        };
        if !tokens.forward() {
            call.request.headers_mut().remove(AUTHORIZATION);
        }
        // The instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tokens = tokens.clone();
        let metrics = self.metrics.clone();
        Either::Right(Box::pin(async move {
            match tokens.verify_waiting(&token, SystemTime::now()).await {
                Ok(verified) => {
                    call.ctx.set_token(verified);
                    inner.call(call).await
                }
                Err(e) => {
                    let err = ProxyError::BearerToken(e);
                    refused(&metrics, &call, &err);
                    Err(err)
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{HeaderMap, HeaderValue};
    use tower::ServiceExt;

    use super::*;
    use crate::error::ErrorKind;
    use crate::layers::testing::{call, call_as, identity};
    use crate::token::{IssuerConfig, KeySet, KeySource, TokensConfig};

    /// A JWKS with one RSA key, and a token it verifies, made with the
    /// verifier's own test keys.
    fn tokens(forward: bool) -> (Arc<Tokens>, String) {
        let (jwks, token) = crate::token::testing::rsa_jwks_and_token(
            "https://issuer.test",
            "temporal",
            "system:serviceaccount:payments:worker",
        );
        let set = KeySet::parse(jwks.as_bytes(), &crate::token::Algorithm::DEFAULT).unwrap();
        let issuer = IssuerConfig::new(
            "cluster",
            "https://issuer.test",
            &["temporal"],
            KeySource::File {
                path: "jwks.json".into(),
                keys: Arc::new(set),
            },
        );
        let config = TokensConfig {
            issuers: vec![issuer],
            forward,
        };
        (Arc::new(Tokens::from_config(&config)), token)
    }

    /// The inner service: counts calls, returns the headers it saw and
    /// whether the call's context had a verified token.
    fn inner(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<
        Call<()>,
        Response = (HeaderMap, Option<String>),
        Error = ProxyError,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(move |call: Call<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let sub = call.ctx.token().map(|t| t.sub.clone());
            let headers = call.request.headers().clone();
            async move { Ok::<_, ProxyError>((headers, sub)) }
        })
    }

    fn request(authorization: &[&str]) -> http::Request<()> {
        let mut r = http::Request::builder()
            .uri("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo");
        for a in authorization {
            r = r.header(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        r.body(()).unwrap()
    }

    #[tokio::test]
    async fn a_valid_token_is_recorded_and_its_header_removed_unless_forwarded() {
        for forward in [false, true] {
            let (tokens, token) = tokens(forward);
            let calls = Arc::new(AtomicUsize::new(0));
            let svc =
                TokenLayer::new(Some(tokens), false, Metrics::new(10)).layer(inner(calls.clone()));
            let bearer = format!("Bearer {token}");
            let (headers, sub) = svc.oneshot(call(request(&[&bearer]))).await.unwrap();
            assert_eq!(
                sub.as_deref(),
                Some("system:serviceaccount:payments:worker")
            );
            assert_eq!(headers.contains_key(AUTHORIZATION), forward);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn bad_tokens_and_missing_credentials_are_refused_before_the_inner_service() {
        let (tokens, token) = tokens(false);
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = TokenLayer::new(Some(tokens.clone()), false, Metrics::new(10));
        let bearer = format!("Bearer {token}");
        let cases: [(&[&str], ErrorKind); 4] = [
            (&[], ErrorKind::NoCredentials),
            (
                &["Basic dXNlcjpwYXNz"],
                ErrorKind::BadBearerToken("not_bearer"),
            ),
            (
                &[&bearer, &bearer],
                ErrorKind::BadBearerToken("two_authorization_headers"),
            ),
            (&["Bearer a.b.c"], ErrorKind::BadBearerToken("malformed")),
        ];
        for (headers, kind) in cases {
            let svc = layer.layer(inner(calls.clone()));
            let err = svc.oneshot(call(request(headers))).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{headers:?}: {err}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // With a certificate, a call without a token is the certificate's.
        let svc = TokenLayer::new(Some(tokens), true, Metrics::new(10)).layer(inner(calls.clone()));
        let (_, sub) = svc
            .oneshot(call_as(request(&[]), Some(identity("worker"))))
            .await
            .unwrap();
        assert_eq!(sub, None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_tokens_configured_calls_pass_unchanged() {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = TokenLayer::new(None, true, Metrics::new(10)).layer(inner(calls.clone()));
        let (headers, sub) = svc.oneshot(call(request(&["Bearer x.y.z"]))).await.unwrap();
        assert_eq!(headers[AUTHORIZATION], "Bearer x.y.z");
        assert_eq!(sub, None);
    }
}
