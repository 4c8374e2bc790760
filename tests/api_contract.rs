//! The checked-in OpenAPI document is what the code generates (from the wire types and the
//! handlers' annotations), and it and the server's routes describe the same API.

mod common;

use std::collections::BTreeSet;

use common::Server;
use serde_json::Value;

fn openapi() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).expect("read openapi");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// (method, path) pairs the router registers, read from its source.
fn router_routes() -> BTreeSet<(String, String)> {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/router.rs")).expect("read api source");
    let mut out = BTreeSet::new();
    for line in src.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let path = line.split('"').nth(1).expect("path").to_string();
        for method in ["get", "post", "put", "delete", "patch"] {
            if line.contains(&format!("{method}(")) {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_checked_in_document_is_what_the_code_generates() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_minion")).arg("openapi").output().expect("run minion openapi");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).expect("read openapi");
    assert!(
        generated == checked_in,
        "docs/openapi.json is stale: regenerate it with `cargo run -- openapi > docs/openapi.json` and commit it"
    );
    let doc: Value = serde_json::from_str(&generated).expect("JSON");
    // Spot checks that the schemas come from the wire types.
    let task = &doc["components"]["schemas"]["TaskOut"]["properties"];
    assert!(task["lease"].is_object() && task["attempts"].is_object() && task["state"].is_object(), "{task}");
    assert!(doc["paths"]["/v1/tasks"]["post"]["requestBody"].is_object());
}

#[test]
fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let doc = openapi();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let served = router_routes();
    assert!(served.len() > 10, "parsed too few routes from the router: {served:?}");
    assert_eq!(served, documented, "router and docs/openapi.json disagree");
}

#[tokio::test]
async fn the_server_answers_every_documented_route_and_serves_the_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let doc = openapi();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let concrete = path.replace("{id}", "1").replace("{name}", "q");
        for method in ops.as_object().expect("ops").keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (status, body) = if concrete.ends_with("/events") {
                // An event stream never ends by itself: its status is enough.
                let resp = api.http.request(m, format!("{}{concrete}", api.base)).send().await.expect("request");
                (resp.status().as_u16(), serde_json::Value::Null)
            } else {
                api.req(m, &concrete, None).await
            };
            assert_ne!(status, 405, "{method} {path} not served");
            let fallback = body["error"]["message"].as_str().is_some_and(|s| s.starts_with("no such route"));
            assert!(!fallback, "{method} {path} fell through to the fallback");
        }
    }
    let (s, served) = api.get("/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(served, doc, "the served document is the checked-in one");
}
