-- A step's fence takes a row lock instead of writing a new version of the
-- episode's row on every step, and the episode's last_activity_at is
-- bumped at most once a second by its steps. The lock (FOR NO KEY UPDATE,
-- as the UPDATE took) still holds the episode until the step's
-- transaction ends, so a sweep or a new claim waits for it and then finds
-- the token moved on, exactly as before; what changes is the write: a
-- lock record instead of a row version, one per step. last_activity_at
-- only serves the no-activity rule (minutes) and what operators read.
CREATE OR REPLACE FUNCTION revenant_record_step(
    p_episode uuid, p_token bigint, p_seq integer, p_name text, p_status text,
    p_output jsonb, p_error jsonb, p_took_us bigint
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_last timestamptz;
BEGIN
    SELECT last_activity_at INTO v_last FROM revenant_episodes
    WHERE id = p_episode AND claim_token = p_token AND status = 'running'
    FOR NO KEY UPDATE;
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
    IF v_last IS NULL OR v_last < now() - interval '1 second' THEN
        UPDATE revenant_episodes SET last_activity_at = now() WHERE id = p_episode;
    END IF;
    RETURN 1;
END
$$;
