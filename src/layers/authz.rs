//! Authorization: who may call what, down to the Temporal namespace inside
//! the request. Who is the connection's certificate and the call's verified
//! bearer token (set by `layers::token`), matched by the same rules. The method comes from the `:path` and the method table; the
//! namespace from the first gRPC message's protobuf (decompressed if gzip),
//! never from the client-asserted `temporal-namespace` header, which must
//! agree with it. The original bytes are forwarded unchanged. Denied calls
//! are answered PERMISSION_DENIED and never forwarded (in audit mode they
//! are logged and forwarded).
//!
//! Besides the request's own namespace, every namespace the frontend could
//! act on is authorized, whatever the server's options
//! (`temporal::nested`): the namespaces named by a workflow task's
//! commands and by ExecuteMultiOperation's operations, each as the call it
//! stands for, and the namespace of a task token, which must be the
//! request's (its id resolved to a name by `upstream::namespaces`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::TryFutureExt;
use http::{HeaderMap, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::authz::{open_to_all, Allowed, AuthzDecision, Decision, Denied, Grants, Mode, Policy};
use crate::call::{AuthzOutcome, Call, CallContext, ResponseBody};
use crate::error::{Credentials, ProxyError};
use crate::grpc::frame::{decompress, read_first_message_within, FirstMessage, FrameError};
use crate::grpc::{names, ConnBudget, Replay};
use crate::logging::limit;
use crate::reload::Live;
use crate::temporal::methods::{lookup, Method};
use crate::temporal::nested::{nested_namespaces, task_token_field, token_namespace_id};
use crate::temporal::wire::last_string_field;
use crate::tls::identity::PeerIdentity;
use crate::token::VerifiedToken;
use crate::upstream::namespaces::NamespaceIds;
use crate::upstream::Forward;

/// What one connection's calls are decided with. The policy can be
/// reloaded while the connection is open: the rules this identity matches
/// are recomputed once when a call sees a new policy (or, under rules that
/// match tokens, another token than the last call's), and cached (no lock)
/// for the calls after it.
pub struct ConnAuthz {
    live: Arc<Live>,
    /// `None`: a connection without a client certificate (its calls carry
    /// a verified token, or the token layer refused them).
    identity: Option<Arc<PeerIdentity>>,
    /// The certificate as named in messages and logs (SPIFFE ID, CN or
    /// subject); empty without one.
    pub who: String,
    reads: ReadLimits,
    cached: ArcSwapOption<Cached>,
    /// Task tokens' namespace ids, resolved through `forward`.
    namespaces: Arc<NamespaceIds>,
    forward: Forward,
}

/// The grants of one identity under one policy.
struct Cached {
    policy: Arc<Policy>,
    /// The token the grants were computed with (`None` also when the
    /// policy has no token rules, so that any token gives the same grants).
    token: Option<Arc<VerifiedToken>>,
    grants: Grants,
}

/// Who asks, and what the rules they match grant.
struct Asking<'a> {
    caller: &'a Caller,
    grants: &'a Grants,
}

/// Who a call is, as named in denials and logs.
struct Caller {
    name: String,
    credentials: Credentials,
}

impl Caller {
    fn new(certificate: &str, token: Option<&VerifiedToken>, has_certificate: bool) -> Caller {
        let name = match token {
            None => certificate.to_owned(),
            Some(t) => {
                let token = format!("token sub {:?} of issuer {:?}", t.sub, &*t.issuer);
                if has_certificate {
                    format!("{certificate} with {token}")
                } else {
                    token
                }
            }
        };
        Caller {
            name,
            credentials: Credentials::of(has_certificate, token.is_some()),
        }
    }
}

/// How a connection's first messages are read.
pub struct ReadLimits {
    /// Largest message (decompressed where the proxy decompresses).
    pub max_message: usize,
    /// What the connection's reads may hold at once.
    pub budget: ConnBudget,
    /// How long a first message may take to arrive in full.
    pub timeout: Duration,
}

impl ConnAuthz {
    pub fn new(
        live: Arc<Live>,
        identity: Option<Arc<PeerIdentity>>,
        reads: ReadLimits,
        namespaces: Arc<NamespaceIds>,
        forward: Forward,
    ) -> ConnAuthz {
        ConnAuthz {
            live,
            who: identity
                .as_deref()
                .map(PeerIdentity::display_name)
                .unwrap_or_default()
                .to_owned(),
            identity,
            reads,
            cached: ArcSwapOption::empty(),
            namespaces,
            forward,
        }
    }

    /// The grants under the current policy for a call with `token`;
    /// `None` when authorization is off (no `[authz]` in the current
    /// config).
    fn grants(&self, token: Option<&Arc<VerifiedToken>>) -> Option<Arc<Cached>> {
        let policy = self.live.policy()?;
        let token = token.filter(|_| policy.matches_tokens());
        if let Some(cached) = self.cached.load_full() {
            let same_token = match (&cached.token, token) {
                (None, None) => true,
                // The token cache hands out one Arc per verified token.
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if Arc::ptr_eq(&cached.policy, &policy) && same_token {
                return Some(cached);
            }
        }
        let fresh = Arc::new(Cached {
            grants: policy.grants_for(self.identity.as_deref(), token.map(|t| &**t)),
            token: token.cloned(),
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

/// Why a call is not simply allowed.
enum Refused {
    /// The policy does not allow it: refused in enforce mode, forwarded and
    /// logged in audit mode.
    Policy(ProxyError),
    /// The request cannot be decided (unreadable, inconsistent): refused in
    /// every mode.
    Invalid(ProxyError),
}

/// What the checks found out about a call, for the audit record.
#[derive(Default)]
struct Findings {
    namespace: Option<String>,
}

impl<S, B> Service<Call<B>> for Authz<S>
where
    S: Service<Call<Replay<B>>, Response = Response<ResponseBody>, Error = ProxyError>
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

    fn call(&mut self, call: Call<B>) -> Self::Future {
        // The instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some((state, cached)) = self
            .state
            .as_ref()
            .and_then(|s| s.grants(call.ctx.token()).map(|g| (s.clone(), g)))
        else {
            return Box::pin(inner.call(call.map_body(Replay::new)));
        };
        // The decision in an allocation of its own, freed once the call is
        // let through: what deciding holds (the request's first message,
        // the checks' state) is several times what waiting for the answer
        // needs, and a long poll waits up to 70 s.
        Box::pin(Box::pin(decide(call, state, cached)).and_then(move |call| inner.call(call)))
    }
}

/// The call let through (its body replaying what was read of it), or the
/// error that refuses it, recorded for the audit and logged.
async fn decide<B>(
    call: Call<B>,
    state: Arc<ConnAuthz>,
    cached: Arc<Cached>,
) -> Result<Call<Replay<B>>, ProxyError>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let Call { ctx, request } = call;
    let caller = Caller::new(
        &state.who,
        ctx.token().map(|t| &**t),
        state.identity.is_some(),
    );
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path();
    let method = ctx.method;

    // The first message, for methods whose request names a namespace.
    let mut first: Option<FirstMessage> = None;
    let mut payload: Option<Bytes> = None;
    if let Some(m) = method.filter(|m| m.namespace_field.is_some()) {
        match read_request(m, &parts.headers, &mut body, &state.reads).await {
            Ok((message, decoded)) => {
                first = Some(message);
                payload = Some(decoded);
            }
            Err(err) => {
                refused(&caller, path, None, &err);
                record_outcome(
                    &ctx,
                    None,
                    AuthzDecision::Invalid,
                    None,
                    Some(err.kind().label()),
                );
                return Err(err);
            }
        }
    }

    let mut findings = Findings::default();
    let checked = check(
        &state,
        Asking {
            caller: &caller,
            grants: &cached.grants,
        },
        method,
        path,
        &parts.headers,
        payload.as_deref(),
        &mut findings,
    )
    .await;
    let namespace = findings.namespace;
    match checked {
        Ok(allowed) => {
            let rule = match allowed {
                Allowed::Rule(name) => name,
                Allowed::Authenticated => authenticated(),
            };
            record_outcome(&ctx, namespace, AuthzDecision::Allow, Some(rule), None);
        }
        Err(Refused::Invalid(err)) => {
            refused(&caller, path, namespace.as_deref(), &err);
            record_outcome(
                &ctx,
                namespace,
                AuthzDecision::Invalid,
                None,
                Some(err.kind().label()),
            );
            return Err(err);
        }
        Err(Refused::Policy(err)) => {
            let enforce = cached.grants.mode == Mode::Enforce;
            if limit::CALL_DENIED.admit() {
                let ns = namespace.as_deref().unwrap_or("");
                if enforce {
                    tracing::info!(identity = %caller.name, method = path, namespace = ns, reason = err.kind().label(), error = %err, "call denied");
                } else {
                    tracing::warn!(identity = %caller.name, method = path, namespace = ns, reason = err.kind().label(), error = %err, "call would be denied; forwarded (authz mode audit)");
                }
            }
            let decision = if enforce {
                AuthzDecision::Deny
            } else {
                AuthzDecision::AuditDeny
            };
            record_outcome(&ctx, namespace, decision, None, Some(err.kind().label()));
            if enforce {
                return Err(err);
            }
        }
    }

    let body = match first {
        Some(m) => Replay::after(m.chunks, body, m.end_of_body, m.trailers, m.held),
        None => Replay::new(body),
    };
    Ok(Call {
        ctx,
        request: http::Request::from_parts(parts, body),
    })
}

/// Every check of one call, in order: the request's namespace, the header
/// that must agree with it, the task token's namespace, the decision for
/// the call, and the decisions for every namespace named inside it.
async fn check(
    state: &ConnAuthz,
    asking: Asking<'_>,
    method: Option<&'static Method>,
    path: &str,
    headers: &HeaderMap,
    payload: Option<&[u8]>,
    findings: &mut Findings,
) -> Result<Allowed, Refused> {
    let Asking { caller, grants } = asking;
    let Some(m) = method else {
        if open_to_all(path) {
            return Ok(Allowed::Authenticated);
        }
        return grants
            .decide_unknown(path)
            .map_err(|reason| Refused::Policy(denied(caller, path, None, false, reason, None)));
    };
    let payload = payload.unwrap_or_default();
    if let Some(field) = m.namespace_field {
        let namespace = last_string_field(payload, field).map_err(|source| {
            Refused::Invalid(ProxyError::Protobuf {
                method: m.name,
                source,
            })
        })?;
        findings.namespace = namespace.map(str::to_owned);
    }

    // The client-asserted header must agree with the body, every copy of it.
    if let Some(ns) = &findings.namespace {
        for header in headers.get_all(names::TEMPORAL_NAMESPACE) {
            if header.as_bytes() != ns.as_bytes() {
                return Err(Refused::Invalid(ProxyError::NamespaceMismatch {
                    header: String::from_utf8_lossy(header.as_bytes()).into_owned(),
                    body: ns.clone(),
                }));
            }
        }
    }

    // A task token's namespace is the one the frontend acts on.
    if let Some(field) = task_token_field(m) {
        let id = token_namespace_id(payload, field)
            .map_err(|source| Refused::Invalid(ProxyError::Token(source)))?;
        let token_namespace = state
            .namespaces
            .name_of(id, &state.forward)
            .await
            .map_err(|e| Refused::Policy(ProxyError::TokenNamespace(e)))?;
        match findings.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => {
                if ns != &*token_namespace {
                    return Err(Refused::Policy(ProxyError::TokenNamespaceMismatch {
                        request: ns.to_owned(),
                        token: token_namespace.to_string(),
                    }));
                }
            }
            // No namespace in the request: the frontend takes the token's.
            _ => findings.namespace = Some(token_namespace.to_string()),
        }
    }

    let namespace = findings.namespace.as_deref();
    let allowed = if open_to_all(path) {
        Allowed::Authenticated
    } else {
        grants.decide(m, path, namespace).map_err(|reason| {
            Refused::Policy(denied(caller, path, namespace, true, reason, None))
        })?
    };

    let mut nested = Vec::new();
    nested_namespaces(m, payload, &mut nested).map_err(|source| {
        Refused::Invalid(ProxyError::Protobuf {
            method: m.name,
            source,
        })
    })?;
    for target in nested {
        if Some(target.namespace) == namespace {
            // The request's own namespace, already decided above.
            continue;
        }
        let decision: Decision = match lookup(target.acts_as) {
            Some(acts_as) => grants.decide(acts_as, target.acts_as, Some(target.namespace)),
            None => grants.decide_unknown(target.acts_as),
        };
        decision.map_err(|reason| {
            Refused::Policy(denied(
                caller,
                target.acts_as,
                Some(target.namespace),
                true,
                reason,
                Some((target.via, m.name)),
            ))
        })?;
    }
    Ok(allowed)
}

fn denied(
    caller: &Caller,
    path: &str,
    namespace: Option<&str>,
    known_method: bool,
    reason: Denied,
    via: Option<(&'static str, &'static str)>,
) -> ProxyError {
    ProxyError::Denied {
        who: caller.name.clone(),
        credentials: caller.credentials,
        method: short_name(path).to_owned(),
        namespace: namespace.map(str::to_owned),
        known_method,
        reason,
        via,
    }
}

/// Logs a call refused for what it carries (rate-limited: a client chooses
/// how many it sends).
fn refused(caller: &Caller, path: &str, namespace: Option<&str>, err: &ProxyError) {
    if limit::CALL_REFUSED.admit() {
        tracing::info!(identity = %caller.name, method = path, namespace = namespace.unwrap_or(""), reason = err.kind().label(), error = %err, "call refused");
    }
}

/// Reads the first message and returns it with its payload, decompressed
/// when it is compressed (the encoding is the last `grpc-encoding` value,
/// the one grpc-go uses).
async fn read_request<B>(
    method: &'static Method,
    headers: &HeaderMap,
    body: &mut B,
    reads: &ReadLimits,
) -> Result<(FirstMessage, Bytes), ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let error = |source| ProxyError::Message {
        method: method.name,
        source,
    };
    let limit = reads.max_message;
    let read = read_first_message_within(body, limit, Some(&reads.budget));
    let message = tokio::time::timeout(reads.timeout, read)
        .await
        .map_err(|_| error(FrameError::TooSlow(reads.timeout)))?
        .map_err(error)?;
    let payload = if message.prefix.compressed {
        let encoding = headers
            .get_all(names::GRPC_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok());
        Bytes::from(decompress(encoding, &message.payload, limit).map_err(error)?)
    } else {
        message.payload.clone()
    };
    Ok((message, payload))
}

fn record_outcome(
    ctx: &CallContext,
    namespace: Option<String>,
    decision: AuthzDecision,
    rule: Option<Arc<str>>,
    reason: Option<&'static str>,
) {
    ctx.set_authz(AuthzOutcome {
        namespace,
        decision,
        rule,
        reason,
    });
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    use super::*;
    use crate::error::ErrorKind;
    use crate::health::Health;
    use crate::layers::testing::{
        call_as, config, forward_to, grpc_request, identity, message, ok_response, string_field, WS,
    };
    use crate::metrics::Metrics;
    use crate::reload::{Loaded, Reloadable};

    const POLICY: &str = "[[authz.rule]]\nname = \"readers\"\nmatch = { cn = \"good-client\" }\n\
                          namespaces = [\"default\"]\nroles = [\"reader\"]\n";

    /// What the inner service saw: how often it was called, and the
    /// request bytes it read.
    #[derive(Clone, Default)]
    struct Inner {
        calls: Arc<AtomicUsize>,
        bodies: Arc<Mutex<Vec<Bytes>>>,
    }

    impl Inner {
        fn service(
            &self,
        ) -> impl Service<
            Call<Replay<Full<Bytes>>>,
            Response = Response<ResponseBody>,
            Error = ProxyError,
            Future = impl Send,
        > + Clone
               + Send
               + 'static {
            let seen = self.clone();
            tower::service_fn(move |call: Call<Replay<Full<Bytes>>>| {
                let seen = seen.clone();
                async move {
                    seen.calls.fetch_add(1, Ordering::SeqCst);
                    let body = call.request.into_body().collect().await;
                    let body = body.map(|b| b.to_bytes()).unwrap_or_else(|e| match e {});
                    seen.bodies.lock().unwrap().push(body);
                    Ok(ok_response(b""))
                }
            })
        }
    }

    /// The layer for a connection of `cn`, under `[authz]` with `mode`
    /// (`None`: no `[authz]` section).
    fn layer(mode: Option<&str>, cn: &str) -> AuthzLayer {
        let extra = match mode {
            Some(mode) => format!("[authz]\nmode = \"{mode}\"\n{POLICY}"),
            None => String::new(),
        };
        let (config, _dir) = config("http://127.0.0.1:9", &extra);
        let loaded = Loaded::from_config(&config).unwrap();
        let live = Reloadable::start(&config, loaded, Health::new(), Metrics::new(10))
            .live
            .clone();
        let reads = ReadLimits {
            max_message: 4 << 20,
            budget: ConnBudget::new(1 << 20, 16_384),
            timeout: Duration::from_secs(5),
        };
        AuthzLayer::new(Some(Arc::new(ConnAuthz::new(
            live,
            Some(identity(cn)),
            reads,
            NamespaceIds::new(),
            forward_to("http://127.0.0.1:9"),
        ))))
    }

    fn describe(namespace: &str) -> (http::Request<Full<Bytes>>, Bytes) {
        let body = message(&string_field(1, namespace));
        (
            grpc_request(&format!("{WS}/DescribeNamespace"), body.clone()),
            body,
        )
    }

    #[tokio::test]
    async fn an_allowed_call_reaches_the_inner_service_with_its_bytes_unchanged() {
        let inner = Inner::default();
        let svc = layer(Some("enforce"), "good-client").layer(inner.service());
        let (request, sent) = describe("default");
        let call = call_as(request, None);
        let ctx = call.ctx.clone();
        svc.oneshot(call).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        assert_eq!(inner.bodies.lock().unwrap()[..], [sent]);
        let outcome = ctx.authz().expect("an outcome");
        assert_eq!(outcome.decision, AuthzDecision::Allow);
        assert_eq!(outcome.rule.as_deref(), Some("readers"));
        assert_eq!(outcome.namespace.as_deref(), Some("default"));
    }

    #[tokio::test]
    async fn a_denied_call_never_reaches_the_inner_service() {
        let inner = Inner::default();
        let svc = layer(Some("enforce"), "good-client").layer(inner.service());
        let call = call_as(describe("other").0, None);
        let ctx = call.ctx.clone();
        let err = match svc.oneshot(call).await {
            Err(e) => e,
            Ok(_) => panic!("a denied call was answered"),
        };
        assert!(matches!(err.kind(), ErrorKind::Denied(_)), "{err}");
        assert!(
            err.to_string()
                .contains("DescribeNamespace on namespace \"other\""),
            "{err}"
        );
        assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
        let outcome = ctx.authz().expect("an outcome");
        assert_eq!(outcome.decision, AuthzDecision::Deny);
        assert_eq!(outcome.namespace.as_deref(), Some("other"));
    }

    #[tokio::test]
    async fn an_identity_no_rule_matches_is_denied() {
        let inner = Inner::default();
        let svc = layer(Some("enforce"), "stranger").layer(inner.service());
        assert!(svc
            .oneshot(call_as(describe("default").0, None))
            .await
            .is_err());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn audit_mode_forwards_a_call_the_policy_denies_and_says_so() {
        let inner = Inner::default();
        let svc = layer(Some("audit"), "good-client").layer(inner.service());
        let (request, sent) = describe("other");
        let call = call_as(request, None);
        let ctx = call.ctx.clone();
        svc.oneshot(call).await.unwrap();
        assert_eq!(inner.bodies.lock().unwrap()[..], [sent]);
        assert_eq!(ctx.authz().unwrap().decision, AuthzDecision::AuditDeny);
    }

    #[tokio::test]
    async fn a_namespace_header_disagreeing_with_the_request_is_refused_in_every_mode() {
        for mode in ["enforce", "audit"] {
            let inner = Inner::default();
            let svc = layer(Some(mode), "good-client").layer(inner.service());
            let (mut request, _) = describe("default");
            request.headers_mut().insert(
                "temporal-namespace",
                http::HeaderValue::from_static("other"),
            );
            let call = call_as(request, None);
            let ctx = call.ctx.clone();
            let err = match svc.oneshot(call).await {
                Err(e) => e,
                Ok(_) => panic!("{mode}: a mismatched header was forwarded"),
            };
            assert_eq!(err.kind(), ErrorKind::NamespaceHeaderMismatch, "{mode}");
            assert_eq!(inner.calls.load(Ordering::SeqCst), 0, "{mode}");
            assert_eq!(ctx.authz().unwrap().decision, AuthzDecision::Invalid);
        }
    }

    #[tokio::test]
    async fn without_a_policy_every_call_goes_through_undecided() {
        let inner = Inner::default();
        let svc = layer(None, "anyone").layer(inner.service());
        let (request, sent) = describe("other");
        let call = call_as(request, None);
        let ctx = call.ctx.clone();
        svc.oneshot(call).await.unwrap();
        assert_eq!(inner.bodies.lock().unwrap()[..], [sent]);
        assert!(ctx.authz().is_none());
    }

    #[tokio::test]
    async fn a_call_open_to_every_identity_is_allowed_as_authenticated() {
        let inner = Inner::default();
        let svc = layer(Some("enforce"), "stranger").layer(inner.service());
        let request = grpc_request(&format!("{WS}/GetSystemInfo"), message(b""));
        let call = call_as(request, None);
        let ctx = call.ctx.clone();
        svc.oneshot(call).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        assert_eq!(ctx.authz().unwrap().rule.as_deref(), Some("authenticated"));
    }
}
