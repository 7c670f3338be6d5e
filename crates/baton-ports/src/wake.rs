//! The wake port: how a waiting `serve` learns that new work may have arrived (an outbox
//! row, a publish, a landing, an owed run), so that it waits for a signal instead of
//! polling. Each backend adapter implements [`Wake`] with what it has (SQLite: its own
//! commits in process and a file watch for other processes; PostgreSQL: `LISTEN/NOTIFY`;
//! NATS: a subscription on the stream's subjects). [`Signal`] is the in-process part they
//! share.
//!
//! Invariant: a wake may be spurious (one extra round that finds nothing), but work
//! committed through a waking adapter is never waited for past the timeout.

use crate::Result;
use jiff::SignedDuration;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Tells a waiting service that new work may have arrived.
pub trait Wake: Send + Sync {
    /// Waits until new work may have arrived since the previous wait returned, or until
    /// `timeout` passed; true when a signal ended it. Returns at once when a signal came
    /// in between (work committed while the caller was busy is not slept through).
    fn wait(&self, timeout: SignedDuration) -> Result<bool>;
}

/// What raised a [`Signal`]: a bit set, so one waiter can tell its sources apart.
pub type Source = u8;
/// Work committed in this process.
pub const LOCAL: Source = 1;

/// An in-process signal: raised by a commit that creates work, waited for by one waiter.
/// Raises between waits are kept (and merged) until the next wait takes them.
#[derive(Debug, Default)]
pub struct Signal {
    raised: Mutex<Source>,
    cond: Condvar,
}

impl Signal {
    /// Raises the signal from `source` and wakes the waiter.
    pub fn raise(&self, source: Source) {
        let mut raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        *raised |= source;
        self.cond.notify_all();
    }

    /// Waits up to `timeout` for a raise; returns (and clears) the sources raised, 0 when
    /// the time ran out.
    pub fn take(&self, timeout: Duration) -> Source {
        self.take_by(deadline(timeout))
    }

    /// Waits until `deadline` for a raise; returns (and clears) the sources raised, 0 when
    /// the time ran out.
    pub fn take_by(&self, deadline: Instant) -> Source {
        let mut raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        while *raised == 0 {
            let left = deadline.saturating_duration_since(real_now());
            if left.is_zero() {
                return 0;
            }
            raised = self
                .cond
                .wait_timeout(raised, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::take(&mut *raised)
    }
}

/// The real instant a wait of `timeout` from now ends (an hour ahead when too far to say).
pub fn deadline(timeout: Duration) -> Instant {
    let now = real_now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}

/// A wake signal is a real wait on another thread or process, not a pause a test could
/// move through the clock: its bound is measured in real time.
#[allow(clippy::disallowed_methods)]
fn real_now() -> Instant {
    Instant::now()
}

impl Wake for Signal {
    fn wait(&self, timeout: SignedDuration) -> Result<bool> {
        Ok(self.take(std_duration(timeout)) != 0)
    }
}

/// A wait's timeout as a [`Duration`] (zero when negative).
pub fn std_duration(timeout: SignedDuration) -> Duration {
    Duration::try_from(timeout).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_raise_before_the_wait_ends_it_at_once_and_is_taken_once() {
        let s = Signal::default();
        s.raise(LOCAL);
        s.raise(2);
        assert_eq!(s.take(Duration::from_secs(60)), LOCAL | 2);
        assert_eq!(s.take(Duration::ZERO), 0, "taken: the next wait times out");
    }

    #[test]
    fn a_raise_from_another_thread_ends_a_long_wait() {
        let s = Arc::new(Signal::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = s.clone();
        let handle = std::thread::spawn(move || {
            tx.send(()).unwrap_or_default();
            waiter.wait(SignedDuration::from_secs(600))
        });
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        s.raise(LOCAL);
        assert_eq!(handle.join().ok(), Some(Ok(true)));
    }
}
