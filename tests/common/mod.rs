//! Helpers for black-box tests: run the real `minion` binary on a free loopback port.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub base: String,
    pub extra: Vec<String>,
    pub log: PathBuf,
}

impl Server {
    /// Start a server on a fresh data directory inside `dir`.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let mut s = Server {
            child: None,
            port,
            data_dir: dir.join("data"),
            base: format!("http://127.0.0.1:{port}"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.join("server.log"),
        };
        s.spawn().await;
        s
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minion"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra)
            .env("MINION_LOG", "warn,minion=info");
        cmd
    }

    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn minion");
        self.child = Some(child);
        self.wait_ready().await;
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("server exited early with {status}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
                }
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server not ready in 30 s: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
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
        let (s, v) = self.post("/v1/claims", json!({"agent_id": agent, "queues": queues, "max": max, "wait_ms": wait_ms})).await;
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
        self.post(&format!("/v1/tasks/{id}/complete"), json!({"lease_token": t["lease"]["token"], "result": result})).await
    }

    pub async fn count(&self, query: &str) -> usize {
        let mut n = 0;
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/v1/tasks?limit=1000&after={a}&{query}"),
                None => format!("/v1/tasks?limit=1000&{query}"),
            };
            let (s, v) = self.get(&path).await;
            assert_eq!(s, 200, "{v}");
            n += v["tasks"].as_array().map_or(0, |a| a.len());
            match v["next"].as_u64() {
                Some(next) => after = Some(next),
                None => return n,
            }
        }
    }
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
