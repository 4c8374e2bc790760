//! `minion ingest kafka|redis|status`, and ingest adapters embedded in the server (`[[ingest]]`).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use minion_adapters::ingest::{self, kafka::KafkaOptions, redis::RedisOptions, Format, IngestOptions, Mapping};
use serde::{Deserialize, Serialize};

#[derive(Debug, Subcommand)]
pub enum IngestCmd {
    /// Consume Kafka topics (a consumer group) into tasks.
    Kafka(Box<KafkaArgs>),
    /// Consume Redis Streams (a consumer group) into tasks.
    Redis(Box<RedisArgs>),
    /// Every adapter reporting to the cluster: running, lag, ingested, rejected, last error.
    Status(crate::cli::ClientArgs),
}

/// Shared by both sources.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Node URLs of the cluster, comma-separated (any node; the next is tried on failure).
    #[arg(long, env = "MINION_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Default target queue (a record may name another).
    #[arg(long)]
    pub queue: String,
    /// Name the adapter reports under (default: the source and group).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "")]
    pub kind: String,
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Required capability of the tasks (repeatable).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// auto, envelope, json or raw.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Records per submit at most.
    #[arg(long, default_value_t = 1_000)]
    pub batch_records: usize,
    /// Longest a batch waits to fill after its first record.
    #[arg(long, default_value_t = 20)]
    pub batch_ms: u64,
    /// Larger records are rejected.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
}

#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers (host:port,...).
    #[arg(long)]
    pub brokers: String,
    /// Topic to consume (repeatable).
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    #[arg(long)]
    pub group: String,
    /// Extra librdkafka setting `key=value` (repeatable).
    #[arg(long = "kafka-setting")]
    pub settings: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub url: String,
    /// Stream to consume (repeatable).
    #[arg(long = "stream", required = true)]
    pub streams: Vec<String>,
    #[arg(long)]
    pub group: String,
    /// This consumer's name in the group (keep it across restarts to resume its pending entries).
    #[arg(long)]
    pub consumer: Option<String>,
    /// The entry field holding the record.
    #[arg(long, default_value = "payload")]
    pub field: String,
    /// Take over entries pending this long on another consumer.
    #[arg(long, default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// An adapter embedded in the server: `[[ingest]]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub name: String,
    /// `kafka` or `redis`.
    pub source: String,
    pub queue: String,
    #[serde(default)]
    pub brokers: Option<String>,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub streams: Vec<String>,
    pub group: String,
    #[serde(default)]
    pub consumer: Option<String>,
    #[serde(default = "default_field")]
    pub field: String,
    #[serde(default = "default_claim_idle")]
    pub claim_idle_ms: u64,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// Extra librdkafka settings.
    #[serde(default)]
    pub kafka_settings: std::collections::BTreeMap<String, String>,
}

fn default_field() -> String {
    "payload".into()
}
fn default_claim_idle() -> u64 {
    30_000
}
fn default_format() -> String {
    "auto".into()
}
fn default_batch_records() -> usize {
    1_000
}
fn default_batch_ms() -> u64 {
    20
}
fn default_max_record() -> usize {
    1 << 20
}

impl CommonArgs {
    fn options(&self, name: String) -> anyhow::Result<IngestOptions> {
        minion_engine::config::validate_queue_name(&self.queue).map_err(|r| anyhow::anyhow!("queue: {}", r.message))?;
        minion_engine::config::validate_queue_name(&name)
            .map_err(|r| anyhow::anyhow!("adapter name: {}", r.message))?;
        if self.batch_records == 0 || self.batch_records > 10_000 {
            bail!("batch_records must be between 1 and 10000, got {}", self.batch_records);
        }
        let format: Format = self.format.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let mapping = Mapping {
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            priority: self.priority,
            capabilities: self.capabilities.clone(),
            format,
            max_record_bytes: self.max_record_bytes.max(1),
        };
        Ok(IngestOptions {
            name,
            server: self.server.clone(),
            mapping,
            batch_records: self.batch_records,
            batch_ms: self.batch_ms,
            auth: minion_client::ClientAuth::from_env(),
        })
    }
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "_.:-".contains(c) { c } else { '-' }).take(100).collect()
}

impl KafkaArgs {
    fn options(&self) -> anyhow::Result<KafkaOptions> {
        let c = &self.common;
        let name = c.name.clone().unwrap_or_else(|| slug(&format!("kafka-{}", self.group)));
        let mut settings = Vec::new();
        for s in &self.settings {
            let (k, v) = s.split_once('=').with_context(|| format!("--kafka-setting {s:?}: expected key=value"))?;
            settings.push((k.to_string(), v.to_string()));
        }
        Ok(KafkaOptions {
            brokers: self.brokers.clone(),
            topics: self.topics.clone(),
            group: self.group.clone(),
            settings,
            common: c.options(name)?,
        })
    }
}

impl RedisArgs {
    fn options(&self) -> anyhow::Result<RedisOptions> {
        let c = &self.common;
        let name = c.name.clone().unwrap_or_else(|| slug(&format!("redis-{}", self.group)));
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "minion".into());
        Ok(RedisOptions {
            url: self.url.clone(),
            streams: self.streams.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone().unwrap_or_else(|| format!("{host}-{name}")),
            field: self.field.clone(),
            claim_idle_ms: self.claim_idle_ms.max(100),
            common: c.options(name)?,
        })
    }
}

/// What an `[[ingest]]` entry runs.
pub enum Source {
    Kafka(KafkaOptions),
    Redis(RedisOptions),
}

impl IngestConfig {
    /// Check the entry and build its options; `server` is this node's API, `node_id` names the
    /// Redis consumer.
    pub fn options(&self, server: &str, node_id: u64) -> anyhow::Result<Source> {
        let args = CommonArgs {
            server: server.to_string(),
            queue: self.queue.clone(),
            name: Some(self.name.clone()),
            kind: self.kind.clone(),
            priority: self.priority,
            capabilities: self.capabilities.clone(),
            format: self.format.clone(),
            batch_records: self.batch_records,
            batch_ms: self.batch_ms,
            max_record_bytes: self.max_record_bytes,
        };
        let c = args.options(self.name.clone()).with_context(|| format!("ingest.{}", self.name))?;
        match self.source.as_str() {
            "kafka" => {
                let Some(brokers) = self.brokers.clone() else { bail!("ingest.{}: kafka needs brokers", self.name) };
                if self.topics.is_empty() {
                    bail!("ingest.{}: kafka needs at least one topic", self.name);
                }
                Ok(Source::Kafka(KafkaOptions {
                    brokers,
                    topics: self.topics.clone(),
                    group: self.group.clone(),
                    settings: self.kafka_settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    common: c,
                }))
            }
            "redis" => {
                if self.streams.is_empty() {
                    bail!("ingest.{}: redis needs at least one stream", self.name);
                }
                Ok(Source::Redis(RedisOptions {
                    url: self.url.clone().unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
                    streams: self.streams.clone(),
                    group: self.group.clone(),
                    consumer: self.consumer.clone().unwrap_or_else(|| format!("{}-node{node_id}", self.name)),
                    field: self.field.clone(),
                    claim_idle_ms: self.claim_idle_ms.max(100),
                    common: c,
                }))
            }
            other => bail!("ingest.{}: source must be kafka or redis, got {other:?}", self.name),
        }
    }
}

/// Run one source until `stop`.
pub async fn run_source(source: Source, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let status = ingest::SharedStatus::default();
    match source {
        Source::Kafka(o) => ingest::kafka::run(o, status, stop).await,
        Source::Redis(o) => ingest::redis::run(o, status, stop).await,
    }
}

/// Stop on SIGTERM / Ctrl-C: the batch in flight is finished or dropped unacknowledged.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

pub async fn command(cmd: IngestCmd) -> anyhow::Result<()> {
    match cmd {
        IngestCmd::Kafka(a) => run_source(Source::Kafka(a.options()?), stop_on_signal()).await,
        IngestCmd::Redis(a) => run_source(Source::Redis(a.options()?), stop_on_signal()).await,
        IngestCmd::Status(client) => crate::client::adapters(client).await,
    }
}

/// Start every `[[ingest]]` entry of the config inside the server.
pub fn spawn_embedded(
    config: &crate::config::Config,
    server: &str,
    auth: &minion_client::ClientAuth,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    for entry in &config.ingest {
        match entry.options(server, config.node_id) {
            Ok(mut source) => {
                match &mut source {
                    Source::Kafka(o) => o.common.auth = auth.clone(),
                    Source::Redis(o) => o.common.auth = auth.clone(),
                }
                let name = entry.name.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = run_source(source, stop).await {
                        tracing::error!(adapter = %name, error = %format!("{e:#}"), "ingest adapter stopped");
                    }
                });
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "ingest adapter not started"),
        }
    }
}
