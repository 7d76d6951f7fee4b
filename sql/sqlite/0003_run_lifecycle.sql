-- workflow_db schema 3 for SQLite: a run's lifecycle beyond its status.
-- paused_at and checkpoint_json: pause_run stores where a paused run stood,
-- resume_run reads it back. owner and lease_expires_at: which service
-- process holds the run, and until when (NULL unless a run is claimed).

ALTER TABLE workflow_runs ADD COLUMN paused_at TEXT;
ALTER TABLE workflow_runs ADD COLUMN checkpoint_json TEXT
    CHECK (checkpoint_json IS NULL OR json_valid(checkpoint_json));
ALTER TABLE workflow_runs ADD COLUMN owner TEXT;
ALTER TABLE workflow_runs ADD COLUMN lease_expires_at TEXT;
