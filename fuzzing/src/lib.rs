//! Fuzz targets as plain functions of bytes. Each must never panic on any input; each checks
//! what must hold whatever the input:
//!
//! - [`decode_frames`]: every decoder of stored or received bytes (log entries and WAL records,
//!   raft messages, records and their keys, snapshot and backup files, old-format state images)
//!   either decodes or returns an error, and what decodes re-encodes to the same value;
//! - [`http_request`]: a request body (or query) through the real router of a real single node
//!   never gets a 5xx other than 503, and the engine's invariants hold after it;
//! - [`state_machine`]: a command sequence decoded from the bytes, with restarts (RAM rebuilt from
//!   the records, each sent through the codec) and restores, keeps every invariant after every
//!   command.
//!
//! `fuzz/` wraps them for cargo-fuzz (coverage-guided, nightly); `tests/corpus.rs` runs them on
//! stable over the checked-in seed corpora and a fixed number of generated inputs.

pub mod http;
pub mod mem_file;
pub mod state_machine;

use minion_engine::legacy::{LegacyImage, LegacyImageV1};
use minion_engine::{Record, Request, Task, TaskRecord};
use minion_raft::Entry;
use minion_storage::snapshot::SnapshotReader;
use minion_storage::{codec, frame, wal};

pub use http::http_request;
pub use state_machine::state_machine;

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = frame::decode::<T>(data) {
        let again = frame::encode(&v).expect("a decoded value re-encodes");
        assert_eq!(frame::decode::<T>(&again).expect("re-decodes"), v);
    }
}

/// Decoders of untrusted bytes.
pub fn decode_frames(data: &[u8]) {
    roundtrip::<Request>(data);
    roundtrip::<Task>(data);
    roundtrip::<TaskRecord>(data);
    roundtrip::<Record>(data);
    roundtrip::<LegacyImage>(data);
    roundtrip::<LegacyImageV1>(data);
    // A stored record: the first byte says where the key ends.
    if let Some((&n, rest)) = data.split_first() {
        let (k, v) = rest.split_at((n as usize).min(rest.len()));
        if let Ok(r) = codec::decode(k, v) {
            let (k2, v2) = codec::encode(&r).expect("a decoded record re-encodes");
            assert_eq!(k2, k, "a record's key re-encodes to the same bytes");
            assert_eq!(codec::decode(&k2, &v2).expect("re-decodes"), r);
        }
        if let Ok(key) = codec::decode_key(k) {
            assert_eq!(codec::encode_key(&key), k, "a key re-encodes to the same bytes");
        }
    }
    // A write-ahead log record.
    if let Ok((pos, payload)) = wal::decode_record(data) {
        assert_eq!(wal::encode_record(pos, &payload), data, "a WAL record re-encodes to the same bytes");
    }
    // A snapshot or backup file, read block by block.
    if let Ok(mut r) =
        SnapshotReader::from_file(std::path::Path::new("fuzz"), Box::new(mem_file::MemFile(data.to_vec())))
    {
        while let Ok(Some(chunk)) = r.next_chunk() {
            for (k, v) in chunk {
                let _ = codec::decode(&k, &v);
            }
        }
    }
    // Types without PartialEq: decoding must not panic, and must re-encode.
    if let Ok(e) = frame::decode::<Entry>(data) {
        frame::encode(&e).expect("an entry re-encodes");
    }
    if let Ok(e) = postcard::from_bytes::<Entry>(data) {
        postcard::to_allocvec(&e).expect("a log payload re-encodes");
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
    pub type Append = minion_raft::staging::WireAppend;
    pub type Vote = openraft::raft::VoteRequest<minion_raft::NodeId>;
    pub type Snapshot = openraft::raft::InstallSnapshotRequest<minion_raft::TypeConfig>;
}
