//! `minion bench --mode progress-events`: how long a progress report takes to reach the agents'
//! watchers — an agent reports `--records` times on one task (one report in flight, or at
//! `--rate` per second) while `--clients` watchers follow the task's event stream; the latency of
//! a report is from the agent sending it to a watcher parsing it (its commit included).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use minion_client::client::Retry;
use minion_client::wire::TaskIn;
use minion_client::{Client, EventStream};
use reqwest::Method;

use crate::bench::{claim_in, fsync_latency_us, BenchArgs};

/// What one watcher saw: when each report number arrived.
type Arrivals = HashMap<u64, Instant>;

pub async fn run(api: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    let base = args.server.as_str();
    let stats = api.json(Method::GET, "/v1/stats", None, Retry::Safe).await.context("contacting the server")?;
    let durability = stats["storage"]["durability"].as_str().unwrap_or("unknown").to_string();
    let (fsync_p50, fsync_p99) = fsync_latency_us(&args.fsync_probe_dir)?;
    let watchers = args.clients.first().copied().unwrap_or(1).max(1);
    let reports = args.records.clamp(1, 1_000_000);
    let queue = format!("{}-progress", args.queue);
    let id = api.submit(&TaskIn { queue: queue.clone(), lease_ms: Some(3_600_000), ..TaskIn::default() }).await?.id;

    let mut handles = Vec::new();
    for _ in 0..watchers {
        let stream = api.task_events(id, &["progress", "succeeded"], None).await.context("opening an event stream")?;
        handles.push(tokio::spawn(watch(stream)));
    }
    let claimed = api.claim(&claim_in("bench-progress", &queue, 1)).await?;
    let Some(t) = claimed.first() else { bail!("the claim returned nothing") };
    let token = t.lease_token().unwrap_or(0);

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
        api.progress(id, token, None, Some(message.clone())).await?;
        post_us.record(at.elapsed().as_micros() as u64)?;
    }
    let elapsed = started.elapsed();
    api.complete(id, token, None).await?;

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
async fn watch(mut stream: EventStream) -> anyhow::Result<Arrivals> {
    let mut out = Arrivals::new();
    while let Some(ev) = stream.next().await? {
        let now = Instant::now();
        match ev.name.as_str() {
            "succeeded" => return Ok(out),
            "progress" => {
                if let Some(seq) = ev.task_event().transpose()?.and_then(|e| e.seq) {
                    out.entry(seq).or_insert(now);
                }
            }
            _ => {}
        }
    }
    bail!("the event stream ended before the task finished")
}
