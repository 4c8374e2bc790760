-- Minion ledger mirror, version 1: tasks, their progress history, agents, idempotency keys, and the
-- exporter's position. Columns ending in _at are timestamps converted from the engine's epoch ms.

CREATE TABLE tasks (
    id                bigint PRIMARY KEY,
    queue             text        NOT NULL,
    kind              text        NOT NULL,
    state             text        NOT NULL,
    payload           jsonb,
    result            jsonb,
    capabilities      text[]      NOT NULL DEFAULT '{}',
    priority          integer     NOT NULL,
    idempotency_key   text,
    max_attempts      integer     NOT NULL,
    attempt_limit     integer     NOT NULL,
    attempt_count     integer     NOT NULL,
    lease_ms          bigint      NOT NULL,
    lease_token       bigint,
    lease_agent       text,
    lease_expires_at  timestamptz,
    last_agent        text,
    last_error        text,
    cancel_reason     text,
    attempts          jsonb       NOT NULL,
    created_at        timestamptz NOT NULL,
    engine_updated_at timestamptz NOT NULL,
    run_at            timestamptz NOT NULL,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_queue_state ON tasks (queue, state);
CREATE INDEX tasks_last_agent ON tasks (last_agent);
CREATE INDEX tasks_created_at ON tasks (created_at);
CREATE INDEX tasks_kind_finished ON tasks (kind, finished_at);
CREATE INDEX tasks_idempotency_key ON tasks (queue, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE task_progress (
    task_id  bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq      bigint      NOT NULL,
    at       timestamptz NOT NULL,
    attempt  integer     NOT NULL,
    percent  smallint,
    message  text,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE agent_state (
    id                text PRIMARY KEY,
    name              text        NOT NULL,
    status            text        NOT NULL,
    incarnation       bigint      NOT NULL,
    capabilities      text[]      NOT NULL,
    max_concurrency   integer     NOT NULL,
    labels            jsonb       NOT NULL,
    in_flight         integer     NOT NULL,
    completed         bigint      NOT NULL,
    failed            bigint      NOT NULL,
    latency_ewma_ms   bigint      NOT NULL,
    stats             jsonb       NOT NULL,
    registered_at     timestamptz NOT NULL,
    engine_updated_at timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE message_dedup (
    queue      text        NOT NULL,
    key        text        NOT NULL,
    task_id    bigint      NOT NULL,
    expires_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, key)
);

CREATE TABLE export_position (
    name       text PRIMARY KEY,
    log_index  bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION minion_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION minion_touch_updated_at();
CREATE TRIGGER agent_state_touch BEFORE UPDATE ON agent_state FOR EACH ROW EXECUTE FUNCTION minion_touch_updated_at();
CREATE TRIGGER message_dedup_touch BEFORE UPDATE ON message_dedup FOR EACH ROW EXECUTE FUNCTION minion_touch_updated_at();
CREATE TRIGGER export_position_touch BEFORE UPDATE ON export_position FOR EACH ROW EXECUTE FUNCTION minion_touch_updated_at();
