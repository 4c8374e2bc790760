#!/usr/bin/env python3
"""Writes docs/openapi.json, the source of truth for Minion's v1 HTTP API.

Edit this file, run it, and commit both. tests/api_contract.rs checks that every route the
server serves is described here and vice versa.
"""
import json, pathlib

def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}
def resp(desc, schema=None):
    r = {"description": desc}
    if schema: r["content"] = {"application/json": {"schema": schema}}
    return r
ERR = {"400": resp("invalid request or malformed JSON", ref("Error")),
       "413": resp("request body over the limit", ref("Error")),
       "503": resp("no leader or shutting down", ref("Error"))}
def errs(*codes):
    out = {c: ERR[c] for c in codes if c in ERR}
    if "404" in codes: out["404"] = resp("unknown task", ref("Error"))
    if "409" in codes: out["409"] = resp("stale lease token or wrong task state", ref("Error"))
    return out
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "format": "uint64"}}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
def q(name, t="string", desc=""):
    return {"name": name, "in": "query", "required": False, "schema": {"type": t}, "description": desc}
def op(summary, responses, **kw):
    o = {"summary": summary, "responses": responses}; o.update(kw); return o
def lease_op(summary, schema):
    return {"post": op(summary, {"200": resp("the task after the operation", ref("Task")), **errs("400", "404", "409", "413", "503")},
                       parameters=[ID], requestBody=body(schema))}

u64 = {"type": "integer", "format": "uint64", "minimum": 0}
opt = lambda s: {**s, "nullable": True}
schemas = {
  "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
      "code": {"type": "string", "enum": ["compacted", "stale_incarnation", "invalid_request", "invalid_json", "payload_too_large", "unsupported_media_type", "not_found", "stale_lease", "wrong_state", "not_leader", "unavailable", "method_not_allowed", "internal"]},
      "message": {"type": "string"}}}}},
  "TaskIn": {"type": "object", "required": ["queue"], "additionalProperties": False, "properties": {
      "queue": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}, "kind": {"type": "string", "maxLength": 128},
      "payload": {"description": "any JSON value; default null"}, "capabilities": {"type": "array", "items": {"type": "string"}, "maxItems": 32},
      "priority": {"type": "integer", "format": "int32", "description": "higher runs first"}, "idempotency_key": opt({"type": "string", "maxLength": 512}),
      "run_at_ms": opt({**u64, "description": "absolute run time, ms since the Unix epoch"}), "delay_ms": opt(u64),
      "max_attempts": opt({"type": "integer", "minimum": 1, "maximum": 1000}), "lease_ms": opt({"type": "integer", "minimum": 100}),
      "stall_timeout_ms": opt({"type": "integer", "minimum": 100, "description": "release the lease when no progress arrives for this long"})}},
  "BatchIn": {"type": "object", "required": ["tasks"], "additionalProperties": False, "properties": {"tasks": {"type": "array", "items": ref("TaskIn"), "maxItems": 10000}}},
  "Submitted": {"type": "object", "required": ["id", "duplicate"], "properties": {"id": u64, "duplicate": {"type": "boolean"}}},
  "Lease": {"type": "object", "properties": {"token": u64, "agent_id": {"type": "string"}, "incarnation": {**u64, "description": "0 for an unregistered agent"}, "expires_ms": u64, "stall_deadline_ms": opt(u64)}},
  "Attempt": {"type": "object", "properties": {"number": {"type": "integer"}, "agent_id": {"type": "string"}, "lease_token": u64, "started_ms": u64, "ended_ms": opt(u64),
      "outcome": opt({"type": "object", "properties": {"outcome": {"type": "string", "enum": ["succeeded", "failed", "lease_expired", "cancelled", "agent_dead", "agent_restarted", "stalled", "released"]}, "error": {"type": "string"}}})}},
  "Progress": {"type": "object", "properties": {"at_ms": u64, "attempt": {"type": "integer"}, "percent": opt({"type": "integer", "minimum": 0, "maximum": 100}), "message": opt({"type": "string"})}},
  "TaskState": {"type": "string", "enum": ["ready", "delayed", "leased", "succeeded", "failed", "dead", "cancelled", "rejected"]},
  "Task": {"type": "object", "properties": {"id": u64, "queue": {"type": "string"}, "kind": {"type": "string"}, "state": ref("TaskState"), "payload": {}, "result": {},
      "capabilities": {"type": "array", "items": {"type": "string"}}, "priority": {"type": "integer"}, "idempotency_key": opt({"type": "string"}),
      "max_attempts": {"type": "integer"}, "attempt_limit": {"type": "integer"}, "lease_ms": u64, "stall_timeout_ms": opt(u64), "lease": opt(ref("Lease")), "created_ms": u64, "updated_ms": u64,
      "run_at_ms": u64, "finished_ms": opt(u64), "last_error": opt({"type": "string"}), "cancel_reason": opt({"type": "string"}),
      "attempts": {"type": "array", "items": ref("Attempt")}, "progress": {"type": "array", "items": ref("Progress")}, "progress_dropped": u64,
      "trace_parent": {"type": "string", "description": "the W3C traceparent the task was submitted with (absent when none)"}}},
  "TaskList": {"type": "object", "properties": {"tasks": {"type": "array", "items": ref("Task")}, "next": opt({**u64, "description": "cursor for the next page"})}},
  "ClaimIn": {"type": "object", "required": ["agent_id", "queues"], "additionalProperties": False, "properties": {
      "agent_id": {"type": "string"}, "queues": {"type": "array", "items": {"type": "string"}}, "capabilities": {"type": "array", "items": {"type": "string"}},
      "max": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}, "wait_ms": {**u64, "description": "long-poll up to this long (capped by the server's claim_wait_ms_max)"}}},
  "ProgressIn": {"type": "object", "required": ["lease_token"], "additionalProperties": False, "properties": {"lease_token": u64, "percent": opt({"type": "integer", "minimum": 0, "maximum": 100}), "message": opt({"type": "string", "maxLength": 4096})}},
  "CompleteIn": {"type": "object", "required": ["lease_token"], "additionalProperties": False, "properties": {"lease_token": u64, "result": {}}},
  "AcksIn": {"type": "object", "required": ["acks"], "additionalProperties": False, "properties": {"acks": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
      "type": "object", "required": ["id", "lease_token", "outcome"], "additionalProperties": False, "properties": {
          "id": u64, "lease_token": u64, "outcome": {"type": "string", "enum": ["complete", "fail"]},
          "result": {"description": "with complete: any JSON value"}, "error": {"type": "string", "maxLength": 16384, "description": "with fail: required"}}}}}},
  "AckResult": {"type": "object", "required": ["id", "ok"], "properties": {"id": u64, "ok": {"type": "boolean"}, "state": ref("TaskState"),
      "error": {"type": "object", "properties": {"code": {"type": "string", "enum": ["not_found", "invalid_request", "stale_lease", "wrong_state", "internal"]}, "message": {"type": "string"}}}}},
  "FailIn": {"type": "object", "required": ["lease_token", "error"], "additionalProperties": False, "properties": {"lease_token": u64, "error": {"type": "string", "maxLength": 16384}}},
  "ExtendIn": {"type": "object", "required": ["lease_token"], "additionalProperties": False, "properties": {"lease_token": u64, "lease_ms": opt(u64)}},
  "CancelIn": {"type": "object", "additionalProperties": False, "properties": {"reason": opt({"type": "string"})}},
  "Strategy": {"type": "string", "enum": ["round_robin", "least_loaded", "random", "capability_best", "latency_based", "weighted_round_robin"]},
  "QueueConfig": {"type": "object", "additionalProperties": False, "properties": {**{k: opt(u64) for k in ["max_attempts", "lease_ms", "dedup_ttl_ms", "retry_base_ms", "retry_max_ms", "retention_ms", "payload_bytes_max", "stall_timeout_ms"]},
      "strategy": opt(ref("Strategy"))}},
  "AgentIn": {"type": "object", "required": ["id"], "additionalProperties": False, "properties": {"id": {"type": "string", "maxLength": 128}, "name": {"type": "string"},
      "capabilities": {"type": "array", "items": {"type": "string"}}, "max_concurrency": {"type": "integer", "minimum": 1, "default": 1},
      "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
  "OutcomeStats": {"type": "object", "properties": {"completed": u64, "failed": u64, "latency_ewma_ms": u64}},
  "Agent": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "capabilities": {"type": "array", "items": {"type": "string"}},
      "max_concurrency": {"type": "integer"}, "labels": {"type": "object"}, "status": {"type": "string", "enum": ["active", "draining", "dead"]},
      "incarnation": u64, "registered_ms": u64, "updated_ms": u64, "last_seen_ms_ago": opt(u64),
      "stats": {"type": "object", "properties": {"in_flight": {"type": "integer"}, "overall": ref("OutcomeStats"), "by_capability": {"type": "object", "additionalProperties": ref("OutcomeStats")}}}}},
  "QueueStats": {"type": "object", "properties": {"queue": {"type": "string"}, **{k: u64 for k in ["ready", "delayed", "leased", "succeeded", "failed", "dead", "cancelled", "rejected", "oldest_ready_age_ms"]}}},
  "EngineConfig": {"type": "object", "additionalProperties": False, "properties": {**{k: u64 for k in ["max_attempts", "lease_ms", "dedup_ttl_ms", "retry_base_ms", "retry_max_ms", "retention_ms", "payload_bytes_max"]},
                   "strategy": ref("Strategy")}},
  "EngineSettings": {"type": "object", "properties": {"engine": ref("EngineConfig"), "this_node_file_differs": {"type": "boolean", "description": "the answering node's configuration file names other settings (they do not apply)"}}},
  "Queue": {"type": "object", "properties": {"name": {"type": "string"}, "config": ref("QueueConfig"), "overrides": ref("QueueConfig"), "stats": ref("QueueStats")}},
}

paths = {
  "/v1/tasks": {
    "post": op("Submit one task, or {\"tasks\": [...]} as one atomic batch",
               {"201": resp("created (a duplicate idempotency key returns the original id with duplicate=true; 200 when every task was a duplicate)",
                            {"oneOf": [ref("Submitted"), {"type": "object", "properties": {"tasks": {"type": "array", "items": ref("Submitted")}}}]}),
                **errs("400", "413", "503")},
               requestBody=body({"oneOf": [ref("TaskIn"), ref("BatchIn")]}),
               parameters=[{"name": "traceparent", "in": "header", "schema": {"type": "string"},
                            "description": "W3C trace context kept with every task created and handed to the agent that claims it; an invalid one is ignored"}]),
    "get": op("List tasks from the ledger with filters and cursor pagination (ascending id)",
              {"200": resp("a page", ref("TaskList")), **errs("400")},
              parameters=[q("queue"), q("state", desc="ready|delayed|leased|succeeded|failed|dead|cancelled|rejected"), q("kind"), q("agent", desc="tasks with an attempt by this agent"),
                          q("created_from_ms", "integer"), q("created_before_ms", "integer"), q("after", "integer", "cursor: ids greater than this"), q("limit", "integer", "1..1000, default 100")])},
  "/v1/tasks/{id}": {"get": op("A task with its attempts and progress history; with wait_ms, answered once the task is finished (succeeded, dead, cancelled, rejected) or the wait is over", {"200": resp("the task", ref("Task")), **errs("400", "404")},
                               parameters=[ID, q("wait_ms", "integer", "long-poll up to this long for the task to finish (at most the node's claim_wait_ms_max); default 0")])},
  "/v1/tasks/{id}/events": {"get": op("Server-Sent Events of one task: its progress history and state first (unless resuming), then each change as it applies; ends after a final state",
                                      {"200": {"description": "text/event-stream; events named submitted, ready, delayed, leased, succeeded, failed, dead, cancelled, rejected, progress (data: Event), heartbeat and compacted; id: the log index reached",
                                               "content": {"text/event-stream": {"schema": ref("Event")}}}, **errs("400", "404", "503")},
                                      parameters=[ID, q("types", desc="only these event names, comma-separated"), q("after", "integer", "resume after this event id (the Last-Event-ID header wins)"),
                                                  {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}, "description": "resume after this event id"}])},
  "/v1/events": {"get": op("Server-Sent Events of every task on this node or of one queue (tokens with queue patterns see their queues only); live, resumable from the change feed",
                           {"200": {"description": "text/event-stream (see /v1/tasks/{id}/events); resuming sends each task changed since as it is now",
                                    "content": {"text/event-stream": {"schema": ref("Event")}}}, **errs("400", "503")},
                           parameters=[q("queue", desc="only this queue"), q("types", desc="only these event names, comma-separated"), q("after", "integer", "resume after this event id (the Last-Event-ID header wins)"),
                                       {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}, "description": "resume after this event id"}])},
  "/v1/tasks/{id}/cancel": {"post": op("Cancel an unfinished task (a leased one loses its lease)", {"200": resp("the cancelled task", ref("Task")), **errs("400", "404", "409", "503")},
                                       parameters=[ID], requestBody=body(ref("CancelIn"), False))},
  "/v1/tasks/{id}/retry": {"post": op("Make a dead, cancelled or failed task ready now; dead and cancelled tasks get max_attempts more attempts",
                                      {"200": resp("the task", ref("Task")), **errs("400", "404", "409", "503")}, parameters=[ID])},
  "/v1/tasks/{id}/progress": lease_op("Report progress (kept as history)", ref("ProgressIn")),
  "/v1/tasks/{id}/complete": lease_op("Complete with a result", ref("CompleteIn")),
  "/v1/tasks/{id}/fail": lease_op("Fail the attempt: retry after backoff, or dead after max attempts", ref("FailIn")),
  "/v1/tasks/{id}/extend": lease_op("Extend the lease from now by lease_ms (default: the task's lease_ms)", ref("ExtendIn")),
  "/v1/acks": {"post": op("Complete or fail up to 1000 leased tasks in one request; each acknowledgement succeeds or is refused on its own",
                          {"200": resp("one result per acknowledgement, in order", {"type": "object", "properties": {"results": {"type": "array", "items": ref("AckResult")}}}), **errs("400", "413", "503")},
                          requestBody=body(ref("AcksIn")))},
  "/v1/claims": {"post": op("Lease up to max ready tasks, long-polling up to wait_ms", {"200": resp("leased tasks (possibly none)", {"type": "object", "properties": {"tasks": {"type": "array", "items": ref("Task")}}}), **errs("400", "413", "503")},
                            requestBody=body(ref("ClaimIn")))},
  "/v1/agents": {
    "post": op("Register an agent (again: a new incarnation, releasing the old one's leases)", {"201": resp("the agent", ref("Agent")), **errs("400", "413", "503")}, requestBody=body(ref("AgentIn"))),
    "get": op("Registered agents in id order with their status and statistics, a page at a time (dead ones are removed after the node's agent_forget_ms)",
              {"200": resp("agents", {"type": "object", "properties": {"agents": {"type": "array", "items": ref("Agent")}, "next": {"type": ["string", "null"], "description": "pass as after= for the next page; null on the last"}}}), **errs("400")},
              parameters=[q("limit", "integer", "1..1000, default 1000"), q("after", "string", "the next of the page before")])},
  "/v1/agents/{id}": {
    "get": op("One agent", {"200": resp("the agent", ref("Agent")), "404": resp("unknown agent", ref("Error"))}, parameters=[{**NAME, "name": "id"}]),
    "delete": op("Deregister: release its leases at once and forget it", {"204": {"description": "removed"}, "404": resp("unknown agent", ref("Error")), **errs("503")}, parameters=[{**NAME, "name": "id"}])},
  "/v1/agents/{id}/heartbeat": {"post": op("Liveness (kept on the leader, not written to the log)", {"200": resp("alive", {"type": "object"}), "404": resp("unknown agent", ref("Error")), "409": resp("dead or stale incarnation", ref("Error"))},
                                          parameters=[{**NAME, "name": "id"}], requestBody=body({"type": "object", "properties": {"incarnation": u64}}, False))},
  "/v1/agents/{id}/drain": {"post": op("Give the agent nothing new; it keeps its in-flight tasks", {"200": resp("the agent", ref("Agent")), "404": resp("unknown agent", ref("Error")), "409": resp("dead", ref("Error"))}, parameters=[{**NAME, "name": "id"}])},
  "/v1/config": {
    "get": op("The engine settings the cluster applies (the defaults of every queue)", {"200": resp("settings", ref("EngineSettings"))}),
    "put": op("Change engine settings: the fields given replace the cluster's, the rest stay (audited; a leader never applies its own file over these)",
              {"200": resp("settings", ref("EngineSettings")), **errs("400", "503")}, requestBody=body(ref("EngineConfig")))},
  "/v1/queues": {"get": op("Every queue with its counts by state", {"200": resp("queues", {"type": "object", "properties": {"queues": {"type": "array", "items": ref("QueueStats")}}})})},
  "/v1/queues/{name}": {
    "get": op("A queue's effective configuration, its overrides and stats", {"200": resp("the queue", ref("Queue")), **errs("400")}, parameters=[NAME]),
    "put": op("Replace a queue's overrides (fields left out use the engine defaults)", {"200": resp("the queue", ref("Queue")), **errs("400", "503")}, parameters=[NAME], requestBody=body(ref("QueueConfig")))},
  "/v1/changes": {"get": op("The change feed: whole log entries after a position, each with the full new records it changed",
                             {"200": resp("entries", {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {"index": u64, "changes": {"type": "array", "items": {"type": "object", "description": "type: task | task_removed | agent | agent_removed | dedup | dedup_removed | queue | queue_removed"}}}}},
                                                      "next": u64, "applied_index": u64}}),
                              "410": resp("entries after `after` were purged: backfill from /v1/tasks, then follow from the applied index read before it", ref("Error")), **errs("400")},
                             parameters=[q("after", "integer", "last log index already processed (default 0)"), q("limit", "integer", "records per page, 1..10000 (whole entries)")])},
  "/v1/dedup": {"get": op("Live idempotency keys in (queue, key) order, paged (for exporters' backfill)",
                           {"200": resp("keys", {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}, "more": {"type": "boolean"}}}), **errs("400")},
                           parameters=[q("after_queue"), q("after_key"), q("limit", "integer", "1..10000, default 1000")])},
  "/v1/metrics/queues/{name}": {"get": op("One queue's depth as flat numbers for KEDA's metrics-api scaler (0 for an unknown or empty queue)",
                                         {"200": resp("depth", {"type": "object", "properties": {"queue": {"type": "string"}, "ready": u64, "delayed": u64, "in_flight": u64, "backlog": u64, "oldest_ready_age_seconds": {"type": "number"}}}), **errs("400")},
                                         parameters=[NAME])},
  "/v1/autoscaler": {"get": op("Every configured pool: desired and current workers, policy, last decision (keyed by pool name: KEDA reads pools.<name>.desired)",
                                {"200": resp("pools", {"type": "object", "properties": {"pools": {"type": "object"}}})})},
  "/v1/autoscaler/decisions": {"get": op("A pool's decisions, newest first: desired, previous, rule, inputs",
                                          {"200": resp("decisions", {"type": "object"}), "404": resp("unknown pool", ref("Error")), **errs("400")},
                                          parameters=[{**q("pool"), "required": True}, q("limit", "integer", "1..1000, default 100")])},
  "/v1/rejections": {"post": op("Record ingest records that could not become tasks as tasks in state rejected (deduplicated by idempotency_key, like a submit)",
                               {"201": resp("recorded", {"type": "object", "properties": {"tasks": {"type": "array", "items": ref("Submitted")}}}),
                                "200": resp("all duplicates", {"type": "object"}), **errs("400", "413", "503")},
                               requestBody=body({"type": "object", "required": ["records"], "properties": {"records": {"type": "array", "items": ref("RejectedIn")}}}))},
  "/v1/adapters": {"get": op("Every ingest adapter's last status report: kind, source, running, ingested, rejected, duplicates, lag, last_error, reported_ms_ago",
                             {"200": resp("adapters", {"type": "object", "properties": {"adapters": {"type": "array", "items": {"type": "object"}}}})})},
  "/v1/adapters/{name}": {"put": op("An adapter reports its status (every second); kept in the leader's memory, running=false once 10 s old",
                                    {"204": {"description": "recorded"}, **errs("400")},
                                    parameters=[NAME], requestBody=body({"type": "object"}))},
  "/v1/cluster": {"get": op("Cluster status: leader, term, committed index, every member with role and (from the leader) matched index and lag",
                            {"200": resp("status", ref("ClusterStatus")), **errs("503")})},
  "/v1/cluster/node": {"get": op("The node asked, never forwarded: raft state, term, leader, log/applied/snapshot indexes, snapshots installed; digest=true adds a SHA-256 of the applied state",
                                 {"200": resp("node", {"type": "object"}), **errs("400")},
                                 parameters=[q("digest", "boolean", "include a SHA-256 of the applied state")])},
  "/v1/cluster/members": {"post": op("Add a node (started with --join) as a learner after checking its identity, secret and cluster; waits until it has caught up; voter=true promotes it",
                                     {"201": resp("status", ref("ClusterStatus")), "409": resp("already a member, wrong node, other cluster or other secret", ref("Error")), **errs("400", "503")},
                                     requestBody=body(ref("MemberIn")))},
  "/v1/cluster/members/{id}": {"delete": op("Remove a voter or learner (never the last voter)",
                                            {"200": resp("status", ref("ClusterStatus")), "404": resp("not a member", ref("Error")), "409": resp("last voter", ref("Error")), **errs("400", "503")},
                                            parameters=[ID])},
  "/v1/cluster/members/{id}/promote": {"post": op("Make a learner a voter",
                                                  {"200": resp("status", ref("ClusterStatus")), "404": resp("not a member", ref("Error")), "409": resp("already a voter", ref("Error")), **errs("400", "503")},
                                                  parameters=[ID])},
  "/v1/cluster/members/{id}/replace": {"post": op("Replace voter {id} by a new node: add it as a learner, wait until caught up, swap the voter sets",
                                                  {"200": resp("status", ref("ClusterStatus")), "404": resp("not a member", ref("Error")), "409": resp("refused", ref("Error")), **errs("400", "503")},
                                                  parameters=[ID], requestBody=body(ref("MemberIn")))},
  "/v1/admin/backup": {"get": op("A backup: the replicated state exactly as of one log index (header x-minion-applied-index), framed with a CRC; `minion snapshot export` writes it to a file",
                                 {"200": {"description": "application/octet-stream"}, **errs("503")})},
  "/v1/admin/restore": {"post": op("Load a backup into a cluster that has never held a task, agent or queue setting; replicated through the log to every member. Body limit: restore_bytes_max",
                                   {"200": resp("what was restored", {"type": "object"}), "400": resp("not a backup file, or damaged", ref("Error")),
                                    "409": resp("the cluster already holds state", ref("Error")), **errs("413", "503")},
                                   requestBody={"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})},
  "/v1/stats": {"get": op("Engine, dedup, raft and storage figures", {"200": resp("stats", {"type": "object"})})},
  "/v1/tokens": {"post": op("Create an API token (admin): role, queue patterns (deny wins), expiry, rate; the answer's `token` is the bearer value, shown this once (only its SHA-256 is stored)",
                           {"201": resp("the token, with its bearer value", {"type": "object"}), **errs("400", "503")},
                           requestBody=body(ref("TokenIn"))),
                 "get": op("Every token (admin); never secrets or their hashes", {"200": resp("tokens", {"type": "object"})})},
  "/v1/tokens/{id}": {"delete": op("Revoke a token (admin), on every node at once; it stays listed as revoked",
                                   {"200": resp("the token", {"type": "object"}), **errs("404", "503")},
                                   parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])},
  "/v1/audit": {"get": op("The audit trail of administrative actions (admin), oldest first; `next` is the `after` of the next page",
                          {"200": resp("entries", {"type": "object"}), **errs("400")},
                          parameters=[q("after", "integer", "entries after this sequence number"), q("limit", "integer", "1 to 1000, default 100")])},
  "/v1/openapi.json": {"get": op("This document", {"200": resp("OpenAPI 3.0", {"type": "object"})})},
  "/healthz": {"get": op("Liveness: the process serves HTTP", {"200": resp("ok", {"type": "object"})})},
  "/readyz": {"get": op("Readiness: a leader is known", {"200": resp("ready", {"type": "object"}), "503": resp("not ready", ref("Error"))})},
  "/metrics": {"get": op("Prometheus exposition", {"200": {"description": "text/plain; version=0.0.4"}})},
}

schemas["Event"] = {"type": "object", "required": ["task_id", "queue", "kind", "at_ms", "attempt"], "properties": {
  "task_id": u64, "queue": {"type": "string"}, "kind": {"type": "string", "description": "the task's kind"}, "at_ms": u64,
  "state": {"type": "string", "description": "state events: the state entered"}, "attempt": {"type": "integer", "description": "the attempt it concerns; 0 before the first claim"},
  "agent_id": {"type": "string"}, "result": {"description": "succeeded: the result (any JSON)"}, "error": {"type": "string", "description": "failed, dead: the last error; cancelled: the reason"},
  "seq": {**u64, "description": "progress: the report's number per task (drop numbers already seen)"}, "percent": {"type": "integer", "minimum": 0, "maximum": 100},
  "message": {"type": "string", "description": "progress: the message or a piece of partial output"}}}
schemas["RejectedIn"] = {"type": "object", "required": ["queue", "reason", "source"], "properties": {
    "queue": {"type": "string"}, "kind": {"type": "string", "description": "default: rejected"},
    "reason": {"type": "string"}, "source": {"type": "string", "description": "e.g. kafka:orders/3@1234"},
    "record": {"description": "a description of the raw record"}, "idempotency_key": {"type": "string"}}}
schemas["MemberIn"] = {"type": "object", "required": ["node_id", "raft_addr"], "properties": {
    "node_id": u64, "raft_addr": {"type": "string", "description": "host:port of the node's peer port"},
    "api_addr": {"type": "string", "description": "default: what the node advertises"},
    "voter": {"type": "boolean", "description": "add only: promote once caught up"}}}
schemas["ClusterStatus"] = {"type": "object", "properties": {
    "cluster_id": {"type": "string"}, "answered_by": u64, "leader": {**u64, "nullable": True}, "term": u64,
    "committed_index": u64, "applied_index": {**u64, "nullable": True}, "joint_consensus": {"type": "boolean"},
    "members": {"type": "array", "items": {"type": "object", "properties": {
        "node_id": u64, "api_addr": {"type": "string"}, "raft_addr": {"type": "string"},
        "role": {"type": "string", "enum": ["voter", "learner"]}, "leader": {"type": "boolean"},
        "matched_index": {**u64, "nullable": True}, "lag": {**u64, "nullable": True}}}}}}

schemas["TokenIn"] = {"type": "object", "required": ["name", "role"], "properties": {
    "name": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "producer", "worker", "reader", "metrics"]},
    "queues": {"type": "array", "items": {"type": "string"}, "description": "queue-name patterns (* matches any run); empty: all"},
    "deny": {"type": "array", "items": {"type": "string"}, "description": "patterns refused even when allowed"},
    "agents": {"type": "array", "items": {"type": "string"}, "description": "agent-id patterns the token may act as (claims, registration, heartbeats, drains, progress and acknowledgements of their leases); empty: any agent"},
    "expires_in_ms": u64, "rate_per_sec": {"type": "integer", "description": "requests/s on each node (burst 2x); default: the node's"}}}

doc = {"openapi": "3.0.3",
       "info": {"title": "Minion API", "version": "1",
                "description": "Durable task queues for multi-agent systems. Every error has the body {\"error\": {\"code\", \"message\"}}. Any node of a cluster accepts every call: followers forward to the leader, and reads are linearizable unless sent with the header Minion-Consistency: stale. A 503 carries Retry-After. Unless the node runs in loopback development mode, every route but /healthz, /readyz and /v1/openapi.json needs Authorization: Bearer <token>: 401 without a valid token, 403 when the token's role or queue patterns do not allow the call, 429 with Retry-After over the token's rate."},
       "servers": [{"url": "http://127.0.0.1:7070"}],
       "paths": paths,
       "security": [{"bearer": []}],
       "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
out = pathlib.Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
