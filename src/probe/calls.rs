//! The access check, per namespace: the calls an SDK client of that
//! namespace makes first. GetSystemInfo (every SDK calls it on connect,
//! with the client's `temporal-namespace` header) and DescribeNamespace
//! (which a worker's role covers, and the proxy authorizes by the namespace
//! in the request). A refusal is reported with its status and message, such
//! as the proxy's PERMISSION_DENIED naming the identity and the rule that
//! is missing.

use std::time::Duration;

use serde::Serialize;

use super::conn::Answer;
use super::{pb, CallReport, Check, Details, Link, Outcome, DESCRIBE_NAMESPACE, GET_SYSTEM_INFO};
use crate::temporal::wire::{last_bytes_field, last_string_field};

#[derive(Debug, Serialize)]
pub struct AccessDetails {
    pub get_system_info: CallReport,
    pub describe_namespace: CallReport,
    /// GetSystemInfoResponse.server_version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
}

fn server_version(answer: &Answer) -> Option<String> {
    let message = answer.message.as_ref()?;
    last_string_field(message, 1)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// DescribeNamespaceResponse.namespace_info(1).name(1).
fn described_name(answer: &Answer) -> Option<String> {
    let message = answer.message.as_ref()?;
    let info = last_bytes_field(message, 1).ok()??;
    last_string_field(info, 1).ok()?.map(str::to_owned)
}

pub async fn check(link: &mut Link<'_>, namespace: &str, timeout: Duration) -> Check {
    let header = [("temporal-namespace", namespace.to_owned())];
    let info = link
        .unary(GET_SYSTEM_INFO, &pb::get_system_info(), &header, timeout)
        .await;
    let describe = link
        .unary(
            DESCRIBE_NAMESPACE,
            &pb::describe_namespace(namespace),
            &header,
            timeout,
        )
        .await;
    let version = server_version(&info);
    let mut refused = Vec::new();
    if !info.is_ok() {
        refused.push(format!("GetSystemInfo refused: {}", info.summary()));
    }
    if !describe.is_ok() {
        refused.push(format!("DescribeNamespace refused: {}", describe.summary()));
    }
    let (outcome, reason) = if refused.is_empty() {
        let server = version
            .as_deref()
            .map(|v| format!(" (server {v})"))
            .unwrap_or_default();
        let mut reason = format!("GetSystemInfo OK{server}, DescribeNamespace OK");
        match described_name(&describe) {
            Some(name) if name != namespace => {
                reason.push_str(&format!(" but it describes namespace {name:?}"));
                (Outcome::Warn, reason)
            }
            _ => (Outcome::Pass, reason),
        }
    } else {
        (Outcome::Fail, refused.join("; "))
    };
    Check::new("access", outcome, reason)
        .namespace(namespace)
        .details(Details::Access(AccessDetails {
            get_system_info: CallReport::from(&info),
            describe_namespace: CallReport::from(&describe),
            server_version: version,
        }))
}
