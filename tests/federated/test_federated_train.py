"""Federated training as one governed run, with real SuperLink and SuperNode processes.

Accuracy margin: with the same features, a federated logistic regression (FedAvg, a few
rounds of local gradient descent) reaches within 0.03 of the accuracy of a centralized
scikit-learn logistic regression fitted on the union of the sites' rows.
"""

from __future__ import annotations

import threading
import uuid
from functools import partial
from typing import Any

import numpy as np
import pandas
import pytest
from opacus.accountants import RDPAccountant
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from connectors.registry import ModelUri
from control_plane.connectors import model_registry
from control_plane.sample_data import ADULT_SITE_CATEGORICAL as CATEGORICAL
from control_plane.sample_data import ADULT_SITE_NUMERIC as NUMERIC
from control_plane.sample_data import ADULT_WORKCLASS_SITES as WORKCLASS_SITES
from control_plane.store.models import LineageEvent
from privacy.federated import Deployment, FeatureSpec, SiteStatistics
from tests.federated.conftest import Federation, adult_partition, asked_to_train, watching

ACCURACY_MARGIN = 0.03


def _centralized_accuracy(frames: list[pandas.DataFrame]) -> float:
    """A scikit-learn logistic regression fitted on all the sites' rows, pooled."""
    spec = FeatureSpec.merge(
        "income",
        ">50K",
        [SiteStatistics.of(f, NUMERIC, CATEGORICAL, min_category_count=10) for f in frames],
    )
    pooled = pandas.concat(frames, ignore_index=True)
    features, labels = spec.encode(pooled), spec.labels(pooled)
    model = LogisticRegression(max_iter=2000).fit(features, labels)
    return float(np.mean(model.predict(features) == labels))


@pytest.mark.timeout(1500)
def test_three_sites_train_one_model_and_a_forbidding_site_is_excluded(
    federation: Federation,
) -> None:
    # Given three sites holding Adult partitioned by workclass, and a fourth site whose local
    # policy requires differential privacy
    for site, workclasses in WORKCLASS_SITES.items():
        federation.add_site(site, adult_partition(4000, workclasses, False), "internal")
    federation.add_site(
        "strict-site",
        adult_partition(4000, ("Private",), False).head(300),
        "internal",
        require_dp=True,
    )
    federation.register_model("income-federated")
    federation.start_flower()
    # When a federated run without DP trains on all four datasets
    run = federation.train(
        "income-federated",
        [*WORKCLASS_SITES, "strict-site"],
        rounds=2,
        local_epochs=3,
        learning_rate=0.2,
        min_sites=3,
        secagg=True,
    )
    # Then it succeeds with the three sites, and says why the fourth was excluded
    assert run["state"] == "succeeded", run["error"]
    outputs = run["outputs"]
    assert outputs["participants"] == sorted(WORKCLASS_SITES)
    assert "requires differential privacy" in outputs["excluded"]["strict-site"]
    excluded = federation.client.get(
        "/api/v1/audit/events", params={"action": "federated.site.exclude"}
    ).json()["items"]
    assert [e["payload"]["site"] for e in excluded] == ["strict-site"]
    # And every round is an audit record naming its participants
    rounds = federation.client.get(
        "/api/v1/audit/events", params={"action": "federated.round"}
    ).json()["items"]
    assert [r["payload"]["round"] for r in rounds] == [1, 2]
    assert all(r["payload"]["participants"] == sorted(WORKCLASS_SITES) for r in rounds)
    assert all(r["payload"]["secagg"] for r in rounds)
    # And the model version carries the training facts, privacy mode federated
    version = federation.client.get("/api/v1/models/income-federated/versions/1").json()
    training = version["evidence"]["training"]
    assert training["privacy"]["mode"] == "federated"
    assert training["run_id"] == run["id"]
    assert len(training["dataset_ids"]) == 3
    # And the registered model predicts from the raw frame, within the documented margin of
    # centralized training on the same rows
    frames = [federation.partitions[site] for site in WORKCLASS_SITES]
    pooled = pandas.concat(frames, ignore_index=True)
    loaded = model_registry(federation.settings).load(
        ModelUri.parse(version["registry_uri"]), version["artifact_digest"]
    )
    predicted = loaded.model.predict(pooled.drop(columns=["income"]))
    federated = float(np.mean(predicted == (pooled["income"] == ">50K").to_numpy()))
    assert federated >= _centralized_accuracy(frames) - ACCURACY_MARGIN
    # And the lineage links the three datasets to the model version, and not the excluded one
    upstream = _upstream(federation, "model:income-federated:1")
    assert {f"dataset:govplane://datasets:{s}-data" for s in WORKCLASS_SITES} <= upstream
    assert "dataset:govplane://datasets:strict-site-data" not in upstream


def _upstream(federation: Federation, node: str) -> set[str]:
    """The ids of the lineage nodes up to two steps upstream of ``node``."""
    graph = federation.client.get(
        "/api/v1/lineage/graph", params={"node": node, "direction": "upstream", "depth": 2}
    )
    assert graph.status_code == 200, graph.text
    return {n["id"] for n in graph.json()["nodes"]}


def _kill_when_training(
    deployment: Deployment, site: str, in_round: int, done: threading.Event
) -> None:
    """Kill the site's SuperNode as soon as its log shows a training message of ``in_round``."""
    if asked_to_train(deployment, site, in_round, done):
        deployment.kill(site)


def _train_losing_sites(
    federation: Federation, model: str, on_site_loss: str, victims: list[str], in_round: int = 1
) -> dict[str, Any]:
    """Three sites holding confidential Adult partitions (policy: SecAgg+ and DP required)
    train ``model`` in two rounds with a quorum of two; each victim's SuperNode is killed as
    soon as it is asked to train in ``in_round``."""
    for site, workclasses in WORKCLASS_SITES.items():
        federation.add_site(site, adult_partition(3000, workclasses, True), "confidential")
    federation.register_model(model)
    deployment = federation.start_flower()
    with watching(*(partial(_kill_when_training, deployment, v, in_round) for v in victims)):
        run = federation.train(
            model,
            WORKCLASS_SITES,
            rounds=2,
            min_sites=2,
            on_site_loss=on_site_loss,
            dp={"epsilon": 2.0, "delta": 1e-6, "clipping_norm": 5.0},
        )
    assert deployment.dead() == victims
    return run


@pytest.mark.timeout(1500)
@pytest.mark.parametrize(
    ("on_site_loss", "victims", "why"),
    [
        ("fail", ["self-employed"], "fail on a lost site"),
        ("continue", ["public-sector", "self-employed"], "quorum of 2"),
    ],
    ids=["policy-fail", "below-quorum"],
)
def test_a_run_that_loses_sites_its_policy_cannot_spare_fails_and_spends_nothing(
    federation: Federation, on_site_loss: str, victims: list[str], why: str
) -> None:
    # Given three confidential sites, when SuperNodes are killed mid-run either under a policy
    # to fail on a lost site, or under a policy to continue but leaving fewer than min_sites
    run = _train_losing_sites(federation, "income-resilient", on_site_loss, victims)
    # Then the run fails, saying why, and registers no model version
    assert run["state"] == "failed"
    assert why in run["error"]
    versions = federation.client.get("/api/v1/models/income-resilient/versions/1")
    assert versions.status_code == 404
    # And the DP spend reserved on every site's dataset is released, nothing spent
    for site in WORKCLASS_SITES:
        budget = _budget(federation, site)
        assert budget["epsilon"]["spent"] == 0.0
        assert budget["epsilon"]["reserved"] == 0.0
        assert [e["state"] for e in budget["entries"]] == ["released"]
    # And no round was aggregated: the lineage event that fails the run names no input
    assert run["outputs"] == {"inputs_used": []}
    assert _lineage_inputs(federation, run["id"], "FAIL") == []


@pytest.mark.timeout(1500)
def test_a_supernode_killed_mid_run_is_survived_by_a_run_whose_policy_is_to_continue(
    federation: Federation,
) -> None:
    # Given three confidential sites, when a run whose policy is to continue with a quorum of
    # two loses a SuperNode while it trains
    victim = "self-employed"
    survivors = sorted(set(WORKCLASS_SITES) - {victim})
    run = _train_losing_sites(federation, "income-quorum", "continue", [victim])
    # Then it succeeds with the two remaining sites, and records the lost site's missed rounds
    assert run["state"] == "succeeded", run["error"]
    outputs = run["outputs"]
    assert outputs["participants"] == survivors
    assert outputs["lost"] == {victim: [1, 2]}
    # And every round is an audit record naming the sites that contributed and the lost one
    rounds = federation.client.get(
        "/api/v1/audit/events", params={"action": "federated.round"}
    ).json()["items"]
    assert [r["payload"]["round"] for r in rounds] == [1, 2]
    assert all(r["payload"]["aggregated"] for r in rounds)
    assert all(r["payload"]["participants"] == survivors for r in rounds)
    assert all(r["payload"]["lost"] == [victim] for r in rounds)
    # And the DP spend is charged to the surviving sites' datasets only
    epsilon = outputs["epsilon_spent"]
    assert epsilon > 0
    assert outputs["dp"]["epsilon_per_site"] == {victim: 0.0, **dict.fromkeys(survivors, epsilon)}
    for site in survivors:
        budget = _budget(federation, site)
        assert budget["epsilon"]["spent"] == pytest.approx(epsilon)
        assert budget["epsilon"]["reserved"] == 0.0
    lost_budget = _budget(federation, victim)
    assert lost_budget["epsilon"]["spent"] == 0.0
    assert [e["state"] for e in lost_budget["entries"]] == ["released"]
    # And the model version's evidence, and the lineage event that completes the run, name the
    # datasets that contributed
    version = federation.client.get("/api/v1/models/income-quorum/versions/1").json()
    training = version["evidence"]["training"]
    assert sorted(training["sites"]) == survivors
    assert training["lost"] == {victim: [1, 2]}
    assert _lineage_inputs(federation, run["id"], "COMPLETE") == [f"{s}-data" for s in survivors]
    upstream = _upstream(federation, "model:income-quorum:1")
    assert {f"dataset:govplane://datasets:{s}-data" for s in survivors} <= upstream
    assert f"dataset:govplane://datasets:{victim}-data" not in upstream


@pytest.mark.timeout(1500)
# The ledger's commits are store-specific and covered on both stores above; this charge is not.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_site_lost_after_contributing_is_charged_for_the_rounds_it_contributed(
    federation: Federation,
) -> None:
    # Given three confidential sites, when a run whose policy is to continue loses a SuperNode
    # as round 2 starts, after its round 1 update is in the model
    victim = "self-employed"
    sites = sorted(WORKCLASS_SITES)
    run = _train_losing_sites(federation, "income-partial", "continue", [victim], in_round=2)
    # Then it succeeds, every site contributed, and the lost site missed round 2 only
    assert run["state"] == "succeeded", run["error"]
    outputs = run["outputs"]
    assert outputs["participants"] == sites
    assert outputs["lost"] == {victim: [2]}
    rounds = federation.client.get(
        "/api/v1/audit/events", params={"action": "federated.round"}
    ).json()["items"]
    assert [r["payload"]["participants"] for r in rounds] == [sites, sorted(set(sites) - {victim})]
    # And each dataset is charged what opacus's RDP accountant gives for the rounds its site
    # contributed: one release of the Gaussian mechanism for the lost site, two for the others
    dp = outputs["dp"]
    by_opacus = {}
    for releases in (1, 2):
        accountant = RDPAccountant()
        accountant.history = [(dp["noise_multiplier"], 1.0, releases)]
        by_opacus[releases] = accountant.get_epsilon(delta=dp["delta"])
    expected = {site: by_opacus[1 if site == victim else 2] for site in sites}
    assert dp["epsilon_per_site"] == pytest.approx(expected)
    assert by_opacus[1] < by_opacus[2]
    for site in sites:
        budget = _budget(federation, site)
        assert budget["epsilon"]["spent"] == pytest.approx(expected[site])
        assert budget["epsilon"]["reserved"] == 0.0
    # And the lost site's dataset is upstream of the model: its round 1 update is in it
    upstream = _upstream(federation, "model:income-partial:1")
    assert {f"dataset:govplane://datasets:{s}-data" for s in sites} <= upstream


def test_a_run_failing_after_a_round_is_charged_for_that_round(federation: Federation) -> None:
    # Given three confidential sites, when a run whose policy is to fail on a lost site loses a
    # SuperNode as round 2 starts, after round 1 was aggregated and sent to every site
    victim = "self-employed"
    run = _train_losing_sites(federation, "income-half", "fail", [victim], in_round=2)
    # Then it fails, registers no version, and names every site's dataset for its lineage
    assert run["state"] == "failed"
    assert "fail on a lost site" in run["error"]
    assert federation.client.get("/api/v1/models/income-half/versions/1").status_code == 404
    assert _lineage_inputs(federation, run["id"], "FAIL") == sorted(
        f"{site}-data" for site in WORKCLASS_SITES
    )
    # And each dataset is charged one release of the Gaussian mechanism, as opacus's RDP
    # accountant gives it: the round 1 aggregate was noised and every site received it
    rounds = {
        e["payload"]["round"]: e["payload"]
        for e in federation.client.get(
            "/api/v1/audit/events", params={"action": "federated.round"}
        ).json()["items"]
    }
    first = rounds[1]
    assert first["aggregated"]
    assert not rounds[2]["aggregated"]
    for site in WORKCLASS_SITES:
        budget = _budget(federation, site)
        assert [e["state"] for e in budget["entries"]] == ["committed"]
        assert budget["epsilon"]["reserved"] == 0.0
        accountant = RDPAccountant()
        accountant.history = [(first["dp"]["noise_multiplier"], 1.0, 1)]
        assert budget["epsilon"]["spent"] == pytest.approx(accountant.get_epsilon(delta=1e-6))


def _lineage_inputs(federation: Federation, run_id: str, event_type: str) -> list[str]:
    """The names of the datasets the run's lineage event of ``event_type`` reads."""
    services = federation.client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        event = session.scalars(
            select(LineageEvent.payload).where(
                LineageEvent.run_id == str(uuid.UUID(run_id)),
                LineageEvent.event_type == event_type,
            )
        ).one()
    return sorted(d["name"] for d in event["inputs"])


def _budget(federation: Federation, site: str) -> dict[str, Any]:
    found = federation.client.get(f"/api/v1/privacy/budgets/{dataset_ids_of(federation, site)}")
    assert found.status_code == 200, found.text
    budget: dict[str, Any] = found.json()
    return budget


def dataset_ids_of(federation: Federation, site: str) -> str:
    found = federation.client.get("/api/v1/sites", params={"limit": 200}).json()["items"]
    [held] = next(s for s in found if s["name"] == site)["datasets"]
    dataset_id: str = held["id"]
    return dataset_id
