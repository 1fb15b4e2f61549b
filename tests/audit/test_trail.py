"""The audit trail in the store, on SQLite and PostgreSQL: writes, proofs, tampering, failures."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text, update
from typer.testing import CliRunner

from audit import (
    AuditEvent,
    Checkpoint,
    Frontier,
    leaf_hash,
    load_public_key,
    verify_consistency,
    verify_export,
    verify_inclusion,
)
from control_plane.audit_trail import AuditLog, CheckpointCadence, load_audit_keys
from control_plane.bundles import activate_bundle, audit_retention_cutoff
from control_plane.cli import app as cli
from control_plane.settings import Settings
from control_plane.store import Database
from control_plane.store.models import AuditHead, AuditRecord
from policies import DEFAULT_BUNDLE_DIR, PolicyBundle, load_bundle
from tests.conftest import as_caller, principal_token


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def _first_sequence(client: TestClient) -> int:
    """The sequence number of the oldest record the store still holds."""
    with client.app.state.services.db.session() as session:  # type: ignore[attr-defined]
        first: int = session.scalars(select(func.min(AuditRecord.sequence))).one()
        return first


def _events(client: TestClient, **params: str) -> list[dict[str, object]]:
    response = client.get("/api/v1/audit/events", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_governed_actions_are_recorded_and_the_trail_verifies(client: TestClient) -> None:
    # Given a principal created and a token issued through the API
    principal_token(client, "alice", [("data_scientist", "retail")])
    # When the trail is read and verified
    actions = [e["action"] for e in _events(client)]
    verified = client.get("/api/v1/audit/verify").json()
    # Then init, the creation, the token and the decisions that allowed them are all there
    assert {"policy.activate", "principal.create", "token.issue", "authz.decision"} <= set(actions)
    assert verified["valid"] is True
    assert verified["first_invalid"] is None
    assert verified["size"] >= len(actions)
    assert len(verified["root_hash"]) == 64


def test_tokens_never_enter_the_trail_but_can_be_checked(
    client: TestClient, settings: Settings
) -> None:
    # Given a token issued through the API
    token = principal_token(client, "bob", [("auditor", "*")])
    # When the trail is read
    issued = [e for e in _events(client, action="token.issue") if e["resource"] == "principal:bob"]
    # Then the token is not in it, but its keyed HMAC is, and the field is named as redacted
    assert token not in json.dumps(_events(client))
    payload = issued[0]["payload"]
    assert isinstance(payload, dict)
    assert payload["token"] == load_audit_keys(settings).redactor.fingerprint(token)
    assert issued[0]["redacted"] == ["token"]


def test_allowed_and_denied_decisions_are_recorded(client: TestClient) -> None:
    # Given a principal without the right to create principals
    token = principal_token(client, "carol", [("data_scientist", "retail")])
    # When it tries, and the decision endpoint is asked
    refused = client.post(
        "/api/v1/principals", json={"name": "x", "kind": "user"}, headers=as_caller(client, token)
    )
    decided = client.post(
        "/api/v1/policies/decide",
        json={"subject": "carol", "domain": "retail", "object": "dataset:a", "action": "read"},
    )
    # Then both decisions are in the trail
    assert refused.status_code == 403
    assert decided.status_code == 200
    denials = [e for e in _events(client, actor="carol") if e["decision"] == "deny"]
    assert denials[0]["resource"] == "principal:x"
    assert _events(client, action="policy.decide")[0]["payload"]["subject"] == "carol"  # type: ignore[index]


def test_checkpoints_and_proofs_verify_offline(client: TestClient) -> None:
    # Given a trail with records and a first checkpoint
    principal_token(client, "dave", [("auditor", "*")])
    first = client.get("/api/v1/audit/checkpoints/latest").json()
    principal_token(client, "erin", [("auditor", "*")])
    # When a later checkpoint and proofs are fetched
    latest = client.get("/api/v1/audit/checkpoints/latest").json()
    key = load_public_key(latest["public_key"].encode())
    checkpoint = Checkpoint.from_json(latest)
    index = first["size"] - 1
    inclusion = client.get(
        "/api/v1/audit/proofs/inclusion", params={"index": index, "tree_size": latest["size"]}
    ).json()
    consistency = client.get(
        "/api/v1/audit/proofs/consistency",
        params={"first": first["size"], "second": latest["size"]},
    ).json()
    # Then the checkpoint is signed, and the proofs verify against the signed roots alone
    key.verify(checkpoint.signature, checkpoint.note)
    leaf = bytes.fromhex(inclusion["leaf"])
    assert verify_inclusion(
        index,
        latest["size"],
        leaf_hash(leaf),
        [bytes.fromhex(h) for h in inclusion["audit_path"]],
        checkpoint.root_hash,
    )
    assert verify_consistency(
        first["size"],
        latest["size"],
        bytes.fromhex(first["root_hash"]),
        checkpoint.root_hash,
        [bytes.fromhex(h) for h in consistency["consistency_path"]],
    )
    bad = client.get("/api/v1/audit/proofs/inclusion", params={"index": 10**9})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("tamper", "first_invalid"),
    [
        ("UPDATE audit_records SET leaf = leaf || '' WHERE sequence = -1", None),
        ("UPDATE audit_records SET actor = 'mallory' WHERE sequence = 2", 2),
        ("DELETE FROM audit_records WHERE sequence = 2", 2),
        ("UPDATE audit_records SET sequence = sequence + 1000 WHERE sequence = 2", 2),
    ],
)
def test_tampering_in_the_database_is_found_and_named(
    client: TestClient, database_url: str, tamper: str, first_invalid: int | None
) -> None:
    # Given a trail of a few records
    principal_token(client, "frank", [("auditor", "*")])
    # When a record is changed behind the application's back
    _sql(database_url, tamper)
    verified = client.get("/api/v1/audit/verify").json()
    # Then verification fails at that record (the no-op update changes nothing)
    assert verified["valid"] is (first_invalid is None)
    assert verified["first_invalid"] == first_invalid


def test_a_flipped_byte_in_a_stored_record_is_found(client: TestClient, settings: Settings) -> None:
    # Given a trail, and one byte of record 1 flipped in the store
    principal_token(client, "gina", [("auditor", "*")])
    db = Database(settings.sqlalchemy_url)
    try:
        with db.session(write=True) as session:
            leaf = session.execute(text("SELECT leaf FROM audit_records WHERE sequence = 1")).one()[
                0
            ]
            flipped = bytearray(leaf)
            flipped[40] ^= 0x01
            session.execute(
                text("UPDATE audit_records SET leaf = :leaf WHERE sequence = 1"),
                {"leaf": bytes(flipped)},
            )
    finally:
        db.dispose()
    # When verified, through the API and the CLI
    verified = client.get("/api/v1/audit/verify").json()
    result = CliRunner().invoke(
        cli,
        ["audit", "verify", "--database-url", settings.sqlalchemy_url, "--json"],
        env={"GOVPLANE_DATA_DIR": str(settings.data_dir)},
    )
    # Then both name record 1
    assert verified["valid"] is False
    assert verified["first_invalid"] == 1
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_invalid"] == 1


def _refuse_audit_writes(url: str) -> None:
    if url.startswith("sqlite"):
        _sql(
            url,
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'audit store is read-only'); END",
        )
    else:
        _sql(
            url,
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit store is read-only'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_records "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        )


def test_actions_that_cannot_be_audited_are_refused_and_leave_nothing(
    client: TestClient, database_url: str
) -> None:
    # Given an audit store that refuses every write
    _refuse_audit_writes(database_url)
    before = client.get("/api/v1/audit/verify")
    # When governed actions are attempted
    created = client.post("/api/v1/principals", json={"name": "henry", "kind": "user"})
    decided = client.post(
        "/api/v1/policies/decide",
        json={"subject": "henry", "domain": "retail", "object": "dataset:a", "action": "read"},
    )
    # Then each is refused with 503 problem+json and nothing was stored
    assert before.status_code == 503
    for response in (created, decided):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "audit" in response.json()["detail"]
    _sql(
        database_url,
        "DROP TRIGGER refuse ON audit_records"
        if "postgres" in database_url
        else "DROP TRIGGER refuse",
    )
    names = [p["name"] for p in client.get("/api/v1/principals").json()["items"]]
    assert "henry" not in names
    assert client.get("/api/v1/audit/verify").json()["valid"] is True


def test_concurrent_writers_extend_one_chain(settings: Settings, admin_token: str) -> None:
    # Given one trail shared by writer threads, half in their own transactions, half grouped
    db = Database(settings.sqlalchemy_url)
    trail = AuditLog(db, load_audit_keys(settings))
    writers, each = 8, 25
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            for i in range(each):
                event = AuditEvent(f"writer{number}", "test.write", f"item:{i}", "ok")
                if number % 2:
                    trail.commit([event])
                else:
                    with db.session(write=True) as session:
                        trail.append(session, [event])
        except BaseException as exc:
            errors.append(exc)

    # When they all append at once
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        result = trail.verify()
    finally:
        trail.close()
        db.dispose()
    # Then every record is in one valid chain
    assert errors == []
    assert result.valid, result.problem
    assert result.records == result.size >= writers * each


def test_the_latest_checkpoint_is_signed_anew_only_as_the_cadence_says(
    settings: Settings, admin_token: str
) -> None:
    # Given a trail that signs again every 5 records or every hour
    db = Database(settings.sqlalchemy_url)
    trail = AuditLog(db, load_audit_keys(settings), CheckpointCadence(3600, 5))

    def grow(records: int) -> None:
        trail.commit(
            [AuditEvent("tester", "test.write", f"item:{i}", "ok") for i in range(records)]
        )

    try:
        first = trail.checkpoint()
        # When it grows by fewer records than the cadence, then by enough of them
        grow(4)
        behind = trail.checkpoint()
        grow(1)
        due = trail.checkpoint()
        grow(1)
        fresh = trail.checkpoint(fresh=True)
        # Then readers get the same signed checkpoint until it is due, then one at the head
        assert behind == first
        assert due.size == first.size + 5
        assert fresh.size == due.size + 1
        # And each is a valid signature over its own tree
        for checkpoint in (first, due, fresh):
            load_public_key(trail.public_key_pem.encode()).verify(
                checkpoint.signature, checkpoint.note
            )
        # And a checkpoint older than the cadence's seconds is replaced on the next read
        aged = AuditLog(db, load_audit_keys(settings), CheckpointCadence(0, 10**6))
        grow(1)
        assert aged.checkpoint().size == fresh.size + 1
        aged.close()
    finally:
        trail.close()
        db.dispose()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_exports_verify_offline_and_tampering_is_named(
    client: TestClient, tmp_path: Path, fmt: str
) -> None:
    # Given a trail and its export, fetched over HTTP with the public key
    principal_token(client, "ivan", [("auditor", "*")])
    public_key = tmp_path / "key.pem"
    public_key.write_text(client.get("/api/v1/audit/checkpoints/latest").json()["public_key"])
    response = client.get("/api/v1/audit/export", params={"format": fmt})
    assert response.status_code == 200
    export = tmp_path / f"audit.{fmt}"
    export.write_bytes(response.content)
    key = load_public_key(public_key.read_bytes())
    # When it is verified offline, as is and with one byte changed
    runner = CliRunner()
    ok = runner.invoke(
        cli, ["audit", "verify-export", str(export), "--public-key", str(public_key), "--json"]
    )
    tampered = tmp_path / f"tampered.{fmt}"
    content = bytearray(response.content)
    if fmt == "parquet":
        content[len(content) // 3] ^= 0x01
        damaged = verify_export(_write(tampered, content), key)
        # Then: valid as exported, and no longer valid once a byte changed
        assert not damaged.valid
    else:
        for position in (len(content) // 5, len(content) // 2, len(content) - 3):
            changed = bytearray(content)
            changed[position] ^= 0x01
            assert not verify_export(_write(tampered, changed), key).valid, position
    assert ok.exit_code == 0, ok.stdout
    assert json.loads(ok.stdout)["valid"] is True


def _write(path: Path, content: bytearray) -> Path:
    path.write_bytes(bytes(content))
    return path


def test_a_changed_record_in_an_export_is_named(client: TestClient, tmp_path: Path) -> None:
    # Given a JSONL export whose record 2 has one field rewritten (re-encoded canonically)
    principal_token(client, "judy", [("auditor", "*")])
    key_pem = client.get("/api/v1/audit/checkpoints/latest").json()["public_key"]
    lines = client.get("/api/v1/audit/export").content.decode().splitlines()
    items = [json.loads(line) for line in lines]
    record = next(i for i in items if i["sequence"] == 2)
    leaf = bytearray(base64.b64decode(record["leaf"]))
    leaf[-3] ^= 0x01
    record["leaf"] = base64.b64encode(bytes(leaf)).decode()
    export = tmp_path / "audit.jsonl"
    export.write_text(
        "".join(json.dumps(i, sort_keys=True, separators=(",", ":")) + "\n" for i in items)
    )
    # When verified offline
    result = verify_export(export, load_public_key(key_pem.encode()))
    # Then record 2 is named
    assert not result.valid
    assert result.first_invalid == 2


def test_a_filtered_export_shows_only_matching_records_and_still_verifies(
    client: TestClient, tmp_path: Path
) -> None:
    # Given records by several actors
    principal_token(client, "kim", [("auditor", "*")])
    key = load_public_key(
        client.get("/api/v1/audit/checkpoints/latest").json()["public_key"].encode()
    )
    # When the token issues alone are exported
    response = client.get("/api/v1/audit/export", params={"action": "token.issue"})
    export = tmp_path / "tokens.jsonl"
    export.write_bytes(response.content)
    items = [json.loads(line) for line in response.content.decode().splitlines()]
    # Then only they are shown in full, the rest are hashes, and the export verifies
    shown = [i for i in items if i["kind"] == "record"]
    assert shown
    assert {i["action"] for i in shown} == {"token.issue"}
    assert any(i["kind"] == "elided" for i in items)
    assert verify_export(export, key).valid


def test_pruning_keeps_the_rest_verifiable(client: TestClient, tmp_path: Path) -> None:
    # Given a trail behind a signed checkpoint
    principal_token(client, "leo", [("auditor", "*")])
    trail: AuditLog = client.app.state.services.audit  # type: ignore[attr-defined]
    signed = client.get("/api/v1/audit/checkpoints/latest").json()
    key = load_public_key(signed["public_key"].encode())
    cut = signed["size"] - 2
    # When records before the cut are pruned, and more records are written
    with pytest.raises(Exception, match="cannot be pruned"):
        trail.prune(signed["size"] + 50, "0" * 64, "admin")
    deleted = trail.prune(cut, "0" * 64, "admin")
    principal_token(client, "mia", [("auditor", "*")])
    # Then the rest still verifies, proofs of kept records work, and exports verify offline
    verified = client.get("/api/v1/audit/verify").json()
    export = tmp_path / "after.jsonl"
    export.write_bytes(client.get("/api/v1/audit/export").content)
    proof = client.get("/api/v1/audit/proofs/inclusion", params={"index": cut})
    assert deleted == cut
    assert verified["valid"] is True, verified
    assert verified["records"] == verified["size"] - cut
    assert proof.status_code == 200
    assert verify_export(export, key).valid
    assert _events(client, action="audit.prune")


def test_retention_comes_from_the_active_bundle_and_archives_before_pruning(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    # Given a trail whose records are all younger than the default bundle's 400-day retention
    principal_token(client, "nina", [("auditor", "*")])
    runner = CliRunner()
    url = ["--database-url", settings.sqlalchemy_url]
    env = {"GOVPLANE_DATA_DIR": str(settings.data_dir)}
    # When the CLI prunes today, then nothing is pruned, and the cut is 400 days back
    kept = runner.invoke(
        cli, ["audit", "prune", "--archive", str(tmp_path / "a.jsonl"), "--json", *url], env=env
    )
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["pruned"] == 0
    before = datetime.fromisoformat(json.loads(kept.stdout)["before"])
    assert abs(datetime.now(UTC) - timedelta(days=400) - before) < timedelta(minutes=1)
    # When the retention is applied 401 days from now
    trail: AuditLog = client.app.state.services.audit  # type: ignore[attr-defined]
    size = client.get("/api/v1/audit/verify").json()["size"]
    db = Database(settings.sqlalchemy_url)
    try:
        with db.session() as session:
            later = audit_retention_cutoff(session, datetime.now(UTC) + timedelta(days=401))
    finally:
        db.dispose()
    pruned = trail.archive_and_prune(tmp_path / "b.parquet", "parquet", later, "admin")
    # Then every record is archived and gone from the store, the archive verifies offline, and
    # the rest still verifies
    assert pruned >= size
    assert _first_sequence(client) == pruned
    key = tmp_path / "key.pem"
    key.write_text(trail.public_key_pem)
    archived = runner.invoke(
        cli, ["audit", "verify-export", str(tmp_path / "b.parquet"), "--public-key", str(key)]
    )
    assert archived.exit_code == 0, archived.stdout
    assert client.get("/api/v1/audit/verify").json()["valid"] is True
    assert _events(client, action="audit.prune")
    # And an archive is never overwritten
    again = runner.invoke(
        cli, ["audit", "prune", "--archive", str(tmp_path / "a.jsonl"), *url], env=env
    )
    assert again.exit_code == 1
    assert "never overwritten" in again.stderr


def test_a_bundle_without_audit_retention_prunes_nothing(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    # Given an active bundle without audit.yaml
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
    del files["audit.yaml"]
    db = Database(settings.sqlalchemy_url)
    try:
        with db.session() as session:
            activate_bundle(session, PolicyBundle.from_files(files), "admin")
    finally:
        db.dispose()
    # When the CLI is asked to prune
    refused = CliRunner().invoke(
        cli,
        [
            "audit",
            "prune",
            "--archive",
            str(tmp_path / "a.jsonl"),
            "--database-url",
            settings.sqlalchemy_url,
        ],
        env={"GOVPLANE_DATA_DIR": str(settings.data_dir)},
    )
    # Then it refuses, naming why, writes no archive and prunes nothing
    assert refused.exit_code == 1
    assert "has no audit.yaml: it sets no retention" in refused.stderr
    assert not (tmp_path / "a.jsonl").exists()
    assert client.get("/api/v1/audit/verify").json()["valid"] is True
    assert _first_sequence(client) == 0
    assert not _events(client, action="audit.prune")


def test_a_record_appended_behind_the_logs_back_is_found(
    client: TestClient, database_url: str
) -> None:
    # Given a trail, and a copy of its last record inserted after it in the store
    principal_token(client, "olga", [("auditor", "*")])
    trail: AuditLog = client.app.state.services.audit  # type: ignore[attr-defined]
    size = trail.verify().size
    _sql(
        database_url,
        "INSERT INTO audit_records (sequence, occurred_at, actor, action, resource, run_id, "
        "leaf, leaf_hash) SELECT sequence + 1, occurred_at, actor, action, resource, run_id, "
        "leaf, leaf_hash FROM audit_records "
        "WHERE sequence = (SELECT MAX(sequence) FROM audit_records)",
    )
    # When verified
    verified = trail.verify()
    # Then the extra record is named
    assert verified.valid is False
    assert verified.first_invalid == size


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/audit/export", {"format": "xml"}),
        ("/api/v1/audit/export", {"since": "2026-01-01T00:00:00"}),
        ("/api/v1/audit/export", {"until": "yesterday"}),
        ("/api/v1/audit/proofs/inclusion", {"index": "-1"}),
        ("/api/v1/audit/proofs/inclusion", {"index": "0", "tree_size": "999999"}),
        ("/api/v1/audit/proofs/consistency", {"first": "0"}),
        ("/api/v1/audit/proofs/consistency", {"first": "5", "second": "2"}),
        ("/api/v1/audit/events", {"limit": "100000"}),
        ("/api/v1/audit/events", {"run_id": "x' OR 1=1 --"}),
        ("/api/v1/audit/events", {"action": "\x00"}),
    ],
)
def test_malformed_audit_queries_get_a_precise_422(
    client: TestClient, path: str, params: dict[str, str]
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]


def test_the_audit_trail_is_for_auditors_only(client: TestClient) -> None:
    token = principal_token(client, "pia", [("data_scientist", "retail")])
    auditor = principal_token(client, "quinn", [("auditor", "*")])
    refused = client.get("/api/v1/audit/verify", headers=as_caller(client, token))
    allowed = client.get("/api/v1/audit/verify", headers=as_caller(client, auditor))
    assert refused.status_code == 403
    assert allowed.status_code == 200
    assert allowed.json()["valid"] is True


@pytest.mark.parametrize("damage", ["drop_record", "drop_trailer", "garbage", "swap"])
def test_damaged_exports_are_refused(client: TestClient, tmp_path: Path, damage: str) -> None:
    # Given a JSONL export
    principal_token(client, "rita", [("auditor", "*")])
    key = load_public_key(
        client.get("/api/v1/audit/checkpoints/latest").json()["public_key"].encode()
    )
    lines = client.get("/api/v1/audit/export").content.splitlines(keepends=True)
    # When it is damaged
    if damage == "drop_record":
        del lines[3]
    elif damage == "drop_trailer":
        del lines[-1]
    elif damage == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        lines = [b"\x00\x01 not an export\n"]
    export = tmp_path / "damaged.jsonl"
    export.write_bytes(b"".join(lines))
    result = verify_export(export, key)
    # Then it does not verify, and a dropped or moved record is named
    assert not result.valid
    assert result.problem
    # (line 0 is the header, so line 3 is record 2)
    assert result.first_invalid == {"drop_record": 2, "swap": 1}.get(damage)


def test_a_rewritten_history_is_caught_by_the_signed_checkpoint(
    client: TestClient, settings: Settings
) -> None:
    # Given a trail behind a signed checkpoint
    principal_token(client, "sam", [("auditor", "*")])
    signed = client.get("/api/v1/audit/checkpoints/latest").json()["size"]
    trail: AuditLog = client.app.state.services.audit  # type: ignore[attr-defined]
    # When someone with write access to the store rewrites record 1 and re-chains everything
    # after it, stored hashes and head included (all but the signature, which needs the key)
    db = Database(settings.sqlalchemy_url)
    try:
        with db.session(write=True) as session:
            rows = session.execute(
                text("SELECT sequence, leaf FROM audit_records ORDER BY sequence")
            ).all()
            frontier, prev = Frontier(), bytes(32)
            for sequence, leaf in rows:
                body = bytes(leaf)[32:]
                if sequence == 1:
                    body = body.replace(b'"decision":"ok"', b'"decision":"no"')
                new_leaf = prev + body
                prev = leaf_hash(new_leaf)
                frontier.append(prev)
                session.execute(
                    text("UPDATE audit_records SET leaf = :l, leaf_hash = :h WHERE sequence = :s"),
                    {"l": new_leaf, "h": prev, "s": sequence},
                )
            session.execute(
                update(AuditHead).values(
                    root_hash=frontier.root(),
                    last_hash=prev,
                    frontier=[h.hex() for h in frontier.subtrees],
                )
            )
    finally:
        db.dispose()
    result = trail.verify()
    # Then the chain is whole again, but it no longer produces the signed root
    assert not result.valid
    assert result.first_invalid == signed - 1
    assert "signed checkpoint" in (result.problem or "")


def test_events_are_paged_in_sequence_order(client: TestClient) -> None:
    principal_token(client, "tom", [("auditor", "*")])
    first = client.get("/api/v1/audit/events", params={"limit": 2}).json()
    second = client.get(
        "/api/v1/audit/events", params={"limit": 2, "after": first["next_after"]}
    ).json()
    sequences = [e["sequence"] for e in first["items"] + second["items"]]
    assert sequences == [0, 1, 2, 3]
