//! baton-core: the pure domain of baton.
//!
//! It owns the model (partitions, processors, gates, completions, leases, fences), the
//! pipeline config and its validation, the orchestrator step, the gate trigger policy,
//! the lease rules and primary-key dedup.
//!
//! Invariant: nothing here performs I/O, spawns a thread, reads the system time outside
//! [`clock::SystemClock`], or depends on tokio or a database driver. Every rule takes
//! `now` (or a [`clock::Clock`]) and returns data; adapters carry out the effects.
#![deny(missing_docs)]

pub mod alert;
pub mod audit;
pub mod clock;
pub mod completion;
pub mod config;
pub mod cron;
pub mod dead_letter;
pub mod dedup;
pub mod digest;
pub mod explain;
pub mod freshness;
pub mod gate;
pub mod health;
pub mod heartbeat;
pub mod ids;
pub mod landing;
pub mod lease;
pub mod message;
pub mod model;
pub mod names;
pub mod pacing;
pub mod push;
pub mod quality;
pub mod reconcile;
pub mod retention;
pub mod retry;
pub mod rng;
pub mod schedule;

pub use clock::{Clock, ManualClock, SystemClock};
pub use completion::{Document, Effect, Entry, Outcome, StepOutput, Trigger};
pub use config::Pipeline;
pub use message::CompletionMessage;
pub use model::{CompletionStatus, FenceToken, GateId, Partition, ProcessorName, Row, RunId};
