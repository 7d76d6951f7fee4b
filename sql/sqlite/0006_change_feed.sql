-- workflow_db schema 6 for SQLite: the change feed (list_changes, watch).
-- One row per run ('' as node_id) and per node state that ever changed: its
-- latest change, not a log, so the table is as large as the data and goes
-- with its run (ON DELETE CASCADE). SQLite has one writer at a time, so a
-- number taken from workflow_change_counter as the change is written grows
-- in commit order (a rolled-back transaction takes its numbers with it).

CREATE TABLE workflow_change_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);

CREATE TABLE workflow_changes (
    run_id TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, node_id)
) WITHOUT ROWID;

-- What is stored now is the first feed: runs, then node states, oldest first.
INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
SELECT id, '', project_id, row_number() OVER (ORDER BY updated_at, id)
FROM workflow_runs;
INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
SELECT ns.run_id, ns.node_id, r.project_id,
       (SELECT count(*) FROM workflow_runs)
       + row_number() OVER (ORDER BY ns.updated_at, ns.run_id, ns.node_id)
FROM workflow_node_states AS ns JOIN workflow_runs AS r ON r.id = ns.run_id;
INSERT INTO workflow_change_counter (id, seq)
SELECT 1, coalesce(max(seq), 0) FROM workflow_changes;

CREATE INDEX workflow_changes_seq_idx ON workflow_changes (seq);
CREATE INDEX workflow_changes_project_idx ON workflow_changes (project_id, seq);

-- A run changes when a store call writes it; a node state's heartbeat (only
-- updated_at) is not a change of the run, the node state's own change is.
CREATE TRIGGER workflow_changes_run_insert AFTER INSERT ON workflow_runs
BEGIN
    UPDATE workflow_change_counter SET seq = seq + 1;
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.id, '', NEW.project_id, (SELECT seq FROM workflow_change_counter))
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = excluded.seq;
END;

CREATE TRIGGER workflow_changes_run_update AFTER UPDATE OF
    status, input_json, output_json, finished_at, last_message,
    paused_at, checkpoint_json, owner, lease_expires_at
    ON workflow_runs
BEGIN
    UPDATE workflow_change_counter SET seq = seq + 1;
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.id, '', NEW.project_id, (SELECT seq FROM workflow_change_counter))
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = excluded.seq;
END;

CREATE TRIGGER workflow_changes_node_insert AFTER INSERT ON workflow_node_states
BEGIN
    UPDATE workflow_change_counter SET seq = seq + 1;
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.run_id, NEW.node_id, (SELECT project_id FROM workflow_runs WHERE id = NEW.run_id),
            (SELECT seq FROM workflow_change_counter))
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = excluded.seq;
END;

CREATE TRIGGER workflow_changes_node_update AFTER UPDATE ON workflow_node_states
BEGIN
    UPDATE workflow_change_counter SET seq = seq + 1;
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.run_id, NEW.node_id, (SELECT project_id FROM workflow_runs WHERE id = NEW.run_id),
            (SELECT seq FROM workflow_change_counter))
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = excluded.seq;
END;
