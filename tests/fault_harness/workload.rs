//! The clients of a fault run: producers submitting with idempotency keys (and retrying an
//! unknown outcome under the same key), agents claiming, reporting progress, completing and
//! failing, and a reader reading tasks back. Every request goes into one recorded history with
//! its invocation and completion time and its outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minion_checker::{Call, FinalTask, Granted, Ledger, Outcome, Recorder, Ret, View};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Attempts per task: enough that the workload's failures rarely make a task dead.
pub const MAX_ATTEMPTS: u32 = 20;
/// Lease of the workload's tasks: a lease whose claim's answer was lost expires within the run.
pub const LEASE_MS: u64 = 3_000;

/// Process numbers in the history.
pub const PROBE: usize = 90;

pub struct Workload {
    pub rec: Arc<Recorder>,
    pub bases: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    /// Read with `Minion-Consistency: stale` (from whichever node is asked): only for showing
    /// that the checker catches stale reads.
    pub stale_reads: bool,
    http: reqwest::Client,
}

/// Send a request; `None` when the outcome is unknown (timeout, broken connection, 5xx).
pub async fn send(http: &reqwest::Client, url: &str, body: Option<Value>, stale: bool) -> Option<(u16, Value)> {
    let req = match body {
        Some(b) => http.post(url).json(&b),
        None => http.get(url),
    };
    let req = if stale { req.header("Minion-Consistency", "stale") } else { req };
    let resp = req.timeout(Duration::from_secs(6)).send().await.ok()?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.ok()?;
    (status < 500).then_some((status, v))
}

fn outcome(ans: Option<(u16, Value)>, ok: impl FnOnce(&Value) -> Ret) -> Outcome {
    match ans {
        None => Outcome::Unknown,
        Some((s, v)) if (200..300).contains(&s) => Outcome::Ok(ok(&v)),
        Some((s, v)) => Outcome::Failed(v["error"]["code"].as_str().map_or_else(|| s.to_string(), String::from)),
    }
}

pub fn view_of(t: &Value) -> View {
    View {
        state: t["state"].as_str().unwrap_or_default().to_string(),
        attempts: t["attempts"].as_array().map_or(0, |a| a.len() as u32),
        token: t["lease"]["token"].as_u64(),
    }
}

/// The ledger as the checker takes it, from `GET /v1/tasks` pages.
pub fn ledger_of(tasks: &[Value]) -> Ledger {
    tasks
        .iter()
        .map(|t| FinalTask {
            id: t["id"].as_u64().expect("id"),
            key: t["idempotency_key"].as_str().map(String::from),
            max_attempts: t["max_attempts"].as_u64().unwrap_or(0) as u32,
            view: view_of(t),
            attempts: t["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    (
                        a["number"].as_u64().unwrap_or(0) as u32,
                        a["lease_token"].as_u64().unwrap_or(0),
                        a["agent_id"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        })
        .collect()
}

impl Workload {
    pub fn new(bases: Vec<String>) -> Workload {
        Workload {
            rec: Arc::default(),
            bases: Arc::new(Mutex::new(bases)),
            stop: Arc::default(),
            acked: Arc::default(),
            stale_reads: false,
            http: reqwest::Client::new(),
        }
    }

    fn clone_handle(&self) -> Workload {
        Workload {
            rec: self.rec.clone(),
            bases: self.bases.clone(),
            stop: self.stop.clone(),
            acked: self.acked.clone(),
            stale_reads: self.stale_reads,
            http: self.http.clone(),
        }
    }

    fn base(&self, rng: &mut StdRng) -> String {
        let b = self.bases.lock().expect("lock");
        b[rng.gen_range(0..b.len())].clone()
    }

    /// Submit under `key` through `base`, recorded as `process`.
    pub async fn submit(&self, process: usize, base: &str, queue: &str, key: &str) -> Outcome {
        let call = Call::Submit { key: key.into(), max_attempts: MAX_ATTEMPTS };
        let body = json!({"queue": queue, "payload": {"key": key}, "idempotency_key": key,
            "max_attempts": MAX_ATTEMPTS, "lease_ms": LEASE_MS});
        let t0 = self.rec.now();
        let ans = send(&self.http, &format!("{base}/v1/tasks"), Some(body), false).await;
        let out = outcome(ans, |v| Ret::Task(v["id"].as_u64().unwrap_or(0)));
        if let Outcome::Ok(Ret::Task(id)) = &out {
            self.acked.lock().expect("lock").push(*id);
        }
        self.rec.record(process, call, t0, out.clone());
        out
    }

    async fn producer(self, seed: u64, who: usize) {
        let mut rng = StdRng::seed_from_u64(seed ^ (who as u64) << 32);
        let mut retry: Vec<String> = Vec::new();
        let mut n = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let key = match retry.pop() {
                Some(k) if rng.gen_bool(0.5) => k,
                other => {
                    retry.extend(other);
                    n += 1;
                    format!("p{who}-{n}")
                }
            };
            let base = self.base(&mut rng);
            if matches!(self.submit(who, &base, "w", &key).await, Outcome::Unknown) {
                retry.push(key);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn agent(self, seed: u64, who: usize) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xa6e0 ^ (who as u64) << 40);
        let agent_id = format!("agent-{who}");
        let process = 10 + who;
        while !self.stop.load(Ordering::Relaxed) {
            let base = self.base(&mut rng);
            let body = json!({"agent_id": agent_id, "queues": ["w"], "max": 3, "wait_ms": 300});
            let t0 = self.rec.now();
            let ans = send(&self.http, &format!("{base}/v1/claims"), Some(body), false).await;
            let out = outcome(ans, |v| {
                Ret::Leases(
                    v["tasks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| Granted {
                            task: t["id"].as_u64().unwrap_or(0),
                            token: t["lease"]["token"].as_u64().unwrap_or(0),
                            attempt: t["attempts"]
                                .as_array()
                                .and_then(|a| a.last())
                                .and_then(|a| a["number"].as_u64())
                                .unwrap_or(0) as u32,
                        })
                        .collect(),
                )
            });
            self.rec.record(process, Call::Claim { agent: agent_id.clone() }, t0, out.clone());
            let Outcome::Ok(Ret::Leases(leases)) = out else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            for g in leases {
                let mut steps = Vec::new();
                if rng.gen_bool(0.3) {
                    steps.push(Call::Progress { task: g.task, token: g.token });
                }
                steps.push(if rng.gen_bool(0.85) {
                    Call::Complete { task: g.task, token: g.token }
                } else {
                    Call::Fail { task: g.task, token: g.token }
                });
                for call in steps {
                    let (path, body) = match &call {
                        Call::Progress { .. } => ("progress", json!({"lease_token": g.token, "message": "half"})),
                        Call::Complete { .. } => {
                            ("complete", json!({"lease_token": g.token, "result": {"by": agent_id}}))
                        }
                        _ => ("fail", json!({"lease_token": g.token, "error": "injected"})),
                    };
                    let base = self.base(&mut rng);
                    let t0 = self.rec.now();
                    let ans = send(&self.http, &format!("{base}/v1/tasks/{}/{path}", g.task), Some(body), false).await;
                    self.rec.record(process, call, t0, outcome(ans, |_| Ret::Done));
                }
            }
        }
    }

    async fn reader(self, seed: u64, who: usize) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7ead ^ (who as u64) << 48);
        let process = 20 + who;
        while !self.stop.load(Ordering::Relaxed) {
            let id = {
                let a = self.acked.lock().expect("lock");
                // Mostly recent tasks, where the action is.
                (!a.is_empty()).then(|| a[a.len() - 1 - rng.gen_range(0..a.len().min(30))])
            };
            let Some(id) = id else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let base = self.base(&mut rng);
            let t0 = self.rec.now();
            let ans = send(&self.http, &format!("{base}/v1/tasks/{id}"), None, self.stale_reads).await;
            let out = match ans {
                Some((404, _)) => Outcome::Ok(Ret::View(None)),
                other => outcome(other, |v| Ret::View(Some(view_of(v)))),
            };
            // A read that did not answer changed nothing and tells nothing.
            if !matches!(out, Outcome::Unknown) {
                self.rec.record(process, Call::Read { task: id }, t0, out);
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
        }
    }

    /// Start 3 producers, 2 agents and 1 reader.
    pub fn start(&self, seed: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let mut w = Vec::new();
        for who in 0..3 {
            w.push(tokio::spawn(self.clone_handle().producer(seed, who)));
        }
        for who in 0..2 {
            w.push(tokio::spawn(self.clone_handle().agent(seed, who)));
        }
        w.push(tokio::spawn(self.clone_handle().reader(seed, 0)));
        w
    }

    pub async fn stop(&self, workers: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.expect("worker");
        }
    }
}
