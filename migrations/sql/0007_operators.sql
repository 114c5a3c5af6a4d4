-- What operators look at: each node's last sweep, and the shape of each
-- registered workflow (its DAG), so that tools without the workflow's code
-- (the CLI, the dashboard) can draw an instance.

-- The node's Sweeper records each pass on its own row: when it ended (the
-- database clock) and what it did, as
-- {"took_ms", "restarted", "failed", "dead_lettered", "skipped", "error"}.
ALTER TABLE revenant_nodes
    ADD COLUMN last_sweep_at timestamptz,
    ADD COLUMN last_sweep jsonb;

-- One row per workflow and scope, written by each node that registers the
-- workflow when it starts: {"steps": [{"id", "actor", "depends_on",
-- "compensate", "on_failure"}]}. Stack and env are '' for none.
CREATE TABLE revenant_workflow_definitions (
    workflow_id text        NOT NULL CHECK (workflow_id <> ''),
    stack       text        NOT NULL DEFAULT '',
    env         text        NOT NULL DEFAULT '',
    shape       jsonb       NOT NULL,
    node_id     text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, stack, env)
);

-- Operators list instances newest first, by workflow and status.
CREATE INDEX revenant_workflow_instances_created_idx ON revenant_workflow_instances (created_at DESC, id);
