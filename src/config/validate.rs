//! From raw TOML structs to a validated [`Config`]: required keys, formats,
//! files that exist and parse, keys that match certificates, cross-field
//! rules. Every problem is collected; none stops the others from being found.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::problems::{resolve, Problem, Problems};
use super::raw::{RawAdmin, RawConfig, RawShutdown, RawTls, RawUpstream};
use super::{
    AdminConfig, Config, ListenConfig, ShutdownConfig, TlsConfig, UpstreamConfig, UpstreamScheme,
    UpstreamTls,
};
use crate::tls::client::ClientTlsMaterial;
use crate::tls::material;
use crate::tls::server::{MinTlsVersion, ServerTlsMaterial};

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than Temporal's 70 s long polls, so a drain lets them finish.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
pub const DEFAULT_UPSTREAM_STREAMS: u32 = 100;
/// `upstream.max_connections`: per worker thread.
pub const DEFAULT_UPSTREAM_CONNECTIONS: u32 = 16;
/// `upstream.max_connection_idle`.
pub const DEFAULT_UPSTREAM_IDLE: Duration = Duration::from_secs(5 * 60);

/// `shape` holds the keys parsing already found wrong (unknown, or of the
/// wrong type): they come first, and are not reported again as missing.
pub(super) fn validate(
    raw: RawConfig,
    base: &Path,
    shape: Vec<Problem>,
) -> Result<Config, Vec<Problem>> {
    let mut p = Problems(shape);

    let listen = raw.listen.unwrap_or_default();
    let address =
        p.required("listen.address", listen.address)
            .and_then(|a| match a.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    p.add(
                        "listen.address",
                        format!("{a:?} is not an IP:port address (e.g. \"0.0.0.0:7443\")"),
                    );
                    None
                }
            });

    let client_certificate = raw.tls.as_ref().and_then(|t| t.client_certificate.clone());
    let tls = validate_tls(&mut p, raw.tls.unwrap_or_default(), base);
    let upstream = validate_upstream(&mut p, raw.upstream.unwrap_or_default(), base);
    let shutdown = validate_shutdown(&mut p, raw.shutdown.unwrap_or_default());
    let tokens = super::tokens::validate_tokens(&mut p, raw.tokens, base);
    let issuer_names: Vec<Arc<str>> = tokens
        .iter()
        .flat_map(|t| &t.issuers)
        .map(|i| i.name.clone())
        .collect();
    let authz = super::authz::validate_authz(&mut p, raw.authz, &issuer_names);
    let identity = super::authz::validate_identity(&mut p, raw.identity);
    let audit = super::authz::validate_audit(&mut p, raw.audit, base);
    let buffer_set = raw
        .limits
        .as_ref()
        .is_some_and(|l| l.connection_buffer.is_some());
    let limits = super::limits::validate_limits(&mut p, raw.limits);
    let http2 = super::limits::validate_http2(&mut p, raw.http2, &limits, buffer_set);
    let keepalive = super::limits::validate_keepalive(&mut p, raw.keepalive);
    let admin = validate_admin(&mut p, raw.admin.unwrap_or_default());
    let health_local = raw.health.and_then(|h| h.local).unwrap_or(false);
    let worker_threads = match raw.runtime.and_then(|r| r.worker_threads) {
        None => None,
        Some(n @ 1..=1024) => Some(n as usize),
        Some(n) => {
            p.add(
                "runtime.worker_threads",
                format!("{n} is not between 1 and 1024"),
            );
            None
        }
    };
    let client_certificate = super::tokens::validate_client_certificate(
        &mut p,
        client_certificate.as_deref(),
        tokens.as_ref(),
    );

    match (address, tls, upstream) {
        (Some(address), Some(tls), Some(upstream)) if p.0.is_empty() => Ok(Config {
            source: None,
            listen: ListenConfig {
                address,
                proxy_protocol: listen.proxy_protocol.unwrap_or(false),
            },
            tls: TlsConfig {
                client_certificate,
                material: ServerTlsMaterial {
                    client_certificate_optional: client_certificate
                        == super::ClientCertificate::Optional,
                    ..tls.material
                },
                ..tls
            },
            upstream,
            shutdown,
            authz,
            identity,
            audit,
            limits,
            http2,
            keepalive,
            admin,
            health_local,
            worker_threads,
            tokens,
        }),
        _ => Err(p.0),
    }
}

fn validate_tls(p: &mut Problems, raw: RawTls, base: &Path) -> Option<TlsConfig> {
    let cert = p.required("tls.cert", raw.cert).map(|s| resolve(base, &s));
    let key = p.required("tls.key", raw.key).map(|s| resolve(base, &s));
    let client_ca = p
        .required("tls.client_ca", raw.client_ca)
        .map(|s| resolve(base, &s));
    let crl: Vec<PathBuf> = raw
        .crl
        .unwrap_or_default()
        .iter()
        .map(|s| resolve(base, s))
        .collect();
    let min_version = match raw.min_version.as_deref() {
        None | Some("1.2") => Some(MinTlsVersion::Tls12),
        Some("1.3") => Some(MinTlsVersion::Tls13),
        Some(other) => {
            p.add(
                "tls.min_version",
                format!("{other:?} is not supported; use \"1.2\" or \"1.3\""),
            );
            None
        }
    };
    let handshake_timeout = p.duration(
        "tls.handshake_timeout",
        raw.handshake_timeout.as_deref(),
        DEFAULT_HANDSHAKE_TIMEOUT,
    );

    // Each file is checked on its own, so that a missing key does not hide a
    // broken certificate; then the pair is checked for a match.
    let chain = cert
        .as_ref()
        .and_then(|c| p.load("tls.cert", material::load_cert_chain(c)));
    let key_der = key
        .as_ref()
        .and_then(|k| p.load("tls.key", material::load_private_key(k)));
    let certified_key = match (chain, key_der, &cert, &key) {
        (Some(chain), Some(key_der), Some(c), Some(k)) => {
            p.load("tls.key", material::certified_key(chain, key_der, c, k))
        }
        _ => None,
    };
    let client_roots = client_ca
        .as_ref()
        .and_then(|ca| p.load("tls.client_ca", material::load_ca_bundle(ca)));
    let mut crls = Vec::new();
    let mut crls_ok = true;
    for path in &crl {
        match p.load("tls.crl", material::load_crls(path)) {
            Some(list) => crls.extend(list),
            None => crls_ok = false,
        }
    }

    let material = ServerTlsMaterial {
        certified_key: certified_key?,
        client_roots: Arc::new(client_roots?),
        crls,
        min_version: min_version?,
        // Set from tls.client_certificate once [tokens] is validated.
        client_certificate_optional: false,
    };
    if !crls_ok {
        return None;
    }
    // Build once here so that anything rustls itself refuses is a config
    // error rather than a start-up failure.
    let _ = p.load("tls", crate::tls::server::server_config(&material))?;
    Some(TlsConfig {
        cert: cert?,
        key: key?,
        client_ca: client_ca?,
        crl,
        material,
        handshake_timeout,
        // Decided with [tokens], in validate().
        client_certificate: super::ClientCertificate::Required,
    })
}

fn validate_upstream(p: &mut Problems, raw: RawUpstream, base: &Path) -> Option<UpstreamConfig> {
    let connect_timeout = p.duration(
        "upstream.connect_timeout",
        raw.connect_timeout.as_deref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let max_concurrent_streams = match raw.max_concurrent_streams {
        None => DEFAULT_UPSTREAM_STREAMS,
        Some(0) => {
            p.add("upstream.max_concurrent_streams", "must be at least 1");
            DEFAULT_UPSTREAM_STREAMS
        }
        Some(n) => n,
    };
    let max_connections = match raw.max_connections {
        None => DEFAULT_UPSTREAM_CONNECTIONS,
        Some(0) => {
            p.add("upstream.max_connections", "must be at least 1");
            DEFAULT_UPSTREAM_CONNECTIONS
        }
        Some(n) => n,
    };
    let max_connection_idle = p.duration(
        "upstream.max_connection_idle",
        raw.max_connection_idle.as_deref(),
        DEFAULT_UPSTREAM_IDLE,
    );
    if max_connection_idle < Duration::from_secs(1) {
        p.add(
            "upstream.max_connection_idle",
            "must be at least 1s (idle upstream connections are checked once a second at most)",
        );
    }
    let initial_stream_window_size = p.size(
        "upstream.initial_stream_window_size",
        raw.initial_stream_window_size,
        super::limits::DEFAULT_UPSTREAM_STREAM_WINDOW,
        16 * 1024,
        (1 << 31) - 1,
    ) as u32;
    let address = p.required("upstream.address", raw.address)?;
    let parsed = parse_upstream_address(&address);
    let (scheme, host, port) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            p.add("upstream.address", msg);
            return None;
        }
    };

    let tls = match scheme {
        UpstreamScheme::H2c => {
            for (key, present) in [
                ("upstream.ca", raw.ca.is_some()),
                ("upstream.cert", raw.cert.is_some()),
                ("upstream.key", raw.key.is_some()),
                ("upstream.server_name", raw.server_name.is_some()),
            ] {
                if present {
                    p.add(
                        key,
                        "only applies to an https:// upstream; upstream.address is http:// (plaintext h2c)",
                    );
                }
            }
            None
        }
        UpstreamScheme::Https => {
            let ca_path = p
                .required("upstream.ca", raw.ca)
                .map(|ca| resolve(base, &ca));
            let ca = ca_path
                .as_ref()
                .and_then(|ca| p.load("upstream.ca", material::load_ca_bundle(ca)));
            let mut cert_paths = None;
            let client_key = match (raw.cert, raw.key) {
                (Some(c), Some(k)) => {
                    // Each file under its own key, then the pair, as for
                    // tls.cert and tls.key.
                    let (c, k) = (resolve(base, &c), resolve(base, &k));
                    let chain = p.load("upstream.cert", material::load_cert_chain(&c));
                    let key_der = p.load("upstream.key", material::load_private_key(&k));
                    let pair = match (chain, key_der) {
                        (Some(chain), Some(key_der)) => p
                            .load(
                                "upstream.key",
                                material::certified_key(chain, key_der, &c, &k),
                            )
                            .map(Some),
                        _ => None,
                    };
                    cert_paths = Some((c, k));
                    pair
                }
                (None, None) => Some(None),
                (Some(_), None) => {
                    p.add("upstream.key", "is required when upstream.cert is set");
                    None
                }
                (None, Some(_)) => {
                    p.add("upstream.cert", "is required when upstream.key is set");
                    None
                }
            };
            let name = raw.server_name.unwrap_or_else(|| host.clone());
            let server_name = match ServerName::try_from(name.clone()) {
                Ok(n) => Some(n),
                Err(_) => {
                    p.add(
                        "upstream.server_name",
                        format!("{name:?} is not a valid DNS name or IP address"),
                    );
                    None
                }
            };
            Some(UpstreamTls {
                material: ClientTlsMaterial {
                    roots: Arc::new(ca?),
                    client_key: client_key?,
                },
                server_name: server_name?,
                ca: ca_path?,
                cert: cert_paths,
            })
        }
    };

    Some(UpstreamConfig {
        address,
        scheme,
        host,
        port,
        tls,
        connect_timeout,
        max_concurrent_streams,
        initial_stream_window_size,
        max_connections,
        max_connection_idle,
    })
}

/// `http://host:port` or `https://host:port`, nothing else.
fn parse_upstream_address(address: &str) -> Result<(UpstreamScheme, String, u16), String> {
    let uri: http::Uri = address.parse().map_err(|e| {
        format!("{address:?} is not a URL ({e}); write it like \"http://127.0.0.1:7233\"")
    })?;
    let scheme = match uri.scheme_str() {
        Some("http") => UpstreamScheme::H2c,
        Some("https") => UpstreamScheme::Https,
        _ => {
            return Err(format!(
                "{address:?} must start with http:// (plaintext h2c) or https:// (TLS)"
            ))
        }
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!("{address:?} must not have a path"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{address:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .ok_or_else(|| format!("{address:?} has no port (Temporal's frontend is usually :7233)"))?;
    Ok((scheme, host, port))
}

fn validate_shutdown(p: &mut Problems, raw: RawShutdown) -> ShutdownConfig {
    let unready_delay = match raw.unready_delay.as_deref() {
        None | Some("0s") | Some("0") => Duration::ZERO,
        Some(d) => p.duration("shutdown.unready_delay", Some(d), Duration::ZERO),
    };
    ShutdownConfig {
        drain_timeout: p.duration(
            "shutdown.drain_timeout",
            raw.drain_timeout.as_deref(),
            DEFAULT_DRAIN_TIMEOUT,
        ),
        unready_delay,
    }
}

pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9090";

fn validate_admin(p: &mut Problems, raw: RawAdmin) -> AdminConfig {
    let address = match raw.address.as_deref() {
        Some("") => None,
        other => {
            let text = other.unwrap_or(DEFAULT_ADMIN_ADDRESS);
            match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    p.add(
                        "admin.address",
                        format!(
                            "{text:?} is not an IP:port address (\"\" disables the admin listener)"
                        ),
                    );
                    None
                }
            }
        }
    };
    let max_namespace_labels = match raw.max_namespace_labels {
        None => 100,
        Some(n) if n <= 100_000 => n as usize,
        Some(n) => {
            p.add(
                "admin.max_namespace_labels",
                format!("{n} is more than 100000"),
            );
            100
        }
    };
    AdminConfig {
        address,
        max_namespace_labels,
        upstream_check_interval: p.duration(
            "admin.upstream_check_interval",
            raw.upstream_check_interval.as_deref(),
            Duration::from_secs(5),
        ),
        upstream_check_timeout: p.duration(
            "admin.upstream_check_timeout",
            raw.upstream_check_timeout.as_deref(),
            Duration::from_secs(2),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_address_forms() {
        assert_eq!(
            parse_upstream_address("http://127.0.0.1:7233").unwrap(),
            (UpstreamScheme::H2c, "127.0.0.1".into(), 7233)
        );
        assert_eq!(
            parse_upstream_address("https://temporal.example:443").unwrap(),
            (UpstreamScheme::Https, "temporal.example".into(), 443)
        );
        assert_eq!(
            parse_upstream_address("http://[::1]:7233").unwrap().1,
            "::1"
        );
        assert!(parse_upstream_address("127.0.0.1:7233")
            .unwrap_err()
            .contains("http://"));
        assert!(parse_upstream_address("http://host")
            .unwrap_err()
            .contains("no port"));
        assert!(parse_upstream_address("http://host:1/x")
            .unwrap_err()
            .contains("path"));
    }

    #[test]
    fn all_problems_reported_at_once() {
        let raw: RawConfig = toml::from_str(
            r#"
            [listen]
            address = "nope"
            [tls]
            min_version = "1.1"
            handshake_timeout = "ten seconds"
            [upstream]
            address = "http://127.0.0.1:7233"
            ca = "x.pem"
            "#,
        )
        .unwrap();
        let problems = validate(raw, Path::new("/nonexistent"), Vec::new()).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "listen.address",
            "tls.cert",
            "tls.key",
            "tls.client_ca",
            "tls.min_version",
            "tls.handshake_timeout",
            "upstream.ca",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }
}
