-- workflow_db schema 10 for PostgreSQL: LangGraph's checkpoints, in the same
-- database as the runs (workflow_db.langgraph). A LangGraph thread is usually
-- a run (thread_id = run id) but need not be one. When it is, workflow_run_id
-- links each row to the run (filled when the row is written), so that the
-- run's deletion removes its checkpoints (ON DELETE CASCADE) and a saver
-- scoped to a project finds them through the run.
--
-- A checkpoint's channel values live in langgraph_blobs, one row per
-- (channel, version): a checkpoint that changes one channel writes one blob,
-- and the others are shared with earlier checkpoints of the thread.
-- checkpoint holds the rest of it as JSON (its channel_versions say which
-- blobs make its values); metadata is jsonb, filtered by list(filter=). Keys
-- compare byte by byte (COLLATE "C"), as on SQLite: list() pages in the same order.

CREATE TABLE langgraph_checkpoints (
    thread_id text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL,
    checkpoint_id text COLLATE "C" NOT NULL,
    parent_checkpoint_id text,
    workflow_run_id text REFERENCES workflow_runs (id) ON DELETE CASCADE,
    langgraph_run_id text,
    checkpoint jsonb NOT NULL,
    metadata jsonb NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX langgraph_checkpoints_by_workflow_run ON langgraph_checkpoints (workflow_run_id)
    WHERE workflow_run_id IS NOT NULL;
CREATE INDEX langgraph_checkpoints_by_langgraph_run ON langgraph_checkpoints (langgraph_run_id)
    WHERE langgraph_run_id IS NOT NULL;
CREATE INDEX langgraph_checkpoints_newest ON langgraph_checkpoints (checkpoint_id);

CREATE TABLE langgraph_blobs (
    thread_id text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL,
    channel text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    workflow_run_id text REFERENCES workflow_runs (id) ON DELETE CASCADE,
    type text NOT NULL,
    blob bytea,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);
CREATE INDEX langgraph_blobs_by_workflow_run ON langgraph_blobs (workflow_run_id)
    WHERE workflow_run_id IS NOT NULL;

-- Pending writes: what a task wrote on top of a checkpoint (put_writes).
CREATE TABLE langgraph_writes (
    thread_id text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL,
    checkpoint_id text COLLATE "C" NOT NULL,
    task_id text COLLATE "C" NOT NULL,
    idx integer NOT NULL,
    workflow_run_id text REFERENCES workflow_runs (id) ON DELETE CASCADE,
    channel text COLLATE "C" NOT NULL,
    task_path text NOT NULL,
    type text NOT NULL,
    blob bytea,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
CREATE INDEX langgraph_writes_by_workflow_run ON langgraph_writes (workflow_run_id)
    WHERE workflow_run_id IS NOT NULL;
