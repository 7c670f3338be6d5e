//! Where run ids come from: an injected [`IdSource`], like time comes from the `Clock`.
//!
//! Ids are UUIDv7-shaped (48 bits of milliseconds from the injected clock's `now`, then
//! random bits), so they sort by start time in every store. [`SeededIds`] draws the random
//! bits from a seed: the demo and the simulator replay byte for byte. The service's source,
//! which draws from the operating system, lives in `baton-runner` (it does I/O).

use crate::model::RunId;
use crate::rng::SplitMix64;
use jiff::Timestamp;
use std::sync::Mutex;

/// Makes run ids.
pub trait IdSource: Send + Sync {
    /// A new run id for a run starting at `now` (the injected clock's time).
    fn run_id(&self, now: Timestamp) -> RunId;
}

/// Formats a UUIDv7 from a time and 74 random bits (RFC 9562 layout).
pub fn uuid_v7(now: Timestamp, random: u128) -> String {
    let millis = (now.as_millisecond().max(0) as u128) & 0xFFFF_FFFF_FFFF;
    let rand_a = (random >> 62) & 0xFFF;
    let rand_b = random & 0x3FFF_FFFF_FFFF_FFFF;
    let value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
    let hex = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Ids from a seed: the same seed and clock give the same ids.
#[derive(Debug)]
pub struct SeededIds(Mutex<SplitMix64>);

impl SeededIds {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(SplitMix64::new(seed)))
    }
}

impl IdSource for SeededIds {
    fn run_id(&self, now: Timestamp) -> RunId {
        // A poisoned lock still holds a valid generator state.
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        RunId::new(uuid_v7(now, random))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_replay_and_sort_by_time() {
        let t0: Timestamp = "2024-03-01T12:00:00Z".parse().unwrap();
        let t1: Timestamp = "2024-03-01T12:00:01Z".parse().unwrap();
        let (a, b) = (SeededIds::new(7), SeededIds::new(7));
        let first = a.run_id(t0);
        assert_eq!(first, b.run_id(t0), "same seed, same id");
        let second = a.run_id(t1);
        assert_ne!(first, second);
        assert!(first.as_str() < second.as_str(), "later ids sort later");
        let text = first.as_str();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7", "version 7");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "RFC variant"
        );
        assert_ne!(
            SeededIds::new(8).run_id(t0),
            first,
            "another seed, another id"
        );
    }
}
