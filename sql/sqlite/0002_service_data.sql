-- workflow_db schema 2 for SQLite: what the workflow service needs.
-- * The statuses it uses: run 'paused', node 'cancelled'.
-- * Heartbeats: every write of a node state moves its run's updated_at
--   forward to the write's time, in the same statement (plain SQL triggers:
--   the sqlite3 shell and other tools can write too).
-- (JSON is TEXT here, kept as written already; PostgreSQL moves from jsonb to json.)
--
-- SQLite cannot alter a CHECK constraint, so workflow_runs and
-- workflow_node_states are rebuilt the way https://www.sqlite.org/lang_altertable.html
-- ("Making Other Kinds Of Table Schema Changes") prescribes: the runner turns
-- foreign keys off around this file's transaction and runs PRAGMA
-- foreign_key_check before COMMIT; here each table is created anew, its rows
-- copied, the old one dropped, the new one renamed, and its indexes and
-- triggers created again.

-- The trigger on workflow_runs goes with its table; dropped first so that no
-- trigger names a table that is briefly missing while the tables are renamed.
DROP TRIGGER workflow_runs_create_node_states;

CREATE TABLE workflow_runs_rebuilt (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    workflow_id TEXT NOT NULL REFERENCES workflow_graphs (id) ON DELETE RESTRICT,
    workflow_version INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    input_json TEXT CHECK (input_json IS NULL OR json_valid(input_json)),
    output_json TEXT CHECK (output_json IS NULL OR json_valid(output_json)),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    last_message TEXT,
    updated_at TEXT NOT NULL,
    FOREIGN KEY (workflow_id, workflow_version)
        REFERENCES workflow_graph_versions (graph_id, version) ON DELETE RESTRICT
);
INSERT INTO workflow_runs_rebuilt
    (id, project_id, workflow_id, workflow_version, status, input_json, output_json,
     started_at, finished_at, last_message, updated_at)
SELECT id, project_id, workflow_id, workflow_version, status, input_json, output_json,
       started_at, finished_at, last_message, updated_at
FROM workflow_runs;
DROP TABLE workflow_runs;
ALTER TABLE workflow_runs_rebuilt RENAME TO workflow_runs;
CREATE INDEX workflow_runs_started_idx ON workflow_runs (started_at DESC, id DESC);
CREATE INDEX workflow_runs_project_idx ON workflow_runs (project_id, started_at DESC, id DESC);
CREATE INDEX workflow_runs_workflow_idx ON workflow_runs (workflow_id, started_at DESC, id DESC);
CREATE INDEX workflow_runs_status_idx ON workflow_runs (status, started_at DESC, id DESC);
CREATE INDEX workflow_runs_project_status_idx
    ON workflow_runs (project_id, status, started_at DESC, id DESC);
CREATE INDEX workflow_runs_finished_idx ON workflow_runs (finished_at);

CREATE TABLE workflow_node_states_rebuilt (
    run_id TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    -- index of the node in the run's graph version; 2147483647 for a node outside it
    position INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
    progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    messages_json TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(messages_json) AND json_type(messages_json) = 'array'),
    started_at TEXT,
    completed_at TEXT,
    error TEXT,
    -- when a store call last wrote this state; NULL while it is as create_run made it
    updated_at TEXT,
    PRIMARY KEY (run_id, node_id)
);
INSERT INTO workflow_node_states_rebuilt
    (run_id, node_id, position, status, progress, messages_json, started_at, completed_at, error)
SELECT run_id, node_id, position, status, progress, messages_json, started_at, completed_at, error
FROM workflow_node_states;
DROP TABLE workflow_node_states;
ALTER TABLE workflow_node_states_rebuilt RENAME TO workflow_node_states;
CREATE INDEX workflow_node_states_order_idx ON workflow_node_states (run_id, position, node_id);
CREATE INDEX workflow_node_states_status_idx ON workflow_node_states (status);

-- As in schema 1: a new run starts with a PENDING state for every node of its graph version.
CREATE TRIGGER workflow_runs_create_node_states AFTER INSERT ON workflow_runs
BEGIN
    INSERT INTO workflow_node_states (run_id, node_id, position, status)
    SELECT NEW.id, node.node_id, node.position, 'pending'
    FROM workflow_graph_nodes AS node
    WHERE node.graph_id = NEW.workflow_id AND node.version = NEW.workflow_version;
END;

-- Heartbeats (SQLite has no INSERT OR UPDATE trigger: one for each).
CREATE TRIGGER workflow_node_states_heartbeat_insert AFTER INSERT ON workflow_node_states
WHEN NEW.updated_at IS NOT NULL
BEGIN
    UPDATE workflow_runs SET updated_at = NEW.updated_at
    WHERE id = NEW.run_id AND updated_at < NEW.updated_at;
END;

CREATE TRIGGER workflow_node_states_heartbeat_update AFTER UPDATE ON workflow_node_states
WHEN NEW.updated_at IS NOT NULL
BEGIN
    UPDATE workflow_runs SET updated_at = NEW.updated_at
    WHERE id = NEW.run_id AND updated_at < NEW.updated_at;
END;
