"""Property-based fuzzing of the whole API against its own OpenAPI schema (schemathesis).

The schema is loaded from the running app (``/openapi.json``) and every operation is called as
the bootstrap admin with generated valid and invalid data, then statefully (create, then read
what was created, following the links schemathesis infers). Every check is on, among them:
no server error, status codes, content types, headers and bodies that conform to the schema,
invalid data refused (``negative_data_rejection``), valid data accepted, and a declared
authentication actually enforced (``ignored_auth`` replays each call without and with a bad
token).

Two profiles: ``fast`` (the default, part of ``make test``) and ``long`` (``make fuzz``, or
``GOVPLANE_FUZZ=long``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from schemathesis import BaseSchema, Case, GenerationMode

from control_plane.app import create_app
from control_plane.bootstrap import initialize
from control_plane.runs import RunKind
from control_plane.settings import Settings
from tests.conftest import RecordingExecutor

# Uploads are Arrow IPC streams: bytes, generated and sent as for application/octet-stream.
schemathesis.serializer.alias("application/vnd.apache.arrow.stream", "application/octet-stream")

PROFILES = {"fast": {"examples": 12, "steps": 12}, "long": {"examples": 200, "steps": 40}}
PROFILE = PROFILES[os.environ.get("GOVPLANE_FUZZ", "fast")]

# Where the server checks what no schema can say, a valid-looking request gets 422: a bundle
# that does not validate, a role the active bundle does not define, a run kind this control plane
# has no executor for, an asset reference of an unknown type; a RunEvent or an ``as_of`` whose
# date is not in the calendar, a malformed columnLineage facet; a proof of records or a tree
# larger than the log is now, or between a larger first tree and a smaller second one; a
# reservation the budget cannot cover or one that is not open; a training report that names
# another model than its run's; an upload body that is not an Arrow IPC stream; a decision or
# revocation on an approval that is closed (409).
SEMANTIC_VALIDATION = [
    ("POST", "/api/v1/policies"),
    ("POST", "/api/v1/principals"),
    ("POST", "/api/v1/runs"),
    ("POST", "/api/v1/runs/{run_id}/report"),
    ("POST", "/api/v1/datasets/{dataset_id}/uploads"),
    ("POST", "/api/v1/datasets/{dataset_id}/uploads/{upload_id}"),
    ("POST", "/api/v1/lineage"),
    ("POST", "/api/v1/lineage/batch"),
    ("GET", "/api/v1/lineage/graph"),
    ("GET", "/api/v1/lineage/impact"),
    ("GET", "/api/v1/audit/proofs/inclusion"),
    ("GET", "/api/v1/audit/proofs/consistency"),
    ("POST", "/api/v1/privacy/budgets/{dataset_id}/reservations"),
    ("POST", "/api/v1/privacy/budgets/{dataset_id}/reservations/{run_id}/commit"),
    ("POST", "/api/v1/privacy/budgets/{dataset_id}/reservations/{run_id}/release"),
    ("POST", "/api/v1/approvals/{approval_id}/decisions"),
    ("POST", "/api/v1/approvals/{approval_id}/revoke"),
]


def _config(admin_token: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {admin_token}"},
            "checks": {
                "enabled": True,
                # schemathesis' defaults, and 413: a body over the configured limit is refused
                # whole, before it is parsed (a 5xx still fails not_a_server_error).
                "negative_data_rejection": {
                    "expected-statuses": [
                        *("400", "401", "403", "404", "405", "406", "409", "413", "415"),
                        *("422", "428", "429", "5xx"),
                    ]
                },
            },
            "generation": {"mode": "all"},
            "operations": [
                {
                    "include-path": path,
                    "include-method": method,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                        }
                    },
                }
                for method, path in SEMANTIC_VALIDATION
            ],
        }
    )


@pytest.fixture
def api_schema(
    settings: Settings, admin_token: str, executors: dict[RunKind, RecordingExecutor]
) -> BaseSchema:
    """The live schema of an initialized control plane, called as the bootstrap admin."""
    app = create_app(settings, executors)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(admin_token))


def _operations() -> list[tuple[str, str]]:
    """Every (method, path) of the schema, read from an app that is built but never started."""
    with tempfile.TemporaryDirectory(prefix="govplane-fuzz-schema-") as folder:
        settings = Settings(data_dir=Path(folder), run_worker=False)
        initialize(settings)  # the app needs its store and audit keys to be built
        paths = create_app(settings).openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


OPERATIONS = _operations()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_conforms(api_schema: BaseSchema, method: str, path: str) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=PROFILE["examples"],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def conforms(case: Case) -> None:
        case.call_and_validate()

    conforms()


def test_stateful_sequences_conform(api_schema: BaseSchema) -> None:
    failures: list[str] = []

    class Recorded(api_schema.as_state_machine()):  # type: ignore[misc]
        """Keeps every failed check, so that none can hide behind a replay that differs."""

        def validate_response(self, response: Any, case: Case, *args: Any, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, *args, **kwargs)
            except Exception as exc:
                failures.append(f"{case.operation.label}: {exc}")
                raise

    # schemathesis steers which links to follow with statistics kept across sequences, and the
    # store keeps what earlier sequences made, so a replay cannot repeat a sequence exactly and
    # hypothesis may call it flaky; what failed was recorded above, as it happened.
    with contextlib.suppress(Flaky):
        Recorded.run(
            settings=settings(
                max_examples=PROFILE["examples"],
                stateful_step_count=PROFILE["steps"],
                phases=[Phase.generate],
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
        )
    assert failures == []


def test_the_schema_declares_bearer_authentication(client: TestClient) -> None:
    # ignored_auth can only fail if the schema says which operations need a token
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    guarded = [
        (path, method)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security")
    ]
    assert len(guarded) == sum(len(item) for item in document["paths"].values()) - 1
    assert ("/api/v1/health", "get") not in guarded
