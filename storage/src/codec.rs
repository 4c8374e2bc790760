//! The one encoder of records: keys as ordered bytes, values as CRC frames.
//!
//! A key is a kind byte, then its fields: numbers big-endian (so byte order is numeric order),
//! strings as their bytes, the parts of a `(queue, key)` pair joined by a NUL byte (queue names
//! cannot hold one), a task state as its index. Within a kind, byte order equals the order of
//! [`Key`]. A value is the record's body as postcard inside the [`frame`] (version, CRC-32), so a
//! flipped bit in a stored value, a snapshot or a restore stream is caught on read.

use minion_engine::legacy::{upgrade_v2, TaskRecordV1, TaskRecordV2};
use minion_engine::{
    widen_counts, Agent, AuditEntry, DedupEntry, DedupKey, Key, Kind, LimitRule, Meta, ProgressEvent, QueueConfig,
    Record, StateCounts, StateCounts8, StateCounts9, TaskRecord, TaskState, Token,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::frame::{self, FrameError};

/// The frame version of task records that carry a [`minion_engine::Flow`] without `ext` (read and
/// upgraded; version 1: [`TaskRecordV1`], read and upgraded).
pub const TASK_RECORD_V2: u8 = 2;
/// The frame version task records are written with: flows with `ext` (a concurrency key).
pub const TASK_RECORD_V3: u8 = 3;

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Meta => b'M',
        Kind::Live => b'L',
        Kind::Done => b'T',
        Kind::Payload => b'P',
        Kind::Progress => b'G',
        Kind::Dedup => b'D',
        Kind::DedupExpiry => b'E',
        Kind::Retention => b'X',
        Kind::Finished => b'F',
        Kind::Queue => b'Q',
        Kind::Counts => b'C',
        Kind::Agent => b'A',
        Kind::Token => b'K',
        Kind::Audit => b'U',
        Kind::TokenAgents => b'W',
        Kind::Limits => b'R',
        Kind::Rate => b'B',
        Kind::Turn => b'N',
        Kind::Schedule => b'S',
    }
}

fn kind_of(b: u8) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| kind_byte(*k) == b)
}

/// The first byte of every key of `kind`, and the byte just past them.
pub fn kind_range(kind: Kind) -> (u8, u8) {
    let b = kind_byte(kind);
    (b, b + 1)
}

fn push_pair(out: &mut Vec<u8>, k: &DedupKey) {
    out.extend_from_slice(k.queue.as_bytes());
    out.push(0);
    out.extend_from_slice(k.key.as_bytes());
}

pub fn encode_key(key: &Key) -> Vec<u8> {
    let mut out = vec![kind_byte(key.kind())];
    match key {
        Key::Meta => {}
        Key::Live(id) | Key::Done(id) | Key::Payload(id) | Key::Audit(id) => out.extend_from_slice(&id.to_be_bytes()),
        Key::Progress(id, seq) => {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        Key::Dedup(k) => push_pair(&mut out, k),
        Key::Rate(q, k) => {
            out.extend_from_slice(q.as_bytes());
            out.push(0);
            out.extend_from_slice(k.as_bytes());
        }
        Key::DedupExpiry(at, k) => {
            out.extend_from_slice(&at.to_be_bytes());
            push_pair(&mut out, k);
        }
        Key::Retention(at, id) => {
            out.extend_from_slice(&at.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        Key::Finished(q, s, id) => {
            out.extend_from_slice(q.as_bytes());
            out.push(0);
            out.push(s.index() as u8);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Key::Queue(s)
        | Key::Counts(s)
        | Key::Agent(s)
        | Key::Token(s)
        | Key::TokenAgents(s)
        | Key::Limits(s)
        | Key::Turn(s)
        | Key::Schedule(s) => out.extend_from_slice(s.as_bytes()),
    }
    out
}

fn corrupt(what: impl Into<String>) -> FrameError {
    FrameError::Decode(what.into())
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, FrameError> {
    let s = b.get(at..at + 8).ok_or_else(|| corrupt("key too short"))?;
    let mut x = [0u8; 8];
    x.copy_from_slice(s);
    Ok(u64::from_be_bytes(x))
}

fn text(b: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(b.to_vec()).map_err(|_| corrupt("key text is not UTF-8"))
}

fn pair(b: &[u8]) -> Result<DedupKey, FrameError> {
    let nul = b.iter().position(|c| *c == 0).ok_or_else(|| corrupt("key pair without separator"))?;
    Ok(DedupKey { queue: text(&b[..nul])?, key: text(&b[nul + 1..])? })
}

pub fn decode_key(b: &[u8]) -> Result<Key, FrameError> {
    let kind = b.first().and_then(|k| kind_of(*k)).ok_or_else(|| corrupt("unknown key kind"))?;
    let rest = &b[1..];
    let exact =
        |n: usize| if rest.len() == n { Ok(()) } else { Err(corrupt(format!("{kind:?} key of {} bytes", rest.len()))) };
    Ok(match kind {
        Kind::Meta => {
            exact(0)?;
            Key::Meta
        }
        Kind::Live => {
            exact(8)?;
            Key::Live(u64_at(rest, 0)?)
        }
        Kind::Done => {
            exact(8)?;
            Key::Done(u64_at(rest, 0)?)
        }
        Kind::Payload => {
            exact(8)?;
            Key::Payload(u64_at(rest, 0)?)
        }
        Kind::Audit => {
            exact(8)?;
            Key::Audit(u64_at(rest, 0)?)
        }
        Kind::Progress => {
            exact(16)?;
            Key::Progress(u64_at(rest, 0)?, u64_at(rest, 8)?)
        }
        Kind::Dedup => Key::Dedup(pair(rest)?),
        Kind::DedupExpiry => Key::DedupExpiry(u64_at(rest, 0)?, pair(rest.get(8..).unwrap_or_default())?),
        Kind::Retention => {
            exact(16)?;
            Key::Retention(u64_at(rest, 0)?, u64_at(rest, 8)?)
        }
        Kind::Finished => {
            if rest.len() < 10 {
                return Err(corrupt("finished-index key too short"));
            }
            let tail = rest.len() - 10;
            if rest[tail] != 0 {
                return Err(corrupt("finished-index key without separator"));
            }
            let state = TaskState::ALL
                .get(rest[tail + 1] as usize)
                .copied()
                .ok_or_else(|| corrupt("finished-index key with an unknown state"))?;
            Key::Finished(text(&rest[..tail])?, state, u64_at(rest, tail + 2)?)
        }
        Kind::Queue => Key::Queue(text(rest)?),
        Kind::Counts => Key::Counts(text(rest)?),
        Kind::Agent => Key::Agent(text(rest)?),
        Kind::Token => Key::Token(text(rest)?),
        Kind::TokenAgents => Key::TokenAgents(text(rest)?),
        Kind::Limits => Key::Limits(text(rest)?),
        Kind::Turn => Key::Turn(text(rest)?),
        Kind::Schedule => Key::Schedule(text(rest)?),
        Kind::Rate => {
            let DedupKey { queue, key } = pair(rest)?;
            Key::Rate(queue, key)
        }
    })
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, FrameError> {
    frame::encode(v)
}

/// The stored bytes of a record: (key, value).
pub fn encode(r: &Record) -> Result<(Vec<u8>, Vec<u8>), FrameError> {
    let value = match r {
        Record::Meta(m) => enc(m)?,
        Record::Task(t) => frame::encode_as(TASK_RECORD_V3, t)?,
        Record::TaskV1(t) => frame::encode_as(TASK_RECORD_V3, &t.clone().upgrade())?,
        Record::TaskV2(t) => frame::encode_as(TASK_RECORD_V3, &upgrade_v2(t.clone()))?,
        Record::Payload(_, p) => enc(p)?,
        Record::Progress(_, _, e) => enc(e)?,
        Record::Dedup(_, e) => enc(e)?,
        Record::DedupExpiry(..) | Record::Retention(..) | Record::Finished(..) => enc(&())?,
        Record::Queue(_, c) => enc(c)?,
        Record::Counts(_, c) => enc(c)?,
        Record::Counts8(_, c) => enc(&widen_counts(c))?,
        Record::Counts9(_, c) => enc(&widen_counts(c))?,
        Record::Agent(a) => enc(a)?,
        Record::Token(t) => enc(t)?,
        Record::Audit(e) => enc(e)?,
        Record::TokenAgents(_, patterns) => enc(patterns)?,
        Record::Limits(_, rules) => enc(rules)?,
        Record::Rate(_, _, tat) => enc(tat)?,
        Record::Turn(_, key) => enc(key)?,
        Record::Schedule(s) => enc(s)?,
    };
    Ok((encode_key(&r.key()), value))
}

fn dec<T: DeserializeOwned>(v: &[u8]) -> Result<T, FrameError> {
    frame::decode(v)
}

/// A record from its stored bytes; fails on damage or on a value that does not match its key.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Record, FrameError> {
    let k = decode_key(key)?;
    let mismatch = |what: &str| corrupt(format!("{what} stored under {k:?}"));
    Ok(match k.clone() {
        Key::Meta => Record::Meta(dec::<Meta>(value)?),
        Key::Live(id) | Key::Done(id) => {
            let t: TaskRecord = match frame::open(value)? {
                (TASK_RECORD_V3, body) => frame::decode_body(body)?,
                (TASK_RECORD_V2, body) => upgrade_v2(frame::decode_body::<TaskRecordV2>(body)?),
                (frame::FRAME_VERSION, body) => frame::decode_body::<TaskRecordV1>(body)?.upgrade(),
                (v, _) => return Err(FrameError::Version(v)),
            };
            if t.key() != k {
                return Err(mismatch(&format!("task {} ({})", t.id, t.state.as_str())));
            }
            let _ = id;
            Record::Task(t)
        }
        Key::Payload(id) => Record::Payload(id, dec::<String>(value)?),
        Key::Progress(id, seq) => Record::Progress(id, seq, dec::<ProgressEvent>(value)?),
        Key::Dedup(dk) => Record::Dedup(dk, dec::<DedupEntry>(value)?),
        Key::DedupExpiry(at, dk) => {
            dec::<()>(value)?;
            Record::DedupExpiry(at, dk)
        }
        Key::Retention(at, id) => {
            dec::<()>(value)?;
            Record::Retention(at, id)
        }
        Key::Finished(q, s, id) => {
            dec::<()>(value)?;
            Record::Finished(q, s, id)
        }
        Key::Queue(q) => Record::Queue(q, dec::<QueueConfig>(value)?),
        // Nine counts since the `waiting` state, eight before: the two never decode as each other
        // (postcard writes a fixed array as its elements alone, and leftover bytes are refused).
        // Counts of earlier releases had fewer states (the new ones come last).
        Key::Counts(q) => match (dec::<StateCounts>(value), dec::<StateCounts9>(value)) {
            (Ok(c), _) => Record::Counts(q, c),
            (_, Ok(c)) => Record::Counts(q, widen_counts(&c)),
            _ => Record::Counts(q, widen_counts(&dec::<StateCounts8>(value)?)),
        },
        Key::Agent(id) => {
            let a: Agent = dec(value)?;
            if a.id != id {
                return Err(mismatch("another agent"));
            }
            Record::Agent(a)
        }
        Key::Token(id) => {
            let t: Token = dec(value)?;
            if t.id != id {
                return Err(mismatch("another token"));
            }
            Record::Token(t)
        }
        Key::Audit(seq) => {
            let e: AuditEntry = dec(value)?;
            if e.seq != seq {
                return Err(mismatch("another audit entry"));
            }
            Record::Audit(e)
        }
        Key::TokenAgents(id) => Record::TokenAgents(id, dec::<Vec<String>>(value)?),
        Key::Limits(q) => Record::Limits(q, dec::<Vec<LimitRule>>(value)?),
        Key::Rate(q, k) => Record::Rate(q, k, dec::<u64>(value)?),
        Key::Turn(q) => Record::Turn(q, dec::<String>(value)?),
        Key::Schedule(name) => {
            let s: minion_engine::schedule::Schedule = dec(value)?;
            if s.def.name != name {
                return Err(mismatch("another schedule"));
            }
            Record::Schedule(Box::new(s))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dk(q: &str, k: &str) -> DedupKey {
        DedupKey { queue: q.into(), key: k.into() }
    }

    #[test]
    fn byte_order_is_key_order_within_each_kind() {
        let keys = vec![
            Key::Live(1),
            Key::Live(256),
            Key::Live(u64::MAX - 1),
            Key::Progress(3, 9),
            Key::Progress(3, 10),
            Key::Progress(4, 0),
            Key::Dedup(dk("a", "z")),
            Key::Dedup(dk("ab", "c")),
            Key::Dedup(dk("b", "")),
            Key::DedupExpiry(5, dk("b", "a")),
            Key::DedupExpiry(6, dk("a", "a")),
            Key::Retention(1, 9),
            Key::Retention(2, 1),
            Key::Finished("q".into(), TaskState::Succeeded, 7),
            Key::Finished("q".into(), TaskState::Dead, 1),
            Key::Finished("qa".into(), TaskState::Succeeded, 1),
            Key::Agent("a".into()),
            Key::Agent("a-1".into()),
            Key::Rate("q".into(), String::new()),
            Key::Rate("q".into(), "a".into()),
            Key::Rate("q".into(), "a\0b".into()),
            Key::Rate("qa".into(), String::new()),
        ];
        for a in &keys {
            assert_eq!(&decode_key(&encode_key(a)).expect("decode"), a);
            for b in &keys {
                if a.kind() == b.kind() {
                    assert_eq!(a.cmp(b), encode_key(a).cmp(&encode_key(b)), "{a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn rate_buckets_and_turns_round_trip() {
        for r in [
            Record::Rate("q".into(), String::new(), 7),
            Record::Rate("q".into(), "tenant\0x".into(), u64::MAX),
            Record::Turn("q".into(), String::new()),
            Record::Turn("q".into(), "tenant-b".into()),
        ] {
            let (k, v) = encode(&r).expect("encode");
            assert_eq!(decode(&k, &v).expect("decode"), r);
        }
    }

    #[test]
    fn a_value_under_the_wrong_key_is_refused() {
        let (k, v) = encode(&Record::Payload(3, "x".into())).expect("encode");
        assert!(matches!(decode(&k, &v), Ok(Record::Payload(3, _))));
        let other = encode_key(&Key::Meta);
        assert!(decode(&other, &v).is_err());
        assert!(decode(b"Z", &v).is_err());
    }

    #[test]
    fn counts_of_eight_and_nine_states_read_as_ten_and_ten_are_written() {
        let eight: StateCounts8 = [1, 2, 3, 4, 5, 6, 7, 300];
        let key = encode_key(&Key::Counts("q".into()));
        let old_value = frame::encode(&eight).expect("encode");
        let want = Record::Counts("q".into(), [1, 2, 3, 4, 5, 6, 7, 300, 0, 0]);
        assert_eq!(decode(&key, &old_value).expect("old counts"), want);
        let (k, v) = encode(&Record::Counts8("q".into(), eight)).expect("encode");
        assert_eq!((k.clone(), decode(&k, &v).expect("decode")), (key.clone(), want));
        let nine: StateCounts9 = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let want = Record::Counts("q".into(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
        assert_eq!(decode(&key, &frame::encode(&nine).expect("encode")).expect("nine"), want);
        let (k, v) = encode(&Record::Counts9("q".into(), nine)).expect("encode");
        assert_eq!(decode(&k, &v).expect("decode"), want);
        let ten = Record::Counts("q".into(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]);
        let (k, v) = encode(&ten).expect("encode");
        assert_eq!(decode(&k, &v).expect("decode"), ten);
        // Neither a short nor a long count list passes as any width.
        assert!(decode(&key, &frame::encode(&[1u64; 7]).expect("encode")).is_err());
        assert!(decode(&key, &frame::encode(&[1u64; 11]).expect("encode")).is_err());
    }

    #[test]
    fn task_records_of_version_1_read_as_the_current_shape() {
        let v1 = TaskRecordV1 {
            id: 7,
            queue: "q".into(),
            kind: "k".into(),
            capabilities: vec!["gpu".into()],
            priority: 2,
            idempotency_key: Some("key".into()),
            max_attempts: 3,
            attempt_limit: 3,
            lease_ms: 30_000,
            stall_timeout_ms: None,
            state: TaskState::Succeeded,
            created_ms: 1,
            updated_ms: 2,
            run_at_ms: 1,
            lease: None,
            attempts: Vec::new(),
            progress_count: 0,
            progress_dropped: 0,
            result: Some("42".into()),
            last_error: None,
            finished_ms: Some(2),
            purge_after_ms: Some(9),
            cancel_reason: None,
            trace_parent: None,
        };
        let key = encode_key(&Key::Done(7));
        let old = frame::encode(&v1).expect("encode");
        let want = v1.clone().upgrade();
        assert_eq!(decode(&key, &old).expect("v1"), Record::Task(want.clone()));
        // Version 2: a flow without `ext`.
        let mut v2: TaskRecordV2 = v1.clone().upgrade().map_flow(|_| minion_engine::legacy::FlowV2::default());
        v2.flow = Some(Box::new(minion_engine::legacy::FlowV2 {
            depends_on: vec![3],
            deadline_ms: Some(5),
            ..Default::default()
        }));
        let old2 = frame::encode_as(TASK_RECORD_V2, &v2).expect("encode");
        let want2 = upgrade_v2(v2.clone());
        assert_eq!(decode(&key, &old2).expect("v2"), Record::Task(want2.clone()));
        assert_eq!(want2.flow.as_ref().map(|f| (f.depends_on.clone(), f.deadline_ms)), Some((vec![3], Some(5))));
        let (_, v) = encode(&Record::TaskV2(v2)).expect("encode");
        assert_eq!((v[0], decode(&key, &v).expect("written as v3")), (TASK_RECORD_V3, Record::Task(want2)));
        // Version 3: with a concurrency key.
        let mut new = want.clone();
        new.flow = Some(Box::new(minion_engine::Flow {
            depends_on: vec![3],
            deadline_ms: Some(5),
            ext: vec![minion_engine::FlowExt::ConcurrencyKey("tenant-a".into())],
            ..Default::default()
        }));
        let (k, v) = encode(&Record::Task(new.clone())).expect("encode");
        assert_eq!((v[0], decode(&k, &v).expect("v3")), (TASK_RECORD_V3, Record::Task(new.clone())));
        let (_, v) = encode(&Record::TaskV1(v1)).expect("encode");
        assert_eq!(decode(&k, &v).expect("written as v3"), Record::Task(want));
        // A version-1 body under a version-2 header (and the reverse) is refused, not misread;
        // so is a version-3 body (with a key) under a version-2 header.
        let mut wrong = old.clone();
        wrong[0] = TASK_RECORD_V2;
        assert!(decode(&key, &wrong).is_err());
        let (_, keyed) = encode(&Record::Task(new)).expect("encode");
        let mut wrong = keyed;
        wrong[0] = TASK_RECORD_V2;
        assert!(decode(&k, &wrong).is_err());
        let mut wrong = v.clone();
        wrong[0] = frame::FRAME_VERSION;
        assert!(decode(&k, &wrong).is_err());
    }
}
