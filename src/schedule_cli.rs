//! `minion schedule`: set, show, list and delete schedules.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{parse_period, ClientArgs};
use crate::client::{print_json, s, Client};

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Create or replace a schedule: when (--cron, with --timezone, or --every) and the task each
    /// run submits (--queue, --kind, --payload, --priority).
    Set {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        /// A cron expression: 5 fields, or 6 with seconds first (e.g. "*/30 * * * * *").
        #[arg(long, conflicts_with = "every", required_unless_present = "every")]
        cron: Option<String>,
        /// The cron expression's IANA time zone (default UTC).
        #[arg(long, requires = "cron")]
        timezone: Option<String>,
        /// A fixed interval from now, as a number with a unit (ms, s, m, h or d), e.g. 30s.
        #[arg(long, value_parser = parse_period)]
        every: Option<u64>,
        #[arg(long)]
        queue: String,
        #[arg(long, default_value = "")]
        kind: String,
        /// JSON payload of each run's task.
        #[arg(long, default_value = "null")]
        payload: String,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Fire up to N runs missed while no leader fired them (default: skip them).
        #[arg(long, value_name = "N")]
        catch_up: Option<u32>,
        /// Fire nothing until set again without --paused.
        #[arg(long)]
        paused: bool,
    },
    /// One schedule: when, its task, next due time, last run, counts.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
    },
    /// Every schedule.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a schedule (the tasks it created stay).
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
    },
}

pub async fn run(cmd: ScheduleCmd) -> anyhow::Result<()> {
    match cmd {
        ScheduleCmd::Set { client, name, cron, timezone, every, queue, kind, payload, priority, catch_up, paused } => {
            let payload: Value =
                serde_json::from_str(&payload).map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}"))?;
            let body = json!({
                "cron": cron,
                "timezone": timezone,
                "every_ms": every,
                "task": {"queue": queue, "kind": kind, "payload": payload, "priority": priority},
                "missed": if catch_up.is_some() { "catch_up" } else { "skip" },
                "catch_up": catch_up,
                "paused": paused,
            });
            let c = Client::new(&client)?;
            let out = c.put(&format!("/v1/schedules/{name}"), body).await?;
            show(&client, &out)
        }
        ScheduleCmd::Get { client, name } => {
            let out = Client::new(&client)?.get(&format!("/v1/schedules/{name}"), &[]).await?;
            show(&client, &out)
        }
        ScheduleCmd::List { client } => {
            let out = Client::new(&client)?.get("/v1/schedules", &[]).await?;
            if client.json {
                return print_json(&out);
            }
            println!(
                "{:<24} {:<28} {:<16} {:>15} {:>8} {:>8}",
                "NAME", "WHEN", "QUEUE", "NEXT (epoch ms)", "FIRED", "SKIPPED"
            );
            for sc in out["schedules"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<28} {:<16} {:>15} {:>8} {:>8}",
                    s(&sc["name"]),
                    when(sc),
                    s(&sc["task"]["queue"]),
                    s(&sc["next_ms"]),
                    s(&sc["fired"]),
                    s(&sc["skipped"])
                );
            }
            Ok(())
        }
        ScheduleCmd::Delete { client, name } => {
            Client::new(&client)?.delete(&format!("/v1/schedules/{name}")).await?;
            println!("deleted schedule {name}");
            Ok(())
        }
    }
}

/// "cron EXPR (TZ)" or "every N ms".
fn when(sc: &Value) -> String {
    match sc["cron"].as_str() {
        Some(c) => format!("cron {c} ({})", sc["timezone"].as_str().unwrap_or("UTC")),
        None => format!("every {} ms", s(&sc["every_ms"])),
    }
}

fn show(client: &ClientArgs, sc: &Value) -> anyhow::Result<()> {
    if client.json {
        return print_json(sc);
    }
    println!("schedule {}", s(&sc["name"]));
    let missed = match sc["catch_up"].as_u64() {
        Some(n) => format!("catch up at most {n}"),
        None => "skip".to_string(),
    };
    for (label, value) in [
        ("when", when(sc)),
        ("queue", s(&sc["task"]["queue"])),
        ("kind", s(&sc["task"]["kind"])),
        ("payload", sc["task"]["payload"].to_string()),
        ("missed runs", missed),
        ("paused", s(&sc["paused"])),
        ("next due (epoch ms)", s(&sc["next_ms"])),
        ("last run (epoch ms)", s(&sc["last_run_ms"])),
        ("last task", s(&sc["last_task_id"])),
        ("fired", s(&sc["fired"])),
        ("skipped", s(&sc["skipped"])),
        ("last error", s(&sc["last_error"])),
    ] {
        println!("  {label:<24} {value}");
    }
    Ok(())
}
