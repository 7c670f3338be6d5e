//! The completion message parser, both formats (baton's and the original pipeline's) and
//! the Pub/Sub push envelope around them: any bytes give a message or a rejection, never a
//! panic; a rejection's reason stays short however long the input; a parsed message
//! serialises and parses back to itself.
#![no_main]

use baton_core::config::Pipeline;
use baton_core::message::CompletionMessage;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| Pipeline::reference().expect("invariant: the reference config is valid"))
}

fn check(bytes: &[u8]) {
    match CompletionMessage::parse(bytes, pipeline()) {
        Ok(m) => {
            let again = CompletionMessage::parse(m.to_json().to_string().as_bytes(), pipeline())
                .expect("a parsed message parses again");
            assert_eq!(again.message_id, m.message_id);
            assert_eq!(again.partition, m.partition);
        }
        Err(rejection) => {
            let letter = baton_core::dead_letter::clip(
                &rejection.0,
                baton_core::dead_letter::REASON_CAP_BYTES,
            );
            assert!(letter.len() <= baton_core::dead_letter::REASON_CAP_BYTES + 64);
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    if let Ok(m) = baton_core::push::unwrap(bytes) {
        check(&m.data);
    }
});
