//! HTTP/2 framing as the guard reads it (RFC 9113 §4.1, §3.4): the
//! preface, frame heads, the frames the guard makes itself, and a splitter
//! that follows frame boundaries across arbitrary chunks of a byte stream.

pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(super) const HEAD_LEN: usize = 9;
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
/// END_STREAM on DATA and HEADERS, ACK on PING: the same bit.
pub(super) const FLAG_END_STREAM: u8 = 0x1;
pub(super) const FLAG_ACK: u8 = 0x1;
pub(super) const STREAM_ID_MASK: u32 = 0x7fff_ffff;
pub(super) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// GOAWAY `ENHANCE_YOUR_CALM` with `debug` data (a few bytes: the reason).
pub(super) fn goaway_frame(last_stream: u32, debug: &[u8]) -> Vec<u8> {
    let len = (8 + debug.len()) as u32;
    let mut frame = Vec::with_capacity(HEAD_LEN + 8 + debug.len());
    frame.extend_from_slice(&len.to_be_bytes()[1..]);
    frame.push(GOAWAY);
    // Flags 0, stream 0.
    frame.extend_from_slice(&[0, 0, 0, 0, 0]);
    frame.extend_from_slice(&(last_stream & STREAM_ID_MASK).to_be_bytes());
    frame.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    frame.extend_from_slice(debug);
    frame
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHead {
    pub(super) len: u32,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl FrameHead {
    pub(super) fn decode(b: &[u8; HEAD_LEN]) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & STREAM_ID_MASK,
        }
    }
}

/// What a direction does with the frames it sees.
pub(super) trait OnFrame {
    /// Each frame header, as soon as its 9 bytes are in. True asks for the
    /// first four payload bytes, delivered to `word`.
    fn head(&mut self, head: FrameHead) -> bool;
    fn word(&mut self, _word: u32) {}
}

/// Splits a byte stream into frames across arbitrary chunking, keeping a
/// header's worth of bytes and a countdown of payload to skip.
#[derive(Debug, Default)]
pub(super) struct Frames {
    head: [u8; HEAD_LEN],
    /// Bytes of `head` received.
    have: u8,
    /// Payload bytes still to pass.
    skip: u32,
    /// Collecting the first payload word into `word`.
    capture: bool,
    word: [u8; 4],
    word_have: u8,
}

impl Frames {
    pub(super) fn feed(&mut self, mut bytes: &[u8], on: &mut impl OnFrame) {
        while !bytes.is_empty() {
            if self.capture {
                let at = usize::from(self.word_have);
                let take = (4 - at).min(bytes.len());
                self.word[at..at + take].copy_from_slice(&bytes[..take]);
                self.word_have += take as u8;
                self.skip -= take as u32;
                bytes = &bytes[take..];
                if self.word_have == 4 {
                    self.capture = false;
                    on.word(u32::from_be_bytes(self.word));
                }
            } else if self.skip > 0 {
                let take = (self.skip as usize).min(bytes.len());
                self.skip -= take as u32;
                bytes = &bytes[take..];
            } else {
                let at = usize::from(self.have);
                let take = (HEAD_LEN - at).min(bytes.len());
                self.head[at..at + take].copy_from_slice(&bytes[..take]);
                self.have += take as u8;
                bytes = &bytes[take..];
                if usize::from(self.have) == HEAD_LEN {
                    self.have = 0;
                    let head = FrameHead::decode(&self.head);
                    self.skip = head.len;
                    if on.head(head) && head.len >= 4 {
                        self.capture = true;
                        self.word_have = 0;
                    }
                }
            }
        }
    }

    pub(super) fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }

    /// Bytes that may pass before the next boundary, or that complete the
    /// header in progress (then the payload length is known); 0 at a
    /// boundary.
    pub(super) fn until_boundary(&self) -> usize {
        if self.skip > 0 {
            self.skip as usize
        } else if self.have > 0 {
            HEAD_LEN - usize::from(self.have)
        } else {
            0
        }
    }
}
