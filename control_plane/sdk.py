"""A small Python client of the govplane API for data work: ingest Arrow tables, read datasets.

::

    client = GovplaneClient("http://127.0.0.1:8000", token)
    run = client.ingest(dataset_id, table, columns={"email": {"classification": "confidential"}})
    rows = client.read(dataset_id, limit=1000)   # filtered by policy for the caller

Tables travel as Arrow IPC streams, in parts small enough for the server's body limit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

import httpx
import pyarrow as pa
import pyarrow.ipc as ipc

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
_TERMINAL: Final = frozenset({"succeeded", "failed", "rejected"})


class GovplaneError(Exception):
    """The API refused a request; ``problem`` is its problem+json body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = dict(problem)


class GovplaneClient:
    """Calls the API as one principal (its bearer token)."""

    def __init__(
        self,
        url: str,
        token: str,
        part_bytes: int = 512 * 1024,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )
        self._part_bytes = part_bytes

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> GovplaneClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise GovplaneError(response.status_code, problem)
        return response

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """A dataset's registration."""
        body: dict[str, Any] = self._call("GET", f"/datasets/{dataset_id}").json()
        return body

    def upload(self, dataset_id: str, table: pa.Table) -> str:
        """Send ``table`` for a later ingest of ``dataset_id``; returns the upload id."""
        upload_id: str | None = None
        for part in _parts(table, self._part_bytes):
            path = f"/datasets/{dataset_id}/uploads"
            if upload_id is not None:
                path += f"/{upload_id}"
            answer = self._call(
                "POST", path, content=part, headers={"Content-Type": ARROW_STREAM}
            ).json()
            upload_id = answer["upload_id"]
        assert upload_id is not None
        return upload_id

    def ingest(
        self,
        dataset_id: str,
        table: pa.Table | None = None,
        path: str | None = None,
        columns: Mapping[str, Mapping[str, str]] | None = None,
        mode: str = "append",
        wait: float | None = 300.0,
    ) -> dict[str, Any]:
        """Submit a governed ingest of ``table`` (uploaded first) or of a server-side ``path``
        under the source roots; waits up to ``wait`` seconds for it to finish (None: no wait).

        Returns the run; its ``state`` says whether it succeeded and ``error`` why not.
        """
        if (table is None) == (path is None):
            raise ValueError("give exactly one of table or path")
        name = self.dataset(dataset_id)["name"]
        source = {"path": path} if path is not None else {"upload": self.upload(dataset_id, table)}
        params = {"source": source, "columns": dict(columns or {}), "mode": mode}
        run: dict[str, Any] = self._call(
            "POST", "/runs", json={"kind": "ingest", "target": f"dataset:{name}", "params": params}
        ).json()
        if wait is None:
            return run
        return self.wait(run["id"], wait)

    def wait(
        self, run_id: str, seconds: float = 300.0, until: frozenset[str] = _TERMINAL
    ) -> dict[str, Any]:
        """The run once its state is in ``until`` (by default: once it finished).

        Raises:
            TimeoutError: it is still elsewhere after ``seconds``.
        """
        deadline = time.monotonic() + seconds
        run: dict[str, Any] = self.call("GET", f"/runs/{run_id}")
        while run["state"] not in until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run['state']} after {seconds:g} s")
            time.sleep(0.2)
            run = self.call("GET", f"/runs/{run_id}")
        return run

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any API route (``path`` below ``/api/v1``); its JSON answer.

        Raises:
            GovplaneError: the API refused the request (its problem+json is attached).
        """
        return self._call(method, path, **kwargs).json()

    def read(
        self, dataset_id: str, limit: int = 10_000, snapshot_id: int | None = None
    ) -> pa.Table:
        """Rows of a dataset as the caller may see them (columns as values, pseudonyms, or
        removed, as policy decides)."""
        query: dict[str, Any] = {"limit": limit, "format": "arrow"}
        if snapshot_id is not None:
            query["snapshot_id"] = snapshot_id
        response = self._call("GET", f"/datasets/{dataset_id}/preview", params=query)
        return ipc.open_stream(response.content).read_all()


def _parts(table: pa.Table, part_bytes: int) -> list[bytes]:
    """``table`` as IPC streams of about ``part_bytes`` each (at least one row per part)."""
    rows_per_part = max(1, int(table.num_rows * part_bytes / max(table.nbytes, 1)))
    parts = []
    for start in range(0, max(table.num_rows, 1), rows_per_part):
        chunk = table.slice(start, rows_per_part)
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, chunk.schema) as writer:
            writer.write_table(chunk)
        parts.append(sink.getvalue().to_pybytes())
    return parts
