//! Several real `minion` processes on loopback forming one cluster, with fault injection:
//! `kill -9`, SIGSTOP/SIGCONT, and partitions.
//!
//! Partitions: node `i` listens for peers on `127.0.0.(10+i)` and binds its outgoing peer
//! connections to that address (Minion does this whenever `--raft-listen` names an address). It
//! advertises a proxy on `127.0.0.1` instead, which forwards to the real port and tells callers
//! apart by their source address, so cutting `i` from `j` drops exactly the traffic between them,
//! in both directions.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::disks::LoopFs;
use super::netns::Netns;
use super::{eventually, free_port, free_port_on, Api, Server};

pub const SECRET: &str = "test-cluster-secret-0123456789";

/// The address node `index` (0-based) uses for peer traffic.
pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + index as u8 + 1)
}

/// A TCP proxy in front of one node's peer port that can refuse chosen sources and limit the
/// bytes per second of each connection (each direction).
pub struct Proxy {
    pub addr: SocketAddr,
    blocked: Arc<Mutex<HashSet<IpAddr>>>,
    /// 0: unlimited.
    rate: Arc<std::sync::atomic::AtomicU64>,
    conns: Arc<Mutex<Vec<(IpAddr, tokio::task::AbortHandle)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("addr");
        let blocked: Arc<Mutex<HashSet<IpAddr>>> = Arc::default();
        let conns: Arc<Mutex<Vec<(IpAddr, tokio::task::AbortHandle)>>> = Arc::default();
        let rate: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let (b, c, r) = (blocked.clone(), conns.clone(), rate.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, peer)) = listener.accept().await else { return };
                if b.lock().expect("lock").contains(&peer.ip()) {
                    drop(inbound);
                    continue;
                }
                let r = r.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        let up = tokio::spawn(throttled_copy(ri, wo, r.clone()));
                        let _ = throttled_copy(ro, wi, r).await;
                        up.abort();
                    }
                });
                let mut conns = c.lock().expect("lock");
                conns.retain(|(_, h)| !h.is_finished());
                conns.push((peer.ip(), handle.abort_handle()));
            }
        });
        Proxy { addr, blocked, rate, conns, task }
    }

    /// Limit each connection to `bytes_per_sec` in each direction (0: no limit).
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuse (and cut) traffic from these sources; allow everything else.
    pub fn block(&self, sources: &[IpAddr]) {
        let mut b = self.blocked.lock().expect("lock");
        b.clear();
        b.extend(sources.iter().copied());
        for (ip, h) in self.conns.lock().expect("lock").iter() {
            if b.contains(ip) {
                h.abort();
            }
        }
    }
}

/// Copy until either side closes, at most `rate` bytes per second when it is set (a token bucket
/// with a 64 KiB burst).
async fn throttled_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rate: Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BURST: f64 = 65_536.0;
    let mut buf = vec![0u8; 16 << 10];
    let mut allowance = BURST;
    let mut last = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let r = rate.load(std::sync::atomic::Ordering::Relaxed) as f64;
        if r > 0.0 {
            allowance = (allowance + last.elapsed().as_secs_f64() * r).min(BURST);
            last = Instant::now();
            if allowance < n as f64 {
                tokio::time::sleep(Duration::from_secs_f64((n as f64 - allowance) / r)).await;
                allowance = n as f64;
                last = Instant::now();
            }
            allowance -= n as f64;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for (_, h) in self.conns.lock().expect("lock").iter() {
            h.abort();
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// Each node's own file system (layout `disks`), unmounted after the nodes stop.
    pub disks: Vec<Option<LoopFs>>,
    /// Loopback mode: a proxy in front of each node's peer port (empty in namespaces).
    pub proxies: Vec<Proxy>,
    /// Namespace mode: each node in a network namespace of its own.
    pub net: Option<Netns>,
    /// Every node under libfaketime, its wall-clock offset in `<dir>/n<i>.clock`.
    pub faketime: bool,
    own_disks: bool,
    pub dir: PathBuf,
}

/// How [`Cluster::start_with`] lays the nodes out.
#[derive(Clone, Copy, Default)]
pub struct Layout {
    pub namespaces: bool,
    pub faketime: bool,
    /// Each node's data directory on a loop-mounted ext4 of its own (root), which can be frozen.
    pub disks: bool,
}

impl Cluster {
    /// Start `n` nodes: node 1 forms the cluster, the others join and are promoted to voters.
    pub async fn start(dir: &Path, n: usize, extra: &[&str]) -> Cluster {
        Self::start_with(Layout::default(), dir, n, extra).await
    }

    /// The same, optionally with each node in a network namespace of its own (see [`Netns`])
    /// and under libfaketime.
    pub async fn start_with(layout: Layout, dir: &Path, n: usize, extra: &[&str]) -> Cluster {
        let net = layout.namespaces.then(Netns::new);
        let mut c = Cluster {
            nodes: Vec::new(),
            disks: Vec::new(),
            proxies: Vec::new(),
            net,
            faketime: layout.faketime,
            own_disks: layout.disks,
            dir: dir.to_path_buf(),
        };
        for i in 0..n {
            c.add_process(i, extra, i > 0).await;
        }
        c.nodes[0].wait_ready().await;
        for i in 1..n {
            c.nodes[i].wait_up().await;
            c.join(i, true).await;
        }
        c
    }

    /// Create (not start) node `index` with its proxy, and launch it.
    pub async fn add_process(&mut self, index: usize, extra: &[&str], join: bool) {
        let node_dir = self.dir.join(format!("n{}", index + 1));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let (ip, netns) = match &self.net {
            Some(net) => (net.ip(index), Some(net.add_node(index))),
            None => (node_ip(index), None),
        };
        // In a namespace of its own every port is free, and peers reach the node directly.
        let (real, port) = match netns {
            Some(_) => (SocketAddr::from((ip, 7001)), 7000),
            None => (SocketAddr::from((ip, free_port_on(ip))), free_port()),
        };
        let advertised = match netns {
            Some(_) => real,
            None => {
                let proxy = Proxy::start(real).await;
                let addr = proxy.addr;
                self.proxies.push(proxy);
                addr
            }
        };
        let host = if netns.is_some() { ip } else { Ipv4Addr::LOCALHOST };
        let disk = self
            .own_disks
            .then(|| LoopFs::mount(&self.dir.join(format!("n{}.img", index + 1)), &node_dir.join("disk")));
        let data_dir = match &disk {
            Some(d) => d.0.join("data"),
            None => node_dir.join("data"),
        };
        self.disks.push(disk);
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(["--advertise-raft".into(), advertised.to_string(), "--cluster-secret".into(), SECRET.into()]);
        if netns.is_some() {
            // Off loopback authentication would be on; these addresses exist only in the test.
            args.extend(["--auth".into(), "off".into()]);
        }
        if join {
            args.push("--join".into());
        }
        let mut s = Server {
            child: None,
            port,
            raft_listen: real.to_string(),
            node_id: index as u64 + 1,
            data_dir,
            base: format!("http://{host}:{port}"),
            extra: args,
            env: Vec::new(),
            log: node_dir.join("server.log"),
            netns,
        };
        if self.faketime {
            let clock = self.clock_file(index);
            std::fs::write(&clock, "+0").expect("clock offset");
            s.under_faketime(&clock);
        }
        s.launch();
        self.nodes.push(s);
    }

    fn clock_file(&self, index: usize) -> PathBuf {
        self.dir.join(format!("n{}.clock", index + 1))
    }

    /// Step node `index`'s wall clock to `offset` from real time (`+0` puts it right).
    pub fn step_clock(&self, index: usize, offset: &str) {
        assert!(self.faketime, "the cluster runs without libfaketime");
        std::fs::write(self.clock_file(index), offset).expect("clock offset");
    }

    /// The peer address node `index` advertises.
    pub fn raft_addr(&self, index: usize) -> String {
        match &self.net {
            Some(_) => self.nodes[index].raft_listen.clone(),
            None => self.proxies[index].addr.to_string(),
        }
    }

    /// Add node `index` through node 1's API (any node would do) and wait until it has caught up.
    pub async fn join(&self, index: usize, voter: bool) {
        let body = json!({"node_id": index + 1, "raft_addr": self.raft_addr(index), "voter": voter});
        let (s, v) = self.any_api().post("/v1/cluster/members", body).await;
        assert_eq!(s, 201, "adding node {}: {v}", index + 1);
    }

    pub fn api(&self, index: usize) -> Api {
        self.nodes[index].client()
    }

    /// An API client of a running node other than the excluded ones.
    pub fn any_api(&self) -> Api {
        let i = (0..self.nodes.len()).find(|i| self.nodes[*i].running()).expect("a running node");
        self.api(i)
    }

    /// Node-local view (`/v1/cluster/node`), `None` if the node does not answer.
    pub async fn node_info(&self, index: usize, digest: bool) -> Option<Value> {
        if !self.nodes[index].running() {
            return None;
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        let url = format!("{}/v1/cluster/node?digest={digest}", self.nodes[index].base);
        let r = http.get(url).send().await.ok()?;
        r.json().await.ok()
    }

    /// The index of the node that is leader, as a majority of answering nodes agree.
    pub async fn leader(&self, secs: u64) -> usize {
        eventually(secs, "a leader", || async {
            let mut best: Option<(u64, usize)> = None;
            for i in 0..self.nodes.len() {
                if let Some(v) = self.node_info(i, false).await {
                    // A leader that a quorum acknowledged recently (not one cut off from it).
                    let acked = v["millis_since_quorum_ack"].as_u64().is_some_and(|ms| ms < 1_000);
                    if v["state"] == "leader" && acked {
                        let term = v["term"].as_u64().unwrap_or(0);
                        if best.is_none_or(|(t, _)| term > t) {
                            best = Some((term, i));
                        }
                    }
                }
            }
            best.map(|(_, i)| i)
        })
        .await
    }

    /// Cut the listed groups from each other (traffic inside a group flows).
    pub fn partition(&self, groups: &[&[usize]]) {
        if let Some(net) = &self.net {
            for (n, g) in groups.iter().enumerate() {
                let others: Vec<usize> =
                    groups.iter().enumerate().filter(|(m, _)| *m != n).flat_map(|(_, o)| o.iter().copied()).collect();
                for i in g.iter() {
                    net.deafen(*i, &others);
                }
            }
            return;
        }
        for (n, g) in groups.iter().enumerate() {
            let others: Vec<IpAddr> = groups
                .iter()
                .enumerate()
                .filter(|(m, _)| *m != n)
                .flat_map(|(_, o)| o.iter().map(|i| IpAddr::V4(node_ip(*i))))
                .collect();
            for i in g.iter() {
                self.proxies[*i].block(&others);
            }
        }
    }

    pub fn heal(&self) {
        if let Some(net) = &self.net {
            for i in 0..self.nodes.len() {
                net.deafen(i, &[]);
                net.shape(i, None);
            }
        }
        for p in &self.proxies {
            p.block(&[]);
        }
    }

    /// Wait until every running node has the same state digest as of the same applied index.
    pub async fn wait_converged(&self, secs: u64) -> (u64, String) {
        let started = Instant::now();
        let mut last = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            let mut seen = Vec::new();
            for i in 0..self.nodes.len() {
                if self.nodes[i].running() {
                    let v = self.node_info(i, true).await;
                    seen.push((
                        i,
                        v.as_ref().and_then(|v| v["digest_index"].as_u64()),
                        v.and_then(|v| v["digest"].as_str().map(String::from)),
                    ));
                }
            }
            let first = seen.first().cloned();
            if let Some((_, Some(idx), Some(d))) = first {
                if seen.iter().all(|(_, i, dd)| *i == Some(idx) && dd.as_deref() == Some(d.as_str())) {
                    return (idx, d);
                }
            }
            last = seen;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // What the nodes said last, for a failure that only shows under load.
        let mut tails = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(20);
            tails.push_str(&format!(
                "\n--- node {} (running: {}), last lines of {}:\n",
                n.node_id,
                n.running(),
                n.log.display()
            ));
            tails.push_str(&lines[from..].join("\n"));
        }
        panic!("replicas did not converge in {secs} s: {last:?}{tails}");
    }
}
