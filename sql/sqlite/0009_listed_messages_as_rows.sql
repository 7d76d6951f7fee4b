-- workflow_db schema 9 for SQLite: a list that set_node_state (or the importer)
-- writes is filed as rows of workflow_node_messages too, like appended ones.
-- SQLite rewrites a whole row on every update, overflow pages included: with
-- a list of 10,000 messages in messages_json, each later append rewrote it
-- (1.3-2.3x the cost of an append to a short list, measured). Now the node
-- state keeps '[]' there and counts the rows in appended, so an append writes
-- one small row whatever wrote the list before. Reads are unchanged: the list
-- is messages_json followed by the rows, in seq order. (PostgreSQL keeps a
-- long list out of line, TOASTed, and an update that leaves it unchanged does
-- not rewrite it: its schema 9 changes nothing.)

-- An append files the message it carries (appended_message); filing a list below
-- counts its rows without one.
DROP TRIGGER workflow_node_messages_append;
CREATE TRIGGER workflow_node_messages_append AFTER UPDATE OF appended ON workflow_node_states
WHEN NEW.appended > OLD.appended AND NEW.appended_message IS NOT NULL
BEGIN
    INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
    VALUES (NEW.run_id, NEW.node_id, NEW.appended, NEW.appended_message);
END;

-- The lists stored now: their rows go first, the messages appended after them follow.
UPDATE workflow_node_messages
SET seq = -(seq + (SELECT json_array_length(ns.messages_json) FROM workflow_node_states AS ns
                   WHERE ns.run_id = workflow_node_messages.run_id
                     AND ns.node_id = workflow_node_messages.node_id));
UPDATE workflow_node_messages SET seq = -seq;
INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
SELECT ns.run_id, ns.node_id, list.key + 1, list.value
FROM workflow_node_states AS ns, json_each(ns.messages_json) AS list
WHERE ns.messages_json <> '[]';
UPDATE workflow_node_states
SET appended = appended + json_array_length(messages_json), messages_json = '[]', appended_message = NULL
WHERE messages_json <> '[]';

-- An empty list replaced the messages: the rows go (a list with messages is filed below).
DROP TRIGGER workflow_node_messages_replace;
CREATE TRIGGER workflow_node_messages_replace AFTER UPDATE OF appended ON workflow_node_states
WHEN NEW.appended = 0 AND OLD.appended > 0 AND NEW.messages_json = '[]'
BEGIN
    DELETE FROM workflow_node_messages WHERE run_id = NEW.run_id AND node_id = NEW.node_id;
END;

-- A list written: it replaces every message, and its messages become the node's rows.
CREATE TRIGGER workflow_node_messages_file_new_list AFTER INSERT ON workflow_node_states
WHEN NEW.messages_json <> '[]'
BEGIN
    INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
    SELECT NEW.run_id, NEW.node_id, list.key + 1, list.value FROM json_each(NEW.messages_json) AS list;
    UPDATE workflow_node_states
    SET messages_json = '[]', appended = json_array_length(NEW.messages_json), appended_message = NULL
    WHERE run_id = NEW.run_id AND node_id = NEW.node_id;
END;

CREATE TRIGGER workflow_node_messages_file_list AFTER UPDATE OF messages_json ON workflow_node_states
WHEN NEW.messages_json <> '[]'
BEGIN
    DELETE FROM workflow_node_messages WHERE run_id = NEW.run_id AND node_id = NEW.node_id;
    INSERT INTO workflow_node_messages (run_id, node_id, seq, message)
    SELECT NEW.run_id, NEW.node_id, list.key + 1, list.value FROM json_each(NEW.messages_json) AS list;
    UPDATE workflow_node_states
    SET messages_json = '[]', appended = json_array_length(NEW.messages_json), appended_message = NULL
    WHERE run_id = NEW.run_id AND node_id = NEW.node_id;
END;
