//! Lease rules per (processor, partition): acquire, renew, release and the write check,
//! each a pure function of the stored lease and the store's `now`.
//!
//! Invariant: a lease's fencing token only grows; every grant takes the newest token plus
//! one, so a later holder always carries a larger token than any earlier one.
//! Invariant: expiry is judged with the store's clock (`now` comes from the store), never
//! a worker's; renew and release succeed only for the current token.
//!
//! Deliberately absent: a holder-side safety margin (treating the lease as lost some time
//! before expiry). A margin protects a holder whose write is checked apart from the write
//! itself; here [`check_current`] runs inside the write's own transaction, with the store's
//! clock (on PostgreSQL under the lease row's lock), so an expired holder's write is
//! refused at commit, and a margin would judge expiry by the worker's clock, which G4
//! rules out.

use crate::model::{FenceToken, Partition, ProcessorName};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// A lease on a (processor, partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The processor.
    pub processor: ProcessorName,
    /// The partition.
    pub partition: Partition,
    /// Who holds (or last held) it.
    pub holder: String,
    /// The token of the latest grant.
    pub token: FenceToken,
    /// When the latest grant (or renewal) was made.
    pub renewed_at: Timestamp,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// Whether the holder released it.
    pub released: bool,
}

impl Lease {
    /// Whether the lease is held at `now` (not released, not expired).
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.released && now < self.expires_at
    }
    /// When the holder should renew: a third of the way through its lifetime.
    pub fn renew_due_at(&self) -> Timestamp {
        let life = self.expires_at.duration_since(self.renewed_at);
        self.renewed_at
            .checked_add(life / 3)
            .unwrap_or(self.expires_at)
    }
}

/// The result of an acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Granted: the new lease, with a fresh token.
    Granted(Lease),
    /// Someone else holds it.
    Held(Lease),
}

/// Why a renew, release or write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// There was never a lease.
    #[error("no lease exists for this processor and date")]
    NoLease,
    /// A newer grant exists: the presenter is a stale holder.
    #[error("token {presented} is stale: the current token is {current}")]
    StaleToken {
        /// The token presented.
        presented: FenceToken,
        /// The current token.
        current: FenceToken,
    },
    /// The lease expired (judged by the store's clock).
    #[error("lease with token {token} expired at {expired_at}")]
    Expired {
        /// The token.
        token: FenceToken,
        /// When it expired.
        expired_at: Timestamp,
    },
    /// The holder released it already.
    #[error("lease with token {token} was released")]
    Released {
        /// The token.
        token: FenceToken,
    },
}

/// Grants the lease when there is none, or when the existing one is released or expired;
/// the token is always the newest plus one.
pub fn acquire(
    existing: Option<&Lease>,
    processor: &ProcessorName,
    partition: Partition,
    holder: &str,
    now: Timestamp,
    ttl: SignedDuration,
) -> Acquire {
    if let Some(lease) = existing
        && lease.is_live(now)
    {
        return Acquire::Held(lease.clone());
    }
    let token = existing.map_or(FenceToken::ZERO, |l| l.token).next();
    Acquire::Granted(Lease {
        processor: processor.clone(),
        partition,
        holder: holder.to_owned(),
        token,
        renewed_at: now,
        expires_at: now.checked_add(ttl).unwrap_or(now),
        released: false,
    })
}

/// Checks that `token` is the live, current lease at `now`. A stale holder (a newer token
/// exists), an expired holder (paused past its lease) and a releasing holder are refused:
/// any of them writing could overwrite the current holder's rows.
pub fn check_current(
    existing: Option<&Lease>,
    token: FenceToken,
    now: Timestamp,
) -> Result<&Lease, Refusal> {
    let lease = existing.ok_or(Refusal::NoLease)?;
    if lease.token != token {
        return Err(Refusal::StaleToken {
            presented: token,
            current: lease.token,
        });
    }
    if lease.released {
        return Err(Refusal::Released { token });
    }
    if now >= lease.expires_at {
        return Err(Refusal::Expired {
            token,
            expired_at: lease.expires_at,
        });
    }
    Ok(lease)
}

/// Why a run recorded as still running under `token` is abandoned at `now`, or `None`
/// while its lease still covers it. A run lives only while its lease is live and current:
/// once the lease expired unreleased, was released, or was taken over, the run can never
/// write (the fence refuses it), so a `running` record past that point is a process that
/// died (killed, out of memory, its backend lost) and will never finish it.
pub fn abandoned(existing: Option<&Lease>, token: FenceToken, now: Timestamp) -> Option<Refusal> {
    check_current(existing, token, now).err()
}

/// Extends the lease by `ttl` from `now`, only for the live current holder.
pub fn renew(
    existing: Option<&Lease>,
    token: FenceToken,
    now: Timestamp,
    ttl: SignedDuration,
) -> Result<Lease, Refusal> {
    let mut lease = check_current(existing, token, now)?.clone();
    lease.renewed_at = now;
    lease.expires_at = now.checked_add(ttl).unwrap_or(now);
    Ok(lease)
}

/// Releases the lease, only for the holder of the current token (expired or not: releasing
/// an expired lease nobody took over is harmless and keeps the record tidy).
pub fn release(existing: Option<&Lease>, token: FenceToken) -> Result<Lease, Refusal> {
    let lease = existing.ok_or(Refusal::NoLease)?;
    if lease.token != token {
        return Err(Refusal::StaleToken {
            presented: token,
            current: lease.token,
        });
    }
    let mut released = lease.clone();
    released.released = true;
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }
    const TTL: SignedDuration = SignedDuration::from_secs(600);

    fn grant(existing: Option<&Lease>, holder: &str, now: Timestamp) -> Acquire {
        acquire(
            existing,
            &"p".into(),
            Partition::parse("2024-03-01").unwrap(),
            holder,
            now,
            TTL,
        )
    }

    #[test]
    fn a_run_is_abandoned_once_its_lease_stops_covering_it() {
        let Acquire::Granted(a) = grant(None, "a", t(0)) else {
            panic!()
        };
        assert_eq!(
            abandoned(Some(&a), a.token, t(599)),
            None,
            "live: still running"
        );
        assert!(matches!(
            abandoned(Some(&a), a.token, t(600)),
            Some(Refusal::Expired { .. })
        ));
        let Acquire::Granted(b) = grant(Some(&a), "b", t(601)) else {
            panic!()
        };
        assert!(matches!(
            abandoned(Some(&b), a.token, t(602)),
            Some(Refusal::StaleToken { .. })
        ));
        let released = release(Some(&b), b.token).unwrap();
        assert!(abandoned(Some(&released), b.token, t(603)).is_some());
        assert_eq!(abandoned(None, a.token, t(0)), Some(Refusal::NoLease));
    }

    #[test]
    fn a_live_lease_is_not_granted_twice() {
        let Acquire::Granted(a) = grant(None, "a", t(0)) else {
            panic!()
        };
        assert_eq!(a.token, FenceToken::new(1));
        assert!(matches!(grant(Some(&a), "b", t(10)), Acquire::Held(_)));
    }

    #[test]
    fn takeover_after_expiry_increments_the_token_and_fences_the_old_holder() {
        let Acquire::Granted(a) = grant(None, "a", t(0)) else {
            panic!()
        };
        // "a" pauses past its lease; "b" takes over.
        let Acquire::Granted(b) = grant(Some(&a), "b", t(601)) else {
            panic!()
        };
        assert_eq!(b.token, FenceToken::new(2));
        assert_eq!(
            check_current(Some(&b), a.token, t(602)),
            Err(Refusal::StaleToken {
                presented: a.token,
                current: b.token
            })
        );
        assert!(renew(Some(&b), a.token, t(602), TTL).is_err());
        assert!(
            release(Some(&b), a.token).is_err(),
            "a stale holder cannot release the new lease"
        );
        assert!(check_current(Some(&b), b.token, t(602)).is_ok());
    }

    #[test]
    fn an_expired_holder_cannot_write_even_without_takeover() {
        let Acquire::Granted(a) = grant(None, "a", t(0)) else {
            panic!()
        };
        assert!(matches!(
            check_current(Some(&a), a.token, t(600)),
            Err(Refusal::Expired { .. })
        ));
    }

    #[test]
    fn at_the_instant_of_expiry_the_old_holder_is_refused_and_a_new_one_is_granted() {
        // The two checks meet at one instant: when the holder's writes start being refused
        // (`check_current`), another worker can take over, so a date never sits with a
        // lease nobody may use.
        let Acquire::Granted(a) = grant(None, "a", t(0)) else {
            panic!()
        };
        assert!(a.is_live(t(599)));
        assert!(!a.is_live(t(600)));
        assert!(matches!(
            check_current(Some(&a), a.token, t(600)),
            Err(Refusal::Expired { .. })
        ));
        let Acquire::Granted(b) = grant(Some(&a), "b", t(600)) else {
            panic!("the expired lease must be granted to the next worker")
        };
        assert_eq!(b.token, FenceToken::new(2));
    }

    #[test]
    fn renewal_extends_from_now_and_release_frees() {
        let Acquire::Granted(a) = grant(None, "a", t(0)) else {
            panic!()
        };
        assert_eq!(a.renew_due_at(), t(200));
        let r = renew(Some(&a), a.token, t(300), TTL).unwrap();
        assert_eq!(r.expires_at, t(900));
        let rel = release(Some(&r), r.token).unwrap();
        let Acquire::Granted(c) = grant(Some(&rel), "c", t(301)) else {
            panic!()
        };
        assert_eq!(c.token, FenceToken::new(2));
    }
}
