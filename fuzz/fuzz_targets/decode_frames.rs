//! Arbitrary bytes through every decoder of on-disk records: a frame must decode or report an
//! error, never panic, and whatever decodes must re-encode to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minion_engine::{Request, StateImage, Task};
use minion_storage::frame;

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = frame::decode::<T>(data) {
        let again = frame::encode(&v).expect("a decoded value re-encodes");
        assert_eq!(frame::decode::<T>(&again).expect("re-decodes"), v);
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<Request>(data);
    roundtrip::<Task>(data);
    roundtrip::<StateImage>(data);
});
