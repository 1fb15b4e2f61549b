"""Group commit: records that need no other state change share one transaction.

Callers block until their records are committed (or refused), so nothing is acknowledged that
is not durable in the store, while many concurrent callers pay for one commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from sqlalchemy.orm import Session

from audit import AuditEvent
from control_plane.store import Database

_log = logging.getLogger(__name__)
Append = Callable[[Session, Sequence[AuditEvent]], list[int]]
_Batch = tuple[Sequence[AuditEvent], "Future[list[int]]"]


class GroupCommitter:
    """Commits queued records in batches, on one background thread.

    Args:
        db: the store.
        append: writes records in a transaction and returns their sequence numbers.
        max_batch: the most records committed together.
    """

    def __init__(self, db: Database, append: Append, max_batch: int = 1024) -> None:
        self._db = db
        self._append = append
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def commit(self, events: Sequence[AuditEvent], timeout: float = 30.0) -> list[int]:
        """Commit ``events`` (in order, with others' records) and return their sequence numbers.

        Raises:
            Exception: whatever made the batch fail, or ``TimeoutError``.
        """
        future: Future[list[int]] = Future()
        self._start()
        self._queue.put((events, future))
        return future.result(timeout)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="audit-group-commit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first[0])
            while size < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += len(item[0])
            self._commit(batch)

    def _commit(self, batch: list[_Batch]) -> None:
        try:
            with self._db.session(write=True) as session:
                sequences = self._append(session, [e for events, _ in batch for e in events])
        except Exception as exc:
            _log.warning("an audit batch of %d writers could not be committed: %s", len(batch), exc)
            for _, future in batch:
                future.set_exception(exc)
            return
        position = 0
        for events, future in batch:
            future.set_result(sequences[position : position + len(events)])
            position += len(events)
