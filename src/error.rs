//! Every error the proxy answers a call with, and the one place where each
//! becomes a gRPC status ([`status_of`]). Layers raise their own error types;
//! this module decides what the client is told.

use std::sync::Arc;

use tonic::{Code, Status};

use crate::authz::Denied;
use crate::grpc::frame::FrameError;
use crate::grpc::scan::LimitError;
use crate::temporal::wire::WireError;
use crate::upstream::namespaces::ResolveError;
use crate::upstream::{CallError, StreamError, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No upstream connection could be had.
    #[error(transparent)]
    Upstream(Arc<UpstreamError>),
    /// The call was sent but failed before a response arrived.
    #[error("upstream call failed: {0}")]
    UpstreamCall(#[source] StreamError),
    /// The response stream failed part-way.
    #[error("upstream response failed: {0}")]
    UpstreamBody(#[source] StreamError),
    /// The upstream ended the response without a gRPC status.
    #[error("upstream ended the response without grpc-status")]
    UpstreamNoStatus,
    /// The call's bearer token is not valid (its reason in words).
    #[error("invalid bearer token: {0}")]
    BearerToken(#[source] crate::token::TokenError),
    /// A connection without a client certificate made a call without a
    /// bearer token (`tls.client_certificate = "optional"`).
    #[error("no client certificate and no bearer token: a connection without a certificate needs an authorization: Bearer token on every call")]
    NoCredentials,
    /// The policy does not allow this identity this call.
    #[error("{}", denied_message(who, method, namespace.as_deref(), *known_method, reason, *via, *credentials))]
    Denied {
        /// The certificate's name, the token's subject and issuer, or both.
        who: String,
        /// What `who` is, for the words of a call no rule matched.
        credentials: Credentials,
        method: String,
        namespace: Option<String>,
        known_method: bool,
        reason: Denied,
        /// For a namespace named inside the request: what names it, and the
        /// request's method (`("a StartChildWorkflowExecution command",
        /// "RespondWorkflowTaskCompleted")`).
        via: Option<(&'static str, &'static str)>,
    },
    /// The task token cannot be read (the frontend's own refusal).
    #[error(transparent)]
    Token(crate::temporal::nested::TokenError),
    /// The task token's namespace could not be resolved.
    #[error(transparent)]
    TokenNamespace(crate::upstream::namespaces::ResolveError),
    /// The task token belongs to another namespace than the request names.
    #[error("Operation requested with a token from a different namespace. (the proxy read a token of namespace {token:?} in a request for {request:?})")]
    TokenNamespaceMismatch { request: String, token: String },
    /// The `temporal-namespace` header names another namespace than the
    /// request itself.
    #[error(
        "temporal-namespace header {header:?} disagrees with the request's namespace {body:?}"
    )]
    NamespaceMismatch { header: String, body: String },
    /// The request's first gRPC message could not be read.
    #[error("{method} request: {source}")]
    Message {
        method: &'static str,
        #[source]
        source: FrameError,
    },
    /// A response message broke the response limits or framing.
    #[error("response from upstream: {0}")]
    Response(LimitError<std::convert::Infallible>),
    /// A request message broke the request limits or framing.
    #[error("request: {0}")]
    Request(LimitError<std::convert::Infallible>),
    /// The `:path` is not one the frontend would route.
    #[error(transparent)]
    Path(crate::grpc::path::PathError),
    /// No response head from the upstream within the call's
    /// `grpc-timeout` (and the deadline layer's margin).
    #[error("context deadline exceeded (the proxy had no answer from the upstream within the call's grpc-timeout of {})", humantime::format_duration(*.0))]
    Deadline(std::time::Duration),
    /// The request's protobuf is malformed.
    #[error("{method} request is not valid protobuf: {source}")]
    Protobuf {
        method: &'static str,
        #[source]
        source: WireError,
    },
}

/// Which identities a call was decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    Certificate,
    Token,
    CertificateAndToken,
}

impl Credentials {
    pub fn of(certificate: bool, token: bool) -> Credentials {
        match (certificate, token) {
            (true, true) => Credentials::CertificateAndToken,
            (false, true) => Credentials::Token,
            _ => Credentials::Certificate,
        }
    }
}

fn denied_message(
    who: &str,
    method: &str,
    namespace: Option<&str>,
    known_method: bool,
    reason: &Denied,
    via: Option<(&str, &str)>,
    credentials: Credentials,
) -> String {
    let mut target = match namespace {
        Some(ns) => format!("{method} on namespace {ns:?}"),
        None => method.to_owned(),
    };
    if let Some((what, request)) = via {
        target.push_str(&format!(" ({what} in {request})"));
    }
    let why = match reason {
        Denied::NoMatchingRule => match credentials {
            Credentials::Certificate => "no authorization rule matches this certificate",
            Credentials::Token => "no authorization rule matches this token",
            Credentials::CertificateAndToken => {
                "no authorization rule matches this certificate and token"
            }
        },
        Denied::NotGranted => "no rule grants it",
        Denied::UnknownMethod if !known_method => {
            "the method is not in this proxy's Temporal method table (a newer API?) and no rule names it"
        }
        Denied::UnknownMethod => "no rule names it",
    };
    format!("permission denied: {who} may not call {target}: {why}")
}

/// What kind of error ended a call: what metrics and the audit line record
/// (never an error's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    UpstreamUnavailable,
    UpstreamCallFailed,
    UpstreamResponseFailed,
    UpstreamNoStatus,
    Denied(Denied),
    /// An invalid bearer token: the label of its reason
    /// (`TokenError::kind`).
    BadBearerToken(&'static str),
    /// A call without a certificate or a token.
    NoCredentials,
    NamespaceHeaderMismatch,
    BadTaskToken,
    TaskTokenNamespaceUnresolved,
    TaskTokenNamespaceMismatch,
    /// A request message over the size limit.
    MessageTooLarge,
    /// A request message not complete within its time.
    MessageTooSlow,
    /// Request framing the proxy cannot read (or its body failed).
    BadMessage,
    MalformedProtobuf,
    MalformedPath,
    /// No answer within the call's `grpc-timeout`.
    DeadlineExceeded,
    /// A response message over the size limit.
    ResponseTooLarge,
    BadResponseFraming,
}

impl ErrorKind {
    /// A short stable label (audit lines, metrics).
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamCallFailed => "upstream_call_failed",
            ErrorKind::UpstreamResponseFailed => "upstream_response_failed",
            ErrorKind::UpstreamNoStatus => "upstream_no_status",
            ErrorKind::Denied(reason) => reason.label(),
            ErrorKind::BadBearerToken(reason) => reason,
            ErrorKind::NoCredentials => "no_credentials",
            ErrorKind::NamespaceHeaderMismatch => "namespace_header_mismatch",
            ErrorKind::BadTaskToken => "bad_task_token",
            ErrorKind::TaskTokenNamespaceUnresolved => "task_token_namespace_unresolved",
            ErrorKind::TaskTokenNamespaceMismatch => "task_token_namespace_mismatch",
            ErrorKind::MessageTooLarge => "message_too_large",
            ErrorKind::MessageTooSlow => "message_too_slow",
            ErrorKind::BadMessage => "bad_message",
            ErrorKind::MalformedProtobuf => "malformed_protobuf",
            ErrorKind::MalformedPath => "malformed_path",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::ResponseTooLarge => "response_too_large",
            ErrorKind::BadResponseFraming => "bad_response_framing",
        }
    }
}

impl ProxyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::Upstream(_) => ErrorKind::UpstreamUnavailable,
            ProxyError::UpstreamCall(_) => ErrorKind::UpstreamCallFailed,
            ProxyError::UpstreamBody(_) => ErrorKind::UpstreamResponseFailed,
            ProxyError::UpstreamNoStatus => ErrorKind::UpstreamNoStatus,
            ProxyError::Denied { reason, .. } => ErrorKind::Denied(*reason),
            ProxyError::BearerToken(e) => ErrorKind::BadBearerToken(e.kind()),
            ProxyError::NoCredentials => ErrorKind::NoCredentials,
            ProxyError::NamespaceMismatch { .. } => ErrorKind::NamespaceHeaderMismatch,
            ProxyError::Token(_) => ErrorKind::BadTaskToken,
            ProxyError::TokenNamespace(_) => ErrorKind::TaskTokenNamespaceUnresolved,
            ProxyError::TokenNamespaceMismatch { .. } => ErrorKind::TaskTokenNamespaceMismatch,
            ProxyError::Message {
                source: FrameError::TooLarge { .. },
                ..
            }
            | ProxyError::Request(LimitError::TooLarge { .. }) => ErrorKind::MessageTooLarge,
            ProxyError::Message {
                source: FrameError::TooSlow(_),
                ..
            } => ErrorKind::MessageTooSlow,
            ProxyError::Message { .. } | ProxyError::Request(_) => ErrorKind::BadMessage,
            ProxyError::Protobuf { .. } => ErrorKind::MalformedProtobuf,
            ProxyError::Path(_) => ErrorKind::MalformedPath,
            ProxyError::Deadline(_) => ErrorKind::DeadlineExceeded,
            ProxyError::Response(LimitError::TooLarge { .. }) => ErrorKind::ResponseTooLarge,
            ProxyError::Response(_) => ErrorKind::BadResponseFraming,
        }
    }
}

/// The upstream's own errors, converted at the one boundary where the stack
/// meets the upstream (`layers::upstream`).
impl From<CallError> for ProxyError {
    fn from(e: CallError) -> ProxyError {
        match e {
            CallError::Unavailable(e) => ProxyError::Upstream(e),
            CallError::Failed(e) => ProxyError::UpstreamCall(e),
        }
    }
}

/// The gRPC status a client receives for `err`. Transport failures toward
/// the upstream are UNAVAILABLE (retryable, as gRPC itself reports them),
/// with a message that says where it failed.
///
/// Where the proxy refuses a request in the frontend's place (a message it
/// cannot read, over the size limit), the status and the start of the
/// message are grpc-go's own, word for word: SDKs decide on them (a
/// "message too large" is recognised only by grpc-go's prefix, and then
/// fails the workflow task instead of retrying it forever). What the proxy
/// adds comes after, in parentheses.
pub fn status_of(err: &ProxyError) -> Status {
    match err {
        ProxyError::Upstream(e) => Status::unavailable(e.to_string()),
        ProxyError::UpstreamCall(e) => stream_status(e, "before responding"),
        ProxyError::UpstreamBody(e) => stream_status(e, "during the response"),
        ProxyError::UpstreamNoStatus => Status::new(
            Code::Internal,
            "upstream ended the response without grpc-status",
        ),
        ProxyError::Denied { .. } => Status::permission_denied(err.to_string()),
        // As Temporal's own authorizer answers a bad or missing token.
        ProxyError::BearerToken(_) | ProxyError::NoCredentials => {
            Status::unauthenticated(err.to_string())
        }
        ProxyError::NamespaceMismatch { .. }
        | ProxyError::Token(_)
        | ProxyError::TokenNamespaceMismatch { .. } => Status::invalid_argument(err.to_string()),
        ProxyError::TokenNamespace(ResolveError::Status { code, message }) => {
            Status::new(Code::from_i32(*code), message.clone())
        }
        ProxyError::TokenNamespace(e) => Status::unavailable(e.to_string()),
        ProxyError::Path(e) => Status::unimplemented(e.to_string()),
        // grpc-go's words for a deadline that passed.
        ProxyError::Deadline(_) => Status::deadline_exceeded(err.to_string()),
        ProxyError::Protobuf { method, source } => Status::internal(format!(
            "grpc: error unmarshalling request: {} (the proxy read the {method} request: {source})",
            go_proto_error(source)
        )),
        ProxyError::Request(limit) => limit_status(limit, "request"),
        ProxyError::Response(limit) => limit_status(limit, "response from upstream"),
        ProxyError::Message { method, source } => {
            let context = || format!("(the proxy read the {method} request)");
            match source {
                FrameError::TooLarge {
                    size,
                    limit,
                    decompressed: false,
                } => Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({size} vs. {limit}) {}",
                    context()
                )),
                FrameError::TooLarge {
                    limit,
                    decompressed: true,
                    ..
                } => Status::resource_exhausted(format!(
                    "grpc: received message after decompression larger than max {limit} {}",
                    context()
                )),
                FrameError::BadFlag(flag) => Status::internal(format!(
                    "grpc: received unexpected payload format {flag} {}",
                    context()
                )),
                FrameError::CompressedWithoutEncoding => Status::internal(format!(
                    "grpc: compressed flag set with identity or empty encoding {}",
                    context()
                )),
                FrameError::UnsupportedEncoding(encoding) => Status::unimplemented(format!(
                    "grpc: Decompressor is not installed for grpc-encoding {encoding:?} {}",
                    context()
                )),
                FrameError::DecompressHeader(why) => Status::internal(format!(
                    "grpc: failed to decompress the message: {why} {}",
                    context()
                )),
                FrameError::Decompress(why) => Status::internal(format!(
                    "grpc: failed to read decompressed data: {why} {}",
                    context()
                )),
                // What grpc-go's unary handler reports when the request
                // stream ends before its one message is complete.
                FrameError::Truncated { .. } => {
                    Status::unknown(format!("unexpected EOF {}", context()))
                }
                FrameError::Empty => Status::unknown(format!("EOF {}", context())),
                FrameError::Body(_) => Status::cancelled(err.to_string()),
                FrameError::TooSlow(_) => Status::deadline_exceeded(err.to_string()),
            }
        }
    }
}

/// A message or framing refused while a body streams, in grpc-go's words.
fn limit_status(limit: &LimitError<std::convert::Infallible>, what: &str) -> Status {
    match limit {
        LimitError::TooLarge { size, limit } => Status::resource_exhausted(format!(
            "grpc: received message larger than max ({size} vs. {limit}) (the proxy read the {what})"
        )),
        LimitError::BadFlag(flag) => Status::internal(format!(
            "grpc: received unexpected payload format {flag} (the proxy read the {what})"
        )),
        LimitError::Truncated | LimitError::Inner(_) => {
            Status::internal(format!("unexpected EOF (the proxy read the {what})"))
        }
    }
}

/// The Go protobuf runtime's words for what `WireError` found.
fn go_proto_error(e: &WireError) -> &'static str {
    match e {
        WireError::InvalidUtf8 { .. } => "string field contains invalid UTF-8",
        _ => "proto: cannot parse invalid wire-format data",
    }
}

fn stream_status(e: &StreamError, when: &str) -> Status {
    let h2 = match e {
        // The client's own request stream failed (it reset or went away).
        StreamError::Request(_) => return Status::cancelled(e.to_string()),
        StreamError::Upstream(h2) => h2,
    };
    let Some(reason) = h2.reason() else {
        return Status::unavailable(format!("upstream connection failed {when}: {h2}"));
    };
    match reason {
        h2::Reason::REFUSED_STREAM => Status::unavailable(format!(
            "upstream refused the stream {when} (REFUSED_STREAM; the call was not processed)"
        )),
        h2::Reason::CANCEL if h2.is_remote() => {
            Status::cancelled(format!("upstream cancelled the call {when}"))
        }
        h2::Reason::ENHANCE_YOUR_CALM => Status::resource_exhausted(format!(
            "upstream refused the call {when}: ENHANCE_YOUR_CALM"
        )),
        other if h2.is_go_away() && h2.is_remote() => Status::unavailable(format!(
            "upstream closed the connection {when} (GOAWAY {other:?})"
        )),
        // The proxy's own HTTP/2 client found the upstream's frames invalid
        // and closed the connection (its GOAWAY).
        other if h2.is_go_away() => Status::unavailable(format!(
            "upstream broke the HTTP/2 protocol {when}: the proxy closed the connection ({other:?})"
        )),
        other => Status::unavailable(format!("upstream reset the stream {when} ({other:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_upstream_is_unavailable_and_says_so() {
        let err = ProxyError::Upstream(Arc::new(UpstreamError::Connect {
            address: "http://127.0.0.1:7233".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }));
        let s = status_of(&err);
        assert_eq!(s.code(), Code::Unavailable);
        assert!(
            s.message()
                .contains("upstream http://127.0.0.1:7233 unreachable"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn connect_timeout_is_unavailable() {
        let err = ProxyError::Upstream(Arc::new(UpstreamError::ConnectTimeout {
            address: "https://t:7233".into(),
            after: std::time::Duration::from_secs(5),
        }));
        let s = status_of(&err);
        assert_eq!(s.code(), Code::Unavailable);
        assert!(
            s.message().contains("no connection within 5s"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn denial_names_identity_method_and_namespace() {
        let err = ProxyError::Denied {
            credentials: Credentials::Certificate,
            who: "spiffe://example.org/ns/payments/sa/worker".into(),
            method: "StartWorkflowExecution".into(),
            namespace: Some("billing".into()),
            known_method: true,
            reason: Denied::NotGranted,
            via: None,
        };
        let s = status_of(&err);
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(
            s.message(),
            "permission denied: spiffe://example.org/ns/payments/sa/worker may not call StartWorkflowExecution on namespace \"billing\": no rule grants it"
        );
    }

    #[test]
    fn unknown_method_says_so() {
        let err = ProxyError::Denied {
            credentials: Credentials::Certificate,
            who: "cn".into(),
            method: "BrandNewRpc".into(),
            namespace: None,
            known_method: false,
            reason: Denied::UnknownMethod,
            via: None,
        };
        assert!(status_of(&err)
            .message()
            .contains("not in this proxy's Temporal method table"));
    }

    #[test]
    fn bad_tokens_are_unauthenticated_with_the_reason_and_denials_name_the_subject() {
        let expired =
            ProxyError::BearerToken(crate::token::TokenError::Expired { exp: 1_796_119_200 });
        let s = status_of(&expired);
        assert_eq!(s.code(), Code::Unauthenticated);
        assert_eq!(
            s.message(),
            "invalid bearer token: token expired at 2026-12-01T10:00:00Z"
        );
        assert_eq!(expired.kind().label(), "expired");
        let none = status_of(&ProxyError::NoCredentials);
        assert_eq!(none.code(), Code::Unauthenticated);
        assert!(
            none.message().contains("no bearer token"),
            "{}",
            none.message()
        );
        assert_eq!(ProxyError::NoCredentials.kind().label(), "no_credentials");
        let denied = ProxyError::Denied {
            credentials: Credentials::Token,
            who: "token sub \"system:serviceaccount:payments:worker\" of issuer \"cluster\"".into(),
            method: "DescribeNamespace".into(),
            namespace: Some("billing".into()),
            known_method: true,
            reason: Denied::NoMatchingRule,
            via: None,
        };
        let s = status_of(&denied);
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(
            s.message(),
            "permission denied: token sub \"system:serviceaccount:payments:worker\" of issuer \"cluster\" may not call DescribeNamespace on namespace \"billing\": no authorization rule matches this token"
        );
    }

    #[test]
    fn a_header_that_disagrees_is_invalid_argument() {
        let mismatch = ProxyError::NamespaceMismatch {
            header: "a".into(),
            body: "b".into(),
        };
        assert_eq!(status_of(&mismatch).code(), Code::InvalidArgument);
    }

    /// What the frontend (grpc-go) answers, word for word at the start:
    /// SDKs recognise a message that is too large only by this prefix.
    #[test]
    fn refusals_in_the_frontends_place_carry_its_code_and_words() {
        let message = |source| ProxyError::Message {
            method: "StartWorkflowExecution",
            source,
        };
        let cases = [
            (
                message(FrameError::TooLarge {
                    size: 5 << 20,
                    limit: 4 << 20,
                    decompressed: false,
                }),
                Code::ResourceExhausted,
                "grpc: received message larger than max (5242880 vs. 4194304)",
            ),
            (
                message(FrameError::TooLarge {
                    size: (4 << 20) + 1,
                    limit: 4 << 20,
                    decompressed: true,
                }),
                Code::ResourceExhausted,
                "grpc: received message after decompression larger than max 4194304",
            ),
            (
                ProxyError::Request(LimitError::TooLarge {
                    size: 5 << 20,
                    limit: 4 << 20,
                }),
                Code::ResourceExhausted,
                "grpc: received message larger than max (5242880 vs. 4194304)",
            ),
            (
                ProxyError::Response(LimitError::TooLarge {
                    size: 200 << 20,
                    limit: 128 << 20,
                }),
                Code::ResourceExhausted,
                "grpc: received message larger than max (209715200 vs. 134217728)",
            ),
            (
                message(FrameError::BadFlag(2)),
                Code::Internal,
                "grpc: received unexpected payload format 2",
            ),
            (
                message(FrameError::CompressedWithoutEncoding),
                Code::Internal,
                "grpc: compressed flag set with identity or empty encoding",
            ),
            (
                message(FrameError::UnsupportedEncoding("snappy".into())),
                Code::Unimplemented,
                "grpc: Decompressor is not installed for grpc-encoding \"snappy\"",
            ),
            (message(FrameError::Empty), Code::Unknown, "EOF"),
            (
                message(FrameError::Truncated {
                    expected: 10,
                    got: 4,
                }),
                Code::Unknown,
                "unexpected EOF",
            ),
            (
                ProxyError::Protobuf {
                    method: "DescribeNamespace",
                    source: WireError::Truncated,
                },
                Code::Internal,
                "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data",
            ),
            (
                ProxyError::Token(crate::temporal::nested::TokenError::Undecodable),
                Code::InvalidArgument,
                "Error deserializing task token.",
            ),
            (
                ProxyError::TokenNamespaceMismatch {
                    request: "payments".into(),
                    token: "billing".into(),
                },
                Code::InvalidArgument,
                "Operation requested with a token from a different namespace.",
            ),
        ];
        for (err, code, prefix) in cases {
            let status = status_of(&err);
            assert_eq!(status.code(), code, "{err}");
            assert!(
                status.message().starts_with(prefix),
                "{:?} does not start with {prefix:?}",
                status.message()
            );
        }
    }

    #[test]
    fn missing_status_is_internal() {
        assert_eq!(
            status_of(&ProxyError::UpstreamNoStatus).code(),
            Code::Internal
        );
    }
}
