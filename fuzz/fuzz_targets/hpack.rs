//! The header check (`server::frame_guard::hpack::HeaderCheck`) that keeps
//! a field h2 would refuse for the whole connection to its own stream.
//!
//! A connection's client header blocks, one after the other, each checked
//! and then (as the guard does) passed on as they are or rewritten:
//!
//! - never a panic;
//! - a block judged Clean or Rewritten decodes with h2's own frame codec
//!   (what hyper serves with) without a connection error: at worst its
//!   stream is reset; only blocks judged Broken may cost the connection
//!   (and after one, checking stops, as in the guard) — apart from h2's
//!   header-list abuse limit, which no rewrite is meant to avoid;
//! - a rewritten block decodes with an independent HPACK decoder
//!   (loona-hpack) into the same fields as the original, one more when the
//!   `te: x` marker was appended, each of the same total length (or one
//!   byte longer, for an empty `:method` or name given one), so both sides'
//!   dynamic tables stay alike; a Clean block decodes there too.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use futures_core::Stream;
use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{HeaderCheck, Verdict};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Arbitrary)]
struct Block {
    request: bool,
    body: Body,
}

#[derive(Debug, Arbitrary)]
enum Body {
    Raw(Vec<u8>),
    Fields(Vec<Repr>),
}

#[derive(Debug, Arbitrary)]
enum Repr {
    Indexed(u16),
    /// 0x40 incremental, 0x00 without, 0x10 never indexed.
    Literal {
        mode: u8,
        name: Name,
        value: Vec<u8>,
    },
    SizeUpdate(u16),
}

#[derive(Debug, Arbitrary)]
enum Name {
    Index(u16),
    Known(u8),
    Text(Vec<u8>),
}

const KNOWN: [&str; 14] = [
    ":method",
    ":path",
    ":authority",
    ":scheme",
    ":status",
    ":protocol",
    ":bogus",
    "te",
    "content-type",
    "Content-Type",
    "x-custom",
    "",
    "grpc-timeout",
    "temporal-namespace",
];

fn int(out: &mut Vec<u8>, high: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut v = value - max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

fn encode(reprs: &[Repr]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in reprs {
        match r {
            Repr::Indexed(i) => int(&mut out, 0x80, 7, usize::from(*i) % 128),
            Repr::SizeUpdate(s) => int(&mut out, 0x20, 5, usize::from(*s) % 5000),
            Repr::Literal { mode, name, value } => {
                let (high, prefix) = match mode % 3 {
                    0 => (0x40, 6),
                    1 => (0x00, 4),
                    _ => (0x10, 4),
                };
                match name {
                    Name::Index(i) => int(&mut out, high, prefix, usize::from(*i) % 128 + 1),
                    Name::Known(k) => {
                        int(&mut out, high, prefix, 0);
                        string(&mut out, KNOWN[usize::from(*k) % KNOWN.len()].as_bytes());
                    }
                    Name::Text(t) => {
                        int(&mut out, high, prefix, 0);
                        string(&mut out, t);
                    }
                }
                string(&mut out, value);
            }
        }
    }
    out
}

/// h2's side: its frame codec reading HEADERS frames from memory.
struct Wire {
    bytes: Vec<u8>,
    at: usize,
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.bytes.len() - self.at).min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A block as a HEADERS frame and CONTINUATIONs (h2's default frame size).
fn frames(block: &[u8], stream: u32, out: &mut Vec<u8>) {
    let pieces: Vec<&[u8]> = if block.is_empty() {
        vec![&[][..]]
    } else {
        block.chunks(16_384).collect()
    };
    let last = pieces.len() - 1;
    for (i, p) in pieces.iter().enumerate() {
        let kind = if i == 0 { 1 } else { 9 };
        let flags = if i == last { 0x4 } else { 0 } | if i == 0 { 0x1 } else { 0 };
        out.extend_from_slice(&(p.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(p);
    }
}

const MARK: [u8; 6] = [0x00, 0x02, b't', b'e', 0x01, b'x'];

fuzz_target!(|blocks: Vec<Block>| {
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{blocks:#?}");
    }
    let mut check = HeaderCheck::default();
    let mut original = loona_hpack::Decoder::new();
    let mut passed = loona_hpack::Decoder::new();
    // Same-size tables on both sides are the check's premise; once loona
    // refuses a block its table is unknown, so compare no further.
    let mut compare = true;
    let mut wire = Vec::new();
    let mut judged = Vec::new();
    let mut stream = 1u32;
    for block in &blocks {
        let bytes = match &block.body {
            Body::Raw(b) => b.clone(),
            Body::Fields(r) => encode(r),
        };
        let verdict = check.check(&bytes, block.request);
        let out = match &verdict {
            Verdict::Broken => {
                frames(&bytes, stream, &mut wire);
                judged.push(false);
                break;
            }
            Verdict::Clean => bytes.clone(),
            Verdict::Rewritten(out) => out.clone(),
        };
        if compare {
            match (original.decode(&bytes), passed.decode(&out)) {
                (Ok(a), Ok(b)) => {
                    // A Clean block may still read entries the check
                    // sanitised earlier: fields alike in number and size.
                    let rewritten = matches!(verdict, Verdict::Rewritten(_));
                    let marked = rewritten && out.ends_with(&MARK) && b.len() == a.len() + 1;
                    let n = if marked { a.len() } else { b.len() };
                    assert_eq!(
                        n,
                        a.len(),
                        "passed block has {} fields, original {}",
                        b.len(),
                        a.len()
                    );
                    for ((an, av), (bn, bv)) in a.iter().zip(&b) {
                        let (x, y) = (an.len() + av.len(), bn.len() + bv.len());
                        // Not indexed, so free to grow: an empty method
                        // given one, an empty name given one, a status.
                        let method_fix = an == b":method" && av.is_empty() && bv == b"X";
                        let name_fix =
                            an.is_empty() && av.is_empty() && bn == b"x" && bv.is_empty();
                        // A `:status` that is no status code, given 200.
                        let status_fix = an == b":status" && bn == b":status" && bv == b"200";
                        assert!(
                            x == y || (rewritten && (method_fix || name_fix || status_fix)),
                            "field {an:?}={av:?} passed as {bn:?}={bv:?}"
                        );
                    }
                }
                (Err(_), _) => compare = false,
                (Ok(_), Err(e)) => panic!("the original decodes, the passed block not: {e:?}"),
            }
        }
        if block.request {
            stream += 2;
        }
        frames(&out, stream, &mut wire);
        judged.push(true);
    }

    // h2 reads what the guard passed.
    let mut codec: h2::Codec<Wire, bytes::Bytes> = h2::Codec::new(Wire { bytes: wire, at: 0 });
    let mut cx = Context::from_waker(Waker::noop());
    for (i, clean) in judged.iter().enumerate() {
        match Pin::new(&mut codec).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(h2::proto::Error::Reset(..)))) => {}
            Poll::Ready(Some(Err(h2::proto::Error::GoAway(_, reason, _))))
                if !clean || reason == h2::Reason::ENHANCE_YOUR_CALM =>
            {
                break;
            }
            other => panic!("block {i} (passed by the check): h2 says {other:?}"),
        }
    }
});
