"""Governed deploys: only a promoted, signed, unchanged version is served; a real local MLflow
scoring server answers predictions; the deployment is in the inventory and the lineage."""

from __future__ import annotations

import httpx
import pytest
from mlflow.pyfunc import load_model

from control_plane.runs import RunState
from tests.serving.conftest import NUMERIC, Governed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # one server start suffices
def test_a_promoted_version_is_served_by_a_real_scoring_server(governed: Governed) -> None:
    # Given version 1 of a medium-risk model promoted to production after approval
    governed.model("credit", "medium")
    version = governed.register("credit")
    governed.promote_to_production("credit", version)
    # When it is deployed locally
    run = governed.run(
        "deploy", "model:credit", version=version, target="local", deployment="credit-prod"
    )
    # Then a scoring server serves it and made its smoke prediction
    assert run["state"] == RunState.SUCCEEDED, run
    outputs = run["outputs"]
    url = outputs["endpoint_url"]
    assert url.startswith("http://127.0.0.1:")
    assert outputs["status"] == "ready"
    # And it answers a prediction for an Adult row as the registered model does
    row = governed.frame.iloc[[7]][[*NUMERIC, "sex", "race"]]
    served = httpx.post(url, json={"dataframe_split": row.to_dict(orient="split")}, timeout=60)
    assert served.status_code == 200, served.text
    folder = governed.registry.download(
        governed.registry_uri("credit", version), governed.settings.data_dir / "check"
    )
    expected = load_model(str(folder)).predict(row)
    assert served.json()["predictions"] == [bool(p) for p in expected]
    assert outputs["smoke_prediction"] in (True, False)
    # And the deployment is in the inventory, the lineage and the audit trail
    shown = governed.client.get("/api/v1/deployments/credit-prod").json()
    assert (shown["model"], shown["version"], shown["target"]) == ("credit", version, "local")
    assert (shown["endpoint_url"], shown["status"], shown["run_id"]) == (url, "ready", run["id"])
    listed = governed.client.get("/api/v1/deployments", params={"model": "credit"}).json()
    assert [d["name"] for d in listed["items"]] == ["credit-prod"]
    graph = governed.client.get(
        "/api/v1/lineage/graph",
        params={"node": "deployment:credit-prod", "direction": "upstream", "depth": 2},
    ).json()
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    job = "job:govplane.retail:deploy.model.credit"  # the graph links data through the run's job
    assert edges == {(f"model:credit:{version}", job), (job, "deployment:credit-prod")}
    (event,) = governed.audit("model.deploy")
    assert event["decision"] == "ok"
    # And undeploying on shutdown stops the server
    governed.services.local_serving.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(url.removesuffix("/invocations") + "/health", timeout=2)


def test_an_unpromoted_version_is_refused(governed: Governed) -> None:
    # Given a version promoted to staging only
    governed.model("credit")
    version = governed.register("credit")
    staged = governed.run("promote", "model:credit", version=version, target_stage="staging")
    assert staged["state"] == RunState.SUCCEEDED
    # When it is deployed (production by default)
    run = governed.run("deploy", "model:credit", version=version, deployment="credit-prod")
    # Then the deploy is refused, the reason audited, and nothing is recorded
    assert run["state"] == RunState.FAILED
    assert "no completed promotion to production" in run["error"]
    (refusal,) = governed.audit("model.deploy")
    assert refusal["decision"] == "deny"
    assert "no completed promotion to production" in refusal["reasons"][0]
    assert governed.client.get("/api/v1/deployments/credit-prod").status_code == 404


def test_an_artifact_changed_after_promotion_is_refused(governed: Governed) -> None:
    # Given a version promoted to production, whose model file is then changed in the store
    governed.model("credit", "medium")
    version = governed.register("credit")
    governed.promote_to_production("credit", version)
    governed.tamper("credit", version)
    # When it is deployed
    run = governed.run("deploy", "model:credit", version=version, deployment="credit-prod")
    # Then the deploy is refused with the changed digest named and audited
    assert run["state"] == RunState.FAILED
    assert "is not the signed" in run["error"]
    (refusal,) = governed.audit("model.deploy")
    assert refusal["decision"] == "deny"
    assert "is not the signed" in refusal["reasons"][0]
    assert governed.client.get("/api/v1/deployments").json()["items"] == []


def test_a_forged_promotion_record_is_refused(governed: Governed) -> None:
    # Given a version whose promotion record was written without the release key
    governed.model("credit", "medium")
    version = governed.register("credit")
    governed.promote_to_production("credit", version)
    with governed.services.db.session(write=True) as session:
        row = session.merge(governed.version("credit", version))
        promotion = dict(row.evidence["promotion"])
        promotion["signature"] = {**promotion["signature"], "stage": "production", "version": 9}
        row.evidence = {**row.evidence, "promotion": promotion}
    # When it is deployed, the signature does not verify and the deploy is refused
    run = governed.run("deploy", "model:credit", version=version, deployment="credit-prod")
    assert run["state"] == RunState.FAILED
    assert "does not verify" in run["error"]
