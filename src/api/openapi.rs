//! The OpenAPI document, generated from the wire types ([`minion_client::wire`]) and the
//! handlers' annotations. `minion openapi` prints it; `docs/openapi.json` is that output, checked
//! in and served at `/v1/openapi.json`, and `tests/api_contract.rs` fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Minion API",
        version = "1",
        description = "Durable task queues for multi-agent systems. Every error has the body {\"error\": {\"code\", \"message\"}}. Any node of a cluster accepts every call: followers forward to the leader, and reads are linearizable unless sent with the header Minion-Consistency: stale. A 503 carries Retry-After. Unless the node runs in loopback development mode, every route but /healthz, /readyz and /v1/openapi.json needs Authorization: Bearer <token>: 401 without a valid token, 403 when the token's role or queue patterns do not allow the call, 429 with Retry-After over the token's rate."
    ),
    paths(
        super::tasks::submit,
        super::tasks::list_tasks,
        super::tasks::get_task,
        super::tasks::cancel,
        super::tasks::retry,
        super::leases::progress,
        super::leases::complete,
        super::leases::fail,
        super::leases::extend,
        super::children::spawn_children,
        super::children::wait_children,
        super::leases::acknowledge,
        super::leases::claim,
        super::agents::register_agent,
        super::agents::list_agents,
        super::agents::get_agent,
        super::agents::deregister_agent,
        super::agents::heartbeat,
        super::agents::drain_agent,
        super::queues::list_queues,
        super::queues::get_queue,
        super::queues::put_queue,
        super::queues::get_limits,
        super::queues::put_limits,
        super::schedules::list_schedules,
        super::schedules::get_schedule,
        super::schedules::put_schedule,
        super::schedules::delete_schedule,
        super::health::stats,
        super::queues::autoscaler,
        super::queues::autoscaler_decisions,
        super::queues::queue_metric,
        super::feed::changes,
        super::feed::list_dedup,
        super::adapters::reject,
        super::adapters::list_adapters,
        super::adapters::report_adapter,
        super::health::openapi,
        super::health::healthz,
        super::health::readyz,
        super::health::prometheus,
        super::settings::get_config,
        super::settings::put_config,
        super::events::task_events,
        super::events::node_events,
        super::cluster::status,
        super::cluster::node_info,
        super::cluster::add_member,
        super::cluster::remove,
        super::cluster::promote,
        super::cluster::replace,
        super::admin::create_token,
        super::admin::list_tokens,
        super::admin::revoke_token,
        super::admin::audit,
        super::admin::whoami,
        super::backup::backup,
        super::backup::restore
    ),
    components(schemas(minion_client::wire::BatchOut, minion_client::wire::TaskState)),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "tasks", description = "Producers: submit, read, wait for, cancel and retry tasks"),
        (name = "agents", description = "Agents: register, claim under leases, report progress, complete or fail"),
        (name = "events", description = "Server-Sent Events of tasks, queues and the node"),
        (name = "queues", description = "Queue settings and counts"),
        (name = "schedules", description = "Tasks created on a cron expression or a fixed interval"),
        (name = "feed", description = "The change feed and idempotency keys, for exporters"),
        (name = "ingest", description = "Ingest and export adapters"),
        (name = "autoscaler", description = "Autoscaled worker pools"),
        (name = "cluster", description = "Raft membership and status"),
        (name = "admin", description = "Tokens, the audit trail, backups"),
        (name = "operations", description = "Health, metrics, settings, statistics")
    )
)]
pub struct ApiDoc;

/// Bearer tokens (`Authorization: Bearer <token>`).
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as checked in (pretty JSON and a final newline).
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
