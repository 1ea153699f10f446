//! Thread per core: each worker is one thread running a single-threaded
//! tokio runtime with its own upstream pool. The accept loop hands every
//! connection to the next worker (round robin), and from then on the
//! connection, its calls, and the upstream streams they use all run on that
//! one thread: no work stealing, no cross-thread wake-ups, no contended
//! locks inside h2 on the per-call path.
//!
//! With one worker no thread is started: connections are served on the
//! caller's runtime (the binary's own single-threaded one).

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::upstream::Forward;

/// One worker's runtime (`None`: the caller's) and upstream pool.
struct Worker {
    runtime: Option<Handle>,
    forward: Forward,
}

pub struct Workers {
    workers: Vec<Worker>,
    next: usize,
    /// Dropping a sender stops that worker's runtime, which drops whatever
    /// it still runs (connections cut after the drain timeout).
    stops: Vec<oneshot::Sender<()>>,
}

/// The default worker count: one per CPU this process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Workers {
    /// Starts one worker per upstream in `forwards` (at least one); threads
    /// only when there are several.
    pub fn start(mut forwards: Vec<Forward>) -> std::io::Result<Workers> {
        if forwards.len() <= 1 {
            let forward = forwards
                .pop()
                .ok_or_else(|| std::io::Error::other("no worker to start"))?;
            return Ok(Workers {
                workers: vec![Worker {
                    runtime: None,
                    forward,
                }],
                next: 0,
                stops: Vec::new(),
            });
        }
        let mut workers = Vec::with_capacity(forwards.len());
        let mut stops = Vec::with_capacity(forwards.len());
        for (index, forward) in forwards.into_iter().enumerate() {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("proxy-worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    // Runs spawned connections until stopped; dropping the
                    // runtime then drops what is left.
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("worker thread exited at start"))??;
            stops.push(stop_tx);
            workers.push(Worker {
                runtime: Some(handle),
                forward,
            });
        }
        Ok(Workers {
            workers,
            next: 0,
            stops,
        })
    }

    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Serves `tcp` on the next worker: `serve` gets the stream (registered
    /// with that worker's reactor) and the worker's upstream.
    pub fn spawn<F, Fut>(
        &mut self,
        tracker: &TaskTracker,
        tcp: TcpStream,
        peer: SocketAddr,
        serve: F,
    ) where
        F: FnOnce(TcpStream, Forward) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = &self.workers[self.next];
        self.next = (self.next + 1) % self.workers.len();
        let forward = worker.forward.clone();
        match &worker.runtime {
            None => {
                tracker.spawn(serve(tcp, forward));
            }
            Some(handle) => {
                // A tokio stream belongs to the reactor it was registered
                // with: move it over as a plain socket.
                let std = match tcp.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(peer = %peer, error = %e, "cannot hand the connection to a worker");
                        return;
                    }
                };
                tracker.spawn_on(
                    async move {
                        match TcpStream::from_std(std) {
                            Ok(tcp) => serve(tcp, forward).await,
                            Err(e) => {
                                tracing::warn!(peer = %peer, error = %e, "cannot register the connection with its worker")
                            }
                        }
                    },
                    handle,
                );
            }
        }
    }

    /// Runs `task` on the first worker with that worker's upstream.
    pub fn spawn_first<F, Fut>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: FnOnce(Forward) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = &self.workers[0];
        let fut = task(worker.forward.clone());
        match &worker.runtime {
            None => tokio::spawn(fut),
            Some(handle) => handle.spawn(fut),
        }
    }

    /// Stops the worker threads; connections still open are dropped.
    pub fn stop(&mut self) {
        self.stops.clear();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}
