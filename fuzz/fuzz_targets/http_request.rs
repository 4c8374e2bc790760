//! See `minion_fuzzing::http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| minion_fuzzing::http_request(data));
