//! Request bodies and queries through the real router of a real single node (durability `flush`,
//! in a temporary directory, created once per process).

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    node: minion::node::Node,
    _dir: tempfile::TempDir,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = minion::config::Config {
            data_dir: dir.path().join("data"),
            durability: minion_storage::Durability::Flush,
            // Claims answer at once: a fuzzed wait must not stall the run.
            claim_wait_ms_max: 0,
            commit_timeout_ms: 5_000,
            ..minion::config::Config::default()
        };
        let me = minion_raft::Node { api_addr: "127.0.0.1:1".into(), raft_addr: "127.0.0.1:2".into() };
        let node = rt.block_on(minion::node::Node::start(config, me)).expect("node");
        let state = std::sync::Arc::new(minion::api::App::new(
            node.clone(),
            minion::metrics::install(),
            reqwest::Client::new(),
            std::sync::Arc::new(minion::api::auth::Auth::new(false, None, 0)),
            std::sync::Arc::new(minion::api::events::Streams::new(16)),
        ));
        let router = minion::api::router(state);
        // Something to act on: a task in queue q, leased, and a registered agent.
        let setup: [(&str, &str, &str); 3] = [
            ("POST", "/v1/tasks", r#"{"tasks":[{"queue":"q","payload":1},{"queue":"q","payload":2}]}"#),
            ("POST", "/v1/agents", r#"{"id":"a","capabilities":["gpu"]}"#),
            ("POST", "/v1/claims", r#"{"agent_id":"a","queues":["q"],"max":1}"#),
        ];
        for (m, uri, body) in setup {
            let req = Request::builder()
                .method(m)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request");
            rt.block_on(router.clone().oneshot(req)).expect("setup request");
        }
        Harness { rt, router, node, _dir: dir }
    })
}

/// Routes a fuzzed body is sent to: every route that reads a body, and the ledger query.
const ROUTES: [(&str, &str); 20] = [
    ("POST", "/v1/tasks"),
    ("POST", "/v1/rejections"),
    ("POST", "/v1/claims"),
    ("POST", "/v1/tasks/1/complete"),
    ("POST", "/v1/tasks/1/fail"),
    ("POST", "/v1/tasks/1/progress"),
    ("POST", "/v1/tasks/1/extend"),
    ("POST", "/v1/tasks/2/cancel"),
    ("POST", "/v1/tasks/2/retry"),
    ("PUT", "/v1/queues/q"),
    ("POST", "/v1/agents"),
    ("POST", "/v1/agents/a/heartbeat"),
    ("POST", "/v1/agents/a/drain"),
    ("PUT", "/v1/adapters/fuzz"),
    ("GET", "/v1/tasks?"),
    ("GET", "/v1/changes?"),
    ("PUT", "/v1/queues/q/limits"),
    ("PUT", "/v1/schedules/s"),
    ("POST", "/v1/tasks/1/children"),
    ("POST", "/v1/tasks/1/wait-children"),
];

pub fn http_request(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    let h = harness();
    let (method, path) = ROUTES[which as usize % ROUTES.len()];
    let req = if method == "GET" {
        // The bytes are the query string (when they can be one).
        let Ok(q) = std::str::from_utf8(body) else { return };
        let uri = format!("{path}{q}");
        match Request::builder().method(Method::GET).uri(uri).body(Body::empty()) {
            Ok(r) => r,
            Err(_) => return,
        }
    } else {
        Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .expect("request")
    };
    let resp = h.rt.block_on(h.router.clone().oneshot(req)).expect("the router always answers");
    let status = resp.status();
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{method} {path} answered {status} to {:?}",
        String::from_utf8_lossy(body)
    );
    let g = h.node.state.read();
    g.engine.validate_ram().unwrap_or_else(|v| panic!("invariant violated after {method} {path}: {v}"));
}
