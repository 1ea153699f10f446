//! One tower layer per file. The order they run in is decided in one place:
//! `crate::server::stack`.

pub mod activity;
pub mod audit;
pub mod authz;
pub mod call;
pub mod call_metrics;
pub mod deadline;
pub mod identity_header;
pub mod local_health;
pub mod message_size;
pub mod observe;
pub mod path;
pub mod rescue;
pub mod token;
pub mod upstream;

/// What the layers' unit tests (and `call`'s) share: calls with a context
/// for a made-up connection, gRPC requests, mock inner services' answers, a
/// config with a throwaway PKI, and a small h2c upstream. Test code only.
#[cfg(test)]
pub(crate) mod testing {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Request, Response};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};

    use crate::call::{Call, CallContext, CallObserver, Ending, ResponseBody};
    use crate::config::Config;
    use crate::tls::handshake::ConnectionInfo;
    use crate::tls::identity::PeerIdentity;
    use crate::upstream::Forward;

    pub(crate) const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

    pub(crate) fn call<B>(request: http::Request<B>) -> Call<B> {
        call_as(request, None)
    }

    /// A call on a connection whose client presented `identity`.
    pub(crate) fn call_as<B>(
        request: http::Request<B>,
        identity: Option<Arc<PeerIdentity>>,
    ) -> Call<B> {
        Call {
            ctx: Arc::new(CallContext::new(connection(identity), request.uri())),
            request,
        }
    }

    pub(crate) fn connection(identity: Option<Arc<PeerIdentity>>) -> Arc<ConnectionInfo> {
        Arc::new(ConnectionInfo {
            peer: "127.0.0.1:50000".parse().unwrap_or_else(|_| unreachable!()),
            identity,
            sni: None,
        })
    }

    /// The identity of a (self-signed) certificate with this CN.
    pub(crate) fn identity(cn: &str) -> Arc<PeerIdentity> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        Arc::new(PeerIdentity::from_der(cert.der()).unwrap())
    }

    /// `payload` as one length-prefixed, uncompressed gRPC message.
    pub(crate) fn message(payload: &[u8]) -> Bytes {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    /// A protobuf string field (`field` below 16, `value` under 128 bytes).
    pub(crate) fn string_field(field: u8, value: &str) -> Vec<u8> {
        let mut out = vec![field << 3 | 2, value.len() as u8];
        out.extend_from_slice(value.as_bytes());
        out
    }

    /// A gRPC request for `path` with `body` (already framed).
    pub(crate) fn grpc_request(path: &str, body: Bytes) -> Request<Full<Bytes>> {
        Request::builder()
            .method("POST")
            .uri(format!("http://proxy.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(body))
            .unwrap()
    }

    /// A complete OK response with one message, as an inner service gives.
    pub(crate) fn ok_response(payload: &[u8]) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::local(message(payload)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        resp
    }

    /// Reads a response body to its end: its data and its trailers.
    pub(crate) async fn read_to_end(body: ResponseBody) -> (Bytes, Option<HeaderMap>) {
        let collected = body.collect().await.unwrap_or_else(|e| match e {});
        let trailers = collected.trailers().cloned();
        (collected.to_bytes(), trailers)
    }

    /// An observer that keeps what it is told.
    #[derive(Default)]
    pub(crate) struct Told(pub(crate) Mutex<Vec<Ending>>);

    impl Told {
        pub(crate) fn endings(&self) -> Vec<Ending> {
            self.0.lock().unwrap().clone()
        }
    }

    impl CallObserver for Told {
        fn call_ended(&self, _: &CallContext, ending: &Ending) {
            self.0.lock().unwrap().push(*ending);
        }
    }

    /// A validated config for a proxy in front of `upstream`, with a
    /// throwaway PKI in the returned folder; `extra` is appended (tables).
    pub(crate) fn config(upstream: &str, extra: &str) -> (Config, tempfile::TempDir) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, &ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(path("server.pem"), server.pem()).unwrap();
        std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n\
             [tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
             [upstream]\naddress = \"{upstream}\"\n{extra}\n",
            path("server.pem"),
            path("server.key"),
            path("ca.pem"),
        );
        let config = Config::from_toml(&text, dir.path(), "test").unwrap();
        (config, dir)
    }

    /// The upstream service toward `upstream` (connections are made on
    /// first use).
    pub(crate) fn forward_to(upstream: &str) -> Forward {
        let (config, _dir) = config(upstream, "");
        let pool = crate::upstream::pool(
            &config.upstream,
            &config.keepalive,
            crate::metrics::Metrics::new(10),
        )
        .unwrap();
        Forward::new(pool, false)
    }

    /// What a [`FakeUpstream`] answers a call with: response headers and
    /// body frames.
    pub(crate) type Answer = (HeaderMap, Vec<Frame<Bytes>>);

    /// A small h2c server standing in for the frontend: it reads each
    /// request to its end, keeps its path and body, and answers with
    /// `answer(path)`.
    pub(crate) struct FakeUpstream {
        pub(crate) addr: SocketAddr,
        pub(crate) received: Arc<Mutex<Vec<(String, Bytes)>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl FakeUpstream {
        pub(crate) async fn start(answer: fn(&str) -> Answer) -> FakeUpstream {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let received = Arc::new(Mutex::new(Vec::new()));
            let log = received.clone();
            let task = tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let log = log.clone();
                    let serve =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                log.lock()
                                    .unwrap()
                                    .push((path.clone(), body.unwrap_or_default()));
                                let (headers, frames) = answer(&path);
                                let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                                    frames.into_iter().map(Ok).collect();
                                let mut resp = Response::new(StreamBody::new(
                                    futures_util::stream::iter(frames),
                                ));
                                *resp.headers_mut() = headers;
                                Ok::<_, Infallible>(resp)
                            }
                        });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), serve),
                    );
                }
            });
            FakeUpstream {
                addr,
                received,
                task,
            }
        }

        pub(crate) fn url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    impl Drop for FakeUpstream {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Response headers of a gRPC answer; `status`: a trailers-only one.
    pub(crate) fn grpc_headers(status: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        if let Some(s) = status {
            h.insert("grpc-status", HeaderValue::from_static(s));
        }
        h
    }

    /// Trailers carrying `grpc-status: status`.
    pub(crate) fn status_trailers(status: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static(status));
        h
    }

    /// Paths [`answers`] knows, and what the fake frontend does for each.
    pub(crate) mod paths {
        /// One message (`hi`), then trailers with grpc-status 0.
        pub(crate) const OK: &str = "/test.Fake/Ok";
        /// One message, then trailers with grpc-status 5 (NOT_FOUND).
        pub(crate) const NOT_FOUND: &str = "/test.Fake/NotFound";
        /// Trailers-only: grpc-status 5 in the headers, no body.
        pub(crate) const TRAILERS_ONLY: &str = "/test.Fake/TrailersOnly";
        /// One message, then the end of the stream without a grpc-status.
        pub(crate) const NO_STATUS: &str = "/test.Fake/NoStatus";
        /// One message of 100 bytes, then grpc-status 0.
        pub(crate) const BIG: &str = "/test.Fake/Big";
    }

    /// The fake frontend's answers, by path (see [`paths`]).
    pub(crate) fn answers(path: &str) -> Answer {
        let hi = || Frame::data(message(b"hi"));
        match path {
            paths::OK => (
                grpc_headers(None),
                vec![hi(), Frame::trailers(status_trailers("0"))],
            ),
            paths::NOT_FOUND => (
                grpc_headers(None),
                vec![hi(), Frame::trailers(status_trailers("5"))],
            ),
            paths::TRAILERS_ONLY => (grpc_headers(Some("5")), Vec::new()),
            paths::NO_STATUS => (grpc_headers(None), vec![hi()]),
            paths::BIG => (
                grpc_headers(None),
                vec![
                    Frame::data(message(&[9; 100])),
                    Frame::trailers(status_trailers("0")),
                ],
            ),
            _ => (grpc_headers(Some("12")), Vec::new()),
        }
    }

    /// A call of `path` (carrying `body`) sent through the stack's
    /// innermost layer to `upstream`, responses limited to `max_response`.
    pub(crate) async fn through_upstream(
        upstream: &FakeUpstream,
        path: &str,
        body: Bytes,
        max_response: u32,
    ) -> Result<Response<ResponseBody>, crate::error::ProxyError> {
        use tower::ServiceExt;
        let svc = super::upstream::Upstream::new(forward_to(&upstream.url()), max_response, None);
        svc.oneshot(call(grpc_request(path, body))).await
    }
}
