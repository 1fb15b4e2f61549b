"""DataHub output, checked by acryl-datahub's own validation (``datahub check metadata-file``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import RunState

from lineage import (
    DATASET_NAMESPACE,
    DEPLOYMENT_NAMESPACE,
    MODEL_NAMESPACE,
    ColumnSource,
    DatasetFacts,
    GateOutcome,
    GovernedRunFacts,
    build_run_event,
    build_transport,
)

DATAHUB = [str(Path(sys.executable).with_name("datahub"))]


def _facts(kind: str, inputs: list[DatasetFacts], outputs: list[DatasetFacts]) -> GovernedRunFacts:
    return GovernedRunFacts(
        run_id="0192f1e0-0000-7000-8000-000000000001",
        event_type=RunState.COMPLETE,
        event_time=datetime(2026, 5, 1, 12, tzinfo=UTC),
        job_namespace="govplane.retail",
        job_name=f"{kind}.model.credit",
        run_kind=kind,
        domain="retail",
        state="succeeded",
        submitted_by="eric",
        bundle_version="sha256:abc",
        inputs=inputs,
        outputs=outputs,
        classification="internal",
        privacy_mode="dp",
        epsilon_spent=1.0,
        gates=[GateOutcome("privacy_mode", "pass", {"epsilon": 1.0})],
    )


ADULT = DatasetFacts(
    DATASET_NAMESPACE,
    "adult",
    columns=[("age", "int"), ("sex", "string"), ("income", "string")],
    owner="olga",
    location="file:///data/adult.data",
    classification="internal",
    domain="retail",
    pii_columns=["sex"],
)
FEATURES = DatasetFacts(
    DATASET_NAMESPACE,
    "adult_features",
    columns=[("age", "int"), ("sex_hash", "string")],
    column_sources={
        "age": [ColumnSource(DATASET_NAMESPACE, "adult", "age")],
        "sex_hash": [ColumnSource(DATASET_NAMESPACE, "adult", "sex", "MASKED")],
    },
)
MODEL = DatasetFacts(MODEL_NAMESPACE, "credit:3", owner="eric")
DEPLOYMENT = DatasetFacts(DEPLOYMENT_NAMESPACE, "credit-prod")


def _aspect(record: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record["aspect"]["value"])
    return value


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DATAHUB, "check", "metadata-file", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_mcp_file_of_a_run_chain_passes_datahubs_check(tmp_path: Path) -> None:
    # Given events for ingest (column lineage), training and deployment, sent to a DataHub file
    path = tmp_path / "datahub" / "mcps.json"
    transport = build_transport({"type": "datahub-file", "path": str(path)})
    transport.emit(build_run_event(_facts("ingest", [ADULT], [FEATURES])))
    transport.emit(build_run_event(_facts("train", [FEATURES], [MODEL])))
    transport.emit(build_run_event(_facts("deploy", [MODEL], [DEPLOYMENT])))
    # When acryl-datahub checks the file
    result = _check(path)
    # Then it accepts it
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(path.read_text())
    aspects = {(r["entityType"], r["aspectName"]) for r in records}
    assert ("dataJob", "dataJobInputOutput") in aspects
    assert ("dataset", "upstreamLineage") in aspects
    assert ("dataset", "schemaMetadata") in aspects
    assert ("mlModel", "mlModelProperties") in aspects
    assert ("mlModelDeployment", "mlModelDeploymentProperties") in aspects
    # The model is linked to its training job and to the deployment serving it
    models = [r for r in records if r["aspectName"] == "mlModelProperties"]
    linked = [_aspect(m) for m in models]
    assert any(m.get("trainingJobs") for m in linked)
    assert any(
        m.get("deployments")
        == ["urn:li:mlModelDeployment:(urn:li:dataPlatform:govplane,credit-prod,PROD)"]
        for m in linked
    )
    # Column lineage reaches DataHub as fine-grained lineage
    upstream = next(
        _aspect(r)
        for r in records
        if r["aspectName"] == "upstreamLineage" and "adult_features" in r["entityUrn"]
    )
    assert len(upstream["fineGrainedLineages"]) == 2


def test_datahubs_check_rejects_a_broken_file(tmp_path: Path) -> None:
    # The check is not a rubber stamp: a proposal whose aspect lacks a required field fails
    path = tmp_path / "mcps.json"
    build_transport({"type": "datahub-file", "path": str(path)}).emit(
        build_run_event(_facts("train", [ADULT], [MODEL]))
    )
    records = json.loads(path.read_text())
    info = next(r for r in records if r["aspectName"] == "dataJobInfo")
    aspect = _aspect(info)
    del aspect["type"]
    info["aspect"]["value"] = json.dumps(aspect)
    path.write_text(json.dumps(records))
    assert _check(path).returncode != 0


class FakeDataHubGms:
    """A fake DataHub metadata service (GMS) on loopback: no DataHub server runs here.

    It answers the two calls acryl-datahub's REST emitter makes (``GET /config`` and
    ``POST /aspects?action=ingestProposal``), records each proposal, and fails the first
    ``failures`` proposals with 503 like a GMS that is down.
    """

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.proposals: list[dict[str, Any]] = []
        gms = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(200, {"noCode": "true", "versions": {}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if gms.failures > 0:
                    gms.failures -= 1
                    self._reply(503, {"message": "unavailable"})
                    return
                gms.proposals.append(body["proposal"])
                self._reply(200, {"value": body["proposal"]["entityUrn"]})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDataHubGms:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_the_rest_emitter_sends_what_datahubs_check_accepts(tmp_path: Path) -> None:
    with FakeDataHubGms() as gms:
        transport = build_transport({"type": "datahub-rest", "server": gms.url})
        transport.emit(build_run_event(_facts("deploy", [MODEL], [DEPLOYMENT])))
    assert {p["entityType"] for p in gms.proposals} >= {"dataJob", "mlModel", "mlModelDeployment"}
    path = tmp_path / "received.json"
    path.write_text(json.dumps(gms.proposals))
    result = _check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_gms_that_is_down_makes_the_send_fail_for_a_retry() -> None:
    with FakeDataHubGms(failures=1) as gms:
        transport = build_transport({"type": "datahub-rest", "server": gms.url})
        with pytest.raises(Exception, match=r"503|navailable"):
            transport.emit(build_run_event(_facts("train", [ADULT], [MODEL])))
        # the next attempt goes through
        transport.emit(build_run_event(_facts("train", [ADULT], [MODEL])))
    assert gms.proposals
