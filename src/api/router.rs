//! The routes of the v1 API and the layers every request passes.

use super::schedules::{delete_schedule, get_schedule, put_schedule};
use super::AppState;
use super::{adapters, agents, feed, health, leases, queues, tasks};
use super::{admin, backup, children, cluster, events, schedules, settings};
use axum::extract::DefaultBodyLimit;
use axum::middleware::{self};
use axum::routing::{delete, get, post, put};
use axum::Router;

pub fn router(state: AppState) -> Router {
    let body_max = state.node.config.body_bytes_max;
    let restore_max = state.node.config.restore_bytes_max;
    Router::new()
        .route("/v1/tasks", post(tasks::submit).get(tasks::list_tasks))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/tasks/{id}/events", get(events::task_events))
        .route("/v1/events", get(events::node_events))
        .route("/v1/rejections", post(adapters::reject))
        .route("/v1/adapters", get(adapters::list_adapters))
        .route("/v1/adapters/{name}", put(adapters::report_adapter))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/tasks/{id}/retry", post(tasks::retry))
        .route("/v1/tasks/{id}/progress", post(leases::progress))
        .route("/v1/tasks/{id}/complete", post(leases::complete))
        .route("/v1/acks", post(leases::acknowledge))
        .route("/v1/tasks/{id}/fail", post(leases::fail))
        .route("/v1/tasks/{id}/extend", post(leases::extend))
        .route("/v1/tasks/{id}/children", post(children::spawn_children))
        .route("/v1/tasks/{id}/wait-children", post(children::wait_children))
        .route("/v1/claims", post(leases::claim))
        .route("/v1/agents", post(agents::register_agent).get(agents::list_agents))
        .route("/v1/agents/{id}", get(agents::get_agent).delete(agents::deregister_agent))
        .route("/v1/agents/{id}/heartbeat", post(agents::heartbeat))
        .route("/v1/agents/{id}/drain", post(agents::drain_agent))
        .route("/v1/queues", get(queues::list_queues))
        .route("/v1/queues/{name}", get(queues::get_queue).put(queues::put_queue))
        .route("/v1/queues/{name}/limits", get(queues::get_limits).put(queues::put_limits))
        .route("/v1/schedules", get(schedules::list_schedules))
        .route("/v1/schedules/{name}", get(get_schedule).put(put_schedule).delete(delete_schedule))
        .route("/v1/stats", get(health::stats))
        .route("/v1/config", get(settings::get_config).put(settings::put_config))
        .route("/v1/autoscaler", get(queues::autoscaler))
        .route("/v1/autoscaler/decisions", get(queues::autoscaler_decisions))
        .route("/v1/metrics/queues/{name}", get(queues::queue_metric))
        .route("/v1/changes", get(feed::changes))
        .route("/v1/dedup", get(feed::list_dedup))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/node", get(cluster::node_info))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route("/v1/cluster/members/{id}", delete(cluster::remove))
        .route("/v1/cluster/members/{id}/promote", post(cluster::promote))
        .route("/v1/cluster/members/{id}/replace", post(cluster::replace))
        .route("/v1/tokens", post(admin::create_token).get(admin::list_tokens))
        .route("/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/v1/audit", get(admin::audit))
        .route("/v1/whoami", get(admin::whoami))
        .route("/v1/admin/backup", get(backup::backup))
        .route("/v1/admin/restore", post(backup::restore).layer(DefaultBodyLimit::max(restore_max)))
        .route("/v1/openapi.json", get(health::openapi))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::prometheus))
        .merge(super::console::routes())
        .fallback(super::middleware::fallback)
        .layer(middleware::from_fn_with_state(state.clone(), super::disk::refuse_writes_when_low))
        .layer(middleware::from_fn_with_state(state.clone(), cluster::route_to_leader))
        .layer(middleware::from_fn_with_state(state.clone(), crate::api::auth::authenticate))
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(middleware::from_fn(crate::tracing_setup::http_span))
        .layer(middleware::from_fn(super::middleware::error_shape))
        .layer(DefaultBodyLimit::max(body_max))
        .layer(middleware::from_fn_with_state((body_max, restore_max), super::middleware::content_length_limit))
        .with_state(state)
}
