-- Nodes: a human name and the actors a node runs (a JSON array of text on
-- SQLite, text[] on Postgres).
ALTER TABLE revenant_nodes ADD COLUMN name text;
ALTER TABLE revenant_nodes ADD COLUMN actors text NOT NULL DEFAULT '[]';
