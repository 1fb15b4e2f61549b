"""The executor of ``train`` runs: train a model on an ingested dataset, governed.

The ``privacy_mode`` gate has already checked the mode (and a dp run's epsilon) against
``privacy.yaml`` before this runs. Then: validate the params -> refuse what is not offered (``he``,
``federated``) -> for ``dp``, plan the noise and reserve the planned epsilon on the dataset's
budget -> run the job through the orchestrator, pinned to the dataset's lake snapshot -> commit
the epsilon recomputed by the accountant from the steps the job reports -> link the registered
model as a new inventory version with its training evidence, audited (``model.train``), in one
transaction. A failure anywhere fails the run, and the ledger settlement releases a reservation
that was not committed: a failed job spends nothing.

A job handed to an orchestrator that runs on (a Kubeflow pipeline) ends the run at submission:
its outputs keep the :class:`Handover` (the orchestrator's id of the job, what it is pinned to),
and a dp reservation is charged in full. The pipeline's report (:func:`accept_report`, ``POST
/runs/{id}/report``) then records the version with the same :func:`record_training`, once.

``he`` is not a training mode here: homomorphic encryption in govplane scores a trained linear
model on encrypted rows and aggregates encrypted statistics (:mod:`privacy.he`); training on
ciphertexts is not offered, so such a run is refused before any data is read.

Run parameters::

    {"label": "income", "positive_label": ">50K", "privacy_mode": "plain" | "dp",
     "seed": 0, "test_fraction": 0.2,
     # dp only:
     "epsilon": 3.0, "delta": 1e-6, "noise_multiplier": 1.1, "max_grad_norm": 1.0,
     "epochs": 1, "batch_size": 256, "accountant": "rdp", "hidden_units": 64,
     "learning_rate": 0.1}

A dp run always names ``epsilon``: the gate checks it against the per-run cap and it is what the
run reserves. The noise is derived from it unless ``noise_multiplier`` is given, in which case
the planned steps must fit within it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.lake import CATALOG_NAME
from connectors.registry import MlflowRegistryConfig
from connectors.training import (
    DpTraining,
    Orchestrator,
    SnapshotSource,
    TrainingJob,
    TrainingOutcome,
)
from connectors.training.base import Submission, SubmissionState
from control_plane.audit_trail import AuditLog
from control_plane.authorization import Guard
from control_plane.bundles import stored_bundle
from control_plane.errors import ConflictError, InvalidInputError, NotFoundError
from control_plane.inventory.versions import record_model_version
from control_plane.lineage.recorder import job_name, job_namespace
from control_plane.privacy_ledger import PrivacyLedger, budget_for
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.states import RunKind, RunState
from control_plane.store import Database
from control_plane.store.models import Dataset, PrivacyLedgerEntry, Run
from privacy.accounting import StepSegment, epsilon_spent, noise_for_epsilon
from privacy.budget import epsilon_of, epsilon_units
from privacy.dp_sgd import DpSgdPlan

#: Params that only a dp run may give.
DP_PARAMS = frozenset(
    {
        "epsilon",
        "delta",
        "noise_multiplier",
        "max_grad_norm",
        "epochs",
        "batch_size",
        "accountant",
        "hidden_units",
        "learning_rate",
    }
)
_Text = Annotated[str, Field(min_length=1, max_length=256)]


class TrainError(Exception):
    """The train run was refused or could not be carried out; the message says why."""


class TrainParams(BaseModel):
    """What a ``train`` run is asked to do (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: _Text
    positive_label: _Text
    privacy_mode: Literal["plain", "dp", "he", "federated"] = "plain"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    purpose: _Text | None = None
    epsilon: float | None = Field(default=None, gt=0)
    delta: float | None = Field(default=None, gt=0, lt=1)
    noise_multiplier: float | None = Field(default=None, gt=0, le=1000)
    max_grad_norm: float = Field(default=1.0, gt=0, le=1000)
    epochs: int = Field(default=1, ge=1, le=100)
    batch_size: int = Field(default=256, ge=1, le=100_000)
    accountant: Literal["rdp", "prv"] = "rdp"
    hidden_units: int = Field(default=64, ge=1, le=4096)
    learning_rate: float = Field(default=0.1, gt=0, le=10)

    @model_validator(mode="after")
    def _dp_params_in_dp_mode(self) -> TrainParams:
        misplaced = sorted(self.model_fields_set & DP_PARAMS)
        if self.privacy_mode != "dp" and misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} apply to privacy_mode dp only, not {self.privacy_mode}"
            )
        if self.privacy_mode == "dp" and self.epsilon is None:
            raise ValueError("a dp run must give epsilon, the most it may spend")
        return self


class TrainExecutor:
    """Carries out ``train`` runs on a ``model:NAME`` target from one ``dataset:NAME`` input."""

    kind = RunKind.TRAIN

    def __init__(
        self,
        db: Database,
        trail: AuditLog,
        ledger: PrivacyLedger,
        orchestrator: Orchestrator,
        registry: MlflowRegistryConfig,
        lake_catalog: Mapping[str, str],
        secure_rng: bool = True,
    ) -> None:
        self._db = db
        self._trail = trail
        self._ledger = ledger
        self._orchestrator = orchestrator
        self._registry = registry
        self._lake_catalog = dict(lake_catalog)
        self._secure_rng = secure_rng

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        params = _params(context.params)
        if params.privacy_mode == "he":
            raise TrainError(
                "privacy_mode he is not a training mode: govplane uses homomorphic encryption "
                "to score a trained linear model on encrypted rows and to aggregate encrypted "
                "statistics, not to train; train with dp (or federated_train) and score under he"
            )
        if params.privacy_mode == "federated":
            raise TrainError("privacy_mode federated is trained by a federated_train run")
        job = self._job(context, params)
        submission = self._orchestrator.submit(job)
        if submission.state is SubmissionState.SUBMITTED:
            # The pipeline runs on and reports back (``accept_report``); a dp reservation is
            # charged in full when the run ends.
            return Handover.of(submission, job).as_outputs()
        return self._record(context, params, job, submission)

    def _job(self, context: ExecutionContext, params: TrainParams) -> TrainingJob:
        """The job pinned to the input's snapshot; for dp, its plan, reserved on the ledger."""
        if len(context.inputs) != 1 or not context.inputs[0].startswith("dataset:"):
            raise TrainError("a train run reads exactly one input, dataset:NAME")
        name = context.inputs[0].removeprefix("dataset:")
        with self._db.session() as session:
            dataset = session.scalars(select(Dataset).where(Dataset.name == name)).one()
            if dataset.snapshot_id is None or dataset.lake_table is None:
                raise TrainError(f"dataset {name} has no lake snapshot: ingest it first")
            bundle = stored_bundle(session, context.bundle_version)
            budget = budget_for(bundle, dataset)
            dataset_id, snapshot_id = dataset.id, dataset.snapshot_id
            table, rows = dataset.lake_table, dataset.row_count or 0
        dp = None
        if params.privacy_mode == "dp":
            if budget is None:
                raise TrainError(f"dataset {name} has no privacy budget")
            dp = _dp_plan(params, budget.delta, rows, self._secure_rng)
            with self._db.session(write=True) as session:
                self._ledger.reserve(
                    session,
                    dataset_id,
                    context.run_id,
                    dp.max_epsilon,
                    dp.delta,
                    context.submitted_by,
                )
        try:
            return TrainingJob(
                run_id=context.run_id,
                model_name=context.target.removeprefix("model:"),
                source=SnapshotSource(
                    dataset_id=dataset_id,
                    catalog_name=CATALOG_NAME,
                    catalog=self._lake_catalog,
                    table=table,
                    snapshot_id=snapshot_id,
                ),
                label=params.label,
                positive_label=params.positive_label,
                privacy_mode=params.privacy_mode,
                dp=dp,
                test_fraction=params.test_fraction,
                seed=params.seed,
                registry=self._registry,
                domain=context.domain,
                job_namespace=job_namespace(context.domain),
                job_name=job_name(context.kind, context.target),
            )
        except ValidationError as exc:
            raise TrainError(f"the training job is invalid: {exc}") from None

    def _record(
        self,
        context: ExecutionContext,
        params: TrainParams,
        job: TrainingJob,
        submission: Submission,
    ) -> dict[str, Any]:
        outcome = submission.outcome
        assert outcome is not None  # a succeeded submission carries its outcome
        handover = Handover.of(submission, job)
        privacy = _privacy_evidence(params, handover.dp, outcome)
        if handover.dp is not None:
            with self._db.session(write=True) as session:
                self._ledger.commit(
                    session,
                    handover.dataset_id,
                    context.run_id,
                    privacy["epsilon"],
                    handover.dp.delta,
                    handover.dp.accountant,
                    context.submitted_by,
                )
        with self._db.session(write=True) as session:
            return record_training(
                session, self._trail, context, params, handover, outcome, privacy
            )


@dataclass(frozen=True)
class Handover:
    """A training job as its orchestrator took it: who runs it under which id, and what the
    job is pinned to (the model, the dataset's snapshot, the reserved DP-SGD plan).

    A job that runs on after its run ended (a Kubeflow pipeline) keeps its handover in the
    run's outputs, so that its report is recorded against what was planned, not against the
    dataset as it is when the report arrives.
    """

    orchestrator: str
    external_id: str
    model_name: str
    dataset_id: str
    snapshot_id: int
    dp: DpTraining | None

    @classmethod
    def of(cls, submission: Submission, job: TrainingJob) -> Handover:
        """The handover of ``job`` as ``submission``."""
        return cls(
            submission.orchestrator,
            submission.external_id,
            job.model_name,
            job.source.dataset_id,
            job.source.snapshot_id,
            job.dp,
        )

    def as_outputs(self) -> dict[str, Any]:
        """The run outputs that keep this handover until the job reports."""
        return {
            "orchestrator": self.orchestrator,
            "external_id": self.external_id,
            "dataset_id": self.dataset_id,
            "snapshot_id": self.snapshot_id,
            "dp_plan": None if self.dp is None else self.dp.model_dump(mode="json"),
        }

    @classmethod
    def from_outputs(cls, target: str, outputs: Mapping[str, Any]) -> Handover:
        """The handover a run's outputs keep (see :meth:`as_outputs`)."""
        plan = outputs["dp_plan"]
        return cls(
            str(outputs["orchestrator"]),
            str(outputs["external_id"]),
            target.removeprefix("model:"),
            str(outputs["dataset_id"]),
            int(outputs["snapshot_id"]),
            None if plan is None else DpTraining.model_validate(plan),
        )


def record_training(
    session: Session,
    trail: AuditLog,
    context: ExecutionContext,
    params: TrainParams,
    handover: Handover,
    outcome: TrainingOutcome,
    privacy: Mapping[str, Any],
) -> dict[str, Any]:
    """Link the trained model as the next inventory version, with its training evidence
    (naming the orchestrator and its id of the job), audited as ``model.train``; the run's
    outputs.

    Raises:
        NotFoundError, InvalidInputError, ConflictError: as ``record_model_version``.
    """
    dataset_id = handover.dataset_id
    training = {
        "run_id": context.run_id,
        "orchestrator": handover.orchestrator,
        "external_id": handover.external_id,
        "dataset_ids": [dataset_id],
        "snapshot_ids": {dataset_id: handover.snapshot_id},
        "label": params.label,
        "positive_label": params.positive_label,
        "features": list(outcome.features),
        "privacy": dict(privacy),
        "metrics": dict(outcome.metrics),
    }
    version = record_model_version(
        session,
        trail,
        handover.model_name,
        outcome.model_uri,
        outcome.artifact_digest,
        context.run_id,
        context.submitted_by,
    )
    version.evidence = {**version.evidence, "training": training}
    outputs: dict[str, Any] = {
        "model_version": version.version,
        "model_uri": outcome.model_uri,
        "artifact_digest": outcome.artifact_digest,
        "registry_run_id": outcome.registry_run_id,
        "orchestrator": handover.orchestrator,
        "external_id": handover.external_id,
        "dataset_id": dataset_id,
        "snapshot_id": handover.snapshot_id,
        "privacy_mode": params.privacy_mode,
        "epsilon_spent": privacy["epsilon"],
        "delta_spent": privacy["delta"],
        "metrics": dict(outcome.metrics),
        "rows": dict(outcome.rows),
    }
    if outcome.privacy is not None:
        outputs["dp_sgd"] = dict(outcome.privacy)
    trail.append(session, [context.audit_event("model.train", outputs)])
    return outputs


def accept_report(
    session: Session, trail: AuditLog, guard: Guard, run_id: str, outcome: TrainingOutcome
) -> Run:
    """Record the report of a train run's job that ran on after the run (a Kubeflow pipeline):
    the version it registered, linked like the local runner's, naming the orchestrator's run.

    Runs in the caller's write transaction, the run's row locked: a report is recorded once.
    The dp reservation was charged in full when the run ended; the epsilon recomputed from the
    reported steps is recorded as evidence, and must not exceed that charge.

    Raises:
        NotFoundError: no such run.
        ForbiddenError: the caller may not ``report`` on the run.
        ConflictError: the run is not a train run handed to an orchestrator that reports back,
            its report was recorded already, or the reported steps spent more than the run was
            charged.
        InvalidInputError: the report does not fit the run (another model, a malformed digest,
            DP-SGD evidence missing or with another noise than planned).
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    guard.require("report", f"run:{run.id}", run.domain)
    if run.kind != RunKind.TRAIN or run.state != RunState.SUCCEEDED or "dp_plan" not in run.outputs:
        raise ConflictError(
            f"run {run_id} is a {run.state} {run.kind} run, not a train run handed to an "
            "orchestrator that reports back"
        )
    if "model_version" in run.outputs:
        raise ConflictError(
            f"the report of run {run_id} was recorded already, as version "
            f"{run.outputs['model_version']} ({run.outputs['model_uri']})"
        )
    context = ExecutionContext.of(run)
    params = _params(run.params)
    handover = Handover.from_outputs(run.target, run.outputs)
    try:
        privacy = _privacy_evidence(params, handover.dp, outcome)
    except TrainError as exc:
        raise InvalidInputError(str(exc)) from None
    if handover.dp is not None:
        _check_charged(session, run_id, handover.dataset_id, privacy["epsilon"])
    outputs = record_training(session, trail, context, params, handover, outcome, privacy)
    run.outputs = {**run.outputs, **outputs, "reported_by": guard.caller.name}
    return run


def _check_charged(session: Session, run_id: str, dataset_id: str, epsilon: float) -> None:
    """Refuse a report whose recomputed spend exceeds what the ledger charged the run."""
    entry = session.scalars(
        select(PrivacyLedgerEntry).where(
            PrivacyLedgerEntry.run_id == run_id, PrivacyLedgerEntry.dataset_id == dataset_id
        )
    ).first()
    charged = 0 if entry is None or entry.epsilon_spent is None else entry.epsilon_spent
    if epsilon_units(epsilon, round_up=True) > charged:
        raise ConflictError(
            f"the reported steps spend epsilon {epsilon:.9g} on dataset {dataset_id}, more than "
            f"run {run_id} was charged ({epsilon_of(charged):.9g})"
        )


def _privacy_evidence(
    params: TrainParams, dp: DpTraining | None, outcome: TrainingOutcome
) -> dict[str, Any]:
    """The privacy evidence of a finished job; for dp, the epsilon recomputed here from the
    steps the job reports (never taken from the job).

    Raises:
        TrainError: a dp job reported no DP-SGD evidence, or trained with another noise than
            planned.
    """
    if dp is None:
        return {
            "mode": params.privacy_mode,
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "grad_sample_mode": None,
        }
    reported = outcome.privacy
    if reported is None:
        raise TrainError("the dp job reported no DP-SGD evidence")
    try:
        steps = StepSegment(
            float(reported["noise_multiplier"]),
            float(reported["sample_rate"]),
            int(reported["steps"]),
        )
        grad_sample_mode = str(reported["grad_sample_mode"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainError(f"the dp job's DP-SGD evidence is malformed: {exc!r}") from None
    if steps.noise_multiplier != dp.noise_multiplier:
        raise TrainError(
            f"the job trained with noise {steps.noise_multiplier}, not the planned "
            f"{dp.noise_multiplier}"
        )
    try:
        epsilon = epsilon_spent([steps], dp.delta, dp.accountant)
    except (ValueError, OverflowError) as exc:
        raise TrainError(f"the dp job's steps cannot be accounted: {exc}") from None
    return {
        "mode": params.privacy_mode,
        "epsilon": epsilon,
        "delta": dp.delta,
        "accountant": dp.accountant,
        "grad_sample_mode": grad_sample_mode,
    }


def _params(raw: Mapping[str, Any]) -> TrainParams:
    try:
        return TrainParams.model_validate(dict(raw))
    except ValidationError as exc:
        raise TrainError(f"invalid train params: {exc}") from None


def _dp_plan(params: TrainParams, default_delta: float, rows: int, secure_rng: bool) -> DpTraining:
    """The DP-SGD plan over the training share of ``rows``: the noise derived from the run's
    epsilon, or the given noise checked against it.

    Raises:
        TrainError: the given noise would spend more than the run's epsilon.
    """
    assert params.epsilon is not None  # TrainParams requires it in dp mode
    delta = params.delta if params.delta is not None else default_delta
    plan = DpSgdPlan(
        max_grad_norm=params.max_grad_norm,
        delta=delta,
        epochs=params.epochs,
        batch_size=params.batch_size,
        target_epsilon=params.epsilon,
        accountant=params.accountant,
    )
    # train_test_split holds out ceil(test_fraction * rows) rows.
    sample_rate, steps = plan.schedule(rows - math.ceil(params.test_fraction * rows))
    noise = params.noise_multiplier
    if noise is None:
        noise = noise_for_epsilon(params.epsilon, delta, sample_rate, steps, params.accountant)
    else:
        planned = epsilon_spent([StepSegment(noise, sample_rate, steps)], delta, params.accountant)
        if planned > params.epsilon:
            raise TrainError(
                f"noise multiplier {noise} over {steps} steps at sample rate {sample_rate:.6g} "
                f"spends epsilon {planned:.6g}, more than the run's epsilon {params.epsilon}"
            )
    return DpTraining(
        noise_multiplier=noise,
        max_epsilon=params.epsilon,
        delta=delta,
        max_grad_norm=params.max_grad_norm,
        epochs=params.epochs,
        batch_size=params.batch_size,
        accountant=params.accountant,
        hidden_units=params.hidden_units,
        learning_rate=params.learning_rate,
        secure_rng=secure_rng,
    )
