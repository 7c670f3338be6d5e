//! The config parser and validator: any text gives a pipeline or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = baton_core::config::Pipeline::from_toml(text);
    }
});
