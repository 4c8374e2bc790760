//! The typed async client: one method per call of the v1 API that Minion's own clients make,
//! and JSON escapes for the rest.
//!
//! Failover and retries: a request goes to the current node; when no node answers at all (the
//! connection could not be made) it moves to the next. A node that answered 502/503/504 is left
//! for the next only when that cannot do a write twice: reads and idempotent writes (a submit
//! with an idempotency key, an extension, a heartbeat, a drain) always; other writes only when
//! the node says it did nothing (`not_leader`, `shutting_down`). A `commit_timeout` on a
//! non-idempotent write is returned to the caller: the write may have happened.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::auth::ClientAuth;
use crate::error::{Error, Result};
use crate::events::EventStream;
use crate::servers::Servers;
use crate::wire::*;

/// Whether a request may be sent again to another node after an answer that may mean it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: any unavailable answer moves on to the next node.
    Safe,
    /// Writes that must not run twice: only an answer that says nothing was done moves on.
    Unsafe,
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    servers: Servers,
}

impl Client {
    /// A client of the nodes in `servers` (comma-separated URLs) with `auth`'s token and CA.
    pub fn new(servers: &str, auth: &ClientAuth) -> Result<Client> {
        let servers = Servers::parse(servers).map_err(Error::Config)?;
        let http = auth.build(reqwest::Client::builder().tcp_nodelay(true)).map_err(Error::Config)?;
        Ok(Client { http, servers })
    }

    /// A client on an HTTP client built elsewhere (its own headers, pools and timeouts).
    pub fn with_http(servers: Servers, http: reqwest::Client) -> Client {
        Client { http, servers }
    }

    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    // ---- producers ------------------------------------------------------------------------

    /// Submit one task. Retried on another node only when it has an idempotency key.
    pub async fn submit(&self, task: &TaskIn) -> Result<SubmittedOut> {
        let retry = if task.idempotency_key.is_some() { Retry::Safe } else { Retry::Unsafe };
        self.call(Method::POST, "/v1/tasks", Some(task), retry).await
    }

    /// Submit tasks as one atomic batch. Retried on another node only when every task has an
    /// idempotency key.
    pub async fn submit_batch(&self, tasks: Vec<TaskIn>) -> Result<Vec<SubmittedOut>> {
        let retry = if tasks.iter().all(|t| t.idempotency_key.is_some()) { Retry::Safe } else { Retry::Unsafe };
        let out: BatchOut = self.call(Method::POST, "/v1/tasks", Some(&BatchIn { tasks }), retry).await?;
        Ok(out.tasks)
    }

    pub async fn task(&self, id: u64) -> Result<TaskOut> {
        self.call(Method::GET, &format!("/v1/tasks/{id}"), None::<&()>, Retry::Safe).await
    }

    /// The task once it is finished, or as it is when `wait` is over (long-polls, as often as
    /// the server's cap on one wait requires).
    pub async fn wait(&self, id: u64, wait: Duration) -> Result<TaskOut> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64;
            let path = format!("/v1/tasks/{id}?wait_ms={left}");
            let t: TaskOut = self.call(Method::GET, &path, None::<&()>, Retry::Safe).await?;
            if t.state.is_terminal() || left == 0 {
                return Ok(t);
            }
        }
    }

    pub async fn list_tasks(&self, q: &ListQuery) -> Result<TaskList> {
        let query = serde_json::to_value(q).map_err(|e| Error::Config(e.to_string()))?;
        let pairs: Vec<(String, String)> = query
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let mut path = "/v1/tasks".to_string();
        for (i, (k, v)) in pairs.iter().enumerate() {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str(k);
            path.push('=');
            path.push_str(&encode(v));
        }
        self.call(Method::GET, &path, None::<&()>, Retry::Safe).await
    }

    pub async fn cancel(&self, id: u64, reason: Option<&str>) -> Result<TaskOut> {
        let body = CancelIn { reason: reason.map(str::to_string) };
        // Cancelling twice cancels once (the second is refused as wrong_state).
        self.call(Method::POST, &format!("/v1/tasks/{id}/cancel"), Some(&body), Retry::Unsafe).await
    }

    pub async fn retry(&self, id: u64) -> Result<TaskOut> {
        self.call(Method::POST, &format!("/v1/tasks/{id}/retry"), None::<&()>, Retry::Unsafe).await
    }

    // ---- agents ---------------------------------------------------------------------------

    /// Lease up to `claim.max` tasks, long-polling up to `claim.wait_ms`. Not retried after an
    /// ambiguous answer: a claim that ran holds leases (the server gives back those of a claim
    /// whose caller is gone).
    pub async fn claim(&self, claim: &ClaimIn) -> Result<Vec<TaskOut>> {
        let out: ClaimOut = self.call(Method::POST, "/v1/claims", Some(claim), Retry::Unsafe).await?;
        Ok(out.tasks)
    }

    /// Report progress, or a piece of partial output (`message`).
    pub async fn progress(
        &self,
        id: u64,
        lease_token: u64,
        percent: Option<u8>,
        message: Option<String>,
    ) -> Result<()> {
        let body = ProgressIn { lease_token, percent, message };
        let _: Value = self.call(Method::POST, &format!("/v1/tasks/{id}/progress"), Some(&body), Retry::Unsafe).await?;
        Ok(())
    }

    pub async fn complete(&self, id: u64, lease_token: u64, result: Option<Box<RawValue>>) -> Result<TaskOut> {
        let body = CompleteIn { lease_token, result };
        self.call(Method::POST, &format!("/v1/tasks/{id}/complete"), Some(&body), Retry::Unsafe).await
    }

    pub async fn fail(&self, id: u64, lease_token: u64, error: &str) -> Result<TaskOut> {
        let body = FailIn { lease_token, error: error.to_string() };
        self.call(Method::POST, &format!("/v1/tasks/{id}/fail"), Some(&body), Retry::Unsafe).await
    }

    /// The lease runs `lease_ms` (default: the task's) from now. Idempotent.
    pub async fn extend(&self, id: u64, lease_token: u64, lease_ms: Option<u64>) -> Result<TaskOut> {
        let body = ExtendIn { lease_token, lease_ms };
        self.call(Method::POST, &format!("/v1/tasks/{id}/extend"), Some(&body), Retry::Safe).await
    }

    /// Complete or fail many leased tasks in one request; each succeeds or is refused alone.
    pub async fn acks(&self, acks: Vec<AckIn>) -> Result<Vec<AckOut>> {
        let out: AcksOut = self.call(Method::POST, "/v1/acks", Some(&AcksIn { acks }), Retry::Unsafe).await?;
        Ok(out.results)
    }

    /// Register (again: a new incarnation, whose predecessor's leases are released).
    pub async fn register_agent(&self, agent: &AgentIn) -> Result<AgentOut> {
        self.call(Method::POST, "/v1/agents", Some(agent), Retry::Unsafe).await
    }

    pub async fn heartbeat(&self, agent_id: &str, incarnation: Option<u64>) -> Result<()> {
        let body = HeartbeatIn { incarnation };
        let _: Value = self
            .call(Method::POST, &format!("/v1/agents/{}/heartbeat", encode(agent_id)), Some(&body), Retry::Safe)
            .await?;
        Ok(())
    }

    pub async fn drain_agent(&self, agent_id: &str) -> Result<AgentOut> {
        self.call(Method::POST, &format!("/v1/agents/{}/drain", encode(agent_id)), None::<&()>, Retry::Safe).await
    }

    pub async fn deregister_agent(&self, agent_id: &str) -> Result<()> {
        let path = format!("/v1/agents/{}", encode(agent_id));
        let _: Value = self.call(Method::DELETE, &path, None::<&()>, Retry::Safe).await?;
        Ok(())
    }

    pub async fn agent(&self, agent_id: &str) -> Result<AgentOut> {
        self.call(Method::GET, &format!("/v1/agents/{}", encode(agent_id)), None::<&()>, Retry::Safe).await
    }

    /// A page of agents in id order (`after`: the previous page's `next`).
    pub async fn agents(&self, limit: usize, after: Option<&str>) -> Result<AgentList> {
        let mut path = format!("/v1/agents?limit={limit}");
        if let Some(a) = after {
            path.push_str(&format!("&after={}", encode(a)));
        }
        self.call(Method::GET, &path, None::<&()>, Retry::Safe).await
    }

    /// Who this client's token is: its role and queue patterns (any role may ask).
    pub async fn whoami(&self) -> Result<WhoAmIOut> {
        self.call(Method::GET, "/v1/whoami", None::<&()>, Retry::Safe).await
    }

    // ---- event streams --------------------------------------------------------------------

    /// Follow one task: its retained progress and state, then each change; the stream ends after
    /// the task's final event. `types` (event names) filters; `after` resumes after an event id.
    pub async fn task_events(&self, id: u64, types: &[&str], after: Option<u64>) -> Result<EventStream> {
        self.open_stream(&format!("/v1/tasks/{id}/events"), None, types, after).await
    }

    /// Follow every task of a queue (a name or a pattern such as `img-*`), or of the node without
    /// one, until closed.
    pub async fn events(&self, queue: Option<&str>, types: &[&str], after: Option<u64>) -> Result<EventStream> {
        self.open_stream("/v1/events", queue, types, after).await
    }

    async fn open_stream(
        &self,
        path: &str,
        queue: Option<&str>,
        types: &[&str],
        after: Option<u64>,
    ) -> Result<EventStream> {
        let mut query = Vec::new();
        if let Some(q) = queue {
            query.push(format!("queue={}", encode(q)));
        }
        if !types.is_empty() {
            query.push(format!("types={}", encode(&types.join(","))));
        }
        if let Some(a) = after {
            query.push(format!("after={a}"));
        }
        let path = if query.is_empty() { path.to_string() } else { format!("{path}?{}", query.join("&")) };
        // Opening a stream reads: any node may be asked.
        let (resp, base) = self.send(&Method::GET, &path, None, Some("text/event-stream"), Retry::Safe).await?;
        Ok(EventStream::new(resp, base))
    }

    // ---- ingest and export adapters -------------------------------------------------------

    /// Record ingest records that could not become tasks (state `rejected`, deduplicated by
    /// key). Retried on another node only when every record has an idempotency key.
    pub async fn record_rejections(&self, records: Vec<RejectedIn>) -> Result<Vec<SubmittedOut>> {
        let retry = if records.iter().all(|r| r.idempotency_key.is_some()) { Retry::Safe } else { Retry::Unsafe };
        let out: BatchOut = self.call(Method::POST, "/v1/rejections", Some(&RejectionsIn { records }), retry).await?;
        Ok(out.tasks)
    }

    /// An adapter's status report; `GET /v1/adapters` shows the latest of each adapter.
    pub async fn report_adapter(&self, name: &str, status: &Value) -> Result<()> {
        let path = format!("/v1/adapters/{}", encode(name));
        let _: Value = self.call(Method::PUT, &path, Some(status), Retry::Safe).await?;
        Ok(())
    }

    // ---- everything else ------------------------------------------------------------------

    /// Any call, answered as JSON (`null` for an empty answer).
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>, retry: Retry) -> Result<Value> {
        self.call(method, path, body, retry).await
    }

    /// Send, fail over as `retry` allows, and decode the answer or the API's error.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        retry: Retry,
    ) -> Result<T> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| Error::Config(e.to_string()))?),
            None => None,
        };
        let (resp, base) = self.send(&method, path, body, None, retry).await?;
        let text = resp.text().await.map_err(|e| Error::Transport { server: base, message: error_chain(&e) })?;
        let text = if text.is_empty() { "null" } else { text.as_str() };
        serde_json::from_str(text)
            .map_err(|e| Error::Decode { what: format!("{method} {path}"), message: e.to_string() })
    }

    /// Send to the current node, moving to the next as `retry` allows; a 2xx answer (its body
    /// unread) and the node that gave it, or the API's error.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&'static str>,
        retry: Retry,
    ) -> Result<(reqwest::Response, String)> {
        let mut tries = self.servers.len();
        loop {
            tries -= 1;
            let base = self.servers.base().to_string();
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(b) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone());
            }
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.servers.failed(&base);
                    // Never connected: nothing ran, any call may go to the next node.
                    if e.is_connect() && tries > 0 {
                        continue;
                    }
                    return Err(Error::Transport { server: base, message: error_chain(&e) });
                }
            };
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok((resp, base));
            }
            let text =
                resp.text().await.map_err(|e| Error::Transport { server: base.clone(), message: error_chain(&e) })?;
            let err: Option<ErrorBody> = serde_json::from_str::<ErrorOut>(&text).ok().map(|e| e.error);
            if matches!(status, 502..=504) && tries > 0 {
                let did_nothing =
                    err.as_ref().is_some_and(|e| matches!(e.code.as_str(), "not_leader" | "shutting_down"));
                if retry == Retry::Safe || did_nothing {
                    self.servers.failed(&base);
                    continue;
                }
            }
            return Err(Error::api(status, err, &text));
        }
    }
}

/// An error with its causes (reqwest hides the useful part in its sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// Percent-encode a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
