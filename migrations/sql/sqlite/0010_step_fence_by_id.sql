-- On Postgres this version changes how a step's fence finds its episode
-- (a plan detail of a PL/pgSQL function). SQLite's journal write is a
-- plain statement: nothing changes here. The version exists so that both
-- backends' schemas are numbered alike.
SELECT 1;
