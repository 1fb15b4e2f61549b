"""A fake Kubernetes API server: the custom-object routes the ``kubernetes`` client calls.

A real HTTP server (uvicorn on loopback), so ``CustomObjectsApi`` and its generated REST client
run unchanged up to the network. It keeps objects per group, version, namespace and plural, sets
``uid``, ``resourceVersion`` and ``generation`` as the API server does, answers 404 and 409 in
the ``Status`` form, and refuses a replace with a stale ``resourceVersion``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.loopback import serve_on_loopback

_OBJECTS = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"


@dataclass
class FakeKubernetes:
    """What the fake holds and was sent."""

    url: str = ""
    objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def kubeconfig(self, path: Path, token: str = "test-token") -> Path:  # noqa: S107
        """A kubeconfig file that points the client at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "govplane", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "govplane"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
    return JSONResponse({**body, "reason": reason, "code": code}, status_code=code)


def _app(state: FakeKubernetes) -> FastAPI:
    app = FastAPI()
    counter = iter(range(1, 1_000_000))

    @app.middleware("http")
    async def _record(request: Request, call_next: Any) -> Any:
        state.requests.append((request.method, request.url.path))
        state.authorizations.append(request.headers.get("authorization"))
        return await call_next(request)

    @app.post(_OBJECTS)
    async def create(
        group: str, version: str, namespace: str, plural: str, request: Request
    ) -> Any:
        body = await request.json()
        key = (group, version, namespace, plural, body["metadata"]["name"])
        if key in state.objects:
            return _status(409, "AlreadyExists", f"{plural} {key[-1]} already exists")
        body["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=str(next(counter)))
        body["metadata"]["generation"] = 1
        state.objects[key] = body
        return JSONResponse(body, status_code=201)

    @app.get(_OBJECTS + "/{name}")
    def get(group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        found = state.objects.get((group, version, namespace, plural, name))
        if found is None:
            return _status(404, "NotFound", f"{plural} {name} not found")
        return found

    @app.put(_OBJECTS + "/{name}")
    async def replace(
        group: str, version: str, namespace: str, plural: str, name: str, request: Request
    ) -> Any:
        key = (group, version, namespace, plural, name)
        body = await request.json()
        current = state.objects.get(key)
        if current is None:
            return _status(404, "NotFound", f"{plural} {name} not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified")
        body["metadata"].update(
            uid=current["metadata"]["uid"],
            resourceVersion=str(next(counter)),
            generation=current["metadata"]["generation"] + 1,
        )
        state.objects[key] = body
        return body

    @app.delete(_OBJECTS + "/{name}")
    def delete(group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        if state.objects.pop((group, version, namespace, plural, name), None) is None:
            return _status(404, "NotFound", f"{plural} {name} not found")
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    return app


@contextmanager
def fake_kubernetes() -> Iterator[FakeKubernetes]:
    """Serve the fake on a free loopback port for the duration of the block."""
    state = FakeKubernetes()
    with serve_on_loopback(_app(state)) as url:
        state.url = url
        yield state
