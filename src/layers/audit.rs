//! The audit log: one JSON line per call (when `[audit]` is on), written
//! when the call's response ends, including calls the proxy answers itself
//! (`audit::line` says what is in it).

use std::sync::Arc;

use tower_layer::Layer;

use super::observe::Observed;
use crate::audit::line::line;
use crate::audit::sink::AuditSink;
use crate::call::{CallContext, CallObserver, Ending};

#[derive(Clone)]
pub struct AuditLayer {
    /// `None`: audit lines are off.
    observer: Option<Arc<dyn CallObserver>>,
}

impl AuditLayer {
    pub fn new(sink: Option<AuditSink>) -> AuditLayer {
        AuditLayer {
            observer: sink.map(|sink| Arc::new(Audit { sink }) as Arc<dyn CallObserver>),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed::new(inner, self.observer.clone())
    }
}

struct Audit {
    sink: AuditSink,
}

impl CallObserver for Audit {
    fn call_ended(&self, ctx: &CallContext, ending: &Ending) {
        self.sink.write(line(ctx, ending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sink::SinkTarget;
    use crate::call::{Call, ResponseBody};
    use crate::layers::testing::{call, ok_response, read_to_end, WS};
    use tower::ServiceExt;

    /// Runs `answer` as the inner service of the audit layer for one call
    /// of `path`, reads the response to the end, and returns the audit
    /// file's lines once the sink has written everything.
    async fn audited(
        path: &str,
        answer: fn() -> http::Response<ResponseBody>,
        before_end: impl FnOnce(&std::path::Path),
    ) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let sink = AuditSink::spawn(SinkTarget::File(file.clone()), 16).unwrap();
        let finished = sink.finished();
        let svc =
            AuditLayer::new(Some(sink)).layer(tower::service_fn(move |_: Call<()>| async move {
                Ok::<_, std::convert::Infallible>(answer())
            }));
        let request = http::Request::builder().uri(path).body(()).unwrap();
        let resp = svc.oneshot(call(request)).await.unwrap();
        // Time for the writer to write a line, had it been given one.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        before_end(&file);
        read_to_end(resp.into_body()).await;
        finished.wait().await;
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn one_line_per_call_written_when_its_response_ends() {
        let path = format!("{WS}/GetSystemInfo");
        let lines = audited(
            &path,
            || ok_response(b"abc"),
            |file| {
                // Nothing yet: the call has not ended.
                let early = std::fs::read_to_string(file).unwrap_or_default();
                assert_eq!(early, "", "a line before the call ended");
            },
        )
        .await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["method"], path.as_str());
        assert_eq!(line["grpc_status"], 0);
        assert_eq!(line["response_bytes"], 8, "5-byte prefix and 3 bytes");
        assert_eq!(line["peer"], "127.0.0.1:50000");
        assert_eq!(line["decision"], "none");
    }

    #[tokio::test]
    async fn a_call_the_proxy_answers_itself_is_audited_with_its_status() {
        let lines = audited(
            &format!("{WS}/DescribeNamespace"),
            || ResponseBody::status_only(tonic::Status::permission_denied("no")),
            |_| {},
        )
        .await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["grpc_status"], 7);
        assert_eq!(lines[0]["response_bytes"], 0);
    }

    #[tokio::test]
    async fn without_a_sink_the_response_passes_unchanged() {
        let svc = AuditLayer::new(None).layer(tower::service_fn(|_: Call<()>| async {
            Ok::<_, std::convert::Infallible>(ok_response(b"abc"))
        }));
        let resp = svc.oneshot(call(http::Request::new(()))).await.unwrap();
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert_eq!(&data[..], b"\0\0\0\0\x03abc");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
    }
}
