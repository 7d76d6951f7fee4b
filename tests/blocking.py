"""The async store driven from the synchronous tests, so both stores run the same test code.

Each test thread gets one task of its own on an event loop running in a
background thread, and every call the thread makes is awaited inside that
task, one after the other. A ``with store.transaction():`` block therefore
belongs to one task from start to end, as it does in the service, and the
threaded tests become that many concurrent tasks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from workflow_db import AsyncWorkflowStore, Database

T = TypeVar("T")
_Call = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any], concurrent.futures.Future[Any]]


class LoopThread:
    """An event loop running in a thread of its own, serving one task per calling thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-event-loop", daemon=True)
        self._thread.start()
        self._local = threading.local()
        self._tasks: list[tuple[asyncio.Queue[_Call | None], concurrent.futures.Future[None]]] = []

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` in a task of its own and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``function(*args, **kwargs)`` in the calling thread's task and return its result."""
        queue: asyncio.Queue[_Call | None] | None = getattr(self._local, "queue", None)
        if queue is None:
            queue = self._local.queue = self.run(_new_queue())
            self._tasks.append((queue, asyncio.run_coroutine_threadsafe(_serve(queue), self.loop)))
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(queue.put_nowait, (function, args, kwargs, result))
        return result.result()

    def close(self) -> None:
        """End every thread's task, then the loop."""
        for queue, task in self._tasks:
            self.loop.call_soon_threadsafe(queue.put_nowait, None)
            task.result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _new_queue() -> asyncio.Queue[_Call | None]:
    return asyncio.Queue()


async def _serve(queue: asyncio.Queue[_Call | None]) -> None:
    while (item := await queue.get()) is not None:
        function, args, kwargs, result = item
        try:
            result.set_result(await function(*args, **kwargs))
        except BaseException as exc:  # handed to the calling thread
            result.set_exception(exc)


class BlockingStore:
    """An :class:`AsyncWorkflowStore` with the sync store's face: every call blocks until awaited.

    ``db`` is a sync :class:`Database` on the same database, for the tests'
    own raw SQL (arranging rows, reading what the store wrote).
    """

    def __init__(self, store: AsyncWorkflowStore, loop: LoopThread, db: Database) -> None:
        self._store = store
        self._loop = loop
        self.db = db

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if inspect.iscoroutinefunction(attribute):
            return functools.partial(self._loop.call, attribute)
        return attribute

    def close_database(self) -> None:
        """Close the async store's database (on the loop)."""
        self._loop.call(self._store.db.close)

    def watch(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """``async for`` over ``watch``, each step awaited in the calling thread's task."""
        changes = cast(AsyncGenerator[Any, None], self._store.watch(*args, **kwargs))
        while True:
            try:
                change = self._loop.call(changes.__anext__)
            except StopAsyncIteration:
                return
            try:
                yield change
            except GeneratorExit:  # the caller stopped early
                self._loop.call(changes.aclose)
                raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``async with store.transaction()`` around the block, in the calling thread's task."""
        block = self._store.transaction()
        self._loop.call(block.__aenter__)
        try:
            yield
        except BaseException as exc:
            if not self._loop.call(block.__aexit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            self._loop.call(block.__aexit__, None, None, None)
