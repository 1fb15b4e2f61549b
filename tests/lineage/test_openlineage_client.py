"""openlineage-python's own client and HttpTransport, pointed at a running ``govplane serve``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.schema_dataset import (
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport
from requests import HTTPError
from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.launcher import init_data_dir, serve
from tests.lineage.events import PRODUCER, at


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``govplane init`` then ``govplane serve`` (uvicorn) on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("lineage") / "data"
    token = init_data_dir(data_dir)
    with serve(data_dir) as running:
        yield running.url, token


@pytest.fixture(scope="module")
def producer_token(server: tuple[str, str]) -> str:
    """A token of a service account holding only the lineage_producer role, everywhere."""
    url, admin = server
    headers = {"Authorization": f"Bearer {admin}"}
    created = httpx.post(
        f"{url}/api/v1/principals",
        headers=headers,
        json={
            "name": "airflow",
            "kind": "service",
            "roles": [{"role": "lineage_producer", "domain": "*"}],
        },
    )
    assert created.status_code == 201, created.text
    issued = httpx.post(f"{url}/api/v1/principals/{created.json()['id']}/tokens", headers=headers)
    token: str = issued.json()["token"]
    return token


def _client(url: str, token: str) -> OpenLineageClient:
    config = HttpConfig(
        url=url, endpoint="api/v1/lineage", auth=ApiKeyTokenProvider({"apiKey": token})
    )
    return OpenLineageClient(transport=HttpTransport(config))


def _event(event_type: RunState, run_id: str, minute: int) -> RunEvent:
    schema = SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name="id", type="BIGINT")], producer=PRODUCER
    )
    return RunEvent(
        eventType=event_type,
        eventTime=at(minute).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace="airflow", name="daily.orders"),
        inputs=[InputDataset(namespace="postgres://db:5432", name="shop.public.orders")],
        outputs=[
            OutputDataset(namespace="s3://lake", name="orders_daily", facets={"schema": schema})
        ],
        producer=PRODUCER,
    )


def test_an_openlineage_producer_posts_to_govplane(
    server: tuple[str, str], producer_token: str
) -> None:
    url, admin = server
    client = _client(url, producer_token)
    run_id = str(uuid.uuid4())
    # When a producer emits START and COMPLETE through openlineage-python's HttpTransport
    client.emit(_event(RunState.START, run_id, 0))
    client.emit(_event(RunState.COMPLETE, run_id, 1))
    # and emits COMPLETE again (a producer retry)
    client.emit(_event(RunState.COMPLETE, run_id, 1))
    # Then the graph has the job between the two datasets, with the output's schema facet
    graph = httpx.get(
        f"{url}/api/v1/lineage/graph",
        params={"node": "dataset:s3://lake:orders_daily", "direction": "upstream"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()
    assert {n["id"] for n in graph["nodes"]} == {
        "dataset:s3://lake:orders_daily",
        "job:airflow:daily.orders",
        "dataset:postgres://db:5432:shop.public.orders",
    }
    output = next(n for n in graph["nodes"] if n["id"] == "dataset:s3://lake:orders_daily")
    (field,) = output["facets"]["schema"]["fields"]
    assert (field["name"], field["type"]) == ("id", "BIGINT")


def test_a_producer_without_a_valid_token_is_refused(server: tuple[str, str]) -> None:
    url, _ = server
    client = _client(url, "gp_not-a-token")
    with pytest.raises(HTTPError) as refused:
        client.emit(_event(RunState.START, str(uuid.uuid4()), 0))
    assert refused.value.response.status_code == 401


def test_the_lineage_cli_queries_the_server(server: tuple[str, str], producer_token: str) -> None:
    url, admin = server
    _client(url, producer_token).emit(_event(RunState.COMPLETE, str(uuid.uuid4()), 5))
    runner = CliRunner()
    source = "dataset:postgres://db:5432:shop.public.orders"
    impact = runner.invoke(
        app, ["lineage", "impact", source, "--url", url, "--token", admin, "--json"]
    )
    assert impact.exit_code == 0, impact.output
    assert json.loads(impact.output)["datasets"] == ["dataset:s3://lake:orders_daily"]
    upstream = runner.invoke(
        app,
        ["lineage", "upstream", "dataset:s3://lake:orders_daily", "--url", url, "--token", admin],
    )
    assert upstream.exit_code == 0, upstream.output
    assert source in upstream.output
    assert "-[input]->" in upstream.output
    downstream = runner.invoke(
        app, ["lineage", "downstream", source, "--depth", "1", "--url", url, "--token", admin]
    )
    assert downstream.exit_code == 0
    assert "job:airflow:daily.orders" in downstream.output
    assert "orders_daily" not in downstream.output
    missing = runner.invoke(
        app, ["lineage", "upstream", "dataset:x:y", "--url", url, "--token", admin]
    )
    assert missing.exit_code == 1
    assert "404" in missing.output
