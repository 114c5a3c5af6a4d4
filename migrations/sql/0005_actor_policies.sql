-- One word, "actor": the definitions table is renamed.
ALTER TABLE revenant_agent_definitions RENAME TO revenant_actor_definitions;

-- Each node publishes the recovery policies of the actors it runs, so that
-- any sweep (a node that does not run the actor, or an operator's dry run)
-- recovers the node's orphans by the policy their owner stated:
-- {"actor": {"recovery": "restart", "expectations": {"name": "fail"}}}.
ALTER TABLE revenant_nodes ADD COLUMN actor_policies jsonb NOT NULL DEFAULT '{}'::jsonb;
