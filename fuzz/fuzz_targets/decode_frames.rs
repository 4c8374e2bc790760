//! See `minion_fuzzing::decode_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| minion_fuzzing::decode_frames(data));
