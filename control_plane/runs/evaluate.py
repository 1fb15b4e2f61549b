"""The executor of ``evaluate`` runs: judge a model version by the gates of its risk tier.

The version's artifact is loaded from the registry only if it still hashes to the recorded
digest; its training snapshot (``evidence["training"]``) is the reference, and the current
snapshot of the run's one input dataset is the evaluation data. Every gate ``gates.yaml`` lists
under ``evaluate`` for the model's risk tier judges it. The gate results, each gate's full
result and artifacts (the evidently report as JSON and HTML, the shap summaries) and the model
card (JSON, HTML, Markdown) are kept as immutable evidence with the run, and the version's
``evidence["evaluation"]`` and the audit record are written in the same transaction.

A version that fails a gate still gets its evidence and card, with status ``failed``; the run
then fails too, naming the failed gates, so that a run's state tells whether the model passed.

Run parameters::

    {"version": 3,
     # optional: first derive a mitigated candidate from version 3, then judge the candidate
     "mitigate": {"method": "exponentiated_gradient", "constraint": "demographic_parity",
                  "sensitive_features": ["sex"], "drop_features": ["race"],
                  "difference_bound": 0.01, "max_iter": 15, "min_group_size": 100}}

With ``mitigate`` the run refits the version on its own training snapshot under the fairness
constraint, without the sensitive and dropped columns (:func:`policies.mitigation.refit_fair`),
registers the candidate in the registry (its provenance names the parent version and the
method), and adds it to the inventory as the next version with the parent's training facts
(features without the dropped ones) and ``evidence["mitigation"] = {"parent_version", "method",
"constraint", "fit", "before", "after"}`` (the fairness gate's disparities of parent and
candidate on the evaluation data), audited as ``model.mitigate`` in the same transaction. The
candidate, loaded back from the registry, is then judged like any version. Only a ``plain``
version can be refit: a refit of a dp, he or federated model would read its data outside its
privacy regime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pandas
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.lake import Lake, LakeError
from connectors.registry import ModelFlavor, ModelRegistry, ModelUri, Provenance, RegistryError
from control_plane.audit_trail import AuditLog
from control_plane.bundles import stored_bundle
from control_plane.inventory.model_card import CARD_FILES, ModelCard, render_card
from control_plane.inventory.versions import record_model_version
from control_plane.runs.evidence import (
    canonical_json,
    keep_artifact,
)
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.states import RunKind
from control_plane.store import Database, utcnow
from control_plane.store.models import (
    Dataset,
    GateResultRow,
    Model,
    ModelVersion,
)
from policies import GateResult, GateStatus
from policies.gates import EvaluationError, ModelEvaluation, evaluate_model
from policies.mitigation import Mitigation, refit_fair


class EvaluateError(Exception):
    """The evaluation could not be carried out, or the model failed its gates."""


class MitigateParams(BaseModel):
    """The mitigation to derive a candidate with before judging it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["exponentiated_gradient"] = "exponentiated_gradient"
    constraint: Literal["demographic_parity", "equalized_odds"] = "demographic_parity"
    sensitive_features: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = Field(
        min_length=1, max_length=4
    )
    difference_bound: float = Field(default=0.01, gt=0, le=1)
    max_iter: int = Field(default=15, ge=1, le=100)
    min_group_size: int = Field(default=100, ge=1, le=2**31 - 1)
    drop_features: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = Field(
        default=(), max_length=64
    )


class EvaluateParams(BaseModel):
    """What an evaluate run is asked to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    mitigate: MitigateParams | None = None


class EvaluateExecutor:
    """Carries out ``evaluate`` runs on a ``model:NAME`` target with one ``dataset:NAME`` input."""

    kind = RunKind.EVALUATE

    def __init__(self, db: Database, trail: AuditLog, lake: Lake, registry: ModelRegistry) -> None:
        self._db = db
        self._trail = trail
        self._lake = lake
        self._registry = registry

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        try:
            params = EvaluateParams.model_validate(dict(context.params))
        except ValidationError as exc:
            raise EvaluateError(f"invalid evaluate params: {exc}") from None
        name = context.target.removeprefix("model:")
        with self._db.session() as session:
            subject = _subject(session, context, name, params.version)
            bundle = stored_bundle(session, context.bundle_version)
        current = self._read(subject.current)
        reference = pandas.concat(
            [self._read(snapshot) for snapshot in subject.reference], ignore_index=True
        )
        evaluation = self._evaluation(subject, current, reference)
        extra: dict[str, Any] = {}
        if params.mitigate is not None:
            number = self._mitigate(context, subject, evaluation, params.mitigate)
            extra["mitigated_from"] = params.version
            with self._db.session() as session:
                subject = _subject(session, context, name, number)
            evaluation = self._evaluation(subject, current, reference)
        results = evaluate_model(bundle, subject.risk_tier, evaluation)
        outputs = {**self._record(context, subject, results), **extra}
        if outputs["status"] == "failed":
            failed = [gate for gate, status in outputs["gates"].items() if status == "fail"]
            raise EvaluateError(
                f"{context.target} version {outputs['model_version']} failed the "
                f"{subject.risk_tier}-tier gates {', '.join(failed)}; its evidence and model "
                "card are kept with the run"
            )
        return outputs

    def _evaluation(
        self, subject: _Subject, current: pandas.DataFrame, reference: pandas.DataFrame
    ) -> ModelEvaluation:
        """The registered artifact of ``subject``, on the evaluation and training data.

        A model that decides whether a row has the positive label (classes ``False`` and
        ``True``, as train and federated runs fit them) is judged on labels in the same terms.
        """
        model = self._load(subject)
        label, positive = subject.training["label"], subject.training["positive_label"]
        classes = list(getattr(model, "classes_", []))
        if positive not in classes and set(classes) == {False, True}:
            current, reference = (
                frame.assign(**{label: frame[label] == positive}) for frame in (current, reference)
            )
            positive = True
        return ModelEvaluation(
            model=model,
            features=tuple(subject.training["features"]),
            label=label,
            positive_label=positive,
            current=current,
            reference=reference,
        )

    def _mitigate(
        self,
        context: ExecutionContext,
        parent: _Subject,
        evaluation: ModelEvaluation,
        params: MitigateParams,
    ) -> int:
        """Refit, register and record the mitigated candidate of ``parent``; its version number."""
        privacy = parent.training.get("privacy", {})
        if privacy.get("mode", "plain") != "plain":
            raise EvaluateError(
                f"version {parent.number} was trained in privacy mode {privacy.get('mode')}; "
                "only a plain version can be refit for mitigation"
            )
        try:
            mitigation = refit_fair(
                evaluation,
                params.sensitive_features,
                params.constraint,
                params.difference_bound,
                params.max_iter,
                params.min_group_size,
                params.drop_features,
            )
        except EvaluationError as exc:
            raise EvaluateError(f"cannot mitigate version {parent.number}: {exc}") from None
        dataset_id, snapshot_id = next(iter(parent.training["snapshot_ids"].items()))
        try:
            registered = self._registry.register(
                parent.model_name,
                mitigation.candidate.model,
                ModelFlavor.SKLEARN,
                Provenance(
                    context.run_id,
                    dataset_id,
                    str(snapshot_id),
                    "plain",
                    parent_version=parent.registry_uri,
                    method=mitigation.method,
                ),
            )
        except RegistryError as exc:
            raise EvaluateError(f"cannot register the mitigated candidate: {exc}") from None
        with self._db.session(write=True) as session:
            version = record_model_version(
                session,
                self._trail,
                parent.model_name,
                str(registered.uri),
                registered.artifact_digest,
                context.run_id,
                context.submitted_by,
            )
            version.evidence = {
                **version.evidence,
                "training": _candidate_training(context, parent, mitigation),
                "mitigation": {"parent_version": parent.number, **mitigation.evidence()},
            }
            self._trail.append(
                session,
                [
                    context.audit_event(
                        "model.mitigate",
                        {
                            "parent_version": parent.number,
                            "model_version": version.version,
                            "method": mitigation.method,
                            "constraint": mitigation.constraint,
                            "artifact_digest": registered.artifact_digest,
                        },
                    )
                ],
            )
            number: int = version.version
        return number

    def _load(self, subject: _Subject) -> Any:
        try:
            return self._registry.load(ModelUri.parse(subject.registry_uri), subject.digest).model
        except (RegistryError, ValueError) as exc:
            raise EvaluateError(f"cannot load {subject.registry_uri}: {exc}") from None

    def _read(self, snapshot: _Snapshot) -> pandas.DataFrame:
        try:
            return self._lake.read(snapshot.dataset, snapshot.snapshot_id).to_pandas()
        except LakeError as exc:
            raise EvaluateError(f"cannot read {snapshot.describe()}: {exc}") from None

    def _record(
        self, context: ExecutionContext, subject: _Subject, results: tuple[GateResult, ...]
    ) -> dict[str, Any]:
        """Keep the gate results, the artifacts and the card; update the version; audit."""
        passed = all(result.status == GateStatus.PASS for result in results)
        gates = {result.gate: str(result.status) for result in results}
        with self._db.session(write=True) as session:
            model = session.get_one(Model, subject.model_id)
            version = session.get_one(ModelVersion, subject.version_id)
            privacy = subject.training.get("privacy", {})
            card = ModelCard(
                model=model.name,
                version=str(version.version),
                risk_tier=subject.risk_tier,
                owner=model.owner,
                intended_use=model.intended_use,
                training_data="; ".join(s.describe() for s in subject.reference),
                evaluation_data=subject.current.describe(),
                privacy_mode=str(privacy.get("mode", "unknown")),
                epsilon=privacy.get("epsilon"),
                delta=privacy.get("delta"),
                gates=results,
            )
            position = session.scalar(
                select(func.count())
                .select_from(GateResultRow)
                .where(GateResultRow.run_id == context.run_id)
            )
            documents: dict[str, str] = {}
            for offset, result in enumerate(results):
                session.add(_gate_row(context.run_id, (position or 0) + offset, result))
                documents[f"{result.gate}.json"] = canonical_json(_gate_document(result))
                documents.update(result.artifacts)
            documents.update(render_card(card.to_dict()))
            kept = {
                name: keep_artifact(session, context.run_id, name, text).digest
                for name, text in documents.items()
            }
            evaluation = {
                "run_id": context.run_id,
                "risk_tier": subject.risk_tier,
                "bundle_version": context.bundle_version,
                "status": "passed" if passed else "failed",
                "gates": gates,
                "model_card": {fmt: kept[file] for fmt, file in CARD_FILES.items()},
                "evaluated_at": utcnow().isoformat(),
            }
            version.evidence = {**version.evidence, "evaluation": evaluation}
            outputs = {
                "model_version": version.version,
                "status": evaluation["status"],
                "gates": gates,
                "model_card": evaluation["model_card"],
                "evidence": kept,
            }
            self._trail.append(session, [context.audit_event("model.evaluate", outputs)])
        return outputs


@dataclass(frozen=True)
class _Snapshot:
    """One lake snapshot of a dataset (the lake table is named after the dataset)."""

    dataset: str
    snapshot_id: int

    def describe(self) -> str:
        return f"dataset {self.dataset} snapshot {self.snapshot_id}"


@dataclass(frozen=True)
class _Subject:
    """The model version under evaluation and the data it is judged on, read from the store."""

    model_id: str
    model_name: str
    version_id: str
    number: int
    risk_tier: str
    registry_uri: str
    digest: str
    training: Mapping[str, Any]
    current: _Snapshot
    reference: tuple[_Snapshot, ...]


def _subject(session: Session, context: ExecutionContext, name: str, number: int) -> _Subject:
    """The version ``number`` of model ``name`` with its snapshots; refused when incomplete."""
    model = session.scalars(select(Model).where(Model.name == name)).one()
    version = session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == number
        )
    ).first()
    if version is None:
        raise EvaluateError(f"model {name!r} has no version {number}")
    if version.registry_uri is None or version.artifact_digest is None:
        raise EvaluateError(f"model {name!r} version {number} has no registered artifact")
    training = version.evidence.get("training")
    required = ("features", "label", "positive_label", "snapshot_ids")
    if not isinstance(training, Mapping) or any(key not in training for key in required):
        raise EvaluateError(
            f"model {name!r} version {number} has no training facts "
            f"(evidence.training with {', '.join(required)})"
        )
    datasets = [ref for ref in context.inputs if ref.startswith("dataset:")]
    if len(datasets) != 1 or len(context.inputs) != 1:
        raise EvaluateError(
            "an evaluate run takes exactly one input, the dataset:NAME whose current snapshot "
            "is the evaluation data"
        )
    evaluated = session.scalars(
        select(Dataset).where(Dataset.name == datasets[0].removeprefix("dataset:"))
    ).one()
    if evaluated.snapshot_id is None:
        raise EvaluateError(f"dataset {evaluated.name!r} has not been ingested")
    reference = []
    for dataset_id, snapshot_id in training["snapshot_ids"].items():
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise EvaluateError(f"the training dataset {dataset_id} is not in the inventory")
        reference.append(_Snapshot(dataset.name, int(snapshot_id)))
    if not reference:
        raise EvaluateError(f"model {name!r} version {number} names no training snapshot")
    return _Subject(
        model_id=model.id,
        model_name=model.name,
        version_id=version.id,
        number=version.version,
        risk_tier=model.risk_tier,
        registry_uri=version.registry_uri,
        digest=version.artifact_digest,
        training=training,
        current=_Snapshot(evaluated.name, evaluated.snapshot_id),
        reference=tuple(reference),
    )


def _candidate_training(
    context: ExecutionContext, parent: _Subject, mitigation: Mitigation
) -> dict[str, Any]:
    """The parent's training facts for its refit: same data, fewer features, this run."""
    candidate = mitigation.candidate
    return {
        **parent.training,
        "run_id": context.run_id,
        "features": list(candidate.features),
        "metrics": {"train_accuracy": mitigation.fit["training_accuracy"]},
    }


def _gate_document(result: GateResult) -> dict[str, Any]:
    return {
        "gate": result.gate,
        "status": str(result.status),
        "metrics": dict(result.metrics),
        "evidence": dict(result.evidence),
        "reasons": list(result.reasons),
    }


def _gate_row(run_id: str, position: int, result: GateResult) -> GateResultRow:
    return GateResultRow(run_id=run_id, position=position, **_gate_document(result))
