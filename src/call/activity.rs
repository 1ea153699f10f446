//! Whether a connection is busy: how many calls it has open, and since when
//! it has had none. Calls hold an [`ActiveCall`] until their response ends
//! (or is dropped), so a 70 s long poll counts as activity throughout.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub struct ConnActivity {
    start: Instant,
    calls: AtomicUsize,
    /// Milliseconds after `start` when the last call ended.
    idle_since_ms: AtomicU64,
}

impl ConnActivity {
    pub fn new() -> Arc<ConnActivity> {
        Arc::new(ConnActivity {
            start: Instant::now(),
            calls: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    pub fn begin(self: &Arc<Self>) -> ActiveCall {
        self.calls.fetch_add(1, Ordering::AcqRel);
        ActiveCall(self.clone())
    }

    pub fn open_calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// When the connection will have been idle for `max_idle`, if it is
    /// idle now; `None` while calls are open.
    pub fn idle_deadline(&self, max_idle: Duration) -> Option<Instant> {
        if self.open_calls() > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.start + since + max_idle)
    }
}

/// One open call; dropping it ends the call's activity.
pub struct ActiveCall(Arc<ConnActivity>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.start.elapsed().as_millis() as u64;
        a.idle_since_ms.store(now, Ordering::Release);
        a.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_deadline_follows_calls() {
        let a = ConnActivity::new();
        let max = Duration::from_secs(120);
        assert_eq!(a.idle_deadline(max), Some(a.start + max));
        let call = a.begin();
        assert_eq!(a.idle_deadline(max), None);
        tokio::time::advance(Duration::from_secs(70)).await;
        drop(call);
        assert_eq!(a.open_calls(), 0);
        assert_eq!(
            a.idle_deadline(max),
            Some(a.start + Duration::from_secs(70) + max)
        );
    }
}
