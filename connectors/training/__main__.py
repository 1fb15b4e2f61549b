"""Training entry point: ``python -m connectors.training JOB.json OUTCOME.json``.

Reads a :class:`TrainingJob`, runs the training steps and writes the
:class:`TrainingOutcome`. Exits 2 when the job is refused, 1 on any other failure; the reason
goes to stderr, which the runner reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

from connectors.training.job import TrainingJob
from connectors.training.steps import TrainingRefusedError, train_and_register


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m connectors.training JOB.json OUTCOME.json", file=sys.stderr)
        return 2
    job = TrainingJob.model_validate_json(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        outcome = train_and_register(job)
    except TrainingRefusedError as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(outcome.model_dump_json(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
