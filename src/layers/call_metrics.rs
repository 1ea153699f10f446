//! Call metrics: every call is counted when its response ends (method,
//! namespace, grpc-status, duration, bytes each way, the authorization
//! decision, size refusals), including calls the proxy answers itself.
//! Size refusals are also logged: an operator without an audit sink must
//! see that a call failed on a limit, not on anything the frontend did.

use std::sync::Arc;

use tower_layer::Layer;

use super::observe::Observed;
use crate::call::{CallContext, CallObserver, Ending};
use crate::error::ErrorKind;
use crate::logging::limit;
use crate::metrics::{FinishedCall, MessageDirection, Metrics};
use crate::tls::identity::PeerIdentity;

#[derive(Clone)]
pub struct CallMetricsLayer {
    observer: Arc<dyn CallObserver>,
}

impl CallMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> CallMetricsLayer {
        CallMetricsLayer {
            observer: Arc::new(CallMetrics { metrics }),
        }
    }
}

impl<S> Layer<S> for CallMetricsLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed::new(inner, Some(self.observer.clone()))
    }
}

struct CallMetrics {
    metrics: Arc<Metrics>,
}

impl CallObserver for CallMetrics {
    fn call_ended(&self, ctx: &CallContext, ending: &Ending) {
        let outcome = ctx.authz();
        self.metrics.record_call(&FinishedCall {
            method: ctx.method,
            namespace: outcome.and_then(|o| o.namespace.as_deref()),
            // A call whose client went away before the end is CANCELLED.
            grpc_status: ending.grpc_status.unwrap_or(1),
            duration: ctx.started.elapsed(),
            request_bytes: ctx.request_bytes(),
            response_bytes: ending.response_bytes,
        });
        if let Some(o) = outcome {
            self.metrics.authz_decision(o.rule.as_ref(), o.decision);
        }
        let direction = match ctx.error() {
            Some(ErrorKind::MessageTooLarge) => MessageDirection::Request,
            Some(ErrorKind::ResponseTooLarge) => MessageDirection::Response,
            _ => return,
        };
        self.metrics.message_size_refused(direction);
        if limit::MESSAGE_TOO_LARGE.admit() {
            tracing::warn!(
                peer = %ctx.conn.peer,
                identity = ctx.conn.identity.as_deref().map_or("", PeerIdentity::display_name),
                method = ctx.uri.path(),
                direction = direction.label(),
                "gRPC message over the size limit refused (RESOURCE_EXHAUSTED)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;
    use crate::authz::AuthzDecision;
    use crate::call::{AuthzOutcome, Call, ResponseBody};
    use crate::layers::testing::{call, ok_response, read_to_end, WS};

    /// The value of the sample `series` (name and labels as exposed).
    fn sample(metrics: &Metrics, series: &str) -> Option<f64> {
        metrics.encode().lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.parse().ok()
        })
    }

    /// Every call counted so far, whatever its labels.
    fn calls_counted(metrics: &Metrics) -> f64 {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("temporal_mtls_proxy_calls_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// One call of `method` through the layer to an inner service that
    /// sets `ctx` up with `decide` and answers with `answer`; the response
    /// is read to its end unless `read` is false.
    async fn one_call(
        metrics: &Arc<Metrics>,
        method: &str,
        decide: fn(&CallContext),
        answer: fn() -> http::Response<ResponseBody>,
        read: bool,
    ) {
        let svc = CallMetricsLayer::new(metrics.clone()).layer(tower::service_fn(
            move |call: Call<()>| async move {
                decide(&call.ctx);
                Ok::<_, std::convert::Infallible>(answer())
            },
        ));
        let request = http::Request::builder()
            .uri(format!("{WS}/{method}"))
            .body(())
            .unwrap();
        let before = calls_counted(metrics);
        let resp = svc.oneshot(call(request)).await.unwrap();
        assert_eq!(
            calls_counted(metrics),
            before,
            "counted before the call ended"
        );
        if read {
            read_to_end(resp.into_body()).await;
        }
    }

    #[tokio::test]
    async fn a_call_is_counted_with_its_method_status_and_bytes_when_it_ends() {
        let metrics = Metrics::new(10);
        one_call(
            &metrics,
            "GetSystemInfo",
            |_| {},
            || ok_response(b"abc"),
            true,
        )
        .await;
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_calls_total{method="GetSystemInfo",namespace="",grpc_status="OK"}"#
            ),
            Some(1.0),
            "{}",
            metrics.encode()
        );
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_response_bytes_total{method="GetSystemInfo"}"#
            ),
            Some(8.0)
        );
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_call_duration_seconds_count{method="GetSystemInfo"}"#
            ),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn the_authorization_outcome_gives_the_namespace_and_the_decision() {
        let metrics = Metrics::new(10);
        one_call(
            &metrics,
            "DescribeNamespace",
            |ctx| {
                ctx.set_authz(AuthzOutcome {
                    namespace: Some("default".into()),
                    decision: AuthzDecision::Allow,
                    rule: Some(Arc::from("readers")),
                    reason: None,
                })
            },
            || ok_response(b""),
            true,
        )
        .await;
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_calls_total{method="DescribeNamespace",namespace="default",grpc_status="OK"}"#
            ),
            Some(1.0),
            "{}",
            metrics.encode()
        );
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_authz_decisions_total{rule="readers",decision="allow"}"#
            ),
            Some(1.0),
            "{}",
            metrics.encode()
        );
    }

    #[tokio::test]
    async fn size_refusals_are_counted_by_direction() {
        let metrics = Metrics::new(10);
        let too_large = || {
            ResponseBody::status_only(tonic::Status::resource_exhausted(
                "grpc: received message larger than max (9 vs. 8)",
            ))
        };
        one_call(
            &metrics,
            "StartWorkflowExecution",
            |ctx| ctx.set_error(ErrorKind::MessageTooLarge),
            too_large,
            true,
        )
        .await;
        one_call(
            &metrics,
            "GetSystemInfo",
            |ctx| ctx.set_error(ErrorKind::ResponseTooLarge),
            too_large,
            true,
        )
        .await;
        one_call(
            &metrics,
            "GetSystemInfo",
            |ctx| ctx.set_error(ErrorKind::UpstreamUnavailable),
            || ResponseBody::status_only(tonic::Status::unavailable("down")),
            true,
        )
        .await;
        for (direction, n) in [("request", 1.0), ("response", 1.0)] {
            assert_eq!(
                sample(
                    &metrics,
                    &format!(
                        r#"temporal_mtls_proxy_message_size_refusals_total{{direction="{direction}"}}"#
                    )
                ),
                Some(n),
                "{}",
                metrics.encode()
            );
        }
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_calls_total{method="StartWorkflowExecution",namespace="",grpc_status="RESOURCE_EXHAUSTED"}"#
            ),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn a_call_whose_client_went_away_is_counted_as_cancelled() {
        let metrics = Metrics::new(10);
        one_call(
            &metrics,
            "GetSystemInfo",
            |_| {},
            || ok_response(b"abc"),
            false,
        )
        .await;
        assert_eq!(
            sample(
                &metrics,
                r#"temporal_mtls_proxy_calls_total{method="GetSystemInfo",namespace="",grpc_status="CANCELLED"}"#
            ),
            Some(1.0),
            "{}",
            metrics.encode()
        );
    }
}
