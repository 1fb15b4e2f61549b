"""Training orchestrators: the local runner (embedded default) and Kubeflow Pipelines."""

from __future__ import annotations

from connectors.training.base import (
    Orchestrator,
    Submission,
    SubmissionState,
    TrainingFailedError,
)
from connectors.training.job import DpTraining, SnapshotSource, TrainingJob, TrainingOutcome
from connectors.training.local import LocalRunner, LocalRunnerConfig
from connectors.training.steps import TrainingRefusedError

__all__ = [
    "DpTraining",
    "LocalRunner",
    "LocalRunnerConfig",
    "Orchestrator",
    "SnapshotSource",
    "Submission",
    "SubmissionState",
    "TrainingFailedError",
    "TrainingJob",
    "TrainingOutcome",
    "TrainingRefusedError",
]
