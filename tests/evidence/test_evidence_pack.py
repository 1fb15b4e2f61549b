"""Evidence packs: built through the API, verified offline with only the public key."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select

from audit import leaf_hash, load_public_key, verify_inclusion, verify_pack
from audit.checkpoints import Checkpoint
from control_plane.inventory.model_card import CARD_FILES
from control_plane.store.models import Model, ModelVersion
from tests.conftest import GOVPLANE, as_caller, drain, principal_token, recorded_evaluation

PACK = "/api/v1/models/credit/versions/1/evidence-pack"


@pytest.fixture
def pack(client: TestClient) -> bytes:
    """The pack of credit v1: trained, evaluated and promoted by governed runs."""
    created = client.post(
        "/api/v1/models",
        json={"name": "credit", "domain": "retail", "risk_tier": "low", "intended_use": "x"},
    )
    assert created.status_code == 201, created.text
    dataset = {"name": "census", "domain": "retail", "classification": "public"}
    assert client.post("/api/v1/datasets", json=dataset).status_code == 201
    train = client.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:credit", "inputs": ["dataset:census"]},
    ).json()
    drain(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        model_id = session.scalars(select(Model.id).where(Model.name == "credit")).one()
        session.add(ModelVersion(model_id=model_id, version=1, source_run_id=train["id"]))
    evaluate = client.post(
        "/api/v1/runs",
        json={"kind": "evaluate", "target": "model:credit", "params": {"version": 1}},
    ).json()
    drain(client)
    with services.db.session(write=True) as session:
        version = session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model_id)
        ).one()
        evaluation = recorded_evaluation(session, "credit", 1, run_id=evaluate["id"])
        version.evidence = {"evaluation": evaluation}
    promote = {
        "kind": "promote",
        "target": "model:credit",
        "params": {"version": 1, "target_stage": "staging"},
    }
    assert client.post("/api/v1/runs", json=promote).status_code == 202
    drain(client)
    response = client.get(PACK)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return response.content


def _public_key(client: TestClient) -> Any:
    pem = client.get("/api/v1/audit/checkpoints/latest").json()["public_key"]
    return load_public_key(pem.encode())


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_pack_holds_the_versions_runs_gates_and_proofs(client: TestClient, pack: bytes) -> None:
    files = _files(pack)
    runs = json.loads(files["runs.json"])
    # Then the three runs on the version are there, each with its gate results as the API has them
    assert sorted(run["kind"] for run in runs) == ["evaluate", "promote", "train"]
    for run in runs:
        api_gates = client.get(f"/api/v1/runs/{run['id']}").json()["gates"]
        assert [g["gate"] for g in run["gates"]] == [g["gate"] for g in api_gates]
    # And every audit record of those runs is there with a proof that checks by hand
    checkpoint = Checkpoint.from_json(json.loads(files["checkpoint.json"]))
    records = [json.loads(line) for line in files["audit/records.jsonl"].splitlines()]
    run_ids = {run["id"] for run in runs}
    assert run_ids <= {r["record"]["run_id"] for r in records}
    for record in records:
        path = [bytes.fromhex(h) for h in record["audit_path"]]
        leaf = bytes.fromhex(record["leaf"])
        assert verify_inclusion(
            record["leaf_index"], checkpoint.size, leaf_hash(leaf), path, checkpoint.root_hash
        )
    # And the version's model card is there in every format, as the API serves it
    for card_format, name in CARD_FILES.items():
        card = client.get(PACK.replace("evidence-pack", "card"), params={"format": card_format})
        assert files[f"model_card/{name}"] == card.content
    # And it verifies with the trail's public key
    result = verify_pack(pack, _public_key(client))
    assert result.valid, result.problems
    assert result.records == len(records) > 0


def test_a_changed_file_or_record_is_caught(client: TestClient, pack: bytes) -> None:
    key = _public_key(client)
    files = _files(pack)
    # A file edited after export
    edited = dict(files, **{"version.json": files["version.json"].replace(b"none", b"prod")})
    assert "version.json does not match" in " ".join(verify_pack(_zip(edited), key).problems)
    # A record rewritten, with the manifest digest updated to match
    lines = files["audit/records.jsonl"].splitlines()
    first = json.loads(lines[0])
    first["record"]["actor"] = "someone-else"
    lines[0] = json.dumps(first, sort_keys=True).encode()
    forged = dict(files, **{"audit/records.jsonl": b"\n".join(lines) + b"\n"})
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["audit/records.jsonl"] = hashlib.sha256(
        forged["audit/records.jsonl"]
    ).hexdigest()
    forged["manifest.json"] = json.dumps(manifest).encode()
    problems = verify_pack(_zip(forged), key).problems
    assert problems == [
        f"record {first['leaf_index']}: the record shown is not the one its leaf holds"
    ]


def test_another_key_does_not_verify(pack: bytes) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    result = verify_pack(pack, other)
    assert not result.valid
    assert result.problems == ["the checkpoint is not signed by the given public key"]


def test_reading_a_pack_needs_the_model_and_the_audit_trail(
    client: TestClient, pack: bytes
) -> None:
    scientist = principal_token(client, "sam", [("data_scientist", "retail")])
    auditor = principal_token(client, "ada", [("auditor", "*")])
    assert client.get(PACK, headers=as_caller(client, scientist)).status_code == 403
    assert client.get(PACK, headers=as_caller(client, auditor)).status_code == 200
    missing = client.get("/api/v1/models/credit/versions/9/evidence-pack")
    assert missing.status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_verifies_a_pack_offline(client: TestClient, pack: bytes, tmp_path: Path) -> None:
    # Given the pack and the public key in files
    (tmp_path / "pack.zip").write_bytes(pack)
    pem = _public_key(client).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    # When `govplane evidence verify` checks it
    command = [*GOVPLANE, "evidence", "verify", str(tmp_path / "pack.zip")]
    done = subprocess.run(
        [*command, "--public-key", str(tmp_path / "key.pem"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it is valid, and a truncated pack is refused with a non-zero status
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["valid"] is True
    (tmp_path / "bad.zip").write_bytes(pack[:100])
    key = str(tmp_path / "key.pem")
    bad = subprocess.run(
        [*GOVPLANE, "evidence", "verify", str(tmp_path / "bad.zip"), "--public-key", key],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "not an evidence pack" in bad.stderr
