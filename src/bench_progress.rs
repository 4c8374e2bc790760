//! `minion bench --mode progress-events`: how long a progress report takes to reach the agents'
//! watchers — an agent reports `--records` times on one task (one report in flight, or at
//! `--rate` per second) while `--clients` watchers follow the task's event stream; the latency of
//! a report is from the agent sending it to a watcher parsing it (its commit included).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::bench::{fsync_latency_us, post, BenchArgs};

/// What one watcher saw: when each report number arrived.
type Arrivals = HashMap<u64, Instant>;

pub async fn run(http: &reqwest::Client, args: &BenchArgs) -> anyhow::Result<()> {
    let base = args.server.as_str();
    let stats: Value =
        http.get(format!("{base}/v1/stats")).send().await.context("contacting the server")?.json().await?;
    let durability = stats["storage"]["durability"].as_str().unwrap_or("unknown").to_string();
    let (fsync_p50, fsync_p99) = fsync_latency_us(&args.fsync_probe_dir)?;
    let watchers = args.clients.first().copied().unwrap_or(1).max(1);
    let reports = args.records.clamp(1, 1_000_000);
    let queue = format!("{}-progress", args.queue);
    let task = post(http, base, "/v1/tasks", &json!({"queue": queue, "payload": {}, "lease_ms": 3_600_000})).await?;
    let id = task["id"].as_u64().context("submit answered no id")?;

    let mut handles = Vec::new();
    for _ in 0..watchers {
        let resp = http
            .get(format!("{base}/v1/tasks/{id}/events?types=progress,succeeded"))
            .header("accept", "text/event-stream")
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("opening an event stream: {}", resp.status());
        }
        handles.push(tokio::spawn(watch(resp)));
    }
    let claimed =
        post(http, base, "/v1/claims", &json!({"agent_id": "bench-progress", "queues": [queue], "max": 1})).await?;
    let Some(t) = claimed["tasks"].as_array().and_then(|a| a.first()) else { bail!("the claim returned nothing") };
    let token = t["lease"]["token"].as_u64().unwrap_or(0);

    let message = "x".repeat(args.payload_bytes.clamp(1, 4_096));
    let mut sent = Vec::with_capacity(reports as usize);
    let mut post_us = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for i in 0..reports {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let at = Instant::now();
        sent.push(at);
        post(http, base, &format!("/v1/tasks/{id}/progress"), &json!({"lease_token": token, "message": message}))
            .await?;
        post_us.record(at.elapsed().as_micros() as u64)?;
    }
    let elapsed = started.elapsed();
    post(http, base, &format!("/v1/tasks/{id}/complete"), &json!({"lease_token": token})).await?;

    let mut latency_us = Histogram::<u64>::new(3)?;
    let mut missing = 0u64;
    for h in handles {
        let arrivals =
            tokio::time::timeout(Duration::from_secs(30), h).await.context("a watcher did not finish")???;
        for (seq, at) in sent.iter().enumerate() {
            match arrivals.get(&(seq as u64)) {
                Some(arrived) => latency_us.record(arrived.saturating_duration_since(*at).as_micros() as u64)?,
                None => missing += 1,
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "minion bench: mode=progress-events server={base} durability={durability} fdatasync p50={fsync_p50}us p99={fsync_p99}us message={}B",
        message.len()
    );
    println!("| watchers | reports | reports/s | report POST p50 ms | to watcher p50 ms | p99 ms | max ms | missing |");
    println!("|---------:|--------:|----------:|-------------------:|------------------:|-------:|-------:|--------:|");
    println!(
        "| {watchers} | {reports} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {missing} |",
        reports as f64 / elapsed.as_secs_f64(),
        ms(&post_us, 0.5),
        ms(&latency_us, 0.5),
        ms(&latency_us, 0.99),
        latency_us.max() as f64 / 1000.0,
    );
    if missing > 0 {
        bail!("{missing} reports never reached a watcher");
    }
    Ok(())
}

/// Read an event stream until the task succeeds; when each progress number arrived.
async fn watch(mut resp: reqwest::Response) -> anyhow::Result<Arrivals> {
    let mut out = Arrivals::new();
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let now = Instant::now();
            let name = field(&block, "event").unwrap_or("message");
            if name == "succeeded" {
                return Ok(out);
            }
            if name == "progress" {
                let data: Value = serde_json::from_str(field(&block, "data").unwrap_or("{}"))?;
                if let Some(seq) = data["seq"].as_u64() {
                    out.entry(seq).or_insert(now);
                }
            }
        }
    }
    bail!("the event stream ended before the task finished")
}

/// The value of one field of an SSE event block (single-line fields only).
fn field<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.strip_prefix(' ').unwrap_or(v)))
}
