//! The PROXY protocol version 2 header a layer-4 load balancer (AWS NLB with
//! proxy protocol v2, HAProxy `mode tcp` with `send-proxy-v2`) puts in front
//! of each connection it forwards, read before the TLS handshake when
//! `listen.proxy_protocol` is on. It tells the client's own address, which
//! then stands for the connection's peer in logs and audit lines.
//!
//! [`parse`] is a pure function over the bytes received so far: it says
//! how many bytes the header has (so that [`read`] reads exactly those and
//! not one byte of the TLS client hello behind them), refuses as early as
//! it can, and decodes the header once it is complete. Only what a TCP
//! client behind a load balancer can produce is accepted: command LOCAL
//! (the balancer's own health checks: the socket's address stays the peer)
//! or PROXY with TCP over IPv4 or IPv6. TLVs are skipped. Version 1 (the
//! text header) is refused with a reason saying which setting to change.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every version 2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, length.
const FIXED_LEN: usize = 16;
/// The most address and TLV bytes accepted after the fixed part. The
/// largest address block (AF_UNIX) is 216 bytes; what load balancers add as
/// TLVs (AWS's VPC endpoint id, HAProxy's unique id, authority, SSL
/// details, a CRC) is well under the rest. A larger length is refused
/// before any of it is read, so a peer cannot make the proxy hold more.
pub const MAX_BLOCK_LEN: usize = 1024;
/// The start of a version 1 (text) header.
const V1_PREFIX: &[u8] = b"PROXY";

/// TCP over IPv4: two 4-byte addresses and two ports.
const TCP4: u8 = 0x11;
const TCP4_LEN: usize = 12;
/// TCP over IPv6: two 16-byte addresses and two ports.
const TCP6: u8 = 0x21;
const TCP6_LEN: usize = 36;

/// A complete, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The load balancer's own connection (a health check): the socket's
    /// address is the peer.
    Local,
    /// A connection forwarded for the client at `source`.
    Proxy { source: SocketAddr },
}

/// What [`parse`] makes of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Valid so far; the header is `total` bytes long (at least: until the
    /// fixed part is in, 16), more than received.
    Incomplete { total: usize },
    /// The header, `len` bytes long; bytes after them are not part of it.
    Complete { header: Header, len: usize },
}

/// Why a connection's first bytes are not an acceptable header. The words
/// are the refusal's reason in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol v2 header, which listen.proxy_protocol requires ({})", first_bytes(.0))]
    Missing(Vec<u8>),
    #[error("PROXY protocol v1 is not supported; configure send-proxy-v2 (version 2, the binary header) on the load balancer")]
    Version1,
    #[error("PROXY protocol version {0} is not supported (only version 2)")]
    Version(u8),
    #[error("PROXY protocol v2 command {0:#x} is unknown (LOCAL or PROXY expected)")]
    Command(u8),
    #[error("PROXY protocol v2 header for {} is not supported (only TCP over IPv4 or IPv6)", family_name(*.0))]
    Family(u8),
    #[error("PROXY protocol v2 address block of {len} bytes is too short for {} ({need} bytes)", family_name(*.family))]
    ShortAddress { family: u8, len: usize, need: usize },
    #[error("PROXY protocol v2 header too long ({0} bytes of addresses and TLVs; at most {MAX_BLOCK_LEN})")]
    TooLong(usize),
    #[error("connection closed inside the PROXY protocol v2 header ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
}

fn first_bytes(got: &[u8]) -> String {
    let hex: Vec<String> = got.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let what = if got.first() == Some(&0x16) {
        " (a TLS handshake: the client connected directly, or the load balancer does not send the header)"
    } else {
        ""
    };
    format!("first bytes {}{what}", hex.join(" "))
}

fn family_name(byte: u8) -> String {
    let family = match byte >> 4 {
        0x0 => "AF_UNSPEC",
        0x1 => "AF_INET",
        0x2 => "AF_INET6",
        0x3 => "AF_UNIX",
        _ => "an unknown family",
    };
    let transport = match byte & 0x0f {
        0x0 => "UNSPEC",
        0x1 => "STREAM",
        0x2 => "DGRAM",
        _ => "an unknown transport",
    };
    format!("{family} over {transport} ({byte:#04x})")
}

/// Decodes the header at the start of `buf`, the bytes received so far.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let incomplete = Ok(Parsed::Incomplete { total: FIXED_LEN });
    let sig = buf.len().min(SIGNATURE.len());
    if buf[..sig] != SIGNATURE[..sig] {
        let v1 = buf.len().min(V1_PREFIX.len());
        return if buf[..v1] != V1_PREFIX[..v1] {
            Err(ProxyHeaderError::Missing(buf.to_vec()))
        } else if v1 == V1_PREFIX.len() {
            Err(ProxyHeaderError::Version1)
        } else {
            incomplete
        };
    }
    let Some(fixed) = buf.get(..FIXED_LEN) else {
        return incomplete;
    };
    let version = fixed[12] >> 4;
    if version != 2 {
        return Err(ProxyHeaderError::Version(version));
    }
    let local = match fixed[12] & 0x0f {
        0x0 => true,
        0x1 => false,
        other => return Err(ProxyHeaderError::Command(other)),
    };
    let family = fixed[13];
    let block_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if block_len > MAX_BLOCK_LEN {
        return Err(ProxyHeaderError::TooLong(block_len));
    }
    // LOCAL: the address block, whatever its family, is skipped (as the
    // specification asks). PROXY: refused before its block is read when
    // the family is not one the proxy can use as a peer address.
    let need = match family {
        _ if local => 0,
        TCP4 => TCP4_LEN,
        TCP6 => TCP6_LEN,
        other => return Err(ProxyHeaderError::Family(other)),
    };
    if block_len < need {
        return Err(ProxyHeaderError::ShortAddress {
            family,
            len: block_len,
            need,
        });
    }
    let total = FIXED_LEN + block_len;
    let Some(block) = buf.get(FIXED_LEN..total) else {
        return Ok(Parsed::Incomplete { total });
    };
    // What follows the addresses (TLVs) is skipped.
    let header = match family {
        _ if local => Header::Local,
        TCP4 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Header::Proxy {
                source: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            }
        }
        _ => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Header::Proxy {
                source: SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0)),
            }
        }
    };
    Ok(Parsed::Complete { header, len: total })
}

/// Why [`read`] has no header.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed (or reset) before sending a byte: a TCP probe.
    Closed,
    /// Its bytes are not an acceptable header.
    Invalid(ProxyHeaderError),
    Io(std::io::Error),
}

/// Reads the header from the start of `io`: exactly its bytes, so that the
/// next read of `io` returns the first byte after it. The caller bounds it
/// in time (the handshake timeout); in bytes it is bounded by
/// [`MAX_BLOCK_LEN`], and every pass of its loop reads at least one byte.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> Result<Header, ReadError> {
    let mut buf = vec![0u8; FIXED_LEN];
    let mut got = 0;
    loop {
        match parse(&buf[..got]).map_err(ReadError::Invalid)? {
            Parsed::Complete { header, .. } => return Ok(header),
            Parsed::Incomplete { total } => buf.resize(total, 0),
        }
        // `parse` asks for more than `got` bytes, and at most the header.
        let closed = match io.read(&mut buf[got..]).await {
            Ok(0) => true,
            Ok(n) => {
                got += n;
                false
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                true
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        if closed {
            return Err(if got == 0 {
                ReadError::Closed
            } else {
                ReadError::Invalid(ProxyHeaderError::Truncated {
                    got,
                    want: buf.len(),
                })
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 header: `ver_cmd`, `family`, then `block` (its length
    /// written in bytes 15 and 16).
    fn header(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    /// The address block of TCP over IPv4 from 203.0.113.7:51234 to
    /// 192.0.2.1:7443.
    fn tcp4_block() -> Vec<u8> {
        let mut b = vec![203, 0, 113, 7, 192, 0, 2, 1];
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&7443u16.to_be_bytes());
        b
    }

    fn complete(bytes: &[u8]) -> (Header, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    #[test]
    fn proxy_tcp4_gives_the_client_address() {
        let h = header(0x21, TCP4, &tcp4_block());
        assert_eq!(
            complete(&h),
            (
                Header::Proxy {
                    source: "203.0.113.7:51234".parse().unwrap()
                },
                28
            )
        );
    }

    #[test]
    fn proxy_tcp6_gives_the_client_address() {
        let src: Ipv6Addr = "2001:db8::42".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut block = src.octets().to_vec();
        block.extend_from_slice(&dst.octets());
        block.extend_from_slice(&40000u16.to_be_bytes());
        block.extend_from_slice(&7443u16.to_be_bytes());
        let h = header(0x21, TCP6, &block);
        assert_eq!(
            complete(&h),
            (
                Header::Proxy {
                    source: "[2001:db8::42]:40000".parse().unwrap()
                },
                52
            )
        );
    }

    #[test]
    fn tlvs_are_skipped_and_bytes_after_the_header_are_not_part_of_it() {
        let mut block = tcp4_block();
        // PP2_TYPE_AUTHORITY "localhost", then PP2_TYPE_NOOP of 3 bytes.
        block.extend_from_slice(&[0x02, 0, 9]);
        block.extend_from_slice(b"localhost");
        block.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
        let mut bytes = header(0x21, TCP4, &block);
        let len = bytes.len();
        // A TLS client hello in the same segment.
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x02, 0x00]);
        let (h, consumed) = complete(&bytes);
        assert_eq!(consumed, len);
        assert_eq!(
            h,
            Header::Proxy {
                source: "203.0.113.7:51234".parse().unwrap()
            }
        );
    }

    #[test]
    fn local_ignores_its_family_and_address_block() {
        // As HAProxy's health checks send it: UNSPEC, no addresses.
        assert_eq!(complete(&header(0x20, 0x00, &[])), (Header::Local, 16));
        // The length is honoured even for LOCAL, whatever the family says.
        assert_eq!(complete(&header(0x20, 0x31, &[7; 20])), (Header::Local, 36));
        assert_eq!(
            complete(&header(0x20, TCP4, &tcp4_block())),
            (Header::Local, 28)
        );
    }

    #[test]
    fn a_truncated_header_asks_for_exactly_the_bytes_it_lacks() {
        let h = header(0x21, TCP4, &tcp4_block());
        for cut in 0..h.len() {
            let want = if cut < FIXED_LEN { FIXED_LEN } else { h.len() };
            assert_eq!(
                parse(&h[..cut]),
                Ok(Parsed::Incomplete { total: want }),
                "cut at {cut}"
            );
        }
        // The start of a v1 header is not refused before it says "PROXY".
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete { total: 16 }));
    }

    #[test]
    fn refusals_read_as_words() {
        let tcp4 = tcp4_block();
        let mut bad_sig = header(0x21, TCP4, &tcp4);
        bad_sig[11] = b'X';
        let table: Vec<(Vec<u8>, ProxyHeaderError, &str)> = vec![
            (
                vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
                ProxyHeaderError::Missing(vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]),
                "no PROXY protocol v2 header, which listen.proxy_protocol requires (first bytes 16 03 01 02 00 01 00 01 (a TLS handshake: the client connected directly, or the load balancer does not send the header))",
            ),
            (
                b"GET / HTTP/1.1\r\n".to_vec(),
                ProxyHeaderError::Missing(b"GET / HTTP/1.1\r\n".to_vec()),
                "no PROXY protocol v2 header, which listen.proxy_protocol requires (first bytes 47 45 54 20 2f 20 48 54)",
            ),
            (
                bad_sig.clone(),
                ProxyHeaderError::Missing(bad_sig),
                "no PROXY protocol v2 header, which listen.proxy_protocol requires (first bytes 0d 0a 0d 0a 00 0d 0a 51)",
            ),
            (
                b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 7443\r\n".to_vec(),
                ProxyHeaderError::Version1,
                "PROXY protocol v1 is not supported; configure send-proxy-v2 (version 2, the binary header) on the load balancer",
            ),
            (
                header(0x11, TCP4, &tcp4),
                ProxyHeaderError::Version(1),
                "PROXY protocol version 1 is not supported (only version 2)",
            ),
            (
                header(0x22, TCP4, &tcp4),
                ProxyHeaderError::Command(2),
                "PROXY protocol v2 command 0x2 is unknown (LOCAL or PROXY expected)",
            ),
            (
                header(0x21, 0x31, &[0; 216]),
                ProxyHeaderError::Family(0x31),
                "PROXY protocol v2 header for AF_UNIX over STREAM (0x31) is not supported (only TCP over IPv4 or IPv6)",
            ),
            (
                header(0x21, 0x12, &tcp4),
                ProxyHeaderError::Family(0x12),
                "PROXY protocol v2 header for AF_INET over DGRAM (0x12) is not supported (only TCP over IPv4 or IPv6)",
            ),
            (
                header(0x21, 0x00, &[]),
                ProxyHeaderError::Family(0x00),
                "PROXY protocol v2 header for AF_UNSPEC over UNSPEC (0x00) is not supported (only TCP over IPv4 or IPv6)",
            ),
            (
                header(0x21, 0x41, &tcp4),
                ProxyHeaderError::Family(0x41),
                "PROXY protocol v2 header for an unknown family over STREAM (0x41) is not supported (only TCP over IPv4 or IPv6)",
            ),
            (
                header(0x21, TCP6, &tcp4),
                ProxyHeaderError::ShortAddress { family: TCP6, len: 12, need: 36 },
                "PROXY protocol v2 address block of 12 bytes is too short for AF_INET6 over STREAM (0x21) (36 bytes)",
            ),
            (
                header(0x21, TCP4, &[0; MAX_BLOCK_LEN + 1]),
                ProxyHeaderError::TooLong(MAX_BLOCK_LEN + 1),
                "PROXY protocol v2 header too long (1025 bytes of addresses and TLVs; at most 1024)",
            ),
        ];
        for (bytes, error, words) in table {
            let got = parse(&bytes);
            assert_eq!(got, Err(error.clone()), "{bytes:02x?}");
            assert_eq!(error.to_string(), words);
        }
    }

    #[test]
    fn an_oversized_header_is_refused_from_its_fixed_part_alone() {
        let mut fixed = SIGNATURE.to_vec();
        fixed.extend_from_slice(&[0x21, TCP4, 0xff, 0xff]);
        assert_eq!(parse(&fixed), Err(ProxyHeaderError::TooLong(65535)));
        // The largest accepted is read in full.
        let h = header(0x21, TCP4, &[0; MAX_BLOCK_LEN]);
        assert_eq!(complete(&h).1, FIXED_LEN + MAX_BLOCK_LEN);
    }

    #[test]
    fn refusals_come_before_the_rest_of_the_header() {
        // The first differing byte is enough.
        assert!(matches!(parse(&[0x16]), Err(ProxyHeaderError::Missing(_))));
        assert_eq!(parse(b"PROXY"), Err(ProxyHeaderError::Version1));
        // An unsupported family is refused before its address block.
        let h = header(0x21, 0x31, &[0; 216]);
        assert_eq!(parse(&h[..FIXED_LEN]), Err(ProxyHeaderError::Family(0x31)));
    }

    /// `read` over a stream that delivers `chunks` one per read.
    async fn read_chunks(chunks: &[&[u8]]) -> (Result<Header, ReadError>, Vec<u8>) {
        let mut io = chunked(chunks);
        let result = read(&mut io).await;
        let mut rest = Vec::new();
        let _ = io.read_to_end(&mut rest).await;
        (result, rest)
    }

    fn chunked(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        // A duplex pipe written chunk by chunk and closed: reads return at
        // most what one write put in.
        let (mut tx, rx) = tokio::io::duplex(4096);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in chunks {
                tx.write_all(&c).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        rx
    }

    #[tokio::test]
    async fn read_takes_exactly_the_header_and_leaves_the_client_hello() {
        let h = header(0x21, TCP4, &tcp4_block());
        let mut last = h[20..].to_vec();
        last.extend_from_slice(b"\x16\x03\x01hello");
        let (result, rest) = read_chunks(&[&h[..5], &h[5..20], &last]).await;
        assert_eq!(
            result.unwrap(),
            Header::Proxy {
                source: "203.0.113.7:51234".parse().unwrap()
            }
        );
        assert_eq!(rest, b"\x16\x03\x01hello");
        // The header and the hello in one segment.
        let mut one = h.clone();
        one.extend_from_slice(b"\x16\x03\x01hello");
        let (result, rest) = read_chunks(&[&one]).await;
        assert!(result.is_ok());
        assert_eq!(rest, b"\x16\x03\x01hello");
    }

    #[tokio::test]
    async fn read_tells_a_close_before_any_byte_from_a_truncated_header() {
        let (result, _) = read_chunks(&[]).await;
        assert!(matches!(result, Err(ReadError::Closed)), "{result:?}");
        let h = header(0x21, TCP4, &tcp4_block());
        let (result, _) = read_chunks(&[&h[..20]]).await;
        match result {
            Err(ReadError::Invalid(e)) => assert_eq!(
                e.to_string(),
                "connection closed inside the PROXY protocol v2 header (20 of 28 bytes)"
            ),
            other => panic!("{other:?}"),
        }
        let (result, _) = read_chunks(&[b"PROXY TCP4 1.2.3.4"]).await;
        assert!(
            matches!(result, Err(ReadError::Invalid(ProxyHeaderError::Version1))),
            "{result:?}"
        );
    }
}
