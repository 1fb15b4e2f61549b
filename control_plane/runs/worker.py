"""An in-process worker that claims and processes runs off the request path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from control_plane.runs.engine import RunEngine

_log = logging.getLogger(__name__)


class RunWorker:
    """Polls for claimable runs and processes them, one at a time, in a daemon thread.

    Args:
        engine: the run engine.
        name: the name the worker claims runs under.
        poll_seconds: how often an idle worker looks again.
        chores: what else the loop does on each round, before claiming runs (closing the
            approvals whose time ran out, which makes their runs move).
    """

    def __init__(
        self,
        engine: RunEngine,
        name: str,
        poll_seconds: float,
        chores: Sequence[Callable[[], object]] = (),
    ) -> None:
        self._engine = engine
        self._chores = tuple(chores)
        self.name = name
        self._poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"run-worker-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """A run was submitted or resumed: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self) -> int:
        """Process claimable runs until none is left; returns how many were processed."""
        processed = 0
        while not self._stop.is_set() and (run_id := self._engine.claim_next(self.name)):
            self._process(run_id)
            processed += 1
        return processed

    def _process(self, run_id: str) -> None:
        """Process one claimed run, renewing the claim's lease until it is done."""
        done = threading.Event()
        interval = self._engine.lease.total_seconds() / 3

        def heartbeat() -> None:
            while not done.wait(interval):
                if not self._engine.renew(run_id, self.name):
                    _log.warning("run worker %s lost its claim on run %s", self.name, run_id)
                    return

        beating = threading.Thread(target=heartbeat, name=f"lease-{run_id}", daemon=True)
        beating.start()
        try:
            self._engine.process(run_id)
        finally:
            done.set()
            beating.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for chore in self._chores:
                    chore()
                self.drain()
            except Exception:
                _log.exception("run worker %s failed; retrying", self.name)
            self._wake.wait(self._poll_seconds)
            self._wake.clear()
