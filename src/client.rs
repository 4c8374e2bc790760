//! CLI verbs against a server's HTTP API. Human-readable by default, `--json` for scripts.

use anyhow::{anyhow, bail, Context};
use minion_client::client::Retry;
use serde_json::{json, Value};

use crate::cli::{
    AgentCmd, AutoscalerCmd, ClientArgs, ClusterCmd, ConfigCmd, QueueCmd, SnapshotCmd, TaskCmd, TokenCmd,
};

/// The CLI's view of the typed client: JSON in and out (for printing), errors as the server
/// words them, failover over `--server a,b,c`; `http` and `base` stream backups.
pub(crate) struct Client {
    api: minion_client::Client,
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if args.stale {
            headers.insert(crate::api::cluster::HEADER_CONSISTENCY, reqwest::header::HeaderValue::from_static("stale"));
        }
        let auth = minion_client::ClientAuth { token: args.token.clone(), ca_cert: args.ca_cert.clone() };
        let http = auth.build(reqwest::Client::builder().default_headers(headers)).map_err(anyhow::Error::msg)?;
        let servers = minion_client::Servers::parse(&args.server).map_err(anyhow::Error::msg)?;
        let base = servers.base().to_string();
        Ok(Client { api: minion_client::Client::with_http(servers, http.clone()), http, base })
    }

    /// Reads may go to another node after an unavailable answer; writes only when the node did
    /// nothing.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let retry = if method == reqwest::Method::GET { Retry::Safe } else { Retry::Unsafe };
        Ok(self.api.json(method, path, body.as_ref(), retry).await?)
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut full = path.to_string();
        for (i, (k, v)) in query.iter().enumerate() {
            full.push(if i == 0 { '?' } else { '&' });
            full.push_str(k);
            full.push('=');
            full.push_str(&percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string());
        }
        self.call(reqwest::Method::GET, &full, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// The response if it succeeded; otherwise the server's error code and message as an error.
    async fn check(&self, resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body["error"]["message"].as_str().unwrap_or("no error message");
        let code = body["error"]["code"].as_str().unwrap_or("error");
        bail!("server answered {}: {code}: {msg}", status.as_u16());
    }
}

pub(crate) fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_task(t: &Value) {
    println!("task {}  queue={} kind={} state={}", s(&t["id"]), s(&t["queue"]), s(&t["kind"]), s(&t["state"]));
    println!(
        "  priority={} attempts={}/{} idempotency_key={}",
        s(&t["priority"]),
        t["attempts"].as_array().map_or(0, |a| a.len()),
        s(&t["attempt_limit"]),
        s(&t["idempotency_key"])
    );
    println!("  payload: {}", t["payload"]);
    if let Some(deps) = t["depends_on"].as_array() {
        let list: Vec<String> = deps.iter().map(|d| format!("{} ({})", s(&d["id"]), s(&d["state"]))).collect();
        println!("  depends on: {}  on failure: {}", list.join(", "), s(&t["on_dependency_failure"]));
    }
    if !t["parent_id"].is_null() {
        println!("  parent: {}", s(&t["parent_id"]));
    }
    if let Some(children) = t["children"].as_array() {
        let list: Vec<String> = children.iter().map(|d| format!("{} ({})", s(&d["id"]), s(&d["state"]))).collect();
        println!("  children: {}", list.join(", "));
    }
    if !t["deadline_ms"].is_null() {
        println!("  deadline_ms: {}", s(&t["deadline_ms"]));
    }
    if !t["result"].is_null() {
        println!("  result: {}", t["result"]);
    }
    if !t["last_error"].is_null() {
        println!("  last error: {}", s(&t["last_error"]));
    }
    if let Some(l) = t["lease"].as_object() {
        println!("  leased to {} (token {}, expires {})", s(&l["agent_id"]), s(&l["token"]), s(&l["expires_ms"]));
    }
    for a in t["attempts"].as_array().into_iter().flatten() {
        let outcome = a["outcome"]["outcome"].as_str().unwrap_or("running");
        println!(
            "  attempt {}: agent={} token={} outcome={}",
            s(&a["number"]),
            s(&a["agent_id"]),
            s(&a["lease_token"]),
            outcome
        );
    }
    for p in t["progress"].as_array().into_iter().flatten() {
        println!("  progress @{}: {}% {}", s(&p["at_ms"]), s(&p["percent"]), s(&p["message"]));
    }
}

pub async fn task(cmd: TaskCmd) -> anyhow::Result<()> {
    match cmd {
        TaskCmd::Submit {
            client,
            queue,
            kind,
            payload,
            capabilities,
            priority,
            idempotency_key,
            delay_ms,
            max_attempts,
            lease_ms,
            depends_on,
            on_dependency_failure,
            deadline_in_ms,
            concurrency_key,
            parent,
            lease_token,
        } => {
            let payload: Value = serde_json::from_str(&payload).map_err(|e| anyhow!("--payload is not JSON: {e}"))?;
            let c = Client::new(&client)?;
            let mut body = json!({
                "queue": queue, "kind": kind, "payload": payload, "capabilities": capabilities,
                "priority": priority, "idempotency_key": idempotency_key, "delay_ms": delay_ms,
                "max_attempts": max_attempts, "lease_ms": lease_ms,
                "on_dependency_failure": on_dependency_failure, "deadline_in_ms": deadline_in_ms,
                "concurrency_key": concurrency_key,
            });
            if !depends_on.is_empty() {
                body["depends_on"] = json!(depends_on);
            }
            let out = match (parent, lease_token) {
                (Some(p), Some(token)) => {
                    let out = c
                        .post(&format!("/v1/tasks/{p}/children"), json!({"lease_token": token, "tasks": [body]}))
                        .await?;
                    out["tasks"][0].clone()
                }
                _ => c.post("/v1/tasks", body).await?,
            };
            if client.json {
                return print_json(&out);
            }
            if out["duplicate"].as_bool() == Some(true) {
                println!("task {} (duplicate: the idempotency key already names it)", s(&out["id"]));
            } else {
                println!("task {} submitted", s(&out["id"]));
            }
        }
        TaskCmd::Get { client, id } => {
            let out = Client::new(&client)?.get(&format!("/v1/tasks/{id}"), &[]).await?;
            if client.json {
                return print_json(&out);
            }
            print_task(&out);
        }
        TaskCmd::List { client, queue, state, kind, agent, after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            let opt = [
                ("queue", queue),
                ("state", state),
                ("kind", kind),
                ("agent", agent),
                ("after", after.map(|a| a.to_string())),
            ];
            for (k, v) in opt {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let out = Client::new(&client)?.get("/v1/tasks", &q).await?;
            if client.json {
                return print_json(&out);
            }
            println!("{:>10}  {:<20} {:<16} {:<10} {:>8}  {:>5}", "ID", "QUEUE", "KIND", "STATE", "PRIORITY", "TRIES");
            for t in out["tasks"].as_array().into_iter().flatten() {
                println!(
                    "{:>10}  {:<20} {:<16} {:<10} {:>8}  {:>5}",
                    s(&t["id"]),
                    s(&t["queue"]),
                    s(&t["kind"]),
                    s(&t["state"]),
                    s(&t["priority"]),
                    t["attempts"].as_array().map_or(0, |a| a.len())
                );
            }
            if !out["next"].is_null() {
                println!("more: --after {}", s(&out["next"]));
            }
        }
        TaskCmd::Cancel { client, id, reason } => {
            let out =
                Client::new(&client)?.post(&format!("/v1/tasks/{id}/cancel"), json!({ "reason": reason })).await?;
            if client.json {
                return print_json(&out);
            }
            println!("task {id} cancelled");
        }
        TaskCmd::Retry { client, id } => {
            let out = Client::new(&client)?.post(&format!("/v1/tasks/{id}/retry"), json!({})).await?;
            if client.json {
                return print_json(&out);
            }
            println!("task {id} is ready again ({} attempts allowed in all)", s(&out["attempt_limit"]));
        }
    }
    Ok(())
}

pub async fn queue(cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::Stats { client, queue } => {
            let c = Client::new(&client)?;
            let rows: Vec<Value> = match &queue {
                Some(q) => vec![c.get(&format!("/v1/queues/{q}"), &[]).await?["stats"].clone()],
                None => c.get("/v1/queues", &[]).await?["queues"].as_array().cloned().unwrap_or_default(),
            };
            if client.json {
                return print_json(&Value::Array(rows));
            }
            println!(
                "{:<24} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>10} {:>12}",
                "QUEUE", "READY", "DELAYED", "LEASED", "SUCCEEDED", "FAILED", "DEAD", "CANCELLED", "OLDEST_READY"
            );
            for r in rows {
                println!(
                    "{:<24} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>10} {:>10}ms",
                    s(&r["queue"]),
                    s(&r["ready"]),
                    s(&r["delayed"]),
                    s(&r["leased"]),
                    s(&r["succeeded"]),
                    s(&r["failed"]),
                    s(&r["dead"]),
                    s(&r["cancelled"]),
                    s(&r["oldest_ready_age_ms"])
                );
            }
        }
        QueueCmd::Get { client, queue } => {
            let out = Client::new(&client)?.get(&format!("/v1/queues/{queue}"), &[]).await?;
            if client.json {
                return print_json(&out);
            }
            println!("queue {queue}");
            for (k, v) in out["config"].as_object().into_iter().flatten() {
                let overridden = !out["overrides"][k].is_null();
                println!("  {k:<20} {v}{}", if overridden { "  (set for this queue)" } else { "" });
            }
        }
        QueueCmd::Limits { client, queue, per_key, keys, rate, rate_per_key, key_rates, fair, clear } => {
            let c = Client::new(&client)?;
            let path = format!("/v1/queues/{queue}/limits");
            let setting = per_key.is_some() || !keys.is_empty() || rate.is_some() || rate_per_key.is_some() || fair;
            let out = if clear || setting || !key_rates.is_empty() {
                let spec = |(starts, period_ms): (u32, u64)| json!({"starts": starts, "period_ms": period_ms});
                let keys: serde_json::Map<String, Value> = keys.into_iter().map(|(k, n)| (k, json!(n))).collect();
                let key_rates: serde_json::Map<String, Value> =
                    key_rates.into_iter().map(|(k, r)| (k, spec(r))).collect();
                let body = json!({
                    "concurrency_per_key": per_key,
                    "key_concurrency": keys,
                    "rate": rate.map(spec),
                    "rate_per_key": rate_per_key.map(spec),
                    "key_rate": key_rates,
                    "fair": fair,
                });
                c.put(&path, body).await?
            } else {
                c.get(&path, &[]).await?
            };
            if client.json {
                return print_json(&out);
            }
            println!("queue {queue}");
            println!("  {:<24} {}", "concurrency per key", s(&out["concurrency_per_key"]));
            for (k, n) in out["key_concurrency"].as_object().into_iter().flatten() {
                println!("  {:<24} {n}", format!("key {k}"));
            }
            let rate = |r: &Value| match (r["starts"].as_u64(), r["period_ms"].as_u64()) {
                (Some(n), Some(p)) => format!("{n} per {p} ms"),
                _ => "-".to_string(),
            };
            println!("  {:<24} {}", "rate", rate(&out["rate"]));
            println!("  {:<24} {}", "rate per key", rate(&out["rate_per_key"]));
            for (k, r) in out["key_rate"].as_object().into_iter().flatten() {
                println!("  {:<24} {}", format!("rate of {k}"), rate(r));
            }
            println!("  {:<24} {}", "fair", s(&out["fair"]));
            if let Some(k) = out["last_served_key"].as_str() {
                println!("  {:<24} {}", "last served key", if k.is_empty() { "(no key)" } else { k });
            }
            println!("  {:<24} {}", "keys at their limit", s(&out["keys_at_limit"]));
            println!("  {:<24} {}", "keys out of starts", s(&out["keys_rate_limited"]));
            if let Some(until) = out["rate_limited_until_ms"].as_u64() {
                println!("  {:<24} {until} (epoch ms)", "queue's next start at");
            }
            for (k, n) in out["leased_by_key"].as_object().into_iter().flatten() {
                println!("  {:<24} {n}", format!("leased with {k}"));
            }
        }
        QueueCmd::Set { client, queue, settings, stall_timeout_ms } => {
            let c = Client::new(&client)?;
            let current = c.get(&format!("/v1/queues/{queue}"), &[]).await?;
            let mut overrides = current["overrides"].as_object().cloned().unwrap_or_default();
            overrides.extend(settings.changes());
            if let Some(v) = stall_timeout_ms {
                overrides.insert("stall_timeout_ms".into(), json!(v));
            }
            let out = c.put(&format!("/v1/queues/{queue}"), Value::Object(overrides)).await?;
            if client.json {
                return print_json(&out);
            }
            println!("queue {queue} updated");
        }
    }
    Ok(())
}

pub async fn config(cmd: ConfigCmd) -> anyhow::Result<()> {
    let (client, out) = match cmd {
        ConfigCmd::Get { client } => {
            let out = Client::new(&client)?.get("/v1/config", &[]).await?;
            (client, out)
        }
        ConfigCmd::Set { client, settings } => {
            let changes = settings.changes();
            anyhow::ensure!(!changes.is_empty(), "name at least one setting to change");
            let out = Client::new(&client)?.put("/v1/config", Value::Object(changes)).await?;
            (client, out)
        }
    };
    if client.json {
        return print_json(&out);
    }
    if let Some(m) = out["engine"].as_object() {
        for (k, v) in m {
            println!("{k:<18} {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    if out["this_node_file_differs"] == json!(true) {
        println!("(the configuration file of the node that answered names other settings; these apply)");
    }
    Ok(())
}

pub async fn agent(cmd: AgentCmd) -> anyhow::Result<()> {
    match cmd {
        AgentCmd::List { client } => {
            // Every page, in id order.
            let c = Client::new(&client)?;
            let mut agents = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let query: Vec<(&str, String)> = after.iter().map(|a| ("after", a.clone())).collect();
                let page = c.get("/v1/agents", &query).await?;
                agents.extend(page["agents"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(n) => after = Some(n.to_string()),
                    None => break,
                }
            }
            let out = json!({ "agents": agents });
            if client.json {
                return print_json(&out);
            }
            println!(
                "{:<20} {:<9} {:>5} {:>9} {:>9} {:>7} {:>11} {:>10}  CAPABILITIES",
                "ID", "STATUS", "INC", "IN_FLIGHT", "COMPLETED", "FAILED", "LATENCY_MS", "SEEN_AGO"
            );
            for a in out["agents"].as_array().into_iter().flatten() {
                let caps: Vec<String> = a["capabilities"].as_array().into_iter().flatten().map(s).collect();
                println!(
                    "{:<20} {:<9} {:>5} {:>6}/{:<2} {:>9} {:>7} {:>11} {:>8}ms  {}",
                    s(&a["id"]),
                    s(&a["status"]),
                    s(&a["incarnation"]),
                    s(&a["stats"]["in_flight"]),
                    s(&a["max_concurrency"]),
                    s(&a["stats"]["overall"]["completed"]),
                    s(&a["stats"]["overall"]["failed"]),
                    s(&a["stats"]["overall"]["latency_ewma_ms"]),
                    s(&a["last_seen_ms_ago"]),
                    caps.join(",")
                );
            }
        }
        AgentCmd::Drain { client, id } => {
            let out = Client::new(&client)?.post(&format!("/v1/agents/{id}/drain"), json!({})).await?;
            if client.json {
                return print_json(&out);
            }
            println!(
                "agent {id} is draining: it gets no new tasks and keeps its {} in flight",
                s(&out["stats"]["in_flight"])
            );
        }
    }
    Ok(())
}

pub async fn autoscaler(cmd: AutoscalerCmd) -> anyhow::Result<()> {
    match cmd {
        AutoscalerCmd::Status { client } => {
            let out = Client::new(&client)?.get("/v1/autoscaler", &[]).await?;
            if client.json {
                return print_json(&out);
            }
            println!("{:<20} {:>8} {:>8}  {:<14} QUEUES", "POOL", "DESIRED", "CURRENT", "LAST RULE");
            for (name, p) in out["pools"].as_object().into_iter().flatten() {
                let queues: Vec<String> = p["queues"].as_array().into_iter().flatten().map(s).collect();
                println!(
                    "{:<20} {:>8} {:>8}  {:<14} {}",
                    name,
                    s(&p["desired"]),
                    s(&p["current"]),
                    s(&p["last_decision"]["rule"]),
                    queues.join(",")
                );
            }
        }
        AutoscalerCmd::Decisions { client, pool, limit } => {
            let q = [("pool", pool.clone()), ("limit", limit.to_string())];
            let out = Client::new(&client)?.get("/v1/autoscaler/decisions", &q).await?;
            if client.json {
                return print_json(&out);
            }
            println!(
                "{:>15} {:>8} {:>8}  {:<14} {:>7} {:>11} {:>6}",
                "AT_MS", "PREVIOUS", "DESIRED", "RULE", "READY", "UTILIZATION", "IDLE"
            );
            for d in out["decisions"].as_array().into_iter().flatten() {
                println!(
                    "{:>15} {:>8} {:>8}  {:<14} {:>7} {:>11.2} {:>6}",
                    s(&d["at_ms"]),
                    s(&d["previous"]),
                    s(&d["desired"]),
                    s(&d["rule"]),
                    s(&d["signals"]["ready"]),
                    d["signals"]["utilization"].as_f64().unwrap_or(0.0),
                    s(&d["signals"]["idle_agents"])
                );
            }
        }
    }
    Ok(())
}

fn print_cluster(out: &Value) {
    println!(
        "cluster {}  leader={} term={} committed={} (answered by node {})",
        s(&out["cluster_id"]),
        s(&out["leader"]),
        s(&out["term"]),
        s(&out["committed_index"]),
        s(&out["answered_by"])
    );
    println!("{:>5}  {:<8} {:<22} {:<22} {:>10} {:>8}", "NODE", "ROLE", "API", "RAFT", "MATCHED", "LAG");
    for m in out["members"].as_array().into_iter().flatten() {
        let role = if m["leader"].as_bool() == Some(true) { "leader".to_string() } else { s(&m["role"]) };
        println!(
            "{:>5}  {:<8} {:<22} {:<22} {:>10} {:>8}",
            s(&m["node_id"]),
            role,
            s(&m["api_addr"]),
            s(&m["raft_addr"]),
            s(&m["matched_index"]),
            s(&m["lag"])
        );
    }
}

pub async fn cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
    let (client, out) = match cmd {
        ClusterCmd::Status { client } => {
            let out = Client::new(&client)?.get("/v1/cluster", &[]).await?;
            (client, out)
        }
        ClusterCmd::Node { client, digest } => {
            let out = Client::new(&client)?.get("/v1/cluster/node", &[("digest", digest.to_string())]).await?;
            if !client.json {
                for (k, v) in out.as_object().into_iter().flatten() {
                    println!("{k:<22} {}", s(v));
                }
                return Ok(());
            }
            (client, out)
        }
        ClusterCmd::Add { client, node_id, raft_addr, api_addr, voter } => {
            let body = json!({"node_id": node_id, "raft_addr": raft_addr, "api_addr": api_addr, "voter": voter});
            let out = Client::new(&client)?.post("/v1/cluster/members", body).await?;
            (client, out)
        }
        ClusterCmd::Promote { client, node_id } => {
            let out = Client::new(&client)?.post(&format!("/v1/cluster/members/{node_id}/promote"), json!({})).await?;
            (client, out)
        }
        ClusterCmd::Remove { client, node_id } => {
            let out = Client::new(&client)?.delete(&format!("/v1/cluster/members/{node_id}")).await?;
            (client, out)
        }
        ClusterCmd::Replace { client, old, node_id, raft_addr, api_addr } => {
            let body = json!({"node_id": node_id, "raft_addr": raft_addr, "api_addr": api_addr});
            let out = Client::new(&client)?.post(&format!("/v1/cluster/members/{old}/replace"), body).await?;
            (client, out)
        }
    };
    if client.json {
        return print_json(&out);
    }
    print_cluster(&out);
    Ok(())
}

pub async fn adapters(client: ClientArgs) -> anyhow::Result<()> {
    let out = Client::new(&client)?.get("/v1/adapters", &[]).await?;
    if client.json {
        return print_json(&out);
    }
    println!(
        "{:<24} {:<6} {:<8} {:>10} {:>10} {:>9}  LAST ERROR",
        "ADAPTER", "KIND", "RUNNING", "INGESTED", "REJECTED", "LAG"
    );
    for a in out["adapters"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<6} {:<8} {:>10} {:>10} {:>9}  {}",
            s(&a["name"]),
            s(&a["kind"]),
            s(&a["running"]),
            s(&a["ingested"]),
            s(&a["rejected"]),
            s(&a["lag"]),
            s(&a["last_error"])
        );
    }
    Ok(())
}

pub async fn snapshot(cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Export { client, out } => {
            let c = Client::new(&client)?;
            let url = format!("{}/v1/admin/backup", c.base);
            let resp = c.http.get(&url).send().await.with_context(|| format!("contacting {}", c.base))?;
            let mut resp = c.check(resp).await?;
            let tmp = out.with_extension("tmp");
            // Streamed to disk, then checked whole before it takes the name: a truncated or
            // damaged download must not pass for a backup.
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
                while let Some(chunk) = resp.chunk().await.context("reading the backup")? {
                    f.write_all(&chunk).with_context(|| format!("writing {}", tmp.display()))?;
                }
                f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
            }
            let t = tmp.clone();
            let summary = match tokio::task::spawn_blocking(move || crate::backup_file::inspect(&t)).await? {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(anyhow!("the server sent {e}"));
                }
            };
            minion_storage::vfs::publish(&minion_storage::vfs::RealFs, &tmp, &out)
                .with_context(|| format!("renaming to {}", out.display()))?;
            let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            let index = summary.applied_index.unwrap_or(0);
            if client.json {
                print_json(&json!({
                    "file": out.display().to_string(),
                    "bytes": bytes,
                    "applied_index": index,
                    "tasks": summary.tasks,
                    "agents": summary.agents,
                    "records": summary.records,
                    "from": summary.origin,
                }))
            } else {
                println!(
                    "wrote {} ({} bytes): {} tasks, {} agents, {} records, as of log index {index}",
                    out.display(),
                    bytes,
                    summary.tasks,
                    summary.agents,
                    summary.records
                );
                Ok(())
            }
        }
        SnapshotCmd::Import { client, file } => {
            let f = file.clone();
            tokio::task::spawn_blocking(move || crate::backup_file::inspect(&f))
                .await?
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let c = Client::new(&client)?;
            let body = tokio::fs::File::open(&file).await.with_context(|| format!("reading {}", file.display()))?;
            let req = c
                .http
                .post(format!("{}/v1/admin/restore", c.base))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(body)));
            let resp = req.send().await.with_context(|| format!("contacting {}", c.base))?;
            let out: Value = c.check(resp).await?.json().await.unwrap_or(Value::Null);
            if client.json {
                print_json(&out)
            } else {
                println!(
                    "restored {} tasks and {} agents ({} records) from {} ({}, log index {})",
                    s(&out["restored_tasks"]),
                    s(&out["restored_agents"]),
                    s(&out["restored_records"]),
                    file.display(),
                    s(&out["from"]),
                    s(&out["from_applied_index"])
                );
                Ok(())
            }
        }
    }
}

pub async fn token(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create { client, name, role, queues, deny, agents, expires_in_ms, rate_per_sec } => {
            let body = json!({
                "name": name, "role": role, "queues": queues, "deny": deny, "agents": agents,
                "expires_in_ms": expires_in_ms, "rate_per_sec": rate_per_sec,
            });
            let out = Client::new(&client)?.post("/v1/tokens", body).await?;
            if client.json {
                return print_json(&out);
            }
            // The bearer value alone on stdout (for scripts); what it is on stderr.
            eprintln!(
                "token {} ({}, role {}): shown this once, keep it secret",
                s(&out["id"]),
                s(&out["name"]),
                s(&out["role"])
            );
            println!("{}", s(&out["token"]));
            Ok(())
        }
        TokenCmd::List { client } => {
            let out = Client::new(&client)?.get("/v1/tokens", &[]).await?;
            if client.json {
                return print_json(&out);
            }
            println!(
                "{:<17} {:<9} {:<7} {:<24} {:<24} {:<16} name",
                "id", "role", "active", "queues", "deny", "agents"
            );
            for t in out["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{:<17} {:<9} {:<7} {:<24} {:<24} {:<16} {}",
                    s(&t["id"]),
                    s(&t["role"]),
                    s(&t["active"]),
                    s(&t["queues"]),
                    s(&t["deny"]),
                    s(&t["agents"]),
                    s(&t["name"])
                );
            }
            Ok(())
        }
        TokenCmd::Revoke { client, id } => {
            let out = Client::new(&client)?.delete(&format!("/v1/tokens/{id}")).await?;
            if client.json {
                return print_json(&out);
            }
            println!("token {} revoked", s(&out["id"]));
            Ok(())
        }
    }
}

pub async fn audit(client: ClientArgs, after: u64, limit: usize) -> anyhow::Result<()> {
    let q = [("after", after.to_string()), ("limit", limit.to_string())];
    let out = Client::new(&client)?.get("/v1/audit", &q).await?;
    if client.json {
        return print_json(&out);
    }
    for e in out["entries"].as_array().into_iter().flatten() {
        println!(
            "{:>6} {} {:<32} {:<18} {:<18} {}",
            s(&e["seq"]),
            s(&e["at_ms"]),
            s(&e["actor"]),
            s(&e["action"]),
            s(&e["target"]),
            s(&e["detail"])
        );
    }
    Ok(())
}
