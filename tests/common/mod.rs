//! Helpers for black-box tests: run the real `minion` binary on a free loopback port.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A free port on 127.0.0.1 below Linux's ephemeral range (32768–60999), so that a server
/// restarted on it cannot find it taken by some outgoing connection in the meantime.
pub fn free_port() -> u16 {
    free_port_on(std::net::Ipv4Addr::LOCALHOST)
}

pub fn free_port_on(ip: std::net::Ipv4Addr) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Spread test processes over 20000–31999 by process id; within one process, walk the range.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id() % 600) * 20, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..12_000 {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::SeqCst) % 12_000) as u16;
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 32000 on {ip}")
}

pub mod cluster;
pub mod disks;
pub mod netns;
pub mod sse;

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    /// `--raft-listen` (port 0 unless a cluster needs it fixed).
    pub raft_listen: String,
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub base: String,
    pub extra: Vec<String>,
    /// Environment of the process beyond the log filter (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// The network namespace to run in (`ip netns exec`); `None`: this one.
    pub netns: Option<String>,
}

impl Server {
    /// Start a server on a fresh data directory inside `dir`.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::new(dir, extra);
        s.spawn().await;
        s
    }

    /// A server on a fresh data directory inside `dir`, not started yet.
    pub fn new(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        Server {
            child: None,
            port,
            raft_listen: "127.0.0.1:0".into(),
            node_id: 1,
            data_dir: dir.join("data"),
            base: format!("http://127.0.0.1:{port}"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            log: dir.join("server.log"),
            netns: None,
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            None => Command::new(env!("CARGO_BIN_EXE_minion")),
            // `ip netns exec` enters the namespace and execs the binary: the child's pid is the
            // server's, so signals reach it.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_minion")]);
                c
            }
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.base.rsplit("://").next().unwrap_or_default())
            .arg("--raft-listen")
            .arg(&self.raft_listen)
            .arg("--node-id")
            .arg(self.node_id.to_string())
            .args(&self.extra)
            .env("MINION_LOG", std::env::var("MINION_TEST_LOG").unwrap_or_else(|_| "warn,minion=info".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    pub async fn spawn(&mut self) {
        self.launch();
        self.wait_ready().await;
    }

    /// Start the process without waiting for it.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = self.command().stdout(Stdio::null()).stderr(log).spawn().expect("spawn minion");
        self.child = Some(child);
    }

    /// Send a signal (`STOP`, `CONT`, `TERM`) to the running process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            let ok = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status();
            assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} failed");
        }
    }

    /// Start the process on its data directory; it must exit with an error within 20 s.
    /// Returns its stderr.
    pub async fn start_must_fail(&self) -> String {
        let mut child = self.command().stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("run minion");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr).expect("read stderr");
        assert!(status.is_some_and(|s| !s.success()), "the server must refuse to start: {stderr}");
        stderr
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Wait until the process answers `/healthz` (a node waiting to join has no leader yet).
    pub async fn wait_up(&mut self) {
        self.wait_for("/healthz").await
    }

    pub async fn wait_ready(&mut self) {
        self.wait_for("/readyz").await
    }

    async fn wait_for(&mut self, probe: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "server exited early with {status}: {}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
            }
            if let Ok(r) = http.get(format!("{}{probe}", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in 30 s: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub fn client(&self) -> Api {
        Api { http: reqwest::Client::new(), base: self.base.clone() }
    }

    /// Run the CLI against this server: (succeeded, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_minion"))
            .args(args)
            .args(["--server", &self.base])
            .output()
            .expect("run minion");
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// Run the CLI against this server, which must succeed; its output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args);
        assert!(ok, "{args:?}: {err}");
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// The same node, reading its own state without confirming with the leader.
    pub fn stale(&self) -> Api {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("minion-consistency", reqwest::header::HeaderValue::from_static("stale"));
        Api { http: reqwest::Client::builder().default_headers(h).build().expect("client"), base: self.base.clone() }
    }

    pub async fn req(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }
    /// POST raw bytes with a JSON content type.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn submit(&self, task: Value) -> u64 {
        let (s, v) = self.post("/v1/tasks", task).await;
        assert!(s == 201 || s == 200, "submit: {s} {v}");
        v["id"].as_u64().expect("id")
    }

    pub async fn claim(&self, agent: &str, queues: &[&str], max: u32, wait_ms: u64) -> Vec<Value> {
        let (s, v) =
            self.post("/v1/claims", json!({"agent_id": agent, "queues": queues, "max": max, "wait_ms": wait_ms})).await;
        assert_eq!(s, 200, "claim: {v}");
        v["tasks"].as_array().cloned().unwrap_or_default()
    }

    pub async fn task(&self, id: u64) -> Value {
        let (s, v) = self.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(s, 200, "get task {id}: {v}");
        v
    }

    pub async fn complete(&self, t: &Value, result: Value) -> (u16, Value) {
        let id = t["id"].as_u64().expect("id");
        self.post(&format!("/v1/tasks/{id}/complete"), json!({"lease_token": t["lease"]["token"], "result": result}))
            .await
    }

    pub async fn count(&self, query: &str) -> usize {
        self.tasks(query).await.len()
    }

    /// How many tasks of `queue` are in any of `states` (from the queue's stats).
    pub async fn in_states(&self, queue: &str, states: &[&str]) -> usize {
        let (_, v) = self.get(&format!("/v1/queues/{queue}")).await;
        states.iter().map(|k| v["stats"][*k].as_u64().unwrap_or(0) as usize).sum()
    }

    /// Every task matching `query` (`/v1/tasks` filters), following the cursor.
    pub async fn tasks(&self, query: &str) -> Vec<Value> {
        self.try_tasks(query).await.unwrap_or_else(|(s, v)| panic!("listing tasks answered {s}: {v}"))
    }

    /// [`Api::tasks`], or the first answer that is not 200 (a read during a failover can be
    /// refused with 503 until the new leader has confirmed its term).
    pub async fn try_tasks(&self, query: &str) -> Result<Vec<Value>, (u16, Value)> {
        let mut out = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/v1/tasks?limit=1000&after={a}&{query}"),
                None => format!("/v1/tasks?limit=1000&{query}"),
            };
            let (s, v) = self.get(&path).await;
            if s != 200 {
                return Err((s, v));
            }
            out.extend(v["tasks"].as_array().cloned().unwrap_or_default());
            match v["next"].as_u64() {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

/// A background `minion` process, killed (-9) when dropped, so that a failing test leaves no
/// process behind.
pub struct Background(Child);

impl Background {
    /// SIGKILL now.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run `minion <args>` in the background, its stderr appended to `log`.
pub fn spawn_minion(args: &[&str], log: &Path) -> Background {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn minion");
    Background(child)
}

/// The one file in `dir` (a test's log or snapshot directory).
pub fn only_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(files.len(), 1, "expected one file in {}: {files:?}", dir.display());
    files.remove(0)
}

/// XOR 64 bytes in the middle of a file.
pub fn flip_bytes(file: &Path) {
    let mut bytes = std::fs::read(file).expect("read file to corrupt");
    assert!(bytes.len() > 4096, "{} unexpectedly small: {}", file.display(), bytes.len());
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(file, &bytes).expect("write corrupted file");
}

/// Poll `f` until it returns Some, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh PostgreSQL database on the local server for one test; dropped at the end.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

pub const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl PgDb {
    pub async fn create(tag: &str) -> PgDb {
        let name = format!("minion_test_{tag}_{}_{}", std::process::id(), free_port());
        let admin = pg_connect(PG_ADMIN).await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PgDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Like `assert_eq!`, but returns the difference as an error.
macro_rules! check {
    ($a:expr, $b:expr, $($msg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{}: mirror {:?} vs ledger {:?}", format!($($msg)+), a, b));
        }
    }};
}

/// Compare the mirror with the server's ledger, row for row: every task with its state, queue,
/// kind, attempts, result, lease and progress; agents; dedup keys; nothing extra in the mirror.
pub async fn mirror_diff(api: &Api, pg: &tokio_postgres::Client) -> Result<(), String> {
    let mut ledger = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/v1/tasks?limit=1000&after={a}"),
            None => "/v1/tasks?limit=1000".to_string(),
        };
        let (_, v) = api.get(&path).await;
        ledger.extend(v["tasks"].as_array().cloned().unwrap_or_default());
        match v["next"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let rows = pg
        .query(
            "SELECT id, queue, kind, state, result, attempt_count, lease_token, payload,
                    (SELECT count(*) FROM task_progress p WHERE p.task_id = t.id)
             FROM tasks t ORDER BY id",
            &[],
        )
        .await
        .expect("query tasks");
    check!(rows.len(), ledger.len(), "task count: mirror vs ledger");
    for (row, t) in rows.iter().zip(&ledger) {
        let id: i64 = row.get(0);
        check!(Some(id as u64), t["id"].as_u64(), "ids in order");
        check!(row.get::<_, String>(1), t["queue"].as_str().unwrap_or(""), "queue of {id}");
        check!(row.get::<_, String>(2), t["kind"].as_str().unwrap_or(""), "kind of {id}");
        check!(row.get::<_, String>(3), t["state"].as_str().unwrap_or(""), "state of {id}");
        let result: Option<serde_json::Value> = row.get(4);
        check!(result.unwrap_or(serde_json::Value::Null), t["result"], "result of {id}");
        check!(row.get::<_, i32>(5) as usize, t["attempts"].as_array().map_or(0, |a| a.len()), "attempts of {id}");
        let token: Option<i64> = row.get(6);
        check!(token.map(|x| x as u64), t["lease"]["token"].as_u64(), "lease of {id}");
        let payload: Option<serde_json::Value> = row.get(7);
        check!(payload.unwrap_or(serde_json::Value::Null), t["payload"], "payload of {id}");
        check!(row.get::<_, i64>(8) as usize, t["progress"].as_array().map_or(0, |a| a.len()), "progress of {id}");
    }
    let (_, agents) = api.get("/v1/agents").await;
    let agent_rows = pg.query("SELECT id, status, completed FROM agent_state ORDER BY id", &[]).await.expect("agents");
    let mut want: Vec<(String, String, i64)> = agents["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
                a["stats"]["overall"]["completed"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    want.sort();
    let got: Vec<(String, String, i64)> = agent_rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    check!(got, want, "agents");
    let (_, stats) = api.get("/v1/stats").await;
    let keys: i64 = pg.query_one("SELECT count(*) FROM message_dedup", &[]).await.expect("dedup").get(0);
    check!(Some(keys as u64), stats["dedup"]["keys"].as_u64(), "dedup keys");
    Ok(())
}

/// Wait until the mirror has caught up with the server and equals its ledger row for row (time-
/// driven changes such as retry timers keep moving the server for a while after a workload).
pub async fn assert_mirror_matches(api: &Api, pg: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, stats) = api.get("/v1/stats").await;
        let applied = stats["raft"]["applied_index"].as_u64().unwrap_or(0);
        let pos = pg
            .query_opt("SELECT log_index FROM export_position WHERE name = 'default'", &[])
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0);
        let diff = if pos >= applied {
            mirror_diff(api, pg).await
        } else {
            Err(format!("position {pos} < applied {applied}"))
        };
        match diff {
            Ok(()) => return,
            Err(d) if Instant::now() > deadline => panic!("the mirror does not match the ledger: {d}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A mixed workload: keyed submits, claims by registered agents, progress, completions, failures
/// and cancellations.
pub async fn mixed_workload(api: &Api, rounds: usize, tag: &str) {
    let (s, _) = api.post("/v1/agents", serde_json::json!({"id": format!("{tag}-agent"), "max_concurrency": 8})).await;
    assert_eq!(s, 201);
    // Failed attempts retry at once: no timer changes the ledger after the workload ends.
    let (s, _) = api.req(reqwest::Method::PUT, "/v1/queues/mix", Some(serde_json::json!({"retry_base_ms": 0}))).await;
    assert_eq!(s, 200);
    for r in 0..rounds {
        let tasks: Vec<serde_json::Value> = (0..5)
            .map(|i| {
                serde_json::json!({"queue": "mix", "kind": format!("k{}", i % 2), "payload": {"r": r, "i": i},
                                        "idempotency_key": format!("{tag}-{r}-{i}")})
            })
            .collect();
        let (s, v) = api.post("/v1/tasks", serde_json::json!({ "tasks": tasks })).await;
        assert!(s == 201 || s == 200, "{v}");
        let claimed = api.claim(&format!("{tag}-agent"), &["mix"], 4, 0).await;
        for (n, t) in claimed.iter().enumerate() {
            let id = t["id"].as_u64().unwrap_or(0);
            let token = t["lease"]["token"].clone();
            api.post(&format!("/v1/tasks/{id}/progress"), serde_json::json!({"lease_token": token, "percent": 50}))
                .await;
            match n % 3 {
                0 => {
                    api.post(
                        &format!("/v1/tasks/{id}/complete"),
                        serde_json::json!({"lease_token": token, "result": {"ok": r}}),
                    )
                    .await;
                }
                1 => {
                    api.post(
                        &format!("/v1/tasks/{id}/fail"),
                        serde_json::json!({"lease_token": token, "error": "boom"}),
                    )
                    .await;
                }
                _ => {
                    api.post(&format!("/v1/tasks/{id}/cancel"), serde_json::json!({})).await;
                }
            }
        }
    }
}

/// Run `mixed_workload` rounds in the background until the returned flag is set; join the handle.
pub fn background_load(
    api: &Api,
    tag: &str,
) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (api, flag, tag) = (api.clone(), stop.clone(), tag.to_string());
    let handle = tokio::spawn(async move {
        let mut r = 0;
        while !flag.load(Ordering::Relaxed) {
            mixed_workload(&api, 1, &format!("{tag}{r}")).await;
            r += 1;
        }
    });
    (stop, handle)
}

/// `minion export postgres` against `server` into `url` (small batches, fast polls for tests).
pub fn export_command(server: &str, url: &str, follow: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minion"));
    cmd.args(["export", "postgres", "--url", url, "--server", server, "--batch-records", "50"]);
    if follow {
        cmd.args(["--follow", "--poll-ms", "50"]);
    }
    cmd.stdout(Stdio::null());
    cmd
}

/// A following exporter logging to `log`.
pub fn spawn_follow(server: &str, url: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    export_command(server, url, true).stderr(log).spawn().expect("spawn exporter")
}

/// A server configuration with one autoscaled pool, `render`, serving queue `frames` (1 to 4
/// workers, growing fast under a backlog, shrinking once idle).
pub const RENDER_POOL: &str = r#"
autoscale_interval_ms = 100

[[pools]]
name = "render"
queues = ["frames"]

[pools.policy]
min_workers = 1
max_workers = 4
scale_up_utilization = 0.9
scale_up_backlog_per_worker = 2.0
scale_up_oldest_ready_ms = 60000
scale_down_utilization = 0.3
step_up = 3
step_down = 1
cooldown_up_ms = 0
cooldown_down_ms = 200
"#;

/// Active agents of pool `render` (labelled `pool=render`).
pub async fn pool_workers(api: &Api) -> usize {
    let (_, v) = api.get("/v1/agents").await;
    v["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["pool"] == "render" && a["status"] == "active")
        .count()
}

/// libfaketime's multi-threaded preload library (Debian's `faketime` package; `.ci/run` installs it).
impl Server {
    /// Run under libfaketime with the wall-clock offset (`+0`, `+1d`, `-30s`, …) read from
    /// `offset_file` on every call, and the monotonic clock left real (as NTP steps a clock).
    pub fn under_faketime(&mut self, offset_file: &Path) {
        self.env = vec![
            ("LD_PRELOAD".into(), faketime_library()),
            ("FAKETIME_TIMESTAMP_FILE".into(), offset_file.display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ];
    }
}

pub fn faketime_library() -> String {
    ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1"))
        .find(|p| std::path::Path::new(p).exists())
        .expect("libfaketime is missing: apt-get install faketime (.ci/run installs it)")
}
