//! A linearizability search over one object's history (the Wing–Gong algorithm with the state
//! cache Lowe added and Porcupine uses): find an order of the operations, consistent with real
//! time, in which a sequential model produces every observed result.
//!
//! Operations with an unknown outcome have no completion: they may take effect at any point
//! after they were invoked, or never (the search is done once every completed operation is
//! placed). Models may be nondeterministic: a step returns every state it can lead to.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Op: Debug;
    /// The states `op`, with the result it was observed to return, can leave from `s`; none if
    /// it could not have returned that from `s`.
    fn step(&self, s: &Self::State, op: &Self::Op) -> Vec<Self::State>;
}

#[derive(Debug)]
pub struct Entry<O> {
    pub op: O,
    pub invoked: u64,
    /// `None`: unknown outcome.
    pub completed: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history. `stuck` describes the longest explained prefix and what
    /// could not follow it.
    Violation {
        stuck: String,
    },
    /// The search visited `budget` configurations without deciding.
    Undecided,
}

/// Search for a linearization of `entries` from `init`, visiting at most `budget` configurations.
pub fn check<M: Model>(model: &M, init: M::State, mut entries: Vec<Entry<M::Op>>, budget: usize) -> Verdict {
    entries.sort_by_key(|e| e.invoked);
    let n = entries.len();
    let must: usize = entries.iter().filter(|e| e.completed.is_some()).count();
    let words = n.div_ceil(64).max(1);
    // A configuration: which entries are placed, and the model's state after them.
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(Vec<u64>, M::State, usize)> = vec![(vec![0; words], init, 0)];
    let mut best: (usize, String) = (0, String::new());
    let mut visited = 0usize;
    while let Some((done, state, placed)) = stack.pop() {
        if placed == must {
            return Verdict::Linearizable;
        }
        visited += 1;
        if visited > budget {
            return Verdict::Undecided;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // Real time: nothing invoked after the earliest completion among unplaced operations
        // may come before that operation.
        let horizon = (0..n).filter(|i| !is_done(*i)).filter_map(|i| entries[i].completed).min().unwrap_or(u64::MAX);
        let mut advanced = false;
        for i in 0..n {
            if is_done(i) || entries[i].invoked > horizon {
                continue;
            }
            for next in model.step(&state, &entries[i].op) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                let p = placed + usize::from(entries[i].completed.is_some());
                if seen.insert((d.clone(), next.clone())) {
                    stack.push((d, next, p));
                    advanced = true;
                }
            }
        }
        let depth = done.iter().map(|w| w.count_ones() as usize).sum::<usize>();
        if !advanced && depth >= best.0 {
            let candidates: Vec<&M::Op> = (0..n)
                .filter(|i| !is_done(*i) && entries[*i].invoked <= horizon && entries[*i].completed.is_some())
                .map(|i| &entries[i].op)
                .collect();
            best =
                (depth, format!("after {depth} operations the state is {state:?}; none of {candidates:?} can follow"));
        }
    }
    Verdict::Violation { stuck: best.1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register: write(v) or read() → v.
    struct Register;
    #[derive(Debug)]
    enum R {
        W(u8),
        Rd(u8),
    }
    impl Model for Register {
        type State = u8;
        type Op = R;
        fn step(&self, s: &u8, op: &R) -> Vec<u8> {
            match op {
                R::W(v) => vec![*v],
                R::Rd(v) if v == s => vec![*s],
                R::Rd(_) => vec![],
            }
        }
    }

    fn e(op: R, invoked: u64, completed: Option<u64>) -> Entry<R> {
        Entry { op, invoked, completed }
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        for seen in [0, 1] {
            let h = vec![e(R::W(1), 0, Some(10)), e(R::Rd(seen), 5, Some(6))];
            assert_eq!(check(&Register, 0, h, 1000), Verdict::Linearizable);
        }
    }

    #[test]
    fn a_read_after_a_write_completed_must_see_it() {
        let h = vec![e(R::W(1), 0, Some(10)), e(R::Rd(0), 11, Some(12))];
        assert!(matches!(check(&Register, 0, h, 1000), Verdict::Violation { .. }));
    }

    #[test]
    fn an_unknown_write_may_happen_late_or_never() {
        let never = vec![e(R::W(1), 0, None), e(R::Rd(0), 50, Some(60))];
        assert_eq!(check(&Register, 0, never, 1000), Verdict::Linearizable);
        let late = vec![e(R::W(1), 0, None), e(R::Rd(0), 50, Some(60)), e(R::Rd(1), 70, Some(80))];
        assert_eq!(check(&Register, 0, late, 1000), Verdict::Linearizable);
        // But not before it was invoked.
        let early = vec![e(R::Rd(1), 0, Some(5)), e(R::W(1), 10, None)];
        assert!(matches!(check(&Register, 0, early, 1000), Verdict::Violation { .. }));
        // And not undone.
        let undone = vec![e(R::W(1), 0, None), e(R::Rd(1), 50, Some(60)), e(R::Rd(0), 70, Some(80))];
        assert!(matches!(check(&Register, 0, undone, 1000), Verdict::Violation { .. }));
    }

    #[test]
    fn the_budget_bounds_the_search() {
        // Many concurrent writes and an impossible read: the search must give up, not hang.
        let mut h: Vec<Entry<R>> = (0..40).map(|i| e(R::W(i as u8 % 3), 0, Some(100))).collect();
        h.push(e(R::Rd(9), 0, Some(100)));
        assert_eq!(check(&Register, 0, h, 10_000), Verdict::Undecided);
    }
}
