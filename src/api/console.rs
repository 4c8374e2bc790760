//! The web console: a page, its scripts and its style, compiled into the binary and served at `/`
//! (and `/ui/...`). They hold no data: the script calls the API with the token the user gives it,
//! kept in the browser session only.
//!
//! For work on the console, `MINION_CONSOLE_DIR` names a directory to serve the files from
//! instead, read on every request, so that a change shows on reload without a rebuild.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const JS: &str = "text/javascript; charset=utf-8";

/// (name, content type, compiled-in text). The scripts are ES modules that import each other.
const FILES: [(&str, &str, &str); 10] = [
    ("index.html", "text/html; charset=utf-8", include_str!("../../console/index.html")),
    ("app.css", "text/css; charset=utf-8", include_str!("../../console/app.css")),
    ("app.js", JS, include_str!("../../console/app.js")),
    ("lib.js", JS, include_str!("../../console/lib.js")),
    ("api.js", JS, include_str!("../../console/api.js")),
    ("pages-tasks.js", JS, include_str!("../../console/pages-tasks.js")),
    ("pages-ops.js", JS, include_str!("../../console/pages-ops.js")),
    ("pages-admin.js", JS, include_str!("../../console/pages-admin.js")),
    ("pages-limits.js", JS, include_str!("../../console/pages-limits.js")),
    ("pages-schedules.js", JS, include_str!("../../console/pages-schedules.js")),
];

/// Scripts and styles only from this origin, connections only to it, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| serve("index.html")))
        .route("/ui", get(|| serve("index.html")))
        .route("/ui/", get(|| serve("index.html")))
        .route("/ui/{file}", get(|Path(file): Path<String>| serve_named(file)))
}

async fn serve_named(file: String) -> Response {
    serve(&file).await
}

async fn serve(name: &str) -> Response {
    let Some((name, content_type, compiled)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return super::ApiError::not_found(format!("no console file {name:?}")).into_response();
    };
    let body = match std::env::var_os("MINION_CONSOLE_DIR") {
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(text) => text,
            Err(e) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("MINION_CONSOLE_DIR: {name}: {e}")).into_response()
            }
        },
        None => (*compiled).to_string(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}
