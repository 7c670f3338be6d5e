//! xtask: repository checks that run as `cargo test` (see `tests/tidy.rs`).
