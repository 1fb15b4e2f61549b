"""The orchestrator protocol: carry out a training job somewhere and say how it went."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from connectors.training.job import TrainingJob, TrainingOutcome


class SubmissionState(StrEnum):
    SUCCEEDED = "succeeded"
    SUBMITTED = "submitted"


@dataclass(frozen=True)
class Submission:
    """A job handed to an orchestrator.

    Attributes:
        orchestrator: the orchestrator's kind.
        external_id: the orchestrator's id of the job (process id, pipeline run id).
        state: ``succeeded`` when the orchestrator ran it to the end before returning (then
            ``outcome`` is set), ``submitted`` when it runs on (the pipeline reports back).
        outcome: what the finished job reported.
    """

    orchestrator: str
    external_id: str
    state: SubmissionState
    outcome: TrainingOutcome | None = None


class TrainingFailedError(RuntimeError):
    """The job did not finish: its exit status (``None`` after a timeout) and stderr's end."""

    def __init__(self, message: str, exit_status: int | None, stderr: str) -> None:
        super().__init__(f"{message}: {stderr.strip() or 'no output on stderr'}")
        self.exit_status = exit_status
        self.stderr = stderr


class Orchestrator(Protocol):
    """Runs training jobs: a local process, or a Kubeflow pipeline."""

    @property
    def kind(self) -> str: ...

    def submit(self, job: TrainingJob) -> Submission:
        """Carry out (or hand over) ``job``.

        Raises:
            TrainingFailedError: the job failed before this returned.
        """
        ...
