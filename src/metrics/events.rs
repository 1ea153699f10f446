//! The closed vocabularies of label values: what the rest of the proxy
//! reports (a refusal, a keepalive event, an upstream failure, a message
//! refused for its size) and the exposition formats.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, for `curl` and for
    /// scrapers that do not ask for OpenMetrics.
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// Picks the format for a request's `Accept` header: OpenMetrics when the
    /// client accepts `application/openmetrics-text` at all (with a non-zero
    /// q), the Prometheus text format otherwise. This is how the Go client's
    /// `promhttp` negotiates, and what Prometheus, which always lists
    /// OpenMetrics, expects.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && parts.all(|param| {
                    let (key, value) = param.split_once('=').unwrap_or((param, ""));
                    !key.trim().eq_ignore_ascii_case("q")
                        || value.trim().parse::<f32>().map_or(true, |q| q > 0.0)
                })
        });
        if openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// Why a connection was refused before its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `limits.max_connections` client connections were already open.
    MaxConnections,
}

impl ConnectionRefusal {
    pub(super) const ALL: [ConnectionRefusal; 1] = [ConnectionRefusal::MaxConnections];

    pub(super) fn label(self) -> &'static str {
        match self {
            ConnectionRefusal::MaxConnections => "max_connections",
        }
    }
}

/// Which way a message over the size limit was travelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageDirection {
    /// Client to upstream.
    Request,
    /// Upstream to client.
    Response,
}

impl MessageDirection {
    pub(super) const ALL: [MessageDirection; 2] =
        [MessageDirection::Request, MessageDirection::Response];

    pub fn label(self) -> &'static str {
        match self {
            MessageDirection::Request => "request",
            MessageDirection::Response => "response",
        }
    }
}

/// A keepalive or connection-lifetime policy acting on a client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepaliveEvent {
    /// The client pinged more often than allowed and got GOAWAY.
    TooManyPings,
    /// A keepalive ping went unanswered and the connection was closed.
    PingTimeout,
    /// The connection was closed for having no calls for too long.
    IdleClosed,
    /// The connection reached its maximum age and was rotated.
    AgeClosed,
    /// The client sent SETTINGS too often and got GOAWAY.
    TooManySettings,
    /// The client reset streams too often and got GOAWAY.
    TooManyResets,
    /// The client sent more WINDOW_UPDATE frames than the DATA it was sent
    /// explains, and got GOAWAY.
    TooManyWindowUpdates,
    /// The client sent more PRIORITY frames than its streams explain, and
    /// got GOAWAY.
    TooManyPriorityFrames,
    /// TLS was done but no HTTP/2 preface followed within
    /// `tls.handshake_timeout`: the connection was closed.
    PrefaceTimeout,
}

impl KeepaliveEvent {
    pub(super) const ALL: [KeepaliveEvent; 9] = [
        KeepaliveEvent::TooManyPings,
        KeepaliveEvent::PingTimeout,
        KeepaliveEvent::IdleClosed,
        KeepaliveEvent::AgeClosed,
        KeepaliveEvent::TooManySettings,
        KeepaliveEvent::TooManyResets,
        KeepaliveEvent::TooManyWindowUpdates,
        KeepaliveEvent::TooManyPriorityFrames,
        KeepaliveEvent::PrefaceTimeout,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            KeepaliveEvent::TooManyPings => "too_many_pings",
            KeepaliveEvent::PingTimeout => "ping_timeout",
            KeepaliveEvent::IdleClosed => "idle_closed",
            KeepaliveEvent::AgeClosed => "age_closed",
            KeepaliveEvent::TooManySettings => "too_many_settings",
            KeepaliveEvent::TooManyResets => "too_many_resets",
            KeepaliveEvent::TooManyWindowUpdates => "too_many_window_updates",
            KeepaliveEvent::TooManyPriorityFrames => "too_many_priority_frames",
            KeepaliveEvent::PrefaceTimeout => "preface_timeout",
        }
    }
}

/// Why a new upstream connection could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The frontend refused the TCP connection.
    Refused,
    /// No connection within `upstream.connect_timeout`.
    Timeout,
    /// The TLS handshake with the frontend failed.
    Tls,
    /// The HTTP/2 handshake with the frontend failed.
    Handshake,
    /// Anything else (DNS, I/O).
    Other,
}

impl UpstreamFailure {
    pub(super) const ALL: [UpstreamFailure; 5] = [
        UpstreamFailure::Refused,
        UpstreamFailure::Timeout,
        UpstreamFailure::Tls,
        UpstreamFailure::Handshake,
        UpstreamFailure::Other,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            UpstreamFailure::Refused => "refused",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Tls => "tls",
            UpstreamFailure::Handshake => "handshake",
            UpstreamFailure::Other => "other",
        }
    }
}
