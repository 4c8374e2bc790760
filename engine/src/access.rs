//! API tokens and the audit trail, as replicated state.
//!
//! A token's secret never enters the log: the node that creates a token draws the secret, gives it
//! to the caller once, and proposes only its SHA-256. Tokens are random 256-bit values, so a fast
//! hash is the right one (a password hash would only slow every request down).

use serde::{Deserialize, Serialize};

use crate::task::TimeMs;

/// What a token may do. See `docs/security.md` for the routes of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including tokens, membership, queue settings, backups.
    Admin,
    /// Submit tasks (and rejections, adapter status); read tasks of its queues.
    Producer,
    /// Claim, progress, complete, fail, extend; register, heartbeat and deregister agents.
    Worker,
    /// Read the ledger, queues, agents, stats, cluster status.
    Reader,
    /// `/metrics` and the queue-depth endpoints autoscalers poll.
    Metrics,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Producer, Role::Worker, Role::Reader, Role::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Producer => "producer",
            Role::Worker => "worker",
            Role::Reader => "reader",
            Role::Metrics => "metrics",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

pub const TOKEN_ID_BYTES: usize = 16;
pub const TOKEN_NAME_BYTES_MAX: usize = 128;
pub const TOKEN_PATTERNS_MAX: usize = 64;
pub const TOKENS_MAX: usize = 10_000;
/// Audit entries kept; the oldest are dropped beyond this.
pub const AUDIT_ENTRIES_MAX: usize = 10_000;
pub const AUDIT_TEXT_BYTES_MAX: usize = 1_024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// 16 lowercase hex characters; the public half of the bearer value `mn_<id>_<secret>`.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Queue-name patterns the token may touch (`*` matches any run of characters); empty: all.
    pub queues: Vec<String>,
    /// Patterns it may not touch; a deny wins over an allow.
    pub deny: Vec<String>,
    pub secret_sha256: [u8; 32],
    pub created_ms: TimeMs,
    pub created_by: String,
    pub expires_ms: Option<TimeMs>,
    pub revoked_ms: Option<TimeMs>,
    /// Requests per second this token may make (a burst of twice that); the node default if unset.
    pub rate_per_sec: Option<u32>,
}

impl Token {
    pub fn active(&self, now: TimeMs) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now < e)
    }

    /// May this token touch `queue`? Deny patterns win; no allow pattern means every queue.
    pub fn allows_queue(&self, queue: &str) -> bool {
        if self.deny.iter().any(|p| pattern_matches(p, queue)) {
            return false;
        }
        self.queues.is_empty() || self.queues.iter().any(|p| pattern_matches(p, queue))
    }

    /// Restricted to some queues (so listing every queue's tasks is not allowed).
    pub fn restricted(&self) -> bool {
        !self.queues.is_empty() || !self.deny.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id.len() != TOKEN_ID_BYTES || !self.id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("token id must be {TOKEN_ID_BYTES} lowercase hex characters"));
        }
        if self.name.is_empty() || self.name.len() > TOKEN_NAME_BYTES_MAX {
            return Err(format!("token name must be 1 to {TOKEN_NAME_BYTES_MAX} bytes"));
        }
        if self.queues.len() + self.deny.len() > TOKEN_PATTERNS_MAX {
            return Err(format!("at most {TOKEN_PATTERNS_MAX} queue patterns"));
        }
        for p in self.queues.iter().chain(&self.deny) {
            if p.is_empty() || p.len() > crate::config::limits::QUEUE_NAME_BYTES_MAX {
                return Err(format!("queue pattern {p:?} must be 1 to 128 bytes"));
            }
        }
        if self.rate_per_sec == Some(0) {
            return Err("rate_per_sec must be at least 1".into());
        }
        Ok(())
    }
}

/// Agent-id patterns a token is bound to.
pub const TOKEN_AGENT_PATTERNS_MAX: usize = 64;

pub fn validate_agent_patterns(patterns: &[String]) -> Result<(), String> {
    if patterns.len() > TOKEN_AGENT_PATTERNS_MAX {
        return Err(format!("at most {TOKEN_AGENT_PATTERNS_MAX} agent patterns"));
    }
    for p in patterns {
        if p.is_empty() || p.len() > crate::config::limits::AGENT_ID_BYTES_MAX {
            return Err(format!(
                "agent pattern {p:?} must be 1 to {} bytes",
                crate::config::limits::AGENT_ID_BYTES_MAX
            ));
        }
    }
    Ok(())
}

/// May a token bound to `patterns` act as agent `id`? No patterns: any agent.
pub fn agent_allowed(patterns: &[String], id: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| pattern_matches(p, id))
}

/// Glob match where `*` matches any (possibly empty) run of characters and everything else is
/// literal.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// One administrative action, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: TimeMs,
    /// Who: `token:<id> (<name>)`, `admin-token` (the bootstrap token), or `anonymous` (no auth).
    pub actor: String,
    /// e.g. `token.create`, `queue.set`, `task.cancel`, `cluster.add`.
    pub action: String,
    pub target: String,
    pub detail: String,
    pub log_index: u64,
}

pub(crate) fn clip(s: &str) -> String {
    if s.len() <= AUDIT_TEXT_BYTES_MAX {
        return s.to_string();
    }
    let mut end = AUDIT_TEXT_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("orders", "orders"));
        assert!(!pattern_matches("orders", "orders2"));
        assert!(pattern_matches("orders.*", "orders.eu"));
        assert!(pattern_matches("orders.*", "orders."));
        assert!(!pattern_matches("orders.*", "orders"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(!pattern_matches("a*b*c", "axxc"));
        assert!(pattern_matches("*-dlq", "x-dlq"));
        assert!(!pattern_matches("ab*ba", "aba"), "the prefix and suffix may not overlap");
    }

    #[test]
    fn deny_wins() {
        let t = Token {
            id: "0123456789abcdef".into(),
            name: "t".into(),
            role: Role::Producer,
            queues: vec!["orders.*".into()],
            deny: vec!["orders.secret".into()],
            secret_sha256: [0; 32],
            created_ms: 0,
            created_by: String::new(),
            expires_ms: Some(10),
            revoked_ms: None,
            rate_per_sec: None,
        };
        assert!(t.allows_queue("orders.eu"));
        assert!(!t.allows_queue("orders.secret"));
        assert!(!t.allows_queue("billing"));
        assert!(t.active(9) && !t.active(10));
        t.validate().expect("valid");
    }
}
