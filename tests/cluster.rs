//! Three real nodes on loopback: forming a cluster from a running single node, any node accepting
//! every call, linearizable and stale reads, membership changes and the mistakes they refuse,
//! and catching up by snapshot.

mod common;

use std::process::Command;

use common::cluster::{Cluster, SECRET};
use common::{eventually, Server};
use serde_json::{json, Value};

async fn voters(api: &common::Api) -> Vec<u64> {
    let (s, v) = api.get("/v1/cluster").await;
    assert_eq!(s, 200, "{v}");
    let mut ids: Vec<u64> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["node_id"].as_u64().expect("id"))
        .collect();
    ids.sort();
    ids
}

fn minion() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minion"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_grows_to_three_and_any_node_serves_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 1, &[]).await;
    // Data written while the cluster is one node.
    let before: Vec<u64> = {
        let mut ids = Vec::new();
        for n in 0..20 {
            ids.push(
                c.api(0).submit(json!({"queue": "q", "payload": {"n": n}, "idempotency_key": format!("k{n}")})).await,
            );
        }
        ids
    };
    for i in 1..3 {
        c.add_process(i, &[], true).await;
        c.nodes[i].wait_up().await;
    }
    // Node 2 through the API, node 3 through the CLI.
    c.join(1, true).await;
    let out = minion()
        .args(["cluster", "add", "--server", &c.nodes[0].base, "--node-id", "3", "--voter", "--raft-addr"])
        .arg(c.proxies[2].addr.to_string())
        .output()
        .expect("minion cluster add");
    assert!(out.status.success(), "cluster add: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(voters(&c.api(2)).await, vec![1, 2, 3]);
    // Membership changes are in the audit trail, on every node.
    let (_, v) = c.api(2).get("/v1/audit").await;
    let trail: Vec<(String, String)> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or("").to_string(), e["target"].as_str().unwrap_or("").to_string()))
        .collect();
    let want: Vec<(String, String)> = [("add_learner", "2"), ("promote", "2"), ("add_learner", "3"), ("promote", "3")]
        .iter()
        .map(|(a, t)| (format!("cluster.{a}"), t.to_string()))
        .collect();
    assert_eq!(trail, want, "{v}");

    // `minion cluster status` through a follower names the leader and every member's lag.
    let out = minion().args(["cluster", "status", "--server", &c.nodes[2].base]).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("leader=1") && text.lines().count() == 5, "{text}");

    // Everything written before growing is on every node (stale reads: each node's own state).
    for i in 0..3 {
        for id in &before {
            eventually(10, "replicated task", || async {
                let (s, _) = c.api(i).stale().get(&format!("/v1/tasks/{id}")).await;
                (s == 200).then_some(())
            })
            .await;
        }
    }

    // A write through a follower is forwarded; a linearizable read through another follower sees
    // it at once; the answering node is named.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tasks", c.nodes[1].base))
        .json(&json!({"queue": "q", "payload": "via follower", "idempotency_key": "f1"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-minion-node"], "1", "executed by the leader");
    let id = resp.json::<Value>().await.expect("json")["id"].as_u64().expect("id");
    let t = c.api(2).task(id).await;
    assert_eq!(t["payload"], "via follower");
    // The same key through the third node is a duplicate of the same task.
    let (s, v) = c.api(2).post("/v1/tasks", json!({"queue": "q", "payload": "again", "idempotency_key": "f1"})).await;
    assert_eq!((s, v["id"].as_u64(), v["duplicate"].as_bool()), (200, Some(id), Some(true)));

    // Agents work through followers: claim on node 3, complete on node 2.
    let claimed = c.api(2).claim("agent-a", &["q"], 1, 1_000).await;
    assert_eq!(claimed.len(), 1);
    let (s, v) = c.api(1).complete(&claimed[0], json!("done")).await;
    assert_eq!(s, 200, "{v}");
    // A stale token is refused whichever node receives it.
    let (s, _) = c.api(2).complete(&claimed[0], json!("again")).await;
    assert_eq!(s, 409);

    // A long-poll waiting on a follower gets a task submitted through another node.
    let waiter = {
        let api = c.api(1);
        tokio::spawn(async move { api.claim("agent-b", &["late"], 1, 10_000).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.api(2).submit(json!({"queue": "late", "payload": 1})).await;
    let got = waiter.await.expect("join");
    assert_eq!(got.len(), 1, "the waiting claim receives the task");

    let (_, digest) = c.wait_converged(20).await;
    assert_eq!(digest.len(), 64);
    c.nodes[1].kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_membership_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 2, &[]).await;
    let api = c.api(1);
    let before = api.get("/v1/cluster").await.1["members"].clone();

    // Unknown nodes.
    assert_eq!(api.post("/v1/cluster/members/9/promote", json!({})).await.0, 404);
    assert_eq!(api.req(reqwest::Method::DELETE, "/v1/cluster/members/9", None).await.0, 404);
    // Already a member; already a voter.
    let (s, v) = api.post("/v1/cluster/members", json!({"node_id": 2, "raft_addr": "127.0.0.1:1"})).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(api.post("/v1/cluster/members/2/promote", json!({})).await.0, 409);
    // Nothing listening there.
    let port = common::free_port();
    let (s, v) = api.post("/v1/cluster/members", json!({"node_id": 7, "raft_addr": format!("127.0.0.1:{port}")})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().expect("msg").contains("unreachable"), "{v}");
    // Malformed.
    assert_eq!(api.post("/v1/cluster/members", json!({"node_id": 7, "raft_addr": "nonsense"})).await.0, 400);
    assert_eq!(api.post_raw("/v1/cluster/members", "{not json").await.0, 400);

    // A node whose secret differs, a node answering with another id, a node of another cluster.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("dir");
    let mut wrong_secret = Server {
        child: None,
        port: common::free_port(),
        raft_listen: format!("127.0.0.1:{}", common::free_port()),
        node_id: 5,
        data_dir: other_dir.join("data5"),
        base: String::new(),
        extra: vec!["--join".into(), "--cluster-secret".into(), "another-secret-0123456789".into()],
        env: Vec::new(),
        log: other_dir.join("n5.log"),
        netns: None,
    };
    wrong_secret.base = format!("http://127.0.0.1:{}", wrong_secret.port);
    wrong_secret.launch();
    wrong_secret.wait_up().await;
    let (s, v) = api.post("/v1/cluster/members", json!({"node_id": 5, "raft_addr": wrong_secret.raft_listen})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().expect("msg").contains("secret"), "{v}");

    let mut lone = Server {
        child: None,
        port: common::free_port(),
        raft_listen: format!("127.0.0.1:{}", common::free_port()),
        node_id: 6,
        data_dir: other_dir.join("data6"),
        base: String::new(),
        extra: vec!["--cluster-secret".into(), SECRET.into()],
        env: Vec::new(),
        log: other_dir.join("n6.log"),
        netns: None,
    };
    lone.base = format!("http://127.0.0.1:{}", lone.port);
    lone.spawn().await;
    let (s, v) = api.post("/v1/cluster/members", json!({"node_id": 8, "raft_addr": lone.raft_listen})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().expect("msg").contains("is node 6"), "{v}");
    let (s, v) = api.post("/v1/cluster/members", json!({"node_id": 6, "raft_addr": lone.raft_listen})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().expect("msg").contains("another cluster"), "{v}");
    // The lone node refuses the last-voter removal of itself.
    let (s, v) = lone.client().req(reqwest::Method::DELETE, "/v1/cluster/members/6", None).await;
    assert_eq!(s, 409, "{v}");

    // Peer traffic: wrong secret, other cluster, wrong target, garbage.
    let http = reqwest::Client::new();
    let peer = format!("http://{}/raft/append", c.nodes[1].raft_listen);
    let info: Value = c.api(0).get("/v1/cluster/node").await.1;
    let cluster_id = info["cluster_id"].as_str().expect("cluster id").to_string();
    let send = |secret: &str, cluster: &str, to: &str, body: Vec<u8>| {
        http.post(&peer)
            .bearer_auth(secret)
            .header("x-minion-cluster", cluster)
            .header("x-minion-from", "1")
            .header("x-minion-to", to)
            .body(body)
            .send()
    };
    assert_eq!(send("wrong-secret-0123456789", &cluster_id, "2", vec![]).await.expect("send").status(), 401);
    assert_eq!(send(SECRET, "abcdef", "2", vec![]).await.expect("send").status(), 409);
    assert_eq!(send(SECRET, &cluster_id, "3", vec![]).await.expect("send").status(), 409);
    let r = send(SECRET, &cluster_id, "2", b"\x01garbage on the wire".to_vec()).await.expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(
        http.get(format!("http://{}/v1/tasks", c.nodes[1].raft_listen)).send().await.expect("send").status(),
        404
    );

    let after = api.get("/v1/cluster").await.1["members"].clone();
    assert_eq!(before, after, "the membership is unchanged");
    // The cluster still works.
    api.submit(json!({"queue": "q", "payload": 1})).await;

    // A data directory is never served under another node id.
    c.nodes[1].stop();
    let out = minion()
        .args(["serve", "--node-id", "4", "--raft-listen", "127.0.0.1:0"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(&c.nodes[1].data_dir)
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("belongs to node 2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remove_and_replace_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 3, &[]).await;
    for n in 0..10 {
        c.api(0).submit(json!({"queue": "q", "payload": n})).await;
    }
    // Node 3 dies for good; node 4 replaces it.
    c.nodes[2].kill9();
    c.add_process(3, &[], true).await;
    c.nodes[3].wait_up().await;
    let body = json!({"node_id": 4, "raft_addr": c.proxies[3].addr.to_string()});
    let (s, v) = c.api(1).post("/v1/cluster/members/3/replace", body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(voters(&c.api(0)).await, vec![1, 2, 4]);
    assert_eq!(c.api(3).stale().count("queue=q").await, 10);
    // Node 2 leaves; two voters remain and keep serving.
    let (s, v) = c.api(0).req(reqwest::Method::DELETE, "/v1/cluster/members/2", None).await;
    assert_eq!(s, 200, "{v}");
    c.nodes[1].kill9();
    assert_eq!(voters(&c.api(3)).await, vec![1, 4]);
    c.api(3).submit(json!({"queue": "q", "payload": "after"})).await;
    assert_eq!(c.api(0).count("queue=q").await, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 1, &["--snapshot-logs", "100"]).await;
    // One entry per submit (sequential): several snapshots, and the log before them purged.
    for n in 0..400 {
        c.api(0).submit(json!({"queue": "q", "payload": n, "idempotency_key": format!("s{n}")})).await;
    }
    let info = c.node_info(0, false).await.expect("info");
    assert!(info["purged_index"].as_u64().unwrap_or(0) > 0, "the log was compacted: {info}");
    c.add_process(1, &["--snapshot-logs", "100"], true).await;
    c.nodes[1].wait_up().await;
    c.join(1, true).await;
    let info = c.node_info(1, false).await.expect("info");
    assert!(info["snapshots_installed"].as_u64().unwrap_or(0) >= 1, "caught up by snapshot: {info}");
    c.wait_converged(20).await;
    assert_eq!(c.api(1).stale().count("queue=q").await, 400);
    // Idempotency keys came with the snapshot.
    let (s, v) = c.api(1).post("/v1/tasks", json!({"queue": "q", "payload": 0, "idempotency_key": "s7"})).await;
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_damaged_data_directory_refuses_to_start_and_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 3, &[]).await;
    for n in 0..200 {
        c.api(0).submit(json!({"queue": "q", "payload": {"n": n, "pad": "p".repeat(200)}})).await;
    }
    c.wait_converged(20).await;
    c.nodes[2].stop();
    // Its log is damaged (its state store would be rebuilt from the log; a damaged log cannot be).
    common::flip_bytes(&common::only_file(&c.nodes[2].data_dir.join("wal")));
    let err = c.nodes[2].start_must_fail().await;
    assert!(err.to_lowercase().contains("corrupt"), "{err}");
    // The other two keep serving, and nothing of the damaged copy reached them.
    c.api(1).submit(json!({"queue": "q", "payload": "after"})).await;
    assert_eq!(c.api(0).count("queue=q").await, 201);
    // Rebuilt from its peers: a fresh node takes the damaged one's place.
    c.add_process(3, &[], true).await;
    c.nodes[3].wait_up().await;
    let body = json!({"node_id": 4, "raft_addr": c.proxies[3].addr.to_string()});
    let (s, v) = c.api(0).post("/v1/cluster/members/3/replace", body).await;
    assert_eq!(s, 200, "{v}");
    c.wait_converged(20).await;
    assert_eq!(c.api(3).stale().count("queue=q").await, 201);
}

/// Defect: a claim whose commit timed out could still commit; its leases were never handed to
/// the agent, yet they held the tasks (and the agent's slots) until the lease ran out. Now the
/// leader keeps waiting for the claim's outcome and gives such leases back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_that_timed_out_but_committed_gives_its_leases_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Elections slow enough that a short cut does not start one; commits time out fast.
    let c = Cluster::start(dir.path(), 3, &["--commit-timeout-ms", "800", "--election-timeout-ms", "8000"]).await;
    let leader = c.leader(30).await;
    let api = c.api(leader);
    let id = api.submit(json!({"queue": "q", "payload": 1, "lease_ms": 300_000})).await;
    c.wait_converged(20).await;

    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.partition(&[&[leader], &followers]);
    let (s, v) = api.post("/v1/claims", json!({"agent_id": "lost", "queues": ["q"], "max": 1})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("commit_timeout")), "the claim's commit timed out: {v}");
    c.heal();

    // The claim commits once the followers are back; its lease is released at once, not after
    // its 300 s, and another agent gets the task.
    let t = eventually(30, "the stranded lease released", || async {
        let t = api.task(id).await;
        (t["state"] == "ready" && !t["attempts"].as_array().is_none_or(|a| a.is_empty())).then_some(t)
    })
    .await;
    assert_eq!(t["attempts"][0]["agent_id"], "lost", "the timed-out claim did commit: {t}");
    let got = api.claim("found", &["q"], 1, 5_000).await;
    assert_eq!(got.len(), 1, "the task is claimable again");
    assert_eq!(got[0]["id"].as_u64(), Some(id));
}

/// Defect: `minion worker`, `minion pool` and `minion export postgres` took one `--server`; with
/// that node gone they stopped working. Each takes the list and moves on: here the leader, first
/// in their list, is killed under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_pool_and_exporter_move_to_another_node_when_the_leader_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    std::fs::write(&cfg, common::RENDER_POOL).expect("config");
    let mut c = Cluster::start(dir.path(), 3, &["--config", cfg.to_str().expect("path")]).await;
    let leader = c.leader(30).await;
    let order: Vec<usize> = std::iter::once(leader).chain((0..3).filter(|i| *i != leader)).collect();
    let servers: Vec<String> = order.iter().map(|i| c.api(*i).base.clone()).collect();
    let servers = servers.join(",");
    let survivor = c.api(order[1]);

    let worker = format!(
        "{} worker --queue frames --exec 'sleep 0.2; cat' --heartbeat-ms 200 --wait-ms 1000",
        env!("CARGO_BIN_EXE_minion")
    );
    let pool_log = dir.path().join("pool.log");
    let mut pool = TermOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
            .args(["pool", "--name", "render", "--server", &servers, "--command", &worker])
            .args(["--poll-ms", "100", "--grace-ms", "3000"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&pool_log).expect("log"))
            .spawn()
            .expect("spawn pool"),
    );
    let pg = common::PgDb::create("failover").await;
    let _exporter = TermOnDrop(common::spawn_follow(&servers, &pg.url, &dir.path().join("export.log")));

    eventually(30, "the pool's first worker", || async { (common::pool_workers(&survivor).await == 1).then_some(()) })
        .await;
    let first: Vec<u64> = {
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(c.api(leader).submit(json!({"queue": "frames", "payload": {"n": n}})).await);
        }
        ids
    };
    eventually(30, "the first tasks done", || async {
        (survivor.in_states("frames", &["succeeded"]).await == first.len()).then_some(())
    })
    .await;

    c.nodes[leader].kill9();
    let new_leader = c.leader(30).await;
    assert_ne!(new_leader, leader);
    // A backlog the one worker cannot keep up with: the autoscaler (now on the new leader) wants
    // more, and the pool, reading it from another node, starts them.
    let tasks: Vec<Value> = (0..30).map(|n| json!({"queue": "frames", "payload": {"n": 100 + n}})).collect();
    let (s, v) = survivor.post("/v1/tasks", json!({ "tasks": tasks })).await;
    assert_eq!(s, 201, "{}", v["error"]);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    eventually(90, "every task done after the leader died", || {
        let (survivor, peak) = (survivor.clone(), peak.clone());
        async move {
            peak.fetch_max(common::pool_workers(&survivor).await, std::sync::atomic::Ordering::Relaxed);
            (survivor.in_states("frames", &["succeeded"]).await == 35).then_some(())
        }
    })
    .await;
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(peak >= 2, "the pool grew after the failover ({peak} workers at most)");
    let pg_client = pg.client().await;
    eventually(60, "the mirror to match the ledger after the failover", || async {
        common::mirror_diff(&survivor, &pg_client).await.ok()
    })
    .await;

    let _ = std::process::Command::new("kill").arg("-TERM").arg(pool.0.id().to_string()).status();
    assert!(pool.0.wait().expect("wait").success(), "the pool exits cleanly on SIGTERM");
}

/// A child process stopped with SIGTERM (a pool then stops its workers), then SIGKILL, when
/// dropped, so that a failing test leaves nothing running.
struct TermOnDrop(std::process::Child);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            for _ in 0..50 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
