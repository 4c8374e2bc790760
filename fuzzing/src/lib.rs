//! Fuzz targets as plain functions of bytes. Each must never panic on any input; each checks
//! what must hold whatever the input:
//!
//! - [`decode_frames`]: every decoder of stored or received bytes (log entries, raft messages,
//!   snapshots, task records) either decodes or returns an error, and what decodes re-encodes to
//!   the same value;
//! - [`http_request`]: a request body (or query) through the real router of a real single node
//!   never gets a 5xx other than 503, and the engine's invariants hold after it;
//! - [`state_machine`]: a command sequence decoded from the bytes, with restarts (the state
//!   through its snapshot image and back), keeps the engine's invariants after every command.
//!
//! `fuzz/` wraps them for cargo-fuzz (coverage-guided, nightly); `tests/corpus.rs` runs them on
//! stable over the checked-in seed corpora and a fixed number of generated inputs.

pub mod http;
pub mod state_machine;

use minion_engine::{Request, StateImage, Task};
use minion_raft::Entry;
use minion_storage::frame;

pub use http::http_request;
pub use state_machine::state_machine;

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = frame::decode::<T>(data) {
        let again = frame::encode(&v).expect("a decoded value re-encodes");
        assert_eq!(frame::decode::<T>(&again).expect("re-decodes"), v);
    }
}

/// Decoders of untrusted bytes: log entries (with the commands in them), raft messages as peers
/// send them, task records, snapshot images.
pub fn decode_frames(data: &[u8]) {
    roundtrip::<Request>(data);
    roundtrip::<Task>(data);
    roundtrip::<StateImage>(data);
    // Snapshot images of either layout: what decodes re-encodes in the current one and reads back.
    if let Ok(image) = frame::decode_image(data) {
        let again = frame::encode(&image).expect("an image re-encodes");
        assert_eq!(frame::decode_image(&again).expect("re-decodes"), image);
    }
    // Types without PartialEq: decoding must not panic, and must re-encode.
    if let Ok(e) = frame::decode::<Entry>(data) {
        frame::encode(&e).expect("an entry re-encodes");
    }
    if let Ok(m) = frame::decode::<openraft_msgs::Append>(data) {
        frame::encode(&m).expect("an append re-encodes");
    }
    if let Ok(m) = frame::decode::<openraft_msgs::Vote>(data) {
        frame::encode(&m).expect("a vote re-encodes");
    }
    if let Ok(m) = frame::decode::<openraft_msgs::Snapshot>(data) {
        frame::encode(&m).expect("a snapshot chunk re-encodes");
    }
}

/// The peer messages `minion_raft::peer` decodes.
mod openraft_msgs {
    pub type Append = openraft::raft::AppendEntriesRequest<minion_raft::TypeConfig>;
    pub type Vote = openraft::raft::VoteRequest<minion_raft::NodeId>;
    pub type Snapshot = openraft::raft::InstallSnapshotRequest<minion_raft::TypeConfig>;
}
