-- A step's fence finds its episode by id and token, and checks the status
-- on the row it locked. With the status in the WHERE clause, the generic
-- plan PL/pgSQL keeps for the session could, when made while the table was
-- small and had no statistics, walk the partial index of running episodes
-- and filter by id: every step then read that index whole, dead entries
-- included, until the next ANALYZE. Without the status, the primary key
-- is the only index that fits. (A table analyzed while tiny still gets a
-- sequential scan until it is analyzed again, as any query would.)
--
-- The lock is still taken only when the token matches: a zombie's step
-- (its token moved on) locks nothing and records nothing, and one whose
-- row changed under it rechecks the token on the newer version after
-- waiting, as before. A row with the same token that is no longer running
-- (its run finished it; every move back to running takes a new token) is
-- now locked too, until the step's transaction rolls back: briefly, as
-- the journal rolls back at once when fenced off.
CREATE OR REPLACE FUNCTION revenant_record_step(
    p_episode uuid, p_token bigint, p_seq integer, p_name text, p_status text,
    p_output jsonb, p_error jsonb, p_took_us bigint
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_last timestamptz;
BEGIN
    SELECT status, last_activity_at INTO v_status, v_last FROM revenant_episodes
    WHERE id = p_episode AND claim_token = p_token
    FOR NO KEY UPDATE;
    IF NOT FOUND OR v_status <> 'running' THEN
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
