//! Real peers over an in-memory pipe: hyper's HTTP/2 server behind the
//! guard, the `h2` crate's client (or hand-written frames) in front.
//! Time is a clock the tests move by hand: the crate's tokio has no
//! `test-util`, so `time::pause` is not available; hyper needs no timer
//! here (no keepalive or header timeout configured).

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::frames::*;
use super::inbound::*;
use super::ping::*;
use super::*;

/// A failsafe on awaits that should end promptly; only a failing test
/// waits it out.
const PROMPTLY: Duration = Duration::from_secs(10);
const SETTINGS: u8 = 0x4;
const WINDOW_UPDATE: u8 = 0x8;
const END_HEADERS: u8 = 0x4;
const BIG: usize = 1 << 20;
const SDK_PING_INTERVAL: Duration = Duration::from_secs(30);

type TestBody = BoxBody<Bytes, Infallible>;
type Chunks = Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>;

/// A response body the test feeds, one DATA frame per chunk.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
    }
}

async fn respond(req: Request<Incoming>, chunks: Chunks) -> Result<Response<TestBody>, Infallible> {
    let body = match req.uri().path() {
        // An open stream on which the server sends nothing (a long poll).
        "/hang" => std::future::pending().await,
        "/stream" => {
            let rx = chunks
                .lock()
                .unwrap()
                .take()
                .expect("one /stream call per test");
            ChannelBody(rx).boxed()
        }
        "/big" => Full::new(Bytes::from(vec![b'x'; BIG])).boxed(),
        "/echo" => Full::new(req.into_body().collect().await.unwrap().to_bytes()).boxed(),
        _ => Full::new(Bytes::from_static(b"ok")).boxed(),
    };
    Ok(Response::new(body))
}

fn guarded<IO>(
    io: IO,
    policy: PingPolicy,
) -> (FrameGuard<IO>, Arc<AtomicU64>, Arc<Mutex<Instant>>) {
    let events = Arc::new(AtomicU64::new(0));
    let now = Arc::new(Mutex::new(Instant::now()));
    let guard = FrameGuard::with_clock(io, policy, events.clone(), Clock::Manual(now.clone()));
    (guard, events, now)
}

fn serve<IO>(guard: FrameGuard<IO>, chunks: Chunks) -> JoinHandle<Result<(), hyper::Error>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| respond(req, chunks.clone()));
    tokio::spawn(
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(guard), service),
    )
}

struct Peer {
    send: h2::client::SendRequest<Bytes>,
    pings: h2::PingPong,
    client: JoinHandle<Result<(), h2::Error>>,
    server: JoinHandle<Result<(), hyper::Error>>,
    events: Arc<AtomicU64>,
    now: Arc<Mutex<Instant>>,
    chunks: mpsc::Sender<Bytes>,
}

/// hyper behind the guard, and an `h2` client, over a pipe that holds
/// `capacity` bytes each way.
async fn connect(policy: PingPolicy, capacity: usize) -> Peer {
    connect_with(policy, capacity, false).await
}

/// `vectored`: the server's side takes vectored writes, as a TLS stream
/// does, so hyper hands over frame heads and payloads in separate
/// slices.
async fn connect_with(policy: PingPolicy, capacity: usize, vectored: bool) -> Peer {
    let (client_io, server_io) = tokio::io::duplex(capacity);
    let (chunks, rx) = mpsc::channel(1);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let (server, events, now) = if vectored {
        let (guard, events, now) = guarded(Vectored(server_io), policy);
        (serve(guard, rx), events, now)
    } else {
        let (guard, events, now) = guarded(server_io, policy);
        (serve(guard, rx), events, now)
    };
    let (send, mut conn) = h2::client::handshake(client_io).await.unwrap();
    let pings = conn.ping_pong().unwrap();
    let client = tokio::spawn(conn);
    Peer {
        send,
        pings,
        client,
        server,
        events,
        now,
        chunks,
    }
}

impl Peer {
    fn advance(&self, by: Duration) {
        *self.now.lock().unwrap() += by;
    }

    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    async fn ping(&mut self) -> Result<(), h2::Error> {
        let pong = timeout(PROMPTLY, self.pings.ping(h2::Ping::opaque())).await;
        pong.expect("a ping is answered or refused promptly")
            .map(drop)
    }

    /// Starts a GET; the response future keeps the stream open.
    async fn start(&mut self, path: &str) -> h2::client::ResponseFuture {
        let req = Request::get(format!("http://guard.test{path}"))
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.unwrap();
        send.send_request(req, true).unwrap().0
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
        let response = timeout(PROMPTLY, self.start(path).await)
            .await
            .unwrap()
            .unwrap();
        let status = response.status();
        let mut body = response.into_body();
        let mut all = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            all.extend_from_slice(&chunk);
        }
        (status, Bytes::from(all))
    }

    /// Pings back to back until one is refused; how many were answered.
    async fn flood(&mut self, pings: usize) -> usize {
        for answered in 0..pings {
            if self.ping().await.is_err() {
                return answered;
            }
        }
        pings
    }

    /// The connection got GOAWAY too_many_pings and closed, on both ends.
    async fn assert_refused(self) {
        let ended = timeout(PROMPTLY, self.client)
            .await
            .expect("client connection ends");
        let err = ended
            .unwrap()
            .expect_err("the client connection ends in an error");
        assert!(err.is_go_away() && err.is_remote(), "{err}");
        assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err}");
        assert!(err.to_string().contains("too_many_pings"), "{err}");
        let served = timeout(PROMPTLY, self.server)
            .await
            .expect("hyper's connection ends");
        let _ = served.unwrap();
        assert_eq!(self.events.load(Ordering::Relaxed), 1);
    }
}

/// A pipe that takes vectored writes, copying at most 1000 bytes of
/// the slices per write so that writes end anywhere in a frame.
struct Vectored(DuplexStream);

impl AsyncRead for Vectored {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Vectored {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut chunk = [0u8; 1000];
        let mut len = 0;
        for buf in bufs {
            let take = (chunk.len() - len).min(buf.len());
            chunk[len..len + take].copy_from_slice(&buf[..take]);
            len += take;
        }
        Pin::new(&mut self.0).poll_write(cx, &chunk[..len])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Whole frames, or a panic on a truncated one.
fn parse(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let head = FrameHead::decode(bytes[..HEAD_LEN].try_into().unwrap());
        let end = HEAD_LEN + head.len as usize;
        frames.push((head, bytes[HEAD_LEN..end].to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

/// The complete frames at the start of `bytes` (a partial one at the end
/// is left out).
fn complete_frames(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Some(head) = bytes.get(..HEAD_LEN) {
        let head = FrameHead::decode(head.try_into().unwrap());
        let end = HEAD_LEN + head.len as usize;
        let Some(payload) = bytes.get(HEAD_LEN..end) else {
            break;
        };
        frames.push((head, payload.to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

fn too_many_pings_payload(last_stream: u32) -> Vec<u8> {
    let mut payload = last_stream.to_be_bytes().to_vec();
    payload.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    payload.extend_from_slice(b"too_many_pings");
    payload
}

// ----- 1. floods -----

#[tokio::test]
async fn ping_flood_without_streams_gets_goaway_too_many_pings() {
    let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
    // First ping: nothing to compare with; then three strikes, and the
    // third (over max_strikes = 2) is refused, as grpc-go does.
    assert_eq!(peer.flood(5).await, 3);
    peer.assert_refused().await;
}

#[tokio::test]
async fn ping_flood_with_an_idle_stream_gets_goaway_too_many_pings() {
    let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
    let poll = peer.start("/hang").await;
    assert_eq!(peer.flood(5).await, 3);
    // Stream 1 is at or below the GOAWAY's last-stream-id (it may have
    // run), so h2 fails it with the connection's end, not a refusal.
    let err = timeout(PROMPTLY, poll)
        .await
        .unwrap()
        .expect_err("the open call fails");
    assert!(err.is_io(), "{err}");
    peer.assert_refused().await;
}

#[tokio::test]
async fn goaway_is_whole_frames_then_eof_and_names_the_last_client_stream() {
    let (mut client, server_io) = tokio::io::duplex(64 * 1024);
    let (guard, events, _now) = guarded(server_io, PingPolicy::default());
    let server = serve(guard, Arc::default());
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    // GET /hang on stream 1 (HPACK: :method GET, :scheme http,
    // :path "/hang", :authority "x").
    let block = [
        0x82, 0x86, 0x44, 5, b'/', b'h', b'a', b'n', b'g', 0x41, 1, b'x',
    ];
    out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, 1, &block));
    for i in 0..4 {
        out.extend(frame(PING, 0, 0, &[i; 8]));
    }
    client.write_all(&out).await.unwrap();

    let mut got = Vec::new();
    timeout(PROMPTLY, client.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let frames = parse(&got);
    assert_eq!(frames[0].0.kind, SETTINGS, "the server preface comes first");
    let (head, payload) = frames.last().unwrap();
    assert_eq!((head.kind, head.flags, head.stream), (GOAWAY, 0, 0));
    assert_eq!(payload, &too_many_pings_payload(1));
    assert_eq!(events.load(Ordering::Relaxed), 1);
    drop(client);
    let served = timeout(PROMPTLY, server)
        .await
        .expect("hyper's connection ends");
    assert!(served.unwrap().is_ok());
}

#[tokio::test]
async fn goaway_waits_for_the_frame_hyper_is_writing() {
    let (mut client, io) = tokio::io::duplex(64 * 1024);
    let (mut guard, events, _now) = guarded(io, PingPolicy::default());
    // hyper's side: SETTINGS, then half of a DATA frame.
    let data = frame(DATA, 0, 1, &[7; 100]);
    guard.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    guard.write_all(&data[..50]).await.unwrap();
    // The client's side: a stream, then a flood.
    let mut out = PREFACE.to_vec();
    out.extend(frame(HEADERS, END_HEADERS, 5, &[0x82]));
    for _ in 0..4 {
        out.extend(frame(PING, 0, 0, &[0; 8]));
    }
    client.write_all(&out).await.unwrap();

    // The read that trips withholds its bytes and cannot inject
    // mid-frame: it waits.
    let mut buf = [0u8; 512];
    let mut read = ReadBuf::new(&mut buf);
    let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut guard).poll_read(cx, &mut read))).await;
    assert!(first.is_pending());
    assert!(read.filled().is_empty());
    assert_eq!(events.load(Ordering::Relaxed), 1);

    // hyper's next write is cut at the end of its frame...
    let mut rest = data[50..].to_vec();
    let rest_of_frame = rest.len();
    rest.extend(frame(PING, FLAG_ACK, 0, &[0; 8]));
    assert_eq!(guard.write(&rest).await.unwrap(), rest_of_frame);
    // ...and the one after injects the GOAWAY; it and all later writes
    // are discarded.
    let ack = &rest[rest_of_frame..];
    assert_eq!(guard.write(ack).await.unwrap(), ack.len());
    assert_eq!(guard.write(ack).await.unwrap(), ack.len());

    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    // The client's bytes are drained until it closes, then EOF.
    client.write_all(&frame(PING, 0, 0, &[9; 8])).await.unwrap();
    drop(client);
    assert_eq!(guard.read(&mut buf).await.unwrap(), 0, "reads see EOF");
    let frames = parse(&got);
    let kinds: Vec<u8> = frames.iter().map(|(h, _)| h.kind).collect();
    assert_eq!(kinds, [SETTINGS, DATA, GOAWAY]);
    assert_eq!(frames[1].1, [7; 100]);
    assert_eq!(frames[2].1, too_many_pings_payload(5));
}

#[tokio::test]
async fn goaway_follows_the_data_frame_hyper_is_stuck_in() {
    // hyper answers /big in 16 KiB DATA frames; the client stops reading
    // 2 KiB in, so hyper blocks in the middle of the first one.
    let (client, server_io) = tokio::io::duplex(1024);
    let (guard, events, _now) = guarded(server_io, PingPolicy::default());
    let server = serve(guard, Arc::default());
    let (mut rd, mut wr) = tokio::io::split(client);
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let block = [0x82, 0x86, 0x44, 4, b'/', b'b', b'i', b'g', 0x41, 1, b'x'];
    out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, 1, &block));
    wr.write_all(&out).await.unwrap();
    let mut got = vec![0u8; 2048];
    rd.read_exact(&mut got).await.unwrap();

    // The last reset was that DATA frame's head: four pings are one
    // free and three strikes.
    let mut flood = Vec::new();
    for i in 0..4 {
        flood.extend(frame(PING, 0, 0, &[i; 8]));
    }
    wr.write_all(&flood).await.unwrap();
    timeout(PROMPTLY, async {
        while events.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the flood trips the guard");

    // Draining lets hyper finish its frame; then comes the GOAWAY.
    timeout(PROMPTLY, rd.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let frames = parse(&got);
    let data: Vec<_> = frames.iter().filter(|(h, _)| h.kind == DATA).collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].0.len, 16_384);
    let kinds: Vec<u8> = frames.iter().rev().take(2).map(|(h, _)| h.kind).collect();
    assert_eq!(kinds, [GOAWAY, DATA]);
    assert_eq!(frames.last().unwrap().1, too_many_pings_payload(1));
    // The client closes; hyper reads EOF and ends.
    drop((rd, wr));
    let served = timeout(PROMPTLY, server).await.unwrap().unwrap();
    assert!(served.is_ok(), "{served:?}");
}

#[tokio::test]
async fn a_client_that_keeps_the_connection_open_is_cut_off_after_the_linger() {
    let (client, server_io) = tokio::io::duplex(64 * 1024);
    let (mut guard, events, _now) = guarded(server_io, PingPolicy::default());
    guard.linger = Duration::from_millis(50);
    let server = serve(guard, Arc::default());
    let (mut rd, mut wr) = tokio::io::split(client);
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..4 {
        out.extend(frame(PING, 0, 0, &[i; 8]));
    }
    wr.write_all(&out).await.unwrap();
    // Keep pinging after the GOAWAY, never closing.
    let flooder = tokio::spawn(async move {
        while wr.write_all(&frame(PING, 0, 0, &[0; 8])).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut got = Vec::new();
    timeout(PROMPTLY, rd.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse(&got).last().unwrap().1, too_many_pings_payload(0));
    let started = std::time::Instant::now();
    let served = timeout(PROMPTLY, server)
        .await
        .expect("hyper ends after the linger");
    assert!(served.unwrap().is_ok());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(events.load(Ordering::Relaxed), 1);
    drop(rd);
    flooder.await.unwrap();
}

// ----- 2. SDK keepalive -----

async fn sdk_pings_for_ten_minutes(peer: &mut Peer) {
    for _ in 0..20 {
        peer.advance(SDK_PING_INTERVAL);
        peer.ping()
            .await
            .expect("an SDK keepalive ping is never refused");
    }
    assert_eq!(peer.events(), 0);
    assert_eq!(
        peer.get("/").await,
        (StatusCode::OK, Bytes::from_static(b"ok"))
    );
}

#[tokio::test]
async fn sdk_pinging_every_30s_without_streams_is_never_refused() {
    let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
    sdk_pings_for_ten_minutes(&mut peer).await;
}

#[tokio::test]
async fn sdk_pinging_every_30s_during_a_long_poll_is_never_refused() {
    let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
    let _poll = peer.start("/hang").await;
    sdk_pings_for_ten_minutes(&mut peer).await;
}

// ----- 3. active calls -----

#[tokio::test]
async fn fast_pings_while_the_server_sends_data_are_not_strikes() {
    let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
    let response = timeout(PROMPTLY, peer.start("/stream").await)
        .await
        .unwrap()
        .unwrap();
    let mut body = response.into_body();
    for i in 0..10u8 {
        peer.chunks.send(Bytes::from(vec![i; 100])).await.unwrap();
        let chunk = body.data().await.unwrap().unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        // No time passes at all: every ping would be a strike, but the
        // DATA before it resets them.
        peer.ping()
            .await
            .expect("a ping during an active response is not refused");
    }
    assert_eq!(peer.events(), 0);
    // The response goes quiet (the last ping used up the last reset):
    // the next three pings are strikes, and the third is refused.
    assert_eq!(peer.flood(5).await, 2);
    peer.assert_refused().await;
}

// ----- 4. pings without streams refused -----

fn strict() -> PingPolicy {
    PingPolicy {
        permit_without_stream: false,
        ..PingPolicy::default()
    }
}

#[tokio::test]
async fn slow_pings_without_streams_are_strikes_when_not_permitted() {
    let mut peer = connect(strict(), 64 * 1024).await;
    for _ in 0..3 {
        peer.advance(Duration::from_secs(60));
        peer.ping().await.unwrap();
    }
    peer.advance(Duration::from_secs(60));
    assert!(peer.ping().await.is_err());
    peer.assert_refused().await;
}

#[tokio::test]
async fn a_finished_call_leaves_no_open_stream_when_not_permitted() {
    let mut peer = connect(strict(), 64 * 1024).await;
    assert_eq!(peer.get("/").await.0, StatusCode::OK);
    // The response reset the strikes, so the first ping is free; then
    // there is no stream, and slow pings are strikes again.
    for _ in 0..3 {
        peer.advance(Duration::from_secs(60));
        peer.ping().await.unwrap();
    }
    peer.advance(Duration::from_secs(60));
    assert!(peer.ping().await.is_err());
    peer.assert_refused().await;
}

#[tokio::test]
async fn slow_pings_during_a_long_poll_are_fine_when_not_permitted() {
    let mut peer = connect(strict(), 64 * 1024).await;
    let _poll = peer.start("/hang").await;
    sdk_pings_for_ten_minutes(&mut peer).await;
}

// ----- 5. the parser alone -----

#[derive(Default, Debug, PartialEq)]
struct Seen {
    heads: Vec<FrameHead>,
    words: Vec<u32>,
}

impl OnFrame for Seen {
    fn head(&mut self, head: FrameHead) -> bool {
        self.heads.push(head);
        head.kind == GOAWAY
    }

    fn word(&mut self, word: u32) {
        self.words.push(word);
    }
}

fn client_bytes() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
    out.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &[0x82; 20]));
    out.extend(frame(DATA, 0, 1, &[0xab; 1000]));
    out.extend(frame(PING, 0, 0, &[1; 8]));
    out.extend(frame(PING, FLAG_ACK, 0, &[2; 8]));
    out.extend(frame(DATA, FLAG_END_STREAM, 1, &[]));
    out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, 3, &[0x82; 5]));
    out.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
    out.extend(frame(GOAWAY, 0, 0, b"\x80\0\0\x03\0\0\0\0bye"));
    out.extend(frame(DATA, 0, 1, &vec![0xcd; 70_000]));
    out.extend(frame(PING, 0, 0, &[3; 8]));
    out
}

impl FrameSink for Seen {
    fn frame(&mut self, head: FrameHead) -> bool {
        self.heads.push(head);
        false
    }
}

#[test]
fn parser_finds_the_same_frames_however_the_bytes_are_split() {
    let bytes = client_bytes();
    let mut whole = Seen::default();
    let mut inbound = Inbound::default();
    let passed = inbound.feed(&bytes, &mut whole).unwrap();
    assert_eq!(passed, bytes, "valid frames pass unchanged");
    assert!(!inbound.holding());
    let kinds: Vec<(u8, u8, u32)> = whole
        .heads
        .iter()
        .map(|h| (h.kind, h.flags, h.stream))
        .collect();
    assert_eq!(
        kinds,
        [
            (SETTINGS, 0, 0),
            (WINDOW_UPDATE, 0, 0),
            (HEADERS, END_HEADERS, 1),
            (DATA, 0, 1),
            (PING, 0, 0),
            (PING, FLAG_ACK, 0),
            (DATA, FLAG_END_STREAM, 1),
            (HEADERS, END_HEADERS | FLAG_END_STREAM, 3),
            (RST_STREAM, 0, 3),
            (GOAWAY, 0, 0),
            (DATA, 0, 1),
            (PING, 0, 0),
        ]
    );
    assert_eq!(whole.heads[10].len, 70_000);

    for chunk in [1, 2, 3, 5, 8, 9, 10, 17, 4096] {
        let mut seen = Seen::default();
        let mut inbound = Inbound::default();
        let mut passed = Vec::new();
        for piece in bytes.chunks(chunk) {
            passed.extend(inbound.feed(piece, &mut seen).unwrap());
        }
        assert_eq!(seen, whole, "in chunks of {chunk}");
        assert_eq!(passed, bytes, "in chunks of {chunk}");
        assert!(!inbound.holding());
    }
}

#[test]
fn enforcer_sees_the_same_pings_and_streams_byte_by_byte() {
    let bytes = client_bytes();
    let clock = Clock::Manual(Arc::new(Mutex::new(Instant::now())));
    let run = |chunk: usize| {
        let mut enforcer = Enforcer::new(PingPolicy {
            max_strikes: 10,
            ..strict()
        });
        let mut inbound = Inbound::default();
        for piece in bytes.chunks(chunk) {
            let mut client = ClientFrames {
                enforcer: &mut enforcer,
                clock: &clock,
            };
            inbound.feed(piece, &mut client).expect("no trip");
        }
        (
            enforcer.strikes,
            enforcer.max_client_stream,
            enforcer.open.ids.clone(),
        )
    };
    // Two pings (the ACK is not one): the second is a strike. Stream 1
    // is open (only the server ends it); stream 3 was reset.
    assert_eq!(run(bytes.len()), (1, 3, vec![1]));
    assert_eq!(run(1), run(bytes.len()));
}

#[test]
fn preface_mismatch_turns_the_parser_off() {
    let mut seen = Seen::default();
    let mut inbound = Inbound::default();
    inbound.feed(b"GET / HTTP/1.1\r\n\r\n", &mut seen).unwrap();
    inbound
        .feed(&frame(PING, 0, 0, &[0; 8]), &mut seen)
        .unwrap();
    assert!(inbound.not_http2);
    assert!(seen.heads.is_empty());
}

#[test]
fn outbound_boundaries_and_hypers_goaway_are_tracked() {
    let mut enforcer = Enforcer::new(PingPolicy::default());
    enforcer.max_client_stream = 9;
    let mut frames = Frames::default();
    let bytes = frame(GOAWAY, 0, 0, b"\0\0\0\x07\0\0\0\0");
    for (i, byte) in bytes.iter().enumerate() {
        assert_eq!(frames.at_boundary(), i == 0);
        frames.feed(std::slice::from_ref(byte), &mut ServerFrames(&mut enforcer));
    }
    assert!(frames.at_boundary());
    assert_eq!(
        enforcer.goaway_last_stream(),
        7,
        "never above hyper's own GOAWAY"
    );
    let mut frames = Frames::default();
    frames.feed(
        &frame(DATA, 0, 1, &[0; 10])[..4],
        &mut ServerFrames(&mut enforcer),
    );
    assert_eq!(frames.until_boundary(), 5);
    frames.feed(&[0; 5], &mut ServerFrames(&mut enforcer));
    assert_eq!(frames.until_boundary(), 10);
    assert!(enforcer.reset_strikes);
}

#[test]
fn enforcer_follows_grpc_go() {
    let t0 = Instant::now();
    let mut e = Enforcer::new(PingPolicy::default());
    assert!(!e.ping(t0));
    // Exactly the minimum interval is not a strike.
    assert!(!e.ping(t0 + Duration::from_secs(10)));
    assert_eq!(e.strikes, 0);
    assert!(!e.ping(t0 + Duration::from_secs(11)));
    assert!(!e.ping(t0 + Duration::from_secs(12)));
    assert_eq!(e.strikes, 2);
    // Server activity forgives, and that ping is not judged.
    e.server_frame(FrameHead {
        len: 5,
        kind: DATA,
        flags: 0,
        stream: 1,
    });
    assert!(!e.ping(t0 + Duration::from_secs(12)));
    assert_eq!(e.strikes, 0);
    assert!(!e.ping(t0 + Duration::from_secs(12)));
    assert!(!e.ping(t0 + Duration::from_secs(12)));
    assert!(e.ping(t0 + Duration::from_secs(12)));

    // Not permitted without streams: two hours apart is fine.
    let mut e = Enforcer::new(strict());
    assert!(!e.ping(t0));
    assert!(!e.ping(t0 + Duration::from_secs(2 * 3600)));
    assert_eq!(e.strikes, 0);
    assert!(!e.ping(t0 + Duration::from_secs(3 * 3600)));
    assert_eq!(e.strikes, 1);
}

#[test]
fn open_streams_close_once_however_they_end() {
    let mut e = Enforcer::new(strict());
    let clock = Clock::Tokio;
    let head = |kind, flags, stream| FrameHead {
        len: 0,
        kind,
        flags,
        stream,
    };
    for id in [1, 3, 5, 7] {
        e.client_frame(head(HEADERS, END_HEADERS, id), &clock);
    }
    // Client trailers on stream 1 do not open it again.
    e.client_frame(head(HEADERS, END_HEADERS | FLAG_END_STREAM, 1), &clock);
    e.server_frame(head(HEADERS, FLAG_END_STREAM, 1)); // trailers-only
    e.server_frame(head(HEADERS, END_HEADERS, 3));
    e.server_frame(head(DATA, FLAG_END_STREAM, 3));
    e.server_frame(head(RST_STREAM, 0, 3)); // hyper's NO_ERROR reset after
    e.client_frame(head(RST_STREAM, 0, 5), &clock);
    assert_eq!(e.open.ids, [7]);
    e.server_frame(head(RST_STREAM, 0, 7));
    assert!(!e.open.any());

    let mut e = Enforcer::new(strict());
    for id in 0..=MAX_TRACKED_STREAMS as u32 {
        e.client_frame(head(HEADERS, END_HEADERS, 2 * id + 1), &clock);
    }
    for id in 0..=MAX_TRACKED_STREAMS as u32 {
        e.server_frame(head(RST_STREAM, 0, 2 * id + 1));
    }
    assert!(e.open.any(), "past the cap, streams are assumed open");
    // With pings permitted without streams, nothing is tracked at all.
    let mut e = Enforcer::new(PingPolicy::default());
    e.client_frame(head(HEADERS, END_HEADERS, 1), &clock);
    assert_eq!(e.open.ids.capacity(), 0);
}

// ----- 6. transparency -----

#[tokio::test]
async fn calls_pass_through_unchanged_even_through_a_narrow_pipe() {
    calls_pass_through_unchanged(false).await;
}

#[tokio::test]
async fn calls_pass_through_unchanged_with_vectored_writes() {
    calls_pass_through_unchanged(true).await;
}

async fn calls_pass_through_unchanged(vectored: bool) {
    // 1 KiB pipe: hyper's writes and reads split frames everywhere.
    let mut peer = connect_with(PingPolicy::default(), 1024, vectored).await;
    assert_eq!(
        peer.get("/").await,
        (StatusCode::OK, Bytes::from_static(b"ok"))
    );
    let (status, body) = peer.get("/big").await;
    assert_eq!((status, body.len()), (StatusCode::OK, BIG));
    assert!(body.iter().all(|&b| b == b'x'));

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post("http://guard.test/echo").body(()).unwrap();
    let mut send = peer.send.clone().ready().await.unwrap();
    let (response, mut upload) = send.send_request(req, false).unwrap();
    let mut rest = Bytes::from(payload.clone());
    while !rest.is_empty() {
        upload.reserve_capacity(rest.len());
        let room = poll_fn(|cx| upload.poll_capacity(cx))
            .await
            .unwrap()
            .unwrap();
        upload
            .send_data(rest.split_to(room.min(rest.len())), rest.len() <= room)
            .unwrap();
    }
    let response = timeout(PROMPTLY, response).await.unwrap().unwrap();
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        echoed.extend_from_slice(&chunk);
    }
    assert_eq!(echoed, payload);
    assert_eq!(peer.events(), 0);

    // Both parsers are still in step with the frames: a flood now gets
    // a well-formed GOAWAY.
    peer.advance(Duration::from_secs(60));
    assert_eq!(peer.flood(5).await, 3);
    peer.assert_refused().await;
}

// ----- 7. header blocks -----

/// hyper behind the guard and a client writing raw frames: the server's
/// answers, frame by frame, until `until` says stop.
struct RawPeer {
    io: DuplexStream,
    server: JoinHandle<Result<(), hyper::Error>>,
    encoder: loona_hpack::Encoder<'static>,
    read: Vec<u8>,
}

impl RawPeer {
    async fn connect() -> RawPeer {
        let (mut io, server_io) = tokio::io::duplex(64 * 1024);
        let (guard, _, _) = guarded(server_io, PingPolicy::default());
        let server = serve(guard, Arc::new(Mutex::new(None)));
        io.write_all(PREFACE).await.unwrap();
        io.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        RawPeer {
            io,
            server,
            encoder: loona_hpack::Encoder::new(),
            read: Vec::new(),
        }
    }

    /// A GET of `/` on `stream` with `extra` fields after the usual
    /// ones (END_STREAM on the HEADERS), split into frames of `split`
    /// bytes of block.
    async fn request(&mut self, stream: u32, extra: &[(&[u8], &[u8])], split: usize) {
        let mut fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"guard.test"),
        ];
        fields.extend_from_slice(extra);
        let block = self.encoder.encode(fields);
        let chunks: Vec<&[u8]> = block.chunks(split).collect();
        let mut bytes = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let end = if i == chunks.len() - 1 {
                END_HEADERS
            } else {
                0
            };
            let (kind, flags) = if i == 0 {
                (HEADERS, FLAG_END_STREAM | end)
            } else {
                (0x9, end)
            };
            bytes.extend(frame(kind, flags, stream, chunk));
        }
        // Byte by byte: the block is cut everywhere.
        for byte in bytes {
            self.io.write_all(&[byte]).await.unwrap();
        }
    }

    /// Reads frames until one on `stream` ends it (RST_STREAM, or
    /// END_STREAM) or the connection goes away; returns its kind and,
    /// for RST_STREAM and GOAWAY, the error code.
    async fn outcome(&mut self, stream: u32) -> (u8, u32) {
        loop {
            let frames = complete_frames(&self.read);
            let used: usize = frames.iter().map(|(h, _)| HEAD_LEN + h.len as usize).sum();
            for (head, payload) in &frames {
                let code = || u32::from_be_bytes(payload[..4].try_into().unwrap());
                match head.kind {
                    RST_STREAM if head.stream == stream => return (RST_STREAM, code()),
                    GOAWAY => {
                        return (
                            GOAWAY,
                            u32::from_be_bytes(payload[4..8].try_into().unwrap()),
                        )
                    }
                    DATA | HEADERS
                        if head.stream == stream && head.flags & FLAG_END_STREAM != 0 =>
                    {
                        return (head.kind, 0)
                    }
                    _ => {}
                }
            }
            self.read.drain(..used);
            let mut buf = [0u8; 4096];
            let n = timeout(PROMPTLY, self.io.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed");
            self.read.extend_from_slice(&buf[..n]);
        }
    }
}

const PROTOCOL_ERROR: u32 = 0x1;

#[tokio::test]
async fn a_field_h2_refuses_resets_only_its_stream() {
    let mut peer = RawPeer::connect().await;
    let mut stream = 1;
    for (bad, split) in [
        (&[(&b"X-Upper"[..], &b"1"[..])][..], 4096),
        (&[(b"x-ctl", b"a\x01b")], 4096),
        (&[(b":foo", b"bar")], 4096),
        // In CONTINUATION frames of three bytes.
        (&[(b"Spread-Over-Frames", b"value")], 3),
    ] {
        peer.request(stream, bad, split).await;
        assert_eq!(
            peer.outcome(stream).await,
            (RST_STREAM, PROTOCOL_ERROR),
            "{bad:?}"
        );
        // The connection serves on, and the table is in step: the next
        // request reuses indexed fields.
        peer.request(stream + 2, &[(b"x-ok", b"1")], split).await;
        assert_eq!(peer.outcome(stream + 2).await.0, DATA, "after {bad:?}");
        stream += 4;
    }
    // A request referring to the indexed uppercase field again.
    peer.request(stream, &[(b"X-Upper", b"1")], 4096).await;
    assert_eq!(peer.outcome(stream).await, (RST_STREAM, PROTOCOL_ERROR));
    assert!(!peer.server.is_finished());
}

/// h2's own client Huffman-codes its literals: every valid value byte
/// decodes back to what was sent, and the block passes unchanged.
#[tokio::test]
async fn huffman_coded_blocks_of_a_real_client_decode_exactly() {
    let (client_io, mut server_io) = tokio::io::duplex(1 << 20);
    let (mut send, conn) = h2::client::handshake(client_io).await.unwrap();
    tokio::spawn(conn);
    let values: Vec<Vec<u8>> = vec![
        (0x20..0x7f).collect(),
        (0x80..=0xff).collect(),
        b"\tabc\t".to_vec(),
        b"application/grpc".to_vec(),
    ];
    for (i, value) in values.iter().enumerate() {
        let req = Request::post("http://guard.test/x")
            .header(
                format!("x-value-{i}"),
                http::HeaderValue::from_bytes(value).unwrap(),
            )
            .body(())
            .unwrap();
        let _ = send.send_request(req, true).unwrap();
    }
    let mut bytes = Vec::new();
    let mut check = hpack::HeaderCheck::default();
    let mut seen = Vec::new();
    while seen.len() < values.len() {
        let mut buf = [0u8; 8192];
        let n = timeout(PROMPTLY, server_io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        bytes.extend_from_slice(&buf[..n]);
        let frames = complete_frames(bytes.get(PREFACE.len()..).unwrap_or_default());
        seen = frames
            .into_iter()
            .filter(|(h, _)| h.kind == HEADERS)
            .collect();
    }
    for (i, (head, block)) in seen.iter().enumerate() {
        assert!(head.flags & END_HEADERS != 0);
        assert_eq!(check.check(block, true), hpack::Verdict::Clean, "block {i}");
        let literal = check
            .literals
            .iter()
            .find(|(n, _)| n == format!("x-value-{i}").as_bytes())
            .expect("decoded");
        assert_eq!(literal.1, values[i], "value {i}");
    }
}

/// A stream WINDOW_UPDATE of 0 is a stream error; h2 would close the
/// connection for it. It changes nothing, so it is passed over.
#[tokio::test]
async fn a_zero_window_update_on_a_stream_does_not_close_the_connection() {
    let mut peer = RawPeer::connect().await;
    peer.request(1, &[], 4096).await;
    // Split across two writes: the frame is held until complete.
    let update = frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0]);
    peer.io.write_all(&update[..5]).await.unwrap();
    peer.io.write_all(&update[5..]).await.unwrap();
    assert_eq!(peer.outcome(1).await.0, DATA);
    peer.request(3, &[], 4096).await;
    assert_eq!(peer.outcome(3).await.0, DATA);
    assert!(!peer.server.is_finished());
}

// ----- control-frame floods and the preface deadline -----

fn goaway_payload(last_stream: u32, debug: &[u8]) -> Vec<u8> {
    let mut payload = last_stream.to_be_bytes().to_vec();
    payload.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    payload.extend_from_slice(debug);
    payload
}

#[test]
fn settings_and_resets_are_limited_by_their_buckets() {
    let now = Arc::new(Mutex::new(Instant::now()));
    let clock = Clock::Manual(now.clone());
    let head = |kind, flags, stream| FrameHead {
        len: 0,
        kind,
        flags,
        stream,
    };
    let mut e = Enforcer::new(PingPolicy::default());
    for _ in 0..super::flood::SETTINGS_BURST {
        assert!(!e.client_frame(head(SETTINGS, 0, 0), &clock));
        // ACKs answer the server's SETTINGS: never counted.
        assert!(!e.client_frame(head(SETTINGS, FLAG_ACK, 0), &clock));
    }
    // One more every 100 ms (10 per second).
    *now.lock().unwrap() += Duration::from_millis(100);
    assert!(!e.client_frame(head(SETTINGS, 0, 0), &clock));
    assert_eq!(e.tripped, None);
    assert!(e.client_frame(head(SETTINGS, 0, 0), &clock));
    assert_eq!(e.tripped, Some(Flood::Settings));

    let mut e = Enforcer::new(PingPolicy::default());
    for id in 0..super::flood::RESETS_BURST {
        assert!(!e.client_frame(head(HEADERS, END_HEADERS, 2 * id + 1), &clock));
        assert!(!e.client_frame(head(RST_STREAM, 0, 2 * id + 1), &clock));
    }
    *now.lock().unwrap() += Duration::from_millis(10);
    assert!(!e.client_frame(head(RST_STREAM, 0, 1), &clock));
    assert!(e.client_frame(head(RST_STREAM, 0, 1), &clock));
    assert_eq!(e.tripped, Some(Flood::Resets));
}

#[tokio::test]
async fn settings_flood_gets_goaway_too_many_settings() {
    let (mut client, server_io) = tokio::io::duplex(64 * 1024);
    let (guard, events, _now) = guarded(server_io, PingPolicy::default());
    let server = serve(guard, Arc::default());
    let mut out = PREFACE.to_vec();
    // The clock does not move: the burst, then one too many.
    for _ in 0..=super::flood::SETTINGS_BURST {
        out.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
    }
    client.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    timeout(PROMPTLY, client.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let frames = parse(&got);
    let (head, payload) = frames.last().unwrap();
    assert_eq!((head.kind, head.stream), (GOAWAY, 0));
    assert_eq!(payload, &goaway_payload(0, b"too_many_settings"));
    assert_eq!(events.load(Ordering::Relaxed), 1);
    drop(client);
    let served = timeout(PROMPTLY, server).await.expect("hyper ends");
    let _ = served.unwrap();
}

#[tokio::test]
async fn steady_stream_resets_get_goaway_too_many_resets() {
    let (mut client, server_io) = tokio::io::duplex(64 * 1024);
    let (guard, events, _now) = guarded(server_io, PingPolicy::default());
    let server = serve(guard, Arc::default());
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    client.write_all(&out).await.unwrap();
    // GET /hang, reset at once, in small batches so that hyper accepts
    // each stream before its reset (its own rapid-reset limit, on
    // streams reset before they are accepted, stays out of it).
    let block = [
        0x82, 0x86, 0x44, 5, b'/', b'h', b'a', b'n', b'g', 0x41, 1, b'x',
    ];
    let mut last = 0;
    'flood: for batch in 0..super::flood::RESETS_BURST / 5 + 10 {
        let mut out = Vec::new();
        for i in 0..10 {
            last = 2 * (batch * 10 + i) + 1;
            out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, last, &block));
            out.extend(frame(RST_STREAM, 0, last, &8u32.to_be_bytes()));
        }
        if client.write_all(&out).await.is_err() {
            break 'flood;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if events.load(Ordering::Relaxed) > 0 {
            break 'flood;
        }
    }
    let mut got = Vec::new();
    timeout(PROMPTLY, client.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let frames = complete_frames(&got);
    let goaways: Vec<_> = frames.iter().filter(|(h, _)| h.kind == GOAWAY).collect();
    assert_eq!(goaways.len(), 1, "only the guard's GOAWAY: {goaways:?}");
    let payload = &goaways[0].1;
    assert_eq!(&payload[4..8], &ENHANCE_YOUR_CALM.to_be_bytes());
    assert_eq!(&payload[8..], b"too_many_resets");
    let last_stream = u32::from_be_bytes(payload[..4].try_into().unwrap());
    assert!(last_stream <= last && last_stream > 2 * super::flood::RESETS_BURST);
    assert_eq!(events.load(Ordering::Relaxed), 1);
    drop(client);
    let served = timeout(PROMPTLY, server).await.expect("hyper ends");
    let _ = served.unwrap();
}

#[tokio::test]
async fn a_connection_without_a_preface_is_closed_after_the_timeout() {
    let (mut client, server_io) = tokio::io::duplex(64 * 1024);
    let (guard, events, _now) = guarded(server_io, PingPolicy::default());
    let guard = guard.with_preface_timeout(Duration::from_millis(300));
    let server = serve(guard, Arc::default());
    let started = Instant::now();
    // Half a preface, then nothing.
    client.write_all(&PREFACE[..10]).await.unwrap();
    let mut got = Vec::new();
    timeout(PROMPTLY, client.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(events.load(Ordering::Relaxed), 1);
    let served = timeout(PROMPTLY, server).await.expect("hyper ends");
    assert!(served.unwrap().is_err(), "hyper saw no preface");
}

#[tokio::test]
async fn a_preface_in_time_leaves_the_connection_alone() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (guard, events, _now) = guarded(server_io, PingPolicy::default());
    let guard = guard.with_preface_timeout(Duration::from_millis(200));
    let _server = serve(guard, Arc::default());
    let (send, conn) = h2::client::handshake(client_io).await.unwrap();
    let _client = tokio::spawn(conn);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let req = Request::get("http://guard.test/").body(()).unwrap();
    let mut send = send.ready().await.unwrap();
    let response = timeout(PROMPTLY, send.send_request(req, true).unwrap().0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(events.load(Ordering::Relaxed), 0);
}
