-- workflow_db schema 11 for PostgreSQL: a node write does its own bookkeeping,
-- and hot columns check their values once per backend, not once per statement.
--
-- Until now every set_node_state and append_node_message ran three triggers
-- after its row: the heartbeat (a PL/pgSQL function updating the run) and the
-- feed's two statement-level triggers (INSERT ... ON CONFLICT fires both, each
-- a PL/pgSQL function reading a transition table). The store's node writes now
-- move their run's updated_at and file their change in their own statement
-- (workflow_db.queries: common table expressions), which costs less.
--
-- The bookkeeping stays with a trigger for every other writer (raw SQL, the
-- importer, cancel_run), now row-level and skipping a row whose writer did the
-- work itself. noted says so: the store inserts a node state with noted = true
-- and flips it on update; a write that leaves noted as it was (whoever makes
-- it) fires the trigger, as before. A row trigger whose WHEN is false costs no
-- function call and keeps no transition table. create_run's nodes (made by the
-- run's trigger) are filed with their changes in the same statement.
--
-- CHECK constraints are read back from their stored text (stringToNode) by
-- every statement that writes the table, all of them on every UPDATE, whatever
-- it sets: a tenth of a node write's server time (perf). A domain's check is
-- kept in the backend's type cache and runs only on values assigned to it. The
-- same checks move to domains; each domain gets its check NOT VALID, since the
-- table's own CHECK held every stored value until now. No table is rewritten:
-- a column moving to a domain without a check keeps its storage and indexes.

ALTER TABLE workflow_node_states ADD COLUMN noted boolean NOT NULL DEFAULT false;

DROP TRIGGER workflow_changes_node_insert ON workflow_node_states;
DROP TRIGGER workflow_changes_node_update ON workflow_node_states;
DROP TRIGGER workflow_node_states_heartbeat ON workflow_node_states;
DROP FUNCTION workflow_changes_note_node_states();
DROP FUNCTION workflow_node_states_heartbeat();

-- The heartbeat and the change of a node state written by anything but the store.
CREATE FUNCTION workflow_node_states_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT NULL THEN
        UPDATE workflow_runs SET updated_at = NEW.updated_at
        WHERE id = NEW.run_id AND updated_at < NEW.updated_at;
    END IF;
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.run_id, NEW.node_id, (SELECT r.project_id FROM workflow_runs AS r WHERE r.id = NEW.run_id), NULL)
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL WHERE workflow_changes.seq IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_node_states_note_insert AFTER INSERT ON workflow_node_states
    FOR EACH ROW WHEN (NOT NEW.noted) EXECUTE FUNCTION workflow_node_states_note();
CREATE TRIGGER workflow_node_states_note_update AFTER UPDATE ON workflow_node_states
    FOR EACH ROW WHEN (NEW.noted = OLD.noted) EXECUTE FUNCTION workflow_node_states_note();

CREATE OR REPLACE FUNCTION workflow_runs_create_node_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH created AS (
        INSERT INTO workflow_node_states (run_id, node_id, position, status, noted)
        SELECT NEW.id, node.node_id, node.position, 'pending', true
        FROM workflow_graph_nodes AS node
        WHERE node.graph_id = NEW.workflow_id AND node.version = NEW.workflow_version
        RETURNING node_id)
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    SELECT NEW.id, created.node_id, NEW.project_id, NULL FROM created
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL WHERE workflow_changes.seq IS NOT NULL;
    RETURN NULL;
END
$$;

-- A change already pending (seq NULL) is left as it is: the conflict still locks its row,
-- so the sequencer (FOR UPDATE SKIP LOCKED) numbers it after this transaction commits, and
-- no new row version is written.
CREATE OR REPLACE FUNCTION workflow_changes_note_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
    VALUES (NEW.id, '', NEW.project_id, NULL)
    ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL WHERE workflow_changes.seq IS NOT NULL;
    RETURN NULL;
END
$$;

-- A node's messages read whole (the list set_node_state wrote, then the ones appended since),
-- for the statements that return node states: called where a node has appended messages,
-- instead of a subquery that every such statement initialised (its table and index opened)
-- whether a row needed it or not. STABLE: it reads in the calling statement's snapshot, and
-- COALESCE because a write's RETURNING may not see an append that committed while the write
-- waited for the row lock (the node state's new version counts it).
CREATE FUNCTION workflow_node_messages_listed(run_id text, node_id text, listed json, appended integer)
RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT COALESCE(json_agg(x.m ORDER BY x.part, x.k), '[]'::json) FROM (
            SELECT e.value AS m, 0 AS part, e.ordinality AS k
            FROM json_array_elements_text(listed) WITH ORDINALITY AS e
            UNION ALL
            SELECT nm.message, 1, nm.seq FROM workflow_node_messages AS nm
            WHERE nm.run_id = workflow_node_messages_listed.run_id
              AND nm.node_id = workflow_node_messages_listed.node_id
              AND nm.seq BETWEEN 1 AND workflow_node_messages_listed.appended) AS x);
END
$$;

-- The checks, as domains.
CREATE DOMAIN workflow_run_status AS text;
CREATE DOMAIN workflow_node_status AS text;
CREATE DOMAIN workflow_progress AS double precision;
CREATE DOMAIN workflow_json_list AS json;

-- The run's feed trigger names status among its columns: it must go while the type changes.
DROP TRIGGER workflow_changes_run ON workflow_runs;
ALTER TABLE workflow_runs ALTER COLUMN status TYPE workflow_run_status;
CREATE TRIGGER workflow_changes_run AFTER INSERT OR UPDATE OF
    status, input_json, output_json, finished_at, last_message,
    paused_at, checkpoint_json, owner, lease_expires_at
    ON workflow_runs FOR EACH ROW EXECUTE FUNCTION workflow_changes_note_run();
ALTER TABLE workflow_node_states
    ALTER COLUMN status TYPE workflow_node_status,
    ALTER COLUMN progress TYPE workflow_progress,
    ALTER COLUMN messages_json TYPE workflow_json_list;

ALTER DOMAIN workflow_run_status ADD CONSTRAINT workflow_run_status_check
    CHECK (VALUE IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')) NOT VALID;
ALTER DOMAIN workflow_node_status ADD CONSTRAINT workflow_node_status_check
    CHECK (VALUE IN ('pending', 'running', 'completed', 'failed', 'skipped', 'cancelled')) NOT VALID;
ALTER DOMAIN workflow_progress ADD CONSTRAINT workflow_progress_check
    CHECK (VALUE >= 0 AND VALUE <= 1) NOT VALID;
ALTER DOMAIN workflow_json_list ADD CONSTRAINT workflow_json_list_check
    CHECK (json_typeof(VALUE) = 'array') NOT VALID;

ALTER TABLE workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE workflow_node_states
    DROP CONSTRAINT workflow_node_states_status_check,
    DROP CONSTRAINT workflow_node_states_progress_check,
    DROP CONSTRAINT workflow_node_states_messages_json_check;
