"""The executor of ``train`` runs: train a model on an ingested dataset, governed.

The ``privacy_mode`` gate has already checked the mode (and a dp run's epsilon) against
``privacy.yaml`` before this runs. Then: validate the params -> refuse what is not offered (``he``,
``federated``) -> for ``dp``, plan the noise and reserve the planned epsilon on the dataset's
budget -> run the job through the orchestrator, pinned to the dataset's lake snapshot -> commit
the epsilon recomputed by the accountant from the steps the job reports -> link the registered
model as a new inventory version with its training evidence, audited (``model.train``), in one
transaction. A failure anywhere fails the run, and the ledger settlement releases a reservation
that was not committed: a failed job spends nothing.

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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select

from connectors.lake import CATALOG_NAME
from connectors.registry import MlflowRegistryConfig
from connectors.training import DpTraining, Orchestrator, SnapshotSource, TrainingJob
from connectors.training.base import Submission, SubmissionState
from control_plane.audit_trail import AuditLog
from control_plane.inventory.versions import record_model_version
from control_plane.lineage.recorder import job_name, job_namespace
from control_plane.privacy_ledger import PrivacyLedger, budget_for
from control_plane.runs.executors import ExecutionContext
from control_plane.runs.states import RunKind
from control_plane.store import Database
from control_plane.store.models import Dataset, PolicyBundleRow
from policies import PolicyBundle
from privacy.accounting import StepSegment, epsilon_spent, noise_for_epsilon
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
    ) -> None:
        self._db = db
        self._trail = trail
        self._ledger = ledger
        self._orchestrator = orchestrator
        self._registry = registry
        self._lake_catalog = dict(lake_catalog)

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
            # The pipeline runs on; a dp reservation is charged in full when the run ends.
            return {"orchestrator": submission.orchestrator, "external_id": submission.external_id}
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
            bundle = PolicyBundle.from_files(
                session.get_one(PolicyBundleRow, context.bundle_version).files
            )
            budget = budget_for(bundle, dataset)
            dataset_id, snapshot_id = dataset.id, dataset.snapshot_id
            table, rows = dataset.lake_table, dataset.row_count or 0
        dp = None
        if params.privacy_mode == "dp":
            if budget is None:
                raise TrainError(f"dataset {name} has no privacy budget")
            dp = _dp_plan(params, budget.delta, rows)
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
        dataset_id = job.source.dataset_id
        privacy: dict[str, Any] = {
            "mode": params.privacy_mode,
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "grad_sample_mode": None,
        }
        if job.dp is not None:
            privacy.update(self._commit(context, job.dp, dataset_id, outcome.privacy))
        training = {
            "run_id": context.run_id,
            "dataset_ids": [dataset_id],
            "snapshot_ids": {dataset_id: job.source.snapshot_id},
            "label": params.label,
            "positive_label": params.positive_label,
            "features": list(outcome.features),
            "privacy": privacy,
            "metrics": dict(outcome.metrics),
        }
        with self._db.session(write=True) as session:
            version = record_model_version(
                session,
                self._trail,
                job.model_name,
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
                "orchestrator": submission.orchestrator,
                "dataset_id": dataset_id,
                "snapshot_id": job.source.snapshot_id,
                "privacy_mode": params.privacy_mode,
                "epsilon_spent": privacy["epsilon"],
                "delta_spent": privacy["delta"],
                "metrics": dict(outcome.metrics),
                "rows": dict(outcome.rows),
            }
            if outcome.privacy is not None:
                outputs["dp_sgd"] = dict(outcome.privacy)
            self._trail.append(session, [context.audit_event("model.train", outputs)])
        return outputs

    def _commit(
        self,
        context: ExecutionContext,
        dp: DpTraining,
        dataset_id: str,
        reported: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Commit what the job spent, recomputed here from the steps it reports."""
        if reported is None:
            raise TrainError("the dp job reported no DP-SGD evidence")
        steps = StepSegment(
            float(reported["noise_multiplier"]),
            float(reported["sample_rate"]),
            int(reported["steps"]),
        )
        if steps.noise_multiplier != dp.noise_multiplier:
            raise TrainError(
                f"the job trained with noise {steps.noise_multiplier}, not the planned "
                f"{dp.noise_multiplier}"
            )
        epsilon = epsilon_spent([steps], dp.delta, dp.accountant)
        with self._db.session(write=True) as session:
            self._ledger.commit(
                session,
                dataset_id,
                context.run_id,
                epsilon,
                dp.delta,
                dp.accountant,
                context.submitted_by,
            )
        return {
            "epsilon": epsilon,
            "delta": dp.delta,
            "accountant": dp.accountant,
            "grad_sample_mode": str(reported["grad_sample_mode"]),
        }


def _params(raw: Mapping[str, Any]) -> TrainParams:
    try:
        return TrainParams.model_validate(dict(raw))
    except ValidationError as exc:
        raise TrainError(f"invalid train params: {exc}") from None


def _dp_plan(params: TrainParams, default_delta: float, rows: int) -> DpTraining:
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
    )
