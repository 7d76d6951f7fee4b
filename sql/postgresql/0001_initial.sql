-- workflow_db schema 1 for PostgreSQL: projects, graphs with their version
-- history, runs pinned to a graph version, and per-node run states.

-- wf_strictly_after(previous, now): now, or previous + 1 us when now is not later,
-- so that updated_at grows strictly with every change of its row.
CREATE FUNCTION wf_strictly_after(previous timestamptz, candidate timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT GREATEST(candidate, previous + interval '1 microsecond') $$;

CREATE TABLE projects (
    id text PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE workflow_graphs (
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    name text NOT NULL,
    description text,
    graph_json jsonb NOT NULL CHECK (jsonb_typeof(graph_json) = 'object'),
    version integer NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX workflow_graphs_created_idx ON workflow_graphs (created_at DESC, id DESC);
CREATE INDEX workflow_graphs_project_idx ON workflow_graphs (project_id, created_at DESC, id DESC);

-- Every version a graph ever had; written by the trigger below.
CREATE TABLE workflow_graph_versions (
    graph_id text NOT NULL REFERENCES workflow_graphs (id) ON DELETE CASCADE,
    version integer NOT NULL,
    name text NOT NULL,
    description text,
    graph_json jsonb NOT NULL,
    written_at timestamptz NOT NULL,
    PRIMARY KEY (graph_id, version)
);

-- The node ids of each version in graph order: what a new run starts its node states from.
CREATE TABLE workflow_graph_nodes (
    graph_id text NOT NULL,
    version integer NOT NULL,
    position integer NOT NULL,
    node_id text NOT NULL,
    PRIMARY KEY (graph_id, version, position),
    FOREIGN KEY (graph_id, version)
        REFERENCES workflow_graph_versions (graph_id, version) ON DELETE CASCADE
);

CREATE FUNCTION workflow_graphs_record_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_graph_versions (graph_id, version, name, description, graph_json, written_at)
    VALUES (NEW.id, NEW.version, NEW.name, NEW.description, NEW.graph_json, NEW.updated_at);
    INSERT INTO workflow_graph_nodes (graph_id, version, position, node_id)
    SELECT NEW.id, NEW.version, node.ordinal - 1, node.value ->> 'id'
    FROM jsonb_array_elements(NEW.graph_json -> 'nodes') WITH ORDINALITY AS node (value, ordinal);
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_graphs_insert_version AFTER INSERT ON workflow_graphs
    FOR EACH ROW EXECUTE FUNCTION workflow_graphs_record_version();
CREATE TRIGGER workflow_graphs_update_version AFTER UPDATE OF version ON workflow_graphs
    FOR EACH ROW EXECUTE FUNCTION workflow_graphs_record_version();

CREATE TABLE workflow_runs (
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    workflow_id text NOT NULL REFERENCES workflow_graphs (id) ON DELETE RESTRICT,
    workflow_version integer NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    input_json jsonb,
    output_json jsonb,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    last_message text,
    updated_at timestamptz NOT NULL,
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
    run_id text NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id text NOT NULL,
    -- index of the node in the run's graph version; 2147483647 for a node outside it
    position integer NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
    progress double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    messages_json jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(messages_json) = 'array'),
    started_at timestamptz,
    completed_at timestamptz,
    error text,
    PRIMARY KEY (run_id, node_id)
);
CREATE INDEX workflow_node_states_order_idx ON workflow_node_states (run_id, position, node_id);
CREATE INDEX workflow_node_states_status_idx ON workflow_node_states (status);

-- A new run starts with a PENDING state for every node of its graph version.
CREATE FUNCTION workflow_runs_create_node_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_node_states (run_id, node_id, position, status)
    SELECT NEW.id, node.node_id, node.position, 'pending'
    FROM workflow_graph_nodes AS node
    WHERE node.graph_id = NEW.workflow_id AND node.version = NEW.workflow_version;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_runs_create_node_states AFTER INSERT ON workflow_runs
    FOR EACH ROW EXECUTE FUNCTION workflow_runs_create_node_states();
