-- The event outbox and workflow tables, as on Postgres. On SQLite nodes
-- find new events by polling the outbox by sequence (there is no NOTIFY).
CREATE TABLE revenant_events (
    seq                  integer     PRIMARY KEY AUTOINCREMENT,
    id                   text        NOT NULL UNIQUE,
    type                 text        NOT NULL CHECK (type <> ''),
    episode_id           text,
    actor_id             text,
    workflow_instance_id text,
    workflow_step_id     text,
    status               text,
    error_class          text,
    payload              text,
    created_at           timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX revenant_events_created_idx ON revenant_events (created_at);

CREATE TABLE revenant_workflow_instances (
    id           text        PRIMARY KEY,
    workflow_id  text        NOT NULL CHECK (workflow_id <> ''),
    status       text        NOT NULL DEFAULT 'running',
    subject      text,
    trigger      text,
    error        text,
    compensating boolean     NOT NULL DEFAULT 0,
    version      integer     NOT NULL DEFAULT 0,
    source_stack text,
    source_env   text,
    created_at   timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at   timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at  timestamp
);
CREATE UNIQUE INDEX revenant_workflow_instances_subject_uidx
    ON revenant_workflow_instances (workflow_id, subject)
    WHERE subject IS NOT NULL AND status IN ('running', 'blocked');
CREATE INDEX revenant_workflow_instances_open_idx
    ON revenant_workflow_instances (status, id)
    WHERE status IN ('running', 'blocked');

CREATE TABLE revenant_workflow_steps (
    instance_id text        NOT NULL REFERENCES revenant_workflow_instances (id) ON DELETE CASCADE,
    step_id     text        NOT NULL,
    kind        text        NOT NULL DEFAULT 'step',
    position    integer     NOT NULL DEFAULT 0,
    status      text        NOT NULL DEFAULT 'pending',
    attempts    integer     NOT NULL DEFAULT 0,
    episode_id  text,
    result      text,
    error_class text,
    error       text,
    due_at      timestamp,
    updated_at  timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (instance_id, step_id)
);
CREATE INDEX revenant_workflow_steps_due_idx ON revenant_workflow_steps (due_at) WHERE status = 'retrying';
CREATE INDEX revenant_workflow_steps_episode_idx ON revenant_workflow_steps (episode_id) WHERE episode_id IS NOT NULL;
