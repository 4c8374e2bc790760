//! Fuzz targets as plain functions of bytes. Each must never panic on any input; each checks
//! what must hold whatever the input:
//!
//! - [`decode_frames`]: every decoder of stored or received bytes (log entries and WAL records,
//!   raft messages and peers' answers, records and their keys, snapshot and backup files,
//!   old-format state images, the checkpoint, vote and applied-marker files, state blocks, a log
//!   directory whose segment file is the input, a Kafka or Redis record as ingest maps it), on
//!   the raw input and with its checksums made right ([`seal`]), either decodes or returns an
//!   error, and what decodes re-encodes to the same value;
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
pub mod seal;
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

/// Decoders of untrusted bytes, each on the raw input and on the input with its checksums made
/// right ([`seal`]).
pub fn decode_frames(data: &[u8]) {
    let sealed = seal::frame(data);
    for d in [data, sealed.as_slice()] {
        framed(d);
    }
    stored_record(data);
    for d in [data.to_vec(), seal::wal_record(data)] {
        if let Ok((pos, payload)) = wal::decode_record(&d) {
            assert_eq!(wal::encode_record(pos, &payload), d, "a WAL record re-encodes to the same bytes");
        }
    }
    for d in [data.to_vec(), seal::snapshot(data)] {
        snapshot_file(&d);
    }
    // A log entry's payload and snapshot metadata are postcard inside checked containers.
    if let Ok(e) = postcard::from_bytes::<Entry>(data) {
        postcard::to_allocvec(&e).expect("a log payload re-encodes");
    }
    if let Ok(m) = postcard::from_bytes::<openraft_msgs::SnapshotMeta>(data) {
        let once = postcard::to_allocvec(&m).expect("snapshot metadata re-encodes");
        let back: openraft_msgs::SnapshotMeta = postcard::from_bytes(&once).expect("re-decodes");
        assert_eq!(postcard::to_allocvec(&back).expect("re-encodes"), once);
    }
    for d in [data.to_vec(), seal::wal_segment(data)] {
        wal_directory(&d);
    }
    ingest_record(data);
}

/// Everything that reads one CRC frame: values, raft messages and answers, the small files a
/// node reads at start, a state block (the same layout).
fn framed(data: &[u8]) {
    roundtrip::<Request>(data);
    roundtrip::<Task>(data);
    roundtrip::<TaskRecord>(data);
    roundtrip::<Record>(data);
    roundtrip::<LegacyImage>(data);
    roundtrip::<LegacyImageV1>(data);
    stable::<Entry>(data);
    stable::<openraft_msgs::Append>(data);
    stable::<openraft_msgs::Vote>(data);
    stable::<openraft_msgs::Snapshot>(data);
    stable::<Result<openraft_msgs::AppendAnswer, openraft_msgs::Refusal>>(data);
    stable::<Result<openraft_msgs::VoteAnswer, openraft_msgs::Refusal>>(data);
    stable::<Result<openraft_msgs::SnapshotAnswer, openraft_msgs::SnapshotRefusal>>(data);
    roundtrip::<minion_storage::checkpoint::Checkpoint>(data);
    roundtrip::<minion_storage::state_store::AppliedMarker>(data);
    if let Ok(m) = frame::decode::<minion_storage::state_store::AppliedMarker>(data) {
        let _ = minion_raft::state_machine::Applied::from_marker(&m);
    }
    // The vote file: a frame around raft's postcard encoding.
    if let Ok(inner) = frame::decode::<Vec<u8>>(data) {
        if let Ok(v) = postcard::from_bytes::<openraft::Vote<minion_raft::NodeId>>(&inner) {
            let again = postcard::to_allocvec(&v).expect("a vote re-encodes");
            assert_eq!(postcard::from_bytes::<openraft::Vote<minion_raft::NodeId>>(&again).expect("re-decodes"), v);
        }
    }
    if let Ok(entries) = minion_storage::block::decode(data) {
        assert_eq!(minion_storage::block::encode(&entries), data, "a block re-encodes to the same bytes");
        for (k, v) in entries {
            let _ = codec::decode(k, v);
        }
    }
}

/// A stored record: the first byte says where the key ends; the value raw and sealed.
fn stored_record(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else { return };
    let (k, v) = rest.split_at((n as usize).min(rest.len()));
    for v in [v.to_vec(), seal::frame(v)] {
        if let Ok(r) = codec::decode(k, &v) {
            let (k2, v2) = codec::encode(&r).expect("a decoded record re-encodes");
            assert_eq!(k2, k, "a record's key re-encodes to the same bytes");
            assert_eq!(codec::decode(&k2, &v2).expect("re-decodes"), r);
        }
    }
    if let Ok(key) = codec::decode_key(k) {
        assert_eq!(codec::encode_key(&key), k, "a key re-encodes to the same bytes");
    }
}

/// A snapshot or backup file, read block by block.
fn snapshot_file(data: &[u8]) {
    let file = Box::new(mem_file::MemFile(data.to_vec()));
    if let Ok(mut r) = SnapshotReader::from_file(std::path::Path::new("fuzz"), file) {
        while let Ok(Some(chunk)) = r.next_chunk() {
            for (k, v) in chunk {
                let _ = codec::decode(&k, &v);
            }
        }
    }
}

/// A Kafka or Redis Streams record as ingest maps it: the first byte picks the format (and
/// whether the record has a value), `name=value` lines up to the first NUL are its attributes
/// (headers, stream fields), the rest is its value. It becomes a task the API reads back as
/// sent, or a rejection with a reason keyed by the record's position.
fn ingest_record(data: &[u8]) {
    use minion_adapters::ingest::{map_record, Format, Mapped, Mapping, Record as SourceRecord};
    let Some((&b, rest)) = data.split_first() else { return };
    let (attrs, value) = match rest.iter().position(|&c| c == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let attrs = attrs
        .split(|&c| c == b'\n')
        .filter_map(|line| {
            let i = line.iter().position(|&c| c == b'=')?;
            Some((String::from_utf8_lossy(&line[..i]).into_owned(), line[i + 1..].to_vec()))
        })
        .collect();
    let mut mapping = Mapping::new("fuzz");
    mapping.format = match b & 3 {
        0 => Format::Auto,
        1 => Format::Envelope,
        2 => Format::Json,
        _ => Format::Raw,
    };
    mapping.max_record_bytes = 4_096;
    let rec = SourceRecord { position: "fuzz@1".into(), value: (b & 4 == 0).then(|| value.to_vec()), attrs };
    match map_record(&rec, &mapping) {
        Mapped::Task(task, position) => {
            assert_eq!(position, rec.position);
            let wire = serde_json::to_vec(&task).expect("a mapped task serializes");
            let back: minion_client::wire::TaskIn =
                serde_json::from_slice(&wire).expect("the API reads what ingest sends");
            let again = serde_json::to_vec(&back).expect("re-serializes");
            assert_eq!(as_read(&again), as_read(&wire), "the task survives the wire");
        }
        Mapped::Rejected(r) => {
            assert!(!r.reason.is_empty(), "a rejection says why");
            assert_eq!(r.idempotency_key.as_deref(), Some(rec.position.as_str()), "a rejection is keyed by position");
            serde_json::to_vec(&r).expect("a rejection serializes");
        }
    }
}

/// A task as the API understands it: an absent payload and a JSON `null` one are the same task
/// (the wire type reads `"payload": null` as absent). Found by fuzzing: a record whose value is
/// `null` maps to `"payload": null`, which reads back as no payload (seed `ingest-null`).
fn as_read(wire: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(wire).expect("JSON");
    if let Some(o) = v.as_object_mut() {
        if o.get("payload").is_some_and(serde_json::Value::is_null) {
            o.remove("payload");
        }
    }
    v
}

/// Types without `PartialEq`: what decodes re-encodes, and the re-encoding is a fixed point.
fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(v) = frame::decode::<T>(data) {
        let once = frame::encode(&v).expect("a decoded value re-encodes");
        let twice = frame::encode(&frame::decode::<T>(&once).expect("re-decodes")).expect("re-encodes");
        assert_eq!(once, twice, "re-encoding is stable");
    }
}

/// Open a log directory holding `data` as its one segment: opening either fails with an error or
/// keeps a prefix of whole records (cutting a torn tail), every entry it kept reads back, and a
/// second open finds nothing more to repair.
fn wal_directory(data: &[u8]) {
    use minion_storage::vfs::{OpenMode, SharedVfs};
    use minion_storage::wal::{Wal, WalOptions};
    let fs = minion_storage::sim::SimFs::with_dirs(&["/w"]);
    let vfs: SharedVfs = std::sync::Arc::new(fs);
    let dir = std::path::Path::new("/w/log");
    vfs.create_dir_all(dir).expect("mkdir");
    let file = vfs.open(&dir.join(minion_storage::wal::segment_name(0)), OpenMode::CreateNew).expect("create");
    file.write_all_at(data, 0).expect("write");
    drop(file);
    let opts = WalOptions { segment_bytes: 1 << 20, fsync: true };
    let Ok((wal, _)) = Wal::open(vfs.clone(), dir, opts, None) else { return };
    let reader = wal.reader();
    let (first, next) = (reader.first_index(), wal.next_index());
    for index in first..next {
        let (pos, _) = reader.read(index).expect("a kept entry reads").expect("a kept entry is there");
        assert_eq!(pos.index, index, "entries are at their own index");
    }
    let last = reader.last_pos();
    drop((reader, wal));
    let (wal, report) = Wal::open(vfs, dir, opts, None).expect("what opened once opens again");
    assert_eq!(report.torn_bytes, 0, "the first open left nothing to cut");
    let reader = wal.reader();
    assert_eq!((reader.first_index(), wal.next_index(), reader.last_pos()), (first, next, last));
}

/// The peer messages `minion_raft::peer` decodes.
mod openraft_msgs {
    pub type Append = minion_raft::staging::WireAppend;
    pub type Vote = openraft::raft::VoteRequest<minion_raft::NodeId>;
    pub type Snapshot = openraft::raft::InstallSnapshotRequest<minion_raft::TypeConfig>;
    pub type AppendAnswer = openraft::raft::AppendEntriesResponse<minion_raft::NodeId>;
    pub type VoteAnswer = openraft::raft::VoteResponse<minion_raft::NodeId>;
    pub type SnapshotAnswer = openraft::raft::InstallSnapshotResponse<minion_raft::NodeId>;
    pub type Refusal = openraft::error::RaftError<minion_raft::NodeId>;
    pub type SnapshotRefusal = openraft::error::RaftError<minion_raft::NodeId, openraft::error::InstallSnapshotError>;
    pub type SnapshotMeta = openraft::SnapshotMeta<minion_raft::NodeId, minion_raft::Node>;
}
