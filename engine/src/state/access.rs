//! API tokens and the audit trail of administrative actions.

use std::sync::Arc;

use super::{invalid, Fail, State, Step};
use crate::access::{clip, AuditEntry, Token, AUDIT_ENTRIES_MAX, TOKENS_MAX};
use crate::command::{Command, Outcome, RejectCode, Rejection};
use crate::record::{Key, Record};

impl State {
    pub(super) fn create_token(&mut self, token: &Token, agents: &[String]) -> Step<Outcome> {
        token.validate().map_err(invalid)?;
        crate::access::validate_agent_patterns(agents).map_err(invalid)?;
        if self.tokens.contains_key(&token.id) {
            return Err(invalid(format!("token {} already exists", token.id)));
        }
        if self.tokens.len() >= TOKENS_MAX {
            return Err(invalid(format!("at most {TOKENS_MAX} tokens; revoke and remove old ones")));
        }
        self.tokens.insert(token.id.clone(), Arc::new(token.clone()));
        self.pending.put(Record::Token(token.clone()));
        if !agents.is_empty() {
            self.token_agents.insert(token.id.clone(), Arc::new(agents.to_vec()));
            self.pending.put(Record::TokenAgents(token.id.clone(), agents.to_vec()));
        }
        Ok(Outcome::Done)
    }

    pub(super) fn revoke_token(&mut self, id: &str) -> Step<Outcome> {
        let now = self.meta.clock;
        let t = self
            .tokens
            .get_mut(id)
            .ok_or_else(|| Fail::Reject(Rejection::new(RejectCode::NotFound, format!("no token {id}"))))?;
        if t.revoked_ms.is_none() {
            Arc::make_mut(t).revoked_ms = Some(now);
            let t = (**t).clone();
            self.pending.put(Record::Token(t));
        }
        Ok(Outcome::Done)
    }

    pub(super) fn audit_append(&mut self, actor: &str, action: &str, target: &str, detail: &str) {
        let seq = self.meta.next_audit;
        self.meta.next_audit += 1;
        self.meta_dirty = true;
        let entry = AuditEntry {
            seq,
            at_ms: self.meta.clock,
            actor: clip(actor),
            action: clip(action),
            target: clip(target),
            detail: clip(detail),
            log_index: self.applying,
        };
        self.pending.put(Record::Audit(entry.clone()));
        self.audit.insert(seq, entry);
        while self.audit.len() > AUDIT_ENTRIES_MAX {
            if let Some((old, _)) = self.audit.pop_first() {
                self.pending.delete(Key::Audit(old));
            }
        }
    }
}

fn schedule_detail(def: &crate::schedule::ScheduleDef) -> String {
    let when = match (&def.cron, def.every_ms) {
        (Some(c), _) => format!("cron={c:?} timezone={}", def.timezone.as_deref().unwrap_or("UTC")),
        (None, Some(ms)) => format!("every_ms={ms}"),
        (None, None) => String::new(),
    };
    format!("{when} queue={} missed={:?} paused={}", def.task.queue, def.missed, def.paused)
}

/// How the audit trail names an administrative command: action, target, detail. Anything else is
/// refused inside `Audited`.
fn token_detail(token: &Token, agents: &[String]) -> String {
    let agents = if agents.is_empty() { String::new() } else { format!(" agents={agents:?}") };
    format!(
        "name={} role={} queues={:?} deny={:?}{agents} expires_ms={:?} rate_per_sec={:?}",
        token.name,
        token.role.as_str(),
        token.queues,
        token.deny,
        token.expires_ms,
        token.rate_per_sec
    )
}

pub(super) fn audit_description(cmd: &Command) -> Result<(&'static str, String, String), Rejection> {
    Ok(match cmd {
        Command::SetQueue { name, config } => ("queue.set", name.clone(), format!("{config:?}")),
        Command::SetLimits { queue, rules } => ("queue.limits", queue.clone(), format!("{rules:?}")),
        Command::PutSchedule { def } => ("schedule.set", def.name.clone(), schedule_detail(def)),
        Command::DeleteSchedule { name } => ("schedule.delete", name.clone(), String::new()),
        Command::Cancel { task_id, reason } => ("task.cancel", task_id.to_string(), reason.clone().unwrap_or_default()),
        Command::Retry { task_id } => ("task.retry", task_id.to_string(), String::new()),
        Command::CreateToken { token } => ("token.create", token.id.clone(), token_detail(token, &[])),
        Command::CreateBoundToken { token, agents } => ("token.create", token.id.clone(), token_detail(token, agents)),
        Command::RevokeToken { id } => ("token.revoke", id.clone(), String::new()),
        Command::RestoreEnd { restore_id, records_total, .. } => {
            ("restore", restore_id.clone(), format!("{records_total} records"))
        }
        Command::DrainAgent { id } => ("agent.drain", id.clone(), String::new()),
        Command::Configure { config } => ("config.set", "engine".into(), format!("{config:?}")),
        Command::DeregisterAgent { id } => ("agent.deregister", id.clone(), String::new()),
        other => return Err(Rejection::invalid(format!("{} is not an audited administrative command", other.name()))),
    })
}
