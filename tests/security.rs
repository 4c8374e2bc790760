//! Authentication, authorization, TLS and limits against real servers.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::Cluster;
use common::{eventually, Api, Server};
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token-0123456789";

fn api_with(base: &str, token: &str) -> Api {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header"));
    Api { http: reqwest::Client::builder().default_headers(h).build().expect("client"), base: base.to_string() }
}

fn anonymous(base: &str) -> Api {
    Api { http: reqwest::Client::new(), base: base.to_string() }
}

async fn secured(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--auth", "on", "--admin-token", ADMIN];
    args.extend_from_slice(extra);
    Server::start(dir, &args).await
}

/// Create a token; its bearer value.
async fn token(admin: &Api, body: Value) -> String {
    let (s, v) = admin.post("/v1/tokens", body).await;
    assert_eq!(s, 201, "{v}");
    let t = v["token"].as_str().expect("token").to_string();
    assert!(t.starts_with(&format!("mn_{}_", v["id"].as_str().expect("id"))), "{v}");
    t
}

/// Every (method, path) of the documented API.
fn routes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).expect("openapi");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// What each role may call, written out here independently of the server's table.
fn expected(role: &str, method: &str, path: &str) -> bool {
    let get = method == "GET";
    let reads = [
        "/v1/tasks",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/events",
        "/v1/events",
        "/v1/agents",
        "/v1/agents/{id}",
        "/v1/queues",
        "/v1/queues/{name}",
        "/v1/queues/{name}/limits",
        "/v1/schedules",
        "/v1/schedules/{name}",
        "/v1/stats",
        "/v1/config",
        "/v1/autoscaler",
        "/v1/autoscaler/decisions",
        "/v1/changes",
        "/v1/dedup",
        "/v1/adapters",
        "/v1/cluster",
        "/v1/cluster/node",
        "/v1/metrics/queues/{name}",
    ];
    if method == "GET" && path == "/v1/whoami" {
        return true;
    }
    match role {
        "admin" => true,
        "producer" => {
            matches!(
                (method, path),
                ("POST", "/v1/tasks") | ("POST", "/v1/rejections") | ("PUT", "/v1/adapters/{name}")
            ) || (get && matches!(path, "/v1/tasks" | "/v1/tasks/{id}" | "/v1/tasks/{id}/events" | "/v1/events"))
        }
        "worker" => {
            matches!(
                (method, path),
                ("POST", "/v1/claims")
                    | ("POST", "/v1/tasks/{id}/progress")
                    | ("POST", "/v1/tasks/{id}/complete")
                    | ("POST", "/v1/tasks/{id}/fail")
                    | ("POST", "/v1/tasks/{id}/extend")
                    | ("POST", "/v1/tasks/{id}/children")
                    | ("POST", "/v1/tasks/{id}/wait-children")
                    | ("POST", "/v1/acks")
                    | ("POST", "/v1/agents")
                    | ("POST", "/v1/agents/{id}/heartbeat")
                    | ("POST", "/v1/agents/{id}/drain")
                    | ("DELETE", "/v1/agents/{id}")
                    | ("GET", "/v1/autoscaler")
            ) || (get && matches!(path, "/v1/tasks" | "/v1/tasks/{id}" | "/v1/tasks/{id}/events"))
        }
        "reader" => (get && reads.contains(&path)) || (method == "PUT" && path == "/v1/adapters/{name}"),
        "metrics" => get && matches!(path, "/metrics" | "/v1/metrics/queues/{name}" | "/v1/autoscaler"),
        _ => false,
    }
}

fn concrete(path: &str) -> String {
    let p = path.replace("{name}", "q");
    if p.starts_with("/v1/agents/") {
        p.replace("{id}", "a1")
    } else if p.starts_with("/v1/tokens/") {
        p.replace("{id}", "0000000000000000")
    } else {
        p.replace("{id}", "1")
    }
}

async fn call(api: &Api, method: &str, path: &str) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let body = matches!(method, "POST" | "PUT").then(|| json!({}));
    if path.ends_with("/events") {
        // An event stream that opens never ends by itself: its status is the answer; a refusal's
        // body is read.
        let resp = api.http.request(m, format!("{}{}", api.base, concrete(path))).send().await.expect("request");
        let status = resp.status().as_u16();
        if status == 200 {
            return (status, Value::Null);
        }
        return (status, resp.json().await.unwrap_or(Value::Null));
    }
    api.req(m, &concrete(path), body).await
}

#[tokio::test]
async fn every_route_refuses_missing_wrong_expired_revoked_and_underprivileged_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = secured(dir.path(), &[]).await;
    let admin = api_with(&srv.base, ADMIN);
    admin.submit(json!({"queue": "q", "payload": 1})).await;
    let roles = ["admin", "producer", "worker", "reader", "metrics"];
    let mut tokens = Vec::new();
    for r in roles {
        tokens.push((r, token(&admin, json!({"name": format!("t-{r}"), "role": r})).await));
    }
    let expired = token(&admin, json!({"name": "short", "role": "admin", "expires_in_ms": 1})).await;
    let revoked = token(&admin, json!({"name": "gone", "role": "admin"})).await;
    let revoked_id = revoked.split('_').nth(1).expect("id").to_string();
    let (s, v) = admin.req(reqwest::Method::DELETE, &format!("/v1/tokens/{revoked_id}"), None).await;
    assert_eq!((s, v["active"].as_bool()), (200, Some(false)), "{v}");
    // The producer's id with another secret.
    let producer_id = tokens[1].1.split('_').nth(1).expect("id");
    let wrong = format!("mn_{producer_id}_{}", "0".repeat(64));
    tokio::time::sleep(Duration::from_millis(20)).await;

    let public = ["/healthz", "/readyz", "/v1/openapi.json"];
    let mut checked = 0;
    let all = routes();
    assert!(all.len() >= 40, "{} routes", all.len());
    for (method, path) in all.clone() {
        if public.contains(&path.as_str()) {
            let (s, v) = call(&anonymous(&srv.base), &method, &path).await;
            assert_eq!(s, 200, "{method} {path} is public: {v}");
            continue;
        }
        let (s, v) = call(&anonymous(&srv.base), &method, &path).await;
        assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{method} {path} without a token");
        for (bad, why) in [
            (wrong.as_str(), "not valid"),
            ("garbage", "not valid"),
            (ADMIN.trim_end_matches('9'), "not valid"),
            (expired.as_str(), "expired"),
            (revoked.as_str(), "revoked"),
        ] {
            let (s, v) = call(&api_with(&srv.base, bad), &method, &path).await;
            assert_eq!(s, 401, "{method} {path} with a token that is {why}: {v}");
            assert!(v["error"]["message"].as_str().unwrap_or_default().contains(why), "{v}");
        }
        for (role, t) in &tokens {
            let (s, v) = call(&api_with(&srv.base, t), &method, &path).await;
            if expected(role, &method, &path) {
                assert!(s != 401 && s != 403, "{role} may {method} {path}: {s} {v}");
            } else {
                assert_eq!(
                    (s, v["error"]["code"].as_str()),
                    (403, Some("forbidden")),
                    "{role} may not {method} {path}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, (all.len() - public.len()) * roles.len(), "every route with every role");
    // Prometheus and KEDA authenticate with a metrics token.
    let metrics = api_with(&srv.base, &tokens[4].1);
    let resp = metrics.http.get(format!("{}/metrics", srv.base)).send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("text").contains("minion_auth_refused_total"));
    assert_eq!(metrics.get("/v1/metrics/queues/q").await.1["ready"], 1);
}

#[tokio::test]
async fn queue_patterns_restrict_tokens_and_deny_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = secured(dir.path(), &[]).await;
    let admin = api_with(&srv.base, ADMIN);
    let other = admin.submit(json!({"queue": "billing", "payload": 0})).await;
    let secret_task = admin.submit(json!({"queue": "orders.secret", "payload": 0})).await;
    let p = api_with(
        &srv.base,
        &token(&admin, json!({"name": "shop", "role": "producer", "queues": ["orders.*"], "deny": ["orders.secret"]}))
            .await,
    );
    let mine = p.submit(json!({"queue": "orders.eu", "payload": 1})).await;
    for q in ["billing", "orders.secret", "orders"] {
        let (s, v) = p.post("/v1/tasks", json!({"queue": q, "payload": 1})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{q}: {v}");
    }
    // A batch with one forbidden task is refused whole.
    let before = admin.count("").await;
    let (s, _) =
        p.post("/v1/tasks", json!({"tasks": [{"queue": "orders.eu", "payload": 2}, {"queue": "billing"}]})).await;
    assert_eq!(s, 403);
    assert_eq!(admin.count("").await, before, "nothing was created");
    // Reading: its own queues only; others' tasks are not found; listing needs an allowed queue.
    assert_eq!(p.get(&format!("/v1/tasks/{mine}")).await.0, 200);
    assert_eq!(p.get(&format!("/v1/tasks/{other}")).await.0, 404);
    assert_eq!(p.get(&format!("/v1/tasks/{secret_task}")).await.0, 404);
    assert_eq!(p.get("/v1/tasks").await.0, 403);
    assert_eq!(p.get("/v1/tasks?queue=billing").await.0, 403);
    let (s, v) = p.get("/v1/tasks?queue=orders.eu").await;
    assert_eq!((s, v["tasks"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    // It can ask what it is (the console shows only what it may do).
    let (s, v) = p.get("/v1/whoami").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"auth": true, "role": "producer", "name": "shop", "queues": ["orders.*"], "deny": ["orders.secret"]})
    );
    assert_eq!(admin.get("/v1/whoami").await.1["role"], "admin");
    // A worker restricted to one queue claims only there, and reaches only its tasks.
    let w = api_with(&srv.base, &token(&admin, json!({"name": "w", "role": "worker", "queues": ["orders.eu"]})).await);
    let (s, _) = w.post("/v1/claims", json!({"agent_id": "w1", "queues": ["billing"], "max": 1})).await;
    assert_eq!(s, 403);
    let (s, v) = w.post("/v1/claims", json!({"agent_id": "w1", "queues": ["orders.eu"], "max": 1})).await;
    assert_eq!((s, v["tasks"][0]["id"].as_u64()), (200, Some(mine)), "{v}");
    let (s, _) = w.post(&format!("/v1/tasks/{other}/complete"), json!({"lease_token": 1})).await;
    assert_eq!(s, 404, "a task outside its queues is not found");
    assert_eq!(admin.task(other).await["state"], "ready", "and unchanged");
}

#[tokio::test]
async fn tokens_are_stored_hashed_revoked_everywhere_and_admin_actions_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = secured(dir.path(), &[]).await;
    let bin = env!("CARGO_BIN_EXE_minion");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env("MINION_SERVER", &srv.base)
            .env("MINION_TOKEN", ADMIN)
            .output()
            .expect("cli");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let bearer = cli(&["token", "create", "--name", "ci", "--role", "producer", "--queue", "ci.*"]);
    let id = bearer.split('_').nth(1).expect("id").to_string();
    let secret = bearer.rsplit('_').next().expect("secret").to_string();
    let p = api_with(&srv.base, &bearer);
    let task = p.submit(json!({"queue": "ci.build", "payload": 1})).await;
    let admin = api_with(&srv.base, ADMIN);
    let (s, _) = admin.req(reqwest::Method::PUT, "/v1/queues/ci.build", Some(json!({"max_attempts": 2}))).await;
    assert_eq!(s, 200);
    assert_eq!(admin.post(&format!("/v1/tasks/{task}/cancel"), json!({"reason": "no"})).await.0, 200);
    assert_eq!(admin.post(&format!("/v1/tasks/{task}/retry"), json!({})).await.0, 200);
    assert!(cli(&["token", "list"]).contains(&id));
    cli(&["token", "revoke", &id]);
    assert_eq!(p.get(&format!("/v1/tasks/{task}")).await.0, 401, "revoked at once");

    // The audit trail names who did what, in order.
    let (s, v) = admin.get("/v1/audit").await;
    assert_eq!(s, 200);
    let entries = v["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().expect("action")).collect();
    assert_eq!(actions, ["token.create", "queue.set", "task.cancel", "task.retry", "token.revoke"], "{v}");
    assert!(entries.iter().all(|e| e["actor"] == "admin-token"), "{v}");
    assert_eq!(entries[0]["target"], id.as_str());
    assert!(cli(&["audit"]).contains("token.revoke"));
    // Refused actions change nothing and are not recorded as done.
    let (s, _) = p.req(reqwest::Method::PUT, "/v1/queues/ci.build", Some(json!({"max_attempts": 9}))).await;
    assert_eq!(s, 401);
    assert_eq!(admin.get("/v1/audit").await.1["entries"].as_array().map(Vec::len), Some(5));

    // Only a hash is stored: the secret appears nowhere in the data directory.
    srv.stop();
    let mut files = Vec::new();
    let mut stack = vec![srv.data_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds the secret", f.display());
    }
    // Tokens and the audit trail survive a restart.
    srv.spawn().await;
    let admin = api_with(&srv.base, ADMIN);
    assert_eq!(admin.get("/v1/audit").await.1["entries"].as_array().map(Vec::len), Some(5));
    assert_eq!(api_with(&srv.base, &bearer).get(&format!("/v1/tasks/{task}")).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_answer_429_and_a_flooding_token_does_not_starve_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = secured(dir.path(), &["--rate-limit-per-sec", "40"]).await;
    let admin = api_with(&srv.base, ADMIN);
    let flood = api_with(&srv.base, &token(&admin, json!({"name": "flood", "role": "producer"})).await);
    let calm = api_with(&srv.base, &token(&admin, json!({"name": "calm", "role": "producer"})).await);
    let before = admin.count("").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = std::time::Instant::now();
    let mut floods = Vec::new();
    for _ in 0..16 {
        let (api, stop) = (flood.clone(), stop.clone());
        floods.push(tokio::spawn(async move {
            let (mut created, mut limited) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = api
                    .http
                    .post(format!("{}/v1/tasks", api.base))
                    .json(&json!({"queue": "f", "payload": 1}))
                    .send()
                    .await
                    .expect("send");
                match resp.status().as_u16() {
                    201 => created += 1,
                    429 => {
                        let after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
                        assert!(after.and_then(|a| a.parse::<u64>().ok()).is_some_and(|a| a >= 1), "Retry-After");
                        let v: Value = resp.json().await.expect("json");
                        assert_eq!(v["error"]["code"], "rate_limited");
                        limited += 1;
                    }
                    s => panic!("flood got {s}"),
                }
            }
            (created, limited)
        }));
    }
    // Meanwhile the calm token, well within its rate, is never refused.
    for i in 0..30 {
        let (s, v) = calm.post("/v1/tasks", json!({"queue": "c", "payload": i})).await;
        assert_eq!(s, 201, "the calm token was refused while another flooded: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut created, mut limited) = (0, 0);
    for f in floods {
        let (c, l) = f.await.expect("flood");
        created += c;
        limited += l;
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(limited > created, "the flood was mostly refused: {created} created, {limited} limited");
    // At most the rate over the run, plus the burst (80), plus one second of slack.
    assert!(created as f64 <= 40.0 * (secs + 1.0) + 80.0, "{created} created in {secs:.1} s");
    // Refused requests changed nothing: exactly the accepted ones exist.
    assert_eq!(admin.count("").await as u64, before as u64 + created + 30);
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it: (ca, cert, key) PEM files.
fn pki(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    // Loopback, and the addresses the cluster harness gives its nodes' peer ports.
    let mut names: Vec<String> = vec!["127.0.0.1".into(), "localhost".into()];
    names.extend((11..=13).map(|i| format!("127.0.0.{i}")));
    let params = CertificateParams::new(names).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    let paths = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

#[tokio::test]
async fn the_api_serves_tls_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = pki(dir.path(), "api");
    let p = |x: &Path| x.to_str().expect("path").to_string();
    let mut srv = Server {
        child: None,
        port: common::free_port(),
        raft_listen: "127.0.0.1:0".into(),
        node_id: 1,
        data_dir: dir.path().join("data"),
        base: String::new(),
        extra: ["--auth", "on", "--admin-token", ADMIN, "--tls-cert", &p(&cert), "--tls-key", &p(&key)]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        env: Vec::new(),
        log: dir.path().join("server.log"),
        netns: None,
    };
    srv.base = format!("https://127.0.0.1:{}", srv.port);
    srv.launch();
    let pem = std::fs::read(&ca).expect("ca");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .default_headers(
            [("authorization".parse().expect("h"), format!("Bearer {ADMIN}").parse().expect("v"))]
                .into_iter()
                .collect(),
        )
        .build()
        .expect("client");
    let api = Api { http: trusting, base: srv.base.clone() };
    eventually(20, "the TLS API to answer", || {
        let api = api.clone();
        async move { (api.http.get(format!("{}/healthz", api.base)).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let id = api.submit(json!({"queue": "tls", "payload": 1})).await;
    assert_eq!(api.task(id).await["state"], "ready");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/healthz", srv.port)).send().await;
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");
    // A client that does not trust the CA refuses the server.
    let untrusting = reqwest::Client::new().get(format!("{}/healthz", srv.base)).send().await;
    assert!(untrusting.is_err(), "a certificate from an unknown CA was accepted");
    // The CLI with --ca-cert and a token.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["task", "get", &id.to_string(), "--server", &srv.base, "--ca-cert", &p(&ca), "--token", ADMIN, "--json"])
        .output()
        .expect("cli");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"tls\""));
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_use_mutual_tls_and_the_peer_port_takes_no_client_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = pki(dir.path(), "peer");
    let p = |x: &Path| x.to_str().expect("path").to_string();
    let extra = ["--peer-tls-cert", &p(&cert), "--peer-tls-key", &p(&key), "--peer-tls-ca", &p(&ca)];
    let mut c = Cluster::start(dir.path(), 1, &extra).await;
    c.add_process(1, &extra, true).await;
    c.nodes[1].wait_up().await;
    c.join(1, true).await;
    let api = c.api(0);
    for n in 0..20 {
        api.submit(json!({"queue": "m", "payload": n})).await;
    }
    c.wait_converged(20).await;
    assert_eq!(c.api(1).stale().count("queue=m").await, 20, "replicated over mutual TLS");

    let peer = &c.nodes[0].raft_listen;
    let pem = std::fs::read(&ca).expect("ca");
    let trusting =
        || reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"));
    // Without a client certificate the handshake fails; plaintext gets no answer either.
    let no_cert = trusting().build().expect("client").get(format!("https://{peer}/raft/info")).send().await;
    assert!(no_cert.is_err(), "a peer without a certificate was served: {no_cert:?}");
    let plain = reqwest::Client::new().get(format!("http://{peer}/raft/info")).send().await;
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");
    // With a certificate but an API credential instead of the cluster secret: refused.
    let mut identity = std::fs::read(&cert).expect("cert");
    identity.extend(std::fs::read(&key).expect("key"));
    let with_cert =
        trusting().identity(reqwest::Identity::from_pem(&identity).expect("identity")).build().expect("client");
    let resp = with_cert
        .get(format!("https://{peer}/raft/info"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("the handshake succeeds with a certificate");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn the_peer_secret_is_no_api_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = secured(dir.path(), &["--cluster-secret", "a-cluster-secret-of-some-length"]).await;
    let (s, _) = api_with(&srv.base, "a-cluster-secret-of-some-length").get("/v1/stats").await;
    assert_eq!(s, 401);
    let raft_addr =
        api_with(&srv.base, ADMIN).get("/v1/cluster/node").await.1["raft_addr"].as_str().expect("addr").to_string();
    let resp = reqwest::Client::new()
        .get(format!("http://{raft_addr}/raft/info"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("peer port");
    assert_eq!(resp.status(), 401, "the admin token opens nothing on the peer port");
}

#[tokio::test]
async fn limits_give_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(
        dir.path(),
        &["--connections-max", "4", "--body-bytes-max", "4096", "--payload-bytes-max", "1024"],
    )
    .await;
    let api = srv.client();
    // A chunked body (no declared length) over the limit: 413, nothing created.
    let big = format!("{{\"queue\":\"l\",\"payload\":\"{}\"}}", "x".repeat(10_000));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.into_bytes().chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks", srv.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    assert_eq!(api.count("").await, 0);
    // Four idle connections fill the node; the fifth is answered 503 and closed.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(("127.0.0.1", srv.port)).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = reqwest::Client::new().get(format!("{}/v1/stats", srv.base)).send().await.expect("an answer");
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "too_many_connections");
    drop(idle);
    eventually(10, "connections to free up", || {
        let api = api.clone();
        async move { (api.http.get(format!("{}/v1/stats", api.base)).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(chunks)
}

/// `minion <args>` with a token, in the background, its stderr in `log`.
fn client_process(args: &[&str], token: &str, log: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(args)
        .env("MINION_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_clients_run_with_least_privilege_tokens() {
    use redis::AsyncCommands;
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = secured(dir.path(), &[]).await;
    let admin = api_with(&srv.base, ADMIN);
    let producer = token(&admin, json!({"name": "ingest", "role": "producer", "queues": ["sec-inbox"]})).await;
    let worker = token(&admin, json!({"name": "worker", "role": "worker", "queues": ["sec-inbox"]})).await;
    let reader = token(&admin, json!({"name": "export", "role": "reader"})).await;

    // Redis Streams ingest as a producer: tasks, and a poison record recorded as rejected.
    let stream = format!("minion-sec-{}-{}", std::process::id(), common::free_port());
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("redis");
    let mut con = client.get_multiplexed_async_connection().await.expect("connect");
    for i in 0..9 {
        let _: String = con.xadd(&stream, "*", &[("payload", json!({"n": i}).to_string())]).await.expect("xadd");
    }
    let _: String = con.xadd(&stream, "*", &[("other", "no payload")]).await.expect("xadd");
    let log = dir.path().join("clients.log");
    let ingest = [
        "ingest",
        "redis",
        "--url",
        "redis://127.0.0.1:6379",
        "--stream",
        &stream,
        "--group",
        "sec",
        "--queue",
        "sec-inbox",
        "--server",
        &srv.base,
        "--name",
        "sec-in",
        "--batch-ms",
        "10",
    ];
    let mut adapter = client_process(&ingest, &producer, &log);
    eventually(30, "every entry ingested", || {
        let admin = admin.clone();
        async move {
            let (_, v) = admin.get("/v1/queues/sec-inbox").await;
            (v["stats"]["ready"] == 9 && v["stats"]["rejected"] == 1).then_some(())
        }
    })
    .await;

    // The reference worker as a worker: runs every task, then drains itself on SIGTERM.
    let mut w = client_process(
        &[
            "worker",
            "--server",
            &srv.base,
            "--id",
            "sec-w",
            "--queue",
            "sec-inbox",
            "--exec",
            "cat",
            "--wait-ms",
            "500",
        ],
        &worker,
        &log,
    );
    eventually(30, "the worker to finish every task", || {
        let admin = admin.clone();
        async move { (admin.get("/v1/queues/sec-inbox").await.1["stats"]["succeeded"] == 9).then_some(()) }
    })
    .await;
    let _ = std::process::Command::new("kill").args(["-TERM", &w.id().to_string()]).status();
    let status = w.wait().expect("wait");
    assert!(status.success(), "the worker stopped cleanly: {status:?}; see {}", log.display());
    let (_, audit) = admin.get("/v1/audit").await;
    assert!(audit.to_string().contains("agent.drain"), "{audit}");

    // The PostgreSQL exporter as a reader.
    let db = common::PgDb::create("sec").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["export", "postgres", "--url", &db.url, "--server", &srv.base])
        .env("MINION_TOKEN", &reader)
        .output()
        .expect("export");
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let pg = db.client().await;
    let n: i64 = pg.query_one("SELECT count(*) FROM tasks WHERE queue = 'sec-inbox'", &[]).await.expect("count").get(0);
    assert_eq!(n, 10);
    let _ = adapter.kill();
    let _ = adapter.wait();
}

/// Defect: a worker token could claim, heartbeat and acknowledge under any agent id. A token can
/// be bound to agent-id patterns, enforced on claims, registration, heartbeats, drains, progress
/// and acknowledgements (of leases held by other agents), and kept across a restart.
#[tokio::test]
async fn a_token_bound_to_agents_acts_only_as_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = secured(dir.path(), &[]).await;
    let admin = api_with(&srv.base, ADMIN);
    let (s, v) = admin.post("/v1/tokens", json!({"name": "bad", "role": "worker", "agents": [""]})).await;
    assert_eq!(s, 400, "an empty pattern is refused: {v}");
    let bound = token(&admin, json!({"name": "gpu-workers", "role": "worker", "agents": ["gpu-*"]})).await;
    let (_, list) = admin.get("/v1/tokens").await;
    let listed = list["tokens"].as_array().expect("tokens").iter().find(|t| t["name"] == "gpu-workers").cloned();
    assert_eq!(listed.map(|t| t["agents"].clone()), Some(json!(["gpu-*"])));
    let w = api_with(&srv.base, &bound);
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    // Registration, claims and heartbeats only as a matching agent.
    let (s, v) = w.post("/v1/agents", json!({"id": "cpu-1"})).await;
    assert_eq!((s, code(&v)), (403, "forbidden".into()), "{v}");
    let (s, v) = w.post("/v1/agents", json!({"id": "gpu-1"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = admin.post("/v1/agents", json!({"id": "cpu-1"})).await;
    assert_eq!(s, 201);
    admin.submit(json!({"queue": "q", "payload": 1})).await;
    admin.submit(json!({"queue": "q", "payload": 2})).await;
    let (s, v) = w.post("/v1/claims", json!({"agent_id": "cpu-1", "queues": ["q"]})).await;
    assert_eq!((s, code(&v)), (403, "forbidden".into()), "{v}");
    for (id, want) in [("cpu-1", 403), ("gpu-1", 200)] {
        let (s, v) = w.post(&format!("/v1/agents/{id}/heartbeat"), json!({})).await;
        assert_eq!(s, want, "heartbeat {id}: {v}");
    }
    let (s, v) = w.post("/v1/agents/cpu-1/drain", json!({})).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = w.req(reqwest::Method::DELETE, "/v1/agents/cpu-1", None).await;
    assert_eq!(s, 403, "{v}");

    // Its own lease: fine. Another agent's lease, even with the right lease token: refused, and
    // nothing changes.
    let (s, mine) = w.post("/v1/claims", json!({"agent_id": "gpu-1", "queues": ["q"]})).await;
    assert_eq!(s, 200, "{mine}");
    let mine = mine["tasks"][0].clone();
    let theirs = admin.claim("cpu-1", &["q"], 1, 0).await.remove(0);
    let tid = theirs["id"].as_u64().expect("id");
    let token_of = |t: &Value| t["lease"]["token"].clone();
    let refused = [
        (format!("/v1/tasks/{tid}/progress"), json!({"lease_token": token_of(&theirs), "percent": 5})),
        (format!("/v1/tasks/{tid}/extend"), json!({"lease_token": token_of(&theirs)})),
        (format!("/v1/tasks/{tid}/fail"), json!({"lease_token": token_of(&theirs), "error": "x"})),
        (format!("/v1/tasks/{tid}/complete"), json!({"lease_token": token_of(&theirs), "result": 1})),
        (
            "/v1/acks".to_string(),
            json!({"acks": [
                {"id": mine["id"], "lease_token": token_of(&mine), "outcome": "complete"},
                {"id": tid, "lease_token": token_of(&theirs), "outcome": "complete"}
            ]}),
        ),
    ];
    for (path, body) in refused {
        let (s, v) = w.post(&path, body).await;
        assert_eq!((s, code(&v)), (403, "forbidden".into()), "{path}: {v}");
    }
    let t = admin.task(tid).await;
    assert_eq!((t["state"].as_str(), t["progress"].as_array().map(Vec::len)), (Some("leased"), Some(0)), "{t}");
    assert_eq!(
        admin.task(mine["id"].as_u64().expect("id")).await["state"],
        "leased",
        "the refused acks changed nothing"
    );
    let (s, v) = w.post(&format!("/v1/tasks/{}/complete", mine["id"]), json!({"lease_token": token_of(&mine)})).await;
    assert_eq!(s, 200, "{v}");

    // Kept across a restart (a record of its own).
    srv.restart().await;
    let (s, v) = w.post("/v1/claims", json!({"agent_id": "cpu-1", "queues": ["q"]})).await;
    assert_eq!((s, code(&v)), (403, "forbidden".into()), "after a restart: {v}");
}

/// The console's files are public (they hold no data) and sent with a strict content policy; the
/// API behind them still needs a token.
#[tokio::test]
async fn the_console_is_served_without_a_token_and_its_data_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = secured(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    for (path, kind) in [("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let r = http.get(format!("{}{path}", srv.base)).send().await.expect("get");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().expect("type").starts_with(kind), "{path}: {h:?}");
        assert!(h["content-security-policy"].to_str().expect("csp").contains("script-src 'self'"), "{path}");
    }
    let r = http.get(format!("{}/ui/secrets.txt", srv.base)).send().await.expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(anonymous(&srv.base).get("/v1/whoami").await.0, 401);
    assert_eq!(anonymous(&srv.base).get("/v1/queues").await.0, 401);
}
