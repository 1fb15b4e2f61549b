"""The run engine: authorize and plan on submit; claim, gate and execute off the request path.

Claiming is a compare-and-set on the run row (``claimed_by IS NULL``), so any number of workers
on any number of replicas sharing one database execute each run exactly once. A claim is a
lease that its worker renews while it works; a run whose lease runs out (its worker crashed or
stalled) fails rather than running again, since its executor may already have acted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from control_plane.authorization import Guard
from control_plane.errors import InvalidInputError, NotFoundError
from control_plane.inventory.assets import resolve_asset
from control_plane.inventory.versions import promotion_facts
from control_plane.runs.executors import ExecutionContext, ExecutionError, Executor
from control_plane.runs.recording import TransitionRecorder
from control_plane.runs.states import RunKind, RunState, check_transition
from control_plane.store import Database, utcnow
from control_plane.store.models import Approval, GateResultRow, PolicyBundleRow, Run, RunTransition
from policies import GateContext, GateResult, GateSpec, GateStatus, PolicyBundle, build_gate
from policies import plan_gates as plan_for

_log = logging.getLogger(__name__)
_CLASSIFICATION_ORDER = ("public", "internal", "confidential", "restricted")


@dataclass(frozen=True)
class RunSubmission:
    """A request for a governed run."""

    kind: RunKind
    target: str
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


class RunEngine:
    """Submits, claims, gates, executes and resumes governed runs."""

    def __init__(
        self,
        db: Database,
        executors: Mapping[RunKind, Executor],
        recorders: Sequence[TransitionRecorder] = (),
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self._db = db
        self._executors = dict(executors)
        self._recorders = tuple(recorders)
        self.lease = lease

    @property
    def kinds(self) -> frozenset[RunKind]:
        """The run kinds this control plane can execute."""
        return frozenset(self._executors)

    def submit(self, session: Session, guard: Guard, submission: RunSubmission) -> Run:
        """Authorize and plan a run, and store it as pending.

        The caller must be allowed the run's kind on its target and ``read`` on every input;
        the plan is fixed now, from the active bundle, and stored with the run.
        """
        if submission.kind not in self._executors:
            known = ", ".join(sorted(self._executors)) or "none"
            raise InvalidInputError(
                f"run kind {submission.kind} has no executor on this control plane "
                f"(executable kinds: {known})"
            )
        target = resolve_asset(session, submission.target)
        inputs = [resolve_asset(session, ref) for ref in submission.inputs]
        request_attributes = {
            key: submission.params[key] for key in ("purpose",) if key in submission.params
        }
        decision = guard.require(
            submission.kind, target.ref, target.domain, target.attributes, request_attributes
        )
        for asset in inputs:
            guard.require("read", asset.ref, asset.domain, asset.attributes, request_attributes)
        attributes = _run_attributes(target.attributes, [a.attributes for a in inputs])
        for key in ("target_stage", "privacy_mode", "purpose"):
            if key in submission.params:
                attributes[key] = submission.params[key]
        if submission.kind == RunKind.PROMOTE:
            attributes.update(promotion_facts(session, target.ref, submission.params))
        bundle = guard.bundle
        plan = [
            {"gate": spec.name, "params": dict(spec.params)}
            for spec in plan_for(bundle, submission.kind, attributes)
        ]
        run = Run(
            kind=submission.kind,
            state=RunState.PENDING,
            domain=target.domain,
            target=target.ref,
            inputs=[asset.ref for asset in inputs],
            params=dict(submission.params),
            attributes=attributes,
            plan=plan,
            bundle_version=decision.bundle_version,
            submitted_by=guard.caller.name,
        )
        session.add(run)
        session.flush()
        self._record(session, run, RunTransition(run_id=run.id, position=0, to_state=run.state))
        return run

    def claim_next(self, worker: str) -> str | None:
        """Claim the oldest claimable run for ``worker``; None when there is none.

        Runs whose worker lost its lease are failed first (:meth:`fail_lost_runs`).
        """
        self.fail_lost_runs()
        with self._db.session(write=True) as session:
            candidates = session.scalars(
                select(Run.id)
                .where(Run.claimed_by.is_(None))
                .where(Run.state.in_([RunState.PENDING, RunState.RUNNING]))
                .order_by(Run.id)
                .limit(5)
            ).all()
            for run_id in candidates:
                claimed = session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.claimed_by.is_(None))
                    .values(
                        claimed_by=worker,
                        lease_expires_at=utcnow() + self.lease,
                        updated_at=utcnow(),
                    )
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    run = session.get_one(Run, run_id)
                    if run.state == RunState.PENDING:
                        self._transition(session, run, RunState.RUNNING, f"claimed by {worker}")
                    return run_id
        return None

    def renew(self, run_id: str, worker: str) -> bool:
        """Extend ``worker``'s lease on a run it works on; False when it no longer holds it."""
        with self._db.session(write=True) as session:
            renewed = session.execute(
                update(Run)
                .where(Run.id == run_id, Run.claimed_by == worker, Run.state == RunState.RUNNING)
                .values(lease_expires_at=utcnow() + self.lease)
            )
            return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]

    def fail_lost_runs(self) -> int:
        """Fail the running runs whose lease has run out; returns how many."""
        now = utcnow()
        lost = 0
        with self._db.session(write=True) as session:
            expired = session.scalars(
                select(Run.id).where(
                    Run.state == RunState.RUNNING,
                    Run.claimed_by.is_not(None),
                    Run.lease_expires_at < now,
                )
            ).all()
            for run_id in expired:
                taken = session.execute(
                    update(Run)
                    .where(
                        Run.id == run_id,
                        Run.state == RunState.RUNNING,
                        Run.lease_expires_at < now,
                    )
                    .values(lease_expires_at=None)
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # renewed, finished or failed by someone else meanwhile
                run = session.get_one(Run, run_id)
                run.error = f"worker {run.claimed_by} stopped renewing its claim"
                self._finish(session, run, RunState.FAILED, "worker lost")
                lost += 1
        return lost

    def process(self, run_id: str) -> RunState:
        """Run the remaining gates of a claimed run, then execute it; returns its new state."""
        with self._db.session() as session:
            run = session.get_one(Run, run_id)
            bundle_files = session.get_one(PolicyBundleRow, run.bundle_version).files
            done = session.scalar(
                select(func.count())
                .select_from(GateResultRow)
                .where(GateResultRow.run_id == run_id)
            )
        bundle = PolicyBundle.from_files(bundle_files)
        context = GateContext(
            run_kind=run.kind, attributes=run.attributes, params=run.params, bundle=bundle
        )
        for position, entry in enumerate(run.plan[done or 0 :], start=done or 0):
            result = _evaluate(GateSpec(name=entry["gate"], params=entry["params"]), context)
            with self._db.session(write=True) as session:
                session.add(_result_row(run_id, position, result))
                locked = session.get_one(Run, run_id)
                if result.status == GateStatus.FAIL:
                    self._finish(session, locked, RunState.FAILED, f"gate {result.gate} failed")
                    return RunState.FAILED
                if result.status == GateStatus.NEEDS_APPROVAL:
                    _open_approval(session, locked, result)
                    self._transition(session, locked, RunState.AWAITING_APPROVAL, result.gate)
                    locked.claimed_by = None
                    locked.lease_expires_at = None
                    return RunState.AWAITING_APPROVAL
        return self._execute(run)

    def resume(self, session: Session, run_id: str, approved: bool, reason: str) -> None:
        """Continue a run whose approval was decided: approved runs become claimable again."""
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        if approved:
            self._transition(session, run, RunState.RUNNING, reason)
            run.claimed_by = None
        else:
            self._finish(session, run, RunState.REJECTED, reason)

    def _execute(self, run: Run) -> RunState:
        context = ExecutionContext.of(run)
        try:
            outputs = dict(self._executors[RunKind(run.kind)].execute(context))
        except Exception as exc:
            _log.exception("run %s failed in its executor", run.id)
            with self._db.session(write=True) as session:
                locked = session.get_one(Run, run.id)
                locked.error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ExecutionError):
                    locked.outputs = exc.outputs
                self._finish(session, locked, RunState.FAILED, "executor failed")
            return RunState.FAILED
        with self._db.session(write=True) as session:
            locked = session.get_one(Run, run.id)
            locked.outputs = outputs
            self._finish(session, locked, RunState.SUCCEEDED, "executed")
        return RunState.SUCCEEDED

    def _transition(self, session: Session, run: Run, target: RunState, reason: str) -> None:
        check_transition(RunState(run.state), target)
        position = session.scalar(
            select(func.count()).select_from(RunTransition).where(RunTransition.run_id == run.id)
        )
        transition = RunTransition(
            run_id=run.id, position=position, from_state=run.state, to_state=target, reason=reason
        )
        run.state = target
        run.updated_at = utcnow()
        self._record(session, run, transition)

    def _finish(self, session: Session, run: Run, target: RunState, reason: str) -> None:
        run.finished_at = utcnow()
        run.lease_expires_at = None
        self._transition(session, run, target, reason)

    def _record(self, session: Session, run: Run, transition: RunTransition) -> None:
        """Add the transition row, then let every recorder write in the same transaction."""
        session.add(transition)
        session.flush()
        for recorder in self._recorders:
            recorder.record(session, run, transition)


def _run_attributes(target: Mapping[str, Any], inputs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Planning attributes: the target's, with the strictest classification of all assets."""
    attributes = {k: v for k, v in target.items() if k != "owner"}
    levels = [
        _CLASSIFICATION_ORDER.index(a["classification"])
        for a in [target, *inputs]
        if a.get("classification") in _CLASSIFICATION_ORDER
    ]
    if levels:
        attributes["classification"] = _CLASSIFICATION_ORDER[max(levels)]
    return attributes


def _evaluate(spec: GateSpec, context: GateContext) -> GateResult:
    """Evaluate one gate; a gate that raises fails (governance fails closed)."""
    try:
        return build_gate(spec).evaluate(context)
    except Exception as exc:
        _log.exception("gate %s raised", spec.name)
        return GateResult(
            gate=spec.name,
            status=GateStatus.FAIL,
            metrics={},
            evidence={},
            reasons=(f"the gate could not be evaluated: {type(exc).__name__}: {exc}",),
        )


def _result_row(run_id: str, position: int, result: GateResult) -> GateResultRow:
    return GateResultRow(
        run_id=run_id,
        position=position,
        gate=result.gate,
        status=result.status,
        metrics=dict(result.metrics),
        evidence=dict(result.evidence),
        reasons=list(result.reasons),
    )


def _open_approval(session: Session, run: Run, result: GateResult) -> None:
    hours = result.evidence.get("expires_after_hours")
    session.add(
        Approval(
            run_id=run.id,
            domain=run.domain,
            target=run.target,
            status="pending",
            requirement=dict(result.evidence),
            requested_by=run.submitted_by,
            expires_at=utcnow() + timedelta(hours=hours) if hours else None,
        )
    )
