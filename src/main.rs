//! The `minion` binary: server, CLI client and load generator.

use minion::*;

use clap::Parser;

use minion::cli::{Cli, Cmd};
use minion::config::{Config, LogFormat};

/// mimalloc instead of glibc's malloc: the state writer (sled) and the apply and HTTP threads
/// allocate concurrently, and glibc's arena locks were a tenth of the CPU profile under ingest
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs for the client-side verbs (workers, pools, adapters): human-readable, no trace export.
fn init_tracing(format: LogFormat, level: &str) {
    if let Ok(guard) = tracing_setup::init(format, level, None) {
        std::mem::forget(guard); // nothing to flush without an exporter
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Cmd::Serve(args) => {
                let config = Config::load(&args)?;
                let otlp = config.otlp_endpoint.clone().map(|endpoint| tracing_setup::Otlp {
                    endpoint,
                    sample_ratio: config.trace_sample_ratio,
                    service: "minion".into(),
                    node_id: config.node_id,
                });
                let _traces = tracing_setup::init(config.log_format, &config.log_level, otlp)?;
                serve(config).await
            }
            Cmd::Task(cmd) => client::task(cmd).await,
            Cmd::Queue(cmd) => client::queue(cmd).await,
            Cmd::Schedule(cmd) => minion::schedule_cli::run(cmd).await,
            Cmd::Config(cmd) => client::config(cmd).await,
            Cmd::Agent(cmd) => client::agent(cmd).await,
            Cmd::Autoscaler(cmd) => client::autoscaler(cmd).await,
            Cmd::Cluster(cmd) => client::cluster(cmd).await,
            Cmd::Snapshot(cmd) => client::snapshot(cmd).await,
            Cmd::Token(cmd) => client::token(cmd).await,
            Cmd::Audit { client, after, limit } => client::audit(client, after, limit).await,
            Cmd::Ingest(cmd) => {
                init_tracing(LogFormat::Human, "info");
                ingest::command(cmd).await
            }
            Cmd::Pool(args) => {
                init_tracing(LogFormat::Human, "info");
                pool::run(*args).await
            }
            Cmd::Worker(args) => {
                init_tracing(LogFormat::Human, "info");
                worker::run(*args).await
            }
            Cmd::Export(cli::ExportCmd::Postgres(args)) => {
                init_tracing(LogFormat::Human, "info,tokio_postgres=warn");
                export_postgres(args).await
            }
            Cmd::Bench(args) => bench::run(args).await,
            Cmd::Openapi => {
                print!("{}", api::openapi::document());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    let data_dir = config.data_dir.clone();
    let handle = metrics::install();
    // Bind both ports first: with port 0 the advertised addresses are the ones actually bound.
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let peer_listener = tokio::net::TcpListener::bind(config.raft_listen)
        .await
        .with_context(|| format!("binding the peer port {}", config.raft_listen))?;
    let listen = listener.local_addr()?;
    let raft_listen = peer_listener.local_addr()?;
    let me = minion_raft::Node {
        api_addr: config.advertise_api.clone().unwrap_or_else(|| listen.to_string()),
        raft_addr: config.advertise_raft.clone().unwrap_or_else(|| raft_listen.to_string()),
    };
    // TLS settings are read before anything starts, so a bad file stops the node at once.
    let api_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(serve::server_tls(cert, key, None).context("API TLS")?),
        _ => None,
    };
    let peer_tls = match (&config.peer_tls_cert, &config.peer_tls_key, &config.peer_tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(serve::server_tls(cert, key, Some(ca)).context("peer TLS")?),
        _ => None,
    };
    let node = node::Node::start(config, me).await?;
    let peer_app = peer::router(node.clone());
    tokio::spawn(async move {
        if let Err(e) = serve::serve(peer_listener, peer_app, peer_tls, 1_024, "peer", std::future::pending()).await {
            tracing::error!(error = %e, "the peer port stopped");
        }
    });
    // Forwarding to the leader: the client's own credentials travel in its headers; the leader's
    // API certificate is trusted through tls_ca (or this node's own certificate).
    let forward_auth = minion_client::ClientAuth {
        token: None,
        ca_cert: node.config.tls_ca.clone().or_else(|| node.config.tls_cert.clone()),
    };
    let http = forward_auth
        .build(
            reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(2))
                .pool_idle_timeout(std::time::Duration::from_secs(60))
                .tcp_nodelay(true),
        )
        .map_err(anyhow::Error::msg)?;
    let auth = std::sync::Arc::new(api::auth::Auth::new(
        node.config.auth_enabled(),
        node.config.admin_token.as_deref(),
        node.config.rate_limit_per_sec,
    ));
    if !auth.enabled {
        tracing::warn!(%listen, "authentication is off: every caller may do everything (development mode)");
    }
    let streams = std::sync::Arc::new(api::events::Streams::new(node.config.event_streams_max));
    let app = api::router(std::sync::Arc::new(api::App::new(node.clone(), handle, http, auth, streams.clone())));
    tracing::info!(
        %listen,
        %raft_listen,
        node_id = node.config.node_id,
        cluster_id = node.identity.cluster_id().unwrap_or_default(),
        data_dir = %data_dir.display(),
        durability = node.config.durability.as_str(),
        "minion serving"
    );
    // Embedded adapters call this node's API as the bootstrap admin, trusting its CA.
    let own = minion_client::ClientAuth {
        token: node.config.admin_token.clone(),
        ca_cert: node.config.tls_ca.clone().or_else(|| node.config.tls_cert.clone()),
    };
    let scheme = if node.config.tls_cert.is_some() { "https" } else { "http" };
    if let Some(e) = node.config.export_postgres.clone() {
        let opts = minion_adapters::postgres::ExportOptions {
            server: format!("{scheme}://{listen}"),
            pg_url: e.url,
            name: e.name,
            batch_records: e.batch_records,
            progress: false,
            auth: own.clone(),
        };
        tokio::spawn(async move {
            if let Err(err) = minion_adapters::postgres::follow(opts, std::time::Duration::from_millis(e.poll_ms)).await
            {
                tracing::error!(error = %err, "the PostgreSQL export stopped");
            }
        });
    }
    let (stop_ingest, ingest_stop) = tokio::sync::watch::channel(false);
    ingest::spawn_embedded(&node.config, &format!("{scheme}://{}", node.me.api_addr), &own, ingest_stop);
    let hub = node.hub.clone();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_ingest.send(true);
        // Event streams end now: graceful shutdown waits for every open response.
        streams.close();
        // Long-polling claims return now (empty) instead of holding shutdown for their deadline.
        hub.release_all();
    };
    let connections_max = node.config.connections_max;
    serve::serve(listener, app, api_tls, connections_max, "api", shutdown).await.context("serving HTTP")?;
    tracing::info!("in-flight requests finished; stopping raft and storage");
    node.shutdown().await;
    Ok(())
}

async fn export_postgres(args: cli::PostgresExportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let opts = minion_adapters::postgres::ExportOptions {
        server: args.server,
        pg_url: args.url,
        name: args.name,
        batch_records: args.batch_records.clamp(1, 10_000),
        progress: std::io::stderr().is_terminal(),
        auth: minion_client::ClientAuth::from_env(),
    };
    if args.follow {
        minion_adapters::postgres::follow(opts, std::time::Duration::from_millis(args.poll_ms)).await?;
        return Ok(());
    }
    let started = std::time::Instant::now();
    let r = minion_adapters::postgres::export_once(opts).await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "exported: {} tasks backfilled, {} change records in {} transactions, position {} ({:.1} s, {:.0} rows/s)",
        r.backfilled_tasks,
        r.feed_records,
        r.transactions,
        r.position,
        secs,
        (r.backfilled_tasks + r.feed_records) as f64 / secs.max(1e-9)
    );
    Ok(())
}
