-- revenant core schema: episodes, the step journal, agent definitions, nodes.
-- Tables are created unqualified, so they land in the first schema of the
-- connection's search_path.

CREATE TABLE revenant_episodes (
    id                   uuid        PRIMARY KEY,
    actor_id             text        NOT NULL CHECK (actor_id <> ''),
    expectation          text,
    status               text        NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'running', 'blocked', 'done', 'failed', 'canceled')),
    phase                text,
    input                jsonb,
    result               jsonb,
    error_class          text,
    error_detail         jsonb,
    attempts             integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts         integer     NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    owner_node           text,
    claim_token          bigint      NOT NULL DEFAULT 0,
    cancel_requested_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    last_activity_at     timestamptz,
    finished_at          timestamptz,
    archived_at          timestamptz,
    dedupe_key           text,
    source_stack         text,
    source_env           text,
    workflow_instance_id uuid,
    workflow_step_id     text,
    metadata             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- A terminal episode always has a finish time and only a terminal one does.
    CONSTRAINT revenant_episodes_finished_iff_terminal
        CHECK ((status IN ('done', 'failed', 'canceled')) = (finished_at IS NOT NULL))
) WITH (fillfactor = 85); -- room for HOT updates of last_activity_at on every step

-- One live (non-archived) episode per dedupe key.
CREATE UNIQUE INDEX revenant_episodes_dedupe_key_uidx
    ON revenant_episodes (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND archived_at IS NULL;

-- Runners claim pending work per actor, oldest first.
CREATE INDEX revenant_episodes_pending_idx
    ON revenant_episodes (actor_id, created_at, id)
    WHERE status = 'pending';

-- Orphan search touches only running rows (grouped by owner), never the
-- millions of finished ones. last_activity_at is deliberately not indexed so
-- that recording a step stays a HOT update.
CREATE INDEX revenant_episodes_running_owner_idx
    ON revenant_episodes (owner_node)
    WHERE status = 'running';

-- Listing with keyset paging (ids are UUIDv7, so id order is creation order).
CREATE INDEX revenant_episodes_status_id_idx ON revenant_episodes (status, id);
CREATE INDEX revenant_episodes_actor_id_idx ON revenant_episodes (actor_id, id);
CREATE INDEX revenant_episodes_workflow_idx
    ON revenant_episodes (workflow_instance_id, workflow_step_id)
    WHERE workflow_instance_id IS NOT NULL;

-- The step journal: one row per completed step of an episode run.
-- episode_id has no foreign key on purpose: rows are only ever written by
-- revenant_record_step, which inserts nothing unless the episode row exists
-- and is locked by the same statement, and the FK check would cost every
-- step a second lookup. Delete an episode's steps together with it.
CREATE TABLE revenant_steps (
    episode_id  uuid        NOT NULL,
    seq         integer     NOT NULL CHECK (seq >= 0),
    name        text        NOT NULL CHECK (name <> ''),
    status      text        NOT NULL CHECK (status IN ('done', 'failed')),
    output      jsonb,
    error       jsonb,
    claim_token bigint      NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (episode_id, seq)
);

-- Actors defined in the database, with their recovery policies. Policy
-- values are deliberately not constrained here: recovery validates them and
-- reports malformed ones instead of failing episodes silently.
CREATE TABLE revenant_agent_definitions (
    actor_id             text        PRIMARY KEY CHECK (actor_id <> ''),
    recovery_policy      text,
    expectation_policies jsonb       NOT NULL DEFAULT '{}'::jsonb,
    enabled              boolean     NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Processes running revenant. heartbeat_at/expires_at come from the DB clock;
-- lock_key is the session advisory lock a live node holds.
CREATE TABLE revenant_nodes (
    node_id      text        PRIMARY KEY CHECK (node_id <> ''),
    stack        text,
    env          text,
    lock_key     bigint,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    stopped_at   timestamptz
);

-- Records one journal entry, fenced by the claim token, and bumps the
-- episode's activity time, in one call. Returns 1 when recorded, 0 when the
-- fence refused (stale token or episode not running; nothing written) and
-- -1 when the sequence number is already taken. PL/pgSQL caches the plans of
-- these statements per session, so the hot path is not re-planned per step
-- whatever the driver.
CREATE FUNCTION revenant_record_step(
    p_episode uuid, p_token bigint, p_seq integer, p_name text, p_status text,
    p_output jsonb, p_error jsonb, p_took_us bigint
) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revenant_episodes SET last_activity_at = now()
    WHERE id = p_episode AND claim_token = p_token AND status = 'running';
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    INSERT INTO revenant_steps (episode_id, seq, name, status, output, error, claim_token, started_at)
    VALUES (p_episode, p_seq, p_name, p_status, p_output, p_error, p_token,
            now() - p_took_us * interval '1 microsecond')
    ON CONFLICT (episode_id, seq) DO NOTHING;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    RETURN 1;
END
$$;
