//! Request bodies and queries through the real router of a real single node (durability `flush`,
//! in a temporary directory, created once per process); and whole requests (method, path,
//! headers, body) through the same node's router with authentication on, so token parsing,
//! path parameters and headers are fuzzed too.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    /// The same node with authentication on (admin token [`ADMIN_TOKEN`]).
    guarded: axum::Router,
    node: minion::node::Node,
    _dir: tempfile::TempDir,
}

/// The admin token of the guarded router; the seeds use it, so the fuzzer starts past the check.
pub const ADMIN_TOKEN: &str = "fuzz-admin-token";

/// The first byte that selects a whole request instead of a route.
pub const RAW: u8 = 0xff;

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
        let metrics = minion::metrics::install();
        let app = |auth| {
            std::sync::Arc::new(minion::api::App::new(
                node.clone(),
                metrics.clone(),
                reqwest::Client::new(),
                std::sync::Arc::new(auth),
                std::sync::Arc::new(minion::api::events::Streams::new(16)),
            ))
        };
        let router = minion::api::router(app(minion::api::auth::Auth::new(false, None, 0)));
        let guarded = minion::api::router(app(minion::api::auth::Auth::new(true, Some(ADMIN_TOKEN), 0)));
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
        Harness { rt, router, guarded, node, _dir: dir }
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

/// A whole request: `METHOD TARGET` on the first line, `name: value` header lines, an empty
/// line, the body. What `http` cannot hold as a request (a method or header it refuses) is not
/// sent.
fn raw_request(data: &[u8]) -> Option<Request<Body>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&c| c == b'\n');
    let first = lines.next()?;
    let sp = first.iter().position(|&c| c == b' ')?;
    let method = Method::from_bytes(&first[..sp]).ok()?;
    let target = std::str::from_utf8(&first[sp + 1..]).ok()?;
    let mut req = Request::builder().method(method).uri(target);
    for line in lines {
        let colon = line.iter().position(|&c| c == b':')?;
        let name = axum::http::HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = axum::http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        req = req.header(name, value);
    }
    req.body(Body::from(body.to_vec())).ok()
}

pub fn http_request(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    let h = harness();
    if which == RAW {
        let Some(req) = raw_request(body) else { return };
        let (method, uri) = (req.method().clone(), req.uri().clone());
        // A membership change to a fuzzed address takes this one-node cluster's quorum away:
        // every later write would wait out the commit timeout (the cluster tests cover these).
        if uri.path().starts_with("/v1/cluster/members") && method != Method::GET {
            return;
        }
        let status = send(h, &h.guarded, req);
        check(h, status, &format!("{method} {uri}"), body);
        return;
    }
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
    let status = send(h, &h.router, req);
    check(h, status, &format!("{method} {path}"), body);
}

fn send(h: &Harness, router: &axum::Router, req: Request<Body>) -> StatusCode {
    h.rt.block_on(router.clone().oneshot(req)).expect("the router always answers").status()
}

/// Never a 5xx other than 503, and the engine's invariants hold.
fn check(h: &Harness, status: StatusCode, what: &str, input: &[u8]) {
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{what} answered {status} to {:?}",
        String::from_utf8_lossy(input)
    );
    let g = h.node.state.read();
    g.engine.validate_ram().unwrap_or_else(|v| panic!("invariant violated after {what}: {v}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> StatusCode {
        let h = harness();
        send(h, &h.guarded, raw_request(text.as_bytes()).expect("a request"))
    }

    #[test]
    fn whole_requests_reach_the_handlers_with_the_admin_token_and_stop_at_the_check_without() {
        let submit = "POST /v1/tasks\ncontent-type: application/json\n\n{\"queue\":\"q\",\"payload\":7}";
        assert_eq!(raw(submit), StatusCode::UNAUTHORIZED);
        let with_token = submit.replacen('\n', &format!("\nauthorization: Bearer {ADMIN_TOKEN}\n"), 1);
        assert!(raw(&with_token).is_success(), "{}", raw(&with_token));
        assert_eq!(raw(&format!("GET /v1/tasks/999999\nauthorization: Bearer {ADMIN_TOKEN}")), StatusCode::NOT_FOUND);
        assert!(raw_request(b"BAD METHOD\xff /\n\n").is_none(), "what http cannot hold is not sent");
    }
}
