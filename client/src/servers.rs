//! The nodes a client may talk to: a comma-separated list of URLs (`--server a,b,c`). Requests go
//! to one node until it fails, then to the next; any node accepts every call (followers forward
//! to the leader), so the list only needs to name nodes that may be up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Servers {
    urls: Arc<Vec<String>>,
    at: Arc<AtomicUsize>,
}

impl Servers {
    /// `list`: node URLs separated by commas (spaces and trailing slashes are ignored).
    pub fn parse(list: &str) -> Result<Servers, String> {
        let urls: Vec<String> =
            list.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
        if urls.is_empty() {
            return Err(format!("--server {list:?} names no node"));
        }
        if let Some(bad) = urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(format!("server {bad:?} is not an http:// or https:// URL"));
        }
        Ok(Servers { urls: Arc::new(urls), at: Arc::default() })
    }

    /// How many nodes the list names.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The node requests go to now.
    pub fn base(&self) -> &str {
        &self.urls[self.at.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// `base` failed: move on to the next node, unless another caller already has.
    pub fn failed(&self, base: &str) {
        let at = self.at.load(Ordering::Relaxed);
        if self.urls[at % self.urls.len()] == base {
            let _ = self.at.compare_exchange(at, at.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Send a request to the current node; when it cannot be reached or answers 502/503/504
    /// (stopping, no leader yet, commit timeout), try the next, each node at most once. The
    /// last answer or error is returned. A request the server may have started on (a timeout
    /// after sending) is not sent again: the node is marked failed and the error returned.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut tries = self.urls.len();
        loop {
            tries -= 1;
            let base = self.base().to_string();
            let mut req = http.request(method.clone(), format!("{base}{path}"));
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if matches!(r.status().as_u16(), 502..=504) && tries > 0 => self.failed(&base),
                Ok(r) => return Ok(r),
                Err(e) if e.is_connect() && tries > 0 => self.failed(&base),
                Err(e) => {
                    self.failed(&base);
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rotates() {
        let s = Servers::parse(" http://a:1/, http://b:2 ,,").expect("parse");
        assert_eq!(s.base(), "http://a:1");
        s.failed("http://a:1");
        assert_eq!(s.base(), "http://b:2");
        s.failed("http://a:1");
        assert_eq!(s.base(), "http://b:2", "a stale failure report does not skip the next node");
        s.failed("http://b:2");
        assert_eq!(s.base(), "http://a:1");
        assert!(Servers::parse(" , ").is_err());
        assert!(Servers::parse("a:1").is_err());
    }

    #[tokio::test]
    async fn a_node_that_cannot_be_reached_is_skipped() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_port = dead.local_addr().expect("addr").port();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live_port = live.local_addr().expect("addr").port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut c, _)) = live.accept().await {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}").await;
            }
        });
        let s = Servers::parse(&format!("http://127.0.0.1:{dead_port},http://127.0.0.1:{live_port}")).expect("parse");
        let r = s.send(&reqwest::Client::new(), reqwest::Method::GET, "/x", None).await.expect("answered");
        assert_eq!(r.status(), 200);
        assert_eq!(s.base(), format!("http://127.0.0.1:{live_port}"), "stays on the node that answered");
    }
}
