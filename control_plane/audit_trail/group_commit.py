"""Group commit: records that need no other state change share one transaction.

Callers block until their records are committed (or refused), so nothing is acknowledged that
is not durable in the store, while many concurrent callers pay for one commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
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
        linger: the longest a batch waits for more writers (seconds).
    """

    def __init__(
        self, db: Database, append: Append, max_batch: int = 1024, linger: float = 0.0005
    ) -> None:
        self._db = db
        self._append = append
        self._max_batch = max_batch
        self._linger = linger
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
        waiting = 1  # how many writers the last batch served
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._gather([first], waiting)
            self._commit(batch)
            waiting = len(batch)
            if stopping:
                return

    def _gather(self, batch: list[_Batch], expected: int) -> tuple[list[_Batch], bool]:
        """Add what is queued to ``batch``, lingering briefly while writers seem to be coming.

        The writers of the last batch re-submit as soon as they are answered; waiting up to
        ``linger`` seconds for them costs far less than the commit that would follow without
        them.
        """
        size = sum(len(events) for events, _ in batch)
        deadline = time.monotonic() + self._linger
        while size < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if len(batch) >= expected or time.monotonic() >= deadline:
                    return batch, False
                time.sleep(self._linger / 8)
                continue
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item[0])
        return batch, False

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
