//! gRPC message framing and bounded gzip decoding (`grpc::frame`).
//!
//! - `read_first_message` gives, for any cutting of the body into data
//!   frames, exactly what a plain reading of the concatenated bytes says:
//!   the same prefix and payload, or the same error; the bytes it keeps for
//!   forwarding are the body's first bytes in order; it never takes a frame
//!   after the one that completes the message.
//! - `decompress` never returns more than `limit` bytes, refuses output past
//!   the limit with `TooLarge` (stopped at `limit + 1`), and otherwise
//!   returns exactly what a gzip reader makes of the input.
#![no_main]

use std::io::Read;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{decompress, parse_prefix, read_first_message, FrameError};
use temporal_mtls_proxy_fuzz::{cut, ready, Chunks};

#[derive(Debug, Arbitrary)]
struct Input {
    limit: Limit,
    body: Vec<u8>,
    sizes: Vec<u8>,
    trailers: bool,
    gzip: Gzip,
}

#[derive(Debug, Arbitrary)]
enum Limit {
    Small(u8),
    Medium(u16),
    Huge,
}

impl Limit {
    fn get(&self) -> usize {
        match *self {
            Limit::Small(n) => usize::from(n),
            Limit::Medium(n) => usize::from(n),
            Limit::Huge => usize::MAX,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Gzip {
    encoding: Encoding,
    /// Compressed as given (`None`: the bytes are the gzip stream).
    level: Option<u8>,
    data: Vec<u8>,
    /// A second member, concatenated (`Some(0)`: the same data again).
    second: Option<Vec<u8>>,
    /// Bytes cut from the end, a byte flipped, garbage appended.
    cut_end: u8,
    flip: Option<(u16, u8)>,
    trailing: Vec<u8>,
    limit: Limit,
}

#[derive(Debug, Arbitrary)]
enum Encoding {
    Gzip,
    Identity,
    None,
    Other(String),
}

/// A gzip member of `data` (level 0: stored blocks), with compressors kept
/// from input to input: making one per input would cost more than the rest.
fn gzip(data: &[u8], level: u8) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    use std::cell::RefCell;
    thread_local! {
        static COMPRESSORS: RefCell<[Compress; 2]> = RefCell::new([
            Compress::new(Compression::new(0), false),
            Compress::new(Compression::new(6), false),
        ]);
    }
    let mut out = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    COMPRESSORS.with(|c| {
        let c = &mut c.borrow_mut()[usize::from(level % 2)];
        c.reset();
        let mut deflated = Vec::with_capacity(data.len() + data.len() / 8 + 64);
        loop {
            let consumed = c.total_in() as usize;
            match c
                .compress_vec(&data[consumed..], &mut deflated, FlushCompress::Finish)
                .unwrap()
            {
                flate2::Status::StreamEnd => break,
                _ => deflated.reserve(deflated.capacity().max(64)),
            }
        }
        out.extend_from_slice(&deflated);
    });
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// What reading the whole body as one byte string gives.
fn expected(body: &[u8], limit: usize) -> Result<(bool, Vec<u8>, usize), FrameError> {
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    if body.len() < 5 {
        return Err(FrameError::Truncated {
            expected: 5,
            got: body.len() as u64,
        });
    }
    let prefix = parse_prefix(body[..5].try_into().unwrap())?;
    let len = prefix.len as usize;
    if len > limit {
        return Err(FrameError::TooLarge {
            size: u64::from(prefix.len),
            limit: limit as u64,
            decompressed: false,
        });
    }
    if body.len() - 5 < len {
        return Err(FrameError::Truncated {
            expected: 5 + len as u64,
            got: body.len() as u64,
        });
    }
    Ok((prefix.compressed, body[5..5 + len].to_vec(), 5 + len))
}

fn check_first_message(input: &Input) {
    let limit = input.limit.get();
    let want = expected(&input.body, limit);
    let chunks = cut(&input.body, &input.sizes);
    let mut body = Chunks::new(chunks.clone(), input.trailers);
    let got = ready(read_first_message(&mut body, limit));
    match (&want, got) {
        (Err(w), Err(g)) => assert_eq!(w, &g, "error differs from the plain reading"),
        (Ok((compressed, payload, total)), Ok(first)) => {
            assert_eq!(first.prefix.compressed, *compressed);
            assert_eq!(first.prefix.len as usize, payload.len());
            assert_eq!(&first.payload[..], &payload[..], "payload");
            // The frames taken: up to and including the one completing the
            // message, not one more.
            let mut sum = 0;
            let mut needed = 0;
            for c in &chunks {
                needed += 1;
                sum += c.len();
                if sum >= *total {
                    break;
                }
            }
            assert_eq!(body.taken, needed, "frames taken");
            let kept: Vec<u8> = first
                .chunks
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect();
            assert_eq!(&kept[..], &input.body[..sum], "bytes kept for forwarding");
            assert!(
                first.chunks.iter().all(|c| !c.is_empty()),
                "an empty chunk kept"
            );
            assert_eq!(first.end_of_body, needed == chunks.len() && !input.trailers);
            assert!(first.trailers.is_none());
        }
        (w, g) => panic!("plain reading {w:?}, chunked {g:?}"),
    }
}

fn check_decompress(g: &Gzip) {
    let limit = g.limit.get() % (1 << 16);
    let encoding: Option<&str> = match &g.encoding {
        Encoding::Gzip => Some("gzip"),
        Encoding::Identity => Some("identity"),
        Encoding::None => None,
        Encoding::Other(s) => Some(s.as_str()),
    };
    let mut data = match g.level {
        Some(level) => gzip(&g.data, level),
        None => g.data.clone(),
    };
    if let Some(second) = &g.second {
        let level = g.level.unwrap_or(6);
        data.extend(gzip(second, level));
    }
    let cut_end = usize::from(g.cut_end % 16).min(data.len());
    if g.cut_end >= 0xf0 {
        data.truncate(data.len() - cut_end);
    }
    if let Some((at, mask)) = g.flip {
        if !data.is_empty() {
            let at = usize::from(at) % data.len();
            data[at] ^= mask;
        }
    }
    data.extend_from_slice(&g.trailing);

    let got = decompress(encoding, &data, limit);
    if let Ok(out) = &got {
        assert!(
            out.len() <= limit,
            "{} bytes returned over the limit of {limit}",
            out.len()
        );
    }
    match encoding {
        None | Some("identity") => {
            assert_eq!(got, Err(FrameError::CompressedWithoutEncoding));
            return;
        }
        Some("gzip") => {}
        Some(other) => {
            assert_eq!(got, Err(FrameError::UnsupportedEncoding(other.to_owned())));
            return;
        }
    }
    // The reference: a gzip reader taking at most limit + 1 bytes.
    let max = limit as u64 + 1;
    let mut reference = Vec::new();
    let read = if data.len() < 10 || data[..3] != [0x1f, 0x8b, 0x08] {
        Err(())
    } else {
        flate2::read::MultiGzDecoder::new(&data[..])
            .take(max)
            .read_to_end(&mut reference)
            .map_err(|_| ())
    };
    match (read, got) {
        (Ok(_), Ok(out)) => assert_eq!(out, reference, "decompressed bytes"),
        (
            Ok(_),
            Err(FrameError::TooLarge {
                size,
                limit: l,
                decompressed: true,
            }),
        ) => {
            assert_eq!(
                reference.len() as u64,
                max,
                "refused as too large, but the data is smaller"
            );
            assert_eq!((size, l), (max, limit as u64));
        }
        (Ok(_), Err(e)) => panic!(
            "gzip reader read {} bytes, decompress failed: {e:?}",
            reference.len()
        ),
        (Err(()), Ok(out)) => panic!(
            "gzip reader failed, decompress returned {} bytes",
            out.len()
        ),
        (Err(()), Err(FrameError::Decompress(_) | FrameError::DecompressHeader(_))) => {}
        (Err(()), Err(e)) => panic!("gzip reader failed, decompress: {e:?}"),
    }
}

fuzz_target!(|input: Input| {
    check_first_message(&input);
    check_decompress(&input.gzip);
});
