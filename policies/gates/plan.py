"""Planning: the gates a run needs, from the bundle, its kind and its attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policies.gates.base import GateSpec
from policies.vocabulary import RUN_KINDS, is_run_kind

if TYPE_CHECKING:
    from policies.bundle import PolicyBundle


def plan_gates(
    bundle: PolicyBundle, run_kind: str, attributes: Mapping[str, Any]
) -> tuple[GateSpec, ...]:
    """The gates ``gates.yaml`` lists for ``run_kind`` whose ``when`` matches, in order.

    Raises:
        ValueError: ``run_kind`` is not a run kind (planning fails closed rather than
            returning no gates).
    """
    if not is_run_kind(run_kind):
        raise ValueError(f"unknown run kind {run_kind!r}; known: {', '.join(RUN_KINDS)}")
    return tuple(
        GateSpec(entry.gate, dict(entry.params))
        for entry in bundle.gates.runs.get(run_kind, ())
        if entry.applies_to(attributes)
    )
