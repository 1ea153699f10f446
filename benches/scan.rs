//! gRPC message framing on the data path, measured: the size scanner that
//! every request body passes through (`grpc::scan`), alone and as the body
//! wrapper the proxy forwards. `cargo bench --bench scan`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::FutureExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use temporal_mtls_proxy::internals::{LimitedBody, MessageScanner, Scan};

const LIMIT: u32 = 4 << 20;

/// `count` messages of `size` bytes each, prefixed as gRPC frames.
fn messages(count: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (size + 5));
    for i in 0..count {
        out.push(0);
        out.extend_from_slice(&(size as u32).to_be_bytes());
        out.extend(std::iter::repeat_n(i as u8, size));
    }
    out
}

/// `data` cut into `chunk`-byte pieces, as HTTP/2 DATA frames arrive.
fn chunks(data: &[u8], chunk: usize) -> Vec<Bytes> {
    data.chunks(chunk).map(Bytes::copy_from_slice).collect()
}

fn scanner(c: &mut Criterion) {
    let mut g = c.benchmark_group("scanner");
    // A unary request as SDKs send it: one small message in one frame.
    let unary = messages(1, 120);
    g.throughput(Throughput::Bytes(unary.len() as u64));
    g.bench_function("unary 125 B in one chunk", |b| {
        b.iter(|| {
            let mut s = MessageScanner::new(LIMIT);
            assert_eq!(s.scan(black_box(&unary)), Scan::Pass);
            black_box(s.at_boundary())
        })
    });
    // A stream of 1 KiB messages in 16 KiB frames (prefixes split across
    // frames), and 1 MiB messages in 16 KiB frames (mostly payload).
    for (name, count, size) in [
        ("1 KiB messages, 16 KiB chunks", 1024, 1024),
        ("1 MiB messages, 16 KiB chunks", 4, 1 << 20),
    ] {
        let pieces = chunks(&messages(count, size), 16 * 1024);
        let total: usize = pieces.iter().map(Bytes::len).sum();
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = MessageScanner::new(LIMIT);
                for p in &pieces {
                    assert_eq!(s.scan(black_box(p)), Scan::Pass);
                }
                black_box(s.at_boundary())
            })
        });
    }
    g.finish();
}

/// The same bytes through `LimitedBody`, the wrapper the proxy forwards:
/// scanning plus holding back split prefixes, polled to the end.
fn limited_body(c: &mut Criterion) {
    let mut g = c.benchmark_group("limited body");
    for (name, count, size, chunk) in [
        ("unary 125 B", 1, 120, 16 * 1024),
        ("1 KiB messages, 16 KiB chunks", 1024, 1024, 16 * 1024),
        ("1 MiB messages, 16 KiB chunks", 4, 1 << 20, 16 * 1024),
    ] {
        let pieces = chunks(&messages(count, size), chunk);
        let total: usize = pieces.iter().map(Bytes::len).sum();
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let frames = pieces
                        .iter()
                        .cloned()
                        .map(|p| Ok::<_, Infallible>(Frame::data(p)));
                    LimitedBody::new(StreamBody::new(futures_util::stream::iter(frames)), LIMIT)
                },
                |mut body| {
                    let mut forwarded = 0;
                    while let Some(frame) = body
                        .frame()
                        .now_or_never()
                        .expect("an in-memory body is ready at once")
                    {
                        let frame = frame.expect("within the limit");
                        forwarded += frame.data_ref().map_or(0, Bytes::len);
                    }
                    assert_eq!(forwarded, total);
                    black_box(forwarded)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, scanner, limited_body);
criterion_main!(benches);
