//! HTTP/2 frames for structured fuzz inputs: what a client or server may
//! send, encoded as bytes, and a plain frame walker over such bytes.

use arbitrary::Arbitrary;

pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub fn head(len: usize, kind: u8, flags: u8, stream: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
    head(payload.len(), kind, flags, stream, out);
    out.extend_from_slice(payload);
}

/// Header names a request may carry, valid for h2 and grpc-go alike.
pub const NAMES: [&str; 12] = [
    ":method",
    ":scheme",
    ":path",
    ":authority",
    "content-type",
    "te",
    "grpc-timeout",
    "temporal-namespace",
    "user-agent",
    "grpc-encoding",
    "x-custom",
    "authorization",
];

/// A field valid for h2 and grpc-go (so the header check passes it as is).
#[derive(Debug, Clone, Arbitrary)]
pub struct ValidField {
    pub name: u8,
    pub value: Vec<u8>,
}

impl ValidField {
    pub fn render(&self) -> (Vec<u8>, Vec<u8>) {
        let name = NAMES[usize::from(self.name) % NAMES.len()];
        let value: Vec<u8> = match name {
            ":method" => b"POST".to_vec(),
            ":scheme" => b"https".to_vec(),
            // Visible ASCII the header check keeps in a path.
            ":path" => self
                .value
                .iter()
                .map(|&b| {
                    let c = 0x21 + b % 0x5e;
                    if matches!(c, b'#' | b'<' | b'>' | b'`') {
                        b'/'
                    } else {
                        c
                    }
                })
                .collect(),
            // Printable ASCII and tab.
            _ => self
                .value
                .iter()
                .map(|&b| if b % 97 == 0 { b'\t' } else { 0x20 + b % 0x5f })
                .collect(),
        };
        (name.as_bytes().to_vec(), value)
    }
}

/// One client (or server) frame.
#[derive(Debug, Clone, Arbitrary)]
pub enum Frame {
    /// A header block: valid fields HPACK-encoded (`Some`), or raw bytes as
    /// the block; cut into a HEADERS and CONTINUATIONs at the given sizes.
    Headers {
        stream: u8,
        end_stream: bool,
        fields: Option<Vec<ValidField>>,
        raw: Vec<u8>,
        cuts: Vec<u8>,
        padding: Option<u8>,
        priority: bool,
    },
    Data {
        stream: u8,
        end_stream: bool,
        payload: Vec<u8>,
    },
    Ping {
        ack: bool,
        data: u64,
    },
    Settings {
        ack: bool,
        payload: Vec<u8>,
    },
    WindowUpdate {
        stream: u8,
        increment: u32,
    },
    RstStream {
        stream: u8,
        code: u32,
    },
    GoAway {
        last: u32,
        code: u32,
    },
    Priority {
        stream: u8,
    },
    Other {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    },
    Raw(Vec<u8>),
}

pub const HEADERS: u8 = 1;
pub const CONTINUATION: u8 = 9;

impl Frame {
    /// Whether this frame is valid as the header check sees it (passed
    /// unchanged): valid fields, no zero window increment, nothing raw.
    pub fn is_valid(&self) -> bool {
        match self {
            Frame::Headers { fields, .. } => fields.is_some(),
            Frame::WindowUpdate { increment, stream } => {
                *stream == 0 || *increment & 0x7fff_ffff != 0
            }
            Frame::Raw(_) => false,
            Frame::Other { kind, .. } => !matches!(*kind, HEADERS | CONTINUATION | 8),
            _ => true,
        }
    }

    /// For a HEADERS frame of valid fields: its stream, and whether a
    /// pseudo-header is among the fields.
    pub fn valid_headers(&self) -> Option<(u32, bool)> {
        match self {
            Frame::Headers {
                stream,
                fields: Some(fields),
                ..
            } => Some((
                u32::from(*stream) * 2 + 1,
                fields
                    .iter()
                    .any(|f| NAMES[usize::from(f.name) % NAMES.len()].starts_with(':')),
            )),
            _ => None,
        }
    }

    pub fn encode(&self, hpack: &mut loona_hpack::Encoder<'_>, out: &mut Vec<u8>) {
        match self {
            Frame::Headers {
                stream,
                end_stream,
                fields,
                raw,
                cuts,
                padding,
                priority,
            } => {
                let stream = u32::from(*stream) * 2 + 1;
                let block = match fields {
                    Some(fields) => {
                        let rendered: Vec<_> = fields.iter().map(ValidField::render).collect();
                        hpack.encode(rendered.iter().map(|(n, v)| (&n[..], &v[..])))
                    }
                    None => raw.clone(),
                };
                let mut pieces = crate::cut(&block, cuts);
                if pieces.is_empty() {
                    pieces.push(bytes::Bytes::new());
                }
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    let end_headers = if i == last { 0x4 } else { 0 };
                    if i == 0 {
                        let mut payload = Vec::new();
                        let mut flags = end_headers | if *end_stream { 0x1 } else { 0 };
                        if let Some(p) = padding {
                            flags |= 0x8;
                            payload.push(*p % 8);
                        }
                        if *priority {
                            flags |= 0x20;
                            payload.extend_from_slice(&[0, 0, 0, 0, 15]);
                        }
                        payload.extend_from_slice(piece);
                        if let Some(p) = padding {
                            payload.extend(std::iter::repeat(0).take(usize::from(*p % 8)));
                        }
                        frame(HEADERS, flags, stream, &payload, out);
                    } else {
                        frame(CONTINUATION, end_headers, stream, piece, out);
                    }
                }
            }
            Frame::Data {
                stream,
                end_stream,
                payload,
            } => frame(
                0,
                u8::from(*end_stream),
                u32::from(*stream) * 2 + 1,
                payload,
                out,
            ),
            Frame::Ping { ack, data } => frame(6, u8::from(*ack), 0, &data.to_be_bytes(), out),
            Frame::Settings { ack, payload } => {
                let n = payload.len() / 6 * 6;
                frame(4, u8::from(*ack), 0, &payload[..n], out)
            }
            Frame::WindowUpdate { stream, increment } => {
                frame(8, 0, u32::from(*stream), &increment.to_be_bytes(), out)
            }
            Frame::RstStream { stream, code } => {
                frame(3, 0, u32::from(*stream) * 2 + 1, &code.to_be_bytes(), out)
            }
            Frame::GoAway { last, code } => {
                let mut p = (last & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&code.to_be_bytes());
                frame(7, 0, 0, &p, out)
            }
            Frame::Priority { stream } => {
                frame(2, 0, u32::from(*stream) * 2 + 1, &[0, 0, 0, 0, 16], out)
            }
            Frame::Other {
                kind,
                flags,
                stream,
                payload,
            } => frame(*kind, *flags, stream & 0x7fff_ffff, payload, out),
            Frame::Raw(b) => out.extend_from_slice(b),
        }
    }
}

/// A frame head as read from bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The frames of `bytes` (heads and payloads) as far as they are whole.
pub fn frames(bytes: &[u8]) -> Vec<(Head, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let h = Head {
            len: u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize,
            kind: rest[3],
            flags: rest[4],
            stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff,
        };
        if rest.len() < 9 + h.len {
            break;
        }
        out.push((h, &rest[9..9 + h.len]));
        rest = &rest[9 + h.len..];
    }
    out
}

/// Offsets at which frames of `bytes` end (0 included).
pub fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0];
    let mut pos = 0;
    for (h, _) in frames(bytes) {
        pos += 9 + h.len;
        out.push(pos);
    }
    out
}
