"""The executor protocol: what carries out a run once its gates pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from audit import AuditEvent
from control_plane.runs.states import RunKind

if TYPE_CHECKING:
    from control_plane.store.models import Run


@dataclass(frozen=True)
class ExecutionContext:
    """What an executor is given about the run it carries out."""

    run_id: str
    kind: RunKind
    domain: str
    target: str
    inputs: tuple[str, ...]
    params: Mapping[str, Any]
    attributes: Mapping[str, Any]
    submitted_by: str
    bundle_version: str

    @classmethod
    def of(cls, run: Run) -> ExecutionContext:
        """The context of a stored run."""
        return cls(
            run_id=run.id,
            kind=RunKind(run.kind),
            domain=run.domain,
            target=run.target,
            inputs=tuple(run.inputs),
            params=run.params,
            attributes=run.attributes,
            submitted_by=run.submitted_by,
            bundle_version=run.bundle_version,
        )

    def audit_event(
        self, action: str, payload: Mapping[str, Any], refused: str | None = None
    ) -> AuditEvent:
        """The record of what the executor did for this run, on the submitter's behalf, or,
        with ``refused`` (the reason), of what it refused to do."""
        return AuditEvent(
            actor=self.submitted_by,
            action=action,
            resource=self.target,
            decision="ok" if refused is None else "deny",
            reasons=() if refused is None else (refused,),
            run_id=self.run_id,
            payload=payload,
        )


class ExecutionError(Exception):
    """An executor's failure with the outputs of what it did before failing, stored with the
    failed run (a federated run names the inputs whose data reached it, for its lineage)."""

    def __init__(self, message: str, outputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outputs = dict(outputs or {})


class Executor(Protocol):
    """Carries out runs of one kind through a connector; raising fails the run."""

    @property
    def kind(self) -> RunKind: ...

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        """Do the work and return JSON-serializable outputs to store with the run."""
        ...
