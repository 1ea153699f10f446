//! The `:path` of a gRPC call, read as grpc-go reads it: `/` then the
//! service, `/`, the method. The proxy looks a method up, authorizes it and
//! forwards it only when the path is canonical (`/package.Service/Method`,
//! protobuf name characters only, no query); anything else is refused as
//! the frontend refuses a method it does not know, with grpc-go's own words
//! (UNIMPLEMENTED), so a path can never be looked up one way here and
//! resolved another way there. (Below the codec, `server::frame_guard` has already
//! turned every `:path` byte outside these characters into `~`, so that
//! `http`'s parsing cannot drop a `#fragment` or split off a `?query`.)

use crate::temporal::methods::{OPERATOR_SERVICE, WORKFLOW_SERVICE};

/// Services the Temporal frontend serves on its gRPC port (what decides
/// between grpc-go's "unknown service" and "unknown method" answers).
const FRONTEND_SERVICES: [&str; 3] = [WORKFLOW_SERVICE, OPERATOR_SERVICE, "grpc.health.v1.Health"];

/// A path the frontend would answer UNIMPLEMENTED; the message is grpc-go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("malformed method name: {0:?}")]
    Malformed(String),
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("unknown method {method} for service {service}")]
    UnknownMethod { service: String, method: String },
}

/// Checks the path (and query, which a gRPC path never has) of a call.
pub fn check(uri: &http::Uri) -> Result<(), PathError> {
    let path = uri.path();
    if uri.query().is_none() && is_canonical(path) {
        return Ok(());
    }
    let full = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    Err(refusal(&full))
}

fn is_canonical(path: &str) -> bool {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return false;
    };
    let name = |s: &str, dots: bool| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
    };
    name(service, true) && name(method, false)
}

/// grpc-go's answer to a path it cannot route (`Server.handleStream`).
fn refusal(full: &str) -> PathError {
    let trimmed = full.strip_prefix('/').unwrap_or(full);
    let Some((service, method)) = trimmed.rsplit_once('/') else {
        return PathError::Malformed(full.to_owned());
    };
    if FRONTEND_SERVICES.contains(&service) {
        PathError::UnknownMethod {
            service: service.to_owned(),
            method: method.to_owned(),
        }
    } else {
        PathError::UnknownService(service.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(path: &str) -> Result<(), PathError> {
        check(&path.parse::<http::Uri>().unwrap())
    }

    #[test]
    fn canonical_paths_pass() {
        for path in [
            "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo",
            "/grpc.health.v1.Health/Check",
            "/some.other.v1.Service/Method_2",
        ] {
            assert_eq!(checked(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn other_paths_get_grpc_gos_answers() {
        let ws = WORKFLOW_SERVICE;
        assert_eq!(
            checked(&format!("/{ws}/GetSystemInfo?x=1"))
                .unwrap_err()
                .to_string(),
            format!("unknown method GetSystemInfo?x=1 for service {ws}")
        );
        assert_eq!(
            checked(&format!("/{ws}/GetSystemInfo~frag"))
                .unwrap_err()
                .to_string(),
            format!("unknown method GetSystemInfo~frag for service {ws}")
        );
        assert_eq!(
            checked(&format!("/{ws}/StartWorkflowExecution/"))
                .unwrap_err()
                .to_string(),
            format!("unknown service {ws}/StartWorkflowExecution")
        );
        assert_eq!(
            checked(&format!("//{ws}/GetSystemInfo"))
                .unwrap_err()
                .to_string(),
            format!("unknown service /{ws}")
        );
        assert_eq!(
            checked("/").unwrap_err().to_string(),
            "malformed method name: \"/\""
        );
        assert_eq!(
            checked(&format!("/{ws}/")).unwrap_err().to_string(),
            format!("unknown method  for service {ws}")
        );
    }
}
