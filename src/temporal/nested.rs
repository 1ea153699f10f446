//! What a request acts on besides the namespace field the method table
//! names: namespaces named inside it, and the task token.
//!
//! - A workflow task completion (`RespondWorkflowTaskCompleted`) carries
//!   commands, three of which name a namespace of their own: start a child
//!   workflow, signal or cancel an external workflow. The frontend refuses
//!   them unless `system.enableCrossNamespaceCommands` is on; the proxy
//!   authorizes each as the call it stands for (StartWorkflowExecution,
//!   SignalWorkflowExecution, RequestCancelWorkflowExecution) on its
//!   namespace, so isolation holds whatever the server's options.
//! - `ExecuteMultiOperation` carries whole StartWorkflowExecution and
//!   UpdateWorkflowExecution requests, each with its own namespace.
//! - A task token (worker responses) is an unsigned protobuf whose field 1
//!   is the id of the namespace the task belongs to; the frontend acts on
//!   that namespace, and checks it against the request's only while
//!   `frontend.enableTokenNamespaceEnforcement` is on.
//!
//! Field numbers are from the Temporal API definition
//! (`temporal/api/command/v1/message.proto`, `workflowservice/v1/
//! request_response.proto`, and the server's `token/v1/message.proto`).

use super::methods::{Method, Service};
use super::wire::{each_bytes_field, last_bytes_field, last_string_field, WireError};

/// A namespace named inside a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nested<'a> {
    pub namespace: &'a str,
    /// The WorkflowService call whose permission acting on it takes (its
    /// full path).
    pub acts_as: &'static str,
    /// What in the request names it, for messages (e.g. "a
    /// StartChildWorkflowExecution command").
    pub via: &'static str,
}

/// `RespondWorkflowTaskCompletedRequest.commands`.
const COMMANDS: u32 = 2;
/// `Command` attributes that name a namespace (their field 1), with the call
/// each stands for.
const NAMESPACED_COMMANDS: [(u32, &str, &str); 3] = [
    (
        9,
        "/temporal.api.workflowservice.v1.WorkflowService/RequestCancelWorkflowExecution",
        "a RequestCancelExternalWorkflowExecution command",
    ),
    (
        12,
        "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution",
        "a StartChildWorkflowExecution command",
    ),
    (
        13,
        "/temporal.api.workflowservice.v1.WorkflowService/SignalWorkflowExecution",
        "a SignalExternalWorkflowExecution command",
    ),
];
/// `ExecuteMultiOperationRequest.operations`, and the requests an operation
/// holds.
const OPERATIONS: u32 = 2;
const OPERATION_REQUESTS: [(u32, &str, &str); 2] = [
    (
        1,
        "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution",
        "a start_workflow operation",
    ),
    (
        2,
        "/temporal.api.workflowservice.v1.WorkflowService/UpdateWorkflowExecution",
        "an update_workflow operation",
    ),
];
/// The namespace field of every message above.
const NAMESPACE: u32 = 1;

/// Appends the non-empty namespaces named inside `payload`, a request of
/// `method` (an empty one means the request's own namespace).
pub fn nested_namespaces<'a>(
    method: &Method,
    payload: &'a [u8],
    out: &mut Vec<Nested<'a>>,
) -> Result<(), WireError> {
    let (outer, inner): (u32, &[(u32, &'static str, &'static str)]) =
        match (method.service, method.name) {
            (Service::Workflow, "RespondWorkflowTaskCompleted") => (COMMANDS, &NAMESPACED_COMMANDS),
            (Service::Workflow, "ExecuteMultiOperation") => (OPERATIONS, &OPERATION_REQUESTS),
            _ => return Ok(()),
        };
    each_bytes_field(payload, outer, |item| {
        for &(field, acts_as, via) in inner {
            // Every occurrence, not only the last: a oneof repeated on the
            // wire is still something the request asked for.
            each_bytes_field(item, field, |attributes| {
                match last_string_field(attributes, NAMESPACE)? {
                    Some(ns) if !ns.is_empty() => out.push(Nested {
                        namespace: ns,
                        acts_as,
                        via,
                    }),
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// The field of `method`'s request that holds a task token, if it has one.
pub fn task_token_field(method: &Method) -> Option<u32> {
    if method.service != Service::Workflow {
        return None;
    }
    match method.name {
        "RespondWorkflowTaskCompleted"
        | "RespondWorkflowTaskFailed"
        | "RespondQueryTaskCompleted"
        | "RecordActivityTaskHeartbeat"
        | "RespondActivityTaskCompleted"
        | "RespondActivityTaskFailed"
        | "RespondActivityTaskCanceled" => Some(1),
        "RespondNexusTaskCompleted" | "RespondNexusTaskFailed" => Some(3),
        _ => None,
    }
}

/// Why a task token is refused; the messages are the frontend's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Task token not set on request.")]
    NotSet,
    #[error("Error deserializing task token.")]
    Undecodable,
    #[error("Namespace not set on request.")]
    NoNamespace,
}

/// The namespace id in the task token field `field` of `payload`.
pub fn token_namespace_id(payload: &[u8], field: u32) -> Result<&str, TokenError> {
    let token = match last_bytes_field(payload, field) {
        Ok(Some(token)) if !token.is_empty() => token,
        Ok(_) => return Err(TokenError::NotSet),
        // The request itself was read already; this cannot fail here.
        Err(_) => return Err(TokenError::Undecodable),
    };
    match last_string_field(token, NAMESPACE) {
        Ok(Some(id)) if !id.is_empty() => Ok(id),
        Ok(_) => Err(TokenError::NoNamespace),
        Err(_) => Err(TokenError::Undecodable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temporal::methods::{lookup, WORKFLOW_SERVICE};

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn len_field(field: u32, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(field) << 3 | 2, &mut out);
        varint(value.len() as u64, &mut out);
        out.extend_from_slice(value);
        out
    }

    fn method(name: &str) -> &'static Method {
        lookup(&format!("/{WORKFLOW_SERVICE}/{name}")).unwrap()
    }

    #[test]
    fn every_target_method_is_in_the_table() {
        for (_, name, _) in NAMESPACED_COMMANDS.iter().chain(&OPERATION_REQUESTS) {
            assert!(lookup(name).is_some(), "{name}");
        }
    }

    #[test]
    fn commands_naming_other_namespaces_are_found() {
        let child = len_field(12, &len_field(1, b"billing"));
        let signal = len_field(13, &[len_field(1, b"ops"), len_field(2, b"wf")].concat());
        let own = len_field(12, &len_field(2, b"same-namespace-child"));
        let timer = len_field(3, &len_field(1, b"t1"));
        let mut request = Vec::new();
        for command in [&child, &signal, &own, &timer] {
            // Command { command_type = 1 (varint), attributes }.
            request.extend(len_field(
                COMMANDS,
                &[vec![0x08, 0x01], command.clone()].concat(),
            ));
        }
        request.extend(len_field(9, b"payments"));
        let mut out = Vec::new();
        nested_namespaces(method("RespondWorkflowTaskCompleted"), &request, &mut out).unwrap();
        let found: Vec<(&str, &str)> = out
            .iter()
            .map(|n| (n.namespace, lookup(n.acts_as).unwrap().name))
            .collect();
        assert_eq!(
            found,
            [
                ("billing", "StartWorkflowExecution"),
                ("ops", "SignalWorkflowExecution")
            ]
        );
    }

    #[test]
    fn multi_operation_requests_are_found() {
        let start = len_field(1, &len_field(1, b"billing"));
        let update = len_field(2, &len_field(1, b"payments"));
        let request = [
            len_field(1, b"payments"),
            len_field(OPERATIONS, &start),
            len_field(OPERATIONS, &update),
        ]
        .concat();
        let mut out = Vec::new();
        nested_namespaces(method("ExecuteMultiOperation"), &request, &mut out).unwrap();
        let found: Vec<(&str, &str)> = out
            .iter()
            .map(|n| (n.namespace, lookup(n.acts_as).unwrap().name))
            .collect();
        assert_eq!(
            found,
            [
                ("billing", "StartWorkflowExecution"),
                ("payments", "UpdateWorkflowExecution")
            ]
        );
    }

    #[test]
    fn other_methods_name_nothing_nested() {
        let request = len_field(2, &len_field(12, &len_field(1, b"billing")));
        let mut out = Vec::new();
        nested_namespaces(method("StartWorkflowExecution"), &request, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn task_tokens_give_their_namespace_id_or_the_frontends_refusal() {
        let token = [len_field(1, b"9f0c-id"), len_field(2, b"wf-1")].concat();
        let request = [len_field(1, &token), len_field(4, b"payments")].concat();
        assert_eq!(token_namespace_id(&request, 1), Ok("9f0c-id"));
        assert_eq!(
            token_namespace_id(&len_field(4, b"payments"), 1),
            Err(TokenError::NotSet)
        );
        assert_eq!(
            token_namespace_id(&len_field(1, b"\xff\xff"), 1),
            Err(TokenError::Undecodable)
        );
        assert_eq!(
            token_namespace_id(&len_field(1, &len_field(2, b"wf")), 1),
            Err(TokenError::NoNamespace)
        );
        assert_eq!(
            task_token_field(method("RespondActivityTaskCompleted")),
            Some(1)
        );
        assert_eq!(task_token_field(method("RespondNexusTaskFailed")), Some(3));
        assert_eq!(
            task_token_field(method("RespondActivityTaskCompletedById")),
            None
        );
    }
}
