"""Starting a Flower deployment: a SuperLink that cannot come up is reported at start, with
why, and leaves nothing running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from control_plane.launcher import free_ports
from privacy.federated import Deployment, DeploymentError, Ports, Security


@pytest.fixture
def ports() -> Ports:
    fleet, control, serverappio = free_ports(3)
    return Ports(fleet=fleet, control=control, serverappio=serverappio)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_started_superlink_listens_on_every_port(tmp_path: Path, ports: Ports) -> None:
    deployment = Deployment(tmp_path, [], ports)
    deployment.start()
    try:
        # The Fleet API, which SuperNodes dial, is bound last: start waits for it too
        assert [_listening(port) for port in (ports.control, ports.serverappio, ports.fleet)] == [
            True,
            True,
            True,
        ]
        assert deployment.dead() == []
    finally:
        deployment.stop()


def test_a_port_something_listens_on_is_refused_before_the_superlink_starts(
    tmp_path: Path, ports: Ports
) -> None:
    # Given another server on the Fleet API's port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.fleet))
        squatter.listen()
        deployment = Deployment(tmp_path, [], ports)
        # Then the deployment refuses to start, naming the address, and starts no process
        with pytest.raises(DeploymentError, match=f"cannot listen on 127.0.0.1:{ports.fleet}"):
            deployment.start()
    assert not (tmp_path / "logs" / "superlink.log").exists()
    assert not _listening(ports.control)


def test_a_superlink_that_exits_at_start_is_reported_with_its_log(
    tmp_path: Path, ports: Ports
) -> None:
    # Given TLS files that do not exist
    missing = Security(
        ca_certificate=tmp_path / "ca.pem",
        certificate=tmp_path / "superlink.pem",
        private_key=tmp_path / "superlink.key",
    )
    deployment = Deployment(tmp_path, [], ports, security=missing)
    # Then start fails with the SuperLink's own words, and nothing is left running
    with pytest.raises(DeploymentError, match=r"(?s)exited with 1.*--ssl-ca-certfile"):
        deployment.start()
    assert deployment.dead() == []
    assert not _listening(ports.control)
