"""``govplane init`` prepares ingest: the embedded lake, the source folder, the pseudonym key."""

from __future__ import annotations

from pathlib import Path

from connectors.lake import IcebergLake
from control_plane.bootstrap import initialize
from control_plane.settings import Settings


def test_init_creates_the_lake_the_source_root_and_a_key_it_never_replaces(
    tmp_path: Path,
) -> None:
    # Given a fresh data directory
    settings = Settings(data_dir=tmp_path / "data", run_worker=False)
    # When it is initialized twice
    initialize(settings)
    key = settings.pseudonymization_key_path.read_text()
    initialize(settings)
    # Then the embedded lake opens, the source root exists and the key is kept, 32 bytes of hex
    assert (settings.lake_dir / "catalog.db").is_file()
    assert IcebergLake.embedded(settings.lake_dir).tables() == []
    assert settings.source_roots == ((tmp_path / "data" / "sources").resolve(),)
    assert settings.source_roots[0].is_dir()
    assert settings.pseudonymization_key_path.read_text() == key
    assert len(bytes.fromhex(key.strip())) == 32
    assert settings.pseudonymization_key_path.stat().st_mode & 0o077 == 0
