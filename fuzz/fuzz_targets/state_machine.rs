//! See `minion_fuzzing::state_machine`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| minion_fuzzing::state_machine(data));
