//! `minion pool --name P --command "…"`: a process pool that follows the autoscaler.
//!
//! It polls the server's desired worker count for pool P and starts or stops local worker
//! processes toward it. Each process runs `sh -c <command>` with `MINION_WORKER_ID` and
//! `MINION_WORKER_LABELS=pool=P` in its environment (which `minion worker` reads), so the workers
//! register as members of the pool. Stopping a worker drains it first (no new tasks), then sends
//! SIGTERM, then SIGKILL after the grace period; a worker that exits on its own is restarted with
//! exponential backoff.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use minion_client::client::Retry;
use minion_client::Servers;
use reqwest::Method;
use tokio::process::{Child, Command};

#[derive(Debug, Args, Clone)]
pub struct PoolArgs {
    /// The pool's name, as configured on the server (`[[pools]]`).
    #[arg(long)]
    pub name: String,
    /// Shell command that runs one worker, e.g. `minion worker --queue q --exec './job.sh'`.
    #[arg(long)]
    pub command: String,
    /// Node URLs, comma-separated: requests move to the next node when one cannot be reached
    /// (passed on to the workers as `MINION_SERVER`).
    #[arg(long, env = "MINION_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// How long a stopping worker gets between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 10_000)]
    pub grace_ms: u64,
    /// How often to read the desired count.
    #[arg(long, default_value_t = 1_000)]
    pub poll_ms: u64,
}

struct Slot {
    id: String,
    child: Child,
    started: Instant,
    /// Set when the pool decided to stop it: when SIGTERM was sent.
    stopping: Option<Instant>,
}

/// Restart delay after the `n`-th consecutive crash: 0.5 s doubling to 30 s.
fn restart_backoff(n: u32) -> Duration {
    Duration::from_millis((500u64 << n.min(6)).min(30_000))
}

fn spawn(args: &PoolArgs, id: &str) -> anyhow::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(&args.command)
        .env("MINION_WORKER_ID", id)
        .env("MINION_WORKER_LABELS", format!("pool={}", args.name))
        .env("MINION_SERVER", &args.server)
        .stdin(Stdio::null())
        // Its own process group: signals reach the shell and everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting worker {id}"))
}

/// Signal the worker's whole process group (the shell and what it started).
fn signal(child: &Child, sig: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg("--").arg(format!("-{pid}")).status();
    }
}

pub async fn run(args: PoolArgs) -> anyhow::Result<()> {
    let http = minion_client::ClientAuth::from_env()
        .build(reqwest::Client::builder().timeout(Duration::from_secs(10)))
        .map_err(anyhow::Error::msg)?;
    let servers = Servers::parse(&args.server).map_err(anyhow::Error::msg)?;
    let client = minion_client::Client::with_http(servers, http);
    let drain = |id: String| {
        let client = client.clone();
        async move {
            if let Err(e) = client.drain_agent(&id).await {
                tracing::debug!(worker = %id, error = %e, "draining");
            }
        }
    };
    let mut slots: Vec<Slot> = Vec::new();
    let mut next = 0u64;
    let mut crashes = 0u32;
    let mut restart_at: Option<Instant> = None;
    let grace = Duration::from_millis(args.grace_ms);
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        // Reap exits: planned stops leave; crashes are restarted after a backoff.
        let mut i = 0;
        while i < slots.len() {
            if let Ok(Some(status)) = slots[i].child.try_wait() {
                let s = slots.remove(i);
                if s.stopping.is_none() {
                    crashes = if s.started.elapsed() > Duration::from_secs(30) { 0 } else { crashes + 1 };
                    let delay = restart_backoff(crashes.saturating_sub(1));
                    tracing::warn!(worker = %s.id, %status, restart_in_ms = delay.as_millis() as u64, "worker exited");
                    restart_at = Some(Instant::now() + delay);
                }
                continue;
            }
            i += 1;
        }
        // Escalate stops past their grace period.
        for s in slots.iter_mut() {
            if s.stopping.is_some_and(|t| t.elapsed() > grace) {
                tracing::warn!(worker = %s.id, "worker did not stop in time; SIGKILL");
                signal(&s.child, "KILL");
                let _ = s.child.start_kill();
            }
        }
        let desired = match client.json(Method::GET, "/v1/autoscaler", None, Retry::Safe).await {
            Ok(v) => v["pools"][&args.name]["desired"].as_u64().map(|d| d as usize),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the desired count; keeping the pool as it is");
                None
            }
        };
        if let Some(desired) = desired {
            let running = slots.iter().filter(|s| s.stopping.is_none()).count();
            let may_start = restart_at.is_none_or(|t| Instant::now() >= t);
            if running < desired && may_start {
                for _ in running..desired {
                    next += 1;
                    let id = format!("{}-{}-{next}", args.name, std::process::id());
                    match spawn(&args, &id) {
                        Ok(child) => {
                            tracing::info!(worker = %id, "worker started");
                            slots.push(Slot { id, child, started: Instant::now(), stopping: None });
                        }
                        Err(e) => tracing::error!(error = %e, "cannot start a worker"),
                    }
                }
                restart_at = None;
            } else if running > desired {
                // Stop the newest first: drain, then SIGTERM.
                let mut excess = running - desired;
                for s in slots.iter_mut().rev().filter(|s| s.stopping.is_none()) {
                    if excess == 0 {
                        break;
                    }
                    drain(s.id.clone()).await;
                    signal(&s.child, "TERM");
                    s.stopping = Some(Instant::now());
                    tracing::info!(worker = %s.id, "worker stopping");
                    excess -= 1;
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(args.poll_ms)) => {}
        }
    }
    // Stop everything: drain, SIGTERM, wait up to the grace period, then SIGKILL.
    tracing::info!(workers = slots.len(), "pool stopping");
    for s in slots.iter_mut() {
        drain(s.id.clone()).await;
        signal(&s.child, "TERM");
    }
    for s in slots.iter_mut() {
        if tokio::time::timeout(grace, s.child.wait()).await.is_err() {
            signal(&s.child, "KILL");
            let _ = s.child.kill().await;
        }
    }
    Ok(())
}
