use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::segment;
use super::*;
use crate::sim::{Dice, Loss, SimFs};

const DIR: &str = "/data/wal";

fn pos(index: u64, term: u64) -> LogPos {
    LogPos { index, term, node: 1 }
}

fn open(fs: &SimFs, floor: Option<u64>, segment_bytes: u64) -> Result<(Wal, OpenReport)> {
    Wal::open(Arc::new(fs.clone()), Path::new(DIR), WalOptions { segment_bytes, fsync: true }, floor)
}

fn payload(index: u64, term: u64) -> Vec<u8> {
    format!("entry {index} of term {term} {}", "x".repeat((index % 7) as usize * 13)).into_bytes()
}

fn append(wal: &mut Wal, from: u64, to: u64, term: u64) {
    let data: Vec<(LogPos, Vec<u8>)> = (from..to).map(|i| (pos(i, term), payload(i, term))).collect();
    let refs: Vec<(LogPos, &[u8])> = data.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    wal.append(&refs).expect("append");
}

#[test]
fn appended_entries_read_back_across_segments_and_reopen() {
    let fs = SimFs::with_dirs(&["/data"]);
    let (mut wal, _) = open(&fs, None, 512).expect("open");
    append(&mut wal, 0, 40, 1);
    wal.sync().expect("sync");
    assert!(wal.segment_count() > 3, "small segments roll over");
    let r = wal.reader();
    assert_eq!(r.read(17).expect("read").map(|e| e.1), Some(payload(17, 1)));
    let all = r.read_range(0, 100).expect("range");
    assert_eq!(all.len(), 40);
    assert!(all.iter().enumerate().all(|(i, (p, b))| p.index == i as u64 && *b == payload(i as u64, 1)));
    drop(wal);
    let (wal, report) = open(&fs, Some(39), 512).expect("reopen");
    assert_eq!(report.torn_bytes, 0);
    assert_eq!(wal.reader().last_pos(), Some(pos(39, 1)));
    assert_eq!(wal.reader().read_range(5, 9).expect("range").len(), 4);
}

#[test]
fn non_contiguous_append_is_refused() {
    let fs = SimFs::with_dirs(&["/data"]);
    let (mut wal, _) = open(&fs, None, 1 << 20).expect("open");
    append(&mut wal, 0, 3, 1);
    let p = payload(5, 1);
    let err = wal.append(&[(pos(5, 1), &p)]).expect_err("gap");
    assert!(err.to_string().contains("entry 3 is next"), "{err}");
}

#[test]
fn a_torn_tail_is_cut_and_damage_below_the_floor_is_refused() {
    let fs = SimFs::with_dirs(&["/data"]);
    let (mut wal, _) = open(&fs, None, 1 << 20).expect("open");
    append(&mut wal, 0, 10, 1);
    wal.sync().expect("sync");
    drop(wal);
    let seg = Path::new(DIR).join(segment_name(0));
    // (segment 0 is the first one created)
    let len = fs.contents(&seg).expect("segment").len() as u64;
    // Damage the last record: above the floor it is a torn tail, cut; the log ends at entry 8.
    assert!(fs.corrupt(&seg, len - 3, b"\xff\xff"));
    let damaged = fs.after_power_loss(Loss::Unsynced, &mut |_| 0);
    let err = open(&damaged, Some(9), 1 << 20).err().expect("entry 9 was recorded durable");
    assert!(err.to_string().contains("entry 9 is damaged"), "{err}");
    let (wal, report) = open(&damaged, Some(8), 1 << 20).expect("floor below the damage");
    assert!(report.torn_bytes > 0);
    assert_eq!(wal.reader().last_pos(), Some(pos(8, 1)));
    // Damage in a segment that is not the last is never a torn tail.
    let fs = SimFs::with_dirs(&["/data"]);
    let (mut wal, _) = open(&fs, None, 300).expect("open");
    append(&mut wal, 0, 20, 1);
    wal.sync().expect("sync");
    drop(wal);
    let first = Path::new(DIR).join(segment_name(0));
    assert!(fs.corrupt(&first, HEADER_BYTES + 9, b"\xff"));
    let err = open(&fs, None, 300).err().expect("corruption");
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
}

#[test]
fn truncate_then_append_overwrites_the_tail_durably() {
    let fs = SimFs::with_dirs(&["/data"]);
    let (mut wal, _) = open(&fs, None, 400).expect("open");
    append(&mut wal, 0, 30, 1);
    wal.sync().expect("sync");
    wal.truncate(12).expect("truncate");
    assert_eq!(wal.reader().last_pos(), Some(pos(11, 1)));
    assert_eq!(wal.reader().read(12).expect("read"), None);
    append(&mut wal, 12, 15, 2);
    wal.sync().expect("sync");
    drop(wal);
    let after = fs.after_power_loss(Loss::Unsynced, &mut |_| 0);
    let (wal, _) = open(&after, Some(14), 400).expect("reopen");
    let r = wal.reader();
    assert_eq!(r.last_pos(), Some(pos(14, 2)));
    assert_eq!(r.read(12).expect("read").map(|e| e.1), Some(payload(12, 2)));
    assert_eq!(r.read(11).expect("read").map(|e| e.1), Some(payload(11, 1)));
}

#[test]
fn purge_removes_whole_segments_and_a_purge_past_the_end_resets() {
    let fs = SimFs::with_dirs(&["/data"]);
    let (mut wal, _) = open(&fs, None, 300).expect("open");
    append(&mut wal, 0, 30, 1);
    wal.sync().expect("sync");
    let before = wal.segment_count();
    wal.purge(pos(15, 1)).expect("purge");
    assert!(wal.segment_count() < before);
    let r = wal.reader();
    let first = r.first_index();
    assert!(first > 0 && first <= 16, "first remaining entry {first}");
    assert_eq!(r.purged().map(|p| p.index), Some(first - 1));
    wal.purge(pos(100, 3)).expect("reset");
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(wal.next_index(), 101);
    append(&mut wal, 101, 103, 3);
    wal.sync().expect("sync");
    drop(wal);
    let after = fs.after_power_loss(Loss::Unsynced, &mut |_| 0);
    let (wal, _) = open(&after, Some(102), 300).expect("reopen");
    assert_eq!(wal.reader().purged(), Some(pos(100, 3)));
    assert_eq!(wal.reader().last_pos(), Some(pos(102, 3)));
}

#[derive(Clone, Debug)]
enum InFlight {
    None,
    Truncate(u64),
    Purge(LogPos),
}

/// The WAL alone under seeded power losses: random appends, syncs, truncations and purges until
/// the power goes out at a random operation; the reopened log must hold every entry a completed
/// sync, truncation or purge made durable, with its content, and nothing that was never written.
fn wal_power_loss_run(seed: u64) {
    let mut dice = Dice::new(seed, 0xD1B5_4A32_D192_ED03);
    let fs = SimFs::with_dirs(&["/data"]);
    let seg = [256u64, 700, 1 << 16][dice.below(3) as usize];
    let (mut wal, _) = open(&fs, None, seg).expect("open");
    // `written[i]` is the content last appended at i; `durable` the log as of the last completed
    // durable operation; `purged` the largest purge position completed.
    let mut written: BTreeMap<u64, (LogPos, Vec<u8>)> = BTreeMap::new();
    let mut durable: BTreeMap<u64, (LogPos, Vec<u8>)> = BTreeMap::new();
    let mut term = 1;
    let mut in_flight = InFlight::None;
    let mut purged_upto: Option<u64> = None;
    fs.crash_at(fs.ops() + dice.below(120));
    let mut next = 0u64;
    for _ in 0..200 {
        if fs.crashed() {
            break;
        }
        in_flight = InFlight::None;
        let debug = std::env::var("MINION_WAL_DEBUG").is_ok();
        let choice = dice.below(10);
        if debug {
            eprintln!("op {choice} next={next} ops={} written={:?}", fs.ops(), written.keys().collect::<Vec<_>>());
            eprintln!("   segments {:?}", wal.debug_segments());
        }
        let ok = match choice {
            0..=4 => {
                let n = 1 + dice.below(4);
                let data: Vec<(LogPos, Vec<u8>)> =
                    (next..next + n).map(|i| (pos(i, term), format!("{seed}-{i}-{term}").into_bytes())).collect();
                let refs: Vec<(LogPos, &[u8])> = data.iter().map(|(p, b)| (*p, b.as_slice())).collect();
                let r = wal.append(&refs);
                // Even a failed append may have written some records (not synced).
                for (p, b) in data {
                    written.insert(p.index, (p, b));
                }
                next += n;
                r.is_ok()
            }
            5..=7 => {
                let r = wal.sync();
                if r.is_ok() {
                    durable = written.clone();
                }
                r.is_ok()
            }
            8 if next > 0 => {
                // As raft does: never below what was purged.
                let floor = written.keys().next().copied().unwrap_or(0).max(purged_upto.map_or(0, |p| p + 1));
                let from = floor + dice.below(next + 1);
                if from >= next {
                    continue;
                }
                in_flight = InFlight::Truncate(from);
                let r = wal.truncate(from);
                if r.is_ok() {
                    written.retain(|i, _| *i < from);
                    durable = written.clone();
                    next = from;
                    term += 1;
                }
                r.is_ok()
            }
            _ => {
                let last = written.keys().next_back().copied();
                let upto = match last {
                    Some(l) if dice.below(4) > 0 => l.saturating_sub(dice.below(l + 1)),
                    Some(l) => l + 1 + dice.below(5),
                    None => dice.below(5),
                };
                let p = written.get(&upto).map(|e| e.0).unwrap_or(pos(upto, term));
                in_flight = InFlight::Purge(p);
                purged_upto = purged_upto.max(Some(upto));
                let r = wal.purge(p);
                if r.is_ok() && last.is_none_or(|l| upto > l) {
                    // A reset: the log restarts after the purge point.
                    written.clear();
                    durable.clear();
                    next = upto + 1;
                }
                r.is_ok()
            }
        };
        if !ok {
            break;
        }
    }
    fs.crash_now();
    drop(wal);
    let loss = [Loss::Unsynced, Loss::Prefix, Loss::Torn][dice.below(3) as usize];
    let after = fs.after_power_loss(loss, &mut |n| dice.below(n));
    // The floor: the durable log's last entry (what a checkpoint could have recorded).
    let floor = match in_flight {
        InFlight::Truncate(from) => {
            durable.keys().next_back().copied().map(|l| l.min(from)).and_then(|l| l.checked_sub(1))
        }
        _ => durable.keys().next_back().copied(),
    };
    if std::env::var("MINION_WAL_DEBUG").is_ok() {
        eprintln!(
            "crash: {loss:?} in flight {in_flight:?} floor {floor:?} durable {:?}",
            durable.keys().collect::<Vec<_>>()
        );
    }
    let (wal, _) = match open(&after, floor, seg) {
        Ok(w) => w,
        Err(e) => {
            let dir = Path::new(DIR);
            for name in crate::vfs::Vfs::read_dir(&after, dir).unwrap_or_default() {
                let bytes = after.contents(&dir.join(&name)).unwrap_or_default();
                eprintln!("{name}: {} bytes, header {:?}", bytes.len(), segment::Header::decode(&bytes));
            }
            panic!("seed {seed}: reopen failed: {e}")
        }
    };
    if std::env::var("MINION_WAL_DEBUG").is_ok() {
        let dir = Path::new(DIR);
        for name in crate::vfs::Vfs::read_dir(&after, dir).unwrap_or_default() {
            let bytes = after.contents(&dir.join(&name)).unwrap_or_default();
            eprintln!("{name}: {} bytes, header {:?}", bytes.len(), segment::Header::decode(&bytes));
        }
    }
    if std::env::var("MINION_WAL_DEBUG").is_ok() {
        let dir = Path::new(DIR);
        for name in crate::vfs::Vfs::read_dir(&after, dir).unwrap_or_default() {
            let bytes = after.contents(&dir.join(&name)).unwrap_or_default();
            eprintln!("{name}: {} bytes, header {:?}", bytes.len(), segment::Header::decode(&bytes));
        }
    }
    let r = wal.reader();
    let first = r.first_index();
    let last = r.last_pos().map(|p| p.index);
    let got: BTreeMap<u64, (LogPos, Vec<u8>)> = r
        .read_range(first, last.map(|l| l + 1).unwrap_or(first))
        .unwrap_or_else(|e| panic!("seed {seed}: read back: {e}"))
        .into_iter()
        .map(|(p, b)| (p.index, (p, b)))
        .collect();
    // Nothing after the largest purge point was purged.
    if let Some(lowest) = durable.keys().find(|i| purged_upto.is_none_or(|m| **i > m)) {
        assert!(first <= *lowest, "seed {seed}: entries from {first} on survive, but {lowest} was never purged");
    }
    // Every recovered entry is one that was written at its index.
    for (i, e) in &got {
        let known = written.get(i) == Some(e) || durable.get(i) == Some(e);
        assert!(known, "seed {seed}: entry {i} was never written with this content");
    }
    // Every durable entry at or after the first recovered index is there, unless an in-flight
    // truncation cut the log at or after its start, or an in-flight reset purged it.
    let cut = match in_flight {
        InFlight::Truncate(from) => got.keys().next_back().map(|l| l + 1).unwrap_or(first).max(from),
        InFlight::Purge(p) if durable.keys().next_back().is_none_or(|l| p.index > *l) && first > p.index => {
            return; // the reset happened: the old entries are purged, none is expected
        }
        _ => u64::MAX,
    };
    for (i, e) in durable.range(first..cut) {
        assert_eq!(got.get(i), Some(e), "seed {seed} ({loss:?}): durable entry {i} lost or changed");
    }
}

#[test]
fn wal_survives_seeded_power_losses() {
    let runs: u64 = std::env::var("MINION_WAL_CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    let base: u64 = std::env::var("MINION_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    for seed in base..base + runs {
        wal_power_loss_run(seed);
    }
}
