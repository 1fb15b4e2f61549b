"""Governed promotions: evidence before approval, signed releases, MLflow aliases, archive,
rollback, and refusals of tampered artifacts, all through the real API and MLflow store."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import update

from audit import CheckpointSigner
from connectors.registry import RegistryError, Release, SignedRelease
from control_plane.inventory.releases import load_release_signer, sign_release
from control_plane.runs import RunState
from control_plane.settings import Settings
from control_plane.store.models import EvidenceArtifact
from tests.approvals.helpers import decide, people
from tests.conftest import drain
from tests.serving.conftest import Governed


def _mlflow(governed: Governed) -> MlflowClient:
    return governed.registry.client


def test_low_risk_staging_promotion_runs_end_to_end(governed: Governed, settings: Settings) -> None:
    # Given an evaluated low-risk version
    governed.model("credit")
    version = governed.register("credit")
    # When it is promoted to staging (no approver needed for low risk)
    run = governed.run("promote", "model:credit", version=version, target_stage="staging")
    # Then the run passed the evidence gate and an approval gate that asks no one, and executed
    assert run["state"] == RunState.SUCCEEDED, run
    assert [(g["gate"], g["status"]) for g in run["gates"]] == [
        ("promotion_evidence", "pass"),
        ("approval", "pass"),
    ]
    row = governed.version("credit", version)
    assert row.stage == "staging"
    promotion = row.evidence["promotion"]
    assert promotion["stage"] == "staging"
    assert promotion["run_id"] == run["id"]
    assert promotion["approval_id"] is None
    # And the release signature verifies under the release key and names the artifact
    signed = SignedRelease.from_json(promotion["signature"])
    assert signed.verify(load_release_signer(settings).public_key)
    assert signed.release.artifact_digest == row.artifact_digest
    assert signed.release.registry_uri == row.registry_uri
    # And MLflow's staging alias points at the version, tagged with the run and evidence link
    uri = governed.registry_uri("credit", version)
    aliased = _mlflow(governed).get_model_version_by_alias("credit", "staging")
    assert int(aliased.version) == uri.version
    assert aliased.tags["govplane.release_run_id"] == run["id"]
    assert aliased.tags["govplane.evidence"] == f"/api/v1/models/credit/versions/{version}"
    # And the promotion is in the audit trail
    (event,) = governed.audit("model.promote")
    assert event["run_id"] == run["id"]
    assert event["payload"]["artifact_digest"] == row.artifact_digest


def test_a_version_without_evidence_is_refused_before_any_approval(governed: Governed) -> None:
    # Given a medium-risk version whose evaluation failed
    governed.model("credit", "medium")
    version = governed.register("credit", evaluation="failed")
    # When its promotion is processed
    run = governed.run("promote", "model:credit", version=version, target_stage="staging")
    # Then the evidence gate fails it, naming what is missing, and no approval is opened
    assert run["state"] == RunState.FAILED
    (gate,) = run["gates"]
    assert gate["gate"] == "promotion_evidence"
    assert "a passed evaluation (latest: failed)" in gate["reasons"][0]
    assert governed.client.get("/api/v1/approvals").json()["items"] == []
    assert governed.version("credit", version).stage == "none"


def test_a_promotion_needs_a_version(governed: Governed) -> None:
    governed.model("credit")
    body = {"kind": "promote", "target": "model:credit", "params": {"target_stage": "staging"}}
    missing = governed.client.post("/api/v1/runs", json=body)
    assert missing.status_code == 422
    assert "params.version" in missing.json()["detail"]
    # And a version the model does not have is invalid input too: the body names it
    body["params"] = {"target_stage": "staging", "version": 9}
    unknown = governed.client.post("/api/v1/runs", json=body)
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "model 'credit' has no version 9"


def test_second_production_promotion_archives_the_first_and_rollback_restores_it(
    governed: Governed,
) -> None:
    # Given version 1 of a model in production
    governed.model("credit", "medium")
    first = governed.register("credit")
    second = governed.register("credit", c=0.01)
    governed.promote_to_production("credit", first)
    # When version 2 is promoted to production after approval
    governed.promote_to_production("credit", second)
    # Then version 1 is archived, in the inventory and in MLflow, and the alias moved
    assert governed.version("credit", first).stage == "archived"
    assert governed.version("credit", second).stage == "production"
    assert governed.version("credit", second).evidence["promotion"]["approval_id"] is not None
    client = _mlflow(governed)
    first_uri, second_uri = (governed.registry_uri("credit", v) for v in (first, second))
    assert int(client.get_model_version_by_alias("credit", "production").version) == (
        second_uri.version
    )
    old = client.get_model_version("credit", str(first_uri.version))
    assert old.tags["govplane.stage"] == "archived"
    # When version 1 is rolled back to, governed the same way
    governed.promote_to_production("credit", first, rollback=True)
    # Then it is production again and version 2 archived
    assert governed.version("credit", first).stage == "production"
    assert governed.version("credit", second).stage == "archived"
    assert int(client.get_model_version_by_alias("credit", "production").version) == (
        first_uri.version
    )
    events = governed.audit("model.promote")
    assert [e["payload"]["archived_version"] for e in events] == [None, first, second]
    assert [e["payload"]["rollback"] for e in events] == [False, False, True]


def test_a_rollback_to_a_newer_version_is_refused(governed: Governed) -> None:
    governed.model("credit")
    version = governed.register("credit")
    run = governed.run(
        "promote", "model:credit", version=version, target_stage="staging", rollback=True
    )
    assert run["state"] == RunState.FAILED
    assert "rollback goes back to a version older" in run["error"]
    (refusal,) = governed.audit("model.promote")
    assert refusal["decision"] == "deny"


def test_a_tampered_artifact_is_not_promoted(governed: Governed) -> None:
    # Given a registered version whose model file was changed in the artifact store
    governed.model("credit")
    version = governed.register("credit")
    governed.tamper("credit", version)
    # When it is promoted
    run = governed.run("promote", "model:credit", version=version, target_stage="staging")
    # Then the promotion is refused with the reason audited, and no alias is set
    assert run["state"] == RunState.FAILED
    assert "is not the recorded" in run["error"]
    (refusal,) = governed.audit("model.promote")
    assert refusal["decision"] == "deny"
    assert "is not the recorded" in refusal["reasons"][0]
    assert governed.version("credit", version).stage == "none"
    assert _mlflow(governed).get_registered_model("credit").aliases == {}


def test_the_registry_sets_no_stage_alias_without_a_signed_release(governed: Governed) -> None:
    # Given a registered version that was never promoted
    governed.model("credit")
    version = governed.register("credit")
    row = governed.version("credit", version)
    assert row.registry_uri is not None
    assert row.artifact_digest is not None
    release = Release(
        "credit", version, row.registry_uri, row.artifact_digest, "production", None, "0" * 32
    )
    # When someone signs the release with another key, or forges its signature
    stranger = sign_release(CheckpointSigner(Ed25519PrivateKey.generate()), release)
    forged = SignedRelease(release, stranger.key_id, b"\0" * 64)
    # Then the registry connector refuses to set the production alias
    for attempt in (stranger, forged):
        with pytest.raises(RegistryError, match="only a completed promotion"):
            governed.registry.release(attempt, "/evidence")
    assert _mlflow(governed).get_registered_model("credit").aliases == {}


def _card(governed: Governed, version: int, card_format: str = "json") -> str:
    response = governed.client.get(
        f"/api/v1/models/credit/versions/{version}/card", params={"format": card_format}
    )
    assert response.status_code == 200, response.text
    return response.text


def test_a_promoted_versions_model_card_names_its_approvers(governed: Governed) -> None:
    # Given an evaluated version whose production promotion waits for a model validator
    governed.model("credit")
    version = governed.register("credit")
    evaluated = json.loads(_card(governed, version))
    run = governed.run("promote", "model:credit", version=version, target_stage="production")
    assert run["state"] == RunState.AWAITING_APPROVAL, run
    (approval,) = governed.client.get("/api/v1/approvals").json()["items"]
    # When a validator who is not the submitter approves it, with a comment
    vera = people(governed.client, ("vera", ["model_validator"]))["vera"]
    assert decide(governed.client, approval["id"], vera, "approve", "fair").status_code == 201
    drain(governed.client)
    # Then the version's card is the evaluation's card with her decision for production added
    card = json.loads(_card(governed, version))
    (decided,) = card.pop("approvals")
    assert (decided["approver"], decided["decision"]) == ("vera", "approve")
    assert (decided["stage"], decided["comment"]) == ("production", "fair")
    assert evaluated.pop("approvals") == []
    assert card == evaluated
    assert "vera" in _card(governed, version, "markdown")
    assert "vera" in _card(governed, version, "html")
    # And the promotion names that card by its digests, kept as the promotion run's evidence
    promotion = governed.version("credit", version).evidence["promotion"]
    kept = governed.client.get(f"/api/v1/runs/{run['id']}/evidence").json()
    digests = {item["name"]: item["digest"] for item in kept}
    assert promotion["model_card"]["json"] == digests["model_card.json"]


def test_a_promotion_whose_model_card_was_altered_is_refused_before_release(
    governed: Governed,
) -> None:
    # Given an evaluated version whose kept model card was changed in the store afterwards
    governed.model("credit")
    version = governed.register("credit")
    evaluation = governed.version("credit", version).evidence["evaluation"]
    with governed.services.db.session(write=True) as session:
        session.execute(
            update(EvidenceArtifact)
            .where(EvidenceArtifact.run_id == evaluation["run_id"])
            .values(content=b"{}")
        )
    # When it is promoted to staging
    run = governed.run("promote", "model:credit", version=version, target_stage="staging")
    # Then the run fails naming the card, and nothing was released in MLflow
    assert run["state"] == RunState.FAILED, run
    assert "does not match its digest" in run["error"]
    assert governed.version("credit", version).stage == "none"
    with pytest.raises(MlflowException):
        _mlflow(governed).get_model_version_by_alias("credit", "staging")
