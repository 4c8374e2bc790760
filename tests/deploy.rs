//! What can be checked of `deploy/` without a container engine: every YAML and JSON file parses;
//! the manifests have the parts operators rely on; and every metric the Grafana dashboard and the
//! Prometheus alert rules name exists in real `/metrics` scrapes of a running two-node cluster.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::cluster::Cluster;
use common::eventually;
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read deploy dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).expect("read");
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Every Kubernetes object in `deploy/kubernetes`, by kind.
fn k8s_objects() -> Vec<Yaml> {
    let mut all = Vec::new();
    files(&deploy_dir().join("kubernetes"), &mut all);
    all.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml")).flat_map(|p| yaml(p)).collect()
}

fn of_kind<'a>(objs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    objs.iter().filter(|o| o["kind"].as_str() == Some(kind)).collect()
}

#[test]
fn every_yaml_and_json_file_in_deploy_parses() {
    let mut all = Vec::new();
    files(&deploy_dir(), &mut all);
    let mut checked = 0;
    for p in &all {
        match p.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => {
                let docs = yaml(p);
                assert!(
                    !docs.is_empty() && docs.iter().all(|d| !d.is_null()),
                    "{} holds an empty document",
                    p.display()
                );
                checked += 1;
            }
            Some("json") => {
                let text = std::fs::read_to_string(p).expect("read");
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", p.display()));
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 12, "only {checked} YAML/JSON files found under deploy/");
}

#[test]
fn the_manifests_have_what_operators_rely_on() {
    let compose = &yaml(&deploy_dir().join("docker-compose.yml"))[0];
    for svc in ["minion1", "minion2", "minion3", "postgres", "redis", "kafka", "prometheus", "grafana"] {
        assert!(!compose["services"][svc].is_badvalue(), "docker-compose.yml has no service {svc}");
    }

    let objs = k8s_objects();
    let sts = of_kind(&objs, "StatefulSet");
    assert_eq!(sts.len(), 1, "one StatefulSet");
    let sts = sts[0];
    assert!(sts["spec"]["volumeClaimTemplates"].as_vec().is_some_and(|v| !v.is_empty()), "per-pod volumes");
    let headless = sts["spec"]["serviceName"].as_str().expect("serviceName");
    let svc = of_kind(&objs, "Service").into_iter().find(|s| s["metadata"]["name"].as_str() == Some(headless));
    assert_eq!(svc.expect("the headless service")["spec"]["clusterIP"].as_str(), Some("None"), "headless");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(of_kind(&objs, "PodDisruptionBudget").len(), 1);

    // KEDA polls an endpoint that exists, reading a field it returns.
    let so = of_kind(&objs, "ScaledObject");
    let trigger = &so.first().expect("a ScaledObject")["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("metrics-api"));
    let url = trigger["metadata"]["url"].as_str().expect("url");
    assert!(url.contains("/v1/metrics/queues/"), "{url}");
    let field = trigger["metadata"]["valueLocation"].as_str().expect("valueLocation");
    assert!(["ready", "backlog", "in_flight", "delayed"].contains(&field), "{field}");
    assert_eq!(trigger["metadata"]["authMode"].as_str(), Some("bearer"));
}

/// The `minion_*` metric names in an expression, histogram suffixes removed.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("minion_") {
        let start = i + pos;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|n| start + n)
            .unwrap_or(expr.len());
        if boundary {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end;
    }
}

fn exprs_in_json(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => metric_names(s, out),
                    _ => exprs_in_json(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs_in_json(v, out)),
        _ => {}
    }
}

/// Every metric the dashboard and the alert rules use.
fn named_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("grafana/dashboards/minion.json")).expect("dashboard"),
    )
    .expect("json");
    exprs_in_json(&dash, &mut names);
    let from_dashboard = names.len();
    assert!(from_dashboard >= 20, "the dashboard names only {from_dashboard} metrics");
    let rules = &yaml(&deploy_dir().join("prometheus/alerts.yml"))[0];
    let mut n_rules = 0;
    for g in rules["groups"].as_vec().expect("groups") {
        for r in g["rules"].as_vec().expect("rules") {
            metric_names(r["expr"].as_str().expect("every rule has an expr"), &mut names);
            n_rules += 1;
        }
    }
    assert!(n_rules >= 10, "only {n_rules} alert rules");
    names
}

/// The metric names in an exposition text (histogram series folded into their family).
fn scraped(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        metric_names(name, &mut out);
    }
    out
}

const POOL_CONFIG: &str = r#"
autoscale_interval_ms = 100

[[pools]]
name = "render"
queues = ["frames"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_alerts_name_is_in_a_real_scrape() {
    let names = named_metrics();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    std::fs::write(&cfg, POOL_CONFIG).expect("config");
    let extra = ["--snapshot-logs", "100", "--config", cfg.to_str().expect("path")];
    let mut c = Cluster::start(dir.path(), 1, &extra).await;
    let api = c.api(0);

    // Work that moves every family: submits with keys (dedup), a waiting claim served by
    // dispatch, completion, failure with retry, agents, enough entries for a snapshot.
    let (s, _) = api.post("/v1/agents", json!({"id": "w1", "labels": {"pool": "render"}})).await;
    assert_eq!(s, 201);
    let waiting = {
        let api = c.api(0);
        tokio::spawn(async move { api.claim("w1", &["frames"], 1, 5_000).await })
    };
    eventually(10, "the claim to wait in the dispatch hub", || {
        let api = c.api(0);
        async move {
            let m = api.http.get(format!("{}/metrics", api.base)).send().await.ok()?.text().await.ok()?;
            m.lines().any(|l| l.starts_with("minion_dispatch_waiting_claims 1")).then_some(())
        }
    })
    .await;
    for n in 0..250 {
        api.submit(json!({"queue": "frames", "payload": n, "idempotency_key": format!("k{n}")})).await;
    }
    api.submit(json!({"queue": "frames", "payload": 0, "idempotency_key": "k0"})).await;
    let got = waiting.await.expect("claim");
    assert_eq!(api.complete(&got[0], json!(null)).await.0, 200);
    let more = api.claim("w1", &["frames"], 1, 0).await;
    let (s, v) = api
        .post(
            &format!("/v1/tasks/{}/fail", more[0]["id"]),
            json!({"lease_token": more[0]["lease"]["token"], "error": "x"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Adapters as they report themselves: an ingest adapter and an exporter.
    let report = |name: &'static str, body: Value| {
        let api = c.api(0);
        async move {
            let (s, v) = api.req(reqwest::Method::PUT, &format!("/v1/adapters/{name}"), Some(body)).await;
            assert_eq!(s, 204, "{v}");
        }
    };
    report("orders", json!({"kind": "kafka", "running": true, "lag": 3, "ingested": 10, "rejected": 1})).await;
    report("export-main", json!({"kind": "export", "running": true, "lag": 2, "position": 9})).await;
    // The peer port refuses a caller without the cluster secret.
    let refused = reqwest::Client::new()
        .post(format!("http://{}/raft/vote", c.nodes[0].raft_listen))
        .body("garbage")
        .send()
        .await
        .expect("peer port");
    assert_eq!(refused.status(), 401);
    // A second node catches up by snapshot: installs on it, replication and peer RPCs on the leader.
    c.add_process(1, &extra, true).await;
    c.nodes[1].wait_up().await;
    c.join(1, true).await;
    c.wait_converged(20).await;

    let mut have = BTreeSet::new();
    for i in 0..2 {
        let api = c.api(i);
        let text =
            api.http.get(format!("{}/metrics", api.base)).send().await.expect("scrape").text().await.expect("text");
        have.extend(scraped(&text));
        // Every histogram has explicit buckets: none is rendered as a summary of quantiles.
        let summary = text.lines().find(|l| l.contains("quantile=\""));
        assert!(summary.is_none(), "a histogram without buckets: {summary:?}");
        assert!(text.contains("minion_http_request_duration_seconds_bucket{"), "no bucketed histogram");
    }
    let missing: Vec<&String> = names.difference(&have).collect();
    assert!(missing.is_empty(), "named in deploy/ but not in a scrape: {missing:?}");
    // And the families the product promises, whether or not a panel uses them yet.
    for family in [
        "minion_queue_tasks",
        "minion_task_transitions_total",
        "minion_lease_expiries_total",
        "minion_task_retries_total",
        "minion_queue_oldest_ready_age_seconds",
        "minion_dedup_hits_total",
        "minion_dedup_misses_total",
        "minion_dedup_bloom_false_positives_total",
        "minion_dispatch_selections_total",
        "minion_dispatch_latency_seconds",
        "minion_raft_term",
        "minion_raft_leader_id",
        "minion_raft_committed_index",
        "minion_raft_applied_index",
        "minion_raft_append_seconds",
        "minion_storage_sync_seconds",
        "minion_raft_snapshot_build_seconds",
        "minion_raft_snapshot_install_seconds",
        "minion_raft_replication_lag_entries",
        "minion_http_requests_total",
        "minion_http_request_duration_seconds",
        "minion_ingest_lag_records",
        "minion_ingest_records_total",
        "minion_export_lag_entries",
        "minion_autoscaler_desired_workers",
        "minion_autoscaler_current_workers",
    ] {
        assert!(have.contains(family), "{family} is not in the scrape");
    }
}
