//! Logs and traces: structured logs (human or JSON, level from `MINION_LOG` or the config) and,
//! when an OTLP endpoint is configured, spans exported over OTLP/HTTP (protobuf).
//!
//! A request's spans: `http.request` (continuing the caller's W3C `traceparent`, if any) →
//! `raft.propose` (queueing for group commit) and `raft.commit` (replication, commit and apply on
//! the leader; one per group, linked to every proposal in it) → `raft.apply` (the state machine,
//! on every node, with the log index range so a follower's apply can be matched to the commit).

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogFormat;

/// Where and how to export traces.
#[derive(Debug, Clone)]
pub struct Otlp {
    /// The OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: String,
    /// Fraction of new traces to record (a caller's sampled flag is followed).
    pub sample_ratio: f64,
    pub service: String,
    pub node_id: u64,
}

/// Keeps the exporter alive; dropping it flushes the spans still buffered.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: flushing traces on shutdown: {e}");
            }
        }
    }
}

/// Install the process's subscriber: logs to stderr, and spans to OTLP when `otlp` is given.
pub fn init(format: LogFormat, level: &str, otlp: Option<Otlp>) -> anyhow::Result<Guard> {
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("MINION_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
    };
    // Colours only on a terminal: logs written to files stay plain text.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let logs = match format {
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).boxed(),
        LogFormat::Human => fmt.boxed(),
    }
    .with_filter(filter());
    let (traces, provider) = match otlp {
        Some(o) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(o.endpoint.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("OTLP exporter for {}: {e}", o.endpoint))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(o.service.clone())
                .with_attribute(opentelemetry::KeyValue::new("minion.node_id", o.node_id as i64))
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(o.sample_ratio))))
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("minion");
            // Spans only from Minion's own crates: library internals would swamp the traces.
            let only_minion = tracing_subscriber::filter::filter_fn(|m| m.target().starts_with("minion"));
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_minion);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(Guard { provider })
}

/// The request's W3C `traceparent`, if it has a valid one (an invalid one is ignored, as the
/// W3C recommendation says: the request then starts a new trace).
pub fn trace_parent(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?.trim().to_ascii_lowercase();
    match minion_engine::validate_trace_parent(&v) {
        Ok(()) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, "ignoring an invalid traceparent");
            None
        }
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Run every API request inside an `http.request` span that continues the caller's trace.
pub async fn http_span(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let trace_id = trace_parent(req.headers()).and_then(|tp| tp.split('-').nth(1).map(str::to_string));
    let span = tracing::info_span!(
        "http.request",
        http.method = %req.method(),
        http.route = %route,
        trace_id = trace_id.as_deref().unwrap_or(""),
        http.status = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
    let _ = span.set_parent(parent);
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("http.status", resp.status().as_u16());
    resp
}
