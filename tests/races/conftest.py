"""Real ``govplane serve`` replicas (separate OS processes) on one PostgreSQL database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from control_plane.launcher import init_data_dir
from policies import DEFAULT_BUNDLE_DIR
from tests.conftest import govplane_serve


@contextmanager
def serving_replicas(
    tmp_path: Path, database_url: str, bundle: Path | None, env: Mapping[str, str]
) -> Iterator[tuple[list[str], str]]:
    """``govplane init`` once, then two replicas (``replica-a``, ``replica-b``); yields their
    URLs and the admin token. After they stop, neither log may show a traceback.

    Args:
        bundle: the bundle to initialize with (the default one when None).
        env: ``GOVPLANE_*`` settings of both replicas, on top of the shared store and keys.
    """
    # Replicas share the store and the keys that `init` writes into the first data dir
    keys = tmp_path / "a"
    shared = {
        "GOVPLANE_DATABASE_URL": database_url,
        "GOVPLANE_AUDIT_SIGNING_KEY_FILE": str(keys / "audit-signing-key.pem"),
        "GOVPLANE_AUDIT_HMAC_KEY_FILE": str(keys / "audit-hmac.key"),
        "GOVPLANE_ARTIFACT_SIGNING_KEY_FILE": str(keys / "artifact-signing-key.pem"),
        "GOVPLANE_PSEUDONYMIZATION_KEY_FILE": str(keys / "pseudonymization.key"),
        "GOVPLANE_WEBHOOK_SECRET_FILE": str(keys / "webhook-secret.key"),
        **env,
    }
    token = init_data_dir(
        tmp_path / "a", shared, *(["--bundle", str(bundle)] if bundle is not None else [])
    )
    logs = [tmp_path / "replica-a.log", tmp_path / "replica-b.log"]
    with (
        govplane_serve(tmp_path / "a", {**shared, "GOVPLANE_WORKER_ID": "replica-a"}, logs[0]) as a,
        govplane_serve(tmp_path / "b", {**shared, "GOVPLANE_WORKER_ID": "replica-b"}, logs[1]) as b,
    ):
        yield [a, b], token
    for log in logs:
        assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


@contextmanager
def replicas_with_policy_change(
    tmp_path: Path, database_url: str, policy_change: str
) -> Iterator[tuple[list[str], str, Path]]:
    """Two replicas with fast-polling run workers, on the default bundle whose ``policy_change``
    section (the last one of ``approvals.yaml``) is replaced by ``policy_change`` (YAML); yields
    their URLs, the admin token and the bundle folder."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE_DIR, bundle)
    approvals = bundle / "approvals.yaml"
    text = approvals.read_text()
    approvals.write_text(text[: text.index("policy_change:")] + policy_change)
    env = {"GOVPLANE_WORKER_POLL_SECONDS": "0.05"}
    with serving_replicas(tmp_path, database_url, bundle, env) as (urls, token):
        yield urls, token, bundle
