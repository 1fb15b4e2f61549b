"""Governed runs: the state machine, the engine that authorizes, gates and executes, the worker."""

from control_plane.runs.engine import RunEngine, RunSubmission
from control_plane.runs.executors import ExecutionContext, ExecutionError, Executor
from control_plane.runs.recording import TransitionRecorder
from control_plane.runs.states import RunKind, RunState, check_transition
from control_plane.runs.worker import RunWorker

__all__ = [
    "ExecutionContext",
    "ExecutionError",
    "Executor",
    "RunEngine",
    "RunKind",
    "RunState",
    "RunSubmission",
    "RunWorker",
    "TransitionRecorder",
    "check_transition",
]
