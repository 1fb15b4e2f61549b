"""The executor of ``federated_train`` runs: one model trained across sites, governed.

target ``model:NAME``; inputs the site datasets (``dataset:NAME``, each held by a site).

1. Each input's site applies its local policy (purpose, DP, peers, its operator's decision);
   a site that refuses is excluded, and the exclusion is audited with its reason.
2. The mechanisms follow the data's classification: confidential or restricted data requires
   secure aggregation and DP; a classification whose ``privacy.yaml`` rule sets
   ``federated_he`` requires homomorphic aggregation (CKKS), which then stands in for SecAgg+:
   the server sums updates it cannot decrypt. Too few sites left fails the run before training.
3. DP spend is reserved on every participating dataset in the privacy ledger.
4. govplane's Flower app runs on the SuperLink (``govplane sites up``): sites train on their own
   lake snapshots; only updates cross process boundaries.
5. The aggregated model is registered (MLflow, then the inventory) with its training evidence;
   each round is a ``federated.round`` audit record naming the sites that contributed and the
   lost ones. In the same transaction, each dataset is charged for the aggregated rounds its
   site contributed updates to: a site lost before any is charged nothing and its reservation
   is released; one lost after some rounds is charged for those, as its updates are in the
   model. Evidence, provenance and lineage name the contributing datasets only.
6. A run that fails after training started charges each dataset, as in 5, for the rounds
   aggregated before it failed (every site received their noised aggregates), and names those
   datasets for its lineage; the engine releases what is left reserved.

Run parameters::

    {"rounds": 3, "local_epochs": 1, "min_sites": 2, "on_site_loss": "continue" | "fail",
     "secagg": true, "he": false, "dp": {"epsilon": 2.0, "delta": 1e-6, "clipping_norm": 1.0},
     "purpose": "research", "label": "income", "positive_label": ">50K",
     "numeric": ["age", ...], "categorical": ["workclass", ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.registry import ModelFlavor, ModelRegistry, Provenance
from control_plane.audit_trail import AuditLog
from control_plane.bundles import stored_bundle
from control_plane.inventory.sites import holder_of, site_verdict
from control_plane.inventory.versions import record_model_version
from control_plane.privacy_ledger import PrivacyLedger
from control_plane.runs.executors import ExecutionContext, ExecutionError
from control_plane.runs.states import RunKind
from control_plane.settings import Settings
from control_plane.store import Database
from control_plane.store.models import Dataset
from privacy.accounting import Mechanism, StepSegment, epsilon_spent, noise_for_epsilon
from privacy.federated import (
    DifferentialPrivacy,
    FeatureSpec,
    FederatedPlan,
    FlowerControl,
    SiteData,
    to_pipeline,
    wait_for_outcome,
)

_PROTECTED = ("confidential", "restricted")
_ACCOUNTANT: Mechanism = "rdp"


class FederatedRunError(ExecutionError):
    """The federated run was refused or failed; the message says why."""


class DpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: Annotated[float, Field(gt=0, le=100)]
    delta: Annotated[float, Field(gt=0, lt=1)]
    clipping_norm: Annotated[float, Field(gt=0, le=1000)] = 1.0


Column = Annotated[str, Field(min_length=1, max_length=128)]


class FederatedParams(BaseModel):
    """What a ``federated_train`` run is asked to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: Annotated[int, Field(ge=1, le=100)] = 3
    local_epochs: Annotated[int, Field(ge=1, le=100)] = 1
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.1
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 64
    min_sites: Annotated[int, Field(ge=1, le=1000)] = 2
    on_site_loss: Literal["continue", "fail"] = "continue"
    secagg: bool | None = None
    he: bool | None = None
    dp: DpParams | None = None
    purpose: Column | None = None
    privacy_mode: Literal["federated"] = "federated"
    label: Column
    positive_label: Column
    numeric: Annotated[list[Column], Field(max_length=1000)] = []
    categorical: Annotated[list[Column], Field(max_length=1000)] = []


@dataclass(frozen=True)
class _Input:
    dataset_id: str
    name: str
    classification: str
    site: str
    table: str
    snapshot_id: int


class FederatedTrainExecutor:
    """Carries out ``federated_train`` runs on the configured Flower SuperLink."""

    kind = RunKind.FEDERATED_TRAIN

    def __init__(
        self,
        db: Database,
        trail: AuditLog,
        ledger: PrivacyLedger,
        registry: ModelRegistry,
        settings: Settings,
    ) -> None:
        self._db = db
        self._trail = trail
        self._ledger = ledger
        self._registry = registry
        self._settings = settings

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        try:
            params = FederatedParams.model_validate(dict(context.params))
        except ValidationError as exc:
            raise FederatedRunError(f"invalid federated_train params: {exc}") from None
        inputs, excluded = self._participants(context, params)
        secagg, he, dp = _mechanisms(inputs, params, self._he_required(context))
        if len(inputs) < params.min_sites:
            raise FederatedRunError(
                f"{len(inputs)} sites may take part, fewer than min_sites {params.min_sites}"
                + "".join(f"; {site} excluded: {why}" for site, why in excluded.items())
            )
        noise = None
        if dp is not None:
            noise = noise_for_epsilon(dp.epsilon, dp.delta, 1.0, params.rounds, _ACCOUNTANT)
            self._reserve(context, inputs, dp)
        output = self._settings.flower_dir / "outcomes" / f"{context.run_id}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.unlink(missing_ok=True)
        plan = FederatedPlan(
            sites={i.site: SiteData(table=i.table, snapshot_id=i.snapshot_id) for i in inputs},
            label=params.label,
            positive_label=params.positive_label,
            numeric=params.numeric,
            categorical=params.categorical,
            rounds=params.rounds,
            local_epochs=params.local_epochs,
            learning_rate=params.learning_rate,
            batch_size=params.batch_size,
            min_sites=params.min_sites,
            on_site_loss=params.on_site_loss,
            secagg=secagg,
            he=he,
            dp=(
                None
                if dp is None or noise is None
                else DifferentialPrivacy(noise_multiplier=noise, clipping_norm=dp.clipping_norm)
            ),
            round_timeout=self._settings.federated_round_timeout_seconds,
            output=str(output),
        )
        control = FlowerControl(
            self._settings.flower_dir,
            f"{self._settings.flower_host}:{self._settings.flower_control_port}",
            self._settings.flower_ca_certificate,
        )
        flower_run = control.submit(plan)
        outcome = wait_for_outcome(
            control, flower_run, output, self._settings.federated_run_timeout_seconds
        )
        rounds = list(outcome.get("rounds", []))  # type: ignore[call-overload]
        if outcome.get("status") != "completed":
            taken_part = _contributions(inputs, rounds)
            self._settle_failed(context, params, plan, inputs, rounds, taken_part)
            raise FederatedRunError(
                f"federated training failed: {outcome.get('error')}",
                {"inputs_used": [f"dataset:{i.name}" for i in inputs if taken_part[i.site]]},
            )
        return self._register(context, params, plan, inputs, excluded, outcome, flower_run)

    def _participants(
        self, context: ExecutionContext, params: FederatedParams
    ) -> tuple[list[_Input], dict[str, str]]:
        """The inputs whose site takes part, and why each other site is excluded."""
        candidates: list[tuple[_Input, Any]] = []
        with self._db.session() as session:
            for ref in context.inputs:
                dataset = session.scalars(
                    select(Dataset).where(Dataset.name == ref.removeprefix("dataset:"))
                ).one()
                site = holder_of(session, dataset.id)
                if site is None:
                    raise FederatedRunError(f"dataset {dataset.name} is held by no site")
                if dataset.snapshot_id is None or dataset.lake_table is None:
                    raise FederatedRunError(f"dataset {dataset.name} has no data in the lake")
                table = dataset.lake_table.rsplit(".", 1)[-1]
                item = _Input(
                    dataset.id,
                    dataset.name,
                    dataset.classification,
                    site.name,
                    table,
                    dataset.snapshot_id,
                )
                candidates.append((item, site))
            if len({item.site for item, _ in candidates}) != len(candidates):
                raise FederatedRunError("two inputs are held by the same site")
            excluded: dict[str, str] = {}
            dp = params.dp is not None
            for item, site in candidates:
                reason = site_verdict(
                    session, site, context.run_id, params.purpose, dp, len(candidates) - 1
                )
                if reason is not None:
                    excluded[item.site] = reason
            # Peers are counted among the sites that remain.
            remaining = [(i, s) for i, s in candidates if i.site not in excluded]
            for item, site in remaining:
                reason = site_verdict(
                    session, site, context.run_id, params.purpose, dp, len(remaining) - 1
                )
                if reason is not None:
                    excluded[item.site] = reason
        if excluded:
            with self._db.session(write=True) as session:
                self._trail.append(
                    session,
                    [
                        context.audit_event("federated.site.exclude", {"site": s, "reason": r})
                        for s, r in sorted(excluded.items())
                    ],
                )
        return [i for i, _ in candidates if i.site not in excluded], excluded

    def _he_required(self, context: ExecutionContext) -> frozenset[str]:
        """The classifications whose rule in the run's bundle requires homomorphic aggregation."""
        with self._db.session() as session:
            rules = stored_bundle(session, context.bundle_version).privacy.classifications
        return frozenset(name for name, rule in rules.items() if rule.federated_he)

    def _reserve(self, context: ExecutionContext, inputs: list[_Input], dp: DpParams) -> None:
        with self._db.session(write=True) as session:
            for item in inputs:
                self._ledger.reserve(
                    session,
                    item.dataset_id,
                    context.run_id,
                    dp.epsilon,
                    dp.delta,
                    context.submitted_by,
                )

    def _settle_failed(
        self,
        context: ExecutionContext,
        params: FederatedParams,
        plan: FederatedPlan,
        inputs: list[_Input],
        rounds: list[Any],
        taken_part: Mapping[str, int],
    ) -> None:
        """The rounds of a failed training, as far as they went, and their DP spend: every
        site received the noised aggregates of those rounds, so each dataset is charged for the
        rounds its site contributed to (the engine releases the rest)."""
        spent, _, delta = _spend(plan, params, taken_part)
        with self._db.session(write=True) as session:
            self._trail.append(session, [context.audit_event("federated.round", r) for r in rounds])
            self._charge(session, context, inputs, taken_part, spent, delta)

    def _charge(
        self,
        session: Session,
        context: ExecutionContext,
        inputs: list[_Input],
        taken_part: Mapping[str, int],
        spent: Mapping[str, float],
        delta: float | None,
    ) -> None:
        """Charge each dataset whose site contributed what it spent; release the others."""
        if delta is None:
            return
        for item in inputs:
            if taken_part[item.site]:
                self._ledger.commit(
                    session,
                    item.dataset_id,
                    context.run_id,
                    spent[item.site],
                    delta,
                    _ACCOUNTANT,
                    context.submitted_by,
                )
            else:
                self._ledger.release(session, item.dataset_id, context.run_id, context.submitted_by)

    def _register(
        self,
        context: ExecutionContext,
        params: FederatedParams,
        plan: FederatedPlan,
        inputs: list[_Input],
        excluded: Mapping[str, str],
        outcome: Mapping[str, Any],
        flower_run: int,
    ) -> dict[str, Any]:
        import numpy as np

        spec = FeatureSpec.from_json(json.dumps(outcome["spec"]))
        weights = [np.asarray(w, dtype=np.float64) for w in outcome["weights"]]
        pipeline = to_pipeline(spec, weights)
        rounds = list(outcome["rounds"])
        taken_part = _contributions(inputs, rounds)
        contributors = [i for i in inputs if taken_part[i.site]]
        lost = {
            i.site: missed
            for i in inputs
            if (missed := [r["round"] for r in rounds if i.site in r["lost"]])
        }
        spent, epsilon, delta = _spend(plan, params, taken_part)
        model_name = context.target.removeprefix("model:")
        registered = self._registry.register(
            model_name,
            pipeline,
            ModelFlavor.SKLEARN,
            Provenance(
                run_id=context.run_id,
                dataset_id=",".join(i.dataset_id for i in contributors),
                dataset_snapshot=",".join(f"{i.dataset_id}@{i.snapshot_id}" for i in contributors),
                privacy_mode="federated",
                epsilon=epsilon,
                delta=delta,
            ),
        )
        final = rounds[-1].get("evaluation", {}) if rounds else {}
        metrics = {"accuracy": final.get("accuracy"), "loss": final.get("loss")}
        training = {
            "run_id": context.run_id,
            "dataset_ids": [i.dataset_id for i in contributors],
            "snapshot_ids": {i.dataset_id: i.snapshot_id for i in contributors},
            "label": params.label,
            "positive_label": params.positive_label,
            "features": spec.features,
            "privacy": {
                "mode": "federated",
                "epsilon": epsilon,
                "delta": delta,
                "accountant": _ACCOUNTANT if epsilon is not None else None,
                "grad_sample_mode": None,
                "epsilon_per_site": {i.site: spent.get(i.site) for i in inputs},
                "secagg": plan.secagg,
                "he": outcome.get("he"),
                "noise_multiplier": plan.dp.noise_multiplier if plan.dp else None,
                "clipping_norm": plan.dp.clipping_norm if plan.dp else None,
            },
            "metrics": metrics,
            "sites": {i.site: i.dataset_id for i in contributors},
            "excluded": dict(excluded),
            "lost": lost,
            "rounds": len(rounds),
        }
        with self._db.session(write=True) as session:
            version = record_model_version(
                session,
                self._trail,
                model_name,
                str(registered.uri),
                registered.artifact_digest,
                context.run_id,
                context.submitted_by,
            )
            version.evidence = {**version.evidence, "training": training}
            self._trail.append(
                session,
                [
                    *(context.audit_event("federated.round", r) for r in rounds),
                    context.audit_event(
                        "model.train",
                        {"version": version.version, "privacy": training["privacy"]},
                    ),
                ],
            )
            self._charge(session, context, inputs, taken_part, spent, delta)
            model_version = version.version
        return {
            "model_version": model_version,
            "registry_uri": str(registered.uri),
            "flower_run_id": str(flower_run),
            "participants": sorted(i.site for i in contributors),
            "excluded": dict(excluded),
            "lost": lost,
            "inputs_used": [f"dataset:{i.name}" for i in contributors],
            "secagg": plan.secagg,
            "he": outcome.get("he"),
            "dp": training["privacy"],
            "epsilon_spent": epsilon,
            "delta_spent": delta,
            "metrics": metrics,
            "rounds": rounds,
        }


def _spend(
    plan: FederatedPlan, params: FederatedParams, taken_part: Mapping[str, int]
) -> tuple[dict[str, float], float | None, float | None]:
    """Under DP: the epsilon each site spent (one Gaussian release per round it contributed
    to), the most any spent, and delta; else nothing."""
    if plan.dp is None or params.dp is None:
        return {}, None, None
    delta, noise = params.dp.delta, plan.dp.noise_multiplier
    spent = {
        site: epsilon_spent([StepSegment(noise, 1.0, n)], delta, _ACCOUNTANT) if n else 0.0
        for site, n in taken_part.items()
    }
    return spent, max(spent.values()), delta


def _contributions(inputs: list[_Input], rounds: list[Any]) -> dict[str, int]:
    """For each input's site, the number of aggregated rounds it sent an update to."""
    return {
        i.site: sum(1 for r in rounds if r["aggregated"] and i.site in r["participants"])
        for i in inputs
    }


def _mechanisms(
    inputs: list[_Input], params: FederatedParams, he_required: frozenset[str]
) -> tuple[bool, bool, DpParams | None]:
    """SecAgg+, homomorphic aggregation and DP as the classification of the data requires;
    refuses weaker asks. Homomorphic aggregation is secure aggregation: it replaces SecAgg+."""
    needs_he = sorted({i.classification for i in inputs} & he_required)
    if needs_he and params.he is False:
        raise FederatedRunError(
            f"{' and '.join(needs_he)} data requires homomorphic aggregation; the run sets he false"
        )
    he = bool(needs_he) or bool(params.he)
    if he and params.secagg:
        raise FederatedRunError("homomorphic aggregation replaces SecAgg+; the run sets both")
    protected = sorted({i.classification for i in inputs if i.classification in _PROTECTED})
    if not protected:
        return bool(params.secagg), he, params.dp
    if params.secagg is False and not he:
        raise FederatedRunError(
            f"{' and '.join(protected)} data requires secure aggregation; the run sets secagg false"
        )
    if params.dp is None:
        raise FederatedRunError(
            f"{' and '.join(protected)} data requires differential privacy; give params.dp"
        )
    return not he, he, params.dp
