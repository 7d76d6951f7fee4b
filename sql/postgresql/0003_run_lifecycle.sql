-- workflow_db schema 3 for PostgreSQL: a run's lifecycle beyond its status.
-- paused_at and checkpoint_json: pause_run stores where a paused run stood,
-- resume_run reads it back. owner and lease_expires_at: which service
-- process holds the run, and until when (NULL unless a run is claimed).

ALTER TABLE workflow_runs
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN checkpoint_json json,
    ADD COLUMN owner text,
    ADD COLUMN lease_expires_at timestamptz;
