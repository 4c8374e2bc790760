//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use minion_storage::Durability;

use crate::config::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "minion", version, about = "Durable task coordination for multi-agent systems")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a Minion node (defaults: data in ./minion-data, API on 127.0.0.1:7070).
    Serve(Box<ServeArgs>),
    /// Submit, inspect, list, cancel and retry tasks.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Queue statistics and configuration.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Registered agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// The cluster's engine settings (defaults of every queue): show or change them.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Autoscaler pools and their decisions.
    #[command(subcommand)]
    Autoscaler(AutoscalerCmd),
    /// Cluster status and membership: add, promote, remove and replace nodes.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// API tokens: create (the bearer value is printed once), list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The audit trail of administrative actions.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Schedules: tasks created on a cron expression or a fixed interval.
    #[command(subcommand)]
    Schedule(crate::schedule_cli::ScheduleCmd),
    /// Backups: export the replicated state to a file, import one into an empty cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// A process pool that follows the autoscaler's desired count for a pool.
    Pool(Box<crate::pool::PoolArgs>),
    /// A reference agent: run a shell command per task (payload on stdin, result from stdout).
    Worker(Box<crate::worker::WorkerArgs>),
    /// Print the OpenAPI document of this build's API (what docs/openapi.json holds).
    Openapi,
    /// Ingest Kafka topics or Redis Streams into tasks; adapter status.
    #[command(subcommand)]
    Ingest(crate::ingest::IngestCmd),
    /// Export the ledger to another system.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Load generator: throughput and latency percentiles against a running server.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DurabilityArg {
    Fsync,
    Flush,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::Flush => Durability::Flush,
        }
    }
}

/// Every flag also reads `MINION_<NAME>`; both override the config file.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "MINION_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "MINION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client API address.
    #[arg(long, env = "MINION_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "MINION_NODE_ID")]
    pub node_id: Option<u64>,
    /// Peer (raft) address; port 0 picks a free one.
    #[arg(long, env = "MINION_RAFT_LISTEN")]
    pub raft_listen: Option<SocketAddr>,
    /// API address peers and clients should use for this node (default: --listen).
    #[arg(long, env = "MINION_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// Peer address other nodes should use for this node (default: --raft-listen).
    #[arg(long, env = "MINION_ADVERTISE_RAFT")]
    pub advertise_raft: Option<String>,
    /// Shared secret of the cluster (at least 16 characters); prefer the environment variable.
    #[arg(long, env = "MINION_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Do not form a cluster: wait to be added to one with `minion cluster add`.
    #[arg(long, env = "MINION_JOIN")]
    pub join: bool,
    /// Elections start after 1–2× this without a leader; heartbeats every quarter of it.
    #[arg(long, env = "MINION_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// sled's page cache in bytes (default 64 MiB).
    #[arg(long, env = "MINION_STORAGE_CACHE_BYTES")]
    pub storage_cache_bytes: Option<u64>,
    /// Bytes of one log entry at most (default 8 MiB); a larger request is refused with 413.
    #[arg(long, env = "MINION_ENTRY_BYTES_MAX")]
    pub entry_bytes_max: Option<usize>,
    /// Snapshot once the log holds this many bytes since the last one (default 256 MiB).
    #[arg(long, env = "MINION_SNAPSHOT_LOG_BYTES")]
    pub snapshot_log_bytes: Option<u64>,
    /// Writes not committed within this long answer 503 (outcome unknown).
    #[arg(long, env = "MINION_COMMIT_TIMEOUT_MS")]
    pub commit_timeout_ms: Option<u64>,
    /// fsync: survive power loss; flush: survive a process crash.
    #[arg(long, env = "MINION_DURABILITY", value_enum)]
    pub durability: Option<DurabilityArg>,
    #[arg(long, env = "MINION_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "MINION_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Authentication: auto (on unless listening on loopback only), on, off.
    #[arg(long, env = "MINION_AUTH", value_enum)]
    pub auth: Option<crate::config::AuthMode>,
    /// Bootstrap admin bearer token (at least 16 characters).
    #[arg(long, env = "MINION_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Requests per second per token when the token sets none (0: no limit).
    #[arg(long, env = "MINION_RATE_LIMIT_PER_SEC")]
    pub rate_limit_per_sec: Option<u32>,
    /// Client connections open at once.
    #[arg(long, env = "MINION_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Event streams open at once.
    #[arg(long, env = "MINION_EVENT_STREAMS_MAX")]
    pub event_streams_max: Option<usize>,
    /// API TLS certificate chain (PEM).
    #[arg(long, env = "MINION_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// API TLS private key (PEM).
    #[arg(long, env = "MINION_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) of the nodes' API certificates, trusted when forwarding to the leader.
    #[arg(long, env = "MINION_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Peer-port TLS certificate chain (PEM); with --peer-tls-key and --peer-tls-ca: mutual TLS.
    #[arg(long, env = "MINION_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    #[arg(long, env = "MINION_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    #[arg(long, env = "MINION_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Export traces over OTLP/HTTP to this URL, e.g. http://collector:4318/v1/traces.
    #[arg(long, env = "MINION_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces recorded when exporting (0 to 1).
    #[arg(long, env = "MINION_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    #[arg(long, env = "MINION_BODY_BYTES_MAX")]
    pub body_bytes_max: Option<usize>,
    /// Largest backup file a restore accepts.
    #[arg(long, env = "MINION_RESTORE_BYTES_MAX")]
    pub restore_bytes_max: Option<usize>,
    #[arg(long, env = "MINION_CLAIM_WAIT_MS_MAX")]
    pub claim_wait_ms_max: Option<u64>,
    #[arg(long, env = "MINION_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    #[arg(long, env = "MINION_PAYLOAD_BYTES_MAX")]
    pub payload_bytes_max: Option<u64>,
    /// How long finished tasks stay in the ledger.
    #[arg(long, env = "MINION_RETENTION_MS")]
    pub retention_ms: Option<u64>,
    #[arg(long, env = "MINION_DEDUP_TTL_MS")]
    pub dedup_ttl_ms: Option<u64>,
    /// Mirror the ledger into this PostgreSQL database from inside the server.
    #[arg(long, env = "MINION_EXPORT_POSTGRES_URL")]
    pub export_postgres_url: Option<String>,
    /// Log entries the change feed keeps.
    #[arg(long, env = "MINION_FEED_RETAINED_ENTRIES")]
    pub feed_retained_entries: Option<u64>,
    /// Agents not heard from for this long are declared dead.
    #[arg(long, env = "MINION_AGENT_HEARTBEAT_TIMEOUT_MS")]
    pub agent_heartbeat_timeout_ms: Option<u64>,
    /// Dead agents are removed from the registry after this long (0: kept for ever).
    #[arg(long, env = "MINION_AGENT_FORGET_MS")]
    pub agent_forget_ms: Option<u64>,
    /// A proposal's time may run this far ahead of real time at most (a stepped clock is clamped).
    #[arg(long, env = "MINION_CLOCK_STEP_MAX_MS")]
    pub clock_step_max_ms: Option<u64>,
    /// A leader whose log write stalls keeps followers from electing for up to this long (0: never).
    #[arg(long, env = "MINION_DISK_STALL_GRACE_MS")]
    pub disk_stall_grace_ms: Option<u64>,
    /// Refuse writes while the data directory's disk has less free than this (MiB; 0: never).
    #[arg(long, env = "MINION_DISK_RESERVE_MB")]
    pub disk_reserve_mb: Option<u64>,
    /// Dispatch strategy of queues that set none.
    #[arg(long, env = "MINION_DEFAULT_STRATEGY")]
    pub default_strategy: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, env = "MINION_SERVER", default_value = "http://127.0.0.1:7070", global = true)]
    pub server: String,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read from the node asked, without confirming with the leader (may be behind).
    #[arg(long, global = true)]
    pub stale: bool,
    /// Bearer token.
    #[arg(long, env = "MINION_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust when the server uses TLS.
    #[arg(long, env = "MINION_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Submit one task.
    Submit {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        queue: String,
        #[arg(long, default_value = "")]
        kind: String,
        /// JSON payload.
        #[arg(long, default_value = "null")]
        payload: String,
        /// Required capability (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        delay_ms: Option<u64>,
        #[arg(long)]
        max_attempts: Option<u32>,
        #[arg(long)]
        lease_ms: Option<u64>,
        /// A task this one waits for (repeatable): it is `waiting` until all have finished.
        #[arg(long = "depends-on")]
        depends_on: Vec<u64>,
        /// What a dependency that ends dead, cancelled or rejected does to it.
        #[arg(long, value_parser = ["cancel", "run_anyway"])]
        on_dependency_failure: Option<String>,
        /// Dead with the error `deadline` unless finished within this many milliseconds.
        #[arg(long)]
        deadline_in_ms: Option<u64>,
        /// Tasks with one key share the queue's per-key concurrency limit (`minion queue limits`).
        #[arg(long)]
        concurrency_key: Option<String>,
        /// Submit it as a child of this leased task, under its lease (`--lease-token`; a
        /// `minion worker --exec` command finds both in MINION_TASK_ID and MINION_LEASE_TOKEN).
        #[arg(long, requires = "lease_token")]
        parent: Option<u64>,
        /// The parent's current lease token.
        #[arg(long, requires = "parent")]
        lease_token: Option<u64>,
    },
    /// Show a task with its attempts and progress history.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        id: u64,
    },
    /// List tasks from the ledger.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// Cursor from a previous page.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    Cancel {
        #[command(flatten)]
        client: ClientArgs,
        id: u64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Retry a dead, cancelled or failed task now.
    Retry {
        #[command(flatten)]
        client: ClientArgs,
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Per-queue counts by state and the oldest ready task's age.
    Stats {
        #[command(flatten)]
        client: ClientArgs,
        /// One queue; all queues when omitted.
        queue: Option<String>,
    },
    /// Show a queue's effective configuration.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        queue: String,
    },
    /// Change a queue's configuration (fields not given keep their value).
    Set {
        #[command(flatten)]
        client: ClientArgs,
        queue: String,
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long)]
        stall_timeout_ms: Option<u64>,
    },
    /// Show a queue's concurrency and rate limits and fairness, or replace them all with the ones
    /// given (--per-key, --key, --rate, --rate-per-key, --key-rate, --fair) or none (--clear).
    Limits {
        #[command(flatten)]
        client: ClientArgs,
        queue: String,
        /// Tasks with one concurrency key leased at once, for keys without a limit of their own.
        #[arg(long)]
        per_key: Option<u32>,
        /// One key's own limit, as KEY=N (repeatable).
        #[arg(long = "key", value_parser = parse_key_limit)]
        keys: Vec<(String, u32)>,
        /// Task starts in the whole queue, as N/PERIOD (e.g. 100/1m; PERIOD in ms, s, m, h or d).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<(u32, u64)>,
        /// Task starts per concurrency key, for keys without a rate of their own, as N/PERIOD.
        #[arg(long, value_parser = parse_rate)]
        rate_per_key: Option<(u32, u64)>,
        /// One key's own rate, as KEY=N/PERIOD (repeatable).
        #[arg(long = "key-rate", value_parser = parse_key_rate)]
        key_rates: Vec<(String, (u32, u64))>,
        /// Serve the queue's concurrency keys round robin within a priority (tasks without a key
        /// as one more key) instead of oldest first.
        #[arg(long)]
        fair: bool,
        /// Remove every limit of the queue.
        #[arg(long, conflicts_with_all = ["per_key", "keys", "rate", "rate_per_key", "key_rates", "fair"])]
        clear: bool,
    },
}

/// N/PERIOD → (starts, period in ms); PERIOD is a number with a unit (ms, s, m, h, d).
fn parse_rate(s: &str) -> Result<(u32, u64), String> {
    let (n, period) = s.split_once('/').ok_or_else(|| format!("{s:?} is not N/PERIOD (e.g. 10/1s)"))?;
    let n = n.trim().parse::<u32>().map_err(|e| format!("{s:?}: starts: {e}"))?;
    Ok((n, parse_period(period).map_err(|e| format!("{s:?}: {e}"))?))
}

/// A period in ms from a number (1 when left out) and a unit: ms, s, m, h or d (`30s`, `h`).
pub(crate) fn parse_period(period: &str) -> Result<u64, String> {
    let period = period.trim();
    let split = period.find(|c: char| !c.is_ascii_digit()).unwrap_or(period.len());
    let (count, unit) = period.split_at(split);
    let count: u64 = if count.is_empty() { 1 } else { count.parse().map_err(|e| format!("period: {e}"))? };
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err("the period needs a unit: ms, s, m, h or d".to_string()),
    };
    Ok(count.saturating_mul(unit_ms))
}

fn parse_key_rate(s: &str) -> Result<(String, (u32, u64)), String> {
    let (k, r) = s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not KEY=N/PERIOD"))?;
    Ok((k.to_string(), parse_rate(r)?))
}

fn parse_key_limit(s: &str) -> Result<(String, u32), String> {
    let (k, n) = s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not KEY=N"))?;
    let n = n.parse::<u32>().map_err(|e| format!("{s:?}: {e}"))?;
    Ok((k.to_string(), n))
}

/// Engine settings a queue overrides or the cluster sets (`minion queue set`, `minion config set`).
#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[arg(long)]
    pub max_attempts: Option<u32>,
    #[arg(long)]
    pub lease_ms: Option<u64>,
    #[arg(long)]
    pub dedup_ttl_ms: Option<u64>,
    #[arg(long)]
    pub retry_base_ms: Option<u64>,
    #[arg(long)]
    pub retry_max_ms: Option<u64>,
    #[arg(long)]
    pub retention_ms: Option<u64>,
    #[arg(long)]
    pub payload_bytes_max: Option<u64>,
    /// round_robin, least_loaded, random, capability_best, latency_based, weighted_round_robin
    #[arg(long)]
    pub strategy: Option<String>,
}

impl SettingsArgs {
    /// The settings given, as JSON fields.
    pub fn changes(&self) -> serde_json::Map<String, serde_json::Value> {
        let numbers = [
            ("max_attempts", self.max_attempts.map(u64::from)),
            ("lease_ms", self.lease_ms),
            ("dedup_ttl_ms", self.dedup_ttl_ms),
            ("retry_base_ms", self.retry_base_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("retention_ms", self.retention_ms),
            ("payload_bytes_max", self.payload_bytes_max),
        ];
        let mut out: serde_json::Map<String, serde_json::Value> =
            numbers.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.into()))).collect();
        if let Some(st) = &self.strategy {
            out.insert("strategy".into(), st.clone().into());
        }
        out
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show the engine settings the cluster applies.
    Get {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change engine settings (fields not given keep their value; admin only, audited).
    Set {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Mirror the ledger into PostgreSQL: one full export, or `--follow` to keep mirroring.
    Postgres(PostgresExportArgs),
}

#[derive(Debug, Args, Clone)]
pub struct PostgresExportArgs {
    /// PostgreSQL connection, e.g. postgres://postgres@127.0.0.1:5432/minion
    #[arg(long, env = "MINION_EXPORT_PG_URL")]
    pub url: String,
    /// Nodes of the cluster, comma-separated: the exporter moves to the next when one fails.
    #[arg(long, env = "MINION_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Keep mirroring (retrying with backoff when either side is down).
    #[arg(long)]
    pub follow: bool,
    /// Name of this mirror's position (several mirrors can share a database).
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Change records per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub batch_records: usize,
    /// How often `--follow` polls when caught up.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum AutoscalerCmd {
    /// Every pool: desired and current workers, and the last rule that fired.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A pool's decisions, newest first.
    Decisions {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        pool: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Every agent with its status, load and statistics.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give the agent no new tasks; it keeps the ones it holds.
    Drain {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token and print its bearer value (shown this once; only its hash is stored).
    Create {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        name: String,
        /// admin, producer, worker, reader or metrics.
        #[arg(long)]
        role: String,
        /// Queue-name pattern the token may use (`*` matches any run); repeat for more. None: all.
        #[arg(long = "queue")]
        queues: Vec<String>,
        /// Queue-name pattern the token may not use; wins over --queue.
        #[arg(long)]
        deny: Vec<String>,
        /// Agent-id pattern the token may act as (claim, register, heartbeat, acknowledge);
        /// repeat for more. None: any agent.
        #[arg(long = "agent")]
        agents: Vec<String>,
        /// The token stops working this long after creation.
        #[arg(long)]
        expires_in_ms: Option<u64>,
        /// Requests per second (the node's default if unset).
        #[arg(long)]
        rate_per_sec: Option<u32>,
    },
    /// Every token (never the secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token at once, on every node.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Write the cluster's state, exactly as of one log index, to a file (a consistent backup,
    /// taken while the cluster serves).
    Export {
        #[command(flatten)]
        client: ClientArgs,
        /// The backup file to write (written to FILE.tmp, then renamed).
        #[arg(long, short)]
        out: std::path::PathBuf,
    },
    /// Load a backup file into a cluster that has never held a task (a new cluster, of any size).
    Import {
        #[command(flatten)]
        client: ClientArgs,
        /// The backup file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Leader, term and every member with its role and replication lag.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The node asked (not the leader): its raft state and applied index.
    Node {
        #[command(flatten)]
        client: ClientArgs,
        /// Also a SHA-256 of the applied state (equal on replicas at the same index).
        #[arg(long)]
        digest: bool,
    },
    /// Add a node (started with --join) as a learner; waits until it has caught up.
    Add {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        node_id: u64,
        /// The new node's peer address (host:port).
        #[arg(long)]
        raft_addr: String,
        /// Its client API address (default: what it advertises).
        #[arg(long)]
        api_addr: Option<String>,
        /// Promote it to voter once caught up.
        #[arg(long)]
        voter: bool,
    },
    /// Make a learner a voter.
    Promote {
        #[command(flatten)]
        client: ClientArgs,
        node_id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        node_id: u64,
    },
    /// Replace a (dead) voter by a new node started with --join.
    Replace {
        #[command(flatten)]
        client: ClientArgs,
        /// The voter to replace.
        old: u64,
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        api_addr: Option<String>,
    },
}
