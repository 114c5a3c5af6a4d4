-- What operators look at: each node's last sweep, and the shape of each
-- registered workflow (its DAG), so that tools without the workflow's code
-- (the CLI, the dashboard) can draw an instance. See the Postgres file.

ALTER TABLE revenant_nodes ADD COLUMN last_sweep_at timestamp;
ALTER TABLE revenant_nodes ADD COLUMN last_sweep TEXT;

CREATE TABLE revenant_workflow_definitions (
    workflow_id TEXT NOT NULL CHECK (workflow_id <> ''),
    stack       TEXT NOT NULL DEFAULT '',
    env         TEXT NOT NULL DEFAULT '',
    shape       TEXT NOT NULL,
    node_id     TEXT,
    updated_at  timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (workflow_id, stack, env)
);

CREATE INDEX revenant_workflow_instances_created_idx ON revenant_workflow_instances (created_at DESC, id);
