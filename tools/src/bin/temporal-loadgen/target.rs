//! What the generator sends where: the target's address and TLS settings,
//! the request's URI and headers, and its body, encoded once at start.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::Uri;
use rustls::pki_types::ServerName;
use temporal_mtls_proxy_testwire::{grpc, temporal};
use temporal_mtls_proxy_tools::tls;
use tokio_rustls::TlsConnector;

use crate::{Args, CallMethod, Mode};

/// The generator's name on the wire: its user-agent, its identity in polls,
/// and the task queue and workflow names of its requests.
const NAME: &str = "temporal-loadgen";

/// The gRPC method of a `--method`.
pub(crate) fn method_path(method: CallMethod) -> &'static str {
    match method {
        CallMethod::GetSystemInfo => temporal::path::GET_SYSTEM_INFO,
        CallMethod::StartWorkflow => temporal::path::START_WORKFLOW_EXECUTION,
        CallMethod::Echo => temporal::path::ECHO,
        CallMethod::Poll => temporal::path::POLL_WORKFLOW_TASK_QUEUE,
    }
}

fn payload_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The protobuf message of a call (without the gRPC frame header).
fn request_message(method: CallMethod, namespace: &str, payload_bytes: usize) -> Vec<u8> {
    match method {
        CallMethod::GetSystemInfo => temporal::get_system_info(),
        CallMethod::Echo => payload_data(payload_bytes),
        // A workflow execution timeout of 60 s: a workflow started on a real
        // server without a worker times out instead of piling up.
        CallMethod::StartWorkflow => temporal::start_workflow_execution(
            namespace,
            &workflow_id_template(),
            "temporal-loadgen-workflow",
            NAME,
            &payload_data(payload_bytes),
            60,
        ),
        CallMethod::Poll => temporal::poll_workflow_task_queue(namespace, NAME, NAME),
    }
}

/// The workflow id of start-workflow calls: the process id then 16 hex
/// digits, zero here and a per-call counter with `--unique-workflow-ids`.
fn workflow_id_template() -> String {
    format!("{NAME}-{}-{:016x}", std::process::id(), 0)
}

/// Everything a worker needs to dial and to build a request.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// `--unique-workflow-ids`: where the 16 hex digits of the id are.
    pub(crate) unique_id_at: Option<usize>,
    pub(crate) next_id: AtomicU64,
}

impl Target {
    /// The request body of one call: the precomputed one, or a copy with the
    /// next workflow id.
    pub(crate) fn body(&self) -> Bytes {
        match self.unique_id_at {
            None => self.body.clone(),
            Some(at) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut body = BytesMut::from(&self.body[..]);
                body[at..at + 16].copy_from_slice(format!("{id:016x}").as_bytes());
                body.freeze()
            }
        }
    }
}

/// Resolves the target, sets up TLS and precomputes the request.
pub(crate) fn build_target(args: &Args) -> Result<Target, String> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&args.target)
        .map_err(|e| format!("cannot resolve {}: {e}", args.target))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", args.target))?;
    let tls = if args.tls {
        let ca = args.ca.as_ref().ok_or("--tls needs --ca")?;
        let roots = tls::load_roots(ca)?;
        let identity = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => Some(tls::load_key_pair(cert, key)?),
            _ => None,
        };
        let mut config = tls::client_config(roots, identity)?;
        // Full handshakes: per call, or per idle connection as each of many
        // clients would make.
        if matches!(args.mode, Mode::NewConnection | Mode::Idle) {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let host = match &args.server_name {
            Some(name) => name.clone(),
            None => args
                .target
                .rsplit_once(':')
                .map_or(args.target.as_str(), |(h, _)| h)
                .trim_matches(|c| c == '[' || c == ']')
                .to_owned(),
        };
        let name = ServerName::try_from(host).map_err(|e| format!("bad server name: {e}"))?;
        Some((TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    let scheme = if args.tls { "https" } else { "http" };
    let authority = args.authority.as_deref().unwrap_or(&args.target);
    let method = if args.mode == Mode::Hold {
        CallMethod::Poll
    } else {
        args.method
    };
    let uri: Uri = format!("{scheme}://{authority}{}", method_path(method))
        .parse()
        .map_err(|e| format!("bad authority {authority}: {e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        HeaderName::from_static("te"),
        HeaderValue::from_static("trailers"),
    );
    headers.insert(
        HeaderName::from_static("user-agent"),
        HeaderValue::from_static(NAME),
    );
    if args.mode == Mode::Hold {
        // Long enough that a real frontend holds the poll for the whole run.
        let ms = (args.hold_for.as_millis() + 10_000).min(99_999_999);
        headers.insert(
            HeaderName::from_static("grpc-timeout"),
            HeaderValue::from_str(&format!("{ms}m")).expect("digits"),
        );
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header {header:?}: expected NAME:VALUE"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("--header {header:?}: bad name: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("--header {header:?}: bad value: {e}"))?;
        headers.insert(name, value);
    }
    let body = grpc::frame(
        &request_message(method, &args.namespace, args.payload_bytes),
        false,
    );
    let unique_id_at = if args.unique_workflow_ids && method == CallMethod::StartWorkflow {
        let id = workflow_id_template();
        let at = body
            .windows(id.len())
            .position(|w| w == id.as_bytes())
            .expect("the workflow id is in the request");
        Some(at + id.len() - 16)
    } else {
        None
    };
    Ok(Target {
        addr,
        tls,
        uri,
        headers,
        body,
        unique_id_at,
        next_id: AtomicU64::new(0),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use temporal_mtls_proxy_testwire::pb;

    use super::*;

    #[test]
    fn start_workflow_request_has_the_namespace_and_payload() {
        let msg = request_message(CallMethod::StartWorkflow, "ns1", 3000);
        assert_eq!(pb::get_string(&msg, 1).as_deref(), Some("ns1"));
        assert_eq!(
            pb::get_string(&msg, 2).unwrap(),
            workflow_id_template(),
            "workflow_id"
        );
        // input: Payloads{1: Payload{2: data}}
        let payloads = pb::get_bytes(&msg, 5).expect("input");
        let payload = pb::get_bytes(&payloads, 1).expect("one payload");
        assert_eq!(pb::get_bytes(&payload, 2).unwrap(), payload_data(3000));
    }

    #[test]
    fn extra_headers_are_sent_and_checked() {
        let args = Args::parse_from([
            "temporal-loadgen",
            "--target",
            "127.0.0.1:1",
            "--header",
            "authorization: Bearer abc.def.ghi",
            "--header",
            "x-bench:1",
        ]);
        let target = build_target(&args).unwrap();
        assert_eq!(target.headers["authorization"], "Bearer abc.def.ghi");
        assert_eq!(target.headers["x-bench"], "1");
        assert_eq!(target.headers["content-type"], "application/grpc");
        for bad in ["no-colon", "bad name:1", "x:a\nb"] {
            let args = Args::parse_from([
                "temporal-loadgen",
                "--target",
                "127.0.0.1:1",
                "--header",
                bad,
            ]);
            assert!(build_target(&args).is_err(), "{bad}");
        }
    }

    #[test]
    fn unique_workflow_ids_change_per_call() {
        let args = Args::parse_from([
            "temporal-loadgen",
            "--target",
            "127.0.0.1:1",
            "--method",
            "start-workflow",
            "--payload-bytes",
            "10",
            "--unique-workflow-ids",
        ]);
        let target = build_target(&args).unwrap();
        let (a, b) = (target.body(), target.body());
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
        let id = |n: u64| format!("{NAME}-{}-{n:016x}", std::process::id()).into_bytes();
        assert!(a.windows(id(0).len()).any(|w| w == id(0)));
        assert!(b.windows(id(1).len()).any(|w| w == id(1)));
    }
}
