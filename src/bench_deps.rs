//! `minion bench --mode dependency-release`: how long a waiting task takes to reach an agent once
//! its last dependency completes. Each round submits a pair in one batch (a dependency, and a
//! task that depends on it by idempotency key), leases the dependency, and completes it while an
//! agent long-polls the dependent's queue; the latency is from sending the complete to that
//! agent's claim answer carrying the dependent. One round at a time, for `--duration-secs` (or
//! `--tasks-max` rounds).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use minion_client::client::Retry;
use minion_client::wire::{DependencyRef, TaskIn};
use minion_client::Client;
use reqwest::Method;

use crate::bench::{claim_in, fsync_latency_us, BenchArgs};

pub async fn run(api: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    let stats = api.json(Method::GET, "/v1/stats", None, Retry::Safe).await.context("contacting the server")?;
    let durability = stats["storage"]["durability"].as_str().unwrap_or("unknown").to_string();
    let (fsync_p50, fsync_p99) = fsync_latency_us(&args.fsync_probe_dir)?;
    let run = format!("{}", std::process::id());
    let (first, second) = (format!("{}-deps-first", args.queue), format!("{}-deps-then", args.queue));

    // The agent of the dependents: long-polls and hands over each claim's arrival time.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let waiter = {
        let (api, queue) = (api.clone(), second.clone());
        tokio::spawn(async move {
            loop {
                let Ok(tasks) = api.claim(&claim_in("bench-dependent", &queue, 1)).await else { continue };
                let at = Instant::now();
                for t in tasks {
                    if tx.send((t.id, at)).is_err() {
                        return;
                    }
                    let _ = api.complete(t.id, t.lease_token().unwrap_or(0), None).await;
                }
            }
        })
    };

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut rounds, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.duration_secs)
        && (args.tasks_max == 0 || rounds < args.tasks_max)
    {
        let key = format!("dep-{run}-{rounds}-{errors}");
        let pair = vec![
            TaskIn { queue: first.clone(), idempotency_key: Some(key.clone()), ..TaskIn::default() },
            TaskIn { queue: second.clone(), depends_on: vec![DependencyRef::Key(key)], ..TaskIn::default() },
        ];
        let Ok(ids) = api.submit_batch(pair).await else {
            errors += 1;
            continue;
        };
        let dependent = ids.last().map(|s| s.id).unwrap_or_default();
        let claimed = api.claim(&claim_in("bench-dependency", &first, 1)).await?;
        let Some(dep) = claimed.first() else { bail!("the dependency was not claimable") };
        let t0 = Instant::now();
        api.complete(dep.id, dep.lease_token().unwrap_or(0), None).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some((id, at))) if id == dependent => {
                    hist.record(at.duration_since(t0).as_micros().max(1) as u64)?;
                    rounds += 1;
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    waiter.abort();
    let secs = started.elapsed().as_secs_f64();
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "# dependency-release server={} durability={durability} fsync_p50={fsync_p50}us fsync_p99={fsync_p99}us",
        args.server
    );
    println!("| rounds | rounds/s | p50 ms | p99 ms | max ms | errors |");
    println!("|-------:|---------:|-------:|-------:|-------:|-------:|");
    println!(
        "| {rounds} | {:.0} | {:.2} | {:.2} | {:.2} | {errors} |",
        rounds as f64 / secs,
        q(0.5),
        q(0.99),
        hist.max() as f64 / 1000.0
    );
    Ok(())
}
