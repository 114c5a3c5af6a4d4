-- Retries, scheduled episodes, requeues and circuit breakers.

-- run_at is when a pending episode falls due (database clock): now for an
-- ordinary enqueue, later for a scheduled one or one waiting to retry.
-- Existing rows fall due when they were created, so their order holds.
ALTER TABLE revenant_episodes
    ADD COLUMN run_at timestamptz NOT NULL DEFAULT now(),
    -- A per-episode retry policy overriding its actor's (NULL: the
    -- actor's): {"disabled": true} or {"min_backoff_ms": …,
    -- "max_backoff_ms": …, "no_retry": ["class", …]}.
    ADD COLUMN retry_policy jsonb,
    -- Every requeue, oldest first: [{"at", "by", "reason", "from",
    -- "error_class", "attempts", "clean"}].
    ADD COLUMN requeue_history jsonb;
UPDATE revenant_episodes SET run_at = created_at WHERE status = 'pending';
-- A workflow step's episode never retries by itself: its step's failure
-- policy decides (steps enqueued from now on carry this too).
UPDATE revenant_episodes SET retry_policy = '{"disabled":true}'::jsonb WHERE workflow_instance_id IS NOT NULL;

-- Runners claim due work per actor in due order; future rows sit past now
-- in the index, so a claim reads only what is due.
DROP INDEX revenant_episodes_pending_idx;
CREATE INDEX revenant_episodes_pending_due_idx
    ON revenant_episodes (actor_id, run_at, id)
    WHERE status = 'pending';

-- The dead-letter list: failed episodes by actor and finish time.
CREATE INDEX revenant_episodes_failed_idx
    ON revenant_episodes (actor_id, finished_at, id)
    WHERE status = 'failed';

-- Why a node row was stopped: 'stopped' (it stopped itself) or the rule
-- by which a sweep found it dead (owner_lock_released, owner_ttl_expired), so that
-- operators can tell a clean stop from a death.
ALTER TABLE revenant_nodes ADD COLUMN stop_reason text;

-- One circuit breaker per actor and scope (the claiming node's stack and
-- env; '' for none). No row means closed. Claims of the actor stop while
-- its breaker is open or half-open; after reopen_at one probe is let
-- through: probe_episode and probe_token name the half-open trial, and no
-- other is let through while it runs. manual: an operator set the state,
-- and it holds until an operator changes it.
CREATE TABLE revenant_breakers (
    actor_id        text        NOT NULL CHECK (actor_id <> ''),
    stack           text        NOT NULL DEFAULT '',
    env             text        NOT NULL DEFAULT '',
    state           text        NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures        integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    window_start    timestamptz,
    window_failures integer     NOT NULL DEFAULT 0 CHECK (window_failures >= 0),
    cool_down_ms    bigint      NOT NULL DEFAULT 30000 CHECK (cool_down_ms > 0),
    reopen_at       timestamptz,
    probe_episode   uuid,
    probe_token     bigint,
    manual          boolean     NOT NULL DEFAULT false,
    reason          text,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, stack, env)
);
