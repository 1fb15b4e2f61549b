"""The one output convention of the ``bench/*.py`` scripts (see ``bench/README.md``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def row(
    name: str,
    value: float,
    unit: str,
    baseline: float,
    baseline_name: str,
    goal: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One figure next to the plain library or raw limit measured in the same run.

    Args:
        name: what was measured.
        value: the figure, in ``unit``.
        unit: its unit (``decisions/s``, ``ms``...).
        baseline: the same figure for the plain library or raw limit, in ``unit``.
        baseline_name: what the baseline is (``plain pycasbin``, ``GET /health``...).
        goal: the target the figure must meet, in words, if there is one.
        met: whether the goal is met (None without a goal).
    """
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": value / baseline if baseline else None,
        "goal": goal,
        "met": met,
    }


def emit(rows: Sequence[dict[str, Any]]) -> None:
    """Print the rows as one JSON array on the last line of standard output."""
    print(json.dumps(list(rows)), flush=True)
