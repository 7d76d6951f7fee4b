-- workflow_db schema 2 for PostgreSQL: what the workflow service needs.
-- * The statuses it uses: run 'paused', node 'cancelled'.
-- * Heartbeats: every write of a node state moves its run's updated_at
--   forward to the write's time, in the same statement.
-- * JSON kept as written: json, not jsonb. jsonb normalises what it stores
--   (object keys reordered, 1e16 read back as the integer 10000000000000000,
--   -0.0 as 0), so a value would not read back as the caller wrote it, as it
--   does from SQLite's TEXT. Values stored before this migration stay as jsonb
--   normalised them.

ALTER TABLE workflow_runs
    DROP CONSTRAINT workflow_runs_status_check,
    ADD CONSTRAINT workflow_runs_status_check
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    ALTER COLUMN input_json TYPE json USING input_json::json,
    ALTER COLUMN output_json TYPE json USING output_json::json;

ALTER TABLE workflow_node_states
    DROP CONSTRAINT workflow_node_states_status_check,
    ADD CONSTRAINT workflow_node_states_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
    DROP CONSTRAINT workflow_node_states_messages_json_check,
    ALTER COLUMN messages_json DROP DEFAULT,
    ALTER COLUMN messages_json TYPE json USING messages_json::json,
    ALTER COLUMN messages_json SET DEFAULT '[]',
    ADD CONSTRAINT workflow_node_states_messages_json_check CHECK (json_typeof(messages_json) = 'array'),
    -- when a store call last wrote this state; NULL while it is as create_run made it
    ADD COLUMN updated_at timestamptz;

ALTER TABLE workflow_graphs
    DROP CONSTRAINT workflow_graphs_graph_json_check,
    ALTER COLUMN graph_json TYPE json USING graph_json::json,
    ADD CONSTRAINT workflow_graphs_graph_json_check CHECK (json_typeof(graph_json) = 'object');

ALTER TABLE workflow_graph_versions ALTER COLUMN graph_json TYPE json USING graph_json::json;

CREATE OR REPLACE FUNCTION workflow_graphs_record_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_graph_versions (graph_id, version, name, description, graph_json, written_at)
    VALUES (NEW.id, NEW.version, NEW.name, NEW.description, NEW.graph_json, NEW.updated_at);
    INSERT INTO workflow_graph_nodes (graph_id, version, position, node_id)
    SELECT NEW.id, NEW.version, node.ordinal - 1, node.value ->> 'id'
    FROM json_array_elements(NEW.graph_json -> 'nodes') WITH ORDINALITY AS node (value, ordinal);
    RETURN NULL;
END
$$;

CREATE FUNCTION workflow_node_states_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflow_runs SET updated_at = NEW.updated_at
    WHERE id = NEW.run_id AND updated_at < NEW.updated_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_node_states_heartbeat AFTER INSERT OR UPDATE ON workflow_node_states
    FOR EACH ROW WHEN (NEW.updated_at IS NOT NULL) EXECUTE FUNCTION workflow_node_states_heartbeat();
