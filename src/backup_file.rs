//! Backup files: reading and checking them, whatever release wrote them.
//!
//! A backup is the snapshot format (`MINSNAP2`: checked blocks of records, see
//! `minion_storage::snapshot`), streamed and never whole in memory. Files written by releases
//! before the record store (format 1: one CRC frame holding the whole state image) are still read:
//! they decode into the same records (`minion_engine::legacy`).

use std::path::Path;

use minion_engine::legacy::{LegacyImage, LegacyImageV1};
use minion_engine::{Kind, Meta, Record};
use minion_storage::snapshot::SnapshotReader;
use minion_storage::vfs::{RealFs, SharedVfs};
use minion_storage::{codec, frame};
use serde::Deserialize;

/// The body of a format-1 backup file (inside one frame).
#[derive(Deserialize)]
struct LegacyBackup {
    format: u32,
    cluster_id: String,
    node_id: u64,
    applied_index: u64,
    taken_ms: u64,
    image: LegacyImage,
}

#[derive(Deserialize)]
struct LegacyBackupV1 {
    format: u32,
    cluster_id: String,
    node_id: u64,
    applied_index: u64,
    taken_ms: u64,
    image: LegacyImageV1,
}

/// What a backup file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `records` (this release's format) or `image` (format 1).
    pub format: &'static str,
    pub applied_index: Option<u64>,
    pub origin: String,
    pub taken_ms: u64,
    pub records: u64,
    pub tasks: u64,
    pub agents: u64,
}

const MAGIC: &[u8] = b"MINSNAP2";

fn is_stream(path: &Path) -> Result<bool, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = [0u8; 8];
    let n = f.read(&mut head).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(n == 8 && head == MAGIC)
}

fn legacy(path: &Path) -> Result<(Summary, Vec<Record>, Meta), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (origin, applied, taken, image) = match frame::decode::<LegacyBackup>(&bytes) {
        Ok(b) if b.format == 1 => {
            (format!("cluster {} node {}", b.cluster_id, b.node_id), b.applied_index, b.taken_ms, b.image)
        }
        Ok(b) => return Err(format!("not a Minion backup file: format {} is unknown", b.format)),
        Err(current) => match frame::decode::<LegacyBackupV1>(&bytes) {
            Ok(b) if b.format == 1 => {
                (format!("cluster {} node {}", b.cluster_id, b.node_id), b.applied_index, b.taken_ms, b.image.into())
            }
            _ => return Err(format!("not a Minion backup file: {current}")),
        },
    };
    let (records, meta) = image.into_records();
    let summary = Summary {
        format: "image",
        applied_index: Some(applied),
        origin,
        taken_ms: taken,
        records: records.len() as u64,
        tasks: records.iter().filter(|r| matches!(r, Record::Task(_))).count() as u64,
        agents: records.iter().filter(|r| matches!(r, Record::Agent(_))).count() as u64,
    };
    Ok((summary, records, meta))
}

/// Read the whole file, checking every block and record. Blocking.
pub fn inspect(path: &Path) -> Result<Summary, String> {
    if !is_stream(path)? {
        return legacy(path).map(|(s, _, _)| s);
    }
    let vfs: SharedVfs = RealFs::shared();
    let mut r = SnapshotReader::open(&vfs, path).map_err(|e| format!("not a Minion backup file: {e}"))?;
    let h = r.header().clone();
    let mut s = Summary {
        format: "records",
        applied_index: h.last_index,
        origin: h.origin,
        taken_ms: h.taken_ms,
        ..Summary::default()
    };
    let mut meta = false;
    while let Some(chunk) = r.next_chunk().map_err(|e| format!("not a Minion backup file: {e}"))? {
        for (k, v) in &chunk {
            let rec = codec::decode(k, v).map_err(|e| format!("not a Minion backup file: a damaged record: {e}"))?;
            match rec.key().kind() {
                Kind::Live | Kind::Done => s.tasks += 1,
                Kind::Agent => s.agents += 1,
                Kind::Meta => meta = true,
                _ => {}
            }
            s.records += 1;
        }
    }
    if !meta {
        return Err("not a Minion backup file: it holds no engine counters (meta record)".into());
    }
    Ok(s)
}

/// Hand the records to `each` in batches of about `batch_bytes`; returns the backup's counters.
/// The meta record is not among the records. Blocking.
pub fn records(
    path: &Path,
    batch_bytes: usize,
    mut each: impl FnMut(Vec<Record>) -> Result<(), String>,
) -> Result<Meta, String> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut meta = None;
    let mut push = |r: Record, batch: &mut Vec<Record>, bytes: &mut usize| -> Result<(), String> {
        if let Record::Meta(m) = r {
            meta = Some(m);
            return Ok(());
        }
        *bytes += r.approx_bytes();
        batch.push(r);
        if *bytes >= batch_bytes || batch.len() >= minion_engine::state::RESTORE_RECORDS_MAX {
            each(std::mem::take(batch))?;
            *bytes = 0;
        }
        Ok(())
    };
    if is_stream(path)? {
        let vfs: SharedVfs = RealFs::shared();
        let mut r = SnapshotReader::open(&vfs, path).map_err(|e| e.to_string())?;
        while let Some(chunk) = r.next_chunk().map_err(|e| e.to_string())? {
            for (k, v) in chunk {
                push(codec::decode(&k, &v).map_err(|e| e.to_string())?, &mut batch, &mut bytes)?;
            }
        }
    } else {
        let (_, records, m) = legacy(path)?;
        push(Record::Meta(m), &mut batch, &mut bytes)?;
        for r in records {
            push(r, &mut batch, &mut bytes)?;
        }
    }
    if !batch.is_empty() {
        each(batch)?;
    }
    meta.ok_or_else(|| "the backup holds no engine counters (meta record)".to_string())
}
