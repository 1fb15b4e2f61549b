"""A site that is alive but answers a round later than the round timeout is lost for that round
only: the run goes on with the quorum, and the site takes part again once it answers in time."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from control_plane.sample_data import ADULT_WORKCLASS_SITES as WORKCLASS_SITES
from control_plane.settings import Settings
from privacy.federated import Deployment
from tests.federated.conftest import Federation, adult_partition, asked_to_train, watching

# A plain FedAvg round of these partitions (training and evaluation) takes 15-20 s here: the
# timeout leaves a loaded machine ample room, and the straggler is paused well past it.
ROUND_TIMEOUT = 45.0
PAUSED_PAST_TIMEOUT = 15.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"federated_round_timeout_seconds": ROUND_TIMEOUT})


def _clientapps(root: int) -> list[int]:
    """The ``flwr-clientapp`` processes descending from process ``root``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is parenthesized and may hold spaces: the parent follows it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    clientapps = []
    for pid in found:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"flwr-clientapp" in command:
            clientapps.append(pid)
    return clientapps


def _straggle(deployment: Deployment, site: str, in_round: int, done: threading.Event) -> None:
    """Pause the site's ClientApp (SIGSTOP) as it is asked to train in ``in_round``, and resume
    it (SIGCONT) once the round timeout is well past; its SuperNode keeps its heartbeat."""
    if not asked_to_train(deployment, site, in_round, done):
        return
    asked = time.monotonic()
    paused: set[int] = set()
    try:
        # A ClientApp whose task heartbeat stops is replaced by the SuperNode, which starts a new
        # one for the same message: every ClientApp started within the round timeout is paused.
        while time.monotonic() - asked < ROUND_TIMEOUT + PAUSED_PAST_TIMEOUT:
            if time.monotonic() - asked < ROUND_TIMEOUT:
                for pid in set(_clientapps(deployment.pid(site))) - paused:
                    os.kill(pid, signal.SIGSTOP)
                    paused.add(pid)
            if done.wait(0.05):
                break
    finally:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(1200)
def test_a_straggler_is_lost_for_the_round_it_misses_and_takes_part_again(
    federation: Federation,
) -> None:
    # Given three internal sites (plain FedAvg: no SecAgg+, no DP)
    for site, workclasses in WORKCLASS_SITES.items():
        federation.add_site(site, adult_partition(3000, workclasses, False), "internal")
    federation.register_model("income-straggler")
    deployment = federation.start_flower()
    # When a run whose policy is to continue with a quorum of two trains three rounds, and one
    # site's ClientApp stalls past the round timeout in round 2
    straggler = "self-employed"
    others = sorted(set(WORKCLASS_SITES) - {straggler})
    with watching(partial(_straggle, deployment, straggler, 2)):
        run = federation.train(
            "income-straggler", WORKCLASS_SITES, rounds=3, min_sites=2, on_site_loss="continue"
        )
    # Then the run succeeds, every site contributed, and the straggler missed round 2 only
    assert run["state"] == "succeeded", run["error"]
    outputs = run["outputs"]
    assert outputs["participants"] == sorted(WORKCLASS_SITES)
    assert outputs["lost"] == {straggler: [2]}
    assert deployment.dead() == []
    # And each round's audit record names who contributed: the straggler is lost in round 2,
    # back in round 3
    rounds = federation.client.get(
        "/api/v1/audit/events", params={"action": "federated.round"}
    ).json()["items"]
    by_round = {r["payload"]["round"]: r["payload"] for r in rounds}
    assert sorted(by_round) == [1, 2, 3]
    assert all(r["aggregated"] and not r["secagg"] and r["dp"] is None for r in by_round.values())
    assert by_round[2]["participants"] == others
    assert by_round[2]["lost"] == [straggler]
    for rnd in (1, 3):
        assert by_round[rnd]["participants"] == sorted(WORKCLASS_SITES)
        assert by_round[rnd]["lost"] == []
    # And the model is registered from the run
    version = federation.client.get("/api/v1/models/income-straggler/versions/1")
    assert version.status_code == 200, version.text
    assert version.json()["evidence"]["training"]["run_id"] == run["id"]
