//! `minion worker --exec "<command>"`: a reference agent that runs a shell command per task.
//!
//! The task's payload is the command's standard input; its standard output is the result (JSON if
//! it parses, else a JSON string); exit status 0 completes the task, anything else fails it with
//! the tail of standard error. Standard-error lines of the form `progress: <percent> [message]`
//! are reported as progress. The lease is extended every third of the task's `lease_ms` while the
//! command runs; if it is lost (cancelled, or expired and leased again), the command is killed and
//! nothing is reported. The worker registers as an agent, heartbeats, and on SIGTERM or Ctrl-C
//! drains: it takes nothing new, finishes what it holds, deregisters and exits. `--server` may name
//! several nodes; requests move to the next when one cannot be reached.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use minion_client::wire::{AgentIn, ClaimIn, TaskOut};
use minion_client::Client;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Result bytes read from a command's standard output, at most.
const RESULT_BYTES_MAX: usize = 1 << 20;
/// Standard-error lines kept for a failure message.
const ERROR_LINES_KEPT: usize = 20;

#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    /// Shell command run per task (`sh -c`).
    #[arg(long)]
    pub exec: String,
    /// Queue to serve (repeatable).
    #[arg(long = "queue", required = true)]
    pub queues: Vec<String>,
    /// Node URLs, comma-separated: requests move to the next node when one cannot be reached.
    #[arg(long, env = "MINION_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Agent id (default: minion-worker-<pid>).
    #[arg(long, env = "MINION_WORKER_ID")]
    pub id: Option<String>,
    /// Capability this worker offers (repeatable).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u32,
    /// Agent label `key=value` (repeatable); `pool=<name>` counts the worker in an autoscaled pool.
    #[arg(long = "label", env = "MINION_WORKER_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    #[arg(long, default_value_t = 3_000)]
    pub heartbeat_ms: u64,
    /// Long-poll wait per claim.
    #[arg(long, default_value_t = 10_000)]
    pub wait_ms: u64,
}

struct Worker {
    client: Client,
    id: String,
    exec: String,
}

impl Worker {
    /// Run one leased task to completion or failure, extending its lease meanwhile; if the lease
    /// is lost (the task was cancelled, or it expired and went to another agent), stop the command
    /// and report nothing.
    async fn run(&self, task: TaskOut) {
        let id = task.id;
        let token = task.lease_token().unwrap_or(0);
        let lost = CancellationToken::new();
        let keeper = self.keep_lease(id, token, task.lease_ms, lost.clone());
        let outcome = tokio::select! {
            r = self.execute(&task) => Some(r),
            _ = lost.cancelled() => None,
        };
        keeper.abort();
        let Some(outcome) = outcome else {
            tracing::warn!(task_id = id, "lease lost: the command was stopped and nothing is reported");
            return;
        };
        match outcome {
            Ok(result) => {
                let result = serde_json::value::to_raw_value(&result).ok();
                if let Err(e) = self.client.complete(id, token, result).await {
                    tracing::warn!(task_id = id, error = %e, "could not complete");
                }
            }
            Err(error) => {
                if let Err(e) = self.client.fail(id, token, &error).await {
                    tracing::warn!(task_id = id, error = %e, "could not fail");
                }
            }
        }
    }

    /// Extend the lease every third of `lease_ms` while the command runs. A refusal (cancelled,
    /// finished, or leased again under another token) means the lease is gone: cancel `lost`.
    /// Other failures (a leader change, a timeout) are retried at the next tick.
    fn keep_lease(&self, id: u64, token: u64, lease_ms: u64, lost: CancellationToken) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let every = Duration::from_millis((lease_ms / 3).max(50));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match client.extend(id, token, None).await {
                    Err(e) if e.lease_lost() => {
                        lost.cancel();
                        return;
                    }
                    Err(e) => tracing::debug!(task_id = id, error = %e, "extending the lease"),
                    Ok(_) => {}
                }
            }
        })
    }

    /// Run the command (killed when the returned future is dropped).
    async fn execute(&self, task: &TaskOut) -> Result<Value, String> {
        let id = task.id;
        let mut cmd = tokio::process::Command::new("sh");
        // The producer's trace context, under the name OpenTelemetry SDKs read (`TRACEPARENT`).
        if let Some(tp) = &task.trace_parent {
            cmd.env("TRACEPARENT", tp);
        }
        let mut child = cmd
            .arg("-c")
            .arg(&self.exec)
            .env("MINION_TASK_ID", id.to_string())
            .env("MINION_TASK_KIND", &task.kind)
            .env("MINION_QUEUE", &task.queue)
            .env("MINION_ATTEMPT", task.attempts.len().to_string())
            .env("MINION_LEASE_TOKEN", task.lease_token().unwrap_or(0).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the command: {e}"))?;
        let payload = task.payload.get().to_string();
        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                let _ = stdin.write_all(payload.as_bytes()).await;
            });
        }
        let token = task.lease_token().unwrap_or(0);
        let stderr = child.stderr.take();
        let progress = {
            let client = self.client.clone();
            tokio::spawn(async move {
                let mut kept: Vec<String> = Vec::new();
                let Some(stderr) = stderr else { return kept };
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.strip_prefix("progress:") {
                        let mut parts = rest.trim().splitn(2, ' ');
                        let percent = parts.next().and_then(|p| p.trim_end_matches('%').parse::<u8>().ok());
                        let message = parts.next().map(str::to_string);
                        if let Err(e) = client.progress(id, token, percent, message).await {
                            tracing::debug!(task_id = id, error = %e, "reporting progress");
                        }
                    } else {
                        eprintln!("[task {id}] {line}");
                        kept.push(line);
                        if kept.len() > ERROR_LINES_KEPT {
                            kept.remove(0);
                        }
                    }
                }
                kept
            })
        };
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = stdout.take(RESULT_BYTES_MAX as u64).read_to_end(&mut out).await;
        }
        let status = child.wait().await.map_err(|e| format!("waiting for the command: {e}"))?;
        let kept = progress.await.unwrap_or_default();
        if status.success() {
            let text = String::from_utf8_lossy(&out).trim().to_string();
            Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        } else {
            let tail = kept.join("\n");
            Err(format!("command exited with {status}{}{tail}", if tail.is_empty() { "" } else { ": " }))
        }
    }
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_else(|| format!("minion-worker-{}", std::process::id()));
    let http = minion_client::ClientAuth::from_env()
        .build(reqwest::Client::builder().timeout(Duration::from_millis(args.wait_ms + 30_000)))
        .map_err(anyhow::Error::msg)?;
    let servers = minion_client::Servers::parse(&args.server).map_err(anyhow::Error::msg)?;
    let w = Arc::new(Worker { client: Client::with_http(servers, http), id: id.clone(), exec: args.exec.clone() });
    let concurrency = args.concurrency.max(1);
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.labels {
        let Some((k, v)) = l.split_once('=') else { bail!("--label {l:?} is not key=value") };
        labels.insert(k.to_string(), v.to_string());
    }
    let agent = AgentIn {
        id: id.clone(),
        capabilities: args.capabilities.clone(),
        max_concurrency: concurrency,
        labels,
        ..AgentIn::default()
    };
    w.client.register_agent(&agent).await.with_context(|| format!("registering agent {id} with {}", args.server))?;
    tracing::info!(agent = %id, queues = ?args.queues, "worker registered");
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let (w, stopping) = (w.clone(), stopping.clone());
        let every = Duration::from_millis(args.heartbeat_ms.max(100));
        tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                if let Err(e) = w.client.heartbeat(&w.id, None).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            crate::shutdown_signal().await;
            stopping.store(true, Ordering::Relaxed);
        });
    }
    let running = Arc::new(AtomicU32::new(0));
    while !stopping.load(Ordering::Relaxed) {
        let free = concurrency.saturating_sub(running.load(Ordering::Relaxed));
        if free == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let body = ClaimIn {
            agent_id: w.id.clone(),
            queues: args.queues.clone(),
            capabilities: Vec::new(),
            max: free,
            wait_ms: args.wait_ms,
        };
        let claim = tokio::select! {
            r = w.client.claim(&body) => r,
            _ = wait_for(&stopping) => break,
        };
        let tasks = match claim {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "claim failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for t in tasks {
            running.fetch_add(1, Ordering::Relaxed);
            let (w, running) = (w.clone(), running.clone());
            tokio::spawn(async move {
                w.run(t).await;
                running.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
    // Drain: nothing new, finish what is held, then leave.
    tracing::info!(agent = %id, "draining");
    if let Err(e) = w.client.drain_agent(&id).await {
        tracing::warn!(error = %e, "could not drain");
    }
    while running.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(e) = w.client.deregister_agent(&id).await {
        tracing::warn!(error = %e, "could not deregister");
    }
    tracing::info!(agent = %id, "worker stopped");
    Ok(())
}

async fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
