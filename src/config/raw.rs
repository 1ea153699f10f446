//! The config file as written: strict serde structs, every field optional so
//! that validation (in `super::validate`) can report every missing or wrong
//! key in one run instead of stopping at the first.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<RawListen>,
    pub tls: Option<RawTls>,
    pub upstream: Option<RawUpstream>,
    pub shutdown: Option<RawShutdown>,
    pub authz: Option<RawAuthz>,
    pub identity: Option<RawIdentity>,
    pub audit: Option<RawAudit>,
    pub limits: Option<RawLimits>,
    pub http2: Option<RawHttp2>,
    pub keepalive: Option<RawKeepalive>,
    pub admin: Option<RawAdmin>,
    pub health: Option<RawHealth>,
    pub runtime: Option<RawRuntime>,
    pub tokens: Option<RawTokens>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub address: Option<String>,
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub crl: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub handshake_timeout: Option<String>,
    pub client_certificate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub address: Option<String>,
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub server_name: Option<String>,
    pub connect_timeout: Option<String>,
    pub max_concurrent_streams: Option<u32>,
    pub initial_stream_window_size: Option<RawSize>,
    pub max_connections: Option<u32>,
    pub max_connection_idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub drain_timeout: Option<String>,
    pub unready_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthz {
    pub mode: Option<String>,
    pub rule: Option<Vec<RawRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub namespaces: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub cn: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub dns: Option<String>,
    pub uri: Option<String>,
    pub email: Option<String>,
    pub fingerprint: Option<String>,
    pub token: Option<RawTokenMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenMatch {
    pub issuer: Option<String>,
    pub sub: Option<String>,
    /// Claim path -> pattern (in file order, for messages).
    pub claims: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub header: Option<String>,
    pub strip: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub sink: Option<String>,
    pub buffer: Option<usize>,
}

/// A size: a number of bytes, or a string like "4MiB".
#[derive(Debug, Clone)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a number of bytes, or a string like \"4MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_request_message: Option<RawSize>,
    pub max_response_message: Option<RawSize>,
    pub max_connections: Option<u64>,
    pub connection_buffer: Option<RawSize>,
    pub first_message_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    pub max_concurrent_streams: Option<u64>,
    pub max_header_list_size: Option<RawSize>,
    pub initial_stream_window_size: Option<RawSize>,
    pub initial_connection_window_size: Option<RawSize>,
    pub max_frame_size: Option<RawSize>,
    pub max_pending_accept_reset_streams: Option<u64>,
    pub max_local_error_reset_streams: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeepalive {
    pub min_client_ping_interval: Option<String>,
    pub permit_without_stream: Option<bool>,
    pub ping_interval: Option<String>,
    pub ping_timeout: Option<String>,
    pub max_connection_idle: Option<String>,
    pub max_connection_age: Option<String>,
    pub max_connection_age_grace: Option<String>,
    pub upstream_ping_interval: Option<String>,
    pub upstream_ping_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<String>,
    pub max_namespace_labels: Option<u64>,
    pub upstream_check_interval: Option<String>,
    pub upstream_check_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub local: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub worker_threads: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub forward: Option<bool>,
    pub issuer: Option<Vec<RawIssuer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
    pub discovery: Option<bool>,
    pub jwks_ca: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub clock_skew: Option<String>,
    pub max_lifetime: Option<String>,
    pub refresh: Option<String>,
}
