"""Where ingested data comes from: files under the source roots, or uploaded Arrow data.

A file path given to an ingest run is resolved (links included) and must lie under one of the
configured source roots, so an API caller can never make the server read an arbitrary file.
Uploads are Arrow IPC streams sent in parts (each within the request body limit) and kept in
the data directory until the ingest run that consumes them succeeds.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from control_plane.store import new_id

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
_FORMATS: Final = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
UPLOAD_ID: Final = re.compile(r"^[0-9a-f]{32}$")


class SourceError(Exception):
    """A source cannot be used: outside the roots, unreadable, empty or of unknown format."""


def resolve_source_path(roots: tuple[Path, ...], given: str) -> Path:
    """The file ``given`` names (relative to the first root, or absolute), inside a root."""
    if not roots:
        raise SourceError("no source roots are configured (GOVPLANE_INGEST_SOURCE_ROOTS)")
    path = Path(given)
    resolved = (path if path.is_absolute() else roots[0] / path).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise SourceError(
            f"source {given!r} is outside the source roots; ingest reads files only under "
            f"{', '.join(str(root) for root in roots)}"
        )
    if not resolved.is_file():
        raise SourceError(f"source {given!r} is not a readable file")
    return resolved


def read_source_file(path: Path) -> pa.Table:
    """A CSV (with a header line) or Parquet file as an Arrow table."""
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise SourceError(
            f"source {path.name} has an unknown format; known: {', '.join(sorted(_FORMATS))}"
        )
    try:
        table = pa_csv.read_csv(path) if kind == "csv" else pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"source {path.name} cannot be read as {kind}: {exc}") from None
    return table


class UnknownUploadError(SourceError):
    """No such upload for the dataset."""


class UploadStore:
    """Uploaded Arrow data per dataset, in parts, until an ingest consumes it."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _folder(self, dataset_id: str, upload_id: str) -> Path:
        if not UPLOAD_ID.match(upload_id) or not UPLOAD_ID.match(dataset_id):
            raise UnknownUploadError(f"no upload {upload_id!r} for this dataset")
        return self._root / dataset_id / upload_id

    def add_part(self, dataset_id: str, upload_id: str | None, body: bytes) -> tuple[str, int]:
        """Store one IPC stream as the next part of an upload (a new one when ``upload_id`` is
        None); returns the upload id and the rows the part holds.

        Raises:
            SourceError: the body is not an Arrow IPC stream, its schema differs from the
                earlier parts', or the upload does not exist.
        """
        try:
            rows = ipc.open_stream(body).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"the body is not an Arrow IPC stream: {exc}") from None
        if upload_id is None:
            upload_id = new_id()
            self._folder(dataset_id, upload_id).mkdir(parents=True)
        folder = self._folder(dataset_id, upload_id)
        parts = sorted(folder.glob("part-*.arrow")) if folder.is_dir() else None
        if parts is None:
            raise UnknownUploadError(f"no upload {upload_id} for this dataset")
        if parts:
            first = ipc.open_stream(parts[0].read_bytes()).schema
            if not first.equals(rows.schema):
                raise SourceError("the part's schema differs from the upload's first part")
        (folder / f"part-{len(parts):06d}.arrow").write_bytes(body)
        return upload_id, rows.num_rows

    def read(self, dataset_id: str, upload_id: str) -> pa.Table:
        """Every part of an upload as one table, its columns mapped from the part files."""
        folder = self._folder(dataset_id, upload_id)
        parts = sorted(folder.glob("part-*.arrow")) if folder.is_dir() else []
        if not parts:
            raise UnknownUploadError(f"no upload {upload_id} for this dataset")
        # Memory-mapped, the parts are not copied into memory; a mapping outlives the file's
        # removal by ``discard``.
        return pa.concat_tables(
            ipc.open_stream(pa.memory_map(str(part))).read_all() for part in parts
        )

    def discard(self, dataset_id: str, upload_id: str) -> None:
        """Delete a consumed upload."""
        shutil.rmtree(self._folder(dataset_id, upload_id), ignore_errors=True)
