//! What one client connection may make the proxy hold at once
//! (`limits.connection_buffer`), shared by all its streams in both
//! directions: the request bytes read to inspect first messages, until they
//! are forwarded, and the response bytes handed to the client's connection
//! and not yet written to it. Beyond it, the connection's streams wait: a
//! first-message read stops taking the client's data (HTTP/2 flow control
//! holds the client back), a response stops taking the upstream's data (its
//! stream window holds the upstream back, on that stream alone). However many
//! streams a client opens and never finishes or never reads, what the proxy
//! holds for it is the budget plus at most a frame and an upstream stream
//! window per stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug)]
pub struct ConnBudget {
    permits: Arc<Semaphore>,
    /// The budget's size in bytes.
    total: usize,
    /// The largest frame a client may send (the server's max frame size):
    /// what a first-message read reserves before each frame.
    frame: u32,
}

impl ConnBudget {
    pub fn new(bytes: usize, max_frame: u32) -> ConnBudget {
        let total = bytes.min(Semaphore::MAX_PERMITS);
        ConnBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
            frame: max_frame,
        }
    }

    /// Bytes of the budget not held now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// The largest frame a client may send.
    pub(super) fn frame(&self) -> u32 {
        self.frame
    }

    /// Takes `n` bytes of the budget, waiting until they are free.
    pub(super) async fn reserve(&self, n: u32) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        match self.permits.clone().acquire_many_owned(n).await {
            Ok(permit) => permit,
            Err(_) => unreachable_permit(),
        }
    }

    /// The permits `data` needs: its length, and never more than the whole
    /// budget (so one chunk larger than it waits for all of it, not
    /// forever).
    fn share(&self, data: &Bytes) -> u32 {
        u32::try_from(data.len().min(self.total)).unwrap_or(u32::MAX)
    }

    /// `data`, holding its length of the budget until the last copy of it is
    /// dropped (h2 drops a DATA frame's bytes once it has written them to the
    /// connection, or when the stream is reset): at once if the budget has
    /// room, else [`Holding`] waits for it. The bytes are not copied.
    pub fn hold(&self, data: Bytes) -> Result<Bytes, Holding> {
        let n = self.share(&data);
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(attach(data, permit)),
            Err(_) => {
                let permits = self.permits.clone();
                Err(Holding {
                    wait: Box::pin(async move {
                        match permits.acquire_many_owned(n).await {
                            Ok(permit) => attach(data, permit),
                            Err(_) => unreachable_permit(),
                        }
                    }),
                })
            }
        }
    }
}

/// Bytes waiting for their share of the budget (see [`ConnBudget::hold`]).
pub struct Holding {
    wait: Pin<Box<dyn Future<Output = Bytes> + Send>>,
}

impl Future for Holding {
    type Output = Bytes;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Bytes> {
        self.wait.as_mut().poll(cx)
    }
}

/// The bytes of a chunk and the share of the budget they hold.
struct Held {
    data: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

fn attach(data: Bytes, permit: OwnedSemaphorePermit) -> Bytes {
    if data.is_empty() {
        return data;
    }
    Bytes::from_owner(Held {
        data,
        _permit: permit,
    })
}

#[cold]
fn unreachable_permit() -> ! {
    // `Semaphore::close` is never called on a budget.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    #[test]
    fn held_bytes_take_their_length_until_every_copy_is_dropped() {
        let budget = ConnBudget::new(1000, 100);
        let data = Bytes::from(vec![7u8; 300]);
        let held = budget.hold(data.clone()).unwrap_or_else(|_| panic!("room"));
        assert_eq!(held, data, "the same bytes");
        assert_eq!(budget.available(), 700);
        // h2 splits a chunk into frames; the share stays until the last part
        // is gone.
        let mut rest = held.clone();
        let first = rest.split_to(100);
        drop(held);
        assert_eq!(budget.available(), 700);
        drop(first);
        assert_eq!(budget.available(), 700);
        drop(rest);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn bytes_beyond_the_budget_wait_until_earlier_ones_are_dropped() {
        let budget = ConnBudget::new(1000, 100);
        let first = budget
            .hold(Bytes::from(vec![1u8; 800]))
            .unwrap_or_else(|_| panic!("room"));
        let Err(mut waiting) = budget.hold(Bytes::from(vec![2u8; 300])) else {
            panic!("300 more bytes fit a 1000-byte budget holding 800");
        };
        let pending = poll_fn(|cx| Poll::Ready(Pin::new(&mut waiting).poll(cx).is_pending())).await;
        assert!(pending);
        drop(first);
        let second = waiting.await;
        assert_eq!(second.len(), 300);
        assert_eq!(budget.available(), 700);
    }

    #[tokio::test]
    async fn a_chunk_larger_than_the_whole_budget_takes_all_of_it_and_no_more() {
        let budget = ConnBudget::new(1000, 100);
        let big = budget
            .hold(Bytes::from(vec![3u8; 5000]))
            .unwrap_or_else(|_| panic!("the whole budget is free"));
        assert_eq!(big.len(), 5000);
        assert_eq!(budget.available(), 0);
        drop(big);
        assert_eq!(budget.available(), 1000);
        // Empty data holds nothing.
        let empty = budget
            .hold(Bytes::new())
            .unwrap_or_else(|_| panic!("nothing to hold"));
        assert!(empty.is_empty());
        assert_eq!(budget.available(), 1000);
    }
}
