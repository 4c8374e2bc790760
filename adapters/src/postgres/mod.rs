//! Export and mirror a Minion server's ledger into PostgreSQL.
//!
//! The exporter reads the server's change feed (`GET /v1/changes`) like any client and writes each
//! batch of entries in one PostgreSQL transaction together with its position (the last log index
//! it covers), so the mirror is exactly once: a crash of the exporter, the server or PostgreSQL
//! before the commit leaves the old position and the batch is written again; after it, the batch
//! is never read again. A fresh mirror, or one whose position the feed no longer holds, is
//! backfilled from the ledger (`/v1/tasks`, `/v1/agents`, `/v1/dedup`), remembering the applied
//! index read *before* the backfill and following the feed from there: every change after that
//! index is replayed over the backfilled rows, and records carry full values, so the mirror
//! converges whatever the backfill saw of changes made while it ran.

mod migrate;
mod write;

use std::collections::BTreeSet;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
pub use migrate::{migrate, MIGRATIONS};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

use minion_client::client::Retry;
use minion_client::{Client as Api, Code, Error as ApiError, Servers};
pub use write::Batch;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("PostgreSQL error while {context}: {source}")]
    Postgres { context: &'static str, source: tokio_postgres::Error },
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    #[error("invalid --server: {0}")]
    Servers(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("minion server {server}: {message}")]
    Server { server: String, message: String },
}

impl ExportError {
    /// Worth retrying in follow mode (the other side may come back); configuration errors are not.
    pub fn is_transient(&self) -> bool {
        matches!(self, ExportError::Postgres { .. } | ExportError::Server { .. })
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Nodes of the cluster, comma-separated, e.g. `http://127.0.0.1:7070`: requests move to the
    /// next when one cannot be reached (feed positions are log indexes, the same on every node).
    pub server: String,
    /// `postgres://user@host:port/db` or a key=value connection string.
    pub pg_url: String,
    /// Several exporters can mirror into one database under different names.
    pub name: String,
    /// Change records per transaction, at most (whole log entries).
    pub batch_records: usize,
    /// Draw a progress bar on a terminal.
    pub progress: bool,
    /// Token and CA for the API.
    pub auth: minion_client::ClientAuth,
}

/// What an export run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub backfilled_tasks: u64,
    pub feed_records: u64,
    pub transactions: u64,
    pub position: u64,
}

pub struct Exporter {
    opts: ExportOptions,
    /// The Minion cluster.
    api: Api,
    pg: Client,
}

fn server_err(server: &str, message: impl Into<String>) -> ExportError {
    ExportError::Server { server: server.to_string(), message: message.into() }
}

impl Exporter {
    /// Connect to PostgreSQL and bring its schema up to date.
    pub async fn connect(opts: ExportOptions) -> Result<Exporter, ExportError> {
        let config: tokio_postgres::Config =
            opts.pg_url.parse().map_err(|e: tokio_postgres::Error| ExportError::Url(e.to_string()))?;
        let (mut pg, conn) =
            config.connect(NoTls).await.map_err(|e| ExportError::Postgres { context: "connecting", source: e })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        migrate(&mut pg).await?;
        let servers = Servers::parse(&opts.server).map_err(ExportError::Servers)?;
        let http = opts
            .auth
            .build(reqwest::Client::builder().timeout(Duration::from_secs(30)))
            .map_err(|e| server_err(&opts.server, e))?;
        Ok(Exporter { opts, api: Api::with_http(servers, http), pg })
    }

    fn api_err(&self, e: ApiError) -> ExportError {
        server_err(self.api.servers().base(), e.to_string())
    }

    async fn get_ok(&self, path: &str) -> Result<Value, ExportError> {
        self.api.json(Method::GET, path, None, Retry::Safe).await.map_err(|e| self.api_err(e))
    }

    /// Report this exporter's lag to the cluster (`PUT /v1/adapters/export-<name>`), best effort: it
    /// shows in `GET /v1/adapters` and as `minion_export_lag_entries` in `/metrics`.
    async fn report(&self, position: u64, lag: Option<u64>, error: Option<String>) {
        let name = format!("export-{}", self.opts.name);
        let body = json!({
            "kind": "export",
            "source": "postgres",
            "running": true,
            "position": position,
            "lag": lag,
            "last_error": error,
        });
        if let Err(e) = self.api.report_adapter(&name, &body).await {
            tracing::debug!(error = %e, "could not report export status");
        }
    }

    pub async fn position(&self) -> Result<Option<u64>, ExportError> {
        let row = self
            .pg
            .query_opt("SELECT log_index FROM export_position WHERE name = $1", &[&self.opts.name])
            .await
            .map_err(|e| ExportError::Postgres { context: "reading the export position", source: e })?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    /// The server's applied log index.
    pub async fn applied_index(&self) -> Result<u64, ExportError> {
        let v = self.get_ok("/v1/stats").await?;
        v["raft"]["applied_index"]
            .as_u64()
            .ok_or_else(|| server_err(self.api.servers().base(), "stats without applied_index"))
    }

    fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let target = if self.opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        if let Ok(style) =
            ProgressStyle::with_template(&format!("{what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, ETA {{eta}})"))
        {
            bar.set_style(style);
        }
        bar
    }

    /// Mirror the whole ledger as of now, then set the position to the applied index read before.
    async fn backfill(&mut self, report: &mut ExportReport) -> Result<u64, ExportError> {
        let from = self.applied_index().await?;
        let total = self.get_ok("/v1/stats").await?["tasks"].as_u64().unwrap_or(0);
        let bar = self.bar(total, "backfill");
        let mut seen: Vec<i64> = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/v1/tasks?limit=1000&after={a}"),
                None => "/v1/tasks?limit=1000".to_string(),
            };
            let page = self.get_ok(&path).await?;
            let mut batch = Batch::default();
            for t in page["tasks"].as_array().into_iter().flatten() {
                if let Some(id) = t["id"].as_u64() {
                    seen.push(id as i64);
                    batch.tasks.insert(id, Some(t.clone()));
                }
            }
            let n = batch.tasks.len() as u64;
            let tx = self
                .pg
                .transaction()
                .await
                .map_err(|e| ExportError::Postgres { context: "starting a backfill transaction", source: e })?;
            write::write(&tx, &batch).await?;
            tx.commit()
                .await
                .map_err(|e| ExportError::Postgres { context: "committing a backfill batch", source: e })?;
            report.backfilled_tasks += n;
            report.transactions += 1;
            bar.inc(n);
            match page["next"].as_u64() {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        bar.finish_and_clear();
        let mut rest = Batch::default();
        for a in self.get_ok("/v1/agents").await?["agents"].as_array().into_iter().flatten() {
            if let Some(id) = a["id"].as_str() {
                rest.agents.insert(id.to_string(), Some(a.clone()));
            }
        }
        let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
        let mut cursor: Option<(String, String)> = None;
        loop {
            let path = match &cursor {
                Some((q, k)) => format!("/v1/dedup?limit=5000&after_queue={}&after_key={}", urlencode(q), urlencode(k)),
                None => "/v1/dedup?limit=5000".to_string(),
            };
            let page = self.get_ok(&path).await?;
            for k in page["keys"].as_array().into_iter().flatten() {
                let key = (k["queue"].as_str().unwrap_or("").to_string(), k["key"].as_str().unwrap_or("").to_string());
                rest.dedup.insert(
                    key.clone(),
                    Some((k["task_id"].as_u64().unwrap_or(0), k["expires_ms"].as_u64().unwrap_or(0))),
                );
                keys.insert(key.clone());
                cursor = Some(key);
            }
            if page["more"] != Value::Bool(true) {
                break;
            }
        }
        // Rows the ledger no longer has (from an earlier mirror) go; then the position is set.
        let agent_ids: Vec<String> = rest.agents.keys().cloned().collect();
        let (queues, dkeys): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let pg = |context: &'static str| move |e| ExportError::Postgres { context, source: e };
        let tx = self.pg.transaction().await.map_err(pg("starting the backfill's last transaction"))?;
        tx.execute("DELETE FROM tasks WHERE NOT (id = ANY($1))", &[&seen])
            .await
            .map_err(pg("removing tasks gone from the ledger"))?;
        tx.execute("DELETE FROM agent_state WHERE NOT (id = ANY($1))", &[&agent_ids])
            .await
            .map_err(pg("removing agents gone"))?;
        tx.execute(
            "DELETE FROM message_dedup d WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(q, k) WHERE k.q = d.queue AND k.k = d.key)",
            &[&queues, &dkeys],
        )
        .await
        .map_err(pg("removing dedup keys gone"))?;
        write::write(&tx, &rest).await?;
        set_position(&tx, &self.opts.name, from).await?;
        tx.commit().await.map_err(pg("committing the backfill"))?;
        report.transactions += 1;
        tracing::info!(tasks = report.backfilled_tasks, position = from, "backfill complete");
        Ok(from)
    }

    /// One pass: mirror everything up to the server's applied index as of the start of the pass.
    pub async fn catch_up(&mut self, report: &mut ExportReport) -> Result<u64, ExportError> {
        let target = self.applied_index().await?;
        let mut pos = match self.position().await? {
            Some(p) => p,
            None => self.backfill(report).await?,
        };
        let start = pos;
        let bar = self.bar(target.saturating_sub(start), "export");
        loop {
            let path = format!("/v1/changes?after={pos}&limit={}", self.opts.batch_records);
            let page = match self.api.json(Method::GET, &path, None, Retry::Safe).await {
                Ok(page) => page,
                Err(ApiError::Api { code: Code::Compacted, .. }) => {
                    tracing::warn!(position = pos, "the change feed no longer holds the position; backfilling");
                    pos = self.backfill(report).await?;
                    continue;
                }
                Err(e) => return Err(self.api_err(e)),
            };
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                break;
            }
            let next = page["next"].as_u64().unwrap_or(pos);
            let mut batch = Batch::default();
            let mut records = 0u64;
            for e in &entries {
                for c in e["changes"].as_array().into_iter().flatten() {
                    batch.add_change(c);
                    records += 1;
                }
            }
            let pg = |context: &'static str| move |e| ExportError::Postgres { context, source: e };
            let tx = self.pg.transaction().await.map_err(pg("starting an export transaction"))?;
            write::write(&tx, &batch).await?;
            set_position(&tx, &self.opts.name, next).await?;
            tx.commit().await.map_err(pg("committing an export batch"))?;
            report.feed_records += records;
            report.transactions += 1;
            bar.set_position(next.saturating_sub(start).min(target.saturating_sub(start)));
            pos = next;
            if pos >= target {
                break;
            }
        }
        bar.finish_and_clear();
        report.position = pos;
        Ok(pos)
    }
}

async fn set_position(tx: &tokio_postgres::Transaction<'_>, name: &str, index: u64) -> Result<(), ExportError> {
    tx.execute(
        "INSERT INTO export_position (name, log_index) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET log_index = EXCLUDED.log_index",
        &[&name, &(index as i64)],
    )
    .await
    .map_err(|e| ExportError::Postgres { context: "storing the export position", source: e })?;
    Ok(())
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One-shot export: everything the server has applied when it starts.
pub async fn export_once(opts: ExportOptions) -> Result<ExportReport, ExportError> {
    let mut ex = Exporter::connect(opts).await?;
    let mut report = ExportReport::default();
    ex.catch_up(&mut report).await?;
    Ok(report)
}

/// Keep mirroring until the process stops. Transient failures (PostgreSQL or the server down,
/// a dropped connection) are retried with exponential backoff up to 10 s, logging the lag;
/// configuration errors (bad URL, a newer schema) end the loop.
pub async fn follow(opts: ExportOptions, poll: Duration) -> Result<(), ExportError> {
    let mut backoff = Duration::from_millis(200);
    let mut report = ExportReport::default();
    loop {
        let mut ex = match Exporter::connect(opts.clone()).await {
            Ok(ex) => ex,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "export: cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            match ex.catch_up(&mut report).await {
                Ok(pos) => {
                    backoff = Duration::from_millis(200);
                    let lag = ex.applied_index().await.ok().map(|a| a.saturating_sub(pos));
                    tracing::debug!(position = pos, lag_entries = ?lag, "export caught up");
                    ex.report(pos, lag, None).await;
                    tokio::time::sleep(poll).await;
                }
                Err(e) if e.is_transient() => {
                    let lag = ex.applied_index().await.ok().map(|a| a.saturating_sub(report.position));
                    tracing::warn!(error = %e, lag_entries = ?lag, retry_in_ms = backoff.as_millis() as u64, "export failed; retrying");
                    ex.report(report.position, lag, Some(e.to_string())).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    if matches!(e, ExportError::Postgres { .. }) {
                        break; // reconnect
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
