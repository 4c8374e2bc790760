//! Producers waiting for tasks to finish (`GET /v1/tasks/{id}?wait_ms=`): each waits for its own
//! task, not for every applied entry.
//!
//! While anyone waits, one loop follows the applied task events (the engine records them only
//! while the event channel has a receiver, so nothing is recorded when no one waits or watches)
//! and wakes the waiters of each task that reached a final state. A waiter registers before it
//! reads the task: an entry applied before the subscription is visible to that read, and any
//! later one is in the events. A lagging loop or a snapshot install wakes every waiter, and each
//! reads its task again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use minion_engine::TaskId;
use minion_raft::SharedState;
use tokio::sync::{broadcast, oneshot};

#[derive(Default)]
struct Inner {
    waiters: HashMap<TaskId, Vec<(u64, oneshot::Sender<()>)>>,
    next: u64,
    /// The loop runs (it holds a subscription to the events; it ends at the first entry after the
    /// last waiter left).
    following: bool,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct TaskWaits {
    inner: Arc<Mutex<Inner>>,
    state: SharedState,
}

/// One registered wait; dropping it unregisters.
pub struct Wait {
    pub rx: oneshot::Receiver<()>,
    task: TaskId,
    id: u64,
    waits: TaskWaits,
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut g = self.waits.lock();
        if let Some(list) = g.waiters.get_mut(&self.task) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                g.waiters.remove(&self.task);
            }
        }
    }
}

impl TaskWaits {
    pub fn new(state: SharedState) -> TaskWaits {
        TaskWaits { inner: Arc::default(), state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for `task` to reach a final state (or for a reason to look again). Read the task after
    /// this returns, then await `rx`.
    pub fn register(&self, task: TaskId) -> Wait {
        let (tx, rx) = oneshot::channel();
        let mut g = self.lock();
        g.next += 1;
        let id = g.next;
        g.waiters.entry(task).or_default().push((id, tx));
        if !g.following {
            g.following = true;
            // Subscribed here, under the lock and before the caller reads the task.
            let events = self.state.subscribe_events();
            tokio::spawn(self.clone().follow(events));
        }
        Wait { rx, task, id, waits: self.clone() }
    }

    async fn follow(self, mut events: broadcast::Receiver<Arc<minion_raft::AppliedEvents>>) {
        loop {
            let got = events.recv().await;
            let closed = matches!(got, Err(broadcast::error::RecvError::Closed));
            let mut g = self.lock();
            match got {
                Ok(applied) if !applied.reset => {
                    for e in applied.events.iter().filter(|e| e.is_terminal()) {
                        for (_, tx) in g.waiters.remove(&e.task_id).unwrap_or_default() {
                            let _ = tx.send(());
                        }
                    }
                }
                // A snapshot installed, entries missed, or the channel closed: everyone looks again.
                _ => {
                    for (_, list) in g.waiters.drain() {
                        for (_, tx) in list {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            if g.waiters.is_empty() || closed {
                // Unsubscribed under the lock: a waiter registering next starts a new loop.
                g.following = false;
                return;
            }
        }
    }
}
