//! Time, injected: every rule and service reads `now` through a [`Clock`], so tests and
//! the simulator move time instead of sleeping. [`SystemClock`] is the only place in the
//! workspace that reads the system time or sleeps.

use jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;

/// A source of the current time, and a way to wait.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Waits `duration`; a manual clock advances itself instead.
    fn sleep(&self, duration: SignedDuration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads real time
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    #[allow(clippy::disallowed_methods)] // the one place that blocks for real
    fn sleep(&self, duration: SignedDuration) {
        if let Ok(d) = std::time::Duration::try_from(duration) {
            std::thread::sleep(d);
        }
    }
}

/// A clock that moves only when told to (tests, simulator, demo).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }
    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }
    /// Sets the clock.
    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn sleep(&self, duration: SignedDuration) {
        self.advance(duration);
    }
}

/// A clock that runs with real time plus an offset that can be moved forward: the demo
/// uses it to pause a lease holder "past its lease" in milliseconds.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: Mutex<SignedDuration>,
}

impl OffsetClock {
    /// Jumps the clock forward by `by`.
    pub fn jump(&self, by: SignedDuration) {
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset = offset.saturating_add(by);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemClock.now();
        now.checked_add(offset).unwrap_or(now)
    }
    fn sleep(&self, duration: SignedDuration) {
        SystemClock.sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::UNIX_EPOCH);
        assert_eq!(c.now(), Timestamp::UNIX_EPOCH);
        c.sleep(SignedDuration::from_secs(5));
        assert_eq!(c.now().as_second(), 5);
    }

    #[test]
    fn offset_clock_jumps_ahead() {
        let c = OffsetClock::default();
        let before = SystemClock.now();
        c.jump(SignedDuration::from_hours(1));
        assert!(c.now().duration_since(before) >= SignedDuration::from_mins(59));
    }
}
