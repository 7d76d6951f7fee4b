-- workflow_db schema 7 for PostgreSQL: the change feed's node-state trigger
-- finds each changed node's project by one primary-key lookup per row.
-- Schema 6 joined the statement's changed rows to workflow_runs. A backend
-- plans a PL/pgSQL statement once and keeps the plan until the tables' next
-- ANALYZE; planned while workflow_runs was new and unanalysed (a fresh
-- deployment's first writes), the join was a hash join over a sequential scan
-- of every run, paid by each create_run on that pooled connection (17% of a
-- unit of work at 3,000 runs, growing with the table). A scalar subquery on
-- the primary key never hashes the table: an index lookup per changed node
-- (a table too small to be worth its index is scanned until the next ANALYZE
-- replans it, as PostgreSQL's own foreign-key checks are).

CREATE OR REPLACE FUNCTION workflow_changes_note_node_states() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    noted bigint;
BEGIN
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    SELECT changed.run_id, changed.node_id,
           (SELECT r.project_id FROM workflow_runs AS r WHERE r.id = changed.run_id), NULL
    FROM changed_node_states AS changed
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL;
    GET DIAGNOSTICS noted = ROW_COUNT;
    IF noted > 0 THEN
        PERFORM pg_notify('workflow_changes', '');
    END IF;
    RETURN NULL;
END
$$;
