//! The accept loop of both ports: optional TLS (rustls; client certificates for the peer port),
//! a cap on open connections, HTTP/1.1 and HTTP/2, and graceful shutdown (stop accepting, let
//! in-flight requests finish).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds a certificate that is not valid PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Trust anchors from a PEM file of CA certificates.
pub fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).with_context(|| format!("a CA certificate in {} is not usable", path.display()))?;
    }
    Ok(roots)
}

/// A TLS server configuration from PEM files; with `client_ca`, clients must present a
/// certificate that chains to it (mutual TLS).
pub fn server_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).context("the certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve `app` on `listener` until `shutdown` resolves, then wait for open connections to finish
/// their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    connections_max: usize,
    port: &'static str,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(connections_max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(port, error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("minion_connections_refused_total", "port" => port).increment(1);
            tokio::spawn(refuse(tcp, acceptor.is_some(), connections_max));
            continue;
        };
        metrics::gauge!("minion_connections_open", "port" => port).increment(1.0);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                        let _ = watcher.watch(conn).await;
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("minion_tls_handshake_failures_total", "port" => port).increment(1);
                        tracing::debug!(port, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(port, "TLS handshake timed out"),
                },
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc).into_owned();
                    let _ = watcher.watch(conn).await;
                }
            }
            metrics::gauge!("minion_connections_open", "port" => port).decrement(1.0);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answer a connection over the limit: a 503 in plain HTTP, or (on a TLS port, where plain text
/// would be garbage to the client) a close.
async fn refuse(mut tcp: TcpStream, tls: bool, max: usize) {
    if tls {
        return;
    }
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"this node has {max} connections open, its limit\"}}}}"
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        // Wait for the request's head first: a response sent before the client has written its
        // request is one the client did not ask for yet, and some clients then see a broken
        // connection instead of the 503.
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
            match tokio::time::timeout(Duration::from_millis(500), tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
                .await
            {
                Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let _ = tcp.write_all(resp.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
