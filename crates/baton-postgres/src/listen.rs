//! The PostgreSQL side of the wake signal: the transactions that create work (an outbox
//! row, a landing, an owed run) send `NOTIFY baton_work` (delivered at their commit, one
//! per transaction), and [`listen`] keeps one dedicated connection `LISTEN`ing that raises
//! a [`Signal`] for each. A lost connection is reconnected with backoff, and the signal is
//! raised after each reconnect, since notifications sent meanwhile were lost.
//!
//! Idle, the thread blocks reading its socket: no CPU.

use baton_core::clock::{Clock, SystemClock};
use baton_ports::wake::{Signal, Source};
use jiff::SignedDuration;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::{Arc, Weak};

/// The channel every baton process notifies and `serve` listens on.
pub const CHANNEL: &str = "baton_work";
/// What raised the signal: a notification (or a reconnect) from PostgreSQL.
pub const POSTGRES: Source = 4;

/// Starts a thread that raises `signal` for every notification on [`CHANNEL`] of the
/// database at `url`; it connects first, so a bad URL fails here. The thread ends when the
/// signal is dropped (at its next notification or reconnect).
pub fn listen(url: &str, signal: &Arc<Signal>) -> baton_ports::Result<()> {
    let client = connect(url)?;
    let (url, signal) = (url.to_owned(), Arc::downgrade(signal));
    std::thread::Builder::new()
        .name("baton-pg-listen".into())
        .spawn(move || run(&url, client, &signal))
        .map(|_| ())
        .map_err(|e| baton_ports::Error::Permanent(format!("cannot start the LISTEN thread: {e}")))
}

fn connect(url: &str) -> baton_ports::Result<postgres::Client> {
    let mut client = crate::pool::connect(url)?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| crate::pg_err(&e))?;
    Ok(client)
}

fn run(url: &str, mut client: postgres::Client, signal: &Weak<Signal>) {
    let mut failures = 0u32;
    loop {
        let error = {
            let mut notifications = client.notifications();
            let mut it = notifications.blocking_iter();
            loop {
                match it.next() {
                    Ok(Some(_)) => match signal.upgrade() {
                        Some(s) => s.raise(POSTGRES),
                        None => return,
                    },
                    Ok(None) => break "the connection closed".to_owned(),
                    Err(e) => break e.to_string(),
                }
            }
        };
        loop {
            failures += 1;
            tracing::warn!(error = %error, failures, "LISTEN connection lost; reconnecting");
            let pause = SignedDuration::from_millis((100i64 << failures.min(6)).min(5_000));
            SystemClock.sleep(pause);
            if let Ok(c) = connect(url) {
                client = c;
                failures = 0;
                break;
            }
        }
        match signal.upgrade() {
            // Whatever was notified while it was away: one round finds it.
            Some(s) => s.raise(POSTGRES),
            None => return,
        }
    }
}
