//! The embedded bus's consume: a group's batch taken, applied and acknowledged in one
//! transaction, since the bus and the store share the file.
//!
//! A group's position is its cursor (`bus_groups`): every message at or before it has been
//! taken. A message gets a per-message delivery record (`bus_deliveries`, with its attempts
//! and when it is visible again) only when it was taken and not acknowledged: the consumer
//! did not ack it, or the transaction that applied it failed. So the common batch costs one
//! read of the messages past the cursor, the store's own writes, one cursor update and one
//! commit, where `fetch` and `ack` cost a delivery row, a lease, a read and a delete per
//! message and three commits per batch.
//!
//! The batch is read before the transaction (the consumer measures quality checks against
//! the warehouse between reading and applying, through this same connection); the
//! transaction then checks that the cursor and the redeliveries it read are as they were,
//! so two processes consuming the same group never both apply a message: the second one
//! finds the cursor moved and takes nothing.

use crate::{SqliteBackend, SqliteTxn, map_err};
use baton_ports::consume::{ConsumeHandler, Consumed, Take, apply_sorted};
use baton_ports::stored::micros;
use baton_ports::{Delivery, Result};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

/// One message of a peeked batch, as taken.
#[derive(Debug, Clone, Copy)]
struct Taken {
    seq: i64,
    /// The delivery this is (1 for the first).
    attempt: u32,
    /// Past the cursor (no delivery record yet), or a redelivery of a record.
    fresh: bool,
}

/// A batch read, not yet taken.
struct Peeked {
    /// The group's cursor when it was read.
    cursor: i64,
    taken: Vec<Taken>,
    deliveries: Vec<Delivery>,
}

impl Peeked {
    /// The cursor once the batch is taken: the newest fresh message, or where it was.
    fn next_cursor(&self) -> i64 {
        (self.taken.iter().filter(|t| t.fresh).map(|t| t.seq)).fold(self.cursor, i64::max)
    }
}

fn cursor(conn: &Connection, take: &Take<'_>) -> Result<i64> {
    let cursor: Option<i64> = conn
        .prepare_cached("SELECT cursor FROM bus_groups WHERE topic = ?1 AND grp = ?2")
        .map_err(map_err)?
        .query_row(params![take.topic, take.group], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    Ok(cursor.unwrap_or(0))
}

/// Redeliveries due at `now` (their ack wait passed): (seq, attempts so far).
fn due(conn: &Connection, take: &Take<'_>, now: Timestamp) -> Result<Vec<(i64, i64)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, attempts FROM bus_deliveries
             WHERE topic = ?1 AND grp = ?2 AND visible_at <= ?3 ORDER BY seq LIMIT ?4",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![take.topic, take.group, micros(now), take.max as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(map_err)?;
    rows.collect::<std::result::Result<_, _>>().map_err(map_err)
}

/// Reads the group's next batch without taking it: redeliveries due and messages past the
/// cursor, oldest first, at most `take.max`.
fn peek(conn: &Connection, take: &Take<'_>, now: Timestamp) -> Result<Peeked> {
    let cursor = cursor(conn, take)?;
    let mut batch: Vec<(Taken, Delivery)> = Vec::new();
    let mut payload = conn
        .prepare_cached("SELECT message_id, payload FROM bus_messages WHERE seq = ?1")
        .map_err(map_err)?;
    for (seq, attempts) in due(conn, take, now)? {
        let (message_id, bytes): (String, Vec<u8>) = payload
            .query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?;
        let attempt = (attempts + 1) as u32;
        let delivery = Delivery {
            seq,
            message_id,
            payload: bytes,
            attempt,
        };
        batch.push((
            Taken {
                seq,
                attempt,
                fresh: false,
            },
            delivery,
        ));
    }
    // A rowid range past the cursor: `+topic` keeps the planner off the topic index, which
    // would scan every message of the topic.
    let mut fresh = conn
        .prepare_cached(
            "SELECT seq, message_id, payload FROM bus_messages
             WHERE +topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(map_err)?;
    let rows = fresh
        .query_map(params![take.topic, cursor, take.max as i64], |r| {
            let seq: i64 = r.get(0)?;
            let taken = Taken {
                seq,
                attempt: 1,
                fresh: true,
            };
            let delivery = Delivery {
                seq,
                message_id: r.get(1)?,
                payload: r.get(2)?,
                attempt: 1,
            };
            Ok((taken, delivery))
        })
        .map_err(map_err)?;
    for row in rows {
        batch.push(row.map_err(map_err)?);
    }
    batch.sort_by_key(|(t, _)| t.seq);
    batch.truncate(take.max);
    let (taken, deliveries) = batch.into_iter().unzip();
    Ok(Peeked {
        cursor,
        taken,
        deliveries,
    })
}

/// Whether the batch is still the group's to take: the cursor has not moved and every
/// redelivery is still due with the attempts read (no other consumer took any of it).
fn still_ours(conn: &Connection, take: &Take<'_>, peeked: &Peeked, now: Timestamp) -> Result<bool> {
    if cursor(conn, take)? != peeked.cursor {
        return Ok(false);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT attempts, visible_at FROM bus_deliveries WHERE topic = ?1 AND grp = ?2 AND seq = ?3",
        )
        .map_err(map_err)?;
    for t in peeked.taken.iter().filter(|t| !t.fresh) {
        let row: Option<(i64, i64)> = stmt
            .query_row(params![take.topic, take.group, t.seq], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(map_err)?;
        let unchanged = matches!(row, Some((attempts, visible_at))
            if attempts == i64::from(t.attempt) - 1 && visible_at <= micros(now));
        if !unchanged {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Takes the batch: acked redeliveries lose their record, unacked messages get (or keep)
/// one, visible again after the ack wait, and the cursor moves past the fresh messages.
fn settle(
    conn: &Connection,
    take: &Take<'_>,
    peeked: &Peeked,
    acked: &HashSet<i64>,
    now: Timestamp,
) -> Result<()> {
    let visible_again = micros(now.checked_add(take.settings.ack_wait).unwrap_or(now));
    let mut forget = conn
        .prepare_cached("DELETE FROM bus_deliveries WHERE topic = ?1 AND grp = ?2 AND seq = ?3")
        .map_err(map_err)?;
    let mut keep = conn
        .prepare_cached(
            "INSERT INTO bus_deliveries (topic, grp, seq, attempts, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (topic, grp, seq) DO UPDATE SET attempts = excluded.attempts, visible_at = excluded.visible_at",
        )
        .map_err(map_err)?;
    for t in &peeked.taken {
        match (acked.contains(&t.seq), t.fresh) {
            (true, true) => {}
            (true, false) => {
                forget
                    .execute(params![take.topic, take.group, t.seq])
                    .map_err(map_err)?;
            }
            (false, _) => {
                keep.execute(params![
                    take.topic,
                    take.group,
                    t.seq,
                    t.attempt,
                    visible_again
                ])
                .map_err(map_err)?;
            }
        }
    }
    let next = peeked.next_cursor();
    if next != peeked.cursor {
        conn.prepare_cached(
            "INSERT INTO bus_groups (topic, grp, cursor) VALUES (?1, ?2, ?3)
             ON CONFLICT (topic, grp) DO UPDATE SET cursor = excluded.cursor",
        )
        .map_err(map_err)?
        .execute(params![take.topic, take.group, next])
        .map_err(map_err)?;
    }
    Ok(())
}

impl SqliteBackend {
    /// The one-transaction consume from this backend's own bus (see the module's doc).
    pub(crate) fn consume_here(
        &self,
        take: &Take<'_>,
        handler: &mut dyn ConsumeHandler,
    ) -> Result<Consumed> {
        let now = self.now();
        let mut peeked = peek(&self.lock(), take, now)?;
        if peeked.taken.is_empty() {
            return Ok(Consumed::default());
        }
        let fetched = peeked.taken.len();
        let sorted = handler.sort(std::mem::take(&mut peeked.deliveries))?;
        let acked: HashSet<i64> = sorted.ack.iter().copied().collect();
        let applied = self.write_txn(|tx| {
            if !still_ours(tx, take, &peeked, now)? {
                return Ok(None);
            }
            let outcomes = apply_sorted(
                &mut SqliteTxn {
                    conn: tx,
                    now,
                    watch: &self.watch,
                },
                &sorted,
                handler,
            )?;
            settle(tx, take, &peeked, &acked, now)?;
            Ok(Some(outcomes))
        });
        match applied {
            Ok(Some(outcomes)) => Ok(Consumed {
                fetched,
                work: sorted.work,
                outcomes,
            }),
            // Another consumer took the batch first: nothing was applied here.
            Ok(None) => Ok(Consumed::default()),
            Err(e) => {
                // Rolled back: the batch is taken unacked (its attempts counted), so it comes
                // back after the ack wait, as a fetched batch that was never acked would.
                // If this fails too, nothing was taken: the batch is read again at once.
                let settled = self.write_txn(|tx| {
                    if still_ours(tx, take, &peeked, now)? {
                        settle(tx, take, &peeked, &HashSet::new(), now)?;
                    }
                    Ok(())
                });
                if let Err(again) = settled {
                    tracing::warn!(topic = take.topic, group = take.group, error = %again, "a failed batch could not be marked in flight");
                }
                Err(e)
            }
        }
    }
}
