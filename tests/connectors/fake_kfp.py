"""A fake Kubeflow Pipelines API: the few v2beta1 routes ``kfp.Client`` calls to submit a run.

It is a real HTTP server (uvicorn on loopback) so ``kfp.Client`` and its generated REST client
run unchanged up to the network. It validates what it is sent the way the KFP API server does
(the pipeline spec and platform spec must parse as their protos, strictly) and keeps it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.loopback import serve_on_loopback

API = "/apis/v2beta1"


@dataclass
class FakeKfp:
    """What the fake was sent."""

    url: str = ""
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _app(state: FakeKfp) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def _record_authorization(request: Request, call_next: Any) -> Any:
        state.authorizations.append(request.headers.get("authorization"))
        return await call_next(request)

    @app.get(f"{API}/healthz")
    def healthz() -> dict[str, Any]:
        return {"multi_user": False}

    @app.get(f"{API}/experiments")
    def list_experiments(filter: str = "", namespace: str = "") -> dict[str, Any]:
        predicates = json.loads(filter)["predicates"] if filter else []
        found = [
            e
            for e in state.experiments
            if all(
                e.get(p["key"]) == p.get("stringValue", p.get("string_value")) for p in predicates
            )
            and (not namespace or e["namespace"] == namespace)
        ]
        return {"experiments": found, "total_size": len(found)}

    @app.post(f"{API}/experiments")
    async def create_experiment(request: Request) -> dict[str, Any]:
        body = await request.json()
        experiment = {
            "experiment_id": uuid.uuid4().hex,
            "display_name": body["display_name"],
            "namespace": body.get("namespace") or "",
            "created_at": _now(),
        }
        state.experiments.append(experiment)
        return experiment

    @app.post(f"{API}/runs")
    async def create_run(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body.get("experiment_id") not in {e["experiment_id"] for e in state.experiments}:
            raise HTTPException(404, "no such experiment")
        spec = body["pipeline_spec"]
        try:
            json_format.ParseDict(spec["pipeline_spec"], pipeline_spec_pb2.PipelineSpec())
            json_format.ParseDict(spec["platform_spec"], pipeline_spec_pb2.PlatformSpec())
        except (KeyError, json_format.ParseError) as error:
            raise HTTPException(400, f"invalid pipeline spec: {error}") from None
        run = {**body, "run_id": uuid.uuid4().hex, "state": "PENDING", "created_at": _now()}
        state.runs.append(run)
        return run

    return app


@contextmanager
def fake_kfp() -> Iterator[FakeKfp]:
    """Serve the fake on a free loopback port for the duration of the block."""
    state = FakeKfp()
    with serve_on_loopback(_app(state)) as url:
        state.url = url
        yield state
