//! The settings in force, as a config file: every key with its value after
//! validation (defaults filled in, relative paths resolved), for
//! `--check-config --verbose`. The text is itself a valid config that
//! validates to the same settings, so it can be kept as a record of what a
//! deployment runs with, or diffed against another one.

use std::fmt::Write as _;
use std::time::Duration;

use crate::authz::{Mode, Role};
use crate::tls::server::MinTlsVersion;

use super::{AuditTarget, ClientCertificate, Config};
use crate::token::KeySource;

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn path(p: &std::path::Path) -> String {
    q(&p.display().to_string())
}

/// A duration as the config writes it ("1m 30s"; humantime reads it back).
fn duration(d: Duration) -> String {
    q(&humantime::format_duration(d).to_string())
}

/// A size in the largest unit that states it exactly.
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return q(&format!("{}{name}", bytes / unit));
        }
    }
    bytes.to_string()
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(", "))
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Reader => "reader",
        Role::Writer => "writer",
        Role::Worker => "worker",
        Role::Admin => "admin",
    }
}

impl Config {
    /// The settings in force as TOML; `origin` names where they came from
    /// in the heading comment.
    pub fn effective_toml(&self, origin: &str) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the results are ignored below.
        let o = &mut out;
        let _ = writeln!(
            o,
            "# Settings in force for {origin}: every key, defaults included,\n\
             # paths resolved. A valid config with the same settings."
        );

        let _ = writeln!(o, "\n[listen]");
        let _ = writeln!(o, "address = {}", q(&self.listen.address.to_string()));
        let _ = writeln!(o, "proxy_protocol = {}", self.listen.proxy_protocol);

        let tls = &self.tls;
        let _ = writeln!(o, "\n[tls]");
        let _ = writeln!(o, "cert = {}", path(&tls.cert));
        let _ = writeln!(o, "key = {}", path(&tls.key));
        let _ = writeln!(o, "client_ca = {}", path(&tls.client_ca));
        let _ = writeln!(o, "crl = {}", list(tls.crl.iter().map(|p| path(p))));
        let min = match tls.material.min_version {
            MinTlsVersion::Tls12 => "1.2",
            MinTlsVersion::Tls13 => "1.3",
        };
        let _ = writeln!(o, "min_version = {}", q(min));
        let _ = writeln!(o, "handshake_timeout = {}", duration(tls.handshake_timeout));
        let client_certificate = match tls.client_certificate {
            ClientCertificate::Required => "required",
            ClientCertificate::Optional => "optional",
        };
        let _ = writeln!(o, "client_certificate = {}", q(client_certificate));

        let up = &self.upstream;
        let _ = writeln!(o, "\n[upstream]");
        let _ = writeln!(o, "address = {}", q(&up.address));
        if let Some(t) = &up.tls {
            let _ = writeln!(o, "ca = {}", path(&t.ca));
            if let Some((cert, key)) = &t.cert {
                let _ = writeln!(o, "cert = {}", path(cert));
                let _ = writeln!(o, "key = {}", path(key));
            }
            let _ = writeln!(o, "server_name = {}", q(&t.server_name.to_str()));
        }
        let _ = writeln!(o, "connect_timeout = {}", duration(up.connect_timeout));
        let _ = writeln!(o, "max_concurrent_streams = {}", up.max_concurrent_streams);
        let _ = writeln!(o, "max_connections = {}", up.max_connections);
        let _ = writeln!(
            o,
            "max_connection_idle = {}",
            duration(up.max_connection_idle)
        );
        let _ = writeln!(
            o,
            "initial_stream_window_size = {}",
            size(up.initial_stream_window_size.into())
        );

        let _ = writeln!(o, "\n[shutdown]");
        let _ = writeln!(
            o,
            "drain_timeout = {}",
            duration(self.shutdown.drain_timeout)
        );
        let _ = writeln!(
            o,
            "unready_delay = {}",
            duration(self.shutdown.unready_delay)
        );

        match &self.authz {
            None => {
                let _ = writeln!(
                    o,
                    "\n# No [authz]: every client the CA admits may call everything."
                );
            }
            Some(policy) => {
                let mode = match policy.mode {
                    Mode::Enforce => "enforce",
                    Mode::Audit => "audit",
                };
                let _ = writeln!(o, "\n[authz]\nmode = {}", q(mode));
                for rule in &policy.rules {
                    let _ = writeln!(o, "\n[[authz.rule]]");
                    let _ = writeln!(o, "name = {}", q(&rule.name));
                    let mut matchers: Vec<String> = rule
                        .matchers
                        .iter()
                        .map(|(field, pattern)| {
                            format!("{} = {}", field.name(), q(pattern.as_str()))
                        })
                        .collect();
                    if let Some(t) = &rule.token {
                        let mut fields = vec![format!("issuer = {}", q(&t.issuer))];
                        if let Some(sub) = &t.sub {
                            fields.push(format!("sub = {}", q(sub.as_str())));
                        }
                        if !t.claims.is_empty() {
                            let claims: Vec<String> = t
                                .claims
                                .iter()
                                .map(|(path, p)| format!("{} = {}", q(path), q(p.as_str())))
                                .collect();
                            fields.push(format!("claims = {{ {} }}", claims.join(", ")));
                        }
                        matchers.push(format!("token = {{ {} }}", fields.join(", ")));
                    }
                    let _ = writeln!(o, "match = {{ {} }}", matchers.join(", "));
                    let _ = writeln!(
                        o,
                        "namespaces = {}",
                        list(rule.namespaces.iter().map(|p| q(p.as_str())))
                    );
                    let _ = writeln!(
                        o,
                        "roles = {}",
                        list(rule.roles.iter().map(|r| q(role(*r))))
                    );
                    if !rule.methods.is_empty() {
                        let _ =
                            writeln!(o, "methods = {}", list(rule.methods.iter().map(|m| q(m))));
                    }
                }
            }
        }

        let id = &self.identity;
        let _ = writeln!(o, "\n[identity]");
        if let Some(h) = &id.header {
            let _ = writeln!(o, "header = {}", q(h.as_str()));
        }
        let _ = writeln!(
            o,
            "strip = {}",
            list(id.strip.iter().map(|h| q(h.as_str())))
        );

        match &self.audit {
            None => {
                let _ = writeln!(o, "\n# No [audit]: no audit lines.");
            }
            Some(a) => {
                let sink = match &a.target {
                    AuditTarget::Stdout => q("stdout"),
                    AuditTarget::File(p) => path(p),
                };
                let _ = writeln!(o, "\n[audit]\nsink = {sink}\nbuffer = {}", a.buffer);
            }
        }

        let l = &self.limits;
        let _ = writeln!(o, "\n[limits]");
        let _ = writeln!(
            o,
            "max_request_message = {}",
            size(l.max_request_message.into())
        );
        let _ = writeln!(
            o,
            "max_response_message = {}",
            size(l.max_response_message.into())
        );
        let _ = writeln!(o, "max_connections = {}", l.max_connections);
        let _ = writeln!(
            o,
            "connection_buffer = {}",
            size(l.connection_buffer as u64)
        );
        let _ = writeln!(
            o,
            "first_message_timeout = {}",
            duration(l.first_message_timeout)
        );

        let h = &self.http2;
        let _ = writeln!(o, "\n[http2]");
        let _ = writeln!(o, "max_concurrent_streams = {}", h.max_concurrent_streams);
        let _ = writeln!(
            o,
            "max_header_list_size = {}",
            size(h.max_header_list_size.into())
        );
        let _ = writeln!(
            o,
            "initial_stream_window_size = {}",
            size(h.initial_stream_window_size.into())
        );
        let _ = writeln!(
            o,
            "initial_connection_window_size = {}",
            size(h.initial_connection_window_size.into())
        );
        let _ = writeln!(o, "max_frame_size = {}", size(h.max_frame_size.into()));
        let _ = writeln!(
            o,
            "max_pending_accept_reset_streams = {}",
            h.max_pending_accept_reset_streams
        );
        let _ = writeln!(
            o,
            "max_local_error_reset_streams = {}",
            h.max_local_error_reset_streams
        );

        let k = &self.keepalive;
        let _ = writeln!(o, "\n[keepalive]");
        let _ = writeln!(
            o,
            "min_client_ping_interval = {}",
            duration(k.min_client_ping_interval)
        );
        let _ = writeln!(o, "permit_without_stream = {}", k.permit_without_stream);
        let _ = writeln!(o, "ping_interval = {}", duration(k.ping_interval));
        let _ = writeln!(o, "ping_timeout = {}", duration(k.ping_timeout));
        let _ = writeln!(
            o,
            "max_connection_idle = {}",
            duration(k.max_connection_idle)
        );
        let _ = writeln!(o, "max_connection_age = {}", duration(k.max_connection_age));
        let _ = writeln!(
            o,
            "max_connection_age_grace = {}",
            duration(k.max_connection_age_grace)
        );
        let _ = writeln!(
            o,
            "upstream_ping_interval = {}",
            duration(k.upstream_ping_interval)
        );
        let _ = writeln!(
            o,
            "upstream_ping_timeout = {}",
            duration(k.upstream_ping_timeout)
        );

        let a = &self.admin;
        let _ = writeln!(o, "\n[admin]");
        let address = a.address.map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(o, "address = {}", q(&address));
        let _ = writeln!(o, "max_namespace_labels = {}", a.max_namespace_labels);
        let _ = writeln!(
            o,
            "upstream_check_interval = {}",
            duration(a.upstream_check_interval)
        );
        let _ = writeln!(
            o,
            "upstream_check_timeout = {}",
            duration(a.upstream_check_timeout)
        );

        match &self.tokens {
            None => {
                let _ = writeln!(o, "\n# No [tokens]: bearer tokens are not verified.");
            }
            Some(t) => {
                let _ = writeln!(o, "\n[tokens]\nforward = {}", t.forward);
                for i in &t.issuers {
                    let _ = writeln!(o, "\n[[tokens.issuer]]");
                    let _ = writeln!(o, "name = {}", q(&i.name));
                    let _ = writeln!(o, "issuer = {}", q(&i.issuer));
                    let _ = writeln!(o, "audiences = {}", list(i.audiences.iter().map(|a| q(a))));
                    match &i.source {
                        KeySource::File { path: p, .. } => {
                            let _ = writeln!(o, "jwks = {}", path(p));
                        }
                        KeySource::Url(url) => {
                            let _ = writeln!(o, "jwks_url = {}", q(url));
                        }
                        KeySource::Discovery => {
                            let _ = writeln!(o, "discovery = true");
                        }
                    }
                    if let Some((ca, _)) = &i.jwks_ca {
                        let _ = writeln!(o, "jwks_ca = {}", path(ca));
                    }
                    let _ = writeln!(
                        o,
                        "algorithms = {}",
                        list(i.algorithms.iter().map(|a| q(a.name())))
                    );
                    let _ = writeln!(o, "clock_skew = {}", duration(i.clock_skew));
                    let _ = writeln!(o, "max_lifetime = {}", duration(i.max_lifetime));
                    if !matches!(i.source, KeySource::File { .. }) {
                        let _ = writeln!(o, "refresh = {}", duration(i.refresh));
                    }
                }
            }
        }

        let _ = writeln!(o, "\n[health]\nlocal = {}", self.health_local);

        let _ = writeln!(o, "\n[runtime]");
        match self.worker_threads {
            Some(n) => {
                let _ = writeln!(o, "worker_threads = {n}");
            }
            None => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                let _ = writeln!(
                    o,
                    "# worker_threads: not set, one per CPU ({cpus} on this machine)"
                );
            }
        }
        out
    }
}
