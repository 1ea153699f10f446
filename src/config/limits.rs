//! Validation of the wire policies: `[limits]` (message sizes, connections),
//! `[http2]` (the server's HTTP/2 settings) and `[keepalive]` (pings and
//! connection lifecycle). Defaults match the Temporal frontend and SDKs.

use std::time::Duration;

use super::problems::Problems;
use super::raw::{RawHttp2, RawKeepalive, RawLimits};
use super::{Http2Config, KeepaliveConfig, LimitsConfig};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// The frontend's receive limit (grpc-go's default).
pub const DEFAULT_MAX_REQUEST_MESSAGE: u32 = 4 * MIB as u32;
/// What the SDKs accept: large histories make responses over 4 MiB normal.
pub const DEFAULT_MAX_RESPONSE_MESSAGE: u32 = 128 * MIB as u32;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Four full-size requests in flight on one connection, read at once.
pub const DEFAULT_CONNECTION_BUFFER: u64 = 16 * MIB;
/// A slow link still sends 4 MiB in this time; a client that never finishes
/// its message does not hold the proxy's memory longer.
pub const DEFAULT_FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The proxy's receive window per upstream stream.
/// grpc-go's own default window; measured on loopback, 1 MiB responses
/// take no longer through it than through 8 MiB windows.
pub const DEFAULT_UPSTREAM_STREAM_WINDOW: u64 = 64 * KIB;

pub(super) fn validate_limits(p: &mut Problems, raw: Option<RawLimits>) -> LimitsConfig {
    let raw = raw.unwrap_or_default();
    let limits = LimitsConfig {
        max_request_message: p.size(
            "limits.max_request_message",
            raw.max_request_message,
            DEFAULT_MAX_REQUEST_MESSAGE.into(),
            1,
            u32::MAX.into(),
        ) as u32,
        max_response_message: p.size(
            "limits.max_response_message",
            raw.max_response_message,
            DEFAULT_MAX_RESPONSE_MESSAGE.into(),
            1,
            u32::MAX.into(),
        ) as u32,
        max_connections: p.count(
            "limits.max_connections",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS as u64,
            1,
            1_000_000,
        ) as usize,
        connection_buffer: p.size(
            "limits.connection_buffer",
            raw.connection_buffer,
            DEFAULT_CONNECTION_BUFFER,
            MIB,
            64 * 1024 * MIB,
        ) as usize,
        first_message_timeout: p.duration(
            "limits.first_message_timeout",
            raw.first_message_timeout.as_deref(),
            DEFAULT_FIRST_MESSAGE_TIMEOUT,
        ),
    };
    limits
}

pub(super) fn validate_http2(
    p: &mut Problems,
    raw: Option<RawHttp2>,
    limits: &LimitsConfig,
    connection_buffer_set: bool,
) -> Http2Config {
    let max_request = limits.max_request_message;
    let raw = raw.unwrap_or_default();
    let window_set = raw.initial_stream_window_size.is_some();
    let max_window = (1u64 << 31) - 1;
    let http2 = Http2Config {
        max_concurrent_streams: p.count(
            "http2.max_concurrent_streams",
            raw.max_concurrent_streams,
            1000,
            1,
            u32::MAX.into(),
        ) as u32,
        max_header_list_size: p.size(
            "http2.max_header_list_size",
            raw.max_header_list_size,
            64 * KIB,
            KIB,
            16 * MIB,
        ) as u32,
        initial_stream_window_size: p.size(
            "http2.initial_stream_window_size",
            raw.initial_stream_window_size,
            8 * MIB,
            64 * KIB,
            max_window,
        ) as u32,
        initial_connection_window_size: p.size(
            "http2.initial_connection_window_size",
            raw.initial_connection_window_size,
            32 * MIB,
            64 * KIB,
            max_window,
        ) as u32,
        // HTTP/2 allows 16 KiB to 16 MiB - 1.
        max_frame_size: p.size(
            "http2.max_frame_size",
            raw.max_frame_size,
            64 * KIB,
            16 * KIB,
            16 * MIB - 1,
        ) as u32,
        max_pending_accept_reset_streams: p.count(
            "http2.max_pending_accept_reset_streams",
            raw.max_pending_accept_reset_streams,
            20,
            1,
            100_000,
        ) as usize,
        max_local_error_reset_streams: p.count(
            "http2.max_local_error_reset_streams",
            raw.max_local_error_reset_streams,
            1024,
            1,
            1_000_000,
        ) as usize,
    };
    // One whole message, and a frame either side of it, must always fit in
    // the connection's buffer.
    let needed = u64::from(max_request) + 2 * u64::from(http2.max_frame_size);
    if connection_buffer_set && (limits.connection_buffer as u64) < needed {
        p.add(
            "limits.connection_buffer",
            format!(
                "{} bytes is below limits.max_request_message ({max_request}) plus two frames of http2.max_frame_size ({}): a full-size request could never be read",
                limits.connection_buffer, http2.max_frame_size
            ),
        );
    }
    if u64::from(http2.initial_stream_window_size) < u64::from(max_request) && window_set {
        p.add(
            "http2.initial_stream_window_size",
            format!(
                "{} bytes is below limits.max_request_message ({max_request}): a full-size request would wait on WINDOW_UPDATE round trips",
                http2.initial_stream_window_size
            ),
        );
    }
    http2
}

pub(super) fn validate_keepalive(p: &mut Problems, raw: Option<RawKeepalive>) -> KeepaliveConfig {
    let raw = raw.unwrap_or_default();
    let secs = Duration::from_secs;
    let k = KeepaliveConfig {
        min_client_ping_interval: p.duration(
            "keepalive.min_client_ping_interval",
            raw.min_client_ping_interval.as_deref(),
            secs(10),
        ),
        permit_without_stream: raw.permit_without_stream.unwrap_or(true),
        ping_interval: p.duration(
            "keepalive.ping_interval",
            raw.ping_interval.as_deref(),
            secs(60),
        ),
        ping_timeout: p.duration(
            "keepalive.ping_timeout",
            raw.ping_timeout.as_deref(),
            secs(10),
        ),
        max_connection_idle: p.duration(
            "keepalive.max_connection_idle",
            raw.max_connection_idle.as_deref(),
            secs(120),
        ),
        max_connection_age: p.duration(
            "keepalive.max_connection_age",
            raw.max_connection_age.as_deref(),
            secs(300),
        ),
        max_connection_age_grace: p.duration(
            "keepalive.max_connection_age_grace",
            raw.max_connection_age_grace.as_deref(),
            secs(80),
        ),
        upstream_ping_interval: p.duration(
            "keepalive.upstream_ping_interval",
            raw.upstream_ping_interval.as_deref(),
            secs(30),
        ),
        upstream_ping_timeout: p.duration(
            "keepalive.upstream_ping_timeout",
            raw.upstream_ping_timeout.as_deref(),
            secs(10),
        ),
    };
    if k.upstream_ping_interval < secs(10) {
        p.add(
            "keepalive.upstream_ping_interval",
            "must be at least 10s: the Temporal frontend answers more frequent pings with GOAWAY too_many_pings",
        );
    }
    k
}
