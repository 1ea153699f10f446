//! Clients that ask for big responses and never read them, for BENCHMARKS
//! ONLY: what does a proxy hold for a client that stops reading?
//!
//! ```text
//! target/release/temporal-stall --target 127.0.0.1:7443 --ca ca.pem \
//!     --cert client.pem --key client.key --server-name localhost \
//!     --connections 100 --streams 1 --bytes 1048576 --hold-for 12s
//! ```
//!
//! Each connection completes its TLS handshake, then writes raw HTTP/2: the
//! preface, SETTINGS with the largest stream window, a connection
//! WINDOW_UPDATE to the largest window, and `--streams` calls of
//! `/test.Bulk/Download` (the fake frontend's bulk answer of `--bytes`
//! bytes), and from then on reads nothing: the windows it granted let the
//! server send everything, and what is not yet in the socket buffers stays
//! in whatever sits between (the proxy under test). First, one check
//! connection makes the same call and reads it to the end, so that a
//! refused call (a small answer) is not taken for a stalled one: it must
//! get `--bytes` of message and the stream's end. Prints one line
//! `ready N` to stdout once every connection has written its calls, holds
//! them for `--hold-for`, then exits (closing them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rustls::pki_types::ServerName;
use temporal_mtls_proxy_testwire::temporal;
use temporal_mtls_proxy_tools::tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser)]
#[command(
    name = "temporal-stall",
    about = "Clients that request big responses and never read them (benchmarks only)."
)]
struct Args {
    /// host:port of the proxy (mTLS).
    #[arg(long)]
    target: SocketAddr,
    /// CA bundle that verifies the server's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate chain and key (PEM).
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Connections, each a client that stops reading.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Calls per connection.
    #[arg(long, default_value_t = 1)]
    streams: u32,
    /// Size of each response message.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: u32,
    /// How long the connections are held once all calls are written.
    #[arg(long, default_value = "12s", value_parser = humantime::parse_duration)]
    hold_for: Duration,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_WINDOW: u32 = (1 << 31) - 1;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK literal without indexing, name from the static table (`index` <
/// 15) or given (`index` 0); values shorter than 127 bytes, no Huffman.
fn literal(block: &mut Vec<u8>, index: u8, name: &str, value: &str) {
    if index == 0 {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
    } else {
        block.push(index);
    }
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// Everything one connection writes.
fn requests(args: &Args) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4).
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    frame(&mut out, 0x4, 0, 0, &settings);
    frame(&mut out, 0x8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes());
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https
    literal(&mut block, 4, "", temporal::path::DOWNLOAD);
    literal(&mut block, 1, "", &args.server_name);
    literal(&mut block, 0, "content-type", "application/grpc");
    literal(&mut block, 0, "te", "trailers");
    let mut message = vec![0, 0, 0, 0, 4];
    message.extend_from_slice(&args.bytes.to_be_bytes());
    for i in 0..args.streams {
        let id = 1 + 2 * i;
        frame(&mut out, 0x1, 0x4, id, &block); // END_HEADERS
        frame(&mut out, 0x0, 0x1, id, &message); // END_STREAM
    }
    out
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(stall(args))
}

async fn stall(args: Args) -> Result<(), String> {
    let roots = tls::load_roots(&args.ca)?;
    let identity = tls::load_key_pair(&args.cert, &args.key)?;
    let connector = TlsConnector::from(Arc::new(tls::client_config(roots, Some(identity))?));
    let name = ServerName::try_from(args.server_name.clone()).map_err(|e| e.to_string())?;
    let bytes = requests(&args);
    let connect = || async {
        let tcp = TcpStream::connect(args.target)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut conn = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        conn.write_all(&bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        conn.flush().await.map_err(|e| format!("write: {e}"))?;
        Ok::<_, String>(conn)
    };
    let mut check = connect().await?;
    let got = tokio::time::timeout(Duration::from_secs(30), read_stream_1(&mut check))
        .await
        .map_err(|_| "check connection: no complete answer within 30 s".to_string())??;
    let want = 5 + u64::from(args.bytes) * u64::from(args.streams.min(1));
    if got != want {
        return Err(format!(
            "check connection: stream 1 got {got} bytes of DATA, expected {want} (a refused call?)"
        ));
    }
    drop(check);
    let mut held = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        held.push(connect().await?);
    }
    println!("ready {}", held.len());
    tokio::time::sleep(args.hold_for).await;
    drop(held);
    Ok(())
}

/// Reads frames until stream 1 ends (END_STREAM on its DATA or HEADERS):
/// how many DATA payload bytes it had.
async fn read_stream_1(conn: &mut (impl AsyncRead + Unpin)) -> Result<u64, String> {
    let mut data = 0u64;
    let mut head = [0u8; 9];
    loop {
        conn.read_exact(&mut head)
            .await
            .map_err(|e| format!("check connection: {e}"))?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload)
            .await
            .map_err(|e| format!("check connection: {e}"))?;
        match (kind, stream) {
            // GOAWAY, or a reset of the call: no answer.
            (0x7, _) | (0x3, 1) => {
                return Err(format!(
                    "check connection: frame type {kind} from the server"
                ))
            }
            (0x0, 1) => data += len as u64,
            _ => {}
        }
        if stream == 1 && flags & 0x1 != 0 && (kind == 0x0 || kind == 0x1) {
            return Ok(data);
        }
    }
}
