//! The external processor's JSON Lines reader: any output gives rows or an error naming a
//! line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(e) = baton_runner::parse_json_lines(bytes) {
        assert!(
            e.starts_with("stdout line") || e.starts_with("reading stdout line") || e.starts_with("stdout passed"),
            "{e}"
        );
    }
});
