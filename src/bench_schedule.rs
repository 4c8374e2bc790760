//! `minion bench --mode schedule-jitter`: how late scheduled runs reach an agent. A schedule fires
//! every second into a queue of its own while an agent long-polls that queue; for each run, the
//! due time (from the run's idempotency key `schedule:{name}:{due ms}`) is compared with the
//! task's creation time (the engine clock of the log entry that fired it) and with the wall time
//! the agent's claim answer arrived. Runs for `--duration-secs`; the schedule is deleted at the end.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use minion_client::client::Retry;
use minion_client::Client;
use reqwest::Method;
use serde_json::json;

use crate::bench::{claim_in, fsync_latency_us, BenchArgs};

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub async fn run(api: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    let stats = api.json(Method::GET, "/v1/stats", None, Retry::Safe).await.context("contacting the server")?;
    let durability = stats["storage"]["durability"].as_str().unwrap_or("unknown").to_string();
    let (fsync_p50, fsync_p99) = fsync_latency_us(&args.fsync_probe_dir)?;
    let name = format!("{}-jitter-{}", args.queue, std::process::id());
    let path = format!("/v1/schedules/{name}");
    let def = json!({"every_ms": 1000, "task": {"queue": name, "kind": "jitter"}});
    api.json(Method::PUT, &path, Some(&def), Retry::Safe).await.context("setting the schedule")?;

    let prefix = format!("schedule:{name}:");
    let mut created = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let mut claimed = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let (mut runs, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.duration_secs) {
        let Ok(tasks) = api.claim(&claim_in("bench-jitter", &name, 10)).await else {
            errors += 1;
            continue;
        };
        let at = wall_ms();
        for t in tasks {
            let due = t.idempotency_key.as_deref().and_then(|k| k.strip_prefix(&prefix)?.parse::<u64>().ok());
            let Some(due) = due else {
                errors += 1;
                continue;
            };
            created.record(t.created_ms.saturating_sub(due).max(1))?;
            claimed.record(at.saturating_sub(due).max(1))?;
            runs += 1;
            let _ = api.complete(t.id, t.lease_token().unwrap_or(0), None).await;
        }
    }
    let fired = api.json(Method::GET, &path, None, Retry::Safe).await?;
    api.json(Method::DELETE, &path, None, Retry::Safe).await.context("deleting the schedule")?;
    println!(
        "# schedule-jitter server={} durability={durability} fsync_p50={fsync_p50}us fsync_p99={fsync_p99}us",
        args.server
    );
    println!(
        "| runs | fired | skipped | due → created p50 / p99 / max ms | due → claimed p50 / p99 / max ms | errors |"
    );
    println!("|-----:|------:|--------:|------:|------:|-------:|");
    let q = |h: &Histogram<u64>| format!("{} / {} / {}", h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max());
    println!("| {runs} | {} | {} | {} | {} | {errors} |", fired["fired"], fired["skipped"], q(&created), q(&claimed));
    Ok(())
}
