//! gRPC length-prefixed messages on the request side: the 5-byte prefix,
//! reading the first message of a request body while keeping the bytes as
//! they came for forwarding, and bounded gzip decompression.
//!
//! What policy needs (the namespace) is in the first message; everything
//! read here is forwarded unchanged, so the upstream sees exactly what the
//! client sent.

use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;

use super::budget::ConnBudget;

/// Length of the prefix before each gRPC message: a compressed flag and a
/// big-endian u32 length.
pub const PREFIX_LEN: usize = 5;

/// The buffer for a message spread over several data frames starts at most
/// this big and doubles up to the declared length, so a client declaring
/// 4 MiB and sending five bytes does not get 4 MiB reserved for it.
const SPREAD_INITIAL_CAPACITY: usize = 64 * 1024;

/// Same idea for decompression output: start small, double, never past the
/// limit.
const DECOMPRESS_INITIAL_CAPACITY: usize = 8 * 1024;

/// A parsed message prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub compressed: bool,
    pub len: u32,
}

/// Why the first message of a request could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid gRPC compressed flag {0} (must be 0 or 1)")]
    BadFlag(u8),
    /// `size` is the declared length; after decompression it is where
    /// decompression stopped (`limit + 1`), not the full size.
    #[error(fmt = fmt_too_large)]
    TooLarge {
        size: u64,
        limit: u64,
        decompressed: bool,
    },
    /// `expected` counts the bytes of the whole message with its prefix
    /// (just the prefix when that was not complete), `got` the bytes that
    /// came before the body ended.
    #[error("request body ended inside a gRPC message ({got} of {expected} bytes)")]
    Truncated { expected: u64, got: u64 },
    #[error("request body ended without a gRPC message")]
    Empty,
    #[error("gRPC message is flagged compressed but the call has no grpc-encoding")]
    CompressedWithoutEncoding,
    #[error("unsupported grpc-encoding {0:?} (only gzip is supported)")]
    UnsupportedEncoding(String),
    /// The gzip stream could not be opened (its header), in the Go
    /// runtime's words.
    #[error("cannot decompress gRPC message: {0}")]
    DecompressHeader(&'static str),
    /// The gzip stream broke while being read, in the Go runtime's words.
    #[error("cannot decompress gRPC message: {0}")]
    Decompress(&'static str),
    #[error("request body failed: {0}")]
    Body(String),
    /// The message was not complete within the connection's limit.
    #[error("the request message did not arrive in full within {} (limits.first_message_timeout)", humantime::format_duration(*.0))]
    TooSlow(Duration),
}

fn fmt_too_large(
    size: &u64,
    limit: &u64,
    decompressed: &bool,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    if *decompressed {
        write!(
            f,
            "gRPC message exceeds the limit of {limit} bytes after decompression \
             (stopped at {size} bytes)"
        )
    } else {
        write!(
            f,
            "gRPC message of {size} bytes exceeds the limit of {limit} bytes"
        )
    }
}

/// Parses the 5-byte prefix. Flags other than 0 and 1 are refused, as
/// grpc-go does.
pub fn parse_prefix(b: [u8; PREFIX_LEN]) -> Result<Prefix, FrameError> {
    let [flag, l0, l1, l2, l3] = b;
    let compressed = match flag {
        0 => false,
        1 => true,
        other => return Err(FrameError::BadFlag(other)),
    };
    Ok(Prefix {
        compressed,
        len: u32::from_be_bytes([l0, l1, l2, l3]),
    })
}

/// Decompresses a compressed message (only "gzip"), refusing output larger
/// than `limit` bytes without ever producing more than `limit + 1` bytes,
/// so a small zip bomb costs at most the limit in memory and time.
///
/// `encoding` is the call's `grpc-encoding` header. Concatenated gzip
/// members are all decoded, as Go's `gzip.Reader` (the frontend's
/// decompressor) does: decoding only the first member would let a second
/// member carry fields the proxy never saw.
pub fn decompress(
    encoding: Option<&str>,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, FrameError> {
    match encoding {
        None | Some("identity") => return Err(FrameError::CompressedWithoutEncoding),
        Some("gzip") => {}
        Some(other) => return Err(FrameError::UnsupportedEncoding(other.to_owned())),
    }
    // Go's gzip.NewReader reads the 10-byte header first; flate2 would
    // return nothing for an empty stream.
    match data {
        [] => return Err(FrameError::DecompressHeader("EOF")),
        [0x1f, 0x8b, 0x08, ..] if data.len() >= 10 => {}
        _ if data.len() < 10 && [0x1f, 0x8b, 0x08].starts_with(&data[..data.len().min(3)]) => {
            return Err(FrameError::DecompressHeader("unexpected EOF"))
        }
        _ => return Err(FrameError::DecompressHeader("gzip: invalid header")),
    }
    let max = limit.saturating_add(1);
    let mut reader = flate2::read::MultiGzDecoder::new(data).take(to_u64(max));
    // Read into a zero-filled buffer grown by doubling and capped at `max`:
    // read_to_end could reserve up to twice the limit.
    let mut out = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= max {
                break;
            }
            let grown = out
                .len()
                .saturating_mul(2)
                .max(DECOMPRESS_INITIAL_CAPACITY)
                .min(max);
            out.resize(grown, 0);
        }
        let Some(spare) = out.get_mut(filled..) else {
            break;
        };
        match reader.read(spare) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Decompress(go_gzip_error(&e))),
        }
    }
    out.truncate(filled);
    if filled > limit {
        return Err(FrameError::TooLarge {
            size: to_u64(filled),
            limit: to_u64(limit),
            decompressed: true,
        });
    }
    Ok(out)
}

/// What Go's gzip reader says where flate2 failed reading.
fn go_gzip_error(e: &io::Error) -> &'static str {
    let text = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "unexpected EOF"
    } else if text.contains("header") {
        "gzip: invalid header"
    } else if text.contains("crc") || text.contains("checksum") {
        "gzip: invalid checksum"
    } else {
        "flate: corrupt input"
    }
}

/// The first message of a request, with everything read to get it.
#[derive(Debug)]
pub struct FirstMessage {
    /// The bytes read from the body, exactly as received and in order, to
    /// be forwarded unchanged before the rest of the body. When the message
    /// came in one data frame these are the frames as received. When it was
    /// spread over several, the prefix and message are one buffer (the copy
    /// that `payload` slices) followed by whatever came after the message
    /// in the last frame: the proxy then holds one copy, not two, and a
    /// message sent as many tiny frames does not cost one `Bytes` per frame.
    /// Empty data frames are dropped.
    pub chunks: Vec<Bytes>,
    pub prefix: Prefix,
    /// The message payload (after the prefix), contiguous: a zero-copy slice
    /// when the message arrived in one chunk, else one copy.
    pub payload: Bytes,
    /// The body reported its end (`is_end_stream`) once the message was in,
    /// so there is nothing more to forward after `chunks`.
    pub end_of_body: bool,
    /// Trailers read while reading. The reader stops as soon as the message
    /// is complete and trailers can only follow all data, so this is `None`
    /// whenever a message was returned; it is here for the caller's
    /// forwarding code to handle uniformly.
    pub trailers: Option<http::HeaderMap>,
    /// The share of the connection's read budget these bytes hold; give it
    /// back once they are forwarded.
    pub held: Option<OwnedSemaphorePermit>,
}

/// Reads data frames until the prefix and `prefix.len` payload bytes are in.
/// A declared length over `limit` is refused as soon as the prefix is read,
/// without reading the payload. The body is never polled past the frame
/// that completes the message, so a streaming call is not held up.
pub async fn read_first_message<B>(body: &mut B, limit: usize) -> Result<FirstMessage, FrameError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: fmt::Display,
{
    read_first_message_within(body, limit, None).await
}

/// [`read_first_message`], holding the bytes read against `budget`.
pub async fn read_first_message_within<B>(
    body: &mut B,
    limit: usize,
    budget: Option<&ConnBudget>,
) -> Result<FirstMessage, FrameError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: fmt::Display,
{
    let mut assembler = Assembler::new(limit);
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        let mut reserved = match budget {
            Some(b) => Some(b.reserve(b.frame()).await),
            None => None,
        };
        let frame = match body.frame().await {
            None => return Err(assembler.ended()),
            Some(Err(e)) => return Err(FrameError::Body(e.to_string())),
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                if let (Some(budget), Some(mut permit)) = (budget, reserved.take()) {
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    if n > permit.num_permits() as u32 {
                        // Larger than a frame: only a test body does this.
                        permit.merge(budget.reserve(n - permit.num_permits() as u32).await);
                    }
                    if let Some(kept) = permit.split(n as usize) {
                        match &mut held {
                            Some(h) => h.merge(kept),
                            None => held = Some(kept),
                        }
                    }
                }
                if let Some((prefix, payload)) = assembler.push(data)? {
                    return Ok(FirstMessage {
                        chunks: assembler.chunks,
                        prefix,
                        payload,
                        end_of_body: body.is_end_stream(),
                        trailers: None,
                        held,
                    });
                }
                continue;
            }
            Err(frame) => frame,
        };
        // Trailers end the body; with the message incomplete that is a
        // truncated (or empty) body. Unknown frame kinds are skipped.
        if frame.is_trailers() {
            return Err(assembler.ended());
        }
    }
}

/// The synchronous core of `read_first_message`: takes data chunks one by
/// one and says when the message is complete.
struct Assembler {
    limit: usize,
    chunks: Vec<Bytes>,
    received: u64,
    prefix: [u8; PREFIX_LEN],
    prefix_filled: usize,
    /// Prefix and payload so far, when the message is spread over chunks.
    spread: Option<Spread>,
}

struct Spread {
    prefix: Prefix,
    buf: Vec<u8>,
    /// `PREFIX_LEN + prefix.len`.
    total: usize,
}

impl Assembler {
    fn new(limit: usize) -> Self {
        Assembler {
            limit,
            chunks: Vec::new(),
            received: 0,
            prefix: [0; PREFIX_LEN],
            prefix_filled: 0,
            spread: None,
        }
    }

    /// Takes one data chunk; returns the prefix and payload once complete.
    fn push(&mut self, chunk: Bytes) -> Result<Option<(Prefix, Bytes)>, FrameError> {
        if chunk.is_empty() {
            // Carries nothing; keeping it would let a client grow `chunks`
            // without sending a byte.
            return Ok(None);
        }
        self.received = self.received.saturating_add(to_u64(chunk.len()));
        match self.spread.take() {
            Some(spread) => Ok(self.continue_spread(spread, chunk)),
            None => self.push_prefix(chunk),
        }
    }

    fn push_prefix(&mut self, chunk: Bytes) -> Result<Option<(Prefix, Bytes)>, FrameError> {
        let wanted = PREFIX_LEN - self.prefix_filled;
        let take = wanted.min(chunk.len());
        if let (Some(dst), Some(src)) = (
            self.prefix
                .get_mut(self.prefix_filled..self.prefix_filled + take),
            chunk.get(..take),
        ) {
            dst.copy_from_slice(src);
        }
        self.prefix_filled += take;
        if self.prefix_filled < PREFIX_LEN {
            self.chunks.push(chunk);
            return Ok(None);
        }

        let prefix = parse_prefix(self.prefix)?;
        // `total` is checked too: on a 32-bit target with no real limit,
        // prefix plus payload may not fit a usize.
        let sizes = usize::try_from(prefix.len)
            .ok()
            .and_then(|len| Some((len, len.checked_add(PREFIX_LEN)?)));
        let (len, total) = match sizes {
            Some((len, total)) if len <= self.limit => (len, total),
            _ => {
                return Err(FrameError::TooLarge {
                    size: u64::from(prefix.len),
                    limit: to_u64(self.limit),
                    decompressed: false,
                })
            }
        };
        let start = take;
        if chunk.len() - start >= len {
            // The common case: the whole message is in this chunk.
            let payload = chunk.slice(start..start + len);
            self.chunks.push(chunk);
            return Ok(Some((prefix, payload)));
        }

        // Spread over chunks: the message (prefix included) becomes one
        // buffer. The chunks so far held only prefix bytes, which the buffer
        // now holds, so they are dropped rather than kept twice.
        let mut buf = Vec::with_capacity(total.min(SPREAD_INITIAL_CAPACITY.max(chunk.len())));
        buf.extend_from_slice(&self.prefix);
        buf.extend_from_slice(chunk.get(start..).unwrap_or_default());
        self.chunks.clear();
        self.spread = Some(Spread { prefix, buf, total });
        Ok(None)
    }

    fn continue_spread(&mut self, mut spread: Spread, chunk: Bytes) -> Option<(Prefix, Bytes)> {
        let take = (spread.total - spread.buf.len()).min(chunk.len());
        let needed = spread.buf.len() + take;
        if needed > spread.buf.capacity() {
            let target = needed
                .max(spread.buf.capacity().saturating_mul(2))
                .min(spread.total);
            spread.buf.reserve_exact(target - spread.buf.len());
        }
        spread
            .buf
            .extend_from_slice(chunk.get(..take).unwrap_or_default());
        if spread.buf.len() < spread.total {
            self.spread = Some(spread);
            return None;
        }
        let message = Bytes::from(spread.buf);
        let payload = message.slice(PREFIX_LEN..);
        self.chunks.push(message);
        if take < chunk.len() {
            // Bytes of the next message stay as they came.
            self.chunks.push(chunk.slice(take..));
        }
        Some((spread.prefix, payload))
    }

    /// The error for a body that ended before the message was complete.
    fn ended(&self) -> FrameError {
        if self.received == 0 {
            return FrameError::Empty;
        }
        let expected = match &self.spread {
            Some(spread) => to_u64(spread.total),
            None => to_u64(PREFIX_LEN),
        };
        FrameError::Truncated {
            expected,
            got: self.received,
        }
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::io::Write;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use flate2::write::GzEncoder;
    use flate2::Compression;
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    fn message(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    type TestBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    fn body_of(chunks: Vec<Bytes>) -> TestBody {
        let frames: Vec<_> = chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
        StreamBody::new(stream::iter(frames))
    }

    fn concat(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Yields the given chunks, then fails the test if polled again.
    struct PanicsAfter {
        chunks: Vec<Bytes>,
    }

    impl http_body::Body for PanicsAfter {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            assert!(!self.chunks.is_empty(), "body polled past what was needed");
            let chunk = self.chunks.remove(0);
            Poll::Ready(Some(Ok(Frame::data(chunk))))
        }
    }

    #[test]
    fn prefix_flags() {
        assert_eq!(
            parse_prefix([0, 0, 0, 1, 2]),
            Ok(Prefix {
                compressed: false,
                len: 258
            })
        );
        assert_eq!(
            parse_prefix([1, 0xff, 0xff, 0xff, 0xff]),
            Ok(Prefix {
                compressed: true,
                len: u32::MAX
            })
        );
        assert_eq!(parse_prefix([2, 0, 0, 0, 0]), Err(FrameError::BadFlag(2)));
        assert_eq!(
            parse_prefix([0x80, 0, 0, 0, 0]),
            Err(FrameError::BadFlag(0x80))
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            FrameError::BadFlag(2).to_string(),
            "invalid gRPC compressed flag 2 (must be 0 or 1)"
        );
        assert_eq!(
            FrameError::TooLarge {
                size: 5_000_000,
                limit: 4_194_304,
                decompressed: false
            }
            .to_string(),
            "gRPC message of 5000000 bytes exceeds the limit of 4194304 bytes"
        );
        assert_eq!(
            FrameError::TooLarge {
                size: 4_194_305,
                limit: 4_194_304,
                decompressed: true
            }
            .to_string(),
            "gRPC message exceeds the limit of 4194304 bytes after decompression \
             (stopped at 4194305 bytes)"
        );
    }

    #[tokio::test]
    async fn message_in_one_chunk_is_a_zero_copy_slice() {
        let chunk = Bytes::from(message(0, b"\x0a\x07default"));
        let mut body = PanicsAfter {
            chunks: vec![chunk.clone()],
        };
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert_eq!(&first.payload[..], b"\x0a\x07default");
        assert!(chunk.as_ptr_range().contains(&first.payload.as_ptr()));
        assert_eq!(first.chunks, vec![chunk]);
        assert_eq!(
            first.prefix,
            Prefix {
                compressed: false,
                len: 9
            }
        );
        assert!(first.trailers.is_none());
    }

    #[tokio::test]
    async fn prefix_split_across_one_byte_chunks() {
        let bytes = message(0, b"\x0a\x07default");
        let chunks: Vec<Bytes> = bytes.iter().map(|b| Bytes::from(vec![*b])).collect();
        let mut body = PanicsAfter {
            chunks: chunks.clone(),
        };
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert_eq!(&first.payload[..], b"\x0a\x07default");
        assert_eq!(concat(&first.chunks), bytes);
        // Tiny frames end up in one buffer, not one Bytes each.
        assert_eq!(first.chunks.len(), 1);
    }

    #[tokio::test]
    async fn prefix_split_then_payload_in_one_chunk() {
        let bytes = Bytes::from(message(0, b"\x0a\x07default"));
        let chunks = vec![bytes.slice(..2), bytes.slice(2..)];
        let mut body = PanicsAfter {
            chunks: chunks.clone(),
        };
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert_eq!(first.chunks, chunks);
        assert!(chunks[1].as_ptr_range().contains(&first.payload.as_ptr()));
    }

    #[tokio::test]
    async fn message_spread_over_several_chunks() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = Bytes::from(message(1, &payload));
        let chunks: Vec<Bytes> = bytes.chunks(16_384).map(|c| bytes.slice_ref(c)).collect();
        assert!(chunks.len() > 5);
        let mut body = PanicsAfter {
            chunks: chunks.clone(),
        };
        let first = read_first_message(&mut body, 1 << 20).await.unwrap();
        assert_eq!(&first.payload[..], &payload[..]);
        assert!(first.prefix.compressed);
        assert_eq!(concat(&first.chunks), &bytes[..]);
        // The payload slices the one copy that is also forwarded.
        assert!(first.chunks[0]
            .as_ptr_range()
            .contains(&first.payload.as_ptr()));
    }

    #[tokio::test]
    async fn extra_bytes_after_the_message_stay_in_chunks() {
        let mut bytes = message(0, b"\x0a\x01a");
        bytes.extend_from_slice(&message(0, b"second message"));
        bytes.extend_from_slice(b"\x00\x00");
        let chunk = Bytes::from(bytes.clone());
        let mut body = PanicsAfter {
            chunks: vec![chunk.clone()],
        };
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert_eq!(&first.payload[..], b"\x0a\x01a");
        assert_eq!(first.chunks, vec![chunk]);

        // Spread, with the next message starting in the last chunk.
        let chunks = vec![
            Bytes::from(bytes[..3].to_vec()),
            Bytes::from(bytes[3..7].to_vec()),
            Bytes::from(bytes[7..].to_vec()),
        ];
        let mut body = PanicsAfter { chunks };
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert_eq!(&first.payload[..], b"\x0a\x01a");
        assert_eq!(concat(&first.chunks), bytes);
        assert_eq!(&first.chunks[1][..], &bytes[8..]);
    }

    #[tokio::test]
    async fn empty_message_and_empty_data_frames() {
        let chunks = vec![
            Bytes::new(),
            Bytes::from_static(b"\x00\x00"),
            Bytes::new(),
            Bytes::from_static(b"\x00\x00\x00"),
        ];
        let mut body = PanicsAfter { chunks };
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert!(first.payload.is_empty());
        assert_eq!(first.chunks.len(), 2, "empty frames are not kept");
        assert_eq!(concat(&first.chunks), [0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_after_the_prefix() {
        let mut body = PanicsAfter {
            chunks: vec![
                Bytes::from_static(b"\x00\x00\x40"),
                Bytes::from_static(b"\x00\x01"),
            ],
        };
        let err = read_first_message(&mut body, 4 << 20).await.unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: (4 << 20) + 1,
                limit: 4 << 20,
                decompressed: false
            }
        );
        // Exactly at the limit is fine.
        let mut bytes = vec![0, 0, 0, 0, 16];
        bytes.extend_from_slice(&[7; 16]);
        let mut body = body_of(vec![Bytes::from(bytes)]);
        assert!(read_first_message(&mut body, 16).await.is_ok());
    }

    #[tokio::test]
    async fn bad_flag_in_body() {
        let mut body = PanicsAfter {
            chunks: vec![Bytes::from_static(b"\x02\x00\x00\x00\x00")],
        };
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::BadFlag(2)
        );
    }

    #[tokio::test]
    async fn truncated_body() {
        let bytes = message(0, b"\x0a\x07default");
        let mut body = body_of(vec![Bytes::from(bytes[..8].to_vec())]);
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::Truncated {
                expected: 14,
                got: 8
            }
        );
        // Inside the prefix.
        let mut body = body_of(vec![Bytes::from_static(b"\x00\x00")]);
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::Truncated {
                expected: 5,
                got: 2
            }
        );
        // Trailers before the message is complete.
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from(bytes[..8].to_vec()))),
            Ok(Frame::trailers(http::HeaderMap::new())),
        ];
        let mut body = StreamBody::new(stream::iter(frames));
        assert!(matches!(
            read_first_message(&mut body, 1024).await,
            Err(FrameError::Truncated { .. })
        ));
    }

    #[tokio::test]
    async fn empty_body() {
        let mut body = body_of(vec![]);
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::Empty
        );
        let mut body = body_of(vec![Bytes::new(), Bytes::new()]);
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::Empty
        );
        let mut body = http_body_util::Empty::<Bytes>::new();
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::Empty
        );
    }

    #[tokio::test]
    async fn body_error() {
        let frames: Vec<Result<Frame<Bytes>, String>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\x00\x00"))),
            Err("stream reset".to_owned()),
        ];
        let mut body = StreamBody::new(stream::iter(frames));
        assert_eq!(
            read_first_message(&mut body, 1024).await.unwrap_err(),
            FrameError::Body("stream reset".to_owned())
        );
    }

    #[tokio::test]
    async fn end_of_body_is_reported_when_known() {
        let chunk = Bytes::from(message(0, b"x"));
        let mut body = http_body_util::Full::new(chunk);
        let first = read_first_message(&mut body, 1024).await.unwrap();
        assert!(first.end_of_body);

        let mut body = body_of(vec![Bytes::from(message(0, b"x"))]);
        let first = read_first_message(&mut body, 1024).await.unwrap();
        // A stream cannot tell before it is polled again.
        assert!(!first.end_of_body);
    }

    #[test]
    fn gzip_roundtrip() {
        let data = b"\x0a\x07default\x12\x0bworkflow-id".repeat(50);
        let compressed = gzip(&data);
        assert_eq!(
            decompress(Some("gzip"), &compressed, 4096),
            Ok(data.clone())
        );
        // Exactly at the limit is fine, one under is not.
        assert_eq!(
            decompress(Some("gzip"), &compressed, data.len()),
            Ok(data.clone())
        );
        assert_eq!(
            decompress(Some("gzip"), &compressed, data.len() - 1),
            Err(FrameError::TooLarge {
                size: data.len() as u64,
                limit: data.len() as u64 - 1,
                decompressed: true
            })
        );
        assert_eq!(decompress(Some("gzip"), &gzip(b""), 16), Ok(Vec::new()));
    }

    #[test]
    fn gzip_members_are_all_decoded() {
        // A second member must not hide a field from the proxy: Go's reader
        // decodes both.
        let mut compressed = gzip(b"\x0a\x05first");
        compressed.extend_from_slice(&gzip(b"\x0a\x06second"));
        assert_eq!(
            decompress(Some("gzip"), &compressed, 1024),
            Ok(b"\x0a\x05first\x0a\x06second".to_vec())
        );
    }

    #[test]
    fn gzip_output_is_bounded() {
        // 100 MiB of zeros; `fast` compresses it to about 0.5 MB.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..100 {
            encoder.write_all(&zeros).unwrap();
        }
        let compressed = encoder.finish().unwrap();
        assert!(compressed.len() < 1 << 20, "{}", compressed.len());

        let limit = 4 << 20;
        let started = Instant::now();
        let err = decompress(Some("gzip"), &compressed, limit).unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: limit as u64 + 1,
                limit: limit as u64,
                decompressed: true
            }
        );
        // `size` above shows decompression stopped at limit + 1. Stopping
        // there takes about 30 ms in a debug build, inflating all 100 MiB
        // about 0.85 s: the bound leaves room for a loaded machine.
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    }

    #[test]
    fn corrupt_gzip() {
        let mut compressed = gzip(b"\x0a\x07default");
        let middle = compressed.len() / 2;
        compressed[middle] ^= 0xff;
        assert!(matches!(
            decompress(Some("gzip"), &compressed, 1024),
            Err(FrameError::Decompress(_))
        ));
        // Checksum mismatch.
        let mut compressed = gzip(b"\x0a\x07default");
        let crc = compressed.len() - 8;
        compressed[crc] ^= 0x01;
        assert!(matches!(
            decompress(Some("gzip"), &compressed, 1024),
            Err(FrameError::Decompress(_))
        ));
        // Cut short: a read error, as Go's reader reports it.
        let compressed = gzip(b"\x0a\x07default");
        assert_eq!(
            decompress(Some("gzip"), &compressed[..compressed.len() - 3], 1024),
            Err(FrameError::Decompress("unexpected EOF"))
        );
        // Not gzip at all, empty, a header cut short: the stream does not
        // open (gzip.NewReader fails).
        for (bad, why) in [
            (b"\x0a\x07default".as_slice(), "gzip: invalid header"),
            (b"", "EOF"),
            (&compressed[..6], "unexpected EOF"),
        ] {
            assert_eq!(
                decompress(Some("gzip"), bad, 1024),
                Err(FrameError::DecompressHeader(why)),
                "{bad:02x?}"
            );
        }
        let mut trailing = compressed.clone();
        trailing.extend_from_slice(b"junk");
        assert!(matches!(
            decompress(Some("gzip"), &trailing, 1024),
            Err(FrameError::Decompress(_))
        ));
    }

    #[test]
    fn unsupported_or_missing_encoding() {
        let compressed = gzip(b"x");
        assert_eq!(
            decompress(Some("snappy"), &compressed, 1024),
            Err(FrameError::UnsupportedEncoding("snappy".to_owned()))
        );
        assert_eq!(
            decompress(Some("GZIP"), &compressed, 1024),
            Err(FrameError::UnsupportedEncoding("GZIP".to_owned()))
        );
        assert_eq!(
            decompress(None, &compressed, 1024),
            Err(FrameError::CompressedWithoutEncoding)
        );
        assert_eq!(
            decompress(Some("identity"), &compressed, 1024),
            Err(FrameError::CompressedWithoutEncoding)
        );
    }

    /// A body fed by the test, one chunk per send.
    fn fed() -> (
        tokio::sync::mpsc::UnboundedSender<Bytes>,
        impl http_body::Body<Data = Bytes, Error = Infallible> + Unpin,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let body = http_body_util::StreamBody::new(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|c| c.map(|c| Ok::<_, Infallible>(Frame::data(c))))
        }));
        (tx, body)
    }

    #[tokio::test]
    async fn a_read_that_finds_the_budget_spent_waits_for_another_to_give_it_back() {
        const FRAME: u32 = 16 * 1024;
        let budget = ConnBudget::new(4 * FRAME as usize, FRAME);
        // Stream A declares 1 MiB and sends five full frames of it.
        let (a_tx, mut a_body) = fed();
        let mut prefix = vec![0u8; 5];
        prefix[1..5].copy_from_slice(&(1u32 << 20).to_be_bytes());
        a_tx.send(Bytes::from(prefix)).unwrap();
        for _ in 0..5 {
            a_tx.send(Bytes::from(vec![7u8; FRAME as usize])).unwrap();
        }
        let a_budget = budget.clone();
        let a = tokio::spawn(async move {
            read_first_message_within(&mut a_body, 4 << 20, Some(&a_budget)).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(budget.available() < FRAME as usize, "A holds the budget");
        // Stream B's small message cannot be read meanwhile.
        let (b_tx, mut b_body) = fed();
        b_tx.send(Bytes::from(message(0, &[1; 100]))).unwrap();
        let b_budget = budget.clone();
        let b = tokio::spawn(async move {
            read_first_message_within(&mut b_body, 4 << 20, Some(&b_budget)).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!b.is_finished(), "B waits for room");
        // A gives up (its call ends): B is read at once.
        a.abort();
        let first = tokio::time::timeout(Duration::from_secs(5), b)
            .await
            .expect("B proceeds")
            .unwrap()
            .unwrap();
        assert_eq!(first.payload.len(), 100);
        drop(a_tx);
    }

    #[tokio::test]
    async fn a_message_within_the_budget_is_read_and_its_share_held_until_dropped() {
        let budget = ConnBudget::new(1 << 20, 16 * 1024);
        let mut body = body_of(vec![Bytes::from(message(0, &[1; 100]))]);
        let first = read_first_message_within(&mut body, 1 << 20, Some(&budget))
            .await
            .unwrap();
        assert_eq!(budget.available(), (1 << 20) - 105);
        drop(first);
        assert_eq!(budget.available(), 1 << 20);
    }
}
