-- On Postgres this version replaces the index on running episodes' owner
-- with one on (owner, actor, expectation), which sweeps walk to list the
-- pairs that have orphans. SQLite's index on running episodes (0001)
-- already leads with those columns: nothing changes here. The version
-- exists so that both backends' schemas are numbered alike.
SELECT 1;
