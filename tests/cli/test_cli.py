"""The govplane command line, against a real ``govplane serve`` process."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.launcher import GOVPLANE, free_ports, init_data_dir, serve
from policies import DEFAULT_BUNDLE_DIR

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``govplane init`` then ``govplane serve`` on a free port; yields (url, admin token)."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    token = init_data_dir(data_dir)
    with serve(data_dir) as running:
        yield running.url, token


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_init_prints_an_admin_token_once_as_json(tmp_path: Path) -> None:
    result = subprocess.run(
        [*GOVPLANE, "init", "--data-dir", str(tmp_path / "d"), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = json.loads(result.stdout)
    assert out["admin_token"].startswith("gp_")
    assert out["bundle_version"].startswith("sha256:")
    assert (tmp_path / "d" / "govplane.db").exists()
    # and the embedded MLflow registry: its SQLite tracking store and artifact folder
    assert (tmp_path / "d" / "mlflow" / "mlflow.db").exists()
    assert (tmp_path / "d" / "mlflow" / "artifacts").is_dir()


def test_init_again_keeps_the_store_and_issues_a_new_token(tmp_path: Path) -> None:
    first = _cli("init", "--data-dir", str(tmp_path), "--json")
    second = _cli("init", "--data-dir", str(tmp_path), "--json")
    assert first[0] == second[0] == 0
    assert json.loads(first[1])["admin_token"] != json.loads(second[1])["admin_token"]


def test_principals_and_tokens_through_the_server(server: tuple[str, str]) -> None:
    url, token = server
    code, out = _cli(
        "principals",
        "create",
        "dana",
        "--role",
        "data_scientist@retail",
        "--attr",
        "clearance=internal",
        "--url",
        url,
        "--token",
        token,
        "--json",
    )
    assert code == 0, out
    dana = json.loads(out)
    assert dana["roles"] == [{"role": "data_scientist", "domain": "retail"}]
    code, out = _cli("principals", "token", dana["id"], "--url", url, "--token", token)
    assert code == 0
    assert out.strip().startswith("gp_")
    code, out = _cli("principals", "list", "--url", url, "--token", token)
    assert code == 0
    assert "dana" in out
    assert "data_scientist@retail" in out


def test_runs_submit_list_show(server: tuple[str, str]) -> None:
    url, token = server
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        httpx.post(
            f"{url}/api/v1/models",
            headers=headers,
            json={"name": "cli-model", "domain": "retail", "risk_tier": "low", "intended_use": "x"},
        ).status_code
        == 201
    )
    # A bundle proposal is a governed policy_change run that waits for approval
    files = {
        p.name: p.read_text()
        for p in DEFAULT_BUNDLE_DIR.iterdir()
        if p.is_file() and p.suffix != ".md"
    }
    files["gates.yaml"] += "\n# proposed change\n"
    proposal = httpx.post(f"{url}/api/v1/policies", headers=headers, json={"files": files})
    assert proposal.status_code == 202, proposal.text
    run_id = proposal.json()["run"]["id"]
    for _ in range(100):
        code, out = _cli("runs", "show", run_id, "--url", url, "--token", token, "--json")
        if json.loads(out)["state"] == "awaiting_approval":
            break
        time.sleep(0.1)
    assert json.loads(out)["gates"][0]["gate"] == "approval"
    code, out = _cli("runs", "list", "--url", url, "--token", token)
    assert code == 0
    assert run_id in out
    assert "policy_change" in out
    code, out = _cli("runs", "submit", "export", "model:cli-model", "--url", url, "--token", token)
    assert code == 1
    assert "no executor" in out


def test_client_errors_are_named(server: tuple[str, str]) -> None:
    url, token = server
    code, out = _cli("principals", "list", "--url", url, "--token", "gp_wrong")
    assert code == 1
    assert "401" in out
    code, out = _cli(
        "principals", "create", "x", "--role", "nodomain", "--url", url, "--token", token
    )
    assert code == 1
    assert "ROLE@DOMAIN" in out
    code, out = _cli("runs", "list", "--url", "http://127.0.0.1:1", "--token", token)
    assert code == 1
    assert "cannot reach" in out


def test_policy_check_runs_the_cases_of_the_default_bundle() -> None:
    code, out = _cli(
        "policy", "check", str(DEFAULT_BUNDLE_DIR), "--cases", str(REPO / "tests/policies/cases")
    )
    assert code == 0, out
    assert "is valid" in out


def test_policy_check_names_the_problem_in_a_broken_bundle(tmp_path: Path) -> None:
    for source in DEFAULT_BUNDLE_DIR.iterdir():
        if source.is_file():
            (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "gates.yaml").write_text("runs: [unclosed\n")
    code, out = _cli("policy", "check", str(tmp_path))
    assert code == 1
    assert "gates.yaml" in out


def test_sites_up_names_a_flower_port_that_is_taken_and_starts_nothing(tmp_path: Path) -> None:
    assert _cli("init", "--data-dir", str(tmp_path), "--json")[0] == 0
    fleet, control, serverappio = free_ports(3)
    env = {
        "GOVPLANE_FLOWER_FLEET_PORT": str(fleet),
        "GOVPLANE_FLOWER_CONTROL_PORT": str(control),
        "GOVPLANE_FLOWER_SERVERAPPIO_PORT": str(serverappio),
    }
    # Given another server on the Fleet API's port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fleet))
        squatter.listen()
        result = runner.invoke(app, ["sites", "up", "--data-dir", str(tmp_path)], env=env)
    # Then the command fails naming the address, and no SuperLink was started
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{fleet}: Address already in use" in result.output
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", control)) != 0
