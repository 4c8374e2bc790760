//! Each node in a network namespace of its own, on a bridge, with a nemesis that acts on real
//! packets: nftables rules inside a node's namespace drop what it receives from chosen peers
//! (full, one-way and bridge partitions, flapping links), and `tc netem` on its interface delays,
//! drops and reorders what it sends.
//!
//! Layout: a bridge `mb<tag>` in the test's own namespace holds `10.<a>.<b>.1/24`; node `i` lives
//! in namespace `mn<tag>n<i>` with `eth0` at `10.<a>.<b>.(11+i)`, joined to the bridge by a veth
//! pair. The test process talks to every node over the bridge.
//!
//! Kernels without `sch_netem` (this machine's has none, nor `nfqueue`) cannot delay packets; there
//! [`netem`] says so, loss is dropped by an nftables rule instead (`numgen random`), and a slow
//! link is a `tbf` rate limit (queueing delay and tail drops). Dropping the value removes the
//! namespaces (and with them every rule) and the bridge.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

fn sh(args: &[&str]) -> Result<(), String> {
    let out =
        Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = sh(args) {
        panic!("{e}");
    }
}

/// Why namespaces cannot be made here (not root), or `None`. As root they must work: a missing
/// tool or permission fails the test instead of skipping it (CI runs as root).
pub fn unavailable() -> Option<String> {
    static PROBE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref().ok() != Some("0") {
        return Some("network namespaces need root (CI runs as root)".into());
    }
    let probe = format!("mnprobe{}", std::process::id());
    let _ = sh(&["ip", "netns", "del", &probe]);
    if let Err(e) = sh(&["ip", "netns", "add", &probe]) {
        panic!("cannot create a network namespace as root: {e}");
    }
    let nft = sh(&["ip", "netns", "exec", &probe, "nft", "list", "ruleset"]);
    let _ = sh(&["ip", "netns", "del", &probe]);
    if let Err(e) = nft {
        panic!("nftables does not work in a namespace ({e}): apt-get install nftables (.ci/run does)");
    }
    if let Err(e) = sh(&["tc", "-V"]) {
        panic!("no tc ({e}): apt-get install iproute2");
    }
    None
}

/// Whether the kernel has `tc netem` (packet delay).
pub fn netem() -> bool {
    static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| {
        let ns = format!("mnnetem{}", std::process::id());
        let _ = sh(&["ip", "netns", "del", &ns]);
        let ok = sh(&["ip", "netns", "add", &ns]).is_ok()
            && sh(&["ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
                .is_ok();
        let _ = sh(&["ip", "netns", "del", &ns]);
        ok
    })
}

pub struct Netns {
    tag: String,
    net: (u8, u8),
    nodes: std::sync::Mutex<Vec<String>>,
    /// Per node: the peers it does not hear, and the share of its incoming packets it drops.
    rules: std::sync::Mutex<std::collections::BTreeMap<usize, (Vec<usize>, u32)>>,
}

/// Conditions imposed on a node's link.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    /// `tc netem` delay with normally distributed jitter on what the node sends (kernels with
    /// netem only; see [`netem`]).
    Delay { ms: u32, jitter_ms: u32 },
    /// Drop this share of what the node receives (nftables `numgen random`).
    Loss { percent: u32 },
    /// Cap what the node sends at `kbit` per second with a 500 ms queue (`tc tbf`).
    Slow { kbit: u32 },
}

impl Netns {
    pub fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, n);
        // 10.<100..199>.<0..249>.0/24: apart for concurrent tests of one process and likely
        // apart across processes.
        let net = (100 + (pid % 100) as u8, ((pid / 100 * 7 + n * 13) % 250) as u8);
        let bridge = format!("mb{tag}");
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        must(&["ip", "addr", "add", &format!("10.{}.{}.1/24", net.0, net.1), "dev", &bridge]);
        must(&["ip", "link", "set", &bridge, "up"]);
        Netns { tag, net, nodes: Default::default(), rules: Default::default() }
    }

    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 11 + i as u8)
    }

    pub fn name(&self, i: usize) -> String {
        format!("mn{}n{}", self.tag, i)
    }

    /// Create node `i`'s namespace and link (once).
    pub fn add_node(&self, i: usize) -> String {
        let ns = self.name(i);
        let mut nodes = self.nodes.lock().expect("lock");
        if nodes.contains(&ns) {
            return ns;
        }
        let host = format!("mv{}n{}", self.tag, i);
        must(&["ip", "netns", "add", &ns]);
        must(&["ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        must(&["ip", "link", "set", &host, "master", &format!("mb{}", self.tag), "up"]);
        let x = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &ns];
            full.extend_from_slice(args);
            must(&full);
        };
        x(&["ip", "link", "set", "lo", "up"]);
        x(&["ip", "addr", "add", &format!("{}/24", self.ip(i)), "dev", "eth0"]);
        x(&["ip", "link", "set", "eth0", "up"]);
        x(&["ip", "route", "add", "default", "via", &format!("10.{}.{}.1", self.net.0, self.net.1)]);
        nodes.push(ns.clone());
        ns
    }

    fn nft(&self, i: usize, script: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name(i), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft");
        child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("nft script");
        let out = child.wait_with_output().expect("nft");
        assert!(out.status.success(), "nft in node {i}: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    }

    /// Node `i` drops every packet from the listed nodes (an empty list lets all through).
    pub fn deafen(&self, i: usize, from: &[usize]) {
        let mut rules = self.rules.lock().expect("lock");
        let r = rules.entry(i).or_default();
        r.0 = from.to_vec();
        self.apply(i, r);
    }

    /// Replace node `i`'s nftables table with its current rules.
    fn apply(&self, i: usize, (deaf, loss): &(Vec<usize>, u32)) {
        let mut script = String::from("table inet nemesis\ndelete table inet nemesis\n");
        script.push_str("table inet nemesis {\n chain input {\n  type filter hook input priority 0; policy accept;\n");
        for f in deaf {
            script.push_str(&format!("  ip saddr {} drop\n", self.ip(*f)));
        }
        if *loss > 0 {
            script.push_str(&format!("  numgen random mod 100 < {loss} drop\n"));
        }
        script.push_str(" }\n}\n");
        self.nft(i, &script);
    }

    /// Impose `link` on node `i` (`None`: a clean link).
    pub fn shape(&self, i: usize, link: Option<Link>) {
        let ns = self.name(i);
        let _ = sh(&["ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root"]);
        {
            let mut rules = self.rules.lock().expect("lock");
            let r = rules.entry(i).or_default();
            let loss = match link {
                Some(Link::Loss { percent }) => percent,
                _ => 0,
            };
            if r.1 != loss {
                r.1 = loss;
                self.apply(i, r);
            }
        }
        let qdisc: Vec<String> = match link {
            None | Some(Link::Loss { .. }) => return,
            Some(Link::Delay { ms, jitter_ms }) => {
                assert!(netem(), "this kernel has no tc netem");
                let mut a = vec!["netem".into(), "delay".into(), format!("{ms}ms")];
                if jitter_ms > 0 {
                    // Jitter without a correlation reorders packets, as a congested path would.
                    a.extend([format!("{jitter_ms}ms"), "distribution".into(), "normal".into()]);
                }
                a
            }
            Some(Link::Slow { kbit }) => ["tbf", "rate", &format!("{kbit}kbit"), "burst", "16kbit", "latency", "500ms"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let mut args: Vec<&str> = vec!["ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root"];
        args.extend(qdisc.iter().map(String::as_str));
        must(&args);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.nodes.lock().expect("lock").iter() {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = sh(&["ip", "link", "del", &format!("mb{}", self.tag)]);
    }
}
