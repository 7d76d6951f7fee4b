-- workflow_db schema 2 for PostgreSQL: the statuses the service uses (run
-- 'paused', node 'cancelled'), and heartbeats: every write of a node state
-- moves its run's updated_at forward to the write's time, in the same
-- statement (plain SQL: the sqlite3 shell and other tools can write too).

ALTER TABLE workflow_runs
    DROP CONSTRAINT workflow_runs_status_check,
    ADD CONSTRAINT workflow_runs_status_check
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled'));

ALTER TABLE workflow_node_states
    DROP CONSTRAINT workflow_node_states_status_check,
    ADD CONSTRAINT workflow_node_states_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
    -- when a store call last wrote this state; NULL while it is as create_run made it
    ADD COLUMN updated_at timestamptz;

CREATE FUNCTION workflow_node_states_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflow_runs SET updated_at = NEW.updated_at
    WHERE id = NEW.run_id AND updated_at < NEW.updated_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_node_states_heartbeat AFTER INSERT OR UPDATE ON workflow_node_states
    FOR EACH ROW WHEN (NEW.updated_at IS NOT NULL) EXECUTE FUNCTION workflow_node_states_heartbeat();
