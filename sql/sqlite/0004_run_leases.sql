-- workflow_db schema 4 for SQLite: leases, so that several service
-- processes share the runs (claim_run, claim_orphaned_runs, release_run).
-- Claims and leases use the database's clock: wf_now() and
-- wf_seconds_from_now(s), which every connection of workflow_db defines.

-- The two ways a run is free to claim: its lease expired, or nobody owns it
-- and nobody touched it for a lease's length. One index for each.
CREATE INDEX workflow_runs_lease_idx ON workflow_runs (status, lease_expires_at)
    WHERE owner IS NOT NULL;
CREATE INDEX workflow_runs_unowned_idx ON workflow_runs (status, updated_at)
    WHERE owner IS NULL;
