//! baton-reference: the reference NBA pipeline built into baton.
//!
//! [`generate`] makes Phase 2 raw tables for a range of dates from a seed (deterministic:
//! a date's data depends only on the seed and the date). [`compute`] runs one of the five
//! Phase 3 processors or the Phase 4 `player_daily_cache` over input rows: pure functions
//! from rows to rows, with real aggregates (possessions, ratings, true shooting, usage).
//!
//! Invariant: no I/O here; the runner loads the inputs and writes the outputs.
#![deny(missing_docs)]

mod generator;
mod processors;
mod rows;

pub use generator::{RawData, Season, TEAMS, generate};
pub use processors::{compute, is_builtin};
pub use rows::{RowExt, obj};
