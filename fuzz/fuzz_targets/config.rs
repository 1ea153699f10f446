//! The config loader (`Config::from_toml`) on arbitrary text, with relative
//! paths resolved in a folder holding a real CA, server certificate, key
//! and CRL (so that whole configs load).
//!
//! - Never a panic.
//! - A syntax error says where (a span inside the text) and starts with the
//!   origin; a validation error lists at least one problem, and every
//!   problem names a key of the config schema (`section.key`, or a rule of
//!   `authz.rule[N]`) and says something.
//! - A config that loads watches only files that exist.
//!
//! Texts whose file keys name an absolute path or go up (`..`) are skipped:
//! the loader reads the files a config names, and a fuzzer must not make it
//! read the machine's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::{Config, ConfigError};
use temporal_mtls_proxy_fuzz::pki;

const SECTIONS: [(&str, &[&str]); 14] = [
    ("listen", &["address", "proxy_protocol"]),
    (
        "tls",
        &[
            "cert",
            "key",
            "client_ca",
            "crl",
            "min_version",
            "handshake_timeout",
            "client_certificate",
        ],
    ),
    (
        "upstream",
        &[
            "address",
            "ca",
            "cert",
            "key",
            "server_name",
            "connect_timeout",
            "max_concurrent_streams",
            "initial_stream_window_size",
            "max_connections",
            "max_connection_idle",
        ],
    ),
    ("shutdown", &["drain_timeout", "unready_delay"]),
    ("authz", &["mode", "rule"]),
    ("identity", &["header", "strip"]),
    ("audit", &["sink", "buffer"]),
    (
        "limits",
        &[
            "max_request_message",
            "max_response_message",
            "max_connections",
            "connection_buffer",
            "first_message_timeout",
        ],
    ),
    (
        "http2",
        &[
            "max_concurrent_streams",
            "max_header_list_size",
            "initial_stream_window_size",
            "initial_connection_window_size",
            "max_frame_size",
            "max_pending_accept_reset_streams",
            "max_local_error_reset_streams",
        ],
    ),
    (
        "keepalive",
        &[
            "min_client_ping_interval",
            "permit_without_stream",
            "ping_interval",
            "ping_timeout",
            "max_connection_idle",
            "max_connection_age",
            "max_connection_age_grace",
            "upstream_ping_interval",
            "upstream_ping_timeout",
        ],
    ),
    (
        "admin",
        &[
            "address",
            "max_namespace_labels",
            "upstream_check_interval",
            "upstream_check_timeout",
        ],
    ),
    ("health", &["local"]),
    ("runtime", &["worker_threads"]),
    ("tokens", &["forward", "issuer"]),
];

fn known_key(key: &str) -> bool {
    if key.starts_with("authz.rule[") || key.starts_with("tokens.issuer[") {
        return true;
    }
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    SECTIONS
        .iter()
        .any(|(s, fields)| *s == section && (field.is_empty() || fields.contains(&field)))
}

/// The last key of a dotted key path, without an `[N]` index.
fn last_segment(key: &str) -> &str {
    let last = key.rsplit('.').next().unwrap_or(key);
    last.split('[').next().unwrap_or(last)
}

/// Whether `key` is a key anywhere in the document.
fn has_key(table: &toml::Table, key: &str) -> bool {
    fn value_has(v: &toml::Value, key: &str) -> bool {
        match v {
            toml::Value::Table(t) => has_key(t, key),
            toml::Value::Array(a) => a.iter().any(|v| value_has(v, key)),
            _ => false,
        }
    }
    table.iter().any(|(k, v)| k == key || value_has(v, key))
}

/// The keys whose values are files the loader reads.
const FILE_KEYS: [(&str, &str); 8] = [
    ("tls", "cert"),
    ("tls", "key"),
    ("tls", "client_ca"),
    ("tls", "crl"),
    ("upstream", "ca"),
    ("upstream", "cert"),
    ("upstream", "key"),
    ("audit", "sink"),
];

/// Whether a file name could lead outside the folder.
fn escapes(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => {
            s.starts_with('/') || s.starts_with('\\') || s.contains("..") || s.starts_with('~')
        }
        toml::Value::Array(a) => a.iter().any(escapes),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Text that is not TOML stops at the syntax error, before any file.
    if let Ok(doc) = text.parse::<toml::Table>() {
        let named = FILE_KEYS
            .iter()
            .filter_map(|(section, key)| doc.get(*section)?.get(*key));
        if named.into_iter().any(escapes) {
            return;
        }
        // Token issuers' key files, in an array of tables.
        let issuers = doc
            .get("tokens")
            .and_then(|t| t.get("issuer"))
            .and_then(|i| i.as_array());
        let issuer_files = issuers
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_table())
            .flat_map(|i| ["jwks", "jwks_ca"].into_iter().filter_map(|k| i.get(k)));
        if issuer_files.into_iter().any(escapes) {
            return;
        }
    }
    let base = pki::dir();
    let loaded = Config::from_toml(text, base, "fuzz.toml");
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        match &loaded {
            Ok(_) => eprintln!("loaded"),
            Err(e) => eprintln!("{e}"),
        }
    }
    match loaded {
        Ok(config) => {
            for f in config.watched_files() {
                assert!(f.is_file(), "watches {} which is not a file", f.display());
            }
        }
        Err(ConfigError::Syntax { origin, source }) => {
            assert_eq!(origin, "fuzz.toml");
            // A syntax error says where, but for nesting past the parser's
            // recursion limit, which has no position (the message says so).
            let Some(span) = source.span() else {
                let shown = ConfigError::Syntax { origin, source }.to_string();
                assert!(shown.contains("no position known"), "{shown}");
                return;
            };
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "span {span:?} outside the text"
            );
        }
        Err(ConfigError::Invalid { origin, problems }) => {
            assert_eq!(origin, "fuzz.toml");
            assert!(!problems.is_empty(), "invalid with no problem");
            let doc = text.parse::<toml::Table>().ok();
            for p in &problems {
                // A key of the schema, or one the text wrote (an unknown key
                // is named as written).
                // (Text toml::Table refuses, e.g. an integer out of range
                // as the value of an unknown key: the key as text.)
                // Keys may hold `.` or `[` themselves: the text as the
                // last resort.
                let written = doc
                    .as_ref()
                    .is_some_and(|d| has_key(d, last_segment(&p.key)))
                    || text.contains(last_segment(&p.key));
                assert!(
                    known_key(&p.key) || written,
                    "problem names no key: {:?}: {}",
                    p.key,
                    p.message
                );
                assert!(!p.message.trim().is_empty(), "{}: empty message", p.key);
            }
        }
        Err(ConfigError::Read { .. }) => panic!("from_toml read no file of its own"),
    }
});
