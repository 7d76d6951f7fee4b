-- workflow_db schema 5 for PostgreSQL: a node's messages appended in constant time.
-- messages_json keeps the list set_node_state (or the importer) wrote; each
-- append adds one row to workflow_node_messages instead of rewriting the list
-- (which wrote the whole list to the WAL every time). The node state counts
-- them (appended), carries the latest one for the trigger that files it
-- (appended_message) and the size of the whole list as JSON (messages_bytes),
-- which max_json_bytes caps. None of the three is indexed: updates stay HOT.

ALTER TABLE workflow_node_states
    ADD COLUMN appended integer NOT NULL DEFAULT 0,
    ADD COLUMN appended_message text,
    ADD COLUMN messages_bytes integer NOT NULL DEFAULT 2;

UPDATE workflow_node_states SET messages_bytes = octet_length(messages_json::text)
WHERE messages_json::text <> '[]';

CREATE TABLE workflow_node_messages (
    run_id text NOT NULL,
    node_id text NOT NULL,
    seq integer NOT NULL,
    message text NOT NULL,
    PRIMARY KEY (run_id, node_id, seq),
    FOREIGN KEY (run_id, node_id) REFERENCES workflow_node_states (run_id, node_id) ON DELETE CASCADE
);

CREATE FUNCTION workflow_node_messages_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
    VALUES (NEW.run_id, NEW.node_id, NEW.appended, NEW.appended_message);
    RETURN NULL;
END
$$;

CREATE FUNCTION workflow_node_messages_replace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM workflow_node_messages WHERE run_id = NEW.run_id AND node_id = NEW.node_id;
    RETURN NULL;
END
$$;

-- An append (a new state, or one more message): file message number `appended`.
CREATE TRIGGER workflow_node_messages_append_new AFTER INSERT ON workflow_node_states
    FOR EACH ROW WHEN (NEW.appended > 0) EXECUTE FUNCTION workflow_node_messages_append();
CREATE TRIGGER workflow_node_messages_append AFTER UPDATE OF appended ON workflow_node_states
    FOR EACH ROW WHEN (NEW.appended > OLD.appended) EXECUTE FUNCTION workflow_node_messages_append();
-- A new list replaced the messages (appended back to 0): the appended ones go.
CREATE TRIGGER workflow_node_messages_replace AFTER UPDATE OF appended ON workflow_node_states
    FOR EACH ROW WHEN (NEW.appended = 0 AND OLD.appended > 0)
    EXECUTE FUNCTION workflow_node_messages_replace();
