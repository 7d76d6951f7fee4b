"""The client's own timer for statements waiting on a server that stopped answering.

A frozen server (SIGSTOP, a VM paused, a network that silently drops
packets) keeps its TCP connections open, and the kernel still acknowledges
what is sent: keepalives never fire, and a statement waits for an answer for
as long as the server is frozen. Server-side timeouts cannot help either.
The :class:`Watchdog` keeps the deadline of every statement in flight and,
when one passes, shuts that connection's socket down: the waiting call wakes
at once with a broken connection, which the dialect reports as
``DatabaseUnavailableError`` and never hands out again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

logger = logging.getLogger(__name__)

TICK = 0.1
"""How often the watchdog looks at the statements in flight, in seconds (its precision)."""


class Watchdog:
    """Deadlines of the statements in flight, one thread looking at them every TICK seconds.

    ``watch`` and ``unwatch`` are a dictionary store and pop: cheap enough for
    every statement. The thread starts with the first ``watch`` and ends with
    :meth:`close`.
    """

    def __init__(self) -> None:
        self._watched: dict[int, tuple[float, int]] = {}
        self._fired: set[int] = set()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def watch(self, key: int, fileno: int, deadline: float) -> None:
        """Shut the socket ``fileno`` down if ``key`` is still watched at ``deadline`` (monotonic)."""
        self._watched[key] = (deadline, fileno)
        if self._thread is None:
            self._start()

    def unwatch(self, key: int) -> bool:
        """Stop watching ``key``; whether its deadline passed and its socket was shut down."""
        self._watched.pop(key, None)
        if key in self._fired:
            self._fired.discard(key)
            return True
        return False

    def close(self) -> None:
        """Stop the thread (the connections watched are being closed anyway)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closing.is_set():
                self._thread = threading.Thread(target=self._run, name="workflow_db-watchdog", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closing.wait(TICK):
            now = time.monotonic()
            for key, (deadline, fileno) in list(self._watched.items()):
                if deadline <= now and self._watched.pop(key, None) is not None:
                    self._fired.add(key)
                    _shut_down(fileno)


def _shut_down(fileno: int) -> None:
    """Shut down the socket behind ``fileno``, leaving the descriptor itself to its owner."""
    logger.debug("a statement got no answer before its deadline: shutting its connection down")
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fileno))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()
