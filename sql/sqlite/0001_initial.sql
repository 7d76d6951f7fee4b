-- workflow_db schema 1 for SQLite: projects, graphs with their version history,
-- runs pinned to a graph version, and per-node run states.
-- Timestamps are fixed-width ISO-8601 UTC text (text order is time order);
-- JSON is TEXT guarded by json_valid().

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE workflow_graphs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    description TEXT,
    graph_json TEXT NOT NULL CHECK (json_valid(graph_json) AND json_type(graph_json) = 'object'),
    version INTEGER NOT NULL CHECK (version >= 1),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX workflow_graphs_created_idx ON workflow_graphs (created_at DESC, id DESC);
CREATE INDEX workflow_graphs_project_idx ON workflow_graphs (project_id, created_at DESC, id DESC);

-- Every version a graph ever had; written by the triggers below.
CREATE TABLE workflow_graph_versions (
    graph_id TEXT NOT NULL REFERENCES workflow_graphs (id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    graph_json TEXT NOT NULL,
    written_at TEXT NOT NULL,
    PRIMARY KEY (graph_id, version)
);

-- The node ids of each version in graph order: what a new run starts its node states from.
CREATE TABLE workflow_graph_nodes (
    graph_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    PRIMARY KEY (graph_id, version, position),
    FOREIGN KEY (graph_id, version)
        REFERENCES workflow_graph_versions (graph_id, version) ON DELETE CASCADE
);

CREATE TRIGGER workflow_graphs_insert_version AFTER INSERT ON workflow_graphs
BEGIN
    INSERT INTO workflow_graph_versions (graph_id, version, name, description, graph_json, written_at)
    VALUES (NEW.id, NEW.version, NEW.name, NEW.description, NEW.graph_json, NEW.updated_at);
    INSERT INTO workflow_graph_nodes (graph_id, version, position, node_id)
    SELECT NEW.id, NEW.version, CAST(node.key AS INTEGER), json_extract(node.value, '$.id')
    FROM json_each(NEW.graph_json, '$.nodes') AS node;
END;

CREATE TRIGGER workflow_graphs_update_version AFTER UPDATE OF version ON workflow_graphs
BEGIN
    INSERT INTO workflow_graph_versions (graph_id, version, name, description, graph_json, written_at)
    VALUES (NEW.id, NEW.version, NEW.name, NEW.description, NEW.graph_json, NEW.updated_at);
    INSERT INTO workflow_graph_nodes (graph_id, version, position, node_id)
    SELECT NEW.id, NEW.version, CAST(node.key AS INTEGER), json_extract(node.value, '$.id')
    FROM json_each(NEW.graph_json, '$.nodes') AS node;
END;

CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    workflow_id TEXT NOT NULL REFERENCES workflow_graphs (id) ON DELETE RESTRICT,
    workflow_version INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    input_json TEXT CHECK (input_json IS NULL OR json_valid(input_json)),
    output_json TEXT CHECK (output_json IS NULL OR json_valid(output_json)),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    last_message TEXT,
    updated_at TEXT NOT NULL,
    FOREIGN KEY (workflow_id, workflow_version)
        REFERENCES workflow_graph_versions (graph_id, version) ON DELETE RESTRICT
);
-- One index per list filter, each in list order: keyset pages need no sort.
CREATE INDEX workflow_runs_started_idx ON workflow_runs (started_at DESC, id DESC);
CREATE INDEX workflow_runs_project_idx ON workflow_runs (project_id, started_at DESC, id DESC);
CREATE INDEX workflow_runs_workflow_idx ON workflow_runs (workflow_id, started_at DESC, id DESC);
CREATE INDEX workflow_runs_status_idx ON workflow_runs (status, started_at DESC, id DESC);
CREATE INDEX workflow_runs_project_status_idx
    ON workflow_runs (project_id, status, started_at DESC, id DESC);
CREATE INDEX workflow_runs_finished_idx ON workflow_runs (finished_at);

CREATE TABLE workflow_node_states (
    run_id TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    -- index of the node in the run's graph version; 2147483647 for a node outside it
    position INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
    progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    messages_json TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(messages_json) AND json_type(messages_json) = 'array'),
    started_at TEXT,
    completed_at TEXT,
    error TEXT,
    PRIMARY KEY (run_id, node_id)
);
CREATE INDEX workflow_node_states_order_idx ON workflow_node_states (run_id, position, node_id);
CREATE INDEX workflow_node_states_status_idx ON workflow_node_states (status);

-- A new run starts with a PENDING state for every node of its graph version.
CREATE TRIGGER workflow_runs_create_node_states AFTER INSERT ON workflow_runs
BEGIN
    INSERT INTO workflow_node_states (run_id, node_id, position, status)
    SELECT NEW.id, node.node_id, node.position, 'pending'
    FROM workflow_graph_nodes AS node
    WHERE node.graph_id = NEW.workflow_id AND node.version = NEW.workflow_version;
END;
