"""Homomorphic aggregation of federated updates (TenSEAL CKKS), required by the policy bundle.

CKKS tolerance: with the default parameters (scale 2^40) a sum of a few weighted updates and
one plaintext division is exact to about 1e-7 per value; two rounds of training on decrypted
models stay within 1e-3 of the same training in the clear.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import yaml

from connectors.registry import ModelUri
from control_plane.connectors import model_registry
from control_plane.sample_data import ADULT_WORKCLASS_SITES as WORKCLASS_SITES
from policies import DEFAULT_BUNDLE_DIR
from privacy.federated import FederatedPlan
from privacy.federated.server_app import encrypted_aggregator
from privacy.he import KeyHolder, SecretKeyExposureError
from tests.conftest import drain
from tests.federated.conftest import Federation, adult_partition

CKKS_TOLERANCE = 1e-3


def _require_he_for_internal_data(federation: Federation) -> None:
    """Propose and approve a bundle whose rule for internal data sets ``federated_he``."""
    files = {
        path.name: path.read_text()
        for path in DEFAULT_BUNDLE_DIR.iterdir()
        if path.is_file() and path.suffix in {".conf", ".csv", ".yaml"}
    }
    privacy = yaml.safe_load(files["privacy.yaml"])
    privacy["classifications"]["internal"]["federated_he"] = True
    files["privacy.yaml"] = yaml.safe_dump(privacy)
    proposed = federation.client.post("/api/v1/policies", json={"files": files})
    assert proposed.status_code == 202, proposed.text
    drain(federation.client)
    services = federation.client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        services.runs.resume(session, proposed.json()["run"]["id"], approved=True, reason="ok")
    drain(federation.client)
    active = federation.client.get("/api/v1/policies").json()["active"]["version"]
    assert active == proposed.json()["version"]


def _train(federation: Federation, model: str, **params: Any) -> dict[str, Any]:
    federation.register_model(model)
    return federation.train(model, WORKCLASS_SITES, rounds=2, min_sites=3, **params)


def _weights(federation: Federation, model: str) -> tuple[np.ndarray[Any, Any], ...]:
    version = federation.client.get(f"/api/v1/models/{model}/versions/1").json()
    loaded = model_registry(federation.settings).load(
        ModelUri.parse(version["registry_uri"]), version["artifact_digest"]
    )
    classifier = loaded.model.named_steps["classifier"]
    return classifier.coef_, classifier.intercept_


@pytest.mark.timeout(1500)
# Nothing here is store-specific (the ledger and policy changes are covered on both stores).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_policy_requiring_he_trains_the_model_plain_fedavg_trains(
    federation: Federation,
) -> None:
    # Given three sites holding internal Adult partitions, and a model trained on them with
    # plain FedAvg
    for site, workclasses in WORKCLASS_SITES.items():
        federation.add_site(site, adult_partition(3000, workclasses, False), "internal")
    federation.start_flower()
    plain = _train(federation, "income-plain")
    assert plain["state"] == "succeeded", plain["error"]
    assert plain["outputs"]["he"] is None
    # When the policy comes to require homomorphic aggregation for internal data
    _require_he_for_internal_data(federation)
    # Then a run that declines it is refused before training
    declined = _train(federation, "income-declined", he=False)
    assert declined["state"] == "failed"
    assert "requires homomorphic aggregation" in declined["error"]
    # And the same training now aggregates encrypted updates, and yields the same model
    encrypted = _train(federation, "income-he")
    assert encrypted["state"] == "succeeded", encrypted["error"]
    for ours, reference in zip(
        _weights(federation, "income-he"), _weights(federation, "income-plain"), strict=True
    ):
        np.testing.assert_allclose(ours, reference, rtol=0, atol=CKKS_TOLERANCE)
    # And the ServerApp summed them with a public context only (no secret key), which the
    # evidence, the audit of the training and every round record
    he = encrypted["outputs"]["he"]
    assert he["scheme"] == "ckks"
    assert he["server_context_public"] is True
    version = federation.client.get("/api/v1/models/income-he/versions/1").json()
    assert version["evidence"]["training"]["privacy"]["he"] == he
    assert version["evidence"]["training"]["privacy"]["secagg"] is False
    trained = federation.client.get(
        "/api/v1/audit/events", params={"action": "model.train", "run_id": encrypted["id"]}
    ).json()["items"]
    assert [t["payload"]["privacy"]["he"] for t in trained] == [he]
    rounds = federation.client.get(
        "/api/v1/audit/events", params={"action": "federated.round", "run_id": encrypted["id"]}
    ).json()["items"]
    assert [r["payload"]["he"] for r in rounds] == [True, True]
    # And with DP, the sites clip their updates before encrypting them and the server adds the
    # noise to the encrypted sum; the spend is charged as without encryption
    noised = _train(federation, "income-he-dp", dp={"epsilon": 2.0, "delta": 1e-6})
    assert noised["state"] == "succeeded", noised["error"]
    assert noised["outputs"]["he"]["server_context_public"] is True
    assert noised["outputs"]["dp"]["noise_multiplier"] > 0
    assert noised["outputs"]["epsilon_spent"] == pytest.approx(2.0, rel=0.05)
    # And the sites share one key, in each site's own directory; the server's context is the
    # public one written beside it
    deployment = federation.deployment
    assert deployment is not None
    keys = {deployment.ckks_key(site).read_bytes() for site in WORKCLASS_SITES}
    assert len(keys) == 1
    assert KeyHolder.load(keys.pop())
    public = deployment.ckks_key(sorted(WORKCLASS_SITES)[0], ".pub").read_bytes()
    assert he["public_context_sha256"] == hashlib.sha256(public).hexdigest()


def test_the_server_takes_only_one_public_context_shared_by_all_sites() -> None:
    keys = KeyHolder()
    public = keys.public_context()
    assert encrypted_aggregator({"a": public, "b": public}, ["a", "b"]).is_public
    with pytest.raises(SecretKeyExposureError):
        encrypted_aggregator({"a": keys.secret_context()}, ["a"])
    with pytest.raises(ValueError, match="same CKKS public context"):
        encrypted_aggregator({"a": public, "b": KeyHolder().public_context()}, ["a", "b"])
    with pytest.raises(ValueError, match="same CKKS public context"):
        encrypted_aggregator({"a": public}, ["a", "b"])


def test_a_plan_has_one_secure_aggregation() -> None:
    with pytest.raises(ValueError, match="not both"):
        FederatedPlan(
            sites={},
            label="income",
            positive_label=">50K",
            numeric=[],
            categorical=[],
            rounds=1,
            local_epochs=1,
            min_sites=1,
            on_site_loss="fail",
            secagg=True,
            he=True,
            dp=None,
            output="outcome.json",
        )
