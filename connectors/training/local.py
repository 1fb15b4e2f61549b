"""The embedded default orchestrator: the training entry point in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.training.base import Submission, SubmissionState, TrainingFailedError
from connectors.training.job import TrainingJob, TrainingOutcome

#: How much of a failed job's stderr is reported.
STDERR_TAIL = 4000


class LocalRunnerConfig(BaseModel):
    """How the local runner runs a job: how long it may take."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local"] = "local"
    timeout_seconds: float = Field(default=3600, gt=0, le=7 * 24 * 3600)


class LocalRunner:
    """Runs ``python -m connectors.training`` with this interpreter, and waits for it."""

    kind = "local"

    def __init__(self, config: LocalRunnerConfig) -> None:
        self._config = config

    def submit(self, job: TrainingJob) -> Submission:
        """Run the job to its end.

        Raises:
            TrainingFailedError: it exited non-zero (with its status and stderr) or timed out.
        """
        with tempfile.TemporaryDirectory(prefix="govplane-train-") as scratch:
            job_file = Path(scratch) / "job.json"
            outcome_file = Path(scratch) / "outcome.json"
            # The job may carry catalog credentials: only this user may read it.
            job_file.touch(mode=0o600)
            job_file.write_text(job.model_dump_json(), encoding="utf-8")
            process = subprocess.Popen(  # noqa: S603 (this interpreter, govplane's module)
                [sys.executable, "-m", "connectors.training", str(job_file), str(outcome_file)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=scratch,
            )
            try:
                _, stderr = process.communicate(timeout=self._config.timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
                raise TrainingFailedError(
                    f"training timed out after {self._config.timeout_seconds:g} s",
                    None,
                    _tail(stderr),
                ) from None
            if process.returncode != 0:
                raise TrainingFailedError(
                    f"training exited with status {process.returncode}",
                    process.returncode,
                    _tail(stderr),
                )
            outcome = TrainingOutcome.model_validate_json(outcome_file.read_text("utf-8"))
        return Submission(self.kind, str(process.pid), SubmissionState.SUCCEEDED, outcome)


def _tail(stderr: bytes) -> str:
    return stderr.decode("utf-8", "replace")[-STDERR_TAIL:]
