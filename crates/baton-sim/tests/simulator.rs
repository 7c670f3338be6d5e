//! The simulator over many seeds, its canaries, and the in-memory backend's conformance.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_sim::mem::{Canary, MemBackend};
use baton_sim::{SimOptions, simulate, simulate_many};

/// Seeds CI runs; `BATON_SIM_SEEDS` runs more (a nightly run uses 100000).
fn seeds() -> u64 {
    std::env::var("BATON_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn memory_backend_conforms() {
    baton_conformance::exercise_state_store(|c| MemBackend::new(c));
    baton_conformance::exercise_warehouse(|c| MemBackend::new(c));
    baton_conformance::exercise_bus(|c| MemBackend::new(c), &|clock, d| clock.advance(d));
}

#[test]
fn guarantees_hold_across_seeds() {
    if let Err(v) = simulate_many(0, seeds(), 300, Canary::None) {
        panic!("{v}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = simulate(SimOptions::new(42)).expect("seed 42 passes");
    let b = simulate(SimOptions::new(42)).expect("seed 42 passes");
    assert_eq!(a, b);
    assert!(
        a.events.get("writes fenced").copied().unwrap_or(0)
            + a.events.get("duplicate messages").copied().unwrap_or(0)
            > 0,
        "faults were injected: {:?}",
        a.events
    );
}

#[test]
fn canary_a_counter_incremented_per_message_is_caught() {
    let v = simulate_many(0, seeds(), 300, Canary::CountPerMessage)
        .expect_err("the counter canary must be caught");
    assert_eq!(v.guarantee, "G1", "{v}");
    assert!(
        v.to_string().contains(&format!("--seed {}", v.seed)),
        "a violation prints its replay command: {v}"
    );
}

#[test]
fn canary_a_write_without_the_fence_is_caught() {
    let v = simulate_many(0, seeds(), 300, Canary::NoFence)
        .expect_err("the fence canary must be caught");
    assert!(v.guarantee == "G4" || v.guarantee == "G5", "{v}");
}
