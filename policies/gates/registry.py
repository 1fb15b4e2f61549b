"""Gates by name: the bundle names a gate, the registry builds it with its validated params."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pydantic import ValidationError

from policies.documents import describe_errors
from policies.gates.approval import ApprovalGate
from policies.gates.base import Gate, GateSpec
from policies.gates.privacy import PrivacyModeGate
from policies.gates.promotion import PromotionEvidenceGate

_FACTORIES: Final[Mapping[str, Callable[[Mapping[str, Any]], Gate]]] = {
    ApprovalGate.name: ApprovalGate.from_params,
    PrivacyModeGate.name: PrivacyModeGate.from_params,
    PromotionEvidenceGate.name: PromotionEvidenceGate.from_params,
}


def known_gates() -> tuple[str, ...]:
    """The names of every registered gate, sorted."""
    return tuple(sorted(_FACTORIES))


def build_gate(spec: GateSpec) -> Gate:
    """The gate ``spec`` names, configured with its params.

    Raises:
        ValueError: the gate is unknown (the message lists the known ones) or its params are
            invalid.
    """
    factory = _FACTORIES.get(spec.name)
    if factory is None:
        raise ValueError(f"unknown gate {spec.name!r}; known gates: {', '.join(known_gates())}")
    try:
        return factory(spec.params)
    except ValidationError as exc:
        raise ValueError(f"invalid params for gate {spec.name}: {describe_errors(exc)}") from None
