//! Fetching an issuer's keys over https: a GET with the proxy's own TLS
//! stack (rustls with aws-lc-rs, the client config `tls::client` builds for
//! the upstream, here with ALPN `http/1.1`) and hyper's HTTP/1.1 client, one
//! connection per fetch (fetches are minutes apart). Bounded: the whole
//! fetch (connect, handshake, response) within [`FETCH_TIMEOUT`], the body
//! at most [`MAX_JWKS_BYTES`], no redirects followed (the config names the
//! final URL). The CA bundle is the issuer's `jwks_ca`, or the system's
//! roots (read once, by rustls-native-certs).
//!
//! OpenID discovery (OpenID Connect Discovery 1.0 section 4): the document
//! at `{issuer}/.well-known/openid-configuration` (a trailing `/` of the
//! issuer removed first) must name the configured issuer exactly, and its
//! `jwks_uri` must be https.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::jwks::MAX_JWKS_BYTES;
use crate::tls::client::{client_config, ClientTlsMaterial};

/// The longest one fetch (connect, TLS, request, whole response) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch failed; the text names the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot fetch {url}: {reason}")]
    Failed { url: String, reason: String },
    #[error("{0}")]
    NoRoots(String),
}

/// An https client for one issuer's fetches.
#[derive(Clone)]
pub struct Fetcher {
    connector: Result<TlsConnector, String>,
}

/// The system's root CAs, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no system root certificates found{why}; set jwks_ca to the CA bundle of the issuer's https server"
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

impl Fetcher {
    /// A client trusting `roots`, or the system's roots when `None`.
    pub fn new(roots: Option<Arc<RootCertStore>>) -> Fetcher {
        let roots = match roots {
            Some(roots) => Ok(roots),
            None => system_roots(),
        };
        let connector = roots.and_then(|roots| {
            let material = ClientTlsMaterial {
                roots,
                client_key: None,
            };
            let shared = client_config(&material).map_err(|e| e.to_string())?;
            let mut config = (*shared).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        });
        Fetcher { connector }
    }

    /// The body of `GET url`, which must answer 200.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let connector = self.connector.clone().map_err(FetchError::NoRoots)?;
        let target = Target::parse(url)?;
        let failed = |reason: String| FetchError::Failed {
            url: url.to_owned(),
            reason,
        };
        match tokio::time::timeout(FETCH_TIMEOUT, fetch(connector, &target)).await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(format!(
                "no complete answer within {}s",
                FETCH_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// An https URL, taken apart.
struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, FetchError> {
        let bad = |reason: &str| FetchError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("not an https:// URL"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            host,
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

async fn fetch(connector: TlsConnector, target: &Target) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| format!("{:?} is not a valid server name", target.host))?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/1.1: {e}"))?;
    let request = http::Request::get(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("temporal-mtls-proxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP/1.1: {e}"))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!(
                "HTTP {status} (redirects are not followed: configure the final URL)"
            ));
        }
        if status != http::StatusCode::OK {
            return Err(format!("HTTP {status}"));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > MAX_JWKS_BYTES {
                    return Err(too_large());
                }
                out.extend_from_slice(data);
            }
        }
        Ok(out)
    };
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        ended = &mut conn => match ended {
            // The connection finished (the server closed it): what it
            // delivered is still read.
            Ok(()) => exchange.await,
            Err(e) => Err(format!("HTTP/1.1: {e}")),
        },
    }
}

fn too_large() -> String {
    format!("response over {} KiB", MAX_JWKS_BYTES / 1024)
}

/// The discovery document's URL for `issuer`.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The `jwks_uri` of a discovery document, which must be `issuer`'s.
pub fn jwks_uri(document: &[u8], issuer: &str) -> Result<String, String> {
    let doc: serde_json::Value = serde_json::from_slice(document)
        .map_err(|e| format!("the discovery document is not JSON ({e})"))?;
    let text = |field: &str| doc.get(field).and_then(serde_json::Value::as_str);
    match text("issuer") {
        Some(found) if found == issuer => {}
        Some(found) => {
            return Err(format!(
                "the discovery document is for issuer {found:?}, not the configured {issuer:?}"
            ))
        }
        None => return Err("the discovery document has no \"issuer\"".to_owned()),
    }
    let uri = text("jwks_uri").ok_or("the discovery document has no \"jwks_uri\"")?;
    if !uri.starts_with("https://") {
        return Err(format!(
            "the discovery document's jwks_uri {uri:?} is not https"
        ));
    }
    Ok(uri.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart_and_only_https_is_fetched() {
        let t = Target::parse("https://issuer.example/.well-known/jwks.json?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            (
                "issuer.example",
                443,
                "issuer.example",
                "/.well-known/jwks.json?x=1"
            )
        );
        let t = Target::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8443, "/")
        );
        assert_eq!(
            Target::parse("http://issuer.example/jwks")
                .err()
                .unwrap()
                .to_string(),
            "http://issuer.example/jwks: not an https:// URL"
        );
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn discovery_names_the_issuer_and_an_https_jwks_uri() {
        assert_eq!(
            discovery_url("https://issuer.example/"),
            "https://issuer.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://issuer.example/tenant"),
            "https://issuer.example/tenant/.well-known/openid-configuration"
        );
        let doc = br#"{"issuer":"https://issuer.example","jwks_uri":"https://keys.example/jwks"}"#;
        assert_eq!(
            jwks_uri(doc, "https://issuer.example").unwrap(),
            "https://keys.example/jwks"
        );
        assert_eq!(
            jwks_uri(doc, "https://other.example").unwrap_err(),
            "the discovery document is for issuer \"https://issuer.example\", not the configured \"https://other.example\""
        );
        let plain = br#"{"issuer":"https://issuer.example","jwks_uri":"http://keys.example/jwks"}"#;
        assert!(jwks_uri(plain, "https://issuer.example")
            .unwrap_err()
            .contains("is not https"));
        assert!(jwks_uri(b"{}", "x").unwrap_err().contains("no \"issuer\""));
        assert!(jwks_uri(b"<html>", "x").unwrap_err().contains("not JSON"));
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_a_clear_error() {
        // A port nothing listens on (bound, then closed).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let fetcher = Fetcher::new(Some(Arc::new(RootCertStore::empty())));
        let err = fetcher
            .get(&format!("https://127.0.0.1:{port}/jwks"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot fetch https://127.0.0.1:{port}/jwks: cannot connect:"
            )),
            "{err}"
        );
    }
}
