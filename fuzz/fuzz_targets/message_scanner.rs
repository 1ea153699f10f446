//! The per-message size limit as a body streams (`grpc::scan`).
//!
//! Against a plain reading of the concatenated body (messages one after
//! the other: where the first refused prefix starts, or where the body
//! ends inside a message), for any cutting of the body into frames:
//!
//! - `MessageScanner` refuses the same prefix (same place, size, flag),
//!   keeps refusing after it, and ends at a boundary exactly when the body
//!   does, with the partial prefix's length right;
//! - `LimitedBody` yields exactly the bytes before the refused prefix, then
//!   the same error; a body ending inside a message yields all but the
//!   held partial prefix then `Truncated` (or, passing truncation, all of
//!   it then the end); a complete body yields every byte and its trailers.
//!   The verdict never depends on the cutting.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use http_body::Body;
use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{LimitError, LimitedBody, MessageScanner, Scan};
use temporal_mtls_proxy_fuzz::{cut, Chunks};

#[derive(Debug, Arbitrary)]
struct Input {
    limit: u32,
    small_limit: bool,
    body: Vec<u8>,
    sizes: Vec<u8>,
    trailers: bool,
    pass_truncated: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    /// Every message complete.
    Complete,
    /// Ends inside a prefix (`partial` bytes of it) or a payload (0).
    Truncated {
        partial: usize,
    },
    TooLarge {
        at: usize,
        size: u64,
    },
    BadFlag {
        at: usize,
        flag: u8,
    },
}

fn plain(body: &[u8], limit: u32) -> Verdict {
    let mut pos = 0;
    loop {
        let rest = body.len() - pos;
        if rest == 0 {
            return Verdict::Complete;
        }
        if rest < 5 {
            return Verdict::Truncated { partial: rest };
        }
        let flag = body[pos];
        if flag > 1 {
            return Verdict::BadFlag { at: pos, flag };
        }
        let len = u32::from_be_bytes(body[pos + 1..pos + 5].try_into().unwrap());
        if len > limit {
            return Verdict::TooLarge {
                at: pos,
                size: u64::from(len),
            };
        }
        if rest - 5 < len as usize {
            return Verdict::Truncated { partial: 0 };
        }
        pos += 5 + len as usize;
    }
}

fn check_scanner(chunks: &[bytes::Bytes], limit: u32, want: Verdict) {
    let mut scanner = MessageScanner::new(limit);
    let mut start = 0;
    let mut refused: Option<Verdict> = None;
    for chunk in chunks {
        let partial = scanner.partial_prefix_len();
        let scan = scanner.scan(chunk);
        let verdict = match scan {
            Scan::Pass => None,
            Scan::TooLarge { at, size, limit: l } => {
                assert_eq!(l, u64::from(limit));
                Some((at, Verdict::TooLarge { at: 0, size }))
            }
            Scan::BadFlag { at, flag } => Some((at, Verdict::BadFlag { at: 0, flag })),
        };
        match (refused, verdict) {
            (None, None) => {}
            (None, Some((at, v))) => {
                assert!(at <= chunk.len());
                // A prefix begun in an earlier chunk is refused at 0.
                let abs = if at == 0 && partial > 0 {
                    start - partial
                } else {
                    start + at
                };
                refused = Some(match v {
                    Verdict::TooLarge { size, .. } => Verdict::TooLarge { at: abs, size },
                    Verdict::BadFlag { flag, .. } => Verdict::BadFlag { at: abs, flag },
                    other => other,
                });
            }
            (Some(_), Some((at, _))) => assert_eq!(at, 0, "after a refusal, at is 0"),
            (Some(r), None) => panic!("passed a chunk after refusing {r:?}"),
        }
        start += chunk.len();
    }
    match (refused, want) {
        (Some(r), w) => assert_eq!(r, w, "scanner verdict"),
        (None, Verdict::Complete) => {
            assert!(scanner.at_boundary());
            assert_eq!(scanner.partial_prefix_len(), 0);
        }
        (None, Verdict::Truncated { partial }) => {
            assert!(!scanner.at_boundary());
            assert_eq!(scanner.partial_prefix_len(), partial);
        }
        (None, w) => panic!("scanner passed everything, plain reading {w:?}"),
    }
}

fn check_body(input: &Input, chunks: Vec<bytes::Bytes>, limit: u32, want: Verdict) {
    // Every chunk (empty ones too) is at most two frames out, plus the
    // trailers and the end: more polls than that is a body that never ends.
    let polls = 2 * chunks.len() + 4;
    let inner = Chunks::new(chunks, input.trailers);
    let mut body = if input.pass_truncated {
        LimitedBody::passing_truncation(inner, limit)
    } else {
        LimitedBody::new(inner, limit)
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut trailers = false;
    let mut end: Option<Result<(), LimitError<std::convert::Infallible>>> = None;
    for _ in 0..polls {
        let hint = body.size_hint();
        if let Some(upper) = hint.upper() {
            assert!(hint.lower() <= upper);
        }
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Pending => panic!("pending on an always-ready body"),
            Poll::Ready(None) => {
                end = Some(Ok(()));
                break;
            }
            Poll::Ready(Some(Err(e))) => {
                end = Some(Err(e));
                break;
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    assert!(!trailers, "data after trailers");
                    out.extend_from_slice(&data);
                }
                Err(frame) => {
                    assert!(frame.is_trailers());
                    trailers = true;
                }
            },
        }
    }
    let end = end.expect("the body ends");
    assert!(body.is_end_stream(), "ended but not end of stream");
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(None) => {}
        other => panic!("polled after its end: {other:?}"),
    }
    let all = &input.body[..];
    match want {
        Verdict::Complete => {
            assert!(end.is_ok(), "{end:?}");
            assert_eq!(out, all);
            assert_eq!(trailers, input.trailers);
        }
        Verdict::Truncated { partial } => {
            assert!(!trailers, "trailers passed after a truncated message");
            if input.pass_truncated {
                assert!(end.is_ok(), "{end:?}");
                assert_eq!(out, all);
            } else {
                assert_eq!(end, Err(LimitError::Truncated));
                assert_eq!(out, &all[..all.len() - partial]);
            }
        }
        Verdict::TooLarge { at, size } => {
            assert_eq!(
                end,
                Err(LimitError::TooLarge {
                    size,
                    limit: u64::from(limit)
                })
            );
            assert_eq!(out, &all[..at], "bytes yielded before the refused prefix");
            assert!(!trailers);
        }
        Verdict::BadFlag { at, flag } => {
            assert_eq!(end, Err(LimitError::BadFlag(flag)));
            assert_eq!(out, &all[..at], "bytes yielded before the refused prefix");
            assert!(!trailers);
        }
    }
}

fuzz_target!(|input: Input| {
    let limit = if input.small_limit {
        input.limit % 256
    } else {
        input.limit
    };
    let want = plain(&input.body, limit);
    let chunks = cut(&input.body, &input.sizes);
    check_scanner(&chunks, limit, want);
    check_body(&input, chunks, limit, want);
});
