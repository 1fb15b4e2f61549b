"""The Python SDK against a real ``govplane serve``: upload and ingest an Arrow table in parts
smaller than the body limit, then read it back filtered for each caller."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from control_plane.sample_data import ADULT_SENSITIVE, read_adult
from control_plane.sdk import GovplaneClient, GovplaneError
from tests.conftest import GOVPLANE, govplane_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    data_dir = tmp_path_factory.mktemp("sdk") / "data"
    init = subprocess.run(
        [*GOVPLANE, "init", "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    env = {"GOVPLANE_WORKER_POLL_SECONDS": "0.1"}
    with govplane_serve(data_dir, env) as url:
        yield url, json.loads(init.stdout)["admin_token"], data_dir


def _principal(url: str, admin: str, name: str, role: str, clearance: str) -> str:
    headers = {"Authorization": f"Bearer {admin}"}
    created = httpx.post(
        f"{url}/api/v1/principals",
        headers=headers,
        json={
            "name": name,
            "kind": "user",
            "roles": [{"role": role, "domain": "retail"}],
            "attributes": {"clearance": clearance},
        },
    )
    assert created.status_code == 201, created.text
    issued = httpx.post(f"{url}/api/v1/principals/{created.json()['id']}/tokens", headers=headers)
    token: str = issued.json()["token"]
    return token


def test_an_arrow_table_is_ingested_and_read_back_per_role(
    server: tuple[str, str, Path],
) -> None:
    url, admin, _ = server
    adult = read_adult()
    olga = _principal(url, admin, "olga", "data_owner", "restricted")
    owner = GovplaneClient(url, olga)
    scientist = GovplaneClient(
        url, _principal(url, admin, "dana", "data_scientist", "confidential")
    )
    # Olga registers Adult, so she is its owner
    registered = httpx.post(
        f"{url}/api/v1/datasets",
        headers={"Authorization": f"Bearer {olga}"},
        json={"name": "adult", "domain": "retail", "classification": "confidential"},
    ).json()
    # Adult as IPC is several MiB: the SDK sends it in parts under the 1 MiB body limit
    with owner, scientist:
        run = owner.ingest(registered["id"], adult)
        assert run["state"] == "succeeded", run["error"]
        assert run["outputs"]["row_count"] == adult.num_rows
        # The owner reads values; the data scientist reads pseudonyms of sensitive columns
        mine = owner.read(registered["id"], limit=100)
        theirs = scientist.read(registered["id"], limit=100)
    assert mine.column("race").to_pylist() == adult.column("race")[:100].to_pylist()
    for column in ADULT_SENSITIVE:
        assert all(v.startswith("pn_") for v in theirs.column(column).to_pylist() if v)
    assert theirs.column("age").equals(mine.column("age"))


def test_a_data_scientist_may_not_upload(server: tuple[str, str, Path]) -> None:
    url, admin, _ = server
    registered = httpx.post(
        f"{url}/api/v1/datasets",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "census", "domain": "retail", "classification": "internal"},
    ).json()
    eve = GovplaneClient(url, _principal(url, admin, "eve", "data_scientist", "internal"))
    with eve, pytest.raises(GovplaneError) as refused:
        eve.upload(registered["id"], pa.table({"a": [1]}))
    assert refused.value.status == 403


def test_a_body_that_is_not_arrow_is_refused(server: tuple[str, str, Path]) -> None:
    url, admin, _ = server
    registered = httpx.post(
        f"{url}/api/v1/datasets",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "junk", "domain": "retail", "classification": "internal"},
    ).json()
    answer = httpx.post(
        f"{url}/api/v1/datasets/{registered['id']}/uploads",
        headers={
            "Authorization": f"Bearer {admin}",
            "Content-Type": "application/vnd.apache.arrow.stream",
        },
        content=b"not arrow",
    )
    assert answer.status_code == 422
    assert "not an Arrow IPC stream" in answer.json()["detail"]
