-- Dedupe keys are unique per actor, stack and env (see the Postgres twin).
DROP INDEX revenant_episodes_dedupe_key_uidx;
CREATE UNIQUE INDEX revenant_episodes_dedupe_scope_uidx
    ON revenant_episodes (actor_id, coalesce(source_stack, ''), coalesce(source_env, ''), dedupe_key)
    WHERE dedupe_key IS NOT NULL AND archived_at IS NULL;

-- Open episodes whose counters cannot be bumped again (see the Postgres
-- twin). SQLite would turn claim_token + 1 into a REAL rather than fail.
CREATE INDEX revenant_episodes_exhausted_idx
    ON revenant_episodes (id)
    WHERE claim_token = 9223372036854775807 OR attempts = 2147483647;
