//! Server configuration: defaults, then an optional TOML file, then `MINION_*` environment
//! variables and command-line flags (clap resolves those two, flags winning).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use minion_engine::EngineConfig;
use minion_storage::Durability;
use serde::{Deserialize, Serialize};

use crate::cli::ServeArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Everything `minion serve` can be told. Durations and sizes carry their unit in the name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Client API address.
    pub listen: SocketAddr,
    /// Peer (raft RPC) address. Port 0 picks a free port.
    pub raft_listen: SocketAddr,
    /// Client API address other nodes and clients use to reach this node (default: `listen`).
    pub advertise_api: Option<String>,
    /// Peer address other nodes use to reach this node (default: `raft_listen`).
    pub advertise_raft: Option<String>,
    /// Shared secret every node of a cluster presents to its peers. Required for more than one
    /// node; without it the peer port refuses everything.
    pub cluster_secret: Option<String>,
    /// Start without forming a cluster and wait to be added to one (`minion cluster add`).
    pub join: bool,
    /// `auto` (on unless `listen` is a loopback address), `on` or `off`.
    pub auth: AuthMode,
    /// The bootstrap admin bearer token (at least 16 characters); required when auth is on.
    pub admin_token: Option<String>,
    /// Requests per second per token on this node, when the token sets none (a burst of twice
    /// that); 0 turns the limit off.
    pub rate_limit_per_sec: u32,
    /// Client connections open at once; more are answered 503 and closed.
    pub connections_max: usize,
    /// Event streams (`/v1/events`, `/v1/tasks/{id}/events`) open at once; more are answered 503.
    pub event_streams_max: usize,
    /// TLS for the client API: certificate chain and private key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that signed the nodes' API certificates: trusted when this node forwards to the
    /// leader or its embedded adapters call the API.
    pub tls_ca: Option<PathBuf>,
    /// TLS for the peer port: this node's certificate and key, and the CA peers' certificates must
    /// chain to (PEM). With all three set, peers authenticate each other (mutual TLS) as well as
    /// presenting the cluster secret.
    pub peer_tls_cert: Option<PathBuf>,
    pub peer_tls_key: Option<PathBuf>,
    pub peer_tls_ca: Option<PathBuf>,
    /// A write (or a linearizable read) not confirmed by a quorum within this long answers 503;
    /// a write's outcome is then unknown.
    pub commit_timeout_ms: u64,
    /// Longest a whole snapshot transfer to a peer may take.
    pub snapshot_transfer_deadline_ms: u64,
    /// A follower that hears no leader for a random time between this and twice this starts an
    /// election; the leader sends heartbeats every quarter of it. Lower fails over faster; too low
    /// for the network and disk causes needless elections.
    pub election_timeout_ms: u64,
    /// sled's page cache (the largest part of a node's memory besides the state itself).
    pub storage_cache_bytes: u64,
    pub node_id: u64,
    /// `fsync` (survives power loss) or `flush` (survives a process crash).
    pub durability: Durability,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `minion=debug,openraft=warn`.
    pub log_level: String,
    /// Export traces over OTLP/HTTP to this URL (e.g. `http://collector:4318/v1/traces`); off
    /// when unset.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces recorded when exporting (a caller's sampling decision is followed).
    pub trace_sample_ratio: f64,
    /// Largest request body the API reads, for any route but restore.
    pub body_bytes_max: usize,
    /// Largest backup `POST /v1/admin/restore` accepts (the whole file is held in memory).
    pub restore_bytes_max: usize,
    /// Longest a claim may long-poll.
    pub claim_wait_ms_max: u64,
    /// Commands coalesced into one log entry at most.
    pub group_commit_max: usize,
    /// Bytes of one log entry at most: group commit stops adding commands at it, and a single
    /// request over it is refused (413).
    pub entry_bytes_max: usize,
    /// Log entries in flight through raft at once (the append of one overlaps the apply of the
    /// one before).
    pub proposals_in_flight_max: usize,
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_logs: u64,
    /// Also build one once the log holds this many bytes since the last (or the last snapshot's
    /// size, if larger): the log's disk use stays within a constant factor of the state's.
    pub snapshot_log_bytes: u64,
    /// The write-ahead log starts a new segment file at this size.
    pub wal_segment_bytes: u64,
    /// Bytes of applied effects waiting for the state store before apply waits for it.
    pub state_queue_bytes: usize,
    /// How often the state store is made durable (the log is kept back to that point).
    pub state_durable_every_ms: u64,
    /// How often the leader checks for due housekeeping (timers, lease expiry, retention).
    pub tick_interval_ms: u64,
    /// An agent not heard from (heartbeat or claim) for this long is declared dead and its leases
    /// are released.
    pub agent_heartbeat_timeout_ms: u64,
    /// An agent dead (or deregistered by the leader for silence) this long, by the engine's clock,
    /// is removed from the registry; 0 keeps dead agents for ever.
    pub agent_forget_ms: u64,
    /// How far ahead of real time (as the monotonic clock measures it since start) a proposal's
    /// time may be; a wall clock stepped further is clamped (docs/operations.md, clocks).
    pub clock_step_max_ms: u64,
    /// While the leader's log write has stalled for up to this long, it keeps its followers from
    /// electing another leader (docs/cluster.md); 0: never.
    pub disk_stall_grace_ms: u64,
    /// Below this much free space (MiB) on the data directory's file system the node refuses
    /// writes (`507 disk_full`) until space returns; 0: no reserve.
    pub disk_reserve_mb: u64,
    /// Log entries the change feed (`GET /v1/changes`) keeps; readers further behind backfill.
    pub feed_retained_entries: u64,
    /// Engine defaults, replicated to the state machine at start.
    pub engine: EngineConfig,
    /// Mirror this node's ledger into PostgreSQL from inside the server (off when unset).
    pub export_postgres: Option<ExportPostgres>,
    /// Worker pools the leader autoscales (`[[pools]]` in the file).
    pub pools: Vec<crate::autoscaler::PoolConfig>,
    /// How often the leader evaluates every pool.
    pub autoscale_interval_ms: u64,
    /// Every autoscaler decision is POSTed here as JSON (off when unset).
    pub autoscale_webhook_url: Option<String>,
    /// Ingest adapters run inside the server (`[[ingest]]` in the file).
    pub ingest: Vec<crate::ingest::IngestConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPostgres {
    /// e.g. `postgres://postgres@127.0.0.1:5432/minion`
    pub url: String,
    #[serde(default = "default_export_name")]
    pub name: String,
    #[serde(default = "default_export_batch")]
    pub batch_records: usize,
    #[serde(default = "default_export_poll")]
    pub poll_ms: u64,
}

fn default_export_name() -> String {
    "default".into()
}
fn default_export_batch() -> usize {
    5_000
}
fn default_export_poll() -> u64 {
    200
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./minion-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            raft_listen: SocketAddr::from(([127, 0, 0, 1], 7071)),
            advertise_api: None,
            advertise_raft: None,
            cluster_secret: None,
            auth: AuthMode::Auto,
            admin_token: None,
            rate_limit_per_sec: 5_000,
            connections_max: 4_096,
            event_streams_max: 1_024,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            peer_tls_cert: None,
            peer_tls_key: None,
            peer_tls_ca: None,
            join: false,
            commit_timeout_ms: 10_000,
            snapshot_transfer_deadline_ms: 300_000,
            election_timeout_ms: 600,
            storage_cache_bytes: minion_storage::DEFAULT_CACHE_BYTES,
            node_id: 1,
            durability: Durability::Fsync,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            body_bytes_max: 64 << 20,
            restore_bytes_max: 4 << 30,
            claim_wait_ms_max: 60_000,
            group_commit_max: 1_024,
            entry_bytes_max: 8 << 20,
            proposals_in_flight_max: 2,
            snapshot_logs: 1_000_000,
            snapshot_log_bytes: 256 << 20,
            wal_segment_bytes: 64 << 20,
            state_queue_bytes: 64 << 20,
            state_durable_every_ms: 1_000,
            tick_interval_ms: 100,
            agent_heartbeat_timeout_ms: 15_000,
            agent_forget_ms: 86_400_000,
            clock_step_max_ms: 1_000,
            disk_stall_grace_ms: 5_000,
            disk_reserve_mb: 64,
            feed_retained_entries: 100_000,
            engine: EngineConfig::default(),
            export_postgres: None,
            pools: Vec::new(),
            autoscale_interval_ms: 5_000,
            autoscale_webhook_url: None,
            ingest: Vec::new(),
        }
    }
}

impl Config {
    /// Defaults, overlaid by the file named with `--config` (if any), then by env and flags.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let mut cfg = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => { $( if let Some(v) = &args.$field { cfg.$field = v.clone(); } )* };
        }
        overlay!(data_dir, listen, node_id, log_format, log_level, body_bytes_max, claim_wait_ms_max, snapshot_logs);
        overlay!(
            raft_listen,
            commit_timeout_ms,
            election_timeout_ms,
            storage_cache_bytes,
            entry_bytes_max,
            snapshot_log_bytes,
            trace_sample_ratio,
            restore_bytes_max
        );
        if let Some(v) = &args.otlp_endpoint {
            cfg.otlp_endpoint = Some(v.clone());
        }
        if let Some(v) = &args.advertise_api {
            cfg.advertise_api = Some(v.clone());
        }
        if let Some(v) = &args.advertise_raft {
            cfg.advertise_raft = Some(v.clone());
        }
        if let Some(v) = &args.cluster_secret {
            cfg.cluster_secret = Some(v.clone());
        }
        overlay!(auth, rate_limit_per_sec, connections_max, event_streams_max);
        macro_rules! overlay_opt {
            ($($field:ident),*) => { $( if let Some(v) = &args.$field { cfg.$field = Some(v.clone()); } )* };
        }
        overlay_opt!(admin_token, tls_cert, tls_key, tls_ca, peer_tls_cert, peer_tls_key, peer_tls_ca);
        if args.join {
            cfg.join = true;
        }
        if let Some(url) = &args.export_postgres_url {
            cfg.export_postgres = Some(ExportPostgres {
                url: url.clone(),
                name: default_export_name(),
                batch_records: default_export_batch(),
                poll_ms: default_export_poll(),
            });
        }
        if let Some(v) = args.feed_retained_entries {
            cfg.feed_retained_entries = v;
        }
        if let Some(v) = args.agent_heartbeat_timeout_ms {
            cfg.agent_heartbeat_timeout_ms = v;
        }
        if let Some(v) = args.agent_forget_ms {
            cfg.agent_forget_ms = v;
        }
        if let Some(v) = args.clock_step_max_ms {
            cfg.clock_step_max_ms = v;
        }
        if let Some(v) = args.disk_stall_grace_ms {
            cfg.disk_stall_grace_ms = v;
        }
        if let Some(v) = args.disk_reserve_mb {
            cfg.disk_reserve_mb = v;
        }
        if let Some(v) = &args.default_strategy {
            cfg.engine.strategy = minion_engine::Strategy::parse(v).ok_or_else(|| {
                anyhow::anyhow!("invalid config: default_strategy {v:?}: one of round_robin, least_loaded, random, capability_best, latency_based, weighted_round_robin")
            })?;
        }
        if let Some(d) = args.durability {
            cfg.durability = d.into();
        }
        if let Some(v) = args.payload_bytes_max {
            cfg.engine.payload_bytes_max = v;
        }
        if let Some(v) = args.retention_ms {
            cfg.engine.retention_ms = v;
        }
        if let Some(v) = args.dedup_ttl_ms {
            cfg.engine.dedup_ttl_ms = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Is the API authenticated? `auto`: unless it listens on loopback only.
    pub fn auth_enabled(&self) -> bool {
        match self.auth {
            AuthMode::On => true,
            AuthMode::Off => false,
            AuthMode::Auto => !self.listen.ip().is_loopback(),
        }
    }

    /// Refuse settings that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn range(field: &str, v: u64, min: u64, max: u64) -> anyhow::Result<()> {
            if v < min || v > max {
                bail!("invalid config: {field} must be between {min} and {max}, got {v}");
            }
            Ok(())
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("invalid config: data_dir must not be empty");
        }
        range("node_id", self.node_id, 1, u64::MAX)?;
        range("connections_max", self.connections_max as u64, 1, 1_000_000)?;
        range("event_streams_max", self.event_streams_max as u64, 1, 1_000_000)?;
        if let Some(t) = &self.admin_token {
            if t.len() < 16 {
                bail!("invalid config: admin_token must be at least 16 characters");
            }
        }
        if self.auth_enabled() && self.admin_token.is_none() {
            bail!(
                "invalid config: authentication is on (listen {} is not loopback-only, or auth = \"on\"), so an \
                 admin_token (MINION_ADMIN_TOKEN) is required; for local development listen on 127.0.0.1, or set \
                 auth = \"off\" to run without authentication",
                self.listen
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("invalid config: tls_cert and tls_key go together");
        }
        let peer = [&self.peer_tls_cert, &self.peer_tls_key, &self.peer_tls_ca];
        if peer.iter().any(|p| p.is_some()) && !peer.iter().all(|p| p.is_some()) {
            bail!("invalid config: peer_tls_cert, peer_tls_key and peer_tls_ca go together");
        }
        range("body_bytes_max", self.body_bytes_max as u64, 1024, 1 << 30)?;
        range("claim_wait_ms_max", self.claim_wait_ms_max, 0, 600_000)?;
        range("group_commit_max", self.group_commit_max as u64, 1, 100_000)?;
        range("proposals_in_flight_max", self.proposals_in_flight_max as u64, 1, 1_024)?;
        range("snapshot_logs", self.snapshot_logs, 100, u64::MAX)?;
        range("snapshot_log_bytes", self.snapshot_log_bytes, 1 << 20, u64::MAX)?;
        range("wal_segment_bytes", self.wal_segment_bytes, 64 << 10, 1 << 32)?;
        range("state_queue_bytes", self.state_queue_bytes as u64, 1 << 20, 1 << 34)?;
        range("state_durable_every_ms", self.state_durable_every_ms, 10, 60_000)?;
        range("entry_bytes_max", self.entry_bytes_max as u64, 64 << 10, 1 << 30)?;
        if (self.entry_bytes_max as u64) < self.engine.payload_bytes_max + (64 << 10) {
            bail!(
                "invalid config: entry_bytes_max ({}) must be at least engine.payload_bytes_max ({}) plus 64 KiB, \
                 so that one task always fits in a log entry",
                self.entry_bytes_max,
                self.engine.payload_bytes_max
            );
        }
        range("tick_interval_ms", self.tick_interval_ms, 1, 60_000)?;
        range("feed_retained_entries", self.feed_retained_entries, 1, u64::MAX)?;
        range("agent_heartbeat_timeout_ms", self.agent_heartbeat_timeout_ms, 200, 3_600_000)?;
        range("clock_step_max_ms", self.clock_step_max_ms, 10, 3_600_000)?;
        range("disk_stall_grace_ms", self.disk_stall_grace_ms, 0, 600_000)?;
        range("disk_reserve_mb", self.disk_reserve_mb, 0, 1 << 30)?;
        range("commit_timeout_ms", self.commit_timeout_ms, 100, 600_000)?;
        range("election_timeout_ms", self.election_timeout_ms, 100, 60_000)?;
        range("storage_cache_bytes", self.storage_cache_bytes, 1 << 20, 1 << 40)?;
        range("snapshot_transfer_deadline_ms", self.snapshot_transfer_deadline_ms, 1_000, 86_400_000)?;
        if let Some(secret) = &self.cluster_secret {
            if secret.len() < 16 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("invalid config: cluster_secret must be at least 16 printable characters without spaces");
            }
        }
        if self.join && self.cluster_secret.is_none() {
            bail!("invalid config: join needs cluster_secret (the secret of the cluster to join)");
        }
        for (field, addr, listen) in [
            ("advertise_api", &self.advertise_api, self.listen),
            ("advertise_raft", &self.advertise_raft, self.raft_listen),
        ] {
            match addr {
                Some(a) if !valid_host_port(a) => {
                    bail!("invalid config: {field} must be host:port, got {a:?}")
                }
                None if listen.ip().is_unspecified() => bail!(
                    "invalid config: {field} must be set when listening on {listen} (peers need a reachable address)"
                ),
                _ => {}
            }
        }
        if self.raft_listen.port() != 0 && self.raft_listen == self.listen {
            bail!("invalid config: raft_listen and listen must differ ({})", self.listen);
        }
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            bail!("invalid config: trace_sample_ratio must be between 0 and 1, got {}", self.trace_sample_ratio);
        }
        if let Some(url) = &self.otlp_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("invalid config: otlp_endpoint {url:?} must be an http:// or https:// URL");
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            bail!("invalid config: log_level {:?}: {e}", self.log_level);
        }
        if (self.body_bytes_max as u64) < self.engine.payload_bytes_max {
            bail!(
                "invalid config: body_bytes_max ({}) must be at least engine.payload_bytes_max ({})",
                self.body_bytes_max,
                self.engine.payload_bytes_max
            );
        }
        self.engine.validate().map_err(|r| anyhow::anyhow!("invalid config: engine.{}", r.message))?;
        range("autoscale_interval_ms", self.autoscale_interval_ms, 10, 3_600_000)?;
        if let Some(url) = &self.autoscale_webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("invalid config: autoscale_webhook_url must be an http(s) URL, got {url:?}");
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &self.pools {
            if !names.insert(p.name.as_str()) {
                bail!("invalid config: pools: the name {:?} is used twice", p.name);
            }
            if p.queues.is_empty() {
                bail!("invalid config: pools.{}.queues must name at least one queue", p.name);
            }
            for q in &p.queues {
                minion_engine::config::validate_queue_name(q)
                    .map_err(|r| anyhow::anyhow!("invalid config: pools.{}.queues: {}", p.name, r.message))?;
            }
            p.effective_policy()
                .validate()
                .map_err(|e| anyhow::anyhow!("invalid config: pools.{}.policy: {e}", p.name))?;
        }
        let mut ingest_names = std::collections::BTreeSet::new();
        for i in &self.ingest {
            if !ingest_names.insert(i.name.as_str()) {
                bail!("invalid config: ingest: the name {:?} is used twice", i.name);
            }
            i.options("http://127.0.0.1:1", self.node_id).map_err(|e| anyhow::anyhow!("invalid config: {e:#}"))?;
        }
        if let Some(e) = &self.export_postgres {
            if e.url.parse::<tokio_postgres::Config>().is_err() {
                bail!("invalid config: export_postgres.url is not a PostgreSQL connection string");
            }
            range("export_postgres.batch_records", e.batch_records as u64, 1, 10_000)?;
        }
        Ok(())
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_unknown_fields_are_named() {
        let cfg: Config = toml::from_str("listen = \"127.0.0.1:9999\"\n[engine]\nlease_ms = 5000\n").expect("parse");
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.engine.lease_ms, 5000);
        assert_eq!(cfg.engine.max_attempts, EngineConfig::default().max_attempts);
        let err = toml::from_str::<Config>("lisen = \"x\"").expect_err("unknown field");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = Config { tick_interval_ms: 0, ..Config::default() };
        assert!(cfg.validate().expect_err("invalid").to_string().contains("tick_interval_ms"));
        let mut cfg = Config::default();
        cfg.engine.lease_ms = 1;
        assert!(cfg.validate().expect_err("invalid").to_string().contains("lease_ms"));
        Config::default().validate().expect("defaults are valid");
    }
}
