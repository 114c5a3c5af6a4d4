-- Nodes: a human name (the id itself is unique per process start) and the
-- actors a node runs, so that a sweep can warn about pending work that no
-- live node is able to claim.
ALTER TABLE revenant_nodes ADD COLUMN name text;
ALTER TABLE revenant_nodes ADD COLUMN actors text[] NOT NULL DEFAULT '{}';
