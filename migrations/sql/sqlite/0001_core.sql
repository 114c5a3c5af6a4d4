-- revenant core schema on SQLite: episodes, the step journal, agent
-- definitions, nodes. The same tables and columns as on Postgres, with
-- SQLite types: ids and JSON are text, timestamps are UTC text
-- 'YYYY-MM-DD HH:MM:SS.SSS' from the database clock (declared timestamp so
-- that drivers read them back as times).

CREATE TABLE revenant_episodes (
    id                   text        PRIMARY KEY,
    actor_id             text        NOT NULL CHECK (actor_id <> ''),
    expectation          text,
    status               text        NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'running', 'blocked', 'done', 'failed', 'canceled')),
    phase                text,
    input                text        CHECK (input IS NULL OR json_valid(input)),
    result               text        CHECK (result IS NULL OR json_valid(result)),
    error_class          text,
    error_detail         text        CHECK (error_detail IS NULL OR json_valid(error_detail)),
    attempts             integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts         integer     NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    owner_node           text,
    claim_token          integer     NOT NULL DEFAULT 0,
    cancel_requested_at  timestamp,
    created_at           timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    started_at           timestamp,
    last_activity_at     timestamp,
    finished_at          timestamp,
    archived_at          timestamp,
    dedupe_key           text,
    source_stack         text,
    source_env           text,
    workflow_instance_id text,
    workflow_step_id     text,
    metadata             text        NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    CONSTRAINT revenant_episodes_finished_iff_terminal
        CHECK ((status IN ('done', 'failed', 'canceled')) = (finished_at IS NOT NULL))
);

CREATE UNIQUE INDEX revenant_episodes_dedupe_key_uidx
    ON revenant_episodes (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND archived_at IS NULL;

CREATE INDEX revenant_episodes_pending_idx
    ON revenant_episodes (actor_id, created_at, id)
    WHERE status = 'pending';

-- Running episodes by owner. Wider than on Postgres: it covers what a
-- sweep groups orphans by (owner, actor, expectation, scope), so finding
-- them reads only this index; SQLite has one writer, and a scan of the
-- table would hold up the sweep's batches. Step writes (last_activity_at)
-- never touch it.
CREATE INDEX revenant_episodes_running_owner_idx
    ON revenant_episodes (owner_node, actor_id, expectation, source_stack, source_env)
    WHERE status = 'running';

CREATE INDEX revenant_episodes_status_id_idx ON revenant_episodes (status, id);
CREATE INDEX revenant_episodes_actor_id_idx ON revenant_episodes (actor_id, id);
CREATE INDEX revenant_episodes_workflow_idx
    ON revenant_episodes (workflow_instance_id, workflow_step_id)
    WHERE workflow_instance_id IS NOT NULL;

-- The step journal. As on Postgres, no foreign key: rows are only written
-- by revenant's fenced INSERT … SELECT, which inserts nothing unless the
-- episode row is running under the writer's claim token.
CREATE TABLE revenant_steps (
    episode_id  text        NOT NULL,
    seq         integer     NOT NULL CHECK (seq >= 0),
    name        text        NOT NULL CHECK (name <> ''),
    status      text        NOT NULL CHECK (status IN ('done', 'failed')),
    output      text,
    error       text,
    claim_token integer     NOT NULL,
    started_at  timestamp   NOT NULL,
    finished_at timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (episode_id, seq)
) WITHOUT ROWID;

-- Recording a step bumps its episode's activity time in the same
-- statement (what revenant_record_step does on Postgres).
CREATE TRIGGER revenant_steps_touch_episode AFTER INSERT ON revenant_steps
BEGIN
    UPDATE revenant_episodes SET last_activity_at = NEW.finished_at WHERE id = NEW.episode_id;
END;

CREATE TABLE revenant_agent_definitions (
    actor_id             text        PRIMARY KEY CHECK (actor_id <> ''),
    recovery_policy      text,
    expectation_policies text        NOT NULL DEFAULT '{}',
    enabled              boolean     NOT NULL DEFAULT 1,
    created_at           timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at           timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- Processes running revenant. lock_key stays NULL on SQLite: there are no
-- advisory locks, so a dead node is found when expires_at passes.
CREATE TABLE revenant_nodes (
    node_id      text        PRIMARY KEY CHECK (node_id <> ''),
    stack        text,
    env          text,
    lock_key     integer,
    started_at   timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    heartbeat_at timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    expires_at   timestamp   NOT NULL,
    stopped_at   timestamp
);
