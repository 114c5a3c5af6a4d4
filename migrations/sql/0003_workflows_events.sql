-- The event outbox: lifecycle events are inserted in the same transaction as
-- the state change that causes them, then announced with NOTIFY (payload:
-- the sequence number only, so large events never hit NOTIFY's 8000-byte
-- limit). Nodes read it by sequence; rows are pruned after a retention time.
CREATE TABLE revenant_events (
    seq                  bigserial   PRIMARY KEY,
    id                   uuid        NOT NULL UNIQUE,
    type                 text        NOT NULL CHECK (type <> ''),
    episode_id           uuid,
    actor_id             text,
    workflow_instance_id uuid,
    workflow_step_id     text,
    status               text,
    error_class          text,
    payload              jsonb,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revenant_events_created_idx ON revenant_events (created_at);

CREATE TABLE revenant_workflow_instances (
    id           uuid        PRIMARY KEY,
    workflow_id  text        NOT NULL CHECK (workflow_id <> ''),
    status       text        NOT NULL DEFAULT 'running',
    subject      text,
    trigger      jsonb,
    error        jsonb,
    compensating boolean     NOT NULL DEFAULT false,
    version      bigint      NOT NULL DEFAULT 0,
    source_stack text,
    source_env   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
-- One in-flight instance per (workflow, subject), across every node.
CREATE UNIQUE INDEX revenant_workflow_instances_subject_uidx
    ON revenant_workflow_instances (workflow_id, subject)
    WHERE subject IS NOT NULL AND status IN ('running', 'blocked');
CREATE INDEX revenant_workflow_instances_open_idx
    ON revenant_workflow_instances (status, id)
    WHERE status IN ('running', 'blocked');

-- One row per step (and per compensation) of an instance. Status values are
-- validated by the engine, which reports unknown ones instead of guessing.
CREATE TABLE revenant_workflow_steps (
    instance_id uuid        NOT NULL REFERENCES revenant_workflow_instances (id) ON DELETE CASCADE,
    step_id     text        NOT NULL,
    kind        text        NOT NULL DEFAULT 'step',
    position    integer     NOT NULL DEFAULT 0,
    status      text        NOT NULL DEFAULT 'pending',
    attempts    integer     NOT NULL DEFAULT 0,
    episode_id  uuid,
    result      jsonb,
    error_class text,
    error       jsonb,
    due_at      timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, step_id)
);
CREATE INDEX revenant_workflow_steps_due_idx ON revenant_workflow_steps (due_at) WHERE status = 'retrying';
CREATE INDEX revenant_workflow_steps_episode_idx ON revenant_workflow_steps (episode_id) WHERE episode_id IS NOT NULL;
