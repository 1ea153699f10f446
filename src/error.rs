//! Every error the proxy answers a call with, and the one place where each
//! becomes a gRPC status ([`status_of`]). Layers raise their own error types;
//! this module decides what the client is told.

use std::sync::Arc;

use tonic::{Code, Status};

use crate::authz::Denied;
use crate::grpc::frame::FrameError;
use crate::grpc::scan::LimitError;
use crate::temporal::wire::WireError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No upstream connection could be had.
    #[error(transparent)]
    Upstream(Arc<UpstreamError>),
    /// The call was sent but failed before a response arrived.
    #[error("upstream call failed: {0}")]
    UpstreamCall(#[source] hyper::Error),
    /// The response stream failed part-way.
    #[error("upstream response failed: {0}")]
    UpstreamBody(#[source] hyper::Error),
    /// The upstream ended the response without a gRPC status.
    #[error("upstream ended the response without grpc-status")]
    UpstreamNoStatus,
    /// The policy does not allow this identity this call.
    #[error("{}", denied_message(who, method, namespace.as_deref(), *known_method, reason))]
    Denied {
        who: String,
        method: String,
        namespace: Option<String>,
        known_method: bool,
        reason: Denied,
    },
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
    /// The request's protobuf is malformed.
    #[error("{method} request is not valid protobuf: {source}")]
    Protobuf {
        method: &'static str,
        #[source]
        source: WireError,
    },
}

fn denied_message(
    who: &str,
    method: &str,
    namespace: Option<&str>,
    known_method: bool,
    reason: &Denied,
) -> String {
    let target = match namespace {
        Some(ns) => format!("{method} on namespace {ns:?}"),
        None => method.to_owned(),
    };
    let why = match reason {
        Denied::NoMatchingRule => "no authorization rule matches this certificate",
        Denied::NotGranted => "no rule grants it",
        Denied::UnknownMethod if !known_method => {
            "the method is not in this proxy's Temporal method table (a newer API?) and no rule names it"
        }
        Denied::UnknownMethod => "no rule names it",
    };
    format!("permission denied: {who} may not call {target}: {why}")
}

impl ProxyError {
    /// A short stable label (audit lines, metrics).
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::Upstream(_) => "upstream_unavailable",
            ProxyError::UpstreamCall(_) => "upstream_call_failed",
            ProxyError::UpstreamBody(_) => "upstream_response_failed",
            ProxyError::UpstreamNoStatus => "upstream_no_status",
            ProxyError::Denied { reason, .. } => reason.label(),
            ProxyError::NamespaceMismatch { .. } => "namespace_header_mismatch",
            ProxyError::Message {
                source: FrameError::TooLarge { .. },
                ..
            } => "message_too_large",
            ProxyError::Message { .. } => "bad_message",
            ProxyError::Protobuf { .. } => "malformed_protobuf",
            ProxyError::Response(LimitError::TooLarge { .. }) => "response_too_large",
            ProxyError::Response(_) => "bad_response_framing",
            ProxyError::Request(LimitError::TooLarge { .. }) => "message_too_large",
            ProxyError::Request(_) => "bad_message",
        }
    }
}

/// The gRPC status a client receives for `err`. Transport failures toward
/// the upstream are UNAVAILABLE (retryable, as gRPC itself reports them),
/// with a message that says where it failed.
pub fn status_of(err: &ProxyError) -> Status {
    match err {
        ProxyError::Upstream(e) => Status::unavailable(e.to_string()),
        ProxyError::UpstreamCall(e) => hyper_status(e, "before responding"),
        ProxyError::UpstreamBody(e) => hyper_status(e, "during the response"),
        ProxyError::UpstreamNoStatus => Status::new(
            Code::Internal,
            "upstream ended the response without grpc-status",
        ),
        ProxyError::Denied { .. } => Status::permission_denied(err.to_string()),
        ProxyError::NamespaceMismatch { .. } | ProxyError::Protobuf { .. } => {
            Status::invalid_argument(err.to_string())
        }
        ProxyError::Response(LimitError::TooLarge { .. })
        | ProxyError::Request(LimitError::TooLarge { .. }) => {
            Status::resource_exhausted(err.to_string())
        }
        ProxyError::Response(_) => Status::internal(err.to_string()),
        ProxyError::Request(_) => Status::invalid_argument(err.to_string()),
        ProxyError::Message { source, .. } => match source {
            FrameError::TooLarge { .. } => Status::resource_exhausted(err.to_string()),
            FrameError::Body(_) => Status::cancelled(err.to_string()),
            _ => Status::invalid_argument(err.to_string()),
        },
    }
}

fn hyper_status(e: &hyper::Error, when: &str) -> Status {
    if let Some(h2) = find_h2(e) {
        if let Some(reason) = h2.reason() {
            return match reason {
                h2::Reason::REFUSED_STREAM => Status::unavailable(format!(
                    "upstream refused the stream {when} (REFUSED_STREAM; the call was not processed)"
                )),
                h2::Reason::CANCEL if h2.is_remote() => {
                    Status::cancelled(format!("upstream cancelled the call {when}"))
                }
                h2::Reason::ENHANCE_YOUR_CALM => Status::resource_exhausted(format!(
                    "upstream refused the call {when}: ENHANCE_YOUR_CALM"
                )),
                other if h2.is_go_away() => Status::unavailable(format!(
                    "upstream closed the connection {when} (GOAWAY {other:?})"
                )),
                other => Status::unavailable(format!("upstream reset the stream {when} ({other:?})")),
            };
        }
    }
    if e.is_user() {
        // The client's own request stream failed (it reset or went away).
        return Status::cancelled(format!("client request stream failed: {e}"));
    }
    Status::unavailable(format!("upstream connection failed {when}: {e}"))
}

fn find_h2(e: &hyper::Error) -> Option<&h2::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = s.source();
    }
    None
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
            who: "spiffe://example.org/ns/payments/sa/worker".into(),
            method: "StartWorkflowExecution".into(),
            namespace: Some("billing".into()),
            known_method: true,
            reason: Denied::NotGranted,
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
            who: "cn".into(),
            method: "BrandNewRpc".into(),
            namespace: None,
            known_method: false,
            reason: Denied::UnknownMethod,
        };
        assert!(status_of(&err)
            .message()
            .contains("not in this proxy's Temporal method table"));
    }

    #[test]
    fn bad_requests_are_invalid_argument_and_oversize_is_resource_exhausted() {
        let mismatch = ProxyError::NamespaceMismatch {
            header: "a".into(),
            body: "b".into(),
        };
        assert_eq!(status_of(&mismatch).code(), Code::InvalidArgument);
        let malformed = ProxyError::Protobuf {
            method: "DescribeNamespace",
            source: WireError::Truncated,
        };
        assert_eq!(status_of(&malformed).code(), Code::InvalidArgument);
        let large = ProxyError::Message {
            method: "StartWorkflowExecution",
            source: FrameError::TooLarge {
                size: 5 << 20,
                limit: 4 << 20,
                decompressed: false,
            },
        };
        assert_eq!(status_of(&large).code(), Code::ResourceExhausted);
    }

    #[test]
    fn missing_status_is_internal() {
        assert_eq!(
            status_of(&ProxyError::UpstreamNoStatus).code(),
            Code::Internal
        );
    }
}
