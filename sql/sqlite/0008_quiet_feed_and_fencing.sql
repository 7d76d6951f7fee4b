-- workflow_db schema 8 for SQLite: every claim issues a fencing token.
-- (PostgreSQL's schema 8 also takes NOTIFY out of the feed's triggers;
-- SQLite's triggers never sent any.)
--
-- lease_epoch counts the claims that took a run (never cleared); lease_token
-- is the epoch of the claim that holds it now, NULL once released or
-- finished. A fenced write (lease_token=) checks it in its own WHERE.

ALTER TABLE workflow_runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_runs ADD COLUMN lease_token INTEGER;

-- Runs held now get their first token.
UPDATE workflow_runs SET lease_epoch = 1, lease_token = 1 WHERE owner IS NOT NULL;

-- The claim of unowned runs reads them oldest-started first, checking
-- updated_at in the row (as on PostgreSQL, where an index on updated_at
-- made every node write's heartbeat a non-HOT update).
DROP INDEX workflow_runs_unowned_idx;
CREATE INDEX workflow_runs_unowned_idx ON workflow_runs (status, started_at) WHERE owner IS NULL;
