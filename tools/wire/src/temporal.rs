//! The Temporal (and gRPC health) messages the tests and tools use, encoded
//! by hand. Field numbers checked against
//! temporal/api/workflowservice/v1/request_response.proto,
//! temporal/api/common/v1/message.proto and
//! temporal/api/taskqueue/v1/message.proto (the descriptors bundled with
//! temporalio 1.35), and grpc/health/v1/health.proto.

use crate::pb::{concat, field_bytes, field_message, field_string, field_varint, get_bytes};
use crate::pb::{decode, get_path_string, get_string, get_varint, Value};

/// Full method paths.
pub mod path {
    pub const WORKFLOW_SERVICE: &str = "/temporal.api.workflowservice.v1.WorkflowService/";
    pub const GET_SYSTEM_INFO: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
    pub const DESCRIBE_NAMESPACE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace";
    pub const LIST_NAMESPACES: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/ListNamespaces";
    pub const LIST_WORKFLOW_EXECUTIONS: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/ListWorkflowExecutions";
    pub const START_WORKFLOW_EXECUTION: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
    pub const POLL_WORKFLOW_TASK_QUEUE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue";
    pub const POLL_ACTIVITY_TASK_QUEUE: &str =
        "/temporal.api.workflowservice.v1.WorkflowService/PollActivityTaskQueue";
    pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
    /// Not a Temporal method: the fake frontend's echo of raw messages.
    pub const ECHO: &str = "/test.Echo/Echo";
    /// The fake frontend's bulk response: the request's message is a 4-byte
    /// big-endian size, the answer one message of that many bytes.
    pub const DOWNLOAD: &str = "/test.Bulk/Download";
}

// --- Requests ----------------------------------------------------------------

/// GetSystemInfoRequest: no fields.
pub fn get_system_info() -> Vec<u8> {
    Vec::new()
}

/// DescribeNamespaceRequest { namespace = 1 }.
pub fn describe_namespace(ns: &str) -> Vec<u8> {
    field_string(1, ns)
}

/// ListNamespacesRequest { page_size = 1 } (all defaults: empty).
pub fn list_namespaces() -> Vec<u8> {
    Vec::new()
}

/// ListWorkflowExecutionsRequest { namespace = 1, page_size = 2, next_page_token = 3, query = 4 }.
pub fn list_workflow_executions(ns: &str) -> Vec<u8> {
    field_string(1, ns)
}

/// TaskQueue { name = 1, kind = 2 } with kind TASK_QUEUE_KIND_NORMAL (1).
pub fn task_queue(name: &str) -> Vec<u8> {
    concat(&[field_string(1, name), field_varint(2, 1)])
}

/// google.protobuf.Duration { seconds = 1 }.
pub fn duration_secs(secs: u64) -> Vec<u8> {
    field_varint(1, secs)
}

/// Payloads { payloads = 1 } of Payload { metadata = 1, data = 2 }, each
/// with its data only.
pub fn payloads(data: &[&[u8]]) -> Vec<u8> {
    let each: Vec<Vec<u8>> = data
        .iter()
        .map(|d| field_message(1, &field_bytes(2, d)))
        .collect();
    concat(&each)
}

/// StartWorkflowExecutionRequest { namespace = 1, workflow_id = 2,
/// workflow_type = 3 (WorkflowType { name = 1 }), task_queue = 4, input = 5,
/// workflow_execution_timeout = 6 }, with one input payload.
pub fn start_workflow_execution(
    ns: &str,
    workflow_id: &str,
    workflow_type: &str,
    task_queue_name: &str,
    input: &[u8],
    execution_timeout_secs: u64,
) -> Vec<u8> {
    concat(&[
        field_string(1, ns),
        field_string(2, workflow_id),
        field_message(3, &field_string(1, workflow_type)),
        field_message(4, &task_queue(task_queue_name)),
        field_message(5, &payloads(&[input])),
        field_message(6, &duration_secs(execution_timeout_secs)),
    ])
}

/// PollWorkflowTaskQueueRequest { namespace = 1, task_queue = 2, identity = 3 }.
pub fn poll_workflow_task_queue(ns: &str, task_queue_name: &str, identity: &str) -> Vec<u8> {
    concat(&[
        field_string(1, ns),
        field_message(2, &task_queue(task_queue_name)),
        field_string(3, identity),
    ])
}

/// PollActivityTaskQueueRequest { namespace = 1, task_queue = 2, identity = 3 }.
pub fn poll_activity_task_queue(ns: &str, task_queue_name: &str, identity: &str) -> Vec<u8> {
    poll_workflow_task_queue(ns, task_queue_name, identity)
}

/// grpc.health.v1.HealthCheckRequest { service = 1 }.
pub fn health_check(service: &str) -> Vec<u8> {
    field_string(1, service)
}

// --- Responses: encoding (the fake frontend) ---------------------------------

/// GetSystemInfoResponse { server_version = 1, capabilities = 2 } with
/// empty capabilities.
pub fn get_system_info_response(server_version: &str) -> Vec<u8> {
    concat(&[field_string(1, server_version), field_message(2, &[])])
}

/// StartWorkflowExecutionResponse { run_id = 1 }.
pub fn start_workflow_execution_response(run_id: &str) -> Vec<u8> {
    field_string(1, run_id)
}

/// grpc.health.v1.HealthCheckResponse.ServingStatus SERVING.
pub const SERVING: u64 = 1;

/// grpc.health.v1.HealthCheckResponse { status = 1 }.
pub fn health_check_response(status: u64) -> Vec<u8> {
    field_varint(1, status)
}

// --- Responses: decoding (the tests) -----------------------------------------

/// GetSystemInfoResponse.server_version (field 1).
pub fn server_version(resp: &[u8]) -> Option<String> {
    get_string(resp, 1)
}

/// DescribeNamespaceResponse.namespace_info(1).name(1).
pub fn namespace_name(resp: &[u8]) -> Option<String> {
    get_path_string(resp, &[1, 1])
}

/// PollWorkflowTaskQueueResponse / PollActivityTaskQueueResponse
/// task_token (field 1); empty for an empty (timed-out) poll.
pub fn task_token(resp: &[u8]) -> Vec<u8> {
    get_bytes(resp, 1).unwrap_or_default()
}

/// ListNamespacesResponse.namespaces(1)[].namespace_info(1).name(1).
pub fn namespace_names(resp: &[u8]) -> Vec<String> {
    decode(resp)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, v)| match v {
            Value::Bytes(b) if n == 1 => get_path_string(&b, &[1, 1]),
            _ => None,
        })
        .collect()
}

/// grpc.health.v1.HealthCheckResponse.status (1 = SERVING); an empty
/// response is status 0 (UNKNOWN), protobuf's default.
pub fn health_status(resp: &[u8]) -> Option<u64> {
    Some(get_varint(resp, 1).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(msg: &[u8]) -> Vec<(u32, Vec<u8>)> {
        decode(msg)
            .unwrap()
            .into_iter()
            .map(|(n, v)| match v {
                Value::Bytes(b) => (n, b),
                other => panic!("field {n} is {other:?}"),
            })
            .collect()
    }

    #[test]
    fn start_workflow_request_has_the_fields_and_payload() {
        let msg = start_workflow_execution("ns1", "wf-1", "Type", "queue", &[b'x'; 3000], 60);
        let fields = fields(&msg);
        let numbers: Vec<u32> = fields.iter().map(|f| f.0).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
        assert_eq!(fields[0].1, b"ns1");
        assert_eq!(fields[1].1, b"wf-1");
        assert_eq!(get_string(&fields[2].1, 1).as_deref(), Some("Type"));
        assert_eq!(get_string(&fields[3].1, 1).as_deref(), Some("queue"));
        assert_eq!(
            get_varint(&fields[3].1, 2),
            Some(1),
            "TASK_QUEUE_KIND_NORMAL"
        );
        // input: Payloads{1: Payload{2: data}}
        let payload = get_bytes(&fields[4].1, 1).unwrap();
        assert_eq!(get_bytes(&payload, 2).unwrap().len(), 3000);
        assert_eq!(get_varint(&fields[5].1, 1), Some(60));
    }

    #[test]
    fn polls_name_the_namespace_queue_and_identity() {
        let msg = poll_workflow_task_queue("ns", "q", "me");
        assert_eq!(get_string(&msg, 1).as_deref(), Some("ns"));
        assert_eq!(get_path_string(&msg, &[2, 1]).as_deref(), Some("q"));
        assert_eq!(get_string(&msg, 3).as_deref(), Some("me"));
        assert_eq!(poll_activity_task_queue("ns", "q", "me"), msg);
    }

    #[test]
    fn responses_decode_back() {
        let info = get_system_info_response("1.32.0-fake");
        assert_eq!(info, b"\x0a\x0b1.32.0-fake\x12\x00");
        assert_eq!(server_version(&info).as_deref(), Some("1.32.0-fake"));
        let serving = health_check_response(SERVING);
        assert_eq!(serving, [0x08, 0x01]);
        assert_eq!(health_status(&serving), Some(SERVING));
        assert_eq!(health_status(&[]), Some(0));
        let started = start_workflow_execution_response("run");
        assert_eq!(get_string(&started, 1).as_deref(), Some("run"));
        // DescribeNamespaceResponse{namespace_info{name}}, and a list of two.
        let described = field_message(1, &field_string(1, "default"));
        assert_eq!(namespace_name(&described).as_deref(), Some("default"));
        let listed = concat(&[
            field_message(1, &described),
            field_message(1, &field_message(1, &field_string(1, "other"))),
        ]);
        assert_eq!(namespace_names(&listed), ["default", "other"]);
        assert_eq!(task_token(&field_bytes(1, b"tok")), b"tok");
        assert!(task_token(&[]).is_empty());
    }
}
