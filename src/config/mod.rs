//! Configuration: the TOML file is read into strict raw structs (`raw`), then
//! validated into the typed [`Config`] (`validate`), with every problem found
//! reported at once, each naming its key. TLS files are loaded and checked
//! during validation, so a config that validates is one the proxy can serve.

mod authz;
mod effective;
mod expiry;
mod limits;
mod parse;
mod problems;
mod raw;
mod tokens;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::tls::client::ClientTlsMaterial;
use crate::tls::server::ServerTlsMaterial;

pub use problems::Problem;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config was read from (`None` for config text).
    pub source: Option<PathBuf>,
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    pub upstream: UpstreamConfig,
    pub shutdown: ShutdownConfig,
    /// `None` when there is no `[authz]` section: every authenticated client
    /// may call everything.
    pub authz: Option<crate::authz::Policy>,
    pub identity: IdentityHeaderConfig,
    /// `None` when there is no `[audit]` section.
    pub audit: Option<AuditConfig>,
    pub limits: LimitsConfig,
    pub http2: Http2Config,
    pub keepalive: KeepaliveConfig,
    pub admin: AdminConfig,
    /// Answer `grpc.health.v1.Health/Check` from the proxy's own readiness
    /// instead of forwarding it (`[health] local`).
    pub health_local: bool,
    /// `[runtime] worker_threads`: worker threads serving connections
    /// (`server::workers`); `None` = one per CPU. Start only.
    pub worker_threads: Option<usize>,
    /// `[tokens]`: bearer token issuers; `None` without the section.
    pub tokens: Option<crate::token::TokensConfig>,
}

/// `[admin]`: the HTTP listener for metrics and probes.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None` when disabled (`address = ""`).
    pub address: Option<SocketAddr>,
    /// Distinct namespaces that get their own metric label; later ones
    /// count as "other".
    pub max_namespace_labels: usize,
    /// How often readiness checks the upstream, and how long it waits.
    pub upstream_check_interval: Duration,
    pub upstream_check_timeout: Duration,
}

/// `[limits]`.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest request message (after decompression where the proxy
    /// decompresses).
    pub max_request_message: u32,
    pub max_response_message: u32,
    /// Client connections open at once; more are refused at accept.
    pub max_connections: usize,
    /// Bytes the proxy holds for one client connection (all its streams,
    /// both ways): request messages read for authorization until forwarded,
    /// and responses not yet written to the client; beyond it, reads and
    /// responses wait.
    pub connection_buffer: usize,
    /// How long a request's first message may take to arrive in full
    /// when the proxy reads it.
    pub first_message_timeout: Duration,
}

/// `[http2]`: the server side's HTTP/2 settings.
#[derive(Debug, Clone)]
pub struct Http2Config {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_frame_size: u32,
    /// Streams a client may open and reset before the server accepts them
    /// (the rapid-reset protection).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset for protocol errors before it closes
    /// the connection.
    pub max_local_error_reset_streams: usize,
}

/// `[keepalive]`: pings and connection lifecycle.
#[derive(Debug, Clone)]
pub struct KeepaliveConfig {
    pub min_client_ping_interval: Duration,
    pub permit_without_stream: bool,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_connection_idle: Duration,
    pub max_connection_age: Duration,
    pub max_connection_age_grace: Duration,
    pub upstream_ping_interval: Duration,
    pub upstream_ping_timeout: Duration,
}

/// The verified identity sent upstream, and the client headers removed.
#[derive(Debug, Clone)]
pub struct IdentityHeaderConfig {
    /// `None` disables the header.
    pub header: Option<http::HeaderName>,
    /// Headers removed from every client request (always includes `header`).
    pub strip: Vec<http::HeaderName>,
}

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub target: AuditTarget,
    /// Lines buffered before new ones are dropped (and counted).
    pub buffer: usize,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub address: SocketAddr,
    /// Every connection starts with a PROXY protocol v2 header (behind an
    /// L4 load balancer); its source address is the peer's.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub crl: Vec<PathBuf>,
    pub material: ServerTlsMaterial,
    pub handshake_timeout: Duration,
    /// `tls.client_certificate`.
    pub client_certificate: ClientCertificate,
}

/// Whether a client must present a certificate (`tls.client_certificate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificate {
    Required,
    /// A connection without one may only make calls with a valid token
    /// (validation requires `[[tokens.issuer]]`).
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    /// Plaintext HTTP/2 with prior knowledge: the sidecar case.
    H2c,
    /// HTTP/2 over TLS.
    Https,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The address as written (for messages).
    pub address: String,
    pub scheme: UpstreamScheme,
    pub host: String,
    pub port: u16,
    /// `https://` only.
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    /// Streams this proxy opens on one upstream connection before it opens
    /// another; lowered automatically to the upstream's own
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// The proxy's receive window per upstream stream: what one response
    /// whose client does not read can hold in the proxy (the connection
    /// window is large, so such streams never hold up the others).
    pub initial_stream_window_size: u32,
    /// Upstream connections one worker thread opens at most; past it,
    /// calls share the open ones beyond `max_concurrent_streams`.
    pub max_connections: u32,
    /// A connection without calls for this long is closed (all but one).
    pub max_connection_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub material: ClientTlsMaterial,
    pub server_name: ServerName<'static>,
    /// The files it was read from (upstream.ca; upstream.cert and .key).
    pub ca: PathBuf,
    pub cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    /// How long in-flight calls may run after GOAWAY before they are cut.
    pub drain_timeout: Duration,
    /// After SIGTERM, how long readiness reports false before the listener
    /// closes (time for load balancers to stop sending new connections).
    pub unready_delay: Duration,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {source}{}", where_unknown(source))]
    Syntax {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{origin}: {} problem(s):\n{}", problems.len(), problems::render(problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

/// What a syntax error without a position says instead: the TOML parser
/// gives none for nesting past its recursion limit (hundreds of dotted key
/// parts or nested arrays and inline tables).
fn where_unknown(source: &toml::de::Error) -> &'static str {
    if source.span().is_some() {
        ""
    } else {
        " (no position known: tables, arrays or dotted keys nested too deep are the usual cause)"
    }
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths inside it
    /// are taken relative to the file's own directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_toml(&text, base, &path.display().to_string())?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Every file the config reads (itself, certificates, keys, CAs, CRLs):
    /// what hot reload watches.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.source.iter().cloned().collect();
        files.extend([
            self.tls.cert.clone(),
            self.tls.key.clone(),
            self.tls.client_ca.clone(),
        ]);
        files.extend(self.tls.crl.iter().cloned());
        // Token issuers' JWKS files and fetch CAs.
        for issuer in self.tokens.iter().flat_map(|t| &t.issuers) {
            files.extend(issuer.source.file().map(Path::to_path_buf));
            files.extend(issuer.jwks_ca.as_ref().map(|(path, _)| path.clone()));
        }
        files
    }

    /// Parses and validates config text; `base` resolves relative paths and
    /// `origin` names the text in errors.
    pub fn from_toml(text: &str, base: &Path, origin: &str) -> Result<Config, ConfigError> {
        let (raw, shape) = parse::parse(text).map_err(|source| ConfigError::Syntax {
            origin: origin.to_owned(),
            source,
        })?;
        validate::validate(raw, base, shape).map_err(|problems| ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        })
    }
}
