//! Keepalive pings on an h2 connection, for both sides: a PING every
//! `interval`, with or without calls open; one not answered within
//! `timeout` ends the connection (a dead link: its calls fail, the peer
//! reconnects). Polled by the connection's own task beside the connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use h2::{Ping, PingPong};
use tokio::time::{Instant, Sleep};

pub struct Keepalive {
    pings: PingPong,
    interval: Duration,
    timeout: Duration,
    /// Until the next ping, or (`awaiting`) until its answer is late.
    timer: Pin<Box<Sleep>>,
    awaiting: bool,
}

impl Keepalive {
    pub fn new(pings: PingPong, interval: Duration, timeout: Duration) -> Keepalive {
        Keepalive {
            pings,
            interval,
            timeout,
            timer: Box::pin(tokio::time::sleep(interval)),
            awaiting: false,
        }
    }

    /// The ping timeout, for the words of the error that ends the
    /// connection.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Ready when a ping went unanswered for `timeout`: the connection is
    /// to be closed. Pending otherwise (also when the connection is ending:
    /// its own poll says why).
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.awaiting {
                match self.pings.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting = false;
                        let next = Instant::now() + self.interval;
                        self.timer.as_mut().reset(next);
                        continue;
                    }
                    Poll::Ready(Err(_)) => return Poll::Pending,
                    Poll::Pending => {}
                }
                ready!(self.timer.as_mut().poll(cx));
                return Poll::Ready(());
            }
            ready!(self.timer.as_mut().poll(cx));
            if self.pings.send_ping(Ping::opaque()).is_err() {
                return Poll::Pending;
            }
            self.awaiting = true;
            let late = Instant::now() + self.timeout;
            self.timer.as_mut().reset(late);
        }
    }
}
