//! Every error the proxy answers a call with, and the one place where each
//! becomes a gRPC status ([`status_of`]). Layers raise their own error types;
//! this module decides what the client is told.

use std::sync::Arc;

use tonic::{Code, Status};

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
    fn missing_status_is_internal() {
        assert_eq!(
            status_of(&ProxyError::UpstreamNoStatus).code(),
            Code::Internal
        );
    }
}
