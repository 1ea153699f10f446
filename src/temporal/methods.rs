//! The Temporal frontend's method table: every RPC of `WorkflowService` and
//! `OperatorService`, with what the authorization layer needs to know about
//! it.
//!
//! For each method the table records:
//!
//! - `scope` and `access`: Temporal's own classification, taken row by row
//!   from the server's per-method metadata (`common/api/metadata.go` in
//!   temporalio/temporal). Temporal's default authorizer reads them this way:
//!   a `Cluster` method needs a system-level (cluster) role, a `Namespace`
//!   method a role on the request's namespace (or a system role); `Read`
//!   needs reader, `Write` writer, `Admin` admin, and roles are ordered
//!   reader < writer < admin.
//! - `worker`: the calls a worker makes. Temporal has a `worker` role, but its
//!   default authorizer grants it nothing of its own, so the set is derived
//!   here (see "The worker set" below).
//! - `namespace_field`: the protobuf field number of the request's top-level
//!   `string namespace`, from the API definition (`request_response.proto` of
//!   each service). It is 1 in most requests, but not all: task-token calls
//!   put it after the token and other fields (4, 6 or 9), and
//!   `Add/RemoveSearchAttributes` after the attribute list (2).
//!
//! # API version
//!
//! Checked against the Temporal API v1.63.5 (go.temporal.io/api v1.63.5,
//! temporalio/api commit 3ebdff42a9f07ac484b415fe8ff0b483b4ce3340; the
//! descriptors of both services are unchanged at temporalio/api commit
//! 5520164fddb4c7c97592007dda82030fc4dcea19, August 2026), which is the
//! version the Temporal server at commit 6805caea59e35d0611ed96be69641b8d86bff11c
//! (2026-08-21) builds with and whose `metadata.go` gave scope and access.
//! 123 `WorkflowService` RPCs and 12 `OperatorService` RPCs, all unary.
//! The Python SDK 1.35 descriptors agree on every name and field number.
//!
//! # Updating for a new Temporal release
//!
//! 1. Get the new API definition: `temporal/api/workflowservice/v1/service.proto`
//!    and `request_response.proto`, and the same two files under
//!    `temporal/api/operatorservice/v1/`, at the release's tag of
//!    temporalio/api (or the commit of `proto/api` in temporalio/api-go at
//!    the `go.temporal.io/api` version the server's `go.mod` names).
//! 2. List the `rpc` lines of both `service.proto` files and compare them
//!    with the rows below: add a row for every new RPC, delete the rows of
//!    removed ones. Keep each service's rows sorted by name (byte order) and
//!    the `Workflow` rows before the `Operator` rows.
//! 3. For every new or changed request message, find `string namespace = N;`
//!    at the top level of the message (not inside a nested message) and put
//!    `Some(N)` in the row, or `None` when there is none.
//! 4. Take `scope` and `access` for every row from `common/api/metadata.go`
//!    of the server release (`ScopeNamespace`/`ScopeCluster`,
//!    `AccessReadOnly`/`AccessWrite`/`AccessAdmin`), and check the rows that
//!    did not change too: the server sometimes reclassifies a method.
//! 5. Decide `worker` for new methods with the rule below.
//! 6. Update the counts, the list of non-1 namespace fields, the cluster list
//!    and the worker list in the tests, then run them:
//!    `cargo test --lib temporal::methods`.
//! 7. Update the version paragraph above.
//!
//! # The worker set
//!
//! A method is a worker call when an SDK worker (as opposed to a client or an
//! operator) makes it:
//!
//! - the task polls: `PollWorkflowTaskQueue`, `PollActivityTaskQueue`,
//!   `PollNexusTaskQueue`;
//! - the answers to polled tasks: `RespondWorkflowTaskCompleted`/`Failed`,
//!   `RespondQueryTaskCompleted`, `RecordActivityTaskHeartbeat`,
//!   `RespondActivityTaskCompleted`/`Failed`/`Canceled`, the `...ById`
//!   variants of these four (activities completed by workflow and activity
//!   id), `RespondNexusTaskCompleted`/`Failed`;
//! - worker lifecycle: `ShutdownWorker`, `ResetStickyTaskQueue` (both marked
//!   "worker API" in the API definition), `RecordWorkerHeartbeat`;
//! - the reads workers make: `GetWorkflowExecutionHistory` (history pages of
//!   a workflow task), `DescribeNamespace` (checked at worker start) and
//!   `GetSystemInfo` (every SDK calls it on connect; cluster scope).
//!
//! Not worker calls although their names suggest it: `FetchWorkerConfig`,
//! `UpdateWorkerConfig`, `DescribeWorker`, `ListWorkers`, `CountWorkers`
//! (operator tooling), `DescribeTaskQueue` and
//! `GetWorkflowExecutionHistoryReverse` (client reads no SDK worker makes).
//! Every worker call is `Read` or `Write`, never `Admin`.
//!
//! # What the table does not decide
//!
//! - A `Namespace` method may arrive with an empty namespace (e.g.
//!   `DeleteNamespace` by `namespace_id`); Temporal then checks only
//!   system-level roles.
//! - `AddSearchAttributes`/`RemoveSearchAttributes` are namespace-scoped in
//!   Temporal, but with Elasticsearch visibility the server ignores their
//!   namespace and changes the cluster-wide attributes.
//! - `RegisterNamespace` is namespace-scoped: its namespace is the one being
//!   created.
//! - Protobuf keeps the last occurrence of a repeated scalar field, so the
//!   namespace to authorize is the last `namespace_field` in the message.
//! - Temporal's authorizer lets every caller, whatever its roles, call
//!   `GetSystemInfo` (as it does `grpc.health.v1.Health/Check`, which is not
//!   part of this table).

/// The two Temporal gRPC services behind the frontend port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `temporal.api.workflowservice.v1.WorkflowService`.
    Workflow,
    /// `temporal.api.operatorservice.v1.OperatorService`.
    Operator,
}

/// What a method acts on (Temporal's `ScopeCluster` / `ScopeNamespace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole cluster: needs a system-level role.
    Cluster,
    /// One namespace, named in the request.
    Namespace,
}

/// The access class a method needs (Temporal's `AccessReadOnly`,
/// `AccessWrite`, `AccessAdmin`); ordered `Read < Write < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// Read-only: a reader may call it.
    Read,
    /// A normal write: needs a writer.
    Write,
    /// Administrative: needs an admin.
    Admin,
}

/// One RPC of the Temporal frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// The service the RPC belongs to.
    pub service: Service,
    /// The RPC's name, e.g. `StartWorkflowExecution`.
    pub name: &'static str,
    /// Cluster or namespace scope, as the Temporal server classifies it.
    pub scope: Scope,
    /// The access class, as the Temporal server classifies it.
    pub access: Access,
    /// A call a worker makes (polls, task responses, heartbeats, and the
    /// reads workers do).
    pub worker: bool,
    /// Protobuf field number of the request's namespace string, None when the
    /// request has none.
    pub namespace_field: Option<u32>,
}

/// The full gRPC name of `WorkflowService`.
pub const WORKFLOW_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";
/// The full gRPC name of `OperatorService`.
pub const OPERATOR_SERVICE: &str = "temporal.api.operatorservice.v1.OperatorService";

impl Service {
    /// The service's full gRPC name, e.g. [`WORKFLOW_SERVICE`].
    pub const fn grpc_name(self) -> &'static str {
        match self {
            Service::Workflow => WORKFLOW_SERVICE,
            Service::Operator => OPERATOR_SERVICE,
        }
    }

    /// The service's methods, sorted by name.
    pub fn methods(self) -> &'static [Method] {
        match self {
            Service::Workflow => WORKFLOW_METHODS,
            Service::Operator => OPERATOR_METHODS,
        }
    }
}

impl Method {
    /// The method's row in [`METHODS`], for tables indexed by method (the
    /// per-method metric series); `None` for a `Method` that is not one of
    /// the table's rows (a copy).
    pub fn index(&self) -> Option<usize> {
        let offset = (self as *const Method as usize).wrapping_sub(METHODS.as_ptr() as usize);
        let index = offset / std::mem::size_of::<Method>();
        METHODS
            .get(index)
            .filter(|row| std::ptr::eq(*row, self))
            .map(|_| index)
    }

    /// The HTTP/2 `:path` of the method:
    /// `/temporal.api.workflowservice.v1.WorkflowService/<Name>`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service.grpc_name(), self.name)
    }
}

/// Number of `WorkflowService` rows at the start of [`METHODS`]; the
/// `OperatorService` rows follow.
const WORKFLOW_COUNT: usize = 123;

// Split at compile time: a wrong count fails the build, not a call.
static WORKFLOW_METHODS: &[Method] = METHODS.split_at(WORKFLOW_COUNT).0;
static OPERATOR_METHODS: &[Method] = METHODS.split_at(WORKFLOW_COUNT).1;

const fn m(
    service: Service,
    name: &'static str,
    scope: Scope,
    access: Access,
    worker: bool,
    namespace_field: Option<u32>,
) -> Method {
    Method {
        service,
        name,
        scope,
        access,
        worker,
        namespace_field,
    }
}

/// Every RPC of both services: the `WorkflowService` rows first, then the
/// `OperatorService` rows, each group sorted by name.
///
/// Columns: service, name, scope, access, worker, namespace field number.
#[rustfmt::skip]
pub static METHODS: &[Method] = {
    use Access::{Admin, Read, Write};
    use Scope::{Cluster, Namespace};
    use Service::{Operator, Workflow};
    &[
        // WorkflowService (123 RPCs).
        m(Workflow, "CountActivityExecutions",                      Namespace, Read,  false, Some(1)),
        m(Workflow, "CountNexusOperationExecutions",                Namespace, Read,  false, Some(1)),
        m(Workflow, "CountSchedules",                               Namespace, Read,  false, Some(1)),
        m(Workflow, "CountWorkers",                                 Namespace, Read,  false, Some(1)),
        m(Workflow, "CountWorkflowExecutions",                      Namespace, Read,  false, Some(1)),
        m(Workflow, "CreateSchedule",                               Namespace, Write, false, Some(1)),
        m(Workflow, "CreateWorkerDeployment",                       Namespace, Write, false, Some(1)),
        m(Workflow, "CreateWorkerDeploymentVersion",                Namespace, Write, false, Some(1)),
        m(Workflow, "CreateWorkflowRule",                           Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteActivityExecution",                      Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteNexusOperationExecution",                Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteSchedule",                               Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteWorkerDeployment",                       Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteWorkerDeploymentVersion",                Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteWorkflowExecution",                      Namespace, Write, false, Some(1)),
        m(Workflow, "DeleteWorkflowRule",                           Namespace, Write, false, Some(1)),
        m(Workflow, "DeprecateNamespace",                           Namespace, Admin, false, Some(1)),
        m(Workflow, "DescribeActivityExecution",                    Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeBatchOperation",                       Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeDeployment",                           Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeNamespace",                            Namespace, Read,  true,  Some(1)),
        m(Workflow, "DescribeNexusOperationExecution",              Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeSchedule",                             Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeTaskQueue",                            Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeWorker",                               Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeWorkerDeployment",                     Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeWorkerDeploymentVersion",              Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeWorkflowExecution",                    Namespace, Read,  false, Some(1)),
        m(Workflow, "DescribeWorkflowRule",                         Namespace, Read,  false, Some(1)),
        m(Workflow, "ExecuteMultiOperation",                        Namespace, Write, false, Some(1)),
        m(Workflow, "FetchWorkerConfig",                            Namespace, Read,  false, Some(1)),
        m(Workflow, "GetClusterInfo",                               Cluster,   Read,  false, None),
        m(Workflow, "GetCurrentDeployment",                         Namespace, Read,  false, Some(1)),
        m(Workflow, "GetDeploymentReachability",                    Namespace, Read,  false, Some(1)),
        m(Workflow, "GetSearchAttributes",                          Cluster,   Read,  false, None),
        m(Workflow, "GetSystemInfo",                                Cluster,   Read,  true,  None),
        m(Workflow, "GetWorkerBuildIdCompatibility",                Namespace, Read,  false, Some(1)),
        m(Workflow, "GetWorkerTaskReachability",                    Namespace, Read,  false, Some(1)),
        m(Workflow, "GetWorkerVersioningRules",                     Namespace, Read,  false, Some(1)),
        m(Workflow, "GetWorkflowExecutionHistory",                  Namespace, Read,  true,  Some(1)),
        m(Workflow, "GetWorkflowExecutionHistoryReverse",           Namespace, Read,  false, Some(1)),
        m(Workflow, "ListActivityExecutions",                       Namespace, Read,  false, Some(1)),
        m(Workflow, "ListArchivedWorkflowExecutions",               Namespace, Read,  false, Some(1)),
        m(Workflow, "ListBatchOperations",                          Namespace, Read,  false, Some(1)),
        m(Workflow, "ListClosedWorkflowExecutions",                 Namespace, Read,  false, Some(1)),
        m(Workflow, "ListDeployments",                              Namespace, Read,  false, Some(1)),
        m(Workflow, "ListNamespaces",                               Cluster,   Read,  false, None),
        m(Workflow, "ListNexusOperationExecutions",                 Namespace, Read,  false, Some(1)),
        m(Workflow, "ListOpenWorkflowExecutions",                   Namespace, Read,  false, Some(1)),
        m(Workflow, "ListScheduleMatchingTimes",                    Namespace, Read,  false, Some(1)),
        m(Workflow, "ListSchedules",                                Namespace, Read,  false, Some(1)),
        m(Workflow, "ListTaskQueuePartitions",                      Namespace, Read,  false, Some(1)),
        m(Workflow, "ListWorkerDeployments",                        Namespace, Read,  false, Some(1)),
        m(Workflow, "ListWorkers",                                  Namespace, Read,  false, Some(1)),
        m(Workflow, "ListWorkflowExecutions",                       Namespace, Read,  false, Some(1)),
        m(Workflow, "ListWorkflowRules",                            Namespace, Read,  false, Some(1)),
        m(Workflow, "PatchSchedule",                                Namespace, Write, false, Some(1)),
        m(Workflow, "PauseActivity",                                Namespace, Write, false, Some(1)),
        m(Workflow, "PauseActivityExecution",                       Namespace, Write, false, Some(1)),
        m(Workflow, "PauseWorkflowExecution",                       Namespace, Write, false, Some(1)),
        m(Workflow, "PollActivityExecution",                        Namespace, Read,  false, Some(1)),
        m(Workflow, "PollActivityTaskQueue",                        Namespace, Write, true,  Some(1)),
        m(Workflow, "PollNexusOperationExecution",                  Namespace, Read,  false, Some(1)),
        m(Workflow, "PollNexusTaskQueue",                           Namespace, Write, true,  Some(1)),
        m(Workflow, "PollWorkflowExecutionTimeSkipping",            Namespace, Read,  false, Some(1)),
        m(Workflow, "PollWorkflowExecutionUpdate",                  Namespace, Read,  false, Some(1)),
        m(Workflow, "PollWorkflowTaskQueue",                        Namespace, Write, true,  Some(1)),
        m(Workflow, "QueryWorkflow",                                Namespace, Read,  false, Some(1)),
        m(Workflow, "RecordActivityTaskHeartbeat",                  Namespace, Write, true,  Some(4)),
        m(Workflow, "RecordActivityTaskHeartbeatById",              Namespace, Write, true,  Some(1)),
        m(Workflow, "RecordWorkerHeartbeat",                        Namespace, Write, true,  Some(1)),
        m(Workflow, "RegisterNamespace",                            Namespace, Admin, false, Some(1)),
        m(Workflow, "RequestCancelActivityExecution",               Namespace, Write, false, Some(1)),
        m(Workflow, "RequestCancelNexusOperationExecution",         Namespace, Write, false, Some(1)),
        m(Workflow, "RequestCancelWorkflowExecution",               Namespace, Write, false, Some(1)),
        m(Workflow, "ResetActivity",                                Namespace, Write, false, Some(1)),
        m(Workflow, "ResetActivityExecution",                       Namespace, Write, false, Some(1)),
        m(Workflow, "ResetStickyTaskQueue",                         Namespace, Write, true,  Some(1)),
        m(Workflow, "ResetWorkflowExecution",                       Namespace, Write, false, Some(1)),
        m(Workflow, "RespondActivityTaskCanceled",                  Namespace, Write, true,  Some(4)),
        m(Workflow, "RespondActivityTaskCanceledById",              Namespace, Write, true,  Some(1)),
        m(Workflow, "RespondActivityTaskCompleted",                 Namespace, Write, true,  Some(4)),
        m(Workflow, "RespondActivityTaskCompletedById",             Namespace, Write, true,  Some(1)),
        m(Workflow, "RespondActivityTaskFailed",                    Namespace, Write, true,  Some(4)),
        m(Workflow, "RespondActivityTaskFailedById",                Namespace, Write, true,  Some(1)),
        m(Workflow, "RespondNexusTaskCompleted",                    Namespace, Write, true,  Some(1)),
        m(Workflow, "RespondNexusTaskFailed",                       Namespace, Write, true,  Some(1)),
        m(Workflow, "RespondQueryTaskCompleted",                    Namespace, Write, true,  Some(6)),
        m(Workflow, "RespondWorkflowTaskCompleted",                 Namespace, Write, true,  Some(9)),
        m(Workflow, "RespondWorkflowTaskFailed",                    Namespace, Write, true,  Some(6)),
        m(Workflow, "ScanWorkflowExecutions",                       Namespace, Read,  false, Some(1)),
        m(Workflow, "SetCurrentDeployment",                         Namespace, Write, false, Some(1)),
        m(Workflow, "SetWorkerDeploymentCurrentVersion",            Namespace, Write, false, Some(1)),
        m(Workflow, "SetWorkerDeploymentManager",                   Namespace, Write, false, Some(1)),
        m(Workflow, "SetWorkerDeploymentRampingVersion",            Namespace, Write, false, Some(1)),
        m(Workflow, "ShutdownWorker",                               Namespace, Write, true,  Some(1)),
        m(Workflow, "SignalWithStartWorkflowExecution",             Namespace, Write, false, Some(1)),
        m(Workflow, "SignalWorkflowExecution",                      Namespace, Write, false, Some(1)),
        m(Workflow, "StartActivityExecution",                       Namespace, Write, false, Some(1)),
        m(Workflow, "StartBatchOperation",                          Namespace, Write, false, Some(1)),
        m(Workflow, "StartNexusOperationExecution",                 Namespace, Write, false, Some(1)),
        m(Workflow, "StartWorkflowExecution",                       Namespace, Write, false, Some(1)),
        m(Workflow, "StopBatchOperation",                           Namespace, Write, false, Some(1)),
        m(Workflow, "TerminateActivityExecution",                   Namespace, Write, false, Some(1)),
        m(Workflow, "TerminateNexusOperationExecution",             Namespace, Write, false, Some(1)),
        m(Workflow, "TerminateWorkflowExecution",                   Namespace, Write, false, Some(1)),
        m(Workflow, "TriggerWorkflowRule",                          Namespace, Write, false, Some(1)),
        m(Workflow, "UnpauseActivity",                              Namespace, Write, false, Some(1)),
        m(Workflow, "UnpauseActivityExecution",                     Namespace, Write, false, Some(1)),
        m(Workflow, "UnpauseWorkflowExecution",                     Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateActivityExecutionOptions",               Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateActivityOptions",                        Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateNamespace",                              Namespace, Admin, false, Some(1)),
        m(Workflow, "UpdateSchedule",                               Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateTaskQueueConfig",                        Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkerBuildIdCompatibility",             Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkerConfig",                           Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkerDeploymentVersionComputeConfig",   Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkerDeploymentVersionMetadata",        Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkerVersioningRules",                  Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkflowExecution",                      Namespace, Write, false, Some(1)),
        m(Workflow, "UpdateWorkflowExecutionOptions",               Namespace, Write, false, Some(1)),
        m(Workflow, "ValidateWorkerDeploymentVersionComputeConfig", Namespace, Read,  false, Some(1)),
        // OperatorService (12 RPCs).
        m(Operator, "AddOrUpdateRemoteCluster",                     Cluster,   Admin, false, None),
        m(Operator, "AddSearchAttributes",                          Namespace, Admin, false, Some(2)),
        m(Operator, "CreateNexusEndpoint",                          Cluster,   Admin, false, None),
        m(Operator, "DeleteNamespace",                              Namespace, Admin, false, Some(1)),
        m(Operator, "DeleteNexusEndpoint",                          Cluster,   Admin, false, None),
        m(Operator, "GetNexusEndpoint",                             Cluster,   Admin, false, None),
        m(Operator, "ListClusters",                                 Cluster,   Admin, false, None),
        m(Operator, "ListNexusEndpoints",                           Cluster,   Admin, false, None),
        m(Operator, "ListSearchAttributes",                         Namespace, Read,  false, Some(1)),
        m(Operator, "RemoveRemoteCluster",                          Cluster,   Admin, false, None),
        m(Operator, "RemoveSearchAttributes",                       Namespace, Admin, false, Some(2)),
        m(Operator, "UpdateNexusEndpoint",                          Cluster,   Admin, false, None),
    ]
};

/// Finds a method by its HTTP/2 `:path` (`/<service>/<Method>`).
///
/// Runs on every call: no allocation, a string comparison for the service
/// and a binary search over that service's sorted rows.
pub fn lookup(path: &str) -> Option<&'static Method> {
    let rest = path.strip_prefix('/')?;
    let (service, name) = rest.rsplit_once('/')?;
    let methods = if service == WORKFLOW_SERVICE {
        Service::Workflow.methods()
    } else if service == OPERATOR_SERVICE {
        Service::Operator.methods()
    } else {
        return None;
    };
    methods
        .binary_search_by(|method| method.name.cmp(name))
        .ok()
        .and_then(|index| methods.get(index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    // Number of `rpc` lines in `service.proto` of each service, Temporal API
    // v1.63.5 (temporalio/api 3ebdff42a9f0, unchanged at 5520164fddb4).
    const WORKFLOW_SERVICE_RPCS: usize = 123;
    const OPERATOR_SERVICE_RPCS: usize = 12;

    fn method(service: Service, name: &str) -> &'static Method {
        service
            .methods()
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{service:?}/{name} is not in the table"))
    }

    /// A set of methods as (service name, method name) pairs.
    type Names = BTreeSet<(&'static str, &'static str)>;

    fn names(filter: impl Fn(&Method) -> bool) -> Names {
        METHODS
            .iter()
            .filter(|m| filter(m))
            .map(|m| (m.service.grpc_name(), m.name))
            .collect()
    }

    fn set(workflow: &[&'static str], operator: &[&'static str]) -> Names {
        let w = workflow.iter().map(|n| (WORKFLOW_SERVICE, *n));
        let o = operator.iter().map(|n| (OPERATOR_SERVICE, *n));
        w.chain(o).collect()
    }

    #[test]
    fn counts_match_service_proto() {
        assert_eq!(Service::Workflow.methods().len(), WORKFLOW_SERVICE_RPCS);
        assert_eq!(Service::Operator.methods().len(), OPERATOR_SERVICE_RPCS);
        assert_eq!(METHODS.len(), WORKFLOW_SERVICE_RPCS + OPERATOR_SERVICE_RPCS);
    }

    #[test]
    fn rows_are_grouped_by_service_sorted_and_unique() {
        for service in [Service::Workflow, Service::Operator] {
            let methods = service.methods();
            assert!(
                methods.iter().all(|m| m.service == service),
                "{service:?} rows out of place"
            );
            for pair in methods.windows(2) {
                assert!(
                    pair[0].name < pair[1].name,
                    "{service:?}: {} must sort strictly before {}",
                    pair[0].name,
                    pair[1].name
                );
            }
        }
        let mut paths: Vec<String> = METHODS.iter().map(Method::path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), METHODS.len());
    }

    #[test]
    fn names_are_plain_identifiers() {
        for m in METHODS {
            assert!(
                m.name.starts_with(|c: char| c.is_ascii_uppercase()),
                "{}",
                m.name
            );
            assert!(
                m.name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn namespace_fields_other_than_1() {
        use Service::{Operator, Workflow};
        let expected: &[(Service, &str, u32)] = &[
            (Workflow, "RespondWorkflowTaskCompleted", 9),
            (Workflow, "RespondWorkflowTaskFailed", 6),
            (Workflow, "RespondQueryTaskCompleted", 6),
            (Workflow, "RecordActivityTaskHeartbeat", 4),
            (Workflow, "RespondActivityTaskCompleted", 4),
            (Workflow, "RespondActivityTaskFailed", 4),
            (Workflow, "RespondActivityTaskCanceled", 4),
            (Operator, "AddSearchAttributes", 2),
            (Operator, "RemoveSearchAttributes", 2),
        ];
        for &(service, name, field) in expected {
            assert_eq!(
                method(service, name).namespace_field,
                Some(field),
                "{service:?}/{name}"
            );
        }
        let found = names(|m| matches!(m.namespace_field, Some(f) if f != 1));
        let listed: Names = expected
            .iter()
            .map(|&(s, n, _)| (s.grpc_name(), n))
            .collect();
        assert_eq!(
            found, listed,
            "a namespace field other than 1 is not listed here"
        );
    }

    #[test]
    fn by_id_variants_carry_the_namespace_in_field_1() {
        for name in [
            "RecordActivityTaskHeartbeatById",
            "RespondActivityTaskCompletedById",
            "RespondActivityTaskFailedById",
            "RespondActivityTaskCanceledById",
        ] {
            assert_eq!(
                method(Service::Workflow, name).namespace_field,
                Some(1),
                "{name}"
            );
        }
    }

    #[test]
    fn cluster_scope_methods() {
        let expected = set(
            &[
                "GetClusterInfo",
                "GetSearchAttributes",
                "GetSystemInfo",
                "ListNamespaces",
            ],
            &[
                "AddOrUpdateRemoteCluster",
                "CreateNexusEndpoint",
                "DeleteNexusEndpoint",
                "GetNexusEndpoint",
                "ListClusters",
                "ListNexusEndpoints",
                "RemoveRemoteCluster",
                "UpdateNexusEndpoint",
            ],
        );
        assert_eq!(names(|m| m.scope == Scope::Cluster), expected);
        assert_eq!(names(|m| m.namespace_field.is_none()), expected);
    }

    #[test]
    fn namespace_scope_iff_namespace_field() {
        // No exceptions: the server's metadata test requires a string
        // `namespace` in every namespace-scoped request and none in a
        // cluster-scoped one, and the rows follow it. The search attribute
        // calls of OperatorService are namespace-scoped there.
        for m in METHODS {
            assert_eq!(
                m.scope == Scope::Namespace,
                m.namespace_field.is_some(),
                "{:?}/{}: scope {:?}, namespace field {:?}",
                m.service,
                m.name,
                m.scope,
                m.namespace_field
            );
        }
        for name in [
            "AddSearchAttributes",
            "RemoveSearchAttributes",
            "ListSearchAttributes",
        ] {
            assert_eq!(
                method(Service::Operator, name).scope,
                Scope::Namespace,
                "{name}"
            );
        }
    }

    #[test]
    fn worker_set() {
        let expected = set(
            &[
                "DescribeNamespace",
                "GetSystemInfo",
                "GetWorkflowExecutionHistory",
                "PollActivityTaskQueue",
                "PollNexusTaskQueue",
                "PollWorkflowTaskQueue",
                "RecordActivityTaskHeartbeat",
                "RecordActivityTaskHeartbeatById",
                "RecordWorkerHeartbeat",
                "ResetStickyTaskQueue",
                "RespondActivityTaskCanceled",
                "RespondActivityTaskCanceledById",
                "RespondActivityTaskCompleted",
                "RespondActivityTaskCompletedById",
                "RespondActivityTaskFailed",
                "RespondActivityTaskFailedById",
                "RespondNexusTaskCompleted",
                "RespondNexusTaskFailed",
                "RespondQueryTaskCompleted",
                "RespondWorkflowTaskCompleted",
                "RespondWorkflowTaskFailed",
                "ShutdownWorker",
            ],
            &[],
        );
        assert_eq!(names(|m| m.worker), expected);
        for m in METHODS.iter().filter(|m| m.worker) {
            assert!(
                m.access <= Access::Write,
                "worker call {} must not need admin",
                m.name
            );
        }
        for name in [
            "FetchWorkerConfig",
            "UpdateWorkerConfig",
            "DescribeWorker",
            "ListWorkers",
            "DescribeTaskQueue",
            "GetWorkflowExecutionHistoryReverse",
        ] {
            assert!(!method(Service::Workflow, name).worker, "{name}");
        }
    }

    #[test]
    fn admin_methods() {
        let expected = set(
            &["DeprecateNamespace", "RegisterNamespace", "UpdateNamespace"],
            &[
                "AddOrUpdateRemoteCluster",
                "AddSearchAttributes",
                "CreateNexusEndpoint",
                "DeleteNamespace",
                "DeleteNexusEndpoint",
                "GetNexusEndpoint",
                "ListClusters",
                "ListNexusEndpoints",
                "RemoveRemoteCluster",
                "RemoveSearchAttributes",
                "UpdateNexusEndpoint",
            ],
        );
        assert_eq!(names(|m| m.access == Access::Admin), expected);
    }

    #[test]
    fn access_spot_checks() {
        use Service::{Operator, Workflow};
        for (service, name, access) in [
            (Workflow, "GetSystemInfo", Access::Read),
            (Workflow, "ListNamespaces", Access::Read),
            (Workflow, "DescribeNamespace", Access::Read),
            (Workflow, "QueryWorkflow", Access::Read),
            (Workflow, "PollWorkflowExecutionUpdate", Access::Read),
            (
                Workflow,
                "ValidateWorkerDeploymentVersionComputeConfig",
                Access::Read,
            ),
            (Workflow, "PollWorkflowTaskQueue", Access::Write),
            (Workflow, "StartWorkflowExecution", Access::Write),
            (Workflow, "SignalWorkflowExecution", Access::Write),
            (Workflow, "DeleteWorkflowExecution", Access::Write),
            (Operator, "ListSearchAttributes", Access::Read),
        ] {
            assert_eq!(method(service, name).access, access, "{service:?}/{name}");
        }
        assert!(Access::Read < Access::Write && Access::Write < Access::Admin);
    }

    #[test]
    fn path_format() {
        assert_eq!(
            method(Service::Workflow, "StartWorkflowExecution").path(),
            "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution"
        );
        assert_eq!(
            method(Service::Operator, "AddSearchAttributes").path(),
            "/temporal.api.operatorservice.v1.OperatorService/AddSearchAttributes"
        );
    }

    #[test]
    fn index_is_the_row_of_the_table_and_none_for_a_copy() {
        for (i, method) in METHODS.iter().enumerate() {
            assert_eq!(method.index(), Some(i), "{}", method.name);
            assert_eq!(lookup(&method.path()).and_then(Method::index), Some(i));
        }
        let copy = METHODS[5];
        assert_eq!(copy.index(), None);
    }

    #[test]
    fn lookup_finds_every_method_by_its_path() {
        for m in METHODS {
            let found = lookup(&m.path()).unwrap_or_else(|| panic!("{} not found", m.path()));
            assert!(std::ptr::eq(found, m), "{}", m.path());
        }
    }

    #[test]
    fn lookup_known_paths() {
        let m = lookup("/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue")
            .expect("PollWorkflowTaskQueue");
        assert_eq!(
            (m.service, m.name, m.worker),
            (Service::Workflow, "PollWorkflowTaskQueue", true)
        );

        let m =
            lookup("/temporal.api.workflowservice.v1.WorkflowService/RespondWorkflowTaskCompleted")
                .expect("RespondWorkflowTaskCompleted");
        assert_eq!(m.namespace_field, Some(9));

        let m = lookup("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo")
            .expect("GetSystemInfo");
        assert_eq!((m.scope, m.namespace_field), (Scope::Cluster, None));

        let m = lookup("/temporal.api.operatorservice.v1.OperatorService/RemoveSearchAttributes")
            .expect("RemoveSearchAttributes");
        assert_eq!(
            (m.service, m.access, m.namespace_field),
            (Service::Operator, Access::Admin, Some(2))
        );

        // The first and last row of each service.
        for service in [Service::Workflow, Service::Operator] {
            let methods = service.methods();
            for m in [&methods[0], &methods[methods.len() - 1]] {
                assert_eq!(lookup(&m.path()), Some(m));
            }
        }
    }

    #[test]
    fn lookup_rejects_what_is_not_a_table_path() {
        for path in [
            "",
            "/",
            "//",
            // Unknown method, and names near the ends of the sorted rows.
            "/temporal.api.workflowservice.v1.WorkflowService/NoSuchMethod",
            "/temporal.api.workflowservice.v1.WorkflowService/AAA",
            "/temporal.api.workflowservice.v1.WorkflowService/zzz",
            // Method of the other service.
            "/temporal.api.workflowservice.v1.WorkflowService/AddSearchAttributes",
            "/temporal.api.operatorservice.v1.OperatorService/StartWorkflowExecution",
            // Missing leading slash.
            "temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution",
            // Service or method missing, extra segments, trailing slash.
            "/temporal.api.workflowservice.v1.WorkflowService",
            "/temporal.api.workflowservice.v1.WorkflowService/",
            "/StartWorkflowExecution",
            "//StartWorkflowExecution",
            "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution/",
            "/x/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution",
            "/temporal.api.workflowservice.v1.WorkflowService//StartWorkflowExecution",
            // Case, whitespace and near-miss service names.
            "/temporal.api.workflowservice.v1.WorkflowService/startWorkflowExecution",
            "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution ",
            "/temporal.api.workflowservice.v1.workflowservice/StartWorkflowExecution",
            "/temporal.api.workflowservice.v2.WorkflowService/StartWorkflowExecution",
            "/temporal.server.api.adminservice.v1.AdminService/DescribeCluster",
            "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution?x=1",
            // Health checks are handled elsewhere.
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(lookup(path), None, "{path:?}");
        }
    }
}
