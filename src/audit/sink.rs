//! The audit log writer: calls hand finished JSON lines to an [`AuditSink`],
//! which never makes them wait. Lines go through a bounded queue to one
//! writer task; when the queue is full (slow disk, stalled stdout) the line
//! is dropped and counted, so audit trouble costs log lines, never latency.
//!
//! How the writer writes, and why:
//! - The loop is an async task that takes every queued line at once
//!   (`recv_many`), so the batch size follows the load: one line when calls
//!   are rare, hundreds when the previous write was slow.
//! - The batch is joined into one reused buffer and written with one
//!   `write_all` and a `flush` on a std writer inside `spawn_blocking`. The
//!   reused buffer does what a `BufWriter` would (one write per batch), and
//!   writing the whole batch before counting it keeps `written()` exact: a
//!   line counts as written once the OS has it, not while it sits in a
//!   buffer. The flush is a no-op for files and pushes out stdout's line
//!   buffer. Std I/O on the blocking pool is what `tokio::fs` and
//!   `tokio::io::stdout` do internally per operation; doing it per batch
//!   costs one hand-off per batch, and needs no extra tokio features.
//! - A write error is logged once; the writer is then discarded and every
//!   later line is counted as dropped.
//!
//! At shutdown, drop every `AuditSink` clone and await
//! [`AuditSink::finished`] so the last calls' lines reach the log:
//! [`Finished::wait_while_writing`] waits as long as the writer makes
//! progress, however slow the sink, and gives up only on a sink that has
//! stopped taking lines.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

pub use crate::config::AuditTarget as SinkTarget;
use tokio::sync::{mpsc, watch};

/// Why the audit sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open audit log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit log writer needs a tokio runtime: AuditSink::spawn was called outside one")]
    NoRuntime,
}

/// Lines taken from the queue per write, at most. Bounds the batch buffer
/// (about 0.5 MiB at typical audit line sizes).
const MAX_BATCH_LINES: usize = 1024;

/// A batch buffer that grew beyond this after a burst is released rather
/// than kept for the life of the process.
const KEEP_BUFFER_BYTES: usize = 1 << 20;

/// A handle calls use to hand off one finished line. Cloneable, cheap.
#[derive(Clone)]
pub struct AuditSink {
    lines: mpsc::Sender<String>,
    counters: Arc<Counters>,
    finished: watch::Receiver<bool>,
}

#[derive(Default)]
struct Counters {
    /// Lines taken into the queue.
    accepted: AtomicU64,
    /// Lines not written: refused by a full queue, or taken and then lost
    /// with a failed writer (`lost` of them).
    dropped: AtomicU64,
    lost: AtomicU64,
    written: AtomicU64,
    /// Bytes handed to the target so far: progress within a batch, which a
    /// slow reader (a pipe) may take many seconds to accept.
    bytes: AtomicU64,
}

impl Counters {
    /// Lines taken into the queue and neither written nor lost yet.
    fn pending(&self) -> u64 {
        let done = self.written.load(Ordering::Acquire) + self.lost.load(Ordering::Acquire);
        self.accepted.load(Ordering::Acquire).saturating_sub(done)
    }
}

impl AuditSink {
    /// Opens the target (append mode for files; created if missing) and
    /// spawns the writer task on the current tokio runtime. `capacity` is
    /// the number of lines buffered before dropping (at least 1).
    pub fn spawn(target: SinkTarget, capacity: usize) -> Result<AuditSink, SinkError> {
        let runtime = Handle::try_current().map_err(|_| SinkError::NoRuntime)?;
        let (out, name): (Box<dyn Write + Send>, String) = match target {
            SinkTarget::Stdout => (Box::new(std::io::stdout()), "stdout".to_owned()),
            SinkTarget::File(path) => {
                match OpenOptions::new().append(true).create(true).open(&path) {
                    Ok(file) => (Box::new(file), path.display().to_string()),
                    Err(source) => return Err(SinkError::Open { path, source }),
                }
            }
        };
        Ok(AuditSink::start(&runtime, out, name, capacity))
    }

    fn start(
        runtime: &Handle,
        out: Box<dyn Write + Send>,
        name: String,
        capacity: usize,
    ) -> AuditSink {
        let (lines, queue) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let (done, finished) = watch::channel(false);
        runtime.spawn(write_lines(queue, out, name, Arc::clone(&counters), done));
        AuditSink {
            lines,
            counters,
            finished,
        }
    }

    /// Hands off one line (a newline is added unless it ends with one).
    /// Never waits: if the queue is full, or the writer is gone, the line is
    /// dropped and counted.
    pub fn write(&self, line: String) {
        // Counted before it is queued, so the writer never finishes a line
        // not yet accepted.
        self.counters.accepted.fetch_add(1, Ordering::AcqRel);
        if self.lines.try_send(line).is_err() {
            self.counters.accepted.fetch_sub(1, Ordering::AcqRel);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far: queue full, writer failed or gone.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Reads the drop count without holding the sink open (for metrics,
    /// which must not keep `finished()` waiting).
    pub fn dropped_source(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let counters = self.counters.clone();
        move || counters.dropped.load(Ordering::Relaxed)
    }

    /// Lines the OS has accepted so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Completes once every `AuditSink` clone has been dropped and the
    /// writer has written (or dropped) every queued line. Holds no handle,
    /// so it can be taken before the last clone is dropped.
    pub fn finished(&self) -> Finished {
        Finished {
            done: self.finished.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSink")
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// See [`AuditSink::finished`].
pub struct Finished {
    done: watch::Receiver<bool>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finished")
            .field("done", &*self.done.borrow())
            .field("pending", &self.counters.pending())
            .finish()
    }
}

impl Finished {
    /// Waits for the writer to finish (also returns if its task was
    /// cancelled, e.g. by a runtime shutting down).
    #[cfg(test)]
    pub async fn wait(mut self) {
        // An error means the writer task is gone without saying so: finished
        // all the same.
        let _ = self.done.wait_for(|done| *done).await;
    }

    /// Waits for the writer to finish for as long as it writes: each
    /// `stall` without a byte written is the end of patience (a sink that
    /// no longer takes lines, or a handle still held with nothing queued).
    /// Returns the lines still queued when it gave up, 0 when finished.
    pub async fn wait_while_writing(mut self, stall: std::time::Duration) -> u64 {
        let mut seen = self.counters.bytes.load(Ordering::Acquire);
        loop {
            let done = self.done.wait_for(|done| *done);
            match tokio::time::timeout(stall, done).await {
                // Finished, or the writer is gone.
                Ok(_) => return 0,
                Err(_) => {
                    let now = self.counters.bytes.load(Ordering::Acquire);
                    if now == seen {
                        return self.counters.pending();
                    }
                    seen = now;
                }
            }
        }
    }
}

/// Writes `batch` in pieces, adding each piece to `bytes` once written.
fn write_counted(writer: &mut dyn Write, batch: &[u8], bytes: &AtomicU64) -> std::io::Result<()> {
    const PIECE: usize = 16 * 1024;
    for piece in batch.chunks(PIECE) {
        writer.write_all(piece)?;
        bytes.fetch_add(piece.len() as u64, Ordering::AcqRel);
    }
    Ok(())
}

/// The writer task: batches queued lines and writes each batch at once,
/// until every sender is gone and the queue is empty. A batch that cannot
/// be written (a full disk) is dropped and counted, and the next one is
/// tried again: writing resumes once the sink takes bytes again, after a
/// newline that ends a line the failure may have cut. `name` says which
/// sink in the log lines.
async fn write_lines(
    mut queue: mpsc::Receiver<String>,
    out: Box<dyn Write + Send>,
    name: String,
    counters: Arc<Counters>,
    done: watch::Sender<bool>,
) {
    let mut out = Some(out);
    let mut lines = Vec::new();
    let mut buffer = Vec::new();
    // Lines dropped since the last write failed (None: writing).
    let mut failing: Option<u64> = None;
    while queue.recv_many(&mut lines, MAX_BATCH_LINES).await > 0 {
        let count = lines.len() as u64;
        let Some(mut writer) = out.take() else {
            lines.clear();
            counters.lost.fetch_add(count, Ordering::AcqRel);
            counters.dropped.fetch_add(count, Ordering::Relaxed);
            continue;
        };
        buffer.clear();
        if failing.is_some() {
            buffer.push(b'\n');
        }
        for line in lines.drain(..) {
            buffer.extend_from_slice(line.as_bytes());
            if !line.ends_with('\n') {
                buffer.push(b'\n');
            }
        }
        let mut batch = std::mem::take(&mut buffer);
        let progress = Arc::clone(&counters);
        let job = tokio::task::spawn_blocking(move || {
            let result =
                write_counted(&mut *writer, &batch, &progress.bytes).and_then(|()| writer.flush());
            batch.clear();
            (writer, batch, result)
        });
        match job.await {
            Ok((writer, batch, Ok(()))) => {
                counters.written.fetch_add(count, Ordering::AcqRel);
                out = Some(writer);
                if batch.capacity() <= KEEP_BUFFER_BYTES {
                    buffer = batch;
                }
                if let Some(dropped) = failing.take() {
                    tracing::warn!(
                        sink = %name,
                        dropped,
                        "the audit log is written again; lines of calls in between were dropped (audit_lines_dropped_total)"
                    );
                }
            }
            Ok((writer, _, Err(error))) => {
                if failing.is_none() {
                    tracing::error!(
                        sink = %name,
                        %error,
                        "cannot write the audit log; audit lines are dropped (and counted) until it takes lines again"
                    );
                }
                *failing.get_or_insert(0) += count;
                out = Some(writer);
                counters.lost.fetch_add(count, Ordering::AcqRel);
                counters.dropped.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(
                    sink = %name,
                    %error,
                    "the audit log writer stopped; audit lines are dropped from now on"
                );
                counters.lost.fetch_add(count, Ordering::AcqRel);
                counters.dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
    }
    done.send_replace(true);
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;

    fn lines(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("{{\"call\":{i}}}")).collect()
    }

    /// Drops the sink, waits for the writer, returns (written, dropped).
    async fn finish(sink: AuditSink) -> (u64, u64) {
        let finished = sink.finished();
        let counters = Arc::clone(&sink.counters);
        drop(sink);
        finished.wait().await;
        (
            counters.written.load(Ordering::Relaxed),
            counters.dropped.load(Ordering::Relaxed),
        )
    }

    /// Sends `sent`, then [`finish`]es.
    async fn write_all_and_finish(sink: AuditSink, sent: &[String]) -> (u64, u64) {
        for line in sent {
            sink.write(line.clone());
        }
        finish(sink).await
    }

    #[tokio::test]
    async fn lines_arrive_in_order_in_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = AuditSink::spawn(SinkTarget::File(path.clone()), 4096).unwrap();
        let sent = lines(0..2000);
        let (written, dropped) = write_all_and_finish(sink, &sent).await;
        assert_eq!((written, dropped), (2000, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), sent);
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let sink = AuditSink::spawn(SinkTarget::File(path.clone()), 16).unwrap();
        // A line that already ends with a newline does not get a second one.
        let sent = vec!["a\n".to_owned(), "b".to_owned()];
        write_all_and_finish(sink, &sent).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\na\nb\n");
    }

    #[tokio::test]
    async fn an_unopenable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("audit.log");
        let error = AuditSink::spawn(SinkTarget::File(path.clone()), 16).unwrap_err();
        assert!(matches!(&error, SinkError::Open { path: p, .. } if *p == path));
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot open audit log {}: ", path.display())),
            "{message}"
        );
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let error = AuditSink::spawn(SinkTarget::Stdout, 16).unwrap_err();
        assert!(matches!(error, SinkError::NoRuntime), "{error}");
    }

    #[tokio::test]
    async fn stdout_target_starts() {
        // No lines: the test harness does not capture raw stdout writes.
        let sink = AuditSink::spawn(SinkTarget::Stdout, 16).unwrap();
        assert_eq!(finish(sink).await, (0, 0));
    }

    #[tokio::test]
    async fn zero_capacity_means_one() {
        let out = Shared::default();
        let sink = AuditSink::start(&Handle::current(), Box::new(out.clone()), "test".into(), 0);
        let (written, dropped) = write_all_and_finish(sink, &lines(0..1)).await;
        assert_eq!((written, dropped), (1, 0));
    }

    /// An in-memory target.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A target that is stuck: each write reports that it started, then
    /// waits until the test opens the gate (drops its sender).
    struct Stuck {
        started: mpsc::UnboundedSender<()>,
        gate: std::sync::mpsc::Receiver<()>,
        out: Shared,
    }

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.started.send(());
            let _ = self.gate.recv();
            self.out.write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stuck_writer_never_blocks_calls_and_the_excess_is_counted() {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
        let out = Shared::default();
        let stuck = Stuck {
            started: started_tx,
            gate: gate_rx,
            out: out.clone(),
        };
        let capacity = 4;
        let sink = AuditSink::start(&Handle::current(), Box::new(stuck), "test".into(), capacity);
        let sent = lines(0..101);

        // The first line reaches the writer, which gets stuck on it.
        sink.write(sent[0].clone());
        started.recv().await.unwrap();

        // `write` returns at once while the writer is stuck (were it to
        // wait, this test would never get past the loop): `capacity` lines
        // queue, the rest are dropped.
        for line in &sent[1..] {
            sink.write(line.clone());
        }
        assert_eq!(sink.dropped(), 100 - capacity as u64);
        assert_eq!(sink.written(), 0);

        // Unstick the writer; what was queued is written, in order.
        drop(gate);
        let (written, dropped) = finish(sink).await;
        assert_eq!(written, 1 + capacity as u64);
        assert_eq!(written + dropped, sent.len() as u64);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), sent[..=capacity]);
    }

    #[tokio::test]
    async fn the_shutdown_wait_gives_up_on_a_stuck_writer_and_counts_what_is_left() {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
        let stuck = Stuck {
            started: started_tx,
            gate: gate_rx,
            out: Shared::default(),
        };
        let sink = AuditSink::start(&Handle::current(), Box::new(stuck), "test".into(), 64);
        sink.write("first".to_owned());
        started.recv().await.unwrap();
        for line in lines(0..10) {
            sink.write(line);
        }
        let finished = sink.finished();
        drop(sink);
        // Nothing is written for the stall: the wait ends, with the first
        // line (taken by the stuck write) and the ten queued behind it.
        let left = finished
            .wait_while_writing(std::time::Duration::from_millis(200))
            .await;
        assert_eq!(left, 11);
        drop(gate);
    }

    #[tokio::test]
    async fn the_shutdown_wait_lasts_while_a_slow_writer_makes_progress() {
        /// Takes 4 KiB at most per write, 20 ms each.
        struct Slow(Shared);
        impl Write for Slow {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let n = bytes.len().min(4096);
                self.0.write(&bytes[..n])
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let sink = AuditSink::start(
            &Handle::current(),
            Box::new(Slow(out.clone())),
            "test".into(),
            2048,
        );
        // ~100 KiB in one batch: about 25 writes, 0.5 s, each well within
        // the stall but all together far beyond it.
        let sent: Vec<String> = (0..1000).map(|i| format!("{i:0>99}")).collect();
        for line in &sent {
            sink.write(line.clone());
        }
        let finished = sink.finished();
        drop(sink);
        let left = finished
            .wait_while_writing(std::time::Duration::from_millis(100))
            .await;
        assert_eq!(left, 0);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), sent.len());
    }

    /// A target whose writes fail while `full` is set (a full disk),
    /// counting the attempts.
    #[derive(Clone, Default)]
    struct Flaky {
        out: Shared,
        full: Arc<std::sync::atomic::AtomicBool>,
        attempts: Arc<AtomicU64>,
    }

    impl Write for Flaky {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.full.load(Ordering::Relaxed) {
                return Err(io::Error::other("No space left on device"));
            }
            self.out.write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Sends `sent` one at a time, each once the writer took the one before
    /// (so each is a batch of its own).
    async fn write_one_by_one(sink: &AuditSink, sent: &[String]) {
        for line in sent {
            let before = sink.counters.pending();
            sink.write(line.clone());
            for _ in 0..1000 {
                if sink.counters.pending() <= before {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }

    #[tokio::test]
    async fn while_writes_fail_lines_are_dropped_and_writing_resumes_after() {
        let target = Flaky::default();
        let sink = AuditSink::start(
            &Handle::current(),
            Box::new(target.clone()),
            "test".into(),
            64,
        );
        target.full.store(true, Ordering::Relaxed);
        write_one_by_one(&sink, &lines(0..5)).await;
        // Every batch was tried, none written.
        assert_eq!(target.attempts.load(Ordering::Relaxed), 5);
        assert!(target.out.0.lock().unwrap().is_empty());
        // Space again: the next lines are written, after a newline that
        // ends whatever the failure cut.
        target.full.store(false, Ordering::Relaxed);
        write_one_by_one(&sink, &lines(5..8)).await;
        let (written, dropped) = finish(sink).await;
        assert_eq!((written, dropped), (3, 5));
        let text = String::from_utf8(target.out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "\n{\"call\":5}\n{\"call\":6}\n{\"call\":7}\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_every_line_is_written_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = AuditSink::spawn(SinkTarget::File(path.clone()), 32).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    for i in 0..1000 {
                        sink.write(format!("{task}:{i}"));
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (written, dropped) = finish(sink).await;
        assert_eq!(written + dropped, 8000);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count() as u64, written);
        // Each task's lines keep their order.
        for task in 0..8 {
            let prefix = format!("{task}:");
            let seen: Vec<u32> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|n| n.parse().unwrap())
                .collect();
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "task {task}");
        }
    }
}
