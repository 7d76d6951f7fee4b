-- workflow_db schema 5 for SQLite: a node's messages appended in constant time.
-- messages_json keeps the list set_node_state (or the importer) wrote; each
-- append adds one row to workflow_node_messages instead of rewriting the list.
-- The node state counts them (appended), carries the latest one for the trigger
-- that files it (appended_message) and the size of the whole list as JSON
-- (messages_bytes), which max_json_bytes caps.

ALTER TABLE workflow_node_states ADD COLUMN appended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_node_states ADD COLUMN appended_message TEXT;
ALTER TABLE workflow_node_states ADD COLUMN messages_bytes INTEGER NOT NULL DEFAULT 2;

UPDATE workflow_node_states SET messages_bytes = length(CAST(messages_json AS BLOB))
WHERE messages_json <> '[]';

CREATE TABLE workflow_node_messages (
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id, seq),
    FOREIGN KEY (run_id, node_id) REFERENCES workflow_node_states (run_id, node_id) ON DELETE CASCADE
) WITHOUT ROWID;

-- An append (a new state, or one more message): file message number `appended`.
CREATE TRIGGER workflow_node_messages_append_new AFTER INSERT ON workflow_node_states
WHEN NEW.appended > 0
BEGIN
    INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
    VALUES (NEW.run_id, NEW.node_id, NEW.appended, NEW.appended_message);
END;

CREATE TRIGGER workflow_node_messages_append AFTER UPDATE OF appended ON workflow_node_states
WHEN NEW.appended > OLD.appended
BEGIN
    INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
    VALUES (NEW.run_id, NEW.node_id, NEW.appended, NEW.appended_message);
END;

-- A new list replaced the messages (appended back to 0): the appended ones go.
CREATE TRIGGER workflow_node_messages_replace AFTER UPDATE OF appended ON workflow_node_states
WHEN NEW.appended = 0 AND OLD.appended > 0
BEGIN
    DELETE FROM workflow_node_messages WHERE run_id = NEW.run_id AND node_id = NEW.node_id;
END;
