//! Authorization: who may call what, down to the Temporal namespace inside
//! the request. The method comes from the `:path` and the method table; the
//! namespace from the first gRPC message's protobuf (decompressed if gzip),
//! never from the client-asserted `temporal-namespace` header, which must
//! agree with it. The original bytes are forwarded unchanged. Denied calls
//! are answered PERMISSION_DENIED and never forwarded (in audit mode they
//! are logged and forwarded).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::record::{AuthzOutcome, CallRecord};
use crate::grpc::names;
use arc_swap::ArcSwapOption;

use crate::authz::{open_to_all, Allowed, Decision, Grants, Mode, Policy};
use crate::error::ProxyError;
use crate::grpc::frame::{decompress, read_first_message, FirstMessage};
use crate::grpc::{Replay, ResponseBody};
use crate::metrics::AuthzDecision;
use crate::temporal::methods::{lookup, Method};
use crate::temporal::wire::last_string_field;
use crate::tls::identity::PeerIdentity;

/// What one connection's calls are decided with. The policy can be
/// reloaded while the connection is open: the rules this identity matches
/// are recomputed once when a call sees a new policy, and cached (no lock)
/// for the calls after it.
pub struct ConnAuthz {
    policy: Arc<ArcSwapOption<Policy>>,
    identity: Arc<PeerIdentity>,
    /// The identity as named in messages and logs (SPIFFE ID, CN or subject).
    pub who: String,
    pub max_message: usize,
    cached: ArcSwapOption<Cached>,
}

/// The grants of one identity under one policy.
struct Cached {
    policy: Arc<Policy>,
    grants: Grants,
}

impl ConnAuthz {
    pub fn new(
        policy: Arc<ArcSwapOption<Policy>>,
        identity: Arc<PeerIdentity>,
        max_message: usize,
    ) -> ConnAuthz {
        ConnAuthz {
            policy,
            who: identity.display_name().to_owned(),
            identity,
            max_message,
            cached: ArcSwapOption::empty(),
        }
    }

    /// The grants under the current policy; `None` when authorization is
    /// off (no `[authz]` in the current config).
    fn grants(&self) -> Option<Arc<Cached>> {
        let policy = self.policy.load_full()?;
        if let Some(cached) = self.cached.load_full() {
            if Arc::ptr_eq(&cached.policy, &policy) {
                return Some(cached);
            }
        }
        let fresh = Arc::new(Cached {
            grants: policy.grants_for(&self.identity),
            policy,
        });
        self.cached.store(Some(fresh.clone()));
        Some(fresh)
    }
}

#[derive(Clone)]
pub struct AuthzLayer {
    /// `None`: authorization is off (no `[authz]` in the config).
    state: Option<Arc<ConnAuthz>>,
}

impl AuthzLayer {
    pub fn new(state: Option<Arc<ConnAuthz>>) -> AuthzLayer {
        AuthzLayer { state }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Authz<S> {
        Authz {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    state: Option<Arc<ConnAuthz>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Authz<S>
where
    S: Service<Request<Replay<B>>, Response = Response<ResponseBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody>;
    type Error = ProxyError;
    type Future = BoxFuture<Result<Response<ResponseBody>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some((state, cached)) = self
            .state
            .as_ref()
            .and_then(|s| s.grants().map(|g| (s.clone(), g)))
        else {
            return Box::pin(inner.call(req.map(Replay::new)));
        };
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            let record = parts.extensions.get::<Arc<CallRecord>>().cloned();
            let path = parts.uri.path();
            // The audit record has already looked the method up.
            let method = match &record {
                Some(r) => r.method(),
                None => lookup(path),
            };

            let mut first: Option<FirstMessage> = None;
            let mut namespace: Option<String> = None;
            if let Some(m) = method.filter(|m| m.namespace_field.is_some()) {
                match namespace_of(m, &parts.headers, &mut body, state.max_message).await {
                    Ok((ns, message)) => {
                        namespace = ns;
                        first = Some(message);
                    }
                    Err(err) => {
                        record_outcome(
                            record.as_deref(),
                            None,
                            AuthzDecision::Invalid,
                            None,
                            Some(err.label()),
                        );
                        return Err(err);
                    }
                }
            }

            // The client-asserted header must agree with the body.
            if let (Some(ns), Some(header)) =
                (&namespace, parts.headers.get(names::TEMPORAL_NAMESPACE))
            {
                if header.as_bytes() != ns.as_bytes() {
                    let err = ProxyError::NamespaceMismatch {
                        header: String::from_utf8_lossy(header.as_bytes()).into_owned(),
                        body: ns.clone(),
                    };
                    record_outcome(
                        record.as_deref(),
                        namespace.clone(),
                        AuthzDecision::Invalid,
                        None,
                        Some(err.label()),
                    );
                    return Err(err);
                }
            }

            let decision: Decision = if open_to_all(path) {
                Ok(Allowed::Authenticated)
            } else {
                match method {
                    None => cached.grants.decide_unknown(path),
                    Some(m) => cached.grants.decide(m, path, namespace.as_deref()),
                }
            };

            match decision {
                Ok(allowed) => {
                    let rule = match allowed {
                        Allowed::Rule(name) => name,
                        Allowed::Authenticated => authenticated(),
                    };
                    record_outcome(
                        record.as_deref(),
                        namespace,
                        AuthzDecision::Allow,
                        Some(rule),
                        None,
                    );
                }
                Err(denied) => {
                    let err = ProxyError::Denied {
                        who: state.who.clone(),
                        method: short_name(path).to_owned(),
                        namespace: namespace.clone(),
                        known_method: method.is_some(),
                        reason: denied.clone(),
                    };
                    if cached.grants.mode == Mode::Enforce {
                        tracing::info!(identity = %state.who, method = path, namespace = namespace.as_deref().unwrap_or(""), reason = denied.label(), "call denied");
                        record_outcome(
                            record.as_deref(),
                            namespace,
                            AuthzDecision::Deny,
                            None,
                            Some(denied.label()),
                        );
                        return Err(err);
                    }
                    tracing::warn!(identity = %state.who, method = path, namespace = namespace.as_deref().unwrap_or(""), reason = denied.label(), "call would be denied; forwarded (authz mode audit)");
                    record_outcome(
                        record.as_deref(),
                        namespace,
                        AuthzDecision::AuditDeny,
                        None,
                        Some(denied.label()),
                    );
                }
            }

            let body = match first {
                Some(m) => Replay::after(m.chunks, body, m.end_of_body, m.trailers),
                None => Replay::new(body),
            };
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

/// Reads the first message and the namespace field of `method` in it.
async fn namespace_of<B>(
    method: &'static Method,
    headers: &http::HeaderMap,
    body: &mut B,
    limit: usize,
) -> Result<(Option<String>, FirstMessage), ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let field = method.namespace_field.unwrap_or(1);
    let message = read_first_message(body, limit)
        .await
        .map_err(|source| ProxyError::Message {
            method: method.name,
            source,
        })?;
    let payload: Cow<'_, [u8]> = if message.prefix.compressed {
        let encoding = headers
            .get(names::GRPC_ENCODING)
            .and_then(|v| v.to_str().ok());
        Cow::Owned(
            decompress(encoding, &message.payload, limit).map_err(|source| {
                ProxyError::Message {
                    method: method.name,
                    source,
                }
            })?,
        )
    } else {
        Cow::Borrowed(&message.payload[..])
    };
    let namespace = last_string_field(&payload, field)
        .map_err(|source| ProxyError::Protobuf {
            method: method.name,
            source,
        })?
        .map(str::to_owned);
    Ok((namespace, message))
}

fn record_outcome(
    record: Option<&CallRecord>,
    namespace: Option<String>,
    decision: AuthzDecision,
    rule: Option<Arc<str>>,
    reason: Option<&'static str>,
) {
    if let Some(record) = record {
        record.set_outcome(AuthzOutcome {
            namespace,
            decision,
            rule,
            reason,
        });
    }
}

/// The rule name of calls open to every authenticated identity, shared so
/// that allowing one allocates nothing.
fn authenticated() -> Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Arc::from("authenticated")).clone()
}

/// `Method` of `/pkg.Service/Method`.
fn short_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
