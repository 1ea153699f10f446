//! Protobuf encoders for the Temporal requests the conformance suite sends,
//! and the few decoders its effect checks need. Field numbers from
//! temporal/api/workflowservice/v1/request_response.proto,
//! temporal/api/command/v1/message.proto and
//! temporal/api/enums/v1/command_type.proto (temporalio/api).

use crate::support::grpc::pb::{
    self, concat, field_bytes, field_message, field_string, field_varint,
};

pub const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

pub fn method(name: &str) -> String {
    format!("{WS}/{name}")
}

/// google.protobuf.Duration { seconds = 1 }.
pub use temporal_mtls_proxy_testwire::temporal::duration_secs;

/// temporal.api.common.v1.WorkflowExecution { workflow_id = 1, run_id = 2 }.
pub fn execution(workflow_id: &str) -> Vec<u8> {
    field_string(1, workflow_id)
}

/// StartWorkflowExecutionRequest without its namespace (field 1):
/// workflow_id = 2, workflow_type = 3, task_queue = 4, identity = 9,
/// request_id = 10.
pub fn start_workflow_rest(workflow_id: &str, task_queue: &str) -> Vec<u8> {
    concat(&[
        field_string(2, workflow_id),
        field_message(3, &field_string(1, "ConformanceWorkflow")),
        field_message(4, &pb::task_queue(task_queue)),
        field_string(9, "conformance"),
        field_string(10, &format!("req-{workflow_id}")),
    ])
}

/// StartWorkflowExecutionRequest { namespace = 1, ... }.
pub fn start_workflow(ns: &str, workflow_id: &str, task_queue: &str) -> Vec<u8> {
    concat(&[
        field_string(1, ns),
        start_workflow_rest(workflow_id, task_queue),
    ])
}

/// SignalWorkflowExecutionRequest { namespace = 1, workflow_execution = 2,
/// signal_name = 3, identity = 5, request_id = 6 }.
pub fn signal_workflow(ns: &str, workflow_id: &str, signal: &str) -> Vec<u8> {
    concat(&[
        field_string(1, ns),
        field_message(2, &execution(workflow_id)),
        field_string(3, signal),
        field_string(5, "conformance"),
        field_string(6, &format!("req-{signal}")),
    ])
}

/// DescribeWorkflowExecutionRequest { namespace = 1, execution = 2 }.
pub fn describe_workflow(ns: &str, workflow_id: &str) -> Vec<u8> {
    concat(&[
        field_string(1, ns),
        field_message(2, &execution(workflow_id)),
    ])
}

/// GetWorkflowExecutionHistoryRequest { namespace = 1, execution = 2,
/// maximum_page_size = 3 }.
pub fn get_history(ns: &str, workflow_id: &str) -> Vec<u8> {
    concat(&[
        field_string(1, ns),
        field_message(2, &execution(workflow_id)),
        field_varint(3, 1000),
    ])
}

/// PollWorkflowTaskQueueRequest / PollActivityTaskQueueRequest.
pub fn poll(ns: &str, task_queue: &str) -> Vec<u8> {
    pb::poll_workflow_task_queue(ns, task_queue, "conformance")
}

/// RespondActivityTaskCompletedRequest { task_token = 1, identity = 3,
/// namespace = 4 }.
pub fn respond_activity_completed(token: &[u8], ns: &str) -> Vec<u8> {
    concat(&[
        field_bytes(1, token),
        field_string(3, "conformance"),
        field_string(4, ns),
    ])
}

/// RespondWorkflowTaskCompletedRequest { task_token = 1, commands = 2,
/// identity = 3, namespace = 9 }.
pub fn respond_workflow_task_completed(token: &[u8], commands: &[Vec<u8>], ns: &str) -> Vec<u8> {
    let mut parts = vec![field_bytes(1, token)];
    for c in commands {
        parts.push(field_message(2, c));
    }
    parts.push(field_string(3, "conformance"));
    parts.push(field_string(9, ns));
    concat(&parts)
}

/// Command types (temporal.api.enums.v1.CommandType).
pub const CMD_SCHEDULE_ACTIVITY_TASK: u64 = 1;
pub const CMD_COMPLETE_WORKFLOW_EXECUTION: u64 = 4;
pub const CMD_REQUEST_CANCEL_EXTERNAL: u64 = 8;
pub const CMD_START_CHILD_WORKFLOW: u64 = 11;
pub const CMD_SIGNAL_EXTERNAL: u64 = 12;

/// Command { command_type = 1, <attributes> = `attr_field` }.
fn command(command_type: u64, attr_field: u32, attrs: &[u8]) -> Vec<u8> {
    concat(&[
        field_varint(1, command_type),
        field_message(attr_field, attrs),
    ])
}

/// ScheduleActivityTaskCommandAttributes { activity_id = 1, activity_type =
/// 2, task_queue = 4, schedule_to_close_timeout = 7, start_to_close_timeout
/// = 9 } (field 2 of Command).
pub fn cmd_schedule_activity(activity_id: &str, task_queue: &str) -> Vec<u8> {
    let attrs = concat(&[
        field_string(1, activity_id),
        field_message(2, &field_string(1, "ConformanceActivity")),
        field_message(4, &pb::task_queue(task_queue)),
        field_message(7, &duration_secs(600)),
        field_message(9, &duration_secs(600)),
    ]);
    command(CMD_SCHEDULE_ACTIVITY_TASK, 2, &attrs)
}

/// CompleteWorkflowExecutionCommandAttributes {} (field 4 of Command).
pub fn cmd_complete_workflow() -> Vec<u8> {
    command(CMD_COMPLETE_WORKFLOW_EXECUTION, 4, &[])
}

/// StartChildWorkflowExecutionCommandAttributes { namespace = 1,
/// workflow_id = 2, workflow_type = 3, task_queue = 4 } (field 12).
pub fn cmd_start_child(ns: &str, workflow_id: &str, task_queue: &str) -> Vec<u8> {
    let attrs = concat(&[
        field_string(1, ns),
        field_string(2, workflow_id),
        field_message(3, &field_string(1, "ConformanceChild")),
        field_message(4, &pb::task_queue(task_queue)),
    ]);
    command(CMD_START_CHILD_WORKFLOW, 12, &attrs)
}

/// SignalExternalWorkflowExecutionCommandAttributes { namespace = 1,
/// execution = 2, signal_name = 3 } (field 13).
pub fn cmd_signal_external(ns: &str, workflow_id: &str, signal: &str) -> Vec<u8> {
    let attrs = concat(&[
        field_string(1, ns),
        field_message(2, &execution(workflow_id)),
        field_string(3, signal),
    ]);
    command(CMD_SIGNAL_EXTERNAL, 13, &attrs)
}

/// RequestCancelExternalWorkflowExecutionCommandAttributes { namespace = 1,
/// workflow_id = 2, reason = 6 } (field 9).
pub fn cmd_cancel_external(ns: &str, workflow_id: &str) -> Vec<u8> {
    let attrs = concat(&[
        field_string(1, ns),
        field_string(2, workflow_id),
        field_string(6, "conformance"),
    ]);
    command(CMD_REQUEST_CANCEL_EXTERNAL, 9, &attrs)
}

/// ExecuteMultiOperationRequest { namespace = 1, operations = 2 } with a
/// start (Operation.start_workflow = 1) and an update (Operation.update_workflow
/// = 2: UpdateWorkflowExecutionRequest { namespace = 1, workflow_execution =
/// 2, wait_policy = 4, request = 5 { meta = 1 { update_id = 1 }, input = 2 {
/// name = 2 } } }).
pub fn execute_multi_operation(
    outer_ns: &str,
    inner_ns: &str,
    workflow_id: &str,
    task_queue: &str,
) -> Vec<u8> {
    let start = start_workflow(inner_ns, workflow_id, task_queue);
    let update = concat(&[
        field_string(1, inner_ns),
        field_message(2, &execution(workflow_id)),
        // UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED = 2
        field_message(4, &field_varint(1, 2)),
        field_message(
            5,
            &concat(&[
                field_message(1, &field_string(1, &format!("upd-{workflow_id}"))),
                field_message(2, &field_string(2, "conformance-update")),
            ]),
        ),
    ]);
    concat(&[
        field_string(1, outer_ns),
        field_message(2, &field_message(1, &start)),
        field_message(2, &field_message(2, &update)),
    ])
}

/// Event types (temporal.api.enums.v1.EventType).
pub const EV_WORKFLOW_TASK_COMPLETED: u64 = 7;
pub const EV_ACTIVITY_TASK_COMPLETED: u64 = 12;
pub const EV_WORKFLOW_EXECUTION_CANCEL_REQUESTED: u64 = 20;

/// GetWorkflowExecutionHistoryResponse.history(1).events(1)[].event_type(3).
pub fn history_event_types(resp: &[u8]) -> Vec<u64> {
    let Some(history) = pb::get_bytes(resp, 1) else {
        return Vec::new();
    };
    pb::decode(&history)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, v)| match v {
            pb::Value::Bytes(ev) if n == 1 => pb::get_varint(&ev, 3),
            _ => None,
        })
        .collect()
}

/// Whether `needle` occurs in `hay` (signal names in raw history bytes).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
