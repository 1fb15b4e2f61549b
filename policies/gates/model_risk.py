"""Model-risk gates by name, and the evaluation a model's risk tier requires.

``gates.yaml`` lists, under ``evaluate``, the model-risk gates of each risk tier with their
thresholds. The ``evaluate`` run builds a :class:`ModelEvaluation` and calls
:func:`evaluate_model`; every result, with its evidence and artifacts, is stored with the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from policies.documents import describe_errors
from policies.gates.base import GateResult
from policies.gates.drift import DriftGate
from policies.gates.evaluation import ModelEvaluation, ModelRiskGate, failed
from policies.gates.explainability import ExplainabilityGate
from policies.gates.fairness import FairnessGate

if TYPE_CHECKING:
    from policies.bundle import PolicyBundle

_FACTORIES: Final[Mapping[str, Callable[[Mapping[str, Any]], ModelRiskGate]]] = {
    DriftGate.name: DriftGate.from_params,
    ExplainabilityGate.name: ExplainabilityGate.from_params,
    FairnessGate.name: FairnessGate.from_params,
}


def known_model_risk_gates() -> tuple[str, ...]:
    """The names of every model-risk gate, sorted."""
    return tuple(sorted(_FACTORIES))


def build_model_risk_gate(name: str, params: Mapping[str, Any]) -> ModelRiskGate:
    """The model-risk gate ``name``, configured with ``params``.

    Raises:
        ValueError: the gate is unknown (the message lists the known ones) or its params are
            invalid.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(
            f"unknown model-risk gate {name!r}; known: {', '.join(known_model_risk_gates())}"
        )
    try:
        return factory(params)
    except ValidationError as exc:
        raise ValueError(f"invalid params for gate {name}: {describe_errors(exc)}") from None


def evaluate_model(
    bundle: PolicyBundle, risk_tier: str, evaluation: ModelEvaluation
) -> tuple[GateResult, ...]:
    """Every model-risk gate ``gates.yaml`` requires for ``risk_tier``, judged in order.

    A tier the bundle does not cover yields one FAIL (an unevaluated model is never
    promotable); a gate that raises fails with the error as its reason.
    """
    entries = bundle.gates.evaluate.get(risk_tier)  # type: ignore[call-overload]
    if entries is None:
        return (
            failed(
                "evaluate",
                f"gates.yaml lists no evaluate gates for risk tier {risk_tier!r}; "
                "the evaluation fails closed",
            ),
        )
    results = []
    for entry in entries:
        try:
            results.append(build_model_risk_gate(entry.gate, entry.params).judge(evaluation))
        except Exception as exc:
            results.append(
                failed(entry.gate, f"the gate could not be evaluated: {type(exc).__name__}: {exc}")
            )
    return tuple(results)
