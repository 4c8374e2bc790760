//! Model-based property test: random command sequences (with restarts through the binary snapshot
//! format) applied to the engine and to a deliberately simple model; every answer and every task's
//! state must agree, and the engine's invariants must hold after every step.

use std::collections::BTreeMap;

use minion_engine::backoff::retry_backoff_ms;
use minion_engine::rate::Rate;
use minion_engine::{
    Ack, ApplyMeta, Command, DepPolicy, DepRef, EngineConfig, FlowExt, LimitRule, Memory, NewTask, Outcome, Record,
    RejectCode, Request, TaskFlow, TaskState,
};
use proptest::prelude::*;

#[path = "model_parts/schedules.rs"]
mod schedules;
use schedules::{gen_schedule, GenSchedule, MSchedule};

const QUEUES: [&str; 2] = ["alpha", "beta"];
const CAPS: [&str; 2] = ["gpu", "ssd"];
const LEASE_MS: u64 = 1_000;
const RETRY_BASE_MS: u64 = 100;
const RETRY_MAX_MS: u64 = 1_000;
const TTL_MS: u64 = 3_000;
const RETENTION_MS: u64 = 5_000;

/// A dependency a generated task names.
#[derive(Debug, Clone, Copy)]
enum Dep {
    /// One of the tasks the model knows (any state).
    Existing(usize),
    /// Another member of the batch (possibly itself, or forming a cycle: refused).
    Batch(usize),
    /// An id never assigned (refused).
    Unknown,
}

/// (queue, priority, key, delay, max attempts, needs a capability, dependencies, run anyway,
/// deadline from now, concurrency key).
type GenTask = (usize, i32, Option<u8>, Option<u64>, u32, bool, Vec<Dep>, bool, Option<u64>, Option<u8>);

const CONCURRENCY_KEYS: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];

#[derive(Debug, Clone)]
enum Op {
    Submit {
        tasks: Vec<GenTask>,
    },
    Claim {
        agent: u8,
        queues: Vec<usize>,
        caps: Vec<usize>,
        max: u32,
    },
    Complete {
        pick: usize,
        stale: bool,
    },
    Fail {
        pick: usize,
        stale: bool,
    },
    /// Several completes and fails in one `Acknowledge` (pick, complete, stale).
    Ack {
        items: Vec<(usize, bool, bool)>,
    },
    Progress {
        pick: usize,
    },
    Extend {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Retry {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    /// Replace a queue's limits: one for every key, and one key's own; rates (starts, period
    /// index) of the queue, of every key and of one key.
    SetLimits {
        queue: usize,
        per_key: Option<u32>,
        one: Option<(usize, u32)>,
        rates: Rates,
        /// Serve keys round robin within a priority.
        fair: bool,
    },
    /// A leased task submits `n` children into `queue` under its lease (or a stale token).
    Spawn {
        pick: usize,
        n: usize,
        queue: usize,
        stale: bool,
    },
    /// A leased task gives its lease back to wait for its unfinished children.
    WaitChildren {
        pick: usize,
        stale: bool,
    },
    /// Create or replace a schedule.
    PutSchedule(GenSchedule),
    DeleteSchedule {
        name: usize,
    },
    Restart,
}

/// Rate periods the model uses (ms).
const PERIODS: [u64; 3] = [300, 1_000, 2_500];

/// (starts, index into [`PERIODS`]).
type RateOp = (u32, usize);

#[derive(Debug, Clone, Default)]
struct Rates {
    queue: Option<RateOp>,
    per_key: Option<RateOp>,
    one: Option<(usize, RateOp)>,
}

fn rates() -> impl Strategy<Value = Rates> {
    let rate = || proptest::option::weighted(0.3, (1..4u32, 0..3usize));
    (rate(), rate(), proptest::option::weighted(0.3, (0..3usize, (1..4u32, 0..3usize))))
        .prop_map(|(queue, per_key, one)| Rates { queue, per_key, one })
}

fn to_rate((starts, period): RateOp) -> Rate {
    Rate { starts, period_ms: PERIODS[period] }
}

fn op() -> impl Strategy<Value = Op> {
    let dep = prop_oneof![
        6 => any::<usize>().prop_map(Dep::Existing),
        3 => (0..4usize).prop_map(Dep::Batch),
        1 => Just(Dep::Unknown),
    ];
    let deps = prop_oneof![3 => Just(Vec::new()), 2 => proptest::collection::vec(dep, 1..3)];
    let task = (
        0..2usize,
        -2..3i32,
        proptest::option::of(0..4u8),
        proptest::option::of(0..2_000u64),
        1..4u32,
        any::<bool>(),
        deps,
        proptest::bool::weighted(0.3),
        proptest::option::weighted(0.2, 1..3_000u64),
        proptest::option::weighted(0.5, 0..3u8),
    );
    prop_oneof![
        4 => proptest::collection::vec(task, 1..4).prop_map(|tasks| Op::Submit { tasks }),
        4 => (0..3u8, proptest::collection::vec(0..2usize, 1..3), proptest::collection::vec(0..2usize, 0..3), 1..4u32)
            .prop_map(|(agent, queues, caps, max)| Op::Claim { agent, queues, caps, max }),
        2 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(pick, stale)| Op::Complete { pick, stale }),
        2 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(pick, stale)| Op::Fail { pick, stale }),
        2 => proptest::collection::vec((any::<usize>(), any::<bool>(), proptest::bool::weighted(0.2)), 1..5)
            .prop_map(|items| Op::Ack { items }),
        1 => any::<usize>().prop_map(|pick| Op::Progress { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Extend { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
        3 => (0..1_500u64).prop_map(|ms| Op::Advance { ms }),
        // Downtime: many due times of every schedule pass at once.
        1 => (60_000..400_000u64).prop_map(|ms| Op::Advance { ms }),
        1 => gen_schedule().prop_map(Op::PutSchedule),
        2 => (any::<usize>(), 1..4usize, 0..2usize, proptest::bool::weighted(0.1))
            .prop_map(|(pick, n, queue, stale)| Op::Spawn { pick, n, queue, stale }),
        1 => (any::<usize>(), proptest::bool::weighted(0.1)).prop_map(|(pick, stale)| Op::WaitChildren { pick, stale }),
        1 => (0..schedules::NAMES.len()).prop_map(|name| Op::DeleteSchedule { name }),
        1 => (
            0..2usize,
            proptest::option::of(0..3u32),
            proptest::option::of((0..3usize, 0..3u32)),
            rates(),
            proptest::bool::weighted(0.5),
        )
            .prop_map(|(queue, per_key, one, rates, fair)| Op::SetLimits { queue, per_key, one, rates, fair }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct MTask {
    id: u64,
    queue: String,
    priority: i32,
    caps: Vec<String>,
    state: TaskState,
    run_at: u64,
    lease: Option<(u64, u64)>,
    attempts: u32,
    limit: u32,
    max_attempts: u32,
    progress: usize,
    /// When it finished (retention removes it `RETENTION_MS` later).
    finished: Option<u64>,
    /// The dependencies it still waits for, and whether it runs when one does not succeed.
    pending: Vec<u64>,
    run_anyway: bool,
    /// Dead with the error `deadline` unless finished by then.
    deadline: Option<u64>,
    concurrency_key: Option<String>,
    /// Its children, in the order submitted.
    children: Vec<u64>,
}

impl MTask {
    /// A plain task, ready at `now` (a schedule's run, a child).
    fn ready(id: u64, queue: &str, priority: i32, caps: Vec<String>, max_attempts: u32, now: u64) -> MTask {
        MTask {
            id,
            queue: queue.into(),
            priority,
            caps,
            state: TaskState::Ready,
            run_at: now,
            lease: None,
            attempts: 0,
            limit: max_attempts,
            max_attempts,
            progress: 0,
            finished: None,
            pending: Vec::new(),
            run_anyway: false,
            deadline: None,
            concurrency_key: None,
            children: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Model {
    tasks: BTreeMap<u64, MTask>,
    keys: BTreeMap<(String, String), (u64, u64)>,
    next_id: u64,
    next_token: u64,
    now: u64,
    /// Tasks that finished since the last settle, and how.
    finished: std::collections::VecDeque<(u64, TaskState)>,
    /// Per queue: the limit of every key, and keys' own limits.
    limits: BTreeMap<String, (Option<u32>, BTreeMap<String, u32>)>,
    /// Per queue: its rate, every key's, keys' own.
    rates: BTreeMap<String, (Option<Rate>, Option<Rate>, BTreeMap<String, Rate>)>,
    /// Token buckets (queue, key or "" for the queue): starts still allowed, in nanoseconds of
    /// credit (a start costs one interval), as of `now`. A missing bucket is full.
    buckets: BTreeMap<(String, String), i128>,
    /// Fair queues, each with the key it served last (`""`: a task without a key).
    fair: BTreeMap<String, Option<String>>,
    schedules: BTreeMap<String, MSchedule>,
}

/// A token bucket's interval and capacity in nanoseconds: never faster than the rate.
fn bucket_shape(r: Rate) -> (i128, i128) {
    let interval = (r.period_ms as i128 * 1_000_000 + r.starts as i128 - 1) / r.starts as i128;
    (interval, interval * r.starts as i128)
}

impl Model {
    fn end_attempt(&mut self, id: u64) {
        let now = self.now;
        let t = self.tasks.get_mut(&id).expect("task");
        t.lease = None;
        if t.attempts >= t.limit {
            t.state = TaskState::Dead;
            t.finished = Some(now);
            self.finished.push_back((id, TaskState::Dead));
        } else {
            t.run_at = now + retry_backoff_ms(id, t.attempts, RETRY_BASE_MS, RETRY_MAX_MS);
            t.state = if t.run_at <= now { TaskState::Ready } else { TaskState::Failed };
        }
    }

    fn advance(&mut self) {
        let now = self.now;
        let expired: Vec<u64> =
            self.tasks.values().filter(|t| t.lease.is_some_and(|(_, exp)| exp <= now)).map(|t| t.id).collect();
        for id in expired {
            self.end_attempt(id);
        }
        let missed: Vec<u64> = self
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal() && t.deadline.is_some_and(|d| d <= now))
            .map(|t| t.id)
            .collect();
        for id in missed {
            self.finish(id, TaskState::Dead);
        }
        for t in self.tasks.values_mut() {
            if matches!(t.state, TaskState::Delayed | TaskState::Failed) && t.run_at <= now {
                t.state = TaskState::Ready;
            }
        }
        self.tasks.retain(|_, t| t.finished.is_none_or(|f| f + RETENTION_MS > now));
    }

    /// A task finished (succeeded or cancelled here; dead in `end_attempt`).
    fn finish(&mut self, id: u64, state: TaskState) {
        let t = self.tasks.get_mut(&id).expect("task");
        t.state = state;
        t.lease = None;
        t.finished = Some(self.now);
        self.finished.push_back((id, state));
    }

    /// Tell the waiting tasks about each finish, in order: one that did not succeed cancels the
    /// tasks waiting on it (unless they run anyway, and those cancellations are finishes too); a
    /// task with nothing left to wait for is ready, or delayed to its run time.
    fn settle(&mut self) {
        let now = self.now;
        while let Some((dep, how)) = self.finished.pop_front() {
            let waiting: Vec<u64> = self
                .tasks
                .values()
                .filter(|t| t.state.is_waiting() && t.pending.contains(&dep))
                .map(|t| t.id)
                .collect();
            for id in waiting {
                let t = self.tasks.get_mut(&id).expect("task");
                t.pending.retain(|d| *d != dep);
                // A parent waiting for its children resumes however they ended.
                if how != TaskState::Succeeded && !t.run_anyway && t.state == TaskState::Waiting {
                    self.finish(id, TaskState::Cancelled);
                } else if t.pending.is_empty() {
                    t.state = if t.run_at > now { TaskState::Delayed } else { TaskState::Ready };
                }
            }
        }
    }

    /// Cancel the unfinished descendants of `root`, breadth first, also below finished children
    /// (a task retention removed hides its own children, in the engine too).
    fn cancel_descendants(&mut self, root: u64) {
        let mut next: std::collections::VecDeque<u64> = self.tasks[&root].children.clone().into();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(c) = next.pop_front() {
            if !seen.insert(c) {
                continue;
            }
            let Some(t) = self.tasks.get(&c) else { continue };
            next.extend(t.children.iter().copied());
            if !t.state.is_terminal() {
                self.finish(c, TaskState::Cancelled);
            }
        }
    }

    /// Fire the due schedules, earliest due time first (then by name): each submits one task
    /// per run, with the next ids.
    fn fire_schedules(&mut self) {
        let now = self.now;
        loop {
            let due = self.schedules.iter().filter_map(|(name, s)| Some((s.next?, name.clone()))).min();
            let Some((_, name)) = due.filter(|(at, _)| *at <= now) else { return };
            let s = self.schedules.get_mut(&name).expect("schedule");
            let runs = s.fire(now);
            let g = s.gen.clone();
            for t in runs {
                let id = self.next_id;
                self.next_id += 1;
                let s = self.schedules.get_mut(&name).expect("schedule");
                s.fired += 1;
                s.last_run = Some(t);
                s.last_task = Some(id);
                let caps = if g.cap { vec![CAPS[g.queue].to_string()] } else { vec![] };
                self.tasks.insert(id, MTask::ready(id, QUEUES[g.queue], g.priority, caps, g.max_attempts, now));
            }
        }
    }

    /// How a batch's dependencies are refused, if they are: a self-reference or a cycle
    /// (invalid), else an unknown task (not found).
    fn refuse_deps(&self, tasks: &[GenTask]) -> Option<RejectCode> {
        let n = tasks.len();
        let edges = |i: usize| -> Vec<usize> {
            tasks[i].6.iter().filter_map(|d| if let Dep::Batch(j) = d { Some(j % n) } else { None }).collect()
        };
        if (0..n).any(|i| edges(i).contains(&i)) {
            return Some(RejectCode::Invalid);
        }
        // A cycle: some member reaches itself.
        for start in 0..n {
            let mut seen = vec![false; n];
            let mut stack = edges(start);
            while let Some(j) = stack.pop() {
                if j == start {
                    return Some(RejectCode::Invalid);
                }
                if !seen[j] {
                    seen[j] = true;
                    stack.extend(edges(j));
                }
            }
        }
        tasks.iter().any(|t| t.6.iter().any(|d| matches!(d, Dep::Unknown))).then_some(RejectCode::NotFound)
    }
}

impl Model {
    /// The rate of a bucket (key `""`: the queue's own).
    fn rate_of(&self, queue: &str, key: &str) -> Option<Rate> {
        let (q, per_key, own) = self.rates.get(queue)?;
        if key.is_empty() {
            *q
        } else {
            own.get(key).copied().or(*per_key)
        }
    }

    /// Refill every bucket by `ms` (up to its capacity; full ones are dropped).
    fn refill(&mut self, ms: u64) {
        let rates: BTreeMap<(String, String), Rate> =
            self.buckets.keys().filter_map(|(q, k)| Some(((q.clone(), k.clone()), self.rate_of(q, k)?))).collect();
        self.buckets.retain(|b, level| {
            let (_, capacity) = bucket_shape(rates[b]);
            *level = (*level + ms as i128 * 1_000_000).min(capacity);
            *level < capacity
        });
    }

    /// The rated buckets of `t`'s queue and key.
    fn rated_buckets(&self, t: &MTask) -> Vec<((String, String), Rate)> {
        let mut buckets = vec![(t.queue.clone(), String::new())];
        buckets.extend(t.concurrency_key.iter().map(|k| (t.queue.clone(), k.clone())));
        buckets.into_iter().filter_map(|b| Some((b.clone(), self.rate_of(&b.0, &b.1)?))).collect()
    }

    /// Whether the buckets of `t`'s queue and key allow one more start.
    fn allows_start(&self, t: &MTask) -> bool {
        self.rated_buckets(t).into_iter().all(|(b, r)| {
            let (interval, capacity) = bucket_shape(r);
            self.buckets.get(&b).copied().unwrap_or(capacity) >= interval
        })
    }

    /// Take a start of `t` from its buckets.
    fn take_start(&mut self, t: &MTask) {
        for (b, r) in self.rated_buckets(t) {
            let (interval, capacity) = bucket_shape(r);
            *self.buckets.entry(b).or_insert(capacity) -= interval;
        }
    }

    /// What a claim with `caps` takes from `queue`, at most `max`, in order: each step the
    /// eligible task (ready, its key with room and starts left) of the highest priority and
    /// lowest id; in a fair queue, of the highest priority and, among its keys (`""` for none),
    /// the first after the key served last (wrapping around), that key's lowest id.
    fn queue_claim_order(&mut self, queue: &str, caps: &[String], max: usize) -> Vec<u64> {
        let saved = self.buckets.clone();
        let ready: Vec<MTask> = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Ready && t.queue == queue && t.caps.iter().all(|c| caps.contains(c)))
            .cloned()
            .collect();
        let fair = self.fair.contains_key(queue);
        let mut turn = self.fair.get(queue).cloned().flatten();
        let flow = |t: &MTask| t.concurrency_key.clone().unwrap_or_default();
        let mut taken: BTreeMap<(String, String), u32> = BTreeMap::new();
        let mut out: Vec<u64> = Vec::new();
        while out.len() < max {
            let eligible: Vec<&MTask> = ready
                .iter()
                .filter(|t| !out.contains(&t.id) && self.key_has_room(t, &taken) && self.allows_start(t))
                .collect();
            let Some(top) = eligible.iter().map(|t| t.priority).max() else { break };
            let at_top: Vec<&MTask> = eligible.into_iter().filter(|t| t.priority == top).collect();
            let t = if fair {
                let flows: std::collections::BTreeSet<String> = at_top.iter().map(|t| flow(t)).collect();
                let next = flows
                    .iter()
                    .find(|f| turn.as_ref().is_none_or(|t| *f > t))
                    .or(flows.first())
                    .expect("a key")
                    .clone();
                *at_top.iter().filter(|t| flow(t) == next).min_by_key(|t| t.id).expect("a task")
            } else {
                *at_top.iter().min_by_key(|t| t.id).expect("a task")
            };
            let t = t.clone();
            self.take_start(&t);
            if let Some(k) = &t.concurrency_key {
                *taken.entry((t.queue.clone(), k.clone())).or_default() += 1;
            }
            turn = Some(flow(&t));
            out.push(t.id);
        }
        self.buckets = saved;
        out
    }

    /// New rates: buckets whose rate is gone are dropped, the others keep their debt.
    fn set_rates(&mut self, queue: &str, rates: Option<(Option<Rate>, Option<Rate>, BTreeMap<String, Rate>)>) {
        let old: BTreeMap<(String, String), Rate> = self
            .buckets
            .keys()
            .filter(|(q, _)| q == queue)
            .filter_map(|(q, k)| Some(((q.clone(), k.clone()), self.rate_of(q, k)?)))
            .collect();
        match rates {
            Some(r) => self.rates.insert(queue.to_string(), r),
            None => self.rates.remove(queue),
        };
        for (b, before) in old {
            let level = self.buckets.remove(&b).expect("bucket");
            if let Some(after) = self.rate_of(&b.0, &b.1) {
                let debt = bucket_shape(before).1 - level;
                self.buckets.insert(b, bucket_shape(after).1 - debt);
            }
        }
    }

    /// Whether a claim may lease one more task of `t`'s key (`extra` already taken by this claim).
    fn key_has_room(&self, t: &MTask, extra: &BTreeMap<(String, String), u32>) -> bool {
        let Some(k) = &t.concurrency_key else { return true };
        let Some((per_key, own)) = self.limits.get(&t.queue) else { return true };
        let Some(limit) = own.get(k).copied().or(*per_key) else { return true };
        let leased = self
            .tasks
            .values()
            .filter(|o| o.state == TaskState::Leased && o.queue == t.queue && o.concurrency_key.as_ref() == Some(k))
            .count() as u32;
        leased + extra.get(&(t.queue.clone(), k.clone())).copied().unwrap_or(0) < limit
    }
}

fn leased_ids(m: &Model) -> Vec<u64> {
    m.tasks.values().filter(|t| t.state == TaskState::Leased).map(|t| t.id).collect()
}

fn pick(ids: &[u64], i: usize) -> Option<u64> {
    (!ids.is_empty()).then(|| ids[i % ids.len()])
}

/// RAM rebuilt from the records, each record first sent through postcard (the binary format
/// snapshots and the log use).
fn restart(mem: &Memory) -> Memory {
    for r in mem.store.records() {
        let bytes = postcard::to_allocvec(r).expect("encode record");
        let back: Record = postcard::from_bytes(&bytes).expect("decode record");
        assert_eq!(&back, r, "records roundtrip through postcard");
    }
    mem.restart()
}

fn run(ops: Vec<Op>) {
    let config = EngineConfig {
        lease_ms: LEASE_MS,
        retry_base_ms: RETRY_BASE_MS,
        retry_max_ms: RETRY_MAX_MS,
        dedup_ttl_ms: TTL_MS,
        retention_ms: RETENTION_MS,
        ..EngineConfig::default()
    };
    let mut state = Memory::new(config);
    let mut model = Model { next_id: 1, next_token: 1, now: 1_000_000, ..Model::default() };
    let mut index = 0u64;
    for op in ops {
        index += 1;
        let meta = ApplyMeta { log_index: index };
        if let Op::Advance { ms } = op {
            model.now += ms;
            model.refill(ms);
        }
        if let Op::Restart = op {
            state = restart(&state);
            state.validate().expect("invariants after restart");
            continue;
        }
        model.advance();
        model.fire_schedules();
        let now = model.now;
        let apply = |state: &mut Memory, cmd: Command| state.apply(&Request { now_ms: now, cmd }, meta);
        match op {
            Op::Submit { tasks } => {
                let known: Vec<u64> = model.tasks.keys().copied().collect();
                let unknown = model.next_id + 1_000;
                let n = tasks.len();
                let new: Vec<NewTask> = tasks
                    .iter()
                    .map(|(q, prio, key, delay, max, cap, ..)| NewTask {
                        queue: QUEUES[*q].into(),
                        kind: "k".into(),
                        payload: "null".into(),
                        capabilities: if *cap { vec![CAPS[*q].to_string()] } else { vec![] },
                        priority: *prio,
                        idempotency_key: key.map(|k| format!("key{k}")),
                        delay_ms: *delay,
                        max_attempts: Some(*max),
                        ..NewTask::default()
                    })
                    .collect();
                let flows: Vec<TaskFlow> = tasks
                    .iter()
                    .map(|t| TaskFlow {
                        depends_on: t
                            .6
                            .iter()
                            .filter_map(|d| match d {
                                Dep::Existing(i) => pick(&known, *i).map(DepRef::Task),
                                Dep::Batch(j) => Some(DepRef::Batch((j % n) as u32)),
                                Dep::Unknown => Some(DepRef::Task(unknown)),
                            })
                            .collect(),
                        on_dependency_failure: if t.7 { DepPolicy::RunAnyway } else { DepPolicy::Cancel },
                        deadline_in_ms: t.8,
                        ext: t
                            .9
                            .map(|k| FlowExt::ConcurrencyKey(CONCURRENCY_KEYS[k as usize].into()))
                            .into_iter()
                            .collect(),
                        ..TaskFlow::default()
                    })
                    .collect();
                let with_deps = flows.iter().any(|f| !f.is_empty());
                let with_keys = flows.iter().any(|f| !f.ext.is_empty());
                let cmd = if with_keys || (with_deps && index % 2 == 0) {
                    Command::SubmitWith { tasks: new.clone(), flows: flows.clone(), trace_parent: None }
                } else if with_deps {
                    // The command of the release before concurrency keys.
                    let old = flows.iter().map(minion_engine::legacy::TaskFlowV1::from_current).collect();
                    Command::SubmitFlow { tasks: new.clone(), flows: old, trace_parent: None }
                } else {
                    Command::Submit { tasks: new.clone() }
                };
                let got = apply(&mut state, cmd);
                if with_deps {
                    if let Some(code) = model.refuse_deps(&tasks) {
                        assert_eq!(got.expect_err("dependencies must be refused").code, code, "{flows:?}");
                        model.settle();
                        continue;
                    }
                }
                let mut want = Vec::new();
                let mut ids = Vec::new();
                for nt in &new {
                    if let Some(k) = &nt.idempotency_key {
                        if let Some((id, exp)) = model.keys.get(&(nt.queue.clone(), k.clone())) {
                            if *exp > now {
                                want.push((*id, true));
                                ids.push(*id);
                                continue;
                            }
                        }
                    }
                    let id = model.next_id;
                    model.next_id += 1;
                    if let Some(k) = &nt.idempotency_key {
                        model.keys.insert((nt.queue.clone(), k.clone()), (id, now + TTL_MS));
                    }
                    want.push((id, false));
                    ids.push(id);
                }
                for (i, nt) in new.iter().enumerate() {
                    if want[i].1 {
                        continue;
                    }
                    let id = ids[i];
                    let mut deps: Vec<u64> = Vec::new();
                    let mut cancelled = false;
                    for d in &flows[i].depends_on {
                        let d = match d {
                            DepRef::Task(t) => *t,
                            DepRef::Batch(j) => ids[*j as usize],
                        };
                        if deps.contains(&d) || d == id {
                            continue;
                        }
                        // A task of the batch created after this one is unfinished.
                        match model.tasks.get(&d).map(|t| t.state) {
                            Some(TaskState::Succeeded) => {}
                            Some(s) if s.is_terminal() => cancelled |= !tasks[i].7,
                            _ => deps.push(d),
                        }
                    }
                    let run_at = now + nt.delay_ms.unwrap_or(0);
                    model.tasks.insert(
                        id,
                        MTask {
                            id,
                            queue: nt.queue.clone(),
                            priority: nt.priority,
                            caps: nt.capabilities.clone(),
                            // Settled below, with the rest of the batch.
                            state: if cancelled {
                                TaskState::Cancelled
                            } else if deps.is_empty() {
                                if run_at > now {
                                    TaskState::Delayed
                                } else {
                                    TaskState::Ready
                                }
                            } else {
                                TaskState::Waiting
                            },
                            run_at,
                            lease: None,
                            attempts: 0,
                            limit: nt.max_attempts.unwrap_or(3),
                            max_attempts: nt.max_attempts.unwrap_or(3),
                            progress: 0,
                            finished: cancelled.then_some(now),
                            run_anyway: tasks[i].7,
                            deadline: tasks[i].8.map(|d| now + d),
                            concurrency_key: tasks[i].9.map(|k| CONCURRENCY_KEYS[k as usize].to_string()),
                            children: Vec::new(),
                            pending: if cancelled { Vec::new() } else { deps },
                        },
                    );
                    if cancelled {
                        model.finished.push_back((id, TaskState::Cancelled));
                    }
                }
                match got {
                    Ok(Outcome::Submitted(s)) => {
                        let got: Vec<(u64, bool)> = s.iter().map(|s| (s.id, s.duplicate)).collect();
                        assert_eq!(got, want, "submit outcome");
                    }
                    other => panic!("submit: {other:?}"),
                }
            }
            Op::Claim { agent, queues, caps, max } => {
                let queues: Vec<String> = queues.iter().map(|q| QUEUES[*q].to_string()).collect();
                let caps: Vec<String> = caps.iter().map(|c| CAPS[*c].to_string()).collect();
                let agent_id = format!("agent{agent}");
                let got = apply(
                    &mut state,
                    Command::Claim { agent_id, queues: queues.clone(), capabilities: caps.clone(), max },
                );
                // Each queue's order, merged: the higher priority first, then the lower id.
                let unique: std::collections::BTreeSet<String> = queues.iter().cloned().collect();
                let lists: Vec<Vec<u64>> =
                    unique.iter().map(|q| model.queue_claim_order(q, &caps, max as usize)).collect();
                let mut at = vec![0; lists.len()];
                let mut want: Vec<u64> = Vec::new();
                while want.len() < max as usize {
                    let head = (0..lists.len())
                        .filter_map(|i| {
                            let id = *lists[i].get(at[i])?;
                            Some(((-(model.tasks[&id].priority as i64), id), i))
                        })
                        .min();
                    let Some(((_, id), i)) = head else { break };
                    at[i] += 1;
                    want.push(id);
                }
                for id in &want {
                    let t = model.tasks[id].clone();
                    assert!(model.allows_start(&t), "a claimed task had a start left");
                    model.take_start(&t);
                    if let Some(turn) = model.fair.get_mut(&t.queue) {
                        *turn = Some(t.concurrency_key.clone().unwrap_or_default());
                    }
                }
                for id in &want {
                    let t = model.tasks.get_mut(id).expect("task");
                    t.state = TaskState::Leased;
                    t.attempts += 1;
                    t.lease = Some((model.next_token, now + LEASE_MS));
                    model.next_token += 1;
                }
                match got {
                    Ok(Outcome::Claimed(ts)) => {
                        let got: Vec<u64> = ts.iter().map(|t| t.id).collect();
                        assert_eq!(got, want, "claim picks by priority, then id (keys in turn if fair), within limits");
                    }
                    other => panic!("claim: {other:?}"),
                }
            }
            Op::Complete { pick: i, stale } | Op::Fail { pick: i, stale } => {
                let is_complete = matches!(op, Op::Complete { .. });
                let Some(id) = pick(&leased_ids(&model), i) else { continue };
                let token = model.tasks[&id].lease.expect("lease").0 + if stale { 1_000_000 } else { 0 };
                let cmd = if is_complete {
                    Command::Complete { task_id: id, lease_token: token, result: Some("1".into()) }
                } else {
                    Command::Fail { task_id: id, lease_token: token, error: "e".into() }
                };
                let got = apply(&mut state, cmd);
                if stale {
                    assert_eq!(got.expect_err("stale token must be refused").code, RejectCode::StaleLease);
                } else {
                    got.expect("valid lease operation");
                    if is_complete {
                        model.finish(id, TaskState::Succeeded);
                    } else {
                        model.end_attempt(id);
                    }
                }
            }
            Op::Ack { items } => {
                // Distinct leased tasks, in the order picked.
                let mut leased = leased_ids(&model);
                let mut chosen = Vec::new();
                for (i, complete, stale) in items {
                    let Some(id) = pick(&leased, i) else { break };
                    leased.retain(|x| *x != id);
                    chosen.push((id, complete, stale));
                }
                if chosen.is_empty() {
                    continue;
                }
                let acks: Vec<Ack> = chosen
                    .iter()
                    .map(|&(id, complete, stale)| {
                        let token = model.tasks[&id].lease.expect("lease").0 + if stale { 1_000_000 } else { 0 };
                        if complete {
                            Ack::Complete { task_id: id, lease_token: token, result: Some("1".into()) }
                        } else {
                            Ack::Fail { task_id: id, lease_token: token, error: "e".into() }
                        }
                    })
                    .collect();
                let outs = match apply(&mut state, Command::Acknowledge { acks }) {
                    Ok(Outcome::Batch(outs)) => outs,
                    other => panic!("acknowledge: {other:?}"),
                };
                assert_eq!(outs.len(), chosen.len(), "one answer per acknowledgement");
                for ((id, complete, stale), out) in chosen.into_iter().zip(outs) {
                    if stale {
                        assert_eq!(out.expect_err("stale token must be refused").code, RejectCode::StaleLease);
                        continue;
                    }
                    let Ok(Outcome::Task(t)) = out else { panic!("acknowledge of {id}: {out:?}") };
                    if complete {
                        assert_eq!(t.state, TaskState::Succeeded);
                        model.finish(id, TaskState::Succeeded);
                    } else {
                        model.end_attempt(id);
                        assert_eq!(t.state, model.tasks[&id].state, "task {id} after a failed attempt");
                    }
                }
            }
            Op::Progress { pick: i } => {
                let Some(id) = pick(&leased_ids(&model), i) else { continue };
                let token = model.tasks[&id].lease.expect("lease").0;
                let cmd = Command::Progress { task_id: id, lease_token: token, percent: Some(50), message: None };
                apply(&mut state, cmd).expect("progress");
                model.tasks.get_mut(&id).expect("task").progress += 1;
            }
            Op::Extend { pick: i } => {
                let Some(id) = pick(&leased_ids(&model), i) else { continue };
                let token = model.tasks[&id].lease.expect("lease").0;
                apply(&mut state, Command::Extend { task_id: id, lease_token: token, lease_ms: None }).expect("extend");
                model.tasks.get_mut(&id).expect("task").lease = Some((token, now + LEASE_MS));
            }
            Op::Cancel { pick: i } => {
                let ids: Vec<u64> = model.tasks.keys().copied().collect();
                let Some(id) = pick(&ids, i) else { continue };
                let got = apply(&mut state, Command::Cancel { task_id: id, reason: None });
                if model.tasks[&id].state.is_terminal() {
                    assert_eq!(got.expect_err("cancel of a finished task").code, RejectCode::WrongState);
                } else {
                    got.expect("cancel");
                    model.finish(id, TaskState::Cancelled);
                    model.cancel_descendants(id);
                }
            }
            Op::Spawn { pick: i, n, queue, stale } => {
                let Some(parent) = pick(&leased_ids(&model), i) else { continue };
                let token = model.tasks[&parent].lease.expect("lease").0 + if stale { 1_000_000 } else { 0 };
                let tasks: Vec<NewTask> = (0..n)
                    .map(|_| NewTask {
                        queue: QUEUES[queue].into(),
                        kind: "child".into(),
                        payload: "null".into(),
                        max_attempts: Some(2),
                        ..NewTask::default()
                    })
                    .collect();
                let flows = vec![
                    TaskFlow {
                        ext: vec![FlowExt::Parent(parent), FlowExt::ParentLease(token)],
                        ..TaskFlow::default()
                    };
                    n
                ];
                let got = apply(&mut state, Command::SubmitWith { tasks, flows, trace_parent: None });
                if stale {
                    assert_eq!(got.expect_err("a stale parent lease").code, RejectCode::StaleLease);
                    continue;
                }
                got.expect("spawn");
                for _ in 0..n {
                    let id = model.next_id;
                    model.next_id += 1;
                    model.tasks.get_mut(&parent).expect("parent").children.push(id);
                    model.tasks.insert(id, MTask::ready(id, QUEUES[queue], 0, vec![], 2, now));
                }
            }
            Op::WaitChildren { pick: i, stale } => {
                let Some(id) = pick(&leased_ids(&model), i) else { continue };
                let token = model.tasks[&id].lease.expect("lease").0 + if stale { 1_000_000 } else { 0 };
                let got = apply(&mut state, Command::WaitChildren { task_id: id, lease_token: token });
                if stale {
                    assert_eq!(got.expect_err("stale token must be refused").code, RejectCode::StaleLease);
                    continue;
                }
                let got = got.expect("wait for children");
                let unfinished: Vec<u64> = model.tasks[&id]
                    .children
                    .iter()
                    .copied()
                    .filter(|c| model.tasks.get(c).is_some_and(|t| !t.state.is_terminal()))
                    .collect();
                let Outcome::Task(t) = got else { panic!("wait answer: {got:?}") };
                if unfinished.is_empty() {
                    assert_eq!(t.state, TaskState::Leased, "nothing to wait for: still leased");
                } else {
                    let m = model.tasks.get_mut(&id).expect("task");
                    m.state = TaskState::WaitingChildren;
                    m.lease = None;
                    m.limit += 1;
                    m.pending = unfinished;
                }
            }
            Op::Retry { pick: i } => {
                let ids: Vec<u64> = model.tasks.keys().copied().collect();
                let Some(id) = pick(&ids, i) else { continue };
                let got = apply(&mut state, Command::Retry { task_id: id });
                let t = model.tasks.get_mut(&id).expect("task");
                if matches!(t.state, TaskState::Dead | TaskState::Cancelled | TaskState::Failed) {
                    got.expect("retry");
                    if t.state != TaskState::Failed {
                        t.limit = t.attempts + t.max_attempts;
                        t.deadline = t.deadline.filter(|d| *d > now);
                    }
                    t.state = TaskState::Ready;
                    t.finished = None;
                } else {
                    assert_eq!(got.expect_err("retry refused").code, RejectCode::WrongState);
                }
            }
            Op::Advance { .. } => {
                apply(&mut state, Command::Tick).expect("tick");
            }
            Op::SetLimits { queue, per_key, one, rates, fair } => {
                let queue = QUEUES[queue].to_string();
                let own: BTreeMap<String, u32> =
                    one.map(|(k, n)| (CONCURRENCY_KEYS[k].to_string(), n)).into_iter().collect();
                let (queue_rate, key_rate) = (rates.queue.map(to_rate), rates.per_key.map(to_rate));
                let own_rates: BTreeMap<String, Rate> =
                    rates.one.map(|(k, r)| (CONCURRENCY_KEYS[k].to_string(), to_rate(r))).into_iter().collect();
                let mut rules: Vec<LimitRule> = per_key.map(LimitRule::KeyConcurrency).into_iter().collect();
                rules.extend(own.iter().map(|(k, n)| LimitRule::KeyConcurrencyOf(k.clone(), *n)));
                rules.extend(queue_rate.map(LimitRule::QueueRate));
                rules.extend(key_rate.map(LimitRule::KeyRate));
                rules.extend(own_rates.iter().map(|(k, r)| LimitRule::KeyRateOf(k.clone(), *r)));
                rules.extend(fair.then_some(LimitRule::Fair));
                apply(&mut state, Command::SetLimits { queue: queue.clone(), rules }).expect("set limits");
                if per_key.is_none() && own.is_empty() {
                    model.limits.remove(&queue);
                } else {
                    model.limits.insert(queue.clone(), (per_key, own));
                }
                let no_rates = queue_rate.is_none() && key_rate.is_none() && own_rates.is_empty();
                model.set_rates(&queue, (!no_rates).then_some((queue_rate, key_rate, own_rates)));
                if fair {
                    model.fair.entry(queue.clone()).or_default();
                } else {
                    model.fair.remove(&queue);
                }
            }
            Op::PutSchedule(g) => {
                let def = g.def(QUEUES[g.queue], CAPS[g.queue]);
                apply(&mut state, Command::PutSchedule { def: def.clone() }).expect("put schedule");
                let old = model.schedules.get(&def.name);
                let s = MSchedule::new(g, now, old);
                model.schedules.insert(def.name, s);
            }
            Op::DeleteSchedule { name } => {
                let name = schedules::NAMES[name].to_string();
                let got = apply(&mut state, Command::DeleteSchedule { name: name.clone() });
                match model.schedules.remove(&name) {
                    Some(_) => assert!(matches!(got, Ok(Outcome::Done)), "delete schedule: {got:?}"),
                    None => assert_eq!(got.expect_err("no such schedule").code, RejectCode::NotFound),
                }
            }
            Op::Restart => unreachable!(),
        }
        model.settle();
        state.validate().expect("engine invariants");
        for (id, m) in &model.tasks {
            let t = state.task(*id).expect("every model task exists in the engine");
            assert_eq!(t.state, m.state, "state of task {id}");
            assert_eq!(t.lease.as_ref().map(|l| (l.token, l.expires_ms)), m.lease, "lease of task {id}");
            assert_eq!(t.attempt_count(), m.attempts, "attempts of task {id}");
            assert_eq!(t.progress.len(), m.progress, "progress of task {id}");
            assert_eq!(t.attempt_limit, m.limit, "attempt limit of task {id}");
            let rec = state.record(*id).expect("record");
            let children = rec.flow.as_ref().map(|f| f.children().to_vec()).unwrap_or_default();
            assert_eq!(children, m.children, "children of task {id}");
        }
        let ids: Vec<u64> = (1..model.next_id).filter(|id| state.task(*id).is_some()).collect();
        assert_eq!(ids, model.tasks.keys().copied().collect::<Vec<_>>(), "retention removed exactly the model's");
        assert_eq!(state.state.task_count(), model.tasks.len() as u64);
        let names: Vec<&str> = state.state.schedules().map(|s| s.def.name.as_str()).collect();
        assert_eq!(names, model.schedules.keys().map(String::as_str).collect::<Vec<_>>(), "schedules");
        for (name, m) in &model.schedules {
            let s = state.state.schedule(name).expect("schedule");
            let got = (s.next_ms, s.last_run_ms, s.last_task_id, s.fired, s.skipped, s.last_error.as_deref());
            assert_eq!(got, (m.next, m.last_run, m.last_task, m.fired, m.skipped, None), "schedule {name}");
        }
        let ids: Vec<u64> = (1..model.next_id).filter(|id| state.task(*id).is_some()).collect();
        assert_eq!(ids, model.tasks.keys().copied().collect::<Vec<_>>(), "retention removed exactly the model's");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

/// A scripted sequence that always runs: lease expiry across a restart, a duplicate key after
/// expiry, manual retry of a dead task, and a multi-queue claim with capabilities.
#[test]
fn scripted_expiry_restart_retry_sequence() {
    run(vec![
        Op::Submit { tasks: vec![(0, 0, Some(1), None, 2, false, vec![], false, None, None)] },
        Op::Claim { agent: 0, queues: vec![0], caps: vec![], max: 1 },
        Op::Restart,
        Op::Advance { ms: 1_400 },
        Op::Claim { agent: 1, queues: vec![0], caps: vec![], max: 1 },
        Op::Submit { tasks: vec![(0, 0, Some(1), None, 1, false, vec![], false, None, None)] },
        Op::Advance { ms: 1_400 },
        Op::Retry { pick: 0 },
        Op::Claim { agent: 2, queues: vec![0, 1], caps: vec![0, 1], max: 3 },
    ]);
}

/// Dependencies through a restart: a chain waiting on a leased task, the lease running out (the
/// task is dead: the chain's `cancel` member is cancelled and its dependent after it, the
/// `run_anyway` member is released), and a fan-in released by completes.
#[test]
fn scripted_dependency_sequence() {
    run(vec![
        Op::Submit { tasks: vec![(0, 0, None, None, 1, false, vec![], false, None, None)] },
        Op::Claim { agent: 0, queues: vec![0], caps: vec![], max: 1 },
        Op::Submit {
            tasks: vec![
                (0, 0, None, None, 1, false, vec![Dep::Existing(0)], false, None, None),
                (0, 0, None, None, 1, false, vec![Dep::Batch(0)], false, None, None),
                (1, 0, None, Some(500), 1, false, vec![Dep::Existing(0), Dep::Batch(3)], true, Some(5_000), None),
                (1, 0, None, None, 1, false, vec![], false, None, None),
            ],
        },
        Op::Restart,
        Op::Claim { agent: 1, queues: vec![1], caps: vec![], max: 1 },
        Op::Complete { pick: 0, stale: false },
        Op::Advance { ms: 1_000 },
        Op::Advance { ms: 600 },
        Op::Claim { agent: 1, queues: vec![1], caps: vec![], max: 1 },
    ]);
}

/// A scripted sequence that always runs: a key at its limit is skipped (in one claim and across
/// claims), survives a restart, and returns when its lease ends or the limit is raised.
#[test]
fn scripted_concurrency_key_sequence() {
    let keyed = |k: u8, prio: i32| (0, prio, None, None, 1, false, vec![], false, None, Some(k));
    run(vec![
        Op::SetLimits { queue: 0, per_key: Some(1), one: Some((1, 2)), rates: Rates::default(), fair: false },
        Op::Submit { tasks: vec![keyed(0, 0), keyed(0, 0), keyed(1, 0), keyed(1, 0), keyed(1, 0), keyed(2, 5)] },
        Op::Claim { agent: 0, queues: vec![0], caps: vec![], max: 3 },
        Op::Claim { agent: 1, queues: vec![0], caps: vec![], max: 3 },
        Op::Restart,
        Op::Claim { agent: 2, queues: vec![0], caps: vec![], max: 3 },
        Op::Complete { pick: 0, stale: false },
        Op::Claim { agent: 2, queues: vec![0], caps: vec![], max: 3 },
        Op::SetLimits { queue: 0, per_key: None, one: None, rates: Rates::default(), fair: false },
        Op::Claim { agent: 2, queues: vec![0], caps: vec![], max: 3 },
    ]);
}

/// A scripted sequence that always runs: a queue's rate and a key's rate hold claims back, a
/// waiting key starts again when its rate allows (after a restart too), and changing the limits
/// keeps what the buckets owe.
#[test]
fn scripted_rate_limit_sequence() {
    let keyed = |k: u8| (0, 0, None, None, 1, false, vec![], false, None, Some(k));
    let rates = Rates { queue: Some((3, 1)), per_key: Some((1, 1)), one: Some((1, (2, 0))) };
    run(vec![
        Op::SetLimits { queue: 0, per_key: None, one: None, rates: rates.clone(), fair: false },
        Op::Submit { tasks: vec![keyed(0), keyed(0), keyed(1), keyed(1), keyed(1), keyed(2)] },
        // Key 0 once, key 1 twice (its own rate), then the queue's three are used up.
        Op::Claim { agent: 0, queues: vec![0], caps: vec![], max: 3 },
        Op::Claim { agent: 1, queues: vec![0], caps: vec![], max: 3 },
        Op::Restart,
        Op::Advance { ms: 340 },
        Op::Claim { agent: 2, queues: vec![0], caps: vec![], max: 3 },
        Op::SetLimits {
            queue: 0,
            per_key: None,
            one: None,
            rates: Rates { queue: Some((1, 1)), ..rates },
            fair: false,
        },
        Op::Advance { ms: 700 },
        Op::Claim { agent: 2, queues: vec![0], caps: vec![], max: 3 },
        Op::SetLimits { queue: 0, per_key: None, one: None, rates: Rates::default(), fair: false },
        Op::Claim { agent: 2, queues: vec![0], caps: vec![], max: 3 },
    ]);
}

/// A scripted sequence that always runs: in a fair queue keys take turns within a priority
/// (tasks without a key as one more key), the turn survives a restart and a claim over both
/// queues, a key at its limit or out of starts loses its turns, and turning fairness off
/// restores oldest first.
#[test]
fn scripted_fair_queue_sequence() {
    let task = |q: usize, prio: i32, k: Option<u8>| (q, prio, None, None, 1, false, vec![], false, None, k);
    let fair = |per_key, rates| Op::SetLimits { queue: 0, per_key, one: None, rates, fair: true };
    let claim = |max| Op::Claim { agent: 0, queues: vec![0, 1], caps: vec![], max };
    run(vec![
        fair(None, Rates::default()),
        Op::Submit { tasks: vec![task(0, 0, Some(0)); 3] },
        Op::Submit { tasks: vec![task(0, 0, Some(1)), task(0, 0, None), task(0, 0, Some(2)), task(1, 0, None)] },
        Op::Submit { tasks: vec![task(0, 2, Some(0)), task(0, 2, Some(0)), task(0, 2, Some(1))] },
        claim(3),
        Op::Restart,
        claim(2),
        fair(Some(1), Rates { per_key: Some((1, 1)), ..Rates::default() }),
        Op::Submit { tasks: vec![task(0, 0, Some(1)), task(0, 0, Some(2)), task(0, 0, None)] },
        claim(4),
        Op::Advance { ms: 1_200 },
        Op::Complete { pick: 0, stale: false },
        Op::Complete { pick: 0, stale: false },
        claim(4),
        Op::SetLimits { queue: 0, per_key: None, one: None, rates: Rates::default(), fair: false },
        claim(4),
    ]);
}

/// A scripted sequence that always runs: an interval and a cron schedule in a time zone fire
/// across a restart, downtime skips (and then catches up) missed runs, a replaced schedule keeps
/// its counts, a paused one fires nothing, and deleting one twice is refused the second time.
#[test]
fn scripted_schedule_sequence() {
    use schedules::When;
    let sched = |name, when, catch_up, paused| GenSchedule {
        name,
        when,
        queue: name,
        priority: 0,
        cap: false,
        max_attempts: 1,
        catch_up,
        paused,
    };
    run(vec![
        Op::PutSchedule(sched(0, When::Every(1_000), None, false)),
        Op::PutSchedule(sched(1, When::Cron(1), Some(3), false)),
        Op::Advance { ms: 1_000 },
        Op::Advance { ms: 1_400 },
        Op::Restart,
        Op::Claim { agent: 0, queues: vec![0, 1], caps: vec![], max: 3 },
        Op::Advance { ms: 250_000 },
        Op::PutSchedule(sched(0, When::Every(1_700), Some(2), false)),
        Op::Advance { ms: 120_000 },
        Op::PutSchedule(sched(1, When::Cron(0), None, true)),
        Op::Advance { ms: 10_000 },
        Op::DeleteSchedule { name: 0 },
        Op::DeleteSchedule { name: 0 },
        Op::Advance { ms: 5_000 },
    ]);
}

/// A scripted sequence that always runs: a parent spawns children (and a stale spawn is refused),
/// waits for them across a restart, is ready again once the last one ends however it ended; a
/// child spawns a grandchild and finishes first, and cancelling the root cancels the grandchild.
#[test]
fn scripted_parent_and_children_sequence() {
    let task = |q| (q, 0, None, None, 2, false, vec![], false, None, None);
    run(vec![
        Op::Submit { tasks: vec![task(0)] },
        Op::Claim { agent: 0, queues: vec![0], caps: vec![], max: 1 },
        Op::Spawn { pick: 0, n: 2, queue: 1, stale: false },
        Op::Spawn { pick: 0, n: 1, queue: 1, stale: true },
        Op::WaitChildren { pick: 0, stale: false },
        Op::Restart,
        Op::Claim { agent: 1, queues: vec![1], caps: vec![], max: 2 },
        Op::Spawn { pick: 0, n: 1, queue: 0, stale: false },
        Op::Complete { pick: 0, stale: false },
        Op::Fail { pick: 0, stale: false },
        Op::Advance { ms: 1_200 },
        Op::Claim { agent: 1, queues: vec![1], caps: vec![], max: 2 },
        Op::Fail { pick: 0, stale: false },
        Op::Claim { agent: 0, queues: vec![0], caps: vec![], max: 2 },
        Op::WaitChildren { pick: 0, stale: false },
        Op::Cancel { pick: 0 },
    ]);
}
