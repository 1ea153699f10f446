//! The client's side of the guarded stream: the connection preface, then
//! frames, each frame head shown to the ping enforcer, and every header
//! block checked ([`HeaderCheck`]) before the codec may read it.
//!
//! Most bytes never stop here: the guard reads straight into the codec's buffer
//! and [`Inbound::scan`] walks what came. Only when a header block cannot be
//! judged where it lies (it continues in the next read, spans CONTINUATION
//! frames, or must be rewritten) are the bytes from its first frame on taken
//! out of the codec's buffer into `held`; once the block is complete it is
//! judged, and it (or its rewrite) and what followed are queued in `ready`,
//! which the guard hands to the codec before reading the client again. A frame
//! head cut by the end of a read is held the same way (at most 8 bytes), so
//! a header block's first bytes never reach the codec before it is judged.

use tokio::io::ReadBuf;

use super::frames::{FrameHead, HEADERS, HEAD_LEN, PREFACE, WINDOW_UPDATE};
use super::hpack::{HeaderCheck, Verdict};

const CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const FLAG_END_STREAM: u8 = 0x1;

/// The largest frame payload the rewritten frames use: the minimum every
/// peer accepts (RFC 9113 §4.2).
const REWRITE_FRAME_LEN: usize = 16_384;

/// A header block still incomplete past this many bytes is not checked (h2
/// refuses such blocks itself: its header list limit is 64 KiB decoded).
const MAX_HELD: usize = 256 * 1024;

/// Buffers above this are freed once empty, so that one large header block
/// does not cost the connection memory for the rest of its life.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Where frame heads go; `true` means the guard trips (too many pings).
pub(super) trait FrameSink {
    fn frame(&mut self, head: FrameHead) -> bool;
}

/// The ping enforcer tripped: nothing more goes to the codec.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tripped;

#[derive(Debug)]
pub(super) struct Inbound {
    /// Preface bytes matched so far.
    preface: u8,
    /// The preface did not match: not HTTP/2, the codec will refuse it; stop
    /// looking.
    pub(super) not_http2: bool,
    /// Payload bytes of the current frame still to pass.
    skip: u32,
    /// Header checks on; off once a block was broken or the framing went
    /// wrong (h2 then closes the connection, as grpc-go does).
    checking: bool,
    headers: HeaderCheck,
    /// The highest stream a client HEADERS opened: a HEADERS on a higher id
    /// is a request, on a lower one trailers.
    max_stream: u32,
    /// Bytes read but not judged yet; they start at a frame boundary.
    held: Vec<u8>,
    /// Bytes judged and waiting for room in the codec's buffer, from
    /// `ready_from` on.
    ready: Vec<u8>,
    ready_from: usize,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            preface: 0,
            not_http2: false,
            skip: 0,
            checking: true,
            headers: HeaderCheck::default(),
            max_stream: 0,
            held: Vec::new(),
            ready: Vec::new(),
            ready_from: 0,
        }
    }
}

impl Inbound {
    /// Bytes the guard just read into the codec's buffer. Returns how many of
    /// them the codec may have now; the rest were taken over (into `held`, and
    /// from there into `ready`).
    pub(super) fn scan(
        &mut self,
        bytes: &mut [u8],
        sink: &mut impl FrameSink,
    ) -> Result<usize, Tripped> {
        debug_assert!(!self.holding() && !self.has_ready());
        let mut pos = self.preface(bytes);
        if self.not_http2 {
            return Ok(bytes.len());
        }
        loop {
            let rest = &mut bytes[pos..];
            if rest.is_empty() {
                return Ok(pos);
            }
            if self.skip > 0 {
                let take = rest.len().min(self.skip as usize);
                self.skip -= take as u32;
                pos += take;
                continue;
            }
            let Some(head) = head_of(rest) else {
                self.take_over(rest, sink)?;
                return Ok(pos);
            };
            if is_stream_window_update(head) {
                let end = HEAD_LEN + head.len as usize;
                if end > rest.len() {
                    self.take_over(rest, sink)?;
                    return Ok(pos);
                }
                if sink.frame(head) {
                    return Err(Tripped);
                }
                ignore_if_zero_increment(&mut rest[..end]);
                pos += end;
                continue;
            }
            if self.checking && is_header_frame(head.kind) {
                let end = HEAD_LEN + head.len as usize;
                let whole =
                    head.kind == HEADERS && head.flags & FLAG_END_HEADERS != 0 && end <= rest.len();
                if !whole {
                    self.take_over(rest, sink)?;
                    return Ok(pos);
                }
                if sink.frame(head) {
                    return Err(Tripped);
                }
                match self.judge_single(head, &rest[HEAD_LEN..end]) {
                    None => pos += end,
                    Some(frames) => {
                        self.ready.extend_from_slice(&frames);
                        self.take_over(&rest[end..], sink)?;
                        return Ok(pos);
                    }
                }
                continue;
            }
            if sink.frame(head) {
                return Err(Tripped);
            }
            pos += HEAD_LEN;
            self.skip = head.len;
        }
    }

    /// More bytes, read while bytes are held.
    pub(super) fn push(&mut self, bytes: &[u8], sink: &mut impl FrameSink) -> Result<(), Tripped> {
        self.take_over(bytes, sink)
    }

    /// Whether the preface is behind (or the stream is not HTTP/2, which
    /// The codec refuses itself).
    pub(super) fn preface_done(&self) -> bool {
        self.not_http2 || usize::from(self.preface) >= PREFACE.len()
    }

    /// Whether bytes wait to be judged: reads go to [`Inbound::push`].
    pub(super) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether judged bytes wait for the codec: [`Inbound::take_ready`] first.
    pub(super) fn has_ready(&self) -> bool {
        self.ready_from < self.ready.len()
    }

    /// Moves as many ready bytes as fit into `out`.
    pub(super) fn take_ready(&mut self, out: &mut ReadBuf<'_>) {
        let ready = &self.ready[self.ready_from..];
        let n = ready.len().min(out.remaining());
        out.put_slice(&ready[..n]);
        self.ready_from += n;
        if self.ready_from == self.ready.len() {
            self.ready.clear();
            self.ready_from = 0;
            if self.ready.capacity() > KEEP_CAPACITY {
                self.ready = Vec::new();
            }
        }
    }

    /// The client closed its side: what is held goes to the codec as it is
    /// (h2 sees the frame cut short, as it would have).
    pub(super) fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.ready.extend_from_slice(&held);
    }

    /// Forgets everything held and ready (the guard tripped).
    pub(super) fn discard(&mut self) {
        self.held = Vec::new();
        self.ready = Vec::new();
        self.ready_from = 0;
    }

    /// Matches the preface at the start of the stream; returns where the
    /// frames begin in `bytes`.
    fn preface(&mut self, bytes: &[u8]) -> usize {
        if self.not_http2 {
            return bytes.len();
        }
        let at = usize::from(self.preface);
        if at >= PREFACE.len() {
            return 0;
        }
        let take = (PREFACE.len() - at).min(bytes.len());
        if bytes[..take] != PREFACE[at..at + take] {
            self.not_http2 = true;
            return bytes.len();
        }
        self.preface += take as u8;
        take
    }

    /// Takes `bytes` (from a frame boundary, or inside a held frame) into
    /// `held` and judges whatever can be judged.
    fn take_over(&mut self, bytes: &[u8], sink: &mut impl FrameSink) -> Result<(), Tripped> {
        self.held.extend_from_slice(bytes);
        self.process(sink)
    }

    /// Moves judged frames from `held` to `ready`.
    fn process(&mut self, sink: &mut impl FrameSink) -> Result<(), Tripped> {
        let mut held = std::mem::take(&mut self.held);
        let mut pos = 0;
        let result = loop {
            let rest = &held[pos..];
            if self.skip > 0 {
                let take = rest.len().min(self.skip as usize);
                self.ready.extend_from_slice(&rest[..take]);
                self.skip -= take as u32;
                pos += take;
                if self.skip > 0 {
                    break Ok(());
                }
                continue;
            }
            let Some(head) = head_of(rest) else {
                break Ok(());
            };
            if is_stream_window_update(head) {
                let end = HEAD_LEN + head.len as usize;
                if end > rest.len() {
                    break Ok(());
                }
                if sink.frame(head) {
                    break Err(Tripped);
                }
                let start = self.ready.len();
                self.ready.extend_from_slice(&rest[..end]);
                ignore_if_zero_increment(&mut self.ready[start..]);
                pos += end;
                continue;
            }
            if self.checking && is_header_frame(head.kind) {
                match block_extent(rest) {
                    Extent::Incomplete if rest.len() <= MAX_HELD => break Ok(()),
                    Extent::Incomplete | Extent::Invalid => self.checking = false,
                    Extent::Complete(end) => {
                        let block = &rest[..end];
                        if FrameIter(block).any(|(h, _)| sink.frame(h)) {
                            break Err(Tripped);
                        }
                        match self.judge_block(head, block) {
                            Some(frames) => self.ready.extend_from_slice(&frames),
                            None => self.ready.extend_from_slice(block),
                        }
                        pos += end;
                    }
                }
                continue;
            }
            if sink.frame(head) {
                break Err(Tripped);
            }
            self.ready.extend_from_slice(&rest[..HEAD_LEN]);
            pos += HEAD_LEN;
            self.skip = head.len;
        };
        held.drain(..pos);
        if !(held.is_empty() && held.capacity() > KEEP_CAPACITY) {
            self.held = held;
        }
        result
    }

    /// Judges a HEADERS frame that holds a whole block; `Some` gives the
    /// frames to pass instead.
    fn judge_single(&mut self, head: FrameHead, payload: &[u8]) -> Option<Vec<u8>> {
        let Some(fragment) = headers_fragment(head, payload) else {
            self.checking = false;
            return None;
        };
        self.judge(head, fragment)
    }

    /// Judges a block of a HEADERS frame and its CONTINUATIONs (`block`:
    /// the frames, heads included).
    fn judge_block(&mut self, head: FrameHead, block: &[u8]) -> Option<Vec<u8>> {
        let mut fragment = Vec::new();
        for (h, payload) in FrameIter(block) {
            let part = if h.kind == HEADERS {
                headers_fragment(h, payload)
            } else {
                Some(payload)
            };
            let Some(part) = part else {
                self.checking = false;
                return None;
            };
            fragment.extend_from_slice(part);
        }
        self.judge(head, &fragment)
    }

    fn judge(&mut self, head: FrameHead, fragment: &[u8]) -> Option<Vec<u8>> {
        let request = head.stream > self.max_stream;
        if request {
            self.max_stream = head.stream;
        }
        match self.headers.check(fragment, request) {
            Verdict::Clean => None,
            Verdict::Rewritten(block) => Some(header_frames(head, &block)),
            Verdict::Broken => {
                self.checking = false;
                None
            }
        }
    }
}

fn is_header_frame(kind: u8) -> bool {
    kind == HEADERS || kind == CONTINUATION
}

/// A frame type HTTP/2 does not define, which receivers ignore (RFC 9113
/// §4.1); what a frame becomes to be passed over.
const IGNORED: u8 = 0xfa;

/// A WINDOW_UPDATE on a stream (what HTTP/2 makes a stream error when its
/// increment is 0), with the payload it must have.
fn is_stream_window_update(head: FrameHead) -> bool {
    head.kind == WINDOW_UPDATE && head.stream != 0 && head.len == 4
}

/// A stream's WINDOW_UPDATE with increment 0 is a stream error (RFC 9113
/// §6.9), which grpc-go answers by resetting that stream and h2 by closing
/// the whole connection. It changes no window, so it is passed to h2 as a
/// frame of an undefined type, which h2 ignores: the call goes on.
fn ignore_if_zero_increment(frame: &mut [u8]) {
    let increment = frame
        .get(HEAD_LEN..HEAD_LEN + 4)
        .map(|w| u32::from_be_bytes([w[0] & 0x7f, w[1], w[2], w[3]]));
    if increment == Some(0) {
        frame[3] = IGNORED;
    }
}

fn head_of(bytes: &[u8]) -> Option<FrameHead> {
    let head: &[u8; HEAD_LEN] = bytes.get(..HEAD_LEN)?.try_into().ok()?;
    Some(FrameHead::decode(head))
}

/// A HEADERS frame's header block fragment: the payload without padding and
/// priority fields. `None` when the padding does not fit (a connection
/// error for h2 and grpc-go alike).
fn headers_fragment(head: FrameHead, payload: &[u8]) -> Option<&[u8]> {
    let mut fragment = payload;
    let mut padding = 0;
    if head.flags & FLAG_PADDED != 0 {
        let (&pad, rest) = fragment.split_first()?;
        padding = usize::from(pad);
        fragment = rest;
    }
    if head.flags & FLAG_PRIORITY != 0 {
        fragment = fragment.get(5..)?;
    }
    fragment.get(..fragment.len().checked_sub(padding)?)
}

enum Extent {
    /// The block ends `.0` bytes in (heads and payloads of all its frames).
    Complete(usize),
    Incomplete,
    /// Something else than a CONTINUATION of the same stream follows a
    /// HEADERS without END_HEADERS (or a CONTINUATION comes first).
    Invalid,
}

/// How far the header block starting at `bytes` (a HEADERS frame) reaches.
fn block_extent(bytes: &[u8]) -> Extent {
    let mut pos = 0;
    let mut first = true;
    let mut stream = 0;
    loop {
        let Some(head) = head_of(&bytes[pos..]) else {
            return Extent::Incomplete;
        };
        let expected = if first { HEADERS } else { CONTINUATION };
        if head.kind != expected || (!first && head.stream != stream) {
            return Extent::Invalid;
        }
        stream = head.stream;
        first = false;
        let end = pos + HEAD_LEN + head.len as usize;
        if end > bytes.len() {
            return Extent::Incomplete;
        }
        pos = end;
        if head.flags & FLAG_END_HEADERS != 0 {
            return Extent::Complete(pos);
        }
    }
}

/// The frames of a complete block, with their payloads.
struct FrameIter<'a>(&'a [u8]);

impl<'a> Iterator for FrameIter<'a> {
    type Item = (FrameHead, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let head = head_of(self.0)?;
        let end = HEAD_LEN + head.len as usize;
        let payload = self.0.get(HEAD_LEN..end)?;
        self.0 = &self.0[end..];
        Some((head, payload))
    }
}

/// A rewritten block as a HEADERS frame (END_STREAM as the original had it,
/// no padding or priority) and CONTINUATIONs.
fn header_frames(original: FrameHead, block: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(block.len() + HEAD_LEN * (1 + block.len() / REWRITE_FRAME_LEN));
    let chunks: Vec<&[u8]> = if block.is_empty() {
        vec![&[][..]]
    } else {
        block.chunks(REWRITE_FRAME_LEN).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        let (kind, mut flags) = if i == 0 {
            (HEADERS, original.flags & FLAG_END_STREAM)
        } else {
            (CONTINUATION, 0)
        };
        if i == last {
            flags |= FLAG_END_HEADERS;
        }
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&original.stream.to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
impl Inbound {
    /// One read of `bytes`, as the guard handles it: the bytes the codec gets
    /// (from this read and, once judged, from earlier ones).
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        sink: &mut impl FrameSink,
    ) -> Result<Vec<u8>, Tripped> {
        let mut out = Vec::new();
        if self.holding() {
            self.push(bytes, sink)?;
        } else {
            let mut bytes = bytes.to_vec();
            let pass = self.scan(&mut bytes, sink)?;
            out.extend_from_slice(&bytes[..pass]);
        }
        while self.has_ready() {
            let mut room = [0u8; 700];
            let mut buf = ReadBuf::new(&mut room);
            self.take_ready(&mut buf);
            out.extend_from_slice(buf.filled());
        }
        Ok(out)
    }
}
