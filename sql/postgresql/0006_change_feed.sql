-- workflow_db schema 6 for PostgreSQL: the change feed (list_changes, watch).
-- One row per run ('' as node_id) and per node state that ever changed: its
-- latest change, not a log, so the table is as large as the data and goes
-- with its run (ON DELETE CASCADE). A write marks its rows pending (seq NULL);
-- the feed's reader numbers the pending rows it can see, that is rows of
-- committed transactions, under one advisory lock (queries.SEQUENCE_CHANGES):
-- numbers grow in the order changes became visible, so a reader resuming
-- after the last seq it saw never misses one, whatever order transactions
-- started in. Every writing statement also sends NOTIFY workflow_changes
-- (an empty payload, so a transaction sends it once) to wake watchers.

CREATE SEQUENCE workflow_change_seq;

CREATE TABLE workflow_changes (
    run_id text NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id text NOT NULL,
    project_id text NOT NULL,
    seq bigint,
    PRIMARY KEY (run_id, node_id)
);

-- What is stored now is the first feed: runs, then node states, oldest first.
INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
SELECT id, '', project_id, nextval('workflow_change_seq')
FROM (SELECT id, project_id FROM workflow_runs ORDER BY updated_at, id) AS run;
INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
SELECT run_id, node_id, project_id, nextval('workflow_change_seq')
FROM (
    SELECT ns.run_id, ns.node_id, r.project_id
    FROM workflow_node_states AS ns JOIN workflow_runs AS r ON r.id = ns.run_id
    ORDER BY ns.updated_at NULLS FIRST, ns.run_id, ns.node_id) AS node_state;

-- The feed reads in seq order, for everyone or one project; pending rows (seq
-- NULL) are found through the first index too.
CREATE INDEX workflow_changes_seq_idx ON workflow_changes (seq);
CREATE INDEX workflow_changes_project_idx ON workflow_changes (project_id, seq);

CREATE FUNCTION workflow_changes_note_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.id, '', NEW.project_id, NULL)
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL;
    PERFORM pg_notify('workflow_changes', '');
    RETURN NULL;
END
$$;

CREATE FUNCTION workflow_changes_note_node_states() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    noted bigint;
BEGIN
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    SELECT changed.run_id, changed.node_id, r.project_id, NULL
    FROM changed_node_states AS changed JOIN workflow_runs AS r ON r.id = changed.run_id
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL;
    GET DIAGNOSTICS noted = ROW_COUNT;
    IF noted > 0 THEN
        PERFORM pg_notify('workflow_changes', '');
    END IF;
    RETURN NULL;
END
$$;

-- A run changes when a store call writes it; a node state's heartbeat (only
-- updated_at) is not a change of the run, the node state's own change is.
CREATE TRIGGER workflow_changes_run AFTER INSERT OR UPDATE OF
    status, input_json, output_json, finished_at, last_message,
    paused_at, checkpoint_json, owner, lease_expires_at
    ON workflow_runs FOR EACH ROW EXECUTE FUNCTION workflow_changes_note_run();
-- Node states once per statement: create_run writes a run's nodes in one.
CREATE TRIGGER workflow_changes_node_insert AFTER INSERT ON workflow_node_states
    REFERENCING NEW TABLE AS changed_node_states
    FOR EACH STATEMENT EXECUTE FUNCTION workflow_changes_note_node_states();
CREATE TRIGGER workflow_changes_node_update AFTER UPDATE ON workflow_node_states
    REFERENCING NEW TABLE AS changed_node_states
    FOR EACH STATEMENT EXECUTE FUNCTION workflow_changes_note_node_states();
