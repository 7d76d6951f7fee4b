# Generated from checkpoint_saver_async.py by scripts/async_to_sync.py: edit that file, then run the script.
"""WorkflowCheckpointSaver: LangGraph's checkpoints in the tables of schema 10.

The one implementation of every saver call: ``checkpoint_saver.py`` (the
synchronous WorkflowCheckpointSaver) is generated from it by
``scripts/async_to_sync.py``. Statements and decoding live in
:mod:`workflow_db.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol

from .checkpoints import (
    COPY_THREAD,
    DELETE_FOR_RUNS,
    DELETE_THREADS,
    USES_DELTA_CHANNELS,
    CheckpointSaverCore,
    Guard,
    id_array,
    thread_key,
)
from .dialects import Database, Session
from .dialects.base import SQL, DialectSQL, fetch_all, fetch_none, fetch_one
from .queries import Scoped


class WorkflowCheckpointSaver(CheckpointSaverCore):
    """LangGraph checkpoints, blobs and pending writes in the database that holds the runs.

    ``thread_id`` is usually a run id (any string works). A checkpoint of a run
    goes when the run is deleted; with ``project_id`` the saver reads and
    writes only the threads of that project's runs (writing another thread is
    an :class:`~workflow_db.errors.IntegrityError`). Inside
    ``store.transaction()`` (same task, same database) every call joins that
    transaction.
    """

    def __init__(
        self, db: Database, *, project_id: str | None = None, serde: SerializerProtocol | None = None
    ) -> None:
        """``db`` from :func:`workflow_db.connect`, migrated; ``serde``: LangGraph's serializer
        (its default when None)."""
        # Imported here: `python -m workflow_db.migrate` must not find its module already loaded.
        from .migrate import require_current

        if not isinstance(db, Database):
            raise TypeError(
                f"{type(self).__name__} needs the database connect() returns, got {type(db).__name__}"
            )
        require_current(db)
        super().__init__(db, project_id=project_id, serde=serde)
        self.db: Database = db

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` (and the values of the channels in ``new_versions``) in one transaction;
        return the config that names it."""
        guard, next_config, statements = self._put_statements(config, checkpoint, metadata, new_versions)
        self._write(guard, statements)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the writes a task made on top of the checkpoint ``config`` names, in one transaction."""
        guard, statements = self._writes_statements(config, writes, task_id, task_path)
        self._write(guard, statements)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (its ``checkpoint_id``, else the thread's newest), with its
        pending writes, read in one statement; None if there is none."""
        sql, params = self._get_statement(config)
        found = self._tuples(self.db.read(sql, params, fetch_all))
        return found[0] if found else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first: of ``config``'s thread (and namespace, checkpoint, if given),
        whose metadata holds every key of ``filter`` with its value, older than ``before``, at most
        ``limit``; read in pages of one statement each."""
        query = self._list_query(config, filter, before, limit)
        while query.limit is None or query.returned < query.limit:
            sql, params = query.page(self.project_id)
            page = self._tuples(self.db.read(sql, params, fetch_all))
            for found in page:
                yield found
            if not query.advance(page):
                return

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of ``thread_id``, in one transaction."""
        params = self._params(ids=self.db.encode_json(id_array([thread_id], "thread_id")))
        self._run(DELETE_THREADS, params)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints LangGraph wrote in the runs ``run_ids`` (LangGraph's run ids, from the
        checkpoints' metadata) and their pending writes, in one transaction."""
        params = self._params(ids=self.db.encode_json(id_array(run_ids, "run_ids")))
        self._run(DELETE_FOR_RUNS, params)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of one thread to another, in one transaction (rows the
        target already has stay as they are)."""
        target = thread_key(target_thread_id, "target_thread_id")
        params = self._params(
            source_thread_id=thread_key(source_thread_id, "source_thread_id"), thread_id=target
        )
        self._run(COPY_THREAD, params, self._guard({"configurable": {}}, target))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep only the newest checkpoint of each namespace of each thread (with its
        writes and the blobs it names); ``"delete"``: delete the threads. One transaction.

        ``"keep_latest"`` refuses threads whose graph uses a ``DeltaChannel`` (it rebuilds values from
        older checkpoints): NotImplementedError, nothing pruned.
        """
        params, statements = self._prune_statements(thread_ids, strategy)
        with self.db.writing(quiet=True) as session:
            if strategy == "keep_latest":
                delta = session.execute(USES_DELTA_CHANNELS.pick(self.project_id), params, fetch_one)
                if delta is not None:
                    raise NotImplementedError(
                        f"prune: thread {delta[0]!r} uses a DeltaChannel; keep_latest would lose its values"
                    )
            for statement in statements:
                session.execute(statement.pick(self.project_id), params, fetch_none)

    # -- one transaction ---------------------------------------------------------------------

    def _write(self, guard: Guard, statements: Sequence[tuple[SQL, Mapping[str, Any]]]) -> None:
        """Run ``statements`` in one transaction, after the ``guard`` check (one statement alone: in
        autocommit, one round trip)."""
        if not statements:  # put_writes of no writes
            return
        if guard is None and len(statements) == 1:
            self.db.write(*statements[0], fetch_none, quiet=True)
            return
        with self.db.writing(quiet=True) as session:
            self._check(session, guard)
            for sql, params in statements:
                session.execute(sql, params, fetch_none)

    def _run(
        self, statements: Sequence[Scoped[DialectSQL]], params: Mapping[str, Any], guard: Guard = None
    ) -> None:
        """Run scoped ``statements`` with ``params`` in one transaction, after the ``guard`` check."""
        with self.db.writing(quiet=True) as session:
            self._check(session, guard)
            for statement in statements:
                session.execute(statement.pick(self.project_id), params, fetch_none)

    def _check(self, session: Session, guard: Guard) -> None:
        """Raise (the transaction rolls back) if ``guard`` is given and finds no run."""
        if guard is not None and session.execute(guard[0], guard[1], fetch_one) is None:
            raise self._refused(guard[1])
