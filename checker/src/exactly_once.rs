//! Every acknowledged submit is in the ledger, once per idempotency key, under that key.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, Ledger, Op, Ret};
use crate::report::{Anomaly, Kind};

pub fn check(history: &[Op], ledger: &Ledger) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let by_id: BTreeMap<u64, Option<&str>> = ledger.iter().map(|t| (t.id, t.key.as_deref())).collect();
    let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for t in ledger {
        if let Some(k) = &t.key {
            by_key.entry(k).or_default().push(t.id);
        }
    }
    for (key, ids) in &by_key {
        if ids.len() > 1 {
            out.push(Anomaly::new(Kind::DuplicateKey, Some(ids[1]), format!("key {key} has tasks {ids:?}")));
        }
    }
    let mut acked: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for op in history {
        if let (Call::Submit { key, .. }, Some(Ret::Task(id))) = (&op.call, op.ok()) {
            acked.entry(key).or_default().insert(*id);
        }
    }
    for (key, ids) in &acked {
        if ids.len() > 1 {
            let first = ids.iter().next().copied();
            out.push(Anomaly::new(Kind::ConflictingAcks, first, format!("key {key} acknowledged as tasks {ids:?}")));
        }
        for id in ids {
            match by_id.get(id) {
                None => out.push(Anomaly::new(
                    Kind::LostAck,
                    Some(*id),
                    format!("submit of key {key} was acknowledged, the task is not in the ledger"),
                )),
                Some(k) if *k != Some(*key) => out.push(Anomaly::new(
                    Kind::WrongKey,
                    Some(*id),
                    format!("acknowledged for key {key}, holds key {k:?}"),
                )),
                Some(_) => {}
            }
        }
    }
    out
}
