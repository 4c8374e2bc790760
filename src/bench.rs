//! `minion bench`: an end-to-end load generator against a running server.
//!
//! Reports throughput and latency percentiles for each client count, with the server's durability
//! tier and this machine's measured fdatasync latency, so figures are never compared across tiers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use minion_client::client::Retry;
use minion_client::wire::{AckIn, AckOutcome, AgentIn, ClaimIn, TaskIn};
use minion_client::Client;
use reqwest::Method;
use serde_json::json;
use serde_json::value::RawValue;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    /// One task per request.
    Submit,
    /// `--batch` tasks per request (an atomic batch).
    Batch,
    /// Submit one task, claim one, complete it: a full lifecycle per iteration.
    Lifecycle,
    /// The same in bursts: `--batch` tasks (with idempotency keys) submitted in one request,
    /// claimed in one, completed in one (`POST /v1/acks`).
    BatchLifecycle,
    /// `--clients` registered agents long-poll; one task at a time is submitted, and the latency
    /// is from the submit request to the claim response that carries the task.
    Dispatch,
    /// One client submits with idempotency keys, one request at a time (1 s timeout), moving to
    /// the next of the comma-separated `--server` nodes after a failure. Reports the longest gap
    /// between two acknowledged writes: kill the leader meanwhile to measure failover.
    Availability,
    /// `--records` records produced into a Kafka topic (librdkafka's mock cluster, in this
    /// process) while an adapter ingests them; first produced → last committed.
    IngestKafka,
    /// The same with a Redis stream at `--redis-url`.
    IngestRedis,
    /// One agent reports progress `--records` times on one task while the first of `--clients`
    /// watchers follow its event stream: latency from a report's send to each watcher.
    ProgressEvents,
    /// Pairs of a task and one that depends on it: latency from completing the first to an
    /// agent's claim of the second (one pair at a time).
    DependencyRelease,
    /// A schedule fires every second while an agent long-polls its queue: lateness of each run
    /// from its due time to its task's creation and to the agent's claim.
    ScheduleJitter,
    /// `GET /v1/tasks/{id}` of tasks picked at random among ids 1 to `--records` (reads of a
    /// retained ledger: finished tasks come from disk or the state store's cache).
    Read,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, env = "MINION_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    #[arg(long, value_enum, default_value = "submit")]
    pub mode: Mode,
    /// Comma-separated client counts to run one after another.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Tasks per request in `batch` mode.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Seconds per client count.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Payload bytes per task.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    #[arg(long, default_value = "bench")]
    pub queue: String,
    /// Requests per second over all clients at most (0: as fast as they go). Each client keeps
    /// its share of the schedule, so a slow answer is followed by a catch-up, not a lower rate.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Records per ingest run (`ingest-*` modes); the id range of `read`.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Kafka partitions (`ingest-kafka`).
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Stop each run once this many tasks are done (0: run for `--duration-secs` only).
    #[arg(long, default_value_t = 0)]
    pub tasks_max: u64,
    /// Submit with an idempotency key each (`lifecycle` mode): exercises the dedup store.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Directory in which to measure fdatasync latency (the server's data disk).
    #[arg(long, default_value = ".")]
    pub fsync_probe_dir: std::path::PathBuf,
}

struct RunResult {
    clients: usize,
    ops: u64,
    tasks: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let http = minion_client::ClientAuth::from_env()
        .build(reqwest::Client::builder().pool_max_idle_per_host(1024))
        .map_err(anyhow::Error::msg)?;
    if args.mode == Mode::Availability {
        return run_availability(&http, &args).await;
    }
    let servers = minion_client::Servers::parse(&args.server).map_err(anyhow::Error::msg)?;
    let api = Client::with_http(servers, http.clone());
    if matches!(args.mode, Mode::IngestKafka | Mode::IngestRedis) {
        return run_ingest(&api, &args).await;
    }
    if args.mode == Mode::ProgressEvents {
        return crate::bench_progress::run(&api, &args).await;
    }
    if args.mode == Mode::DependencyRelease {
        return crate::bench_deps::run(&api, &args).await;
    }
    if args.mode == Mode::ScheduleJitter {
        return crate::bench_schedule::run(&api, &args).await;
    }
    let stats = api
        .json(Method::GET, "/v1/stats", None, Retry::Safe)
        .await
        .with_context(|| format!("contacting {}", args.server))?;
    let durability = stats["storage"]["durability"].as_str().unwrap_or("unknown").to_string();
    let (fsync_p50, fsync_p99) = fsync_latency_us(&args.fsync_probe_dir)?;
    println!(
        "minion bench: mode={:?} server={} durability={} fdatasync p50={}us p99={}us payload={}B{}",
        args.mode,
        args.server,
        durability,
        fsync_p50,
        fsync_p99,
        args.payload_bytes,
        if matches!(args.mode, Mode::Batch | Mode::BatchLifecycle) {
            format!(" batch={}", args.batch)
        } else {
            String::new()
        }
    );
    println!("| clients | requests/s | tasks/s | p50 ms | p99 ms | max ms | errors |");
    println!("|--------:|-----------:|--------:|-------:|-------:|-------:|-------:|");
    for &clients in &args.clients {
        let r = if args.mode == Mode::Dispatch {
            run_dispatch(&api, &args, clients).await?
        } else {
            run_one(&api, &args, clients).await?
        };
        let secs = r.elapsed.as_secs_f64();
        let q = |p: f64| r.latency_us.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            r.clients,
            r.ops as f64 / secs,
            r.tasks as f64 / secs,
            q(0.5),
            q(0.99),
            r.latency_us.max() as f64 / 1000.0,
            r.errors
        );
    }
    Ok(())
}

async fn run_one(api: &Client, args: &BenchArgs, clients: usize) -> anyhow::Result<RunResult> {
    if clients == 0 {
        bail!("--clients must be positive");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let payload =
        serde_json::value::to_raw_value(&json!({ "data": "x".repeat(args.payload_bytes.saturating_sub(12)) }))?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let api = api.clone();
        let stop = stop.clone();
        let done = done.clone();
        let tasks_max = args.tasks_max;
        let queue = format!("{}-{:?}-{clients}", args.queue, args.mode).to_lowercase();
        let payload = payload.clone();
        let (mode, batch, records, idempotency_keys) = (args.mode, args.batch, args.records, args.idempotency_keys);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(c as u64);
        // With a rate: this client's requests are due every `every`, starting staggered.
        let every = (args.rate > 0.0).then(|| Duration::from_secs_f64(clients as f64 / args.rate));
        handles.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut ops, mut tasks, mut errors, mut failing) = (0u64, 0u64, 0u64, 0u32);
            let agent = format!("bench-agent-{c}");
            let mut due = tokio::time::Instant::now() + every.map_or(Duration::ZERO, |e| e * c as u32 / clients as u32);
            while !stop.load(Ordering::Relaxed) {
                if let Some(every) = every {
                    tokio::time::sleep_until(due).await;
                    due += every;
                }
                let t0 = Instant::now();
                let ok = match mode {
                    Mode::Submit => api.submit(&task(&queue, &payload, None)).await.map(|_| 1).map_err(Into::into),
                    Mode::Batch => {
                        let list = (0..batch).map(|_| task(&queue, &payload, None)).collect();
                        api.submit_batch(list).await.map(|_| batch as u64).map_err(Into::into)
                    }
                    Mode::Lifecycle => {
                        let key = idempotency_keys.then(|| format!("{agent}-{ops}-{errors}"));
                        lifecycle(&api, &queue, &agent, &payload, key).await
                    }
                    Mode::Read => {
                        let id = rand::Rng::gen_range(&mut rng, 1..=records.max(1));
                        api.task(id).await.map(|_| 1).map_err(Into::into)
                    }
                    Mode::BatchLifecycle => {
                        let key = format!("{agent}-{ops}-{errors}");
                        batch_lifecycle(&api, &queue, &agent, &payload, batch, &key).await
                    }
                    Mode::Dispatch
                    | Mode::Availability
                    | Mode::IngestKafka
                    | Mode::IngestRedis
                    | Mode::ProgressEvents
                    | Mode::DependencyRelease
                    | Mode::ScheduleJitter => Ok(0),
                };
                match ok {
                    Ok(n) => {
                        failing = 0;
                        ops += 1;
                        tasks += n;
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        if tasks_max > 0 && done.fetch_add(n, Ordering::Relaxed) + n >= tasks_max {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        failing += 1;
                        // The server is gone (or refuses everything): end the run, not a long loop.
                        if failing == 100 {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            (ops, tasks, errors, hist)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut r = RunResult {
        clients,
        ops: 0,
        tasks: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for h in handles {
        let (ops, tasks, errors, hist) = h.await?;
        r.ops += ops;
        r.tasks += tasks;
        r.errors += errors;
        r.latency_us.add(hist)?;
    }
    r.elapsed = started.elapsed();
    Ok(r)
}

/// A task of the bench's queue with its payload.
fn task(queue: &str, payload: &RawValue, idempotency_key: Option<String>) -> TaskIn {
    TaskIn { queue: queue.to_string(), payload: Some(payload.to_owned()), idempotency_key, ..TaskIn::default() }
}

/// A claim of up to `max` tasks, long-polling up to a second.
pub(crate) fn claim_in(agent: &str, queue: &str, max: u32) -> ClaimIn {
    ClaimIn {
        agent_id: agent.to_string(),
        queues: vec![queue.to_string()],
        capabilities: Vec::new(),
        max,
        wait_ms: 1000,
    }
}

fn ok_result() -> Box<RawValue> {
    RawValue::from_string(r#"{"ok":true}"#.to_string()).expect("valid JSON")
}

/// Submit → claim → complete. Counts one completed task.
async fn lifecycle(
    api: &Client,
    queue: &str,
    agent: &str,
    payload: &RawValue,
    key: Option<String>,
) -> anyhow::Result<u64> {
    api.submit(&task(queue, payload, key)).await?;
    let claimed = api.claim(&claim_in(agent, queue, 1)).await?;
    let Some(t) = claimed.first() else { bail!("claim returned nothing") };
    api.complete(t.id, t.lease_token().unwrap_or(0), Some(ok_result())).await?;
    Ok(1)
}

/// `batch` tasks submitted in one request (idempotency keys `{key}-{i}`), claimed in one,
/// completed in one. Counts the tasks completed.
async fn batch_lifecycle(
    api: &Client,
    queue: &str,
    agent: &str,
    payload: &RawValue,
    batch: usize,
    key: &str,
) -> anyhow::Result<u64> {
    let list = (0..batch).map(|i| task(queue, payload, Some(format!("{key}-{i}")))).collect();
    api.submit_batch(list).await?;
    let claimed = api.claim(&claim_in(agent, queue, batch as u32)).await?;
    let acks: Vec<AckIn> = claimed
        .iter()
        .map(|t| AckIn {
            id: t.id,
            lease_token: t.lease_token().unwrap_or(0),
            outcome: AckOutcome::Complete,
            result: Some(ok_result()),
            error: None,
        })
        .collect();
    if acks.is_empty() {
        bail!("claim returned nothing");
    }
    let results = api.acks(acks).await?;
    Ok(results.iter().filter(|r| r.ok).count() as u64)
}

async fn run_ingest(api: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    use minion_adapters::ingest::bench;
    let stats = api.json(Method::GET, "/v1/stats", None, Retry::Safe).await?;
    let durability = stats["storage"]["durability"].as_str().unwrap_or("unknown").to_string();
    let (fsync_p50, fsync_p99) = fsync_latency_us(&args.fsync_probe_dir)?;
    let batch = args.batch.clamp(1, 10_000);
    let (what, r) = match args.mode {
        Mode::IngestKafka => (
            format!("kafka (mock cluster, {} partitions)", args.partitions),
            bench::kafka(&args.server, args.records, args.payload_bytes, args.partitions, batch).await?,
        ),
        _ => (
            format!("redis ({})", args.redis_url),
            bench::redis(&args.server, &args.redis_url, args.records, args.payload_bytes, batch).await?,
        ),
    };
    println!(
        "minion bench: mode={:?} server={} durability={durability} fdatasync p50={fsync_p50}us p99={fsync_p99}us payload={}B batch={batch}",
        args.mode, args.server, args.payload_bytes
    );
    println!(
        "{what}: {} records in {:.2} s = {:.0} records/s end to end (producing alone took {:.2} s; {} commits to Minion)",
        r.records,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.produce_elapsed.as_secs_f64(),
        r.batches
    );
    Ok(())
}

/// Not on the typed client on purpose: this mode measures failover itself — its own 1 s timeout,
/// its own move to the next node — so that the gaps it reports are the cluster's, not the
/// client's retry policy.
async fn run_availability(http: &reqwest::Client, args: &BenchArgs) -> anyhow::Result<()> {
    let servers: Vec<&str> = args.server.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if servers.is_empty() {
        bail!("--server must name at least one node");
    }
    let run = format!("{:x}", rand::random::<u64>());
    let payload = json!("x".repeat(args.payload_bytes));
    let mut at = 0;
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    let mut last_ack = started;
    let mut longest = (Duration::ZERO, 0.0f64);
    let mut n = 0u64;
    // A key is retried (possibly on another node) until acknowledged: no write is lost or doubled.
    let mut key = format!("avail-{run}-{n}");
    while started.elapsed() < Duration::from_secs(args.duration_secs) {
        let base = servers[at % servers.len()];
        let sent = Instant::now();
        let body = json!({"queue": args.queue, "payload": payload, "idempotency_key": key});
        let res = http.post(format!("{base}/v1/tasks")).json(&body).timeout(Duration::from_secs(1)).send().await;
        match res {
            Ok(r) if r.status().is_success() => {
                let now = Instant::now();
                latency_us.record((now - sent).as_micros().max(1) as u64)?;
                if now - last_ack > longest.0 {
                    longest = (now - last_ack, (last_ack - started).as_secs_f64());
                }
                last_ack = now;
                ok += 1;
                n += 1;
                key = format!("avail-{run}-{n}");
            }
            _ => {
                failed += 1;
                at += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    println!(
        "minion bench: mode=availability servers={} duration={}s acknowledged={ok} failed_attempts={failed} p50={:.2}ms p99={:.2}ms",
        servers.join(","),
        args.duration_secs,
        latency_us.value_at_quantile(0.5) as f64 / 1000.0,
        latency_us.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "longest gap between acknowledged writes: {:.0} ms (starting {:.1} s into the run)",
        longest.0.as_secs_f64() * 1000.0,
        longest.1
    );
    Ok(())
}

/// fdatasync latency (p50, p99) in µs of 4 KiB appends to a scratch file in `dir`.
pub fn fsync_latency_us(dir: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    use std::io::Write;
    let path = dir.join(format!(".minion-fsync-probe-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
    let block = [0u8; 4096];
    for _ in 0..200 {
        f.write_all(&block)?;
        let t0 = Instant::now();
        f.sync_data()?;
        hist.record(t0.elapsed().as_micros().max(1) as u64)?;
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok((hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
}

/// Dispatch latency: agents wait in long-polls; each submitted task's latency runs from the
/// submit request to the claim response that delivers it.
async fn run_dispatch(api: &Client, args: &BenchArgs, agents: usize) -> anyhow::Result<RunResult> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let queue = format!("{}-dispatch-{agents}", args.queue);
    let stop = Arc::new(AtomicBool::new(false));
    let delivered: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut handles = Vec::new();
    for a in 0..agents {
        let id = format!("bench-dispatch-{agents}-{a}");
        api.register_agent(&AgentIn { id: id.clone(), max_concurrency: 1, ..AgentIn::default() }).await?;
        let (api, queue, stop, delivered, tx) =
            (api.clone(), queue.clone(), stop.clone(), delivered.clone(), tx.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(tasks) = api.claim(&claim_in(&id, &queue, 1)).await else { continue };
                for t in tasks {
                    delivered.lock().unwrap_or_else(|p| p.into_inner()).insert(t.id, Instant::now());
                    let _ = tx.send(t.id);
                    let _ = api.complete(t.id, t.lease_token().unwrap_or(0), None).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ops, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.duration_secs) {
        let t0 = Instant::now();
        let Ok(submitted) = api.submit(&TaskIn { queue: queue.clone(), ..TaskIn::default() }).await else {
            errors += 1;
            continue;
        };
        let id = submitted.id;
        // Wait for the delivery of this task (earlier ones were already drained).
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(got)) if got == id => break,
                Ok(Some(_)) => continue,
                _ => {
                    errors += 1;
                    break;
                }
            }
        }
        if let Some(at) = delivered.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
            hist.record(at.duration_since(t0).as_micros().max(1) as u64)?;
            ops += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    Ok(RunResult { clients: agents, ops, tasks: ops, errors, elapsed: started.elapsed(), latency_us: hist })
}
