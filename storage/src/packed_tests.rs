//! [`Packed`] against a map of what was written: random puts and deletes over packed and unpacked
//! kinds, with small blocks and frequent packing, compared after every write by gets and by
//! ranges with every kind of bound; and power loss after any physical write.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::*;
use crate::mem_store::MemStateStore;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cfg() -> PackConfig {
    // 'T' packed with blocks of ~120 bytes, 'D' with ~60, 'L' not packed.
    PackConfig { kinds: vec![(b'T', 120), (b'D', 60)], trigger: 8, step: 8, steps_per_write: 2, min_run: 3 }
}

fn marker(i: u64) -> AppliedMarker {
    AppliedMarker { index: Some(i), raft: vec![] }
}

/// A key of one of three kinds: mostly ascending ids (with late ones), or random for 'D'.
fn key(rng: &mut Rng, i: u64) -> Vec<u8> {
    let kind = [b'T', b'D', b'L'][rng.below(3) as usize];
    let id = match kind {
        b'D' => rng.below(500),
        _ if rng.below(10) == 0 => rng.below(i + 1),
        _ => i + rng.below(8),
    };
    let mut k = vec![kind];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn check(store: &Packed<MemStateStore>, model: &BTreeMap<Vec<u8>, Vec<u8>>, rng: &mut Rng, seed: u64, step: u64) {
    let all: Vec<Kv> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let got = store.range(Bound::Unbounded, STATE_KEYS_TO, usize::MAX).unwrap();
    assert_eq!(got, all, "seed {seed} write {step}: the whole range");
    for _ in 0..8 {
        let probe = key(rng, step);
        assert_eq!(store.get(&probe).unwrap(), model.get(&probe).cloned(), "seed {seed} write {step}: get {probe:?}");
        let limit = 1 + rng.below(20) as usize;
        let to = key(rng, step + 40);
        if probe >= to {
            continue;
        }
        let (from, lo): (Bound<&[u8]>, Bound<Vec<u8>>) = match rng.below(3) {
            0 => (Bound::Included(&probe), Bound::Included(probe.clone())),
            1 => (Bound::Excluded(&probe), Bound::Excluded(probe.clone())),
            _ => (Bound::Unbounded, Bound::Unbounded),
        };
        let want: Vec<Kv> = model
            .range::<Vec<u8>, _>((lo, Bound::Excluded(to.clone())))
            .map(|(k, v)| (k.clone(), v.clone()))
            .take(limit)
            .collect();
        assert_eq!(store.range(from, &to, limit).unwrap(), want, "seed {seed} write {step}: range to {to:?}");
    }
}

/// One random write: puts and deletes (mostly of keys that exist), sometimes a burst of deletes
/// in key order, as a purge makes.
fn random_write(rng: &mut Rng, model: &BTreeMap<Vec<u8>, Vec<u8>>, i: u64) -> Vec<Change> {
    let mut changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for _ in 0..1 + rng.below(6) {
        let k = key(rng, i);
        let len = rng.below(40) as usize;
        changes.insert(k, Some(vec![(i % 251) as u8; len]));
    }
    if !model.is_empty() {
        if rng.below(4) == 0 {
            // A purge: the first few keys of a kind.
            let kind = [b'T', b'D'][rng.below(2) as usize];
            for k in model.range::<Vec<u8>, _>(vec![kind]..vec![kind + 1]).take(rng.below(12) as usize).map(|(k, _)| k)
            {
                changes.insert(k.clone(), None);
            }
        }
        for _ in 0..rng.below(3) {
            let nth = rng.below(model.len() as u64) as usize;
            let k = model.keys().nth(nth).expect("in range").clone();
            changes.insert(k, None);
        }
    }
    changes.into_iter().collect()
}

fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, changes: &[Change]) {
    for (k, v) in changes {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

#[test]
fn reads_equal_the_map_of_what_was_written() {
    let seeds: u64 = std::env::var("MINION_PACK_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let store = Packed::new(MemStateStore::default(), cfg());
        let mut model = BTreeMap::new();
        for i in 0..300 {
            let changes = random_write(&mut rng, &model, i);
            store.write(&changes, &marker(i), &[]).unwrap();
            apply(&mut model, &changes);
            check(&store, &model, &mut rng, seed, i);
        }
        let (blocks, entries) = store.block_stats().unwrap();
        assert!(blocks > 0 && entries > 0, "seed {seed}: nothing was packed ({blocks} blocks)");
        assert!(store.verify().unwrap() as usize >= model.len(), "seed {seed}: verify counts every record");
    }
}

#[test]
fn packing_bounds_the_items_underneath() {
    // 20,000 records written in ascending order end up in far fewer items.
    let store = Packed::new(
        MemStateStore::default(),
        PackConfig { trigger: 256, step: 256, min_run: usize::MAX, ..PackConfig::minion() },
    );
    let mut n = 0u64;
    for batch in 0..200u64 {
        let changes: Vec<Change> = (0..100)
            .map(|j| {
                let id = batch * 100 + j;
                let mut k = vec![b'T'];
                k.extend_from_slice(&id.to_be_bytes());
                (k, Some(vec![1u8; 100]))
            })
            .collect();
        n += changes.len() as u64;
        store.write(&changes, &marker(batch), &[]).unwrap();
    }
    let items = store.inner().verify().unwrap();
    let (blocks, entries) = store.block_stats().unwrap();
    assert_eq!(store.verify().unwrap(), n);
    assert!(entries >= n - 256, "{entries} of {n} packed");
    assert!(items < n / 20, "{items} items underneath for {n} records ({blocks} blocks)");
}

#[test]
fn runs_of_new_records_are_written_as_blocks_at_once() {
    // Packing steps off: only the runs a write brings make blocks.
    let cfg = PackConfig { trigger: usize::MAX, steps_per_write: 0, ..PackConfig::minion() };
    let store = Packed::new(MemStateStore::default(), cfg);
    let key = |id: u64| [&[b'T'][..], &id.to_be_bytes()].concat();
    let batch = |ids: std::ops::Range<u64>| -> Vec<Change> { ids.map(|id| (key(id), Some(vec![3u8; 100]))).collect() };
    store.write(&batch(0..1000), &marker(1), &[]).unwrap();
    let (blocks, entries) = store.block_stats().unwrap();
    assert_eq!(entries, 1000);
    assert_eq!(store.inner().verify().unwrap(), blocks, "no singles: {blocks} blocks");
    // A run into a range that holds records already is written as singles.
    store.write(&batch(500..520), &marker(2), &[]).unwrap();
    assert_eq!(store.block_stats().unwrap().1, 1000);
    assert_eq!(store.inner().verify().unwrap(), blocks + 20);
    // Short runs too; a long one past the end goes into blocks.
    store.write(&batch(2000..2005), &marker(3), &[]).unwrap();
    store.write(&batch(3000..3100), &marker(4), &[]).unwrap();
    assert_eq!(store.block_stats().unwrap().1, 1100);
    assert_eq!(store.verify().unwrap(), 1000 + 5 + 100 + 20);
    let all = store.range(Bound::Unbounded, STATE_KEYS_TO, usize::MAX).unwrap();
    assert_eq!(all.len(), 1105);
}

#[test]
fn a_damaged_block_is_reported_not_read_as_missing() {
    let store = Packed::new(MemStateStore::default(), cfg());
    let changes: Vec<Change> = (0..20u64)
        .map(|i| {
            let mut k = vec![b'T'];
            k.extend_from_slice(&i.to_be_bytes());
            (k, Some(vec![9u8; 30]))
        })
        .collect();
    store.write(&changes, &marker(1), &[]).unwrap();
    store.write(&[], &marker(2), &[]).unwrap();
    let (blocks, _) = store.block_stats().unwrap();
    assert!(blocks > 0);
    // Flip a byte in the first block, underneath.
    let (phys, mut bytes) =
        store.inner().range(Bound::Included(&[BLOCK_PREFIX]), &[BLOCK_PREFIX + 1], 1).unwrap().remove(0);
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    store.inner().write(&[(phys, Some(bytes))], &marker(2), &[]).unwrap();
    let first = changes[0].0.clone();
    let e = store.get(&first).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(store.range(Bound::Unbounded, STATE_KEYS_TO, 100).is_err());
    assert!(store.verify().is_err());
}

#[test]
fn power_loss_after_any_physical_write_keeps_a_prefix_of_the_logical_writes() {
    let seeds: u64 = std::env::var("MINION_PACK_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        let mem = MemStateStore::default();
        let store = Packed::new(mem.clone(), cfg());
        let mut model = BTreeMap::new();
        // The logical state after each count of physical writes.
        let mut after_phys: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = vec![model.clone()];
        for i in 0..120 {
            let changes = random_write(&mut rng, &model, i);
            store.write(&changes, &marker(i), &[]).unwrap();
            apply(&mut model, &changes);
            while after_phys.len() <= mem.writes_since_durable() {
                after_phys.push(model.clone());
            }
        }
        for keep in 0..after_phys.len() {
            let back = Packed::new(mem.after_power_loss(Some(keep)), cfg());
            let want: Vec<Kv> = after_phys[keep].iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let got = back.range(Bound::Unbounded, STATE_KEYS_TO, usize::MAX).unwrap();
            assert_eq!(got, want, "seed {seed}: power lost after physical write {keep}");
        }
    }
}
