-- Dedupe keys are unique per actor, stack and env. They were unique across
-- the whole table, so a key reused by another actor or scope handed back
-- that scope's episode, input and result included.
DROP INDEX revenant_episodes_dedupe_key_uidx;
CREATE UNIQUE INDEX revenant_episodes_dedupe_scope_uidx
    ON revenant_episodes (actor_id, coalesce(source_stack, ''), coalesce(source_env, ''), dedupe_key)
    WHERE dedupe_key IS NOT NULL AND archived_at IS NULL;

-- Open episodes whose counters cannot be bumped again (only hand edits put
-- them there): claims and sweeps leave them alone, and the Sweeper reports
-- them by id. Normally empty, so it costs nothing to keep.
CREATE INDEX revenant_episodes_exhausted_idx
    ON revenant_episodes (id)
    WHERE claim_token = 9223372036854775807 OR attempts = 2147483647;
