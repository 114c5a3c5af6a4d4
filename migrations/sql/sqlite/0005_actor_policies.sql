-- One word, "actor": the definitions table is renamed.
ALTER TABLE revenant_agent_definitions RENAME TO revenant_actor_definitions;

-- Each node publishes the recovery policies of the actors it runs (a JSON
-- object, as on Postgres), so that any sweep recovers the node's orphans
-- by the policy their owner stated.
ALTER TABLE revenant_nodes ADD COLUMN actor_policies text NOT NULL DEFAULT '{}';
