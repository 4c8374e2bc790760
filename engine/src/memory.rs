//! The engine with its records in memory: what the storage layer does, without a disk. For the
//! engine's own tests, the model, fuzzing and benchmarks.

use crate::command::{ApplyMeta, Request, Response};
use crate::config::EngineConfig;
use crate::record::{Effect, TaskRecord};
use crate::state::{task_record, task_view, State};
use crate::store::MemStore;
use crate::task::{Task, TaskId};

#[derive(Debug)]
pub struct Memory {
    pub state: State,
    pub store: MemStore,
}

impl Memory {
    pub fn new(config: EngineConfig) -> Memory {
        let mut m = Memory { state: State::new(config), store: MemStore::default() };
        let effects = m.state.take_effects();
        m.store.apply(effects);
        m.rebuild_bloom();
        m
    }

    /// Apply, write the effects, keep the bloom filter built.
    pub fn apply(&mut self, req: &Request, meta: ApplyMeta) -> Response {
        self.apply_with_effects(req, meta).0
    }

    /// Like [`Memory::apply`], also returning what it wrote.
    pub fn apply_with_effects(&mut self, req: &Request, meta: ApplyMeta) -> (Response, Vec<Effect>) {
        let r = match self.state.apply(req, meta, &self.store) {
            Ok(r) => r,
            Err(e) => panic!("an in-memory store cannot fail: {e}"),
        };
        let effects = self.state.take_effects();
        self.store.apply(effects.clone());
        if self.state.dedup_rebuild_needed() {
            self.rebuild_bloom();
        }
        (r, effects)
    }

    fn rebuild_bloom(&mut self) {
        self.state.dedup_rebuild_begin();
        match State::build_bloom(&self.store, self.state.dedup_keys()) {
            Ok(b) => self.state.dedup_rebuild_finish(b),
            Err(_) => self.state.dedup_rebuild_abandon(),
        }
    }

    /// A task's full view (payload and progress included).
    pub fn task(&self, id: TaskId) -> Option<Task> {
        task_view(&self.store, id).ok().flatten()
    }

    pub fn record(&self, id: TaskId) -> Option<TaskRecord> {
        task_record(&self.store, id).ok().flatten()
    }

    /// RAM rebuilt from the records, as after a restart.
    pub fn restart(&self) -> Memory {
        let state = match State::load(&self.store) {
            Ok(s) => s,
            Err(e) => panic!("an in-memory store cannot fail: {e}"),
        };
        let mut m = Memory { state, store: self.store.clone() };
        m.rebuild_bloom();
        m
    }

    /// Every invariant, every record.
    pub fn validate(&self) -> Result<(), String> {
        self.state.validate(&self.store, true)
    }
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new(EngineConfig::default())
    }
}

/// The read side of the state (`queue_stats`, `agent`, ...) straight from a `Memory`.
impl std::ops::Deref for Memory {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}
