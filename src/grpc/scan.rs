//! The per-message size limit on a gRPC body as it streams: `MessageScanner`
//! follows message boundaries across data frames without buffering, and
//! `LimitedBody` wraps a body (request or response) so that a message
//! declaring more than the limit is refused as soon as its 5-byte prefix is
//! in, before any byte of that prefix is forwarded.
//!
//! Data frames cut the stream of length-prefixed messages anywhere, so a
//! prefix can straddle frames. Forwarding its first bytes before the length
//! is known would leave the peer holding the start of a message the proxy
//! is about to refuse; `LimitedBody` instead holds back the incomplete
//! prefix at the end of a frame (at most 4 bytes) until the frame that
//! completes it arrives. Everything else is forwarded as it came, as slices
//! of the frames received: nothing is copied unless one prefix spans three
//! or more frames (then the at most 4 held bytes are joined).
//!
//! Only declared lengths are checked here; where a message is decompressed
//! to be inspected, the decompressed size is checked by `frame::decompress`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::frame::{parse_prefix, PREFIX_LEN};

/// Tracks message boundaries across data frames.
#[derive(Debug, Clone)]
pub struct MessageScanner {
    limit: u32,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between messages (`filled == 0`) or inside a prefix of which
    /// `filled` bytes (always fewer than `PREFIX_LEN`) have been seen.
    Prefix {
        bytes: [u8; PREFIX_LEN],
        filled: usize,
    },
    /// Inside a payload, `remaining` (never 0) bytes to go.
    Payload { remaining: u32 },
    /// A prefix was refused: nothing after it may pass.
    Refused(Stop),
}

const BETWEEN: State = State::Prefix {
    bytes: [0; PREFIX_LEN],
    filled: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TooLarge { size: u64, limit: u64 },
    BadFlag(u8),
}

impl Stop {
    fn at(self, at: usize) -> Scan {
        match self {
            Stop::TooLarge { size, limit } => Scan::TooLarge { at, size, limit },
            Stop::BadFlag(flag) => Scan::BadFlag { at, flag },
        }
    }
}

/// What a chunk holds, as far as the size limit is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// The whole chunk may be forwarded, except that its last
    /// `MessageScanner::partial_prefix_len()` bytes (if any) are the start
    /// of a prefix not yet complete, which a forwarder that must never pass
    /// a refused prefix holds back.
    Pass,
    /// The bytes before `at` may be forwarded; at `at` begins the prefix of
    /// a message declaring `size` bytes (more than `limit`). Nothing from
    /// `at` on may be forwarded. When the prefix began in an earlier chunk,
    /// `at` is 0 and the prefix's earlier bytes are the ones held back.
    TooLarge { at: usize, size: u64, limit: u64 },
    /// At `at` begins a prefix whose compressed flag is neither 0 nor 1.
    /// Nothing from `at` on may be forwarded; `at` is as for `TooLarge`.
    BadFlag { at: usize, flag: u8 },
}

impl MessageScanner {
    pub fn new(limit: u32) -> Self {
        MessageScanner {
            limit,
            state: BETWEEN,
        }
    }

    /// Feeds the next chunk. Costs O(number of message boundaries in the
    /// chunk), allocates nothing. Once a prefix is refused, every later
    /// chunk gets the same answer with `at` 0.
    pub fn scan(&mut self, chunk: &[u8]) -> Scan {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Refused(refusal) => return refusal.at(pos),
                State::Payload { remaining } => {
                    let rest = chunk.len().saturating_sub(pos);
                    match u32::try_from(rest) {
                        Ok(rest) if rest < *remaining => {
                            *remaining -= rest;
                            return Scan::Pass;
                        }
                        // `remaining` fits in what is left of the chunk, so
                        // also in a usize.
                        _ => pos += usize::try_from(*remaining).unwrap_or(rest),
                    }
                    self.state = BETWEEN;
                }
                State::Prefix { bytes, filled } => {
                    let rest = chunk.get(pos..).unwrap_or_default();
                    if rest.is_empty() {
                        return Scan::Pass;
                    }
                    // A prefix still incomplete at the end of a chunk is
                    // only ever continued at the start of the next one, so
                    // `pos` is 0 when this prefix began in an earlier chunk.
                    let at = pos;
                    let take = (PREFIX_LEN - *filled).min(rest.len());
                    if let (Some(dst), Some(src)) =
                        (bytes.get_mut(*filled..*filled + take), rest.get(..take))
                    {
                        dst.copy_from_slice(src);
                    }
                    *filled += take;
                    pos += take;
                    if *filled < PREFIX_LEN {
                        return Scan::Pass;
                    }
                    let refusal = match parse_prefix(*bytes) {
                        // `parse_prefix` refuses nothing but the flag.
                        Err(_) => Stop::BadFlag(bytes[0]),
                        Ok(prefix) if prefix.len > self.limit => Stop::TooLarge {
                            size: u64::from(prefix.len),
                            limit: u64::from(self.limit),
                        },
                        Ok(prefix) => {
                            self.state = match prefix.len {
                                0 => BETWEEN,
                                len => State::Payload { remaining: len },
                            };
                            continue;
                        }
                    };
                    self.state = State::Refused(refusal);
                    return refusal.at(at);
                }
            }
        }
    }

    /// True when the stream is between messages (not inside a prefix or
    /// payload, and nothing was refused): a body may end here.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Prefix { filled: 0, .. })
    }

    /// How many bytes of a prefix not yet complete have been seen: they are
    /// the last bytes fed, possibly spread over several chunks.
    pub fn partial_prefix_len(&self) -> usize {
        match self.state {
            State::Prefix { filled, .. } => filled,
            State::Payload { .. } | State::Refused(_) => 0,
        }
    }
}

/// Why a `LimitedBody` stopped.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LimitError<E> {
    #[error("gRPC message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("invalid gRPC compressed flag {0} (must be 0 or 1)")]
    BadFlag(u8),
    /// The body ended, or its trailers came, inside a message.
    #[error("body ended inside a gRPC message")]
    Truncated,
    #[error(transparent)]
    Inner(E),
}

impl<E> From<Stop> for LimitError<E> {
    fn from(refusal: Stop) -> Self {
        match refusal {
            Stop::TooLarge { size, limit } => LimitError::TooLarge { size, limit },
            Stop::BadFlag(flag) => LimitError::BadFlag(flag),
        }
    }
}

/// A body whose gRPC messages may each be at most `limit` bytes (as
/// declared in their prefix). Data before a refused prefix is yielded, then
/// one error, then the body is finished without polling `inner` again.
/// Any error ends the body: bytes held back by then are never yielded.
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: B,
    scanner: MessageScanner,
    /// The incomplete prefix at the end of what was read from `inner`: all
    /// of `scanner.partial_prefix_len()` bytes, not yielded yet.
    held: Bytes,
    /// The second of two pieces to yield for one chunk.
    pending: Option<Bytes>,
    /// To yield after `pending`, ending the body.
    stop: Option<Stop>,
    done: bool,
    /// A body that ends inside a message is passed on as it ended (the
    /// request side: the frontend then answers as it does to such a body)
    /// instead of ending in `LimitError::Truncated` (the response side: a
    /// client must never take a cut-off response for a whole one).
    pass_truncated: bool,
}

impl<E> LimitError<E> {
    /// The same error without the inner body's error type (`Inner` becomes
    /// `Truncated`: the stream ended where a message was expected).
    pub fn without_inner(self) -> LimitError<std::convert::Infallible> {
        match self {
            LimitError::TooLarge { size, limit } => LimitError::TooLarge { size, limit },
            LimitError::BadFlag(f) => LimitError::BadFlag(f),
            LimitError::Truncated | LimitError::Inner(_) => LimitError::Truncated,
        }
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u32) -> Self {
        LimitedBody {
            inner,
            scanner: MessageScanner::new(limit),
            held: Bytes::new(),
            pending: None,
            stop: None,
            done: false,
            pass_truncated: false,
        }
    }

    /// As [`LimitedBody::new`], but a body that ends inside a message ends
    /// here too, with every byte it sent (nothing held back).
    pub fn passing_truncation(inner: B, limit: u32) -> Self {
        LimitedBody {
            pass_truncated: true,
            ..LimitedBody::new(inner, limit)
        }
    }

    /// The end of `inner` (or its trailers) inside a message.
    fn truncated<E>(&mut self) -> PollFrame<E> {
        if !self.pass_truncated {
            return self.finish(Some(Err(LimitError::Truncated)));
        }
        // Whatever was held is the client's last bytes; then the end.
        // (Request trailers never go upstream anyway.)
        let held = std::mem::take(&mut self.held);
        self.done = true;
        if held.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(Frame::data(held))))
        }
    }

    /// Takes one data chunk from `inner`; returns what to yield now, having
    /// set `pending`, `stop` and `held` for what comes after.
    fn admit(&mut self, chunk: Bytes) -> Option<Bytes> {
        if chunk.is_empty() {
            // Nothing to scan or hold; passing it on (rather than polling
            // again) keeps `poll_frame`'s loop bounded.
            return Some(chunk);
        }
        match self.scanner.scan(&chunk) {
            Scan::Pass => {
                let tail = self.scanner.partial_prefix_len();
                if tail >= chunk.len() {
                    // The chunk is all prefix, continuing the held bytes or
                    // starting a prefix after a boundary (nothing held).
                    debug_assert_eq!(tail, self.held.len() + chunk.len());
                    self.held = join(std::mem::take(&mut self.held), chunk);
                    return None;
                }
                // Whatever was held belongs to a prefix this chunk completed.
                let before = std::mem::take(&mut self.held);
                let keep = chunk.len() - tail;
                self.held = chunk.slice(keep..);
                self.then(before, chunk.slice(..keep))
            }
            Scan::TooLarge { at, size, limit } => {
                self.refuse(Stop::TooLarge { size, limit }, at, chunk)
            }
            Scan::BadFlag { at, flag } => self.refuse(Stop::BadFlag(flag), at, chunk),
        }
    }

    fn refuse(&mut self, refusal: Stop, at: usize, chunk: Bytes) -> Option<Bytes> {
        self.stop = Some(refusal);
        let before = std::mem::take(&mut self.held);
        if at == 0 {
            // Held bytes here are the start of the refused prefix (a new
            // prefix cannot begin at 0 while one is incomplete): dropped.
            return None;
        }
        self.then(before, chunk.slice(..at.min(chunk.len())))
    }

    /// Yields `first` now and `second` next; either may be empty.
    fn then(&mut self, first: Bytes, second: Bytes) -> Option<Bytes> {
        if first.is_empty() {
            return (!second.is_empty()).then_some(second);
        }
        if !second.is_empty() {
            self.pending = Some(second);
        }
        Some(first)
    }

    fn finish<E>(&mut self, result: Option<Result<Frame<Bytes>, LimitError<E>>>) -> PollFrame<E> {
        self.done = true;
        self.held = Bytes::new();
        Poll::Ready(result)
    }
}

type PollFrame<E> = Poll<Option<Result<Frame<Bytes>, LimitError<E>>>>;

/// `held` followed by `more`: a copy only when both hold bytes, that is
/// when one prefix spans three or more chunks (at most 4 bytes then).
fn join(held: Bytes, more: Bytes) -> Bytes {
    if held.is_empty() {
        return more;
    }
    let mut joined = BytesMut::with_capacity(held.len() + more.len());
    joined.extend_from_slice(&held);
    joined.extend_from_slice(&more);
    joined.freeze()
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = LimitError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        // Each turn yields, or takes a non-empty chunk that is wholly held
        // (at most 4 in a row: they all add to one prefix), or sets `stop`.
        loop {
            if let Some(data) = this.pending.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(stop) = this.stop.take() {
                return this.finish(Some(Err(stop.into())));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) if this.scanner.at_boundary() => return this.finish(None),
                Poll::Ready(None) => return this.truncated(),
                Poll::Ready(Some(Err(e))) => return this.finish(Some(Err(LimitError::Inner(e)))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(chunk) => {
                    if let Some(data) = this.admit(chunk) {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Err(frame) => {
                    // Trailers end the body: inside a message, that is a
                    // truncated message, and the trailers are not passed.
                    if frame.is_trailers() && !this.scanner.at_boundary() {
                        return this.truncated();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Inside a message the inner body's end is a truncation still to
        // report, so the end is not announced until the next poll finds it.
        self.done
            || (self.pending.is_none()
                && self.stop.is_none()
                && self.scanner.at_boundary()
                && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.pending.as_ref().map_or(0, |p| p.len() as u64);
        if self.done {
            return SizeHint::with_exact(0);
        }
        if self.stop.is_some() {
            return SizeHint::with_exact(pending);
        }
        // On success every byte of `inner` is yielded; a refusal yields
        // fewer, but then the body ends in an error anyway.
        let buffered = pending.saturating_add(self.held.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(buffered));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::task::Waker;

    use http::HeaderMap;

    use super::*;

    /// A message with the given flag, declared length, and `actual` payload
    /// bytes (fewer than declared for a refused or truncated message).
    fn message_with(flag: u8, declared: u32, actual: usize) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&declared.to_be_bytes());
        out.extend((0..actual).map(|i| (i % 251) as u8));
        out
    }

    fn message(len: u32) -> Vec<u8> {
        message_with(0, len, len as usize)
    }

    /// What the inner body does on each poll.
    #[derive(Debug)]
    enum Step {
        Data(Bytes),
        Trailers(HeaderMap),
        Pending,
        Fail(&'static str),
    }

    /// Plays its steps, then ends; fails the test if polled after its end.
    #[derive(Debug)]
    struct Script {
        steps: VecDeque<Step>,
        ended: bool,
        /// What `is_end_stream` says once the steps are out.
        knows_end: bool,
    }

    fn script(steps: Vec<Step>) -> Script {
        Script {
            steps: steps.into(),
            ended: false,
            knows_end: false,
        }
    }

    fn chunks(chunks: &[Bytes]) -> Script {
        script(chunks.iter().cloned().map(Step::Data).collect())
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            assert!(!self.ended, "inner body polled after its end");
            match self.steps.pop_front() {
                None => {
                    self.ended = true;
                    Poll::Ready(None)
                }
                Some(Step::Data(d)) => Poll::Ready(Some(Ok(Frame::data(d)))),
                Some(Step::Trailers(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Some(Step::Pending) => Poll::Pending,
                Some(Step::Fail(e)) => {
                    self.ended = true;
                    Poll::Ready(Some(Err(e)))
                }
            }
        }

        fn is_end_stream(&self) -> bool {
            self.ended || (self.knows_end && self.steps.is_empty())
        }
    }

    fn poll<B>(body: &mut LimitedBody<B>) -> PollFrame<B::Error>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
    }

    /// Everything a body yields, in order, up to its end or first error.
    #[derive(Debug, Default)]
    struct Outcome<E> {
        data: Vec<Bytes>,
        trailers: Option<HeaderMap>,
        error: Option<LimitError<E>>,
    }

    impl<E> Outcome<E> {
        fn bytes(&self) -> Vec<u8> {
            self.data.iter().flat_map(|d| d.iter().copied()).collect()
        }
    }

    fn drain<B>(body: &mut LimitedBody<B>) -> Outcome<B::Error>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let mut out = Outcome {
            data: Vec::new(),
            trailers: None,
            error: None,
        };
        // Script's Pending steps are consumed, so this terminates.
        for _ in 0..1_000_000 {
            match poll(body) {
                Poll::Pending => continue,
                Poll::Ready(None) => {
                    assert!(body.is_end_stream());
                    return out;
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => {
                        assert!(out.trailers.is_none(), "data after trailers");
                        out.data.push(d);
                    }
                    Err(frame) => out.trailers = frame.into_trailers().ok(),
                },
                Poll::Ready(Some(Err(e))) => {
                    out.error = Some(e);
                    // An error ends the body, without polling inner again.
                    assert!(body.is_end_stream());
                    assert!(matches!(poll(body), Poll::Ready(None)));
                    return out;
                }
            }
        }
        panic!("body never ended");
    }

    fn within(piece: &Bytes, sources: &[Bytes]) -> bool {
        let range = piece.as_ptr_range();
        sources.iter().any(|s| {
            let source = s.as_ptr_range();
            source.start <= range.start && range.end <= source.end
        })
    }

    #[test]
    fn scanner_follows_boundaries() {
        let mut scanner = MessageScanner::new(100);
        assert!(scanner.at_boundary());
        let mut stream = message(3);
        stream.extend(message(0));
        stream.extend(message(100));
        assert_eq!(scanner.scan(&stream), Scan::Pass);
        assert!(scanner.at_boundary());
        // Empty chunks change nothing.
        assert_eq!(scanner.scan(&[]), Scan::Pass);
        assert!(scanner.at_boundary());

        // Inside a payload, then inside a prefix.
        assert_eq!(scanner.scan(&message(10)[..8]), Scan::Pass);
        assert!(!scanner.at_boundary());
        assert_eq!(scanner.partial_prefix_len(), 0);
        assert_eq!(scanner.scan(&[0; 7]), Scan::Pass);
        assert!(scanner.at_boundary());
        assert_eq!(scanner.scan(&[1, 0]), Scan::Pass);
        assert_eq!(scanner.partial_prefix_len(), 2);
        assert_eq!(scanner.scan(&[0]), Scan::Pass);
        assert_eq!(scanner.partial_prefix_len(), 3);
        assert!(!scanner.at_boundary());
        assert_eq!(scanner.scan(&[0, 1, 0xaa]), Scan::Pass);
        assert_eq!(scanner.partial_prefix_len(), 0);
        assert!(scanner.at_boundary());
    }

    #[test]
    fn scanner_reports_where_a_refused_prefix_begins() {
        let mut scanner = MessageScanner::new(100);
        let mut chunk = message(100);
        let at = chunk.len();
        chunk.extend(message_with(0, 101, 3));
        assert_eq!(
            scanner.scan(&chunk),
            Scan::TooLarge {
                at,
                size: 101,
                limit: 100
            }
        );
        // Refused for good.
        assert!(!scanner.at_boundary());
        assert_eq!(
            scanner.scan(&message(1)),
            Scan::TooLarge {
                at: 0,
                size: 101,
                limit: 100
            }
        );

        // A prefix begun in an earlier chunk is reported at 0.
        let mut scanner = MessageScanner::new(100);
        assert_eq!(scanner.scan(&[0, 0, 0]), Scan::Pass);
        assert_eq!(
            scanner.scan(&[1, 0, 9, 9]),
            Scan::TooLarge {
                at: 0,
                size: 256,
                limit: 100
            }
        );
        let mut scanner = MessageScanner::new(100);
        assert_eq!(scanner.scan(&[7]), Scan::Pass);
        assert_eq!(
            scanner.scan(&[0, 0, 0, 0]),
            Scan::BadFlag { at: 0, flag: 7 }
        );
    }

    #[test]
    fn scanner_extremes() {
        // A limit of u32::MAX lets every declared length through, and a
        // payload that long is followed to its end without overflow.
        let mut scanner = MessageScanner::new(u32::MAX);
        assert_eq!(scanner.scan(&message_with(1, u32::MAX, 10)), Scan::Pass);
        assert!(!scanner.at_boundary());
        let mut scanner = MessageScanner::new(0);
        assert_eq!(scanner.scan(&message(0).repeat(3)), Scan::Pass);
        assert_eq!(
            scanner.scan(&message(1)),
            Scan::TooLarge {
                at: 0,
                size: 1,
                limit: 0
            }
        );
    }

    #[test]
    fn boundaries_inside_chunks_are_zero_copy() {
        // Each chunk: a few whole messages, then the start of a payload that
        // the next chunk finishes; no prefix straddles.
        let mut first = message(3);
        first.extend(message(0));
        first.extend(&message(20)[..12]);
        let mut second = message(20)[12..].to_vec();
        second.extend(message(7));
        let input = [
            Bytes::from(first),
            Bytes::from(second),
            Bytes::from(message(1)),
        ];
        let mut body = LimitedBody::new(chunks(&input), 20);
        let out = drain(&mut body);
        assert_eq!(out.error, None);
        assert_eq!(out.data, input);
        for (yielded, given) in out.data.iter().zip(&input) {
            assert_eq!(yielded.as_ptr_range(), given.as_ptr_range());
        }
    }

    #[test]
    fn prefix_split_across_two_chunks() {
        for split in 1..PREFIX_LEN {
            let next = message(6);
            let mut first = message(4);
            first.extend(&next[..split]);
            let first = Bytes::from(first);
            let second = Bytes::from(next[split..].to_vec());
            let mut body = LimitedBody::new(
                script(vec![
                    Step::Data(first.clone()),
                    Step::Pending,
                    Step::Data(second.clone()),
                ]),
                6,
            );
            // The incomplete prefix is held until the next chunk comes.
            let Poll::Ready(Some(Ok(frame))) = poll(&mut body) else {
                panic!("no frame")
            };
            assert_eq!(frame.into_data().unwrap(), message(4));
            assert!(poll(&mut body).is_pending(), "split {split}");
            assert!(!body.is_end_stream());
            let out = drain(&mut body);
            assert_eq!(out.error, None, "split {split}");
            // The held bytes come as their own slice of the first chunk.
            assert_eq!(out.data, [first.slice(9..), second.clone()]);
            assert!(out
                .data
                .iter()
                .all(|d| within(d, &[first.clone(), second.clone()])));
        }
    }

    #[test]
    fn prefix_split_across_many_chunks() {
        // The only case that copies: at most 4 held bytes joined.
        let stream = message(2);
        let pieces: Vec<Bytes> = stream.iter().map(|b| Bytes::from(vec![*b])).collect();
        let mut body = LimitedBody::new(chunks(&pieces), 2);
        let out = drain(&mut body);
        assert_eq!(out.error, None);
        assert_eq!(out.bytes(), stream);
        assert_eq!(out.data.len(), 4, "{:?}", out.data);
        assert_eq!(out.data[0], &stream[..4]);
    }

    #[test]
    fn many_small_messages_in_one_chunk() {
        let stream: Vec<u8> = (0..2000).flat_map(|i| message(i % 11)).collect();
        let chunk = Bytes::from(stream);
        let mut body = LimitedBody::new(chunks(std::slice::from_ref(&chunk)), 10);
        let out = drain(&mut body);
        assert_eq!(out.error, None);
        assert_eq!(out.data.len(), 1);
        assert_eq!(out.data[0].as_ptr_range(), chunk.as_ptr_range());
    }

    #[test]
    fn message_at_the_limit_passes_one_more_byte_does_not() {
        let limit = 100;
        let mut good = message(40);
        good.extend(message(limit));
        let oversize = message_with(1, limit + 1, limit as usize + 1);
        let mut stream = good.clone();
        stream.extend(&oversize);
        stream.extend(message(1));
        // Every way of cutting the stream around the oversize prefix: no
        // byte of it is yielded, whichever chunk it starts in.
        for cut in good.len() - 3..=good.len() + PREFIX_LEN + 2 {
            let input = [
                Bytes::from(stream[..cut].to_vec()),
                Bytes::from(stream[cut..].to_vec()),
            ];
            let mut body = LimitedBody::new(chunks(&input), limit);
            let out = drain(&mut body);
            assert_eq!(out.bytes(), good, "cut at {cut}");
            assert_eq!(
                out.error,
                Some(LimitError::TooLarge {
                    size: 101,
                    limit: 100
                })
            );
            assert!(out.data.iter().all(|d| within(d, &input)));
        }
    }

    #[test]
    fn oversize_after_good_messages_in_the_same_chunk() {
        let mut stream: Vec<u8> = (0..5).flat_map(message).collect();
        let good = stream.len();
        stream.extend(message_with(0, 4 << 20, 100));
        let chunk = Bytes::from(stream);
        // The rest of the body must not even be read.
        let mut body = LimitedBody::new(
            script(vec![
                Step::Data(chunk.clone()),
                Step::Data(Bytes::from(vec![0; 1000])),
                Step::Trailers(HeaderMap::new()),
            ]),
            (4 << 20) - 1,
        );
        let Poll::Ready(Some(Ok(frame))) = poll(&mut body) else {
            panic!("no frame")
        };
        let data = frame.into_data().unwrap();
        assert_eq!(data.as_ptr_range(), chunk.slice(..good).as_ptr_range());
        assert!(!body.is_end_stream());
        let out = drain(&mut body);
        assert!(out.data.is_empty());
        assert_eq!(
            out.error,
            Some(LimitError::TooLarge {
                size: 4 << 20,
                limit: (4 << 20) - 1
            })
        );
        assert_eq!(body.inner.steps.len(), 2);
    }

    #[test]
    fn bad_flag() {
        let mut body = LimitedBody::new(chunks(&[Bytes::from(message_with(2, 0, 0))]), 10);
        let out = drain(&mut body);
        assert!(out.data.is_empty());
        assert_eq!(out.error, Some(LimitError::BadFlag(2)));

        // After a good message; the flag byte alone in a chunk.
        let input = [
            Bytes::from([message(3), vec![0x80]].concat()),
            Bytes::from(vec![0, 0, 0, 0]),
        ];
        let mut body = LimitedBody::new(chunks(&input), 10);
        let out = drain(&mut body);
        assert_eq!(out.bytes(), message(3));
        assert_eq!(out.error, Some(LimitError::BadFlag(0x80)));
    }

    #[test]
    fn body_ending_inside_a_message_is_truncated() {
        // Inside a payload: what came is forwarded, then the error.
        let partial = Bytes::from(message(10)[..9].to_vec());
        let mut body = LimitedBody::new(chunks(std::slice::from_ref(&partial)), 10);
        let out = drain(&mut body);
        assert_eq!(out.data, [partial]);
        assert_eq!(out.error, Some(LimitError::Truncated));

        // Inside a prefix: the held bytes are never forwarded.
        let input = Bytes::from([message(1), vec![0, 0]].concat());
        let mut body = LimitedBody::new(chunks(&[input]), 10);
        let out = drain(&mut body);
        assert_eq!(out.bytes(), message(1));
        assert_eq!(out.error, Some(LimitError::Truncated));

        // Trailers inside a message are not passed on.
        let mut body = LimitedBody::new(
            script(vec![
                Step::Data(Bytes::from(message(10)[..9].to_vec())),
                Step::Trailers(HeaderMap::new()),
            ]),
            10,
        );
        let out = drain(&mut body);
        assert_eq!(out.trailers, None);
        assert_eq!(out.error, Some(LimitError::Truncated));

        // A body with no messages at all is fine.
        let mut body = LimitedBody::new(chunks(&[]), 10);
        let out = drain(&mut body);
        assert!(out.data.is_empty() && out.error.is_none());
    }

    #[test]
    fn trailers_pass() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let mut body = LimitedBody::new(
            script(vec![
                Step::Data(Bytes::from(message(3))),
                Step::Data(Bytes::new()),
                Step::Trailers(trailers.clone()),
            ]),
            10,
        );
        let out = drain(&mut body);
        assert_eq!(out.error, None);
        assert_eq!(out.bytes(), message(3));
        assert_eq!(out.trailers, Some(trailers));
    }

    #[test]
    fn inner_errors_pass() {
        let mut body = LimitedBody::new(
            script(vec![
                Step::Data(Bytes::from(message(3))),
                Step::Fail("reset"),
            ]),
            10,
        );
        let out = drain(&mut body);
        assert_eq!(out.bytes(), message(3));
        assert_eq!(out.error, Some(LimitError::Inner("reset")));
    }

    #[test]
    fn end_of_stream_waits_for_a_boundary() {
        // An inner body that knows its end: announced with the last data
        // frame when that ends on a boundary (so the end rides on it)...
        let mut body = LimitedBody::new(http_body_util::Full::new(Bytes::from(message(3))), 10);
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(8));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));

        // ...and not otherwise, so the truncation is still reported.
        let partial = [message(3), vec![0, 0]].concat();
        let mut body = LimitedBody::new(http_body_util::Full::new(Bytes::from(partial)), 10);
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().lower(), 2);
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(LimitError::Truncated)))
        ));
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));

        let mut inner = chunks(&[Bytes::from(message(3))]);
        inner.knows_end = true;
        let mut body = LimitedBody::new(inner, 2);
        assert!(!body.is_end_stream());
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(LimitError::TooLarge { .. })))
        ));
        assert!(body.is_end_stream());
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            LimitError::<Infallible>::TooLarge {
                size: 5_000_000,
                limit: 4_194_304
            }
            .to_string(),
            "gRPC message of 5000000 bytes exceeds the limit of 4194304 bytes"
        );
        assert_eq!(
            LimitError::<Infallible>::BadFlag(2).to_string(),
            "invalid gRPC compressed flag 2 (must be 0 or 1)"
        );
        assert_eq!(
            LimitError::<Infallible>::Truncated.to_string(),
            "body ended inside a gRPC message"
        );
        let inner: LimitError<std::fmt::Error> = LimitError::Inner(std::fmt::Error);
        assert_eq!(inner.to_string(), std::fmt::Error.to_string());
    }

    /// xorshift64: enough randomness to vary the cases, reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Cuts `stream` into chunks: one byte each, or random sizes with the
    /// occasional empty chunk.
    fn chunkings(rng: &mut Rng, stream: &[u8]) -> Vec<Vec<Bytes>> {
        let ones = stream.iter().map(|b| Bytes::from(vec![*b])).collect();
        let mut random = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = match rng.below(8) {
                0 => 0,
                1 => rest.len(),
                _ => rng.below(12) as usize + 1,
            };
            let (chunk, more) = rest.split_at(n.min(rest.len()));
            random.push(Bytes::from(chunk.to_vec()));
            rest = more;
        }
        vec![ones, random, vec![Bytes::from(stream.to_vec())]]
    }

    /// What the body must yield for `stream` as a whole: the bytes that may
    /// be forwarded, and how it ends.
    fn expected(stream: &[u8], limit: u32) -> (&[u8], Option<LimitError<&'static str>>) {
        let mut pos = 0;
        while pos < stream.len() {
            let Some(&[flag, a, b, c, d]) = stream.get(pos..pos + PREFIX_LEN) else {
                return (&stream[..pos], Some(LimitError::Truncated));
            };
            if flag > 1 {
                return (&stream[..pos], Some(LimitError::BadFlag(flag)));
            }
            let len = u32::from_be_bytes([a, b, c, d]);
            if len > limit {
                let error = LimitError::TooLarge {
                    size: len.into(),
                    limit: limit.into(),
                };
                return (&stream[..pos], Some(error));
            }
            pos += PREFIX_LEN + len as usize;
            if pos > stream.len() {
                return (stream, Some(LimitError::Truncated));
            }
        }
        (stream, None)
    }

    #[test]
    fn any_chunking_yields_what_a_whole_body_parse_allows() {
        let limit = 40;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..3000 {
            let mut stream = Vec::new();
            for _ in 0..rng.below(8) {
                let flag = match rng.below(30) {
                    0 => rng.below(254) as u8 + 2,
                    n => (n % 2) as u8,
                };
                let declared = match rng.below(20) {
                    0 => limit + 1 + rng.below(1000) as u32,
                    1 => u32::MAX,
                    2 => limit,
                    _ => rng.below(12) as u32,
                };
                let actual = (declared as usize).min(limit as usize + 8);
                stream.extend(message_with(flag, declared, actual));
            }
            if rng.below(4) == 0 {
                stream.truncate(rng.below(stream.len() as u64 + 1) as usize);
            }
            let (allowed, ending) = expected(&stream, limit);
            for input in chunkings(&mut rng, &stream) {
                let mut body = LimitedBody::new(chunks(&input), limit);
                let out = drain(&mut body);
                assert_eq!(out.bytes(), allowed, "case {case}: {input:02x?}");
                assert_eq!(out.error, ending, "case {case}: {input:02x?}");
            }
        }
    }

    #[test]
    fn random_chunkings_of_a_valid_stream_reproduce_it() {
        let limit = 1000;
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let stream: Vec<u8> = (0..200)
            .flat_map(|_| {
                let len = match rng.below(10) {
                    0 => limit,
                    1 => 0,
                    _ => rng.below(40) as u32,
                };
                message_with(rng.below(2) as u8, len, len as usize)
            })
            .collect();
        for _ in 0..200 {
            let mut input = Vec::new();
            let mut rest = stream.as_slice();
            while !rest.is_empty() {
                let max = if rng.below(2) == 0 { 8 } else { 3000 };
                let n = rng.below(max) as usize;
                let (chunk, more) = rest.split_at(n.min(rest.len()));
                input.push(Bytes::from(chunk.to_vec()));
                rest = more;
            }
            let mut body = LimitedBody::new(chunks(&input), limit);
            let out = drain(&mut body);
            assert_eq!(out.error, None);
            assert_eq!(out.bytes(), stream);
            // Copies are only ever the joined prefix pieces (4 bytes or fewer).
            for d in &out.data {
                assert!(within(d, &input) || d.len() < PREFIX_LEN, "{d:02x?}");
            }
        }
    }

    /// The request side passes a body that ends inside a message as it
    /// came, the held prefix bytes included; the response side refuses it.
    #[test]
    fn a_truncated_request_body_is_passed_on_whole() {
        let mut input = message(3);
        input.extend_from_slice(&[0, 0]);
        let collect = |mut body: LimitedBody<http_body_util::Full<Bytes>>| {
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut out = Vec::new();
            loop {
                match Pin::new(&mut body).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(f))) => out.extend_from_slice(f.data_ref().unwrap()),
                    Poll::Ready(Some(Err(e))) => return Err(e.without_inner()),
                    Poll::Ready(None) => return Ok(out),
                    Poll::Pending => unreachable!(),
                }
            }
        };
        let full = || http_body_util::Full::new(Bytes::from(input.clone()));
        assert_eq!(
            collect(LimitedBody::passing_truncation(full(), 10)),
            Ok(input.clone())
        );
        assert_eq!(
            collect(LimitedBody::new(full(), 10)),
            Err(LimitError::Truncated)
        );
    }
}
