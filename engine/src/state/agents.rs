//! Agents: registration, draining, death, and the bookkeeping of their leases.

use super::{check_capabilities, invalid, Fail, State, Step};
use crate::agent::{Agent, AgentStats, AgentStatus, ANY_CAPABILITY};
use crate::command::{AgentSpec, Outcome, RejectCode, Rejection};
use crate::config::limits;
use crate::record::{Key, Record};
use crate::task::{AttemptOutcome, TaskId};

fn agent_not_found(id: &str) -> Fail {
    Fail::Reject(Rejection::new(RejectCode::NotFound, format!("agent {id} not found")))
}

impl State {
    fn save_agent(&mut self, id: &str) {
        match self.agents.get(id) {
            Some(a) => self.pending.put(Record::Agent(a.clone())),
            None => self.pending.delete(Key::Agent(id.to_string())),
        }
    }

    pub(super) fn register_agent(&mut self, spec: &AgentSpec) -> Step<Outcome> {
        crate::config::validate_agent_id(&spec.id)?;
        if spec.name.len() > limits::AGENT_ID_BYTES_MAX {
            return Err(invalid(format!("agent name must be at most {} bytes", limits::AGENT_ID_BYTES_MAX)));
        }
        check_capabilities(&spec.capabilities)?;
        if spec.max_concurrency == 0 || spec.max_concurrency > limits::AGENT_CONCURRENCY_MAX {
            return Err(invalid(format!("max_concurrency must be between 1 and {}", limits::AGENT_CONCURRENCY_MAX)));
        }
        if spec.labels.len() > limits::AGENT_LABELS_MAX
            || spec
                .labels
                .iter()
                .any(|(k, v)| k.len() > limits::AGENT_LABEL_BYTES_MAX || v.len() > limits::AGENT_LABEL_BYTES_MAX)
        {
            return Err(invalid(format!(
                "at most {} labels of at most {} bytes each",
                limits::AGENT_LABELS_MAX,
                limits::AGENT_LABEL_BYTES_MAX
            )));
        }
        let now = self.meta.clock;
        if self.agents.get(&spec.id).is_some_and(|a| a.status != AgentStatus::Dead) {
            self.agent_gone(&spec.id, AgentStatus::Dead, AttemptOutcome::AgentRestarted);
        }
        let (stats, registered_ms) = match self.agents.get(&spec.id) {
            // History carries over to the new incarnation; in-flight was zeroed above.
            Some(a) => (AgentStats { in_flight: 0, ..a.stats.clone() }, a.registered_ms),
            None => (AgentStats::default(), now),
        };
        let incarnation = self.meta.next_incarnation;
        self.meta.next_incarnation += 1;
        self.meta_dirty = true;
        let agent = Agent {
            id: spec.id.clone(),
            name: spec.name.clone(),
            capabilities: spec.capabilities.clone(),
            max_concurrency: spec.max_concurrency,
            labels: spec.labels.clone(),
            status: AgentStatus::Active,
            incarnation,
            registered_ms,
            updated_ms: now,
            stats,
        };
        self.agents.insert(spec.id.clone(), agent.clone());
        self.save_agent(&spec.id);
        Ok(Outcome::Agent(Box::new(agent)))
    }

    pub(super) fn drain_agent(&mut self, id: &str) -> Step<Outcome> {
        let now = self.meta.clock;
        let a = self.agents.get_mut(id).ok_or_else(|| agent_not_found(id))?;
        if a.status == AgentStatus::Dead {
            return Err(Fail::Reject(Rejection::new(RejectCode::WrongState, format!("agent {id} is dead"))));
        }
        a.status = AgentStatus::Draining;
        a.updated_ms = now;
        let out = a.clone();
        self.save_agent(id);
        Ok(Outcome::Agent(Box::new(out)))
    }

    pub(super) fn deregister_agent(&mut self, id: &str) -> Step<Outcome> {
        if !self.agents.contains_key(id) {
            return Err(agent_not_found(id));
        }
        self.agent_gone(id, AgentStatus::Dead, AttemptOutcome::AgentDead);
        self.agents.remove(id);
        self.save_agent(id);
        Ok(Outcome::Done)
    }

    /// The leader saw no heartbeat in time from these (agent id, incarnation) pairs.
    pub(super) fn agents_dead(&mut self, agents: &[(String, u64)]) -> Step<Outcome> {
        for (id, incarnation) in agents {
            let live =
                self.agents.get(id).is_some_and(|a| a.incarnation == *incarnation && a.status != AgentStatus::Dead);
            if live {
                self.agent_gone(id, AgentStatus::Dead, AttemptOutcome::AgentDead);
            }
        }
        Ok(Outcome::Done)
    }

    /// Remove agents dead long enough to be forgotten, as (agent id, incarnation) pairs; an agent
    /// that registered again (or is not dead) is kept. A dead agent holds no lease.
    pub(super) fn forget_agents(&mut self, agents: &[(String, u64)]) -> Step<Outcome> {
        for (id, incarnation) in agents {
            let dead =
                self.agents.get(id).is_some_and(|a| a.incarnation == *incarnation && a.status == AgentStatus::Dead);
            if dead {
                self.agents.remove(id);
                self.save_agent(id);
            }
        }
        Ok(Outcome::Done)
    }

    /// Bookkeeping when task `id`'s current lease ends: free the agent's slot and, for a success
    /// or failure, record it in the agent's statistics. Call before the lease is cleared.
    pub(super) fn lease_ended(&mut self, id: TaskId, success: Option<bool>) {
        let now = self.meta.clock;
        let Some(t) = self.live.get(&id) else { return };
        let Some(lease) = &t.lease else { return };
        let Some(agent) = self.agents.get_mut(&lease.agent_id) else { return };
        if lease.incarnation == 0 || agent.incarnation != lease.incarnation {
            return;
        }
        agent.stats.in_flight = agent.stats.in_flight.saturating_sub(1);
        if let Some(ok) = success {
            let latency = t.attempts.last().map(|a| now.saturating_sub(a.started_ms)).unwrap_or(0);
            agent.stats.overall.record(ok, latency);
            if t.capabilities.is_empty() {
                agent.stats.by_capability.entry(ANY_CAPABILITY.to_string()).or_default().record(ok, latency);
            }
            for c in &t.capabilities {
                agent.stats.by_capability.entry(c.clone()).or_default().record(ok, latency);
            }
        }
        agent.updated_ms = now;
        let agent_id = lease.agent_id.clone();
        self.save_agent(&agent_id);
    }

    /// Release every lease the agent's current incarnation holds, recording `outcome` as the end of
    /// each attempt, and set its status.
    pub(super) fn agent_gone(&mut self, agent_id: &str, status: AgentStatus, outcome: AttemptOutcome) {
        let Some(incarnation) = self.agents.get(agent_id).map(|a| a.incarnation) else { return };
        let held: Vec<TaskId> = self
            .idx
            .leases
            .iter()
            .filter_map(|(_, id)| self.live.get(id))
            .filter(|t| t.lease.as_ref().is_some_and(|l| l.agent_id == agent_id && l.incarnation == incarnation))
            .map(|t| t.id)
            .collect();
        let reason = match outcome {
            AttemptOutcome::AgentRestarted => "the agent restarted",
            _ => "the agent is gone",
        };
        for id in held {
            self.counters.agent_releases += 1;
            self.end_attempt(id, outcome.clone(), reason.to_string());
        }
        let now = self.meta.clock;
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.status = status;
            a.stats.in_flight = 0;
            a.updated_ms = now;
        }
        self.save_agent(agent_id);
    }
}
