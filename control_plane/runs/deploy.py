"""The ``deploy`` executor: serve a promoted, signed, unchanged model version.

Only a version whose promotion to the needed stage (``production`` unless the run names
``stage``) completed deploys: its release signature must verify under the release key and name
the artifact digest recorded at registration, and the artifact's files must still hash to it. A
refusal is audited with its reason. The local target then serves the verified copy of the files
and makes a smoke prediction on a sample row before the deployment is recorded.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
from sqlalchemy import select

from audit import CheckpointSigner
from connectors.registry import ModelRegistry, ModelUri, artifact_digest
from connectors.serving import DeploymentSpec, Endpoint, Serving
from control_plane.audit_trail import AuditLog
from control_plane.inventory.releases import ReleaseRefusedError, verified_release
from control_plane.inventory.versions import find_version
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.refusal import refuse
from control_plane.runs.states import RunKind
from control_plane.sample_data import ADULT_LABEL, read_adult
from control_plane.store import Database, utcnow
from control_plane.store.models import Deployment

_ACTION = "model.deploy"
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


class DeployExecutor:
    """Carries out ``deploy`` runs through the serving backends, by target name.

    Args:
        backends: the configured serving backends by target (``local``, ``kserve``, ``seldon``).
        work_dir: where the local target keeps the verified artifact copies it serves.
    """

    kind = RunKind.DEPLOY

    def __init__(
        self,
        db: Database,
        trail: AuditLog,
        registry: ModelRegistry,
        signer: CheckpointSigner,
        backends: Mapping[str, Serving],
        work_dir: Path,
    ) -> None:
        self._db = db
        self._trail = trail
        self._registry = registry
        self._signer = signer
        self._backends = dict(backends)
        self._work_dir = work_dir

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        params = context.params
        name, target = params.get("deployment"), params.get("target", "local")
        canary, stage = params.get("canary_percent", 100), params.get("stage", "production")
        payload: dict[str, Any] = {
            "version": params.get("version"),
            "deployment": name,
            "target": target,
            "canary_percent": canary,
            "stage": stage,
        }
        if not isinstance(name, str) or not _NAME.match(name):
            self._refuse(context, "params.deployment must be a DNS label (a-z, 0-9, -)", payload)
        if not isinstance(canary, int) or isinstance(canary, bool) or not 1 <= canary <= 100:
            self._refuse(context, "params.canary_percent must be an integer from 1 to 100", payload)
        backend = self._backends.get(str(target))
        if backend is None:
            known = ", ".join(sorted(self._backends))
            self._refuse(
                context, f"target {target!r} is not configured (configured: {known})", payload
            )
        with self._db.session() as session:
            row = find_version(session, context.target, params.get("version"))
            version_id, version = row.id, row.version
            recorded, registry_uri = row.artifact_digest, row.registry_uri
            evidence = dict(row.evidence)
            serving = session.scalars(select(Deployment.model).where(Deployment.name == name))
            taken_by = serving.first()
        if taken_by not in (None, context.target.removeprefix("model:")):
            self._refuse(context, f"deployment {name} serves model {taken_by}", payload)
        try:
            release = verified_release(self._signer, evidence.get("promotion"), str(stage)).release
        except ReleaseRefusedError as refused:
            self._refuse(context, f"version {version}: {refused}", payload)
        if (release.version, release.registry_uri, release.artifact_digest) != (
            version,
            registry_uri,
            recorded,
        ):
            self._refuse(context, "the signed release names another artifact", payload)
        assert registry_uri is not None  # the release names it
        uri = ModelUri.parse(registry_uri)
        spec = self._spec(context, name, uri, version, canary, release.artifact_digest, payload)
        endpoint = backend.deploy(spec)
        outputs: dict[str, Any] = {
            "deployment": name,
            "model_version": version,
            "target": target,
            "endpoint_url": endpoint.url,
            "status": endpoint.status.value,
        }
        try:
            if spec.model_dir is not None:
                outputs["smoke_prediction"] = self._smoke(backend, name, evidence)
            payload.update(endpoint_url=endpoint.url, artifact_digest=recorded)
            self._record(context, version_id, spec, endpoint, payload)
        except BaseException:
            backend.undeploy(str(name))
            raise
        return outputs

    def _spec(
        self,
        context: ExecutionContext,
        name: str,
        uri: ModelUri,
        version: int,
        canary: int,
        digest: str,
        payload: dict[str, Any],
    ) -> DeploymentSpec:
        """What to serve: for the local target a verified copy of the files, for a cluster
        the store's location after the digest was recomputed there."""
        model = context.target.removeprefix("model:")
        if context.params.get("target", "local") == "local":
            folder = self._work_dir / name / context.run_id
            shutil.rmtree(folder, ignore_errors=True)
            local = self._registry.download(uri, folder)
            actual = artifact_digest(local)
            if actual != digest:
                shutil.rmtree(folder, ignore_errors=True)
                self._refuse(
                    context,
                    f"artifact digest {actual} of {uri} is not the signed {digest}",
                    payload,
                )
            return DeploymentSpec(name, model, version, model_dir=local, canary_percent=canary)
        actual = self._registry.current_digest(uri)
        if actual != digest:
            self._refuse(context, _changed(uri, actual, digest), payload)
        location = self._registry.artifact_location(uri)
        return DeploymentSpec(name, model, version, storage_uri=location, canary_percent=canary)

    def _smoke(self, backend: Serving, name: str, evidence: Mapping[str, Any]) -> Any:
        """One prediction for the first Adult sample row, on the version's training features."""
        frame: pd.DataFrame = read_adult().slice(0, 1).to_pandas()
        features = (evidence.get("training") or {}).get("features")
        frame = frame[list(features)] if features else frame.drop(columns=[ADULT_LABEL])
        (prediction,) = backend.predict(name, frame)
        return prediction

    def _record(
        self,
        context: ExecutionContext,
        version_id: str,
        spec: DeploymentSpec,
        endpoint: Endpoint,
        payload: dict[str, Any],
    ) -> None:
        """Create or update the deployment row and audit it, in one transaction."""
        with self._db.session(write=True) as session:
            row = session.scalars(select(Deployment).where(Deployment.name == spec.name)).first()
            if row is None:
                row = Deployment(
                    name=spec.name, domain=context.domain, created_by=context.submitted_by
                )
            row.model_version_id = version_id
            row.model, row.version = spec.model, spec.version
            row.target = str(context.params.get("target", "local"))
            row.endpoint_url = endpoint.url
            row.status = endpoint.status.value
            row.canary_percent = spec.canary_percent
            row.run_id = context.run_id
            row.updated_at = utcnow()
            session.add(row)
            self._trail.append(session, [context.audit_event(_ACTION, payload)])

    def _refuse(self, context: ExecutionContext, reason: str, payload: dict[str, Any]) -> NoReturn:
        refuse(self._db, self._trail, context, _ACTION, reason, payload)


def _changed(uri: ModelUri, actual: str, signed: str) -> str:
    return f"artifact digest {actual} of {uri} is not the signed {signed}"
