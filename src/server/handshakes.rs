//! Room for clients that complete their handshake: `limits.max_connections`
//! counts connections still in their PROXY header or TLS handshake too, and
//! slow or stalled handshakes (a slowloris) could hold every place for the
//! whole `tls.handshake_timeout`. When no place is free, a new connection
//! takes the place of the oldest one still in its handshake, which is
//! closed; only when every connection is established is the new one
//! refused. An attacker then has to open connections faster than a
//! legitimate client completes its handshake to keep it out.
//!
//! Each connection's place is a semaphore permit. While the connection is
//! in its handshake the permit sits here, in the order the connections
//! came; the connection holds a [`Ticket`], which becomes the permit once
//! the handshake is done ([`Ticket::established`]), or tells it that its
//! place was taken ([`Ticket::evicted`]). Taken at accept and at the end of
//! a handshake, never per call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// The connections in their handshake, oldest first.
#[derive(Default)]
pub struct Handshakes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    pending: BTreeMap<u64, Pending>,
}

struct Pending {
    permit: OwnedSemaphorePermit,
    evicted: CancellationToken,
}

impl Handshakes {
    /// Registers a connection that starts its handshake with `permit`.
    pub fn admit(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Ticket {
        let evicted = CancellationToken::new();
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.pending.insert(
            id,
            Pending {
                permit,
                evicted: evicted.clone(),
            },
        );
        Ticket {
            id,
            evicted,
            handshakes: self.clone(),
        }
    }

    /// Closes the oldest connection still in its handshake and hands its
    /// place over; `None` when every connection is established.
    pub fn evict_oldest(&self) -> Option<OwnedSemaphorePermit> {
        let (_, oldest) = self.lock().pending.pop_first()?;
        oldest.evicted.cancel();
        Some(oldest.permit)
    }

    /// How many connections are in their handshake.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's place while it is in its handshake.
pub struct Ticket {
    id: u64,
    evicted: CancellationToken,
    handshakes: Arc<Handshakes>,
}

impl Ticket {
    /// Resolves when a newer connection took this one's place.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await;
    }

    /// The handshake is done: the connection's place, to hold while it is
    /// open; `None` if it was taken just before.
    pub fn established(self) -> Option<OwnedSemaphorePermit> {
        self.handshakes
            .lock()
            .pending
            .remove(&self.id)
            .map(|p| p.permit)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A handshake that failed gives its place back (after `established`
        // there is nothing left to remove).
        self.handshakes.lock().pending.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn the_oldest_handshake_gives_its_place_to_a_new_connection() {
        let places = Arc::new(Semaphore::new(2));
        let handshakes = Arc::new(Handshakes::default());
        let first = handshakes.admit(places.clone().try_acquire_owned().unwrap());
        let second = handshakes.admit(places.clone().try_acquire_owned().unwrap());
        assert!(places.clone().try_acquire_owned().is_err());

        let place = handshakes.evict_oldest().expect("a handshake to evict");
        // The first connection learns it, the second keeps its place.
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted())
            .await
            .expect("the oldest is told");
        assert!(first.established().is_none());
        let third = handshakes.admit(place);
        assert_eq!(handshakes.len(), 2);

        let established = second.established().expect("its place");
        assert_eq!(handshakes.len(), 1);
        drop(third);
        assert_eq!(handshakes.len(), 0);
        assert_eq!(
            places.available_permits(),
            1,
            "the failed handshake's place"
        );
        // Established connections are never evicted.
        assert!(handshakes.evict_oldest().is_none());
        drop(established);
        assert_eq!(places.available_permits(), 2);
    }
}
