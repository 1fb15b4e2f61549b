"""``govplane demo`` end to end: the whole path walked over a real server on a fresh data
directory, its outcomes checked through the API while the server is still up."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.demo import DEPLOYMENT, MODEL, STEPS, Walk, adult_rows, run_demo
from control_plane.launcher import free_port
from control_plane.sample_data import ADULT_WORKCLASS_SITES


def _outcomes(walk: Walk) -> dict[str, Any]:
    """What the walk left in the control plane, read as the admin while it runs."""
    admin = walk.admin
    versions = {
        mode: admin.call("GET", f"/models/{MODEL}/versions/{number}")
        for mode, number in walk.versions.items()
    }
    approvals = admin.call("GET", "/approvals", params={"status": "approved", "limit": 200})
    (approval,) = approvals["items"]
    deployment = admin.call("GET", f"/deployments/{DEPLOYMENT}")
    features = versions["candidate"]["evidence"]["training"]["features"]
    applicant = adult_rows(0, 2).to_pandas()[features]
    scored = httpx.post(
        deployment["endpoint_url"],
        json={"dataframe_split": applicant.to_dict(orient="split")},
        timeout=60,
    )
    federated = admin.call("GET", "/runs", params={"kind": "federated_train", "limit": 10})
    return {
        "versions": versions,
        "approval": admin.call("GET", f"/approvals/{approval['id']}"),
        "deployment": deployment,
        "prediction": (scored.status_code, scored.json()),
        "federated": federated["items"],
        "audit": admin.call("GET", "/audit/verify"),
        "maturity": admin.call("GET", "/maturity"),
    }


@pytest.mark.timeout(1800)
def test_the_demo_walks_the_whole_governed_path(tmp_path: Path) -> None:
    # Given a fresh data directory and a free port
    lines: list[str] = []
    found: dict[str, Any] = {}

    # When the demo walks the path and exits
    def read_outcomes(walk: Walk) -> None:
        found.update(_outcomes(walk))

    run_demo(tmp_path / "data", "127.0.0.1", free_port(), lines.append, read_outcomes)
    # Then it reported every step in order, and where to look
    finished = [line.split(" ")[0] for line in lines if line[:1] == "[" and ": " in line]
    assert finished == [f"[{n}/{len(STEPS)}]" for n in range(1, len(STEPS) + 1)]
    assert any(line.startswith("Admin token: ") for line in lines)
    assert any("govplane audit verify" in line for line in lines)
    versions = found["versions"]
    # And the plain version failed fairness while its mitigated candidate passed every gate
    plain = versions["plain"]["evidence"]["evaluation"]
    assert (plain["status"], plain["gates"]["fairness"]) == ("failed", "fail")
    candidate = versions["candidate"]["evidence"]
    assert candidate["evaluation"]["status"] == "passed"
    assert set(candidate["evaluation"]["gates"].values()) == {"pass"}
    assert candidate["mitigation"]["parent_version"] == versions["plain"]["version"]
    # And the DP version spent epsilon within what it asked for
    privacy = versions["dp"]["evidence"]["training"]["privacy"]
    assert privacy["mode"] == "dp"
    assert 0 < privacy["epsilon"] <= 3.0
    # And the production promotion was approved by two different people
    approval = found["approval"]
    approvers = {decision["approver"] for decision in approval["decisions"]}
    assert len(approvers) == 2
    assert approval["requested_by"] not in approvers
    assert versions["candidate"]["stage"] == "production"
    # And the deployment serves the candidate and answers a prediction
    deployment = found["deployment"]
    assert deployment["version"] == versions["candidate"]["version"]
    assert deployment["status"] == "ready"
    status, answer = found["prediction"]
    assert status == 200
    assert len(answer["predictions"]) == 2
    # And a federated run succeeded with the three sites
    (federated,) = found["federated"]
    assert federated["state"] == "succeeded"
    assert federated["outputs"]["participants"] == sorted(ADULT_WORKCLASS_SITES)
    # And the audit trail verifies, and maturity has a level
    assert found["audit"]["valid"] is True
    assert found["maturity"]["ai_capability"]["level"] is not None
    assert found["maturity"]["data_governance"]["level"] is not None


def test_a_port_in_use_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    # Given a port something already listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the demo is asked to serve on it
        result = CliRunner().invoke(
            app, ["demo", "--data-dir", str(tmp_path / "data"), "--port", str(port), "--exit"]
        )
    # Then it stops before starting anything, naming the address
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_a_data_dir_that_cannot_be_created_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    # Given a data directory path below a regular file
    blocker = tmp_path / "file"
    blocker.write_text("")
    data_dir = blocker / "data"
    # When the demo is asked to use it
    result = CliRunner().invoke(
        app, ["demo", "--data-dir", str(data_dir), "--port", str(free_port()), "--exit"]
    )
    # Then it says so before starting anything
    assert result.exit_code == 1
    assert f"cannot create the data directory {data_dir}: Not a directory" in result.output
