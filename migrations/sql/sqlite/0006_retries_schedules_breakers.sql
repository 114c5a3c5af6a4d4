-- Retries, scheduled episodes, requeues and circuit breakers (as on
-- Postgres; see that file for the meaning of each column).

-- SQLite cannot add a column with a non-constant default, so run_at is
-- filled by every insert, and a trigger fills it for a writer that does
-- not (a binary of an older version).
ALTER TABLE revenant_episodes ADD COLUMN run_at timestamp;
ALTER TABLE revenant_episodes ADD COLUMN retry_policy text CHECK (retry_policy IS NULL OR json_valid(retry_policy));
ALTER TABLE revenant_episodes ADD COLUMN requeue_history text CHECK (requeue_history IS NULL OR json_valid(requeue_history));
UPDATE revenant_episodes SET run_at = created_at;
UPDATE revenant_episodes SET retry_policy = '{"disabled":true}' WHERE workflow_instance_id IS NOT NULL;
CREATE TRIGGER revenant_episodes_run_at_default AFTER INSERT ON revenant_episodes
    WHEN NEW.run_at IS NULL
BEGIN
    UPDATE revenant_episodes SET run_at = NEW.created_at WHERE id = NEW.id;
END;

DROP INDEX revenant_episodes_pending_idx;
CREATE INDEX revenant_episodes_pending_due_idx
    ON revenant_episodes (actor_id, run_at, id)
    WHERE status = 'pending';

CREATE INDEX revenant_episodes_failed_idx
    ON revenant_episodes (actor_id, finished_at, id)
    WHERE status = 'failed';

ALTER TABLE revenant_nodes ADD COLUMN stop_reason text;

CREATE TABLE revenant_breakers (
    actor_id        text      NOT NULL CHECK (actor_id <> ''),
    stack           text      NOT NULL DEFAULT '',
    env             text      NOT NULL DEFAULT '',
    state           text      NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures        integer   NOT NULL DEFAULT 0 CHECK (failures >= 0),
    window_start    timestamp,
    window_failures integer   NOT NULL DEFAULT 0 CHECK (window_failures >= 0),
    cool_down_ms    integer   NOT NULL DEFAULT 30000 CHECK (cool_down_ms > 0),
    reopen_at       timestamp,
    probe_episode   text,
    probe_token     integer,
    manual          integer   NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    reason          text,
    changed_at      timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (actor_id, stack, env)
) WITHOUT ROWID;
